import ChatSync
import Foundation
import XCTest

/// The format has one source of truth (Store/): the Swift models and the JSON Schemas must
/// name the same fields, and everything the engine writes must validate.
final class SchemaTests: XCTestCase {
    func schemaProperties(_ name: String) throws -> [String] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: repositoryRoot + "/Store/schemas/\(name).schema.json"), name)
        let schema = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .object(let props)? = schema["properties"] else { XCTFail("\(name) has no properties"); return [] }
        return props.keys.sorted()
    }

    func testSwiftModelsAndSchemasNameTheSameFields() throws {
        let pairs: [(String, [String])] = [
            ("session", UserSession.fieldNames), ("chat", Chat.fieldNames), ("message", ChatMessage.fieldNames),
            ("mission", Mission.fieldNames), ("hop", Hop.fieldNames), ("tool_step", ToolStep.fieldNames), ("asset", Asset.fieldNames),
            ("conflict", ConflictRecord.fieldNames),
        ]
        for (name, fields) in pairs {
            XCTAssertEqual(try schemaProperties(name), fields.sorted(), "Store/schemas/\(name).schema.json vs the Swift model")
        }
        XCTAssertEqual(try schemaProperties("marker"), ["format", "version"])
    }

    func testEverythingTheEngineWritesValidatesAgainstTheSchemas() throws {
        let store = try makeStore(self)
        let samples = try XCTUnwrap(FileManager.default.contents(atPath: repositoryRoot + "/Samples/sample-data.json"))
        try store.load(samples, name: "samples")
        // Exercise every writer path: optional fields set and unset, edits, status changes.
        let s = try store.createSession(userID: "carol", name: "Research", metadata: .object(["ui": .string("dark")]))
        let m = try store.appendMessage(chatID: s.chatID, role: .assistant, content: "Line 1\nLine 2 — ünïcödé 日本語 \"quoted\" \\ tab\t",
                                        metadata: .object(["tokens": .int(12), "score": .double(0.5), "tags": .array([.string("a"), .null, .bool(true)])]),
                                        userID: "carol")
        _ = try store.editMessage(chatID: s.chatID, id: m.id, content: "edited")
        let mission = try store.createMission(userID: "carol", name: "Mission", description: "d", goal: "g", successCriteria: ["c1"])
        let hop = try store.addHop(missionID: mission.id, name: "Hop", description: "d", goal: "g", successCriteria: ["x"], rationale: "r", isFinal: true)
        let step = try store.addToolStep(hopID: hop.id, toolID: "tool", name: "Step", description: "d", parameterMapping: .object(["a": .int(1)]))
        _ = try store.updateToolStep(step.id, patch: ["execution_result": .object(["rows": .int(3)]), "error_message": .string("none"),
                                                      "validation_errors": .array([.string("w")])])
        _ = try store.setToolStepStatus(step.id, .executing)
        _ = try store.setToolStepStatus(step.id, .failed)
        _ = try store.updateMission(mission.id, patch: ["current_hop_id": .string(hop.id)])
        _ = try store.createAsset(userID: "carol", name: "A", schemaDefinition: .object(["type": .string("string")]),
                                  scopeType: .hop, scopeID: hop.id, role: .output, description: "d", subtype: "markdown", content: .string("# hi"),
                                  contentSummary: "s", dbEntityMetadata: .object(["table": .string("t")]))
        _ = try store.linkMission(sessionID: s.id, missionID: mission.id)
        _ = try store.cleanupSessions(idleAfter: 0, archiveAfter: 0)

        // A merge that records conflicts (field and delete-vs-edit) and a resolved one.
        let bare = NSTemporaryDirectory() + "chatsync-schema-bare-\(UUID().uuidString).git"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: bare) }
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        try store.addRemote("origin", url: bare)
        _ = try store.push(options: quickSync)
        let other = try clone(self, bare, "schema-other")
        _ = try other.updateChat(s.chatID, patch: ["title": .string("theirs")])
        try other.deleteAsset(try XCTUnwrap(store.listAssets().first).id)
        _ = try other.push(options: quickSync)
        _ = try store.updateChat(s.chatID, patch: ["title": .string("ours")])
        _ = try store.updateAsset(try XCTUnwrap(store.listAssets().first).id, patch: ["status": .string("ready")])
        XCTAssertEqual(try store.pull(options: quickSync).conflicts, 2)
        _ = try store.resolveConflict(try XCTUnwrap(store.conflicts().first).id, take: .theirs)
        store.syncWorkTree()

        let (out, status) = try runValidator(store.path)
        XCTAssertEqual(status, 0, out)
        XCTAssertTrue(out.contains("0 problem(s)"), out)
        XCTAssertTrue(out.contains("2 conflict"), out)

        // The validator is a real check: a document that breaks the schema fails it.
        try Data(#"{"id": "x", "user_id": "", "created_at": "soon"}"#.utf8 + [0x0A])
            .write(to: URL(fileURLWithPath: store.path + "/" + Layout.chat(s.chatID)))
        let (bad, badStatus) = try runValidator(store.path)
        XCTAssertEqual(badStatus, 1, bad)
        XCTAssertTrue(bad.contains("created_at"), bad)
    }

    func runValidator(_ dir: String) throws -> (String, Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot + "/Store/validate.py", dir]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: data, as: UTF8.self), p.terminationStatus)
    }
}

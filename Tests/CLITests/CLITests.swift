import ChatSync
import Foundation
import XCTest

/// Runs a program with `env` added to this process's environment (less `CHATSYNC_STORE` and
/// `SSH_AUTH_SOCK`); returns what it printed and its exit status.
func runTool(_ path: String, _ args: [String], env: [String: String] = [:]) throws -> (out: String, err: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var environment = ProcessInfo.processInfo.environment
    environment.removeValue(forKey: "CHATSYNC_STORE")
    environment.removeValue(forKey: "SSH_AUTH_SOCK")
    // Credentials and trust come only from what a test gives.
    for name in ["CHATSYNC_GIT_USERNAME", "CHATSYNC_GIT_PASSWORD", "CHATSYNC_SSH_KEY", "CHATSYNC_SSL_CA_FILE", "GIT_SSL_CAINFO"] {
        environment.removeValue(forKey: name)
    }
    for (k, v) in env { environment[k] = v }
    p.environment = environment
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self), p.terminationStatus)
}

/// Runs the built `chatsync` binary on a store; returns what it printed and its exit status.
func runChatsync(_ args: [String], store: String) throws -> (out: String, err: String, status: Int32) {
    try runTool(CLITests.binary, args + ["--store", store])
}

/// End-to-end tests: they run the built `chatsync` binary, as a user would, and read the
/// store with the plain `git` command.
final class CLITests: XCTestCase {
    var storeDir: String!

    override func setUpWithError() throws {
        storeDir = NSTemporaryDirectory() + "chatsync-cli-\(UUID().uuidString)"
        addTeardownBlock { [storeDir] in try? FileManager.default.removeItem(atPath: storeDir!) }
    }

    static let binary: String = {
        if let b = ProcessInfo.processInfo.environment["CHATSYNC_BIN"] { return b }
        let testBundle = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0])
        let beside = testBundle.deletingLastPathComponent().appendingPathComponent("chatsync").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        return root.path + "/.build/debug/chatsync"
    }()

    struct Result { let out: String; let err: String; let status: Int32 }

    @discardableResult
    func cli(_ args: [String], stdin: String? = nil, env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = args + ["--store", storeDir]
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "CHATSYNC_STORE")
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self), status: p.terminationStatus)
    }

    func json(_ args: [String], stdin: String? = nil) throws -> JSONValue {
        let r = try cli(args + ["--json"], stdin: stdin)
        XCTAssertEqual(r.status, 0, r.err)
        return try JSONDecoder().decode(JSONValue.self, from: Data(r.out.utf8))
    }

    func git(_ args: String...) throws -> (out: String, status: Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", storeDir] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let d = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: d, as: UTF8.self), p.terminationStatus)
    }

    func commitCount() throws -> Int { Int(try git("rev-list", "--count", "HEAD").out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }

    func testSessionChatAndThreeMessagesOneCommitEach() throws {
        XCTAssertEqual(try cli(["init"]).status, 0)
        var count = try commitCount()
        let session = try json(["session", "create", "--user", "alice"])
        XCTAssertEqual(try commitCount(), count + 1)
        count += 1
        let chatID = try XCTUnwrap(session["chat_id"]?.stringValue)
        let chat = try json(["chat", "show", chatID])
        XCTAssertEqual(chat["chat"]?["title"], .string("Session 1"))
        for (i, (role, text)) in [("user", "What is 2+2?"), ("assistant", "4.\nAnything else?"), ("user", "Merci, c'est tout")].enumerated() {
            let m = try json(["message", "add", chatID, "--role", role, "--content", text])
            XCTAssertEqual(m["sequence_order"], .int(Int64(i + 1)))
            XCTAssertEqual(try commitCount(), count + 1, "each change adds exactly one commit")
            count += 1
        }
        let list = try json(["message", "list", chatID])
        guard case .array(let msgs) = list else { return XCTFail("not a list") }
        XCTAssertEqual(msgs.map { $0["sequence_order"] }, [.int(1), .int(2), .int(3)])
        let log = try git("log", "--format=%s").out
        XCTAssertTrue(log.contains("add message #3 (user)"), log)
        XCTAssertTrue(log.contains("add message #2 (assistant)"), log)
        XCTAssertTrue(log.contains("create for user alice"), log)
        XCTAssertEqual(try git("fsck", "--strict").status, 0)
        XCTAssertEqual(try git("status", "--porcelain").out, "")
        // Human output reads well too.
        let human = try cli(["chat", "show", chatID])
        XCTAssertTrue(human.out.contains("#2 assistant"), human.out)
        XCTAssertTrue(human.out.contains("    Anything else?"), human.out)
        XCTAssertEqual(try cli(["verify"]).status, 0)
    }

    func testContentFromStdinAndFile() throws {
        try cli(["init"])
        let chat = try json(["chat", "create", "--user", "u", "--title", "T"])
        let id = try XCTUnwrap(chat["id"]?.stringValue)
        let fromStdin = try json(["message", "add", id, "--role", "assistant"], stdin: "piped\ntext")
        XCTAssertEqual(fromStdin["content"], .string("piped\ntext"))
        let file = storeDir + "-content.txt"
        try Data("from a file ✓".utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let fromFile = try json(["message", "add", id, "--role", "user", "--content-file", file])
        XCTAssertEqual(fromFile["content"], .string("from a file ✓"))
        XCTAssertEqual(fromFile["sequence_order"], .int(2))
    }

    func testFourProcessesAppendingAtOnceLoseNothing() throws {
        try cli(["init"])
        let chat = try json(["chat", "create", "--user", "u"])
        let id = try XCTUnwrap(chat["id"]?.stringValue)
        let before = try commitCount()
        // Four shells, each running `chatsync message add` 50 times, all at once.
        var procs: [Process] = []
        for w in 0..<4 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "for i in $(seq 1 50); do \"$0\" message add \"$1\" --role user --content \"w\(w) m$i\" --store \"$2\" >/dev/null || exit 1; done",
                           Self.binary, id, storeDir]
            try p.run()
            procs.append(p)
        }
        for p in procs { p.waitUntilExit(); XCTAssertEqual(p.terminationStatus, 0) }
        let list = try json(["message", "list", id])
        guard case .array(let msgs) = list else { return XCTFail("not a list") }
        XCTAssertEqual(msgs.count, 200)
        XCTAssertEqual(msgs.compactMap { if case .int(let n)? = $0["sequence_order"] { return Int(n) } else { return nil } }, Array(1...200))
        XCTAssertEqual(Set(msgs.compactMap { $0["content"]?.stringValue }).count, 200)
        XCTAssertEqual(try commitCount(), before + 200)
        XCTAssertEqual(try git("fsck", "--strict").status, 0)
        XCTAssertEqual(try git("status", "--porcelain").out, "")
        XCTAssertEqual(try cli(["verify"]).status, 0)
    }

    func testBadInputIsRefusedNamingTheFieldAndWritesNothing() throws {
        try cli(["init"])
        let chat = try json(["chat", "create", "--user", "u"])
        let id = try XCTUnwrap(chat["id"]?.stringValue)
        let session = try json(["session", "create", "--user", "u", "--chat", id])
        let sid = try XCTUnwrap(session["id"]?.stringValue)
        let before = try commitCount()
        let cases: [([String], String, [String: String])] = [
            (["chat", "create", "--id", "../escape"], "id", [:]),
            (["chat", "show", "a/b"], "chat_id", [:]),
            (["message", "add", id, "--role", "robot", "--content", "x"], "role", [:]),
            (["session", "list", "--status", "sleeping"], "status", [:]),
            (["session", "update", sid, "--status", "zombie"], "status", [:]),
            (["message", "add", id, "--role", "user", "--content", String(repeating: "x", count: 64)], "content", ["CHATSYNC_MAX_CONTENT_BYTES": "32"]),
            (["message", "add", id, "--role", "user", "--content", "x", "--metadata", "{oops"], "message_metadata", [:]),
            (["chat", "update", id, "--context", "[1]"], "context_data", [:]),
            (["session", "create", "--user", "u", "--metadata", "not json"], "session_metadata", [:]),
            (["chat", "create", "--title", String(repeating: "t", count: 300)], "title", [:]),
            (["session", "cleanup", "--idle-after", "soon"], "idle-after", [:]),
            (["session", "cleanup", "--idle-after", "999999999999d"], "idle-after", [:]),
            (["session", "cleanup", "--archive-after", "99999999999999999d"], "archive-after", [:]),
            (["pull", "--retry-delay", "1e300"], "retry-delay", [:]),
            (["message", "add", id, "--role", "user", "--content", "x", "--content-file", "/etc/hostname"], "content-file", [:]),
            (["watch", "--sync", "origin", "--interval", "nan"], "interval", [:]),
            (["watch", "--since", "HEAD^{tree}"], "since", [:]),
            (["session", "update", sid, "--mission", "m", "--no-mission"], "no-mission", [:]),
            (["message", "add", id, "--role", "user", "--content", "x"], "CHATSYNC_MAX_CONTENT_BYTES", ["CHATSYNC_MAX_CONTENT_BYTES": "abc"]),
        ]
        for (args, field, env) in cases {
            let r = try cli(args + ["--json"], env: env)
            XCTAssertNotEqual(r.status, 0, "\(args) should fail")
            XCTAssertEqual(r.out, "", "\(args) printed a result")
            let err = try JSONDecoder().decode(JSONValue.self, from: Data(r.err.utf8))
            XCTAssertEqual(err["error"]?["field"], .string(field), "\(args): \(r.err)")
            XCTAssertEqual(err["error"]?["code"], .string("invalid_input"), "\(args): \(r.err)")
        }
        // Arguments that do not parse: exit 1 and the option named, like any bad input.
        for (args, field) in [(["message", "list", id, "--limit", "abc"], "limit"), (["message", "list", id, "--bogus"], "bogus"),
                              (["message", "add", "--role", "user"], "chat-id")] {
            let r = try cli(args + ["--json"])
            XCTAssertEqual(r.status, 1, "\(args)")
            let err = try JSONDecoder().decode(JSONValue.self, from: Data(r.err.utf8))
            XCTAssertEqual(err["error"]?["field"], .string(field), "\(args): \(r.err)")
        }
        XCTAssertEqual(try cli(["message", "list", id, "--limit", "abc"]).status, 1)
        // Revisions, dates, urls and store folders that cannot be: named, exit 1.
        for (args, field) in [(["diff", "HEAD", "HEAD^{tree}"], "revision"), (["show", "chat", id, "--at-date", "notadate"], "at-date"),
                              (["clone", "", "--store", storeDir + "-clone"], "url")] {
            let r = try runTool(Self.binary, args + ["--json"] + (args.contains("--store") ? [] : ["--store", storeDir]))
            XCTAssertEqual(r.status, 1, "\(args)")
            let err = try JSONDecoder().decode(JSONValue.self, from: Data(r.err.utf8))
            XCTAssertEqual(err["error"]?["field"], .string(field), "\(args): \(r.err)")
        }
        let file = storeDir + "-file"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: file) }
        let onFile = try runTool(Self.binary, ["init", "--store", file])
        XCTAssertEqual(onFile.status, 1)
        XCTAssertTrue(onFile.err.contains("is a file"), onFile.err)
        XCTAssertEqual(try cli(["--help"]).status, 0)
        // Missing references: a clear not-found, no commit.
        let missing = try cli(["message", "add", "no-such-chat", "--role", "user", "--content", "x"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("chat no-such-chat not found"), missing.err)
        let noMission = try cli(["session", "create", "--user", "u", "--mission", "nope"])
        XCTAssertTrue(noMission.err.contains("mission nope not found"), noMission.err)
        XCTAssertEqual(try commitCount(), before, "no refused command may commit")
        XCTAssertEqual(try git("status", "--porcelain").out, "")
    }

    func testInitWithSamplesAndEveryCommandGroup() throws {
        // Samples that cannot be read, or that break the rules: refused, and no store is made.
        let bad = storeDir + "-bad.json"
        try #"{"chats": [{"id": "c1", "user_id": " ", "created_at": "2026-11-18T16:02:10.000Z", "updated_at": "2026-11-18T16:02:10.000Z"}]}"#
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let misspelt = storeDir + "-misspelt.json"
        try #"{"chat": [{"id": "x"}]}"#.write(toFile: misspelt, atomically: true, encoding: .utf8)
        let twice = storeDir + "-twice.json"
        try #"{"chats": [], "chats": [{"id": "x"}]}"#.write(toFile: twice, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: twice) }
        addTeardownBlock { try? FileManager.default.removeItem(atPath: bad); try? FileManager.default.removeItem(atPath: misspelt) }
        for (file, field) in [(storeDir + "-missing.json", "samples-file"), (bad, "user_id"), (misspelt, "chat"), (twice, "chats")] {
            let refused = try cli(["init", "--samples-file", file, "--json"])
            XCTAssertEqual(refused.status, 1)
            XCTAssertEqual(try JSONDecoder().decode(JSONValue.self, from: Data(refused.err.utf8))["error"]?["field"], .string(field), refused.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: storeDir), "no store is left behind")
        }
        let r = try cli(["init", "--samples"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("loaded"), r.out)
        XCTAssertEqual(try cli(["verify"]).status, 0)
        let missions = try json(["mission", "list"])
        guard case .array(let ms) = missions, let mid = ms.first?["id"]?.stringValue else { return XCTFail("no sample mission") }
        let full = try json(["mission", "full", mid])
        guard case .array(let hops)? = full["hops"], hops.count >= 2 else { return XCTFail("no hops") }
        let hop = try json(["hop", "add", mid, "--name", "Review", "--position", "1"])
        XCTAssertEqual(hop["sequence_order"], .int(1))
        let hid = try XCTUnwrap(hop["id"]?.stringValue)
        let step = try json(["step", "add", hid, "--tool", "llm", "--name", "summarise", "--parameters", #"{"model":"m"}"#])
        let stepID = try XCTUnwrap(step["id"]?.stringValue)
        XCTAssertNotNil(try json(["step", "status", stepID, "executing"])["started_at"])
        let asset = try json(["asset", "create", "--user", "u", "--name", "notes", "--scope-type", "hop", "--scope", hid, "--role", "output"])
        XCTAssertEqual(asset["scope_id"], .string(hid))
        XCTAssertEqual(try json(["mission", "status", mid, "in_progress"])["status"], .string("in_progress"))
        XCTAssertEqual(try cli(["hop", "delete", hid]).status, 0)
        let log = try cli(["log", "-n", "3"])
        XCTAssertEqual(log.out.split(separator: "\n").count, 3, log.out)
        XCTAssertEqual(try cli(["session", "cleanup", "--idle-after", "0s", "--archive-after", "0s"]).status, 0)
        XCTAssertEqual(try cli(["verify"]).status, 0)
        XCTAssertEqual(try git("fsck", "--strict").status, 0)
        XCTAssertEqual(try git("status", "--porcelain").out, "")
    }

    func testUninitialisedExplicitStoreIsAClearError() throws {
        let r = try cli(["chat", "list"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("chatsync init"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: storeDir))
    }

    /// A change that was acknowledged survives `kill -9` of the writer; after the crash the store
    /// opens, `git fsck` is clean and the next change works.
    func testAcknowledgedChangesSurviveKillNine() throws {
        try cli(["init"])
        let chat = try json(["chat", "create", "--user", "u"])
        let id = try XCTUnwrap(chat["id"]?.stringValue)
        let acked = storeDir + "-acked.txt"
        defer { try? FileManager.default.removeItem(atPath: acked) }
        // A writer loop that records each message id only once chatsync acknowledged it.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "i=0; while true; do i=$((i+1)); \"$0\" message add \"$1\" --id \"m$i\" --role user --content \"n$i\" --store \"$2\" >/dev/null && echo \"m$i\" >> \"$3\"; done",
                       Self.binary, id, storeDir, acked]
        try p.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, ((try? String(contentsOfFile: acked, encoding: .utf8))?.split(separator: "\n").count ?? 0) < 15 { usleep(50_000) }
        // Kill the loop and whatever chatsync it is running, mid-write.
        let kill = Process()
        kill.executableURL = URL(fileURLWithPath: "/bin/sh")
        kill.arguments = ["-c", "pkill -9 -P \(p.processIdentifier); kill -9 \(p.processIdentifier)"]
        try kill.run()
        kill.waitUntilExit()
        p.waitUntilExit()
        let ackedIDs = try String(contentsOfFile: acked, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertGreaterThanOrEqual(ackedIDs.count, 15)
        XCTAssertEqual(try git("fsck", "--strict").status, 0)
        let list = try json(["message", "list", id])
        guard case .array(let msgs) = list else { return XCTFail("not a list") }
        let stored = Set(msgs.compactMap { $0["id"]?.stringValue })
        for a in ackedIDs { XCTAssertTrue(stored.contains(a), "acknowledged message \(a) was lost") }
        // The store works on after the crash.
        XCTAssertEqual(try cli(["message", "add", id, "--role", "user", "--content", "after"]).status, 0)
        XCTAssertEqual(try cli(["verify"]).status, 0)
        XCTAssertEqual(try git("status", "--porcelain").out, "")
    }
}

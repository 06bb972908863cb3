import ChatSync
import Foundation
import XCTest

/// The sync commands, through the built binary, against a bare repository.
final class SyncCLITests: XCTestCase {
    func run(_ args: [String], store: String) throws -> (out: String, err: String, status: Int32) {
        try runChatsync(args, store: store)
    }

    func json(_ args: [String], store: String) throws -> JSONValue {
        let r = try run(args + ["--json"], store: store)
        XCTAssertEqual(r.status, 0, "\(args): \(r.err)")
        return try JSONDecoder().decode(JSONValue.self, from: Data(r.out.utf8))
    }

    func testCloneSyncAndResolveThroughTheCommandLine() throws {
        let root = NSTemporaryDirectory() + "chatsync-synccli-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let bare = root + "/remote.git", a = root + "/a", b = root + "/b"
        let g = Process()
        g.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        g.arguments = ["init", "-q", "--bare", "--initial-branch=main", bare]
        try g.run(); g.waitUntilExit()

        XCTAssertEqual(try run(["init"], store: a).status, 0)
        let chatID = try XCTUnwrap(try json(["chat", "create", "--user", "u", "--title", "T"], store: a)["id"]?.stringValue)
        XCTAssertEqual(try run(["remote", "add", "origin", bare], store: a).status, 0)
        XCTAssertEqual(try run(["remote", "add", "origin", bare], store: a).status, 1, "a remote name is taken once")
        XCTAssertTrue(try run(["remote", "list"], store: a).out.contains("origin\t\(bare)"))
        let pushed = try json(["push"], store: a)
        XCTAssertEqual(pushed["pushed_commits"], .int(2))
        XCTAssertEqual(try run(["clone", bare], store: b).status, 0)
        XCTAssertEqual(try run(["clone", bare], store: b).status, 1, "clone refuses a folder that is not empty")
        // A remote whose main is not a chatsync store: refused, and nothing is left behind.
        let plain = root + "/plain"
        for args in [["init", "-q", "-b", "main", plain], ["-C", plain, "commit", "-q", "--allow-empty", "-m", "not a store"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = args
            try p.run(); p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "git \(args)")
        }
        let notStore = try run(["clone", plain], store: root + "/c")
        XCTAssertEqual(notStore.status, 1)
        XCTAssertTrue(notStore.err.contains("not a chatsync store"), notStore.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/c"))

        for (store, text) in [(a, "from a"), (b, "from b")] {
            XCTAssertEqual(try run(["message", "add", chatID, "--role", "user", "--content", text], store: store).status, 0)
        }
        XCTAssertEqual(try run(["chat", "update", chatID, "--title", "A"], store: a).status, 0)
        XCTAssertEqual(try run(["chat", "update", chatID, "--title", "B"], store: b).status, 0)
        XCTAssertEqual(try json(["sync"], store: a)["pushed_commits"], .int(2))
        let merged = try json(["sync"], store: b)
        XCTAssertEqual(merged["conflicts"], .int(1))
        XCTAssertEqual(merged["fetched_commits"], .int(2))
        XCTAssertNotNil(merged["merge_commit"]?.stringValue)
        XCTAssertEqual(try json(["sync"], store: a)["fast_forward"], .bool(true))

        let conflicts = try json(["conflicts"], store: a)
        guard case .array(let list) = conflicts, let id = list.first?["id"]?.stringValue else { return XCTFail("no conflict listed") }
        XCTAssertTrue(try run(["conflicts", "show", id], store: a).out.contains("set aside (theirs)"))
        let bad = try run(["conflicts", "resolve", id, "--take", "mine"], store: a)
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("take"), bad.err)
        XCTAssertEqual(try json(["conflicts", "resolve", id, "--take", "theirs"], store: a)["status"], .string("resolved"))
        XCTAssertEqual(try run(["sync"], store: a).status, 0)
        XCTAssertEqual(try run(["sync"], store: b).status, 0)
        let titleA = try json(["chat", "show", chatID], store: a)["chat"]?["title"]
        XCTAssertEqual(titleA, try json(["chat", "show", chatID], store: b)["chat"]?["title"])
        guard case .array(let msgs)? = try json(["chat", "show", chatID], store: b)["messages"] else { return XCTFail() }
        XCTAssertEqual(msgs.count, 2)
        XCTAssertEqual(try run(["verify"], store: b).status, 0)
        XCTAssertEqual(try run(["remote", "remove", "origin"], store: a).status, 0)
        let noRemote = try run(["sync"], store: a)
        XCTAssertEqual(noRemote.status, 1)
        XCTAssertTrue(noRemote.err.contains("remote origin not found"), noRemote.err)
    }
}

import ChatSync
import Foundation
import XCTest

final class HistoryCLITests: XCTestCase {
    func testPlainGitLogShowsMessagesAsTextAndShowAtHEAD2() throws {
        let store = NSTemporaryDirectory() + "chatsync-historycli-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: store) }
        func cli(_ args: [String]) throws -> (out: String, status: Int32) {
            let r = try runChatsync(args, store: store)
            return (r.out, r.status)
        }
        XCTAssertEqual(try cli(["init"]).status, 0)
        let chat = try JSONDecoder().decode(JSONValue.self, from: Data(try cli(["chat", "create", "--user", "u", "--title", "First", "--json"]).out.utf8))
        let id = try XCTUnwrap(chat["id"]?.stringValue)
        let content = "Une réponse\nsur plusieurs lignes\n— avec 日本語"
        XCTAssertEqual(try cli(["message", "add", id, "--role", "assistant", "--content", content]).status, 0)
        XCTAssertEqual(try cli(["chat", "update", id, "--title", "Second"]).status, 0)
        XCTAssertEqual(try cli(["chat", "update", id, "--title", "Third"]).status, 0)

        // Plain git renders the added message as text, with real line breaks, not as an escaped
        // JSON string; also for a user git knows no name of (reading writes nothing).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", store, "log", "-p"]
        var env = ProcessInfo.processInfo.environment
        env["PATH"] = (CLITests.binary as NSString).deletingLastPathComponent + ":" + (env["PATH"] ?? "")
        for name in ["GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"] { env.removeValue(forKey: name) }
        env["HOME"] = store + "/.git/chatsync"
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let log = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let problem = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, problem)
        XCTAssertEqual(try runTool("/usr/bin/git", ["-C", store, "for-each-ref", "refs/notes"]).out, "", "no cache of rendered documents in the store")
        XCTAssertTrue(log.contains("+sur plusieurs lignes\n+— avec 日本語"), log)
        XCTAssertTrue(log.contains("+#1 assistant"), log)
        XCTAssertFalse(log.contains("\\n"), "no escaped line breaks")

        // show chat ID --at HEAD~2: the chat as it was two commits earlier.
        let old = try JSONDecoder().decode(JSONValue.self, from: Data(try cli(["show", "chat", id, "--at", "HEAD~2", "--json"]).out.utf8))
        XCTAssertEqual(old["chat"]?["title"], .string("First"))
        XCTAssertEqual(try cli(["show", "chat", id, "--at", "HEAD~2"]).out.contains("title=\"First\""), true)
        XCTAssertEqual(try cli(["show", "chat", id, "--at", "nonsense~9"]).status, 1)
        // git finds the renderer by its absolute path, whatever its PATH.
        let textconv = try runTool("/usr/bin/git", ["-C", store, "config", "diff.chatsync.textconv"]).out
        XCTAssertTrue(textconv.hasPrefix("'/"), textconv)
        // Before the chat existed: not found, and the error says at which revision.
        let first = try runTool("/usr/bin/git", ["-C", store, "rev-list", "--max-parents=0", "HEAD"]).out.trimmingCharacters(in: .whitespacesAndNewlines)
        let before = try runChatsync(["show", "chat", id, "--at", first], store: store)
        XCTAssertEqual(before.status, 1)
        XCTAssertTrue(before.err.contains("at \(first)"), before.err)
        // log, diff, blame, export from the command line.
        XCTAssertEqual(try cli(["log", "--chat", id]).out.split(separator: "\n").count, 4)
        let diff = try cli(["diff", "HEAD~3"]).out
        XCTAssertTrue(diff.contains("+ #1 assistant"), diff)
        XCTAssertTrue(diff.contains("title: \"First\" → \"Third\""), diff)
        XCTAssertTrue(try cli(["blame", id]).out.contains("#1 assistant  added"))
        XCTAssertTrue(try cli(["export", id, "--format", "markdown"]).out.contains(content))
        XCTAssertEqual(try cli(["export", id, "--format", "pdf"]).status, 1)
        // --json prints JSON (it printed Markdown).
        let exported = try cli(["export", id, "--json"])
        XCTAssertEqual(exported.status, 0)
        XCTAssertNotNil(try? JSONDecoder().decode(JSONValue.self, from: Data(exported.out.utf8)), exported.out)
        XCTAssertEqual(try cli(["export", id, "--json", "--format", "markdown"]).status, 1)
    }
}

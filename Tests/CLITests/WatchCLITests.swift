import ChatSync
import Foundation
import XCTest

/// `chatsync watch` as a user runs it: a long-running process printing JSON lines.
final class WatchCLITests: XCTestCase {
    func testWatchSeesAnotherProcessAndAHandEditAndStopsOnSIGINT() throws {
        let store = NSTemporaryDirectory() + "chatsync-watchcli-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: store) }
        func cli(_ args: [String]) throws -> String {
            let r = try runChatsync(args, store: store)
            XCTAssertEqual(r.status, 0, "\(args)")
            return r.out
        }
        _ = try cli(["init"])
        let chat = try JSONDecoder().decode(JSONValue.self, from: Data(try cli(["chat", "create", "--user", "u", "--title", "Before", "--json"]).utf8))
        let chatID = try XCTUnwrap(chat["id"]?.stringValue)

        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: CLITests.binary)
        watch.arguments = ["watch", "--store", store]
        let out = Pipe()
        watch.standardOutput = out
        watch.standardError = FileHandle.nullDevice
        let lines = LineCollector(out.fileHandleForReading)
        try watch.run()
        defer { if watch.isRunning { watch.terminate() } }
        usleep(500_000)

        // Another process adds a message.
        let added = try JSONDecoder().decode(JSONValue.self, from: Data(try cli(["message", "add", chatID, "--role", "user", "--content", "hello", "--json"]).utf8))
        let messageID = try XCTUnwrap(added["id"]?.stringValue)
        XCTAssertTrue(lines.wait { $0.contains { $0["id"] == .string(messageID) && $0["kind"] == .string("created") } }, "\(lines.events)")

        // A hand edit of the chat's title in its JSON file.
        let file = store + "/" + Layout.chat(chatID)
        let text = try String(contentsOfFile: file, encoding: .utf8).replacingOccurrences(of: "\"Before\"", with: "\"After\"")
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        XCTAssertTrue(lines.wait { $0.contains { $0["type"] == .string("chat") && $0["origin"] == .string("workdir") } }, "\(lines.events)")
        XCTAssertTrue(try cli(["chat", "show", chatID]).contains("title=\"After\""))

        // SIGINT stops it cleanly.
        kill(watch.processIdentifier, SIGINT)
        let deadline = Date().addingTimeInterval(10)
        while watch.isRunning && Date() < deadline { usleep(20_000) }
        XCTAssertFalse(watch.isRunning)
        XCTAssertEqual(watch.terminationStatus, 0)
        // Every line was one JSON event with the documented fields.
        for e in lines.events {
            XCTAssertNotNil(e["kind"]); XCTAssertNotNil(e["origin"]); XCTAssertNotNil(e["time"])
        }
    }
}

extension WatchCLITests {
    /// Two watch processes on one store (a server and a `chatsync watch`): a hand edit is one
    /// commit (each committed it, the second flipping updated_at back and forth: three commits).
    func testTwoWatchProcessesCommitAHandEditOnce() throws {
        let store = NSTemporaryDirectory() + "chatsync-watch2-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: store) }
        XCTAssertEqual(try runChatsync(["init"], store: store).status, 0)
        let chat = try JSONDecoder().decode(JSONValue.self, from: Data(try runChatsync(["chat", "create", "--user", "u", "--title", "T", "--json"], store: store).out.utf8))
        let chatID = try XCTUnwrap(chat["id"]?.stringValue)
        var watchers: [Process] = []
        defer { for w in watchers where w.isRunning { w.terminate(); w.waitUntilExit() } }
        for _ in 0..<2 {
            let w = Process()
            w.executableURL = URL(fileURLWithPath: CLITests.binary)
            w.arguments = ["watch", "--store", store]
            w.standardOutput = FileHandle.nullDevice
            w.standardError = FileHandle.nullDevice
            try w.run()
            watchers.append(w)
        }
        usleep(800_000)
        func commits() throws -> Int { Int(try runTool("/usr/bin/git", ["-C", store, "rev-list", "--count", "HEAD"]).out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }
        let file = store + "/" + Layout.chat(chatID)
        for round in 1...4 {
            let before = try commits()
            let text = try String(contentsOfFile: file, encoding: .utf8)
            try text.replacingOccurrences(of: #""title": ""#, with: #""title": "\#(round)"#).write(toFile: file, atomically: true, encoding: .utf8)
            let deadline = Date().addingTimeInterval(10)
            while try commits() == before && Date() < deadline { usleep(50_000) }
            usleep(1_500_000)
            XCTAssertEqual(try commits(), before + 1, "round \(round)")
        }
        XCTAssertEqual(try runTool("/usr/bin/git", ["-C", store, "status", "--porcelain"]).out, "")
    }
}

/// Reads JSON lines from a pipe as they come.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var parsed: [JSONValue] = []
    private var buffer = Data()

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.withLock {
                self.buffer.append(d)
                while let nl = self.buffer.firstIndex(of: 0x0A) {
                    let line = self.buffer[self.buffer.startIndex..<nl]
                    self.buffer = Data(self.buffer[(nl + 1)...])
                    if let v = try? JSONDecoder().decode(JSONValue.self, from: line) { self.parsed.append(v) }
                }
            }
        }
    }

    var events: [JSONValue] { lock.withLock { parsed } }

    func wait(timeout: Double = 10, _ done: ([JSONValue]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if done(events) { return true }
            usleep(20_000)
        }
        return done(events)
    }
}

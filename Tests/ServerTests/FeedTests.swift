import ChatSync
@testable import ChatSyncServer
import Foundation
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import HummingbirdWebSocket
import XCTest

final class FeedTests: XCTestCase {
    /// A message added through the API and one added by another writer reach a WebSocket
    /// client; a client that reconnects with the last commit it saw gets what it missed.
    func testWebSocketFeedAndResume() async throws {
        let store = try makeServerStore(self)
        let chat = try store.createChat(userID: "u")
        let start = try XCTUnwrap(store.head()).hex
        let router = buildRouter(store: store)
        let app = Application(router: router, server: .http1WebSocketUpgrade(webSocketRouter: router))
        let other = try Store.open(at: store.path, options: store.options)
        defer { other.close() }
        try await app.test(.live) { client in
            let viaAPI = try await client.call(.post, "/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "through the API"}"#)
            let apiID = try XCTUnwrap(viaAPI["id"]?.stringValue)
            let otherID = try other.appendMessage(chatID: chat.id, role: .assistant, content: "from another writer").id
            let box = Collected()
            _ = try await client.ws("/api/watch?since=\(start)") { inbound, outbound, _ in
                var it = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                while box.values.filter({ $0["type"] == .string("message") }).count < 2, let message = try await it.next() {
                    if case .text(let text) = message { box.append(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) }
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            let seen = box.values
            let ids = seen.compactMap { $0["id"]?.stringValue }
            XCTAssertEqual(ids, [apiID, otherID], "both, in commit order, after the cursor")
            XCTAssertEqual(seen.first { $0["id"] == .string(otherID) }?["origin"], .string("external"))
            let cursor = try XCTUnwrap(seen.last?["commit"]?.stringValue)
            // Missed while disconnected:
            let missed = try store.appendMessage(chatID: chat.id, role: .user, content: "while away").id
            let box2 = Collected()
            _ = try await client.ws("/api/watch?since=\(cursor)") { inbound, outbound, _ in
                var it = inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
                if let message = try await it.next(), case .text(let text) = message {
                    box2.append(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))
                }
                try await outbound.close(.normalClosure, reason: nil)
            }
            let resumed = box2.values.compactMap { $0["id"]?.stringValue }
            XCTAssertEqual(resumed, [missed])
            let r1 = try await client.call(.get, "/api/changes?since=not-a-commit")
            XCTAssertEqual(r1.status, 400)
            let plain = try await client.call(.get, "/api/watch")
            XCTAssertEqual(plain.status, 400, "a plain GET of the WebSocket route")
            XCTAssertEqual(plain.errorField, "Upgrade")
            // A handshake with a bad cursor is refused before any frame; the same URL as a plain
            // GET names the field.
            do {
                _ = try await client.ws("/api/watch?since=not-a-commit") { _, _, _ in XCTFail("upgraded with a bad cursor") }
                XCTFail("the handshake must be refused")
            } catch {}
            let plainBad = try await client.call(.get, "/api/watch?since=not-a-commit")
            XCTAssertEqual(plainBad.status, 400)
            XCTAssertEqual(plainBad.errorField, "since")
            // A tree, or a commit the branch never had, is no cursor either (it replayed everything).
            let tip = try XCTUnwrap(try store.head())
            func git(_ args: String...) throws -> String {
                let p = Process(), out = Pipe()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
                p.arguments = ["-C", store.path, "-c", "user.name=t", "-c", "user.email=t@localhost"] + args
                p.standardOutput = out
                try p.run()
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                return text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let tree = try git("rev-parse", "HEAD^{tree}")
            let stray = try git("commit-tree", tree, "-m", "never on the branch")
            for since in [tree, stray] {
                let r = try await client.call(.get, "/api/changes?since=\(since)")
                XCTAssertEqual(r.status, 400, since)
                XCTAssertEqual(r.errorField, "since")
            }
            XCTAssertEqual(try store.head(), tip)
        }
    }

    /// The same feed over Server-Sent Events, read by curl as a browser would.
    func testServerSentEventsFeedAndResume() async throws {
        let store = try makeServerStore(self)
        let chat = try store.createChat(userID: "u")
        let start = try XCTUnwrap(store.head()).hex
        let router = buildRouter(store: store)
        let app = Application(router: router)
        try await app.test(.live) { client in
            let port = try XCTUnwrap(client.port)
            let first = try await client.call(.post, "/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "one"}"#)
            let other = try Store.open(at: store.path, options: store.options)
            let second = try other.appendMessage(chatID: chat.id, role: .assistant, content: "two")
            other.close()
            let lines = try await Self.readSSE("http://127.0.0.1:\(port)/api/changes?since=\(start)", events: 2)
            let events = lines.filter { $0.hasPrefix("data: ") }.map { try? JSONDecoder().decode(JSONValue.self, from: Data($0.dropFirst(6).utf8)) }
            XCTAssertEqual(events.compactMap { $0?["id"]?.stringValue }, [first["id"]?.stringValue, second.id].compactMap { $0 })
            let ids = lines.filter { $0.hasPrefix("id: ") }.map { String($0.dropFirst(4)) }
            XCTAssertEqual(ids.count, 2, "each event carries its cursor as the SSE id")
            // Reconnect with the last id: only what came after.
            let third = try store.appendMessage(chatID: chat.id, role: .user, content: "three")
            let again = try await Self.readSSE("http://127.0.0.1:\(port)/api/changes?since=\(ids.last!)", events: 1)
            XCTAssertEqual(again.filter { $0.hasPrefix("data: ") }.compactMap {
                try? JSONDecoder().decode(JSONValue.self, from: Data($0.dropFirst(6).utf8))["id"]?.stringValue
            }, [third.id])
            // As EventSource reconnects: the URL it started from, and the last id, which wins.
            let reconnect = try await Self.readSSE("http://127.0.0.1:\(port)/api/changes?since=\(start)", events: 1, lastEventID: ids.last!)
            XCTAssertEqual(reconnect.filter { $0.hasPrefix("data: ") }.compactMap {
                try? JSONDecoder().decode(JSONValue.self, from: Data($0.dropFirst(6).utf8))["id"]?.stringValue
            }.first, third.id)
        }
    }

    /// Reads an SSE stream with curl until `events` data lines came (or 10 s passed).
    static func readSSE(_ url: String, events: Int, lastEventID: String? = nil) async throws -> [String] {
        try await blocking {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = ["-sN", "--max-time", "10", url] + (lastEventID.map { ["-H", "Last-Event-ID: \($0)"] } ?? [])
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            var text = ""
            let handle = out.fileHandleForReading
            while text.components(separatedBy: "\n").filter({ $0.hasPrefix("data: ") }).count < events {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            // SIGKILL: curl inherits the signal mask of the thread that starts it, and SIGTERM
            // can be blocked there (curl then ran on to its --max-time, 10 s a call).
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return text.components(separatedBy: "\n")
        }
    }
}

/// Values collected from inside a concurrently running closure.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [JSONValue] = []
    func append(_ v: JSONValue) { lock.withLock { items.append(v) } }
    var values: [JSONValue] { lock.withLock { items } }
}

import ChatSync
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The built binary, started on a free loopback port, used over real HTTP.
final class EndToEndTests: XCTestCase {
    static let binary: String = {
        let testBundle = URL(fileURLWithPath: CommandLine.arguments.first { $0.hasSuffix(".xctest") } ?? CommandLine.arguments[0])
        return testBundle.deletingLastPathComponent().appendingPathComponent("chatsync").path
    }()

    func startServer(_ store: String, token: String? = nil, durable: Bool = false) throws -> (url: String, process: Process) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["serve", "--store", store, "--port", "0"] + (durable ? [] : ["--no-fsync"]) + (token.map { ["--token", $0] } ?? [])
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "CHATSYNC_TOKEN")
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        addTeardownBlock { if p.isRunning { p.terminate(); p.waitUntilExit() } }
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("\n") && Date() < deadline {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            text += String(decoding: d, as: UTF8.self)
        }
        guard let range = text.range(of: "http://") else { XCTFail("no URL printed: \(text)"); throw XCTSkip("server did not start") }
        let url = String(text[range.lowerBound...].prefix { !$0.isWhitespace })
        return (url, p)
    }

    /// A store made by the binary's `init` in a temporary folder (removed after the test).
    func newStore(_ name: String) throws -> String {
        let store = NSTemporaryDirectory() + "chatsync-\(name)-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: store) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["init", "--store", store]
        p.standardOutput = FileHandle.nullDevice
        try p.run(); p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        return store
    }

    func request(_ method: String, _ url: String, _ body: String? = nil, token: String? = nil) async throws -> (Int, JSONValue?) {
        try await Self.send(method, url, body, token: token)
    }

    static func send(_ method: String, _ url: String, _ body: String? = nil, token: String? = nil) async throws -> (Int, JSONValue?) {
        var r = URLRequest(url: URL(string: url)!)
        r.httpMethod = method
        if let body { r.httpBody = Data(body.utf8); r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: r)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, try? JSONDecoder().decode(JSONValue.self, from: data))
    }

    func testTheBinaryServesTheAPIAnd16ClientsAppendGapFree() async throws {
        let store = try newStore("e2e")
        let (base, _) = try startServer(store, token: "e2e-token")
        let (unauthorized, _) = try await request("GET", base + "/api/health")
        XCTAssertEqual(unauthorized, 401)
        let (status, health) = try await request("GET", base + "/api/health", token: "e2e-token")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(health?["status"], .string("ok"))
        let (created, chat) = try await request("POST", base + "/api/chats", #"{"user_id": "u", "title": "Load"}"#, token: "e2e-token")
        XCTAssertEqual(created, 201)
        let chatID = try XCTUnwrap(chat?["id"]?.stringValue)

        // 16 concurrent clients, 100 messages each, to one chat.
        let failures = try await withThrowingTaskGroup(of: [String].self) { group in
            for c in 0..<16 {
                group.addTask {
                    var bad: [String] = []
                    for i in 0..<100 {
                        // A client error is a failure to report, never a throw: a throw cancels the
                        // group, and cancelling URLSession tasks can deadlock FoundationNetworking.
                        do {
                            let (s, body) = try await Self.send("POST", base + "/api/chats/\(chatID)/messages",
                                                                #"{"role": "user", "content": "client \#(c) message \#(i)"}"#, token: "e2e-token")
                            if s != 201 { bad.append("\(s) \(body.map { "\($0)" } ?? "")") }
                        } catch {
                            bad.append("client \(c) message \(i): \(error)")
                        }
                    }
                    return bad
                }
            }
            return try await group.reduce([], +)
        }
        XCTAssertEqual(failures, [])
        let (_, list) = try await request("GET", base + "/api/chats/\(chatID)/messages", token: "e2e-token")
        guard case .array(let msgs)? = list else { return XCTFail("no list") }
        XCTAssertEqual(msgs.count, 1600)
        XCTAssertEqual(msgs.compactMap { if case .int(let n)? = $0["sequence_order"] { return Int(n) } else { return nil } }, Array(1...1600))
        let (_, openapi) = try await request("GET", base + "/api/openapi.json", token: "e2e-token")
        XCTAssertEqual(openapi?["openapi"], .string("3.1.0"))
    }

    /// `kill -9` of a durable server in the middle of 16 clients' appends (group commit, the
    /// branch's folder fsynced on a thread of its own): every append answered 201 is in the
    /// store afterwards, the numbers are gap-free, `git fsck` is clean, and a new server works.
    func testAcknowledgedAppendsSurviveKillNineOfABusyServer() async throws {
        let store = try newStore("crash")
        let (base, server) = try startServer(store, durable: true)
        let (created, chat) = try await request("POST", base + "/api/chats", #"{"user_id": "u", "title": "Crash"}"#)
        XCTAssertEqual(created, 201)
        let chatID = try XCTUnwrap(chat?["id"]?.stringValue)
        let acknowledged = Acknowledged()
        // Sixteen clients append until the server dies; the first 300 answers trigger the kill.
        async let clients: Void = EndToEndTests.appendUntilDown(base: base, chatID: chatID, clients: 16, into: acknowledged)
        let deadline = Date().addingTimeInterval(60)
        while acknowledged.ids.count < 300 && Date() < deadline { try await Task.sleep(nanoseconds: 5_000_000) }
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        await clients
        let acked = acknowledged.ids
        XCTAssertGreaterThanOrEqual(acked.count, 300)

        let reopened = try Store.open(at: store)
        let messages = try reopened.listMessages(chatID: chatID)
        let stored = Set(messages.map(\.id))
        XCTAssertEqual(acked.filter { !stored.contains($0) }, [], "acknowledged appends lost")
        XCTAssertEqual(messages.map(\.sequenceOrder), Array(1...messages.count))
        XCTAssertTrue(try reopened.verify().ok)
        reopened.close()
        let fsck = Process()
        fsck.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        fsck.arguments = ["-C", store, "fsck", "--strict"]
        fsck.standardOutput = FileHandle.nullDevice
        fsck.standardError = FileHandle.nullDevice
        try fsck.run(); fsck.waitUntilExit()
        XCTAssertEqual(fsck.terminationStatus, 0)
        // A new server on the same store takes appends again (a lock left by the crash is stale).
        let (again, _) = try startServer(store, durable: true)
        let (status, _) = try await request("POST", again + "/api/chats/\(chatID)/messages", #"{"role": "user", "content": "after the crash"}"#)
        XCTAssertEqual(status, 201)
    }

    /// `clients` clients appending to a chat, each until an append is not answered 201.
    static func appendUntilDown(base: String, chatID: String, clients: Int, into acknowledged: Acknowledged) async {
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<clients {
                group.addTask {
                    for i in 0..<10_000 {
                        guard let (s, body) = try? await send("POST", base + "/api/chats/\(chatID)/messages",
                                                               #"{"role": "user", "content": "client \#(c) message \#(i)"}"#) else { return }
                        guard s == 201, let id = body?["id"]?.stringValue else { return }
                        acknowledged.add(id)
                    }
                }
            }
        }
    }

    func testTheBinaryRefusesANonLoopbackAddressWithoutAToken() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["serve", "--store", NSTemporaryDirectory() + "never-made-\(UUID().uuidString)", "--host", "0.0.0.0", "--port", "0"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1)
        XCTAssertTrue(text.contains("token"), text)
    }
}

/// The ids of appends a server answered 201, from many tasks.
final class Acknowledged: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ id: String) { lock.withLock { list.append(id) } }
    var ids: [String] { lock.withLock { list } }
}

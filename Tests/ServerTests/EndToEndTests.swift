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

    func startServer(_ store: String, token: String? = nil) throws -> (url: String, process: Process) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["serve", "--store", store, "--port", "0", "--no-fsync"] + (token.map { ["--token", $0] } ?? [])
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
        let store = NSTemporaryDirectory() + "chatsync-e2e-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: store) }
        let init_ = Process()
        init_.executableURL = URL(fileURLWithPath: Self.binary)
        init_.arguments = ["init", "--store", store]
        init_.standardOutput = FileHandle.nullDevice
        try init_.run(); init_.waitUntilExit()
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
                        let (s, body) = try await Self.send("POST", base + "/api/chats/\(chatID)/messages",
                                                            #"{"role": "user", "content": "client \#(c) message \#(i)"}"#, token: "e2e-token")
                        if s != 201 { bad.append("\(s) \(body.map { "\($0)" } ?? "")") }
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

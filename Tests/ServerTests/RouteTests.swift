import ChatSync
@testable import ChatSyncServer
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

func makeServerStore(_ test: XCTestCase) throws -> Store {
    let dir = NSTemporaryDirectory() + "chatsync-server-\(UUID().uuidString)"
    var o = StoreOptions()
    o.durable = false
    o.limits.maxContentBytes = 4096
    let store = try Store.open(at: dir, options: o, create: true)
    test.addTeardownBlock {
        store.close()
        try? FileManager.default.removeItem(atPath: dir)
    }
    return store
}

/// A test client's response, decoded.
struct Reply {
    let status: Int
    let body: JSONValue?
    let text: String
    var errorField: String? { body?["error"]?["field"]?.stringValue }
    var errorCode: String? { body?["error"]?["code"]?.stringValue }
    subscript(key: String) -> JSONValue? { body?[key] }
}

extension TestClientProtocol {
    func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, token: String? = nil,
              authorization: String? = nil) async throws -> Reply {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token { headers[.authorization] = "Bearer \(token)" }
        if let authorization { headers[.authorization] = authorization }
        return try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { r in
            let text = String(buffer: r.body)
            return Reply(status: Int(r.status.code), body: try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), text: text)
        }
    }
}

final class RouteTests: XCTestCase {
    func app(_ store: Store, token: String? = nil) -> some ApplicationProtocol {
        Application(router: buildRouter(store: store, configuration: ServerConfiguration(token: token)))
    }

    func testSessionsAndChatsRoutes() async throws {
        let store = try makeServerStore(self)
        try await app(store).test(.router) { client in
            let s = try await client.call(.post, "/api/sessions", #"{"user_id": "alice", "session_metadata": {"ui": "dark"}}"#)
            XCTAssertEqual(s.status, 201, s.text)
            let sid = try XCTUnwrap(s["id"]?.stringValue), chat = try XCTUnwrap(s["chat_id"]?.stringValue)
            let r1 = try await client.call(.get, "/api/sessions?user_id=alice&status=active")
            XCTAssertEqual(r1.body.map { if case .array(let a) = $0 { return a.count } else { return -1 } }, 1)
            let r2 = try await client.call(.get, "/api/sessions/active?user_id=alice")
            XCTAssertEqual(r2["id"]?.stringValue, sid)
            // A path the API has with a method it does not take: 405 naming the methods; a path
            // it does not have: 404.
            try await client.execute(uri: "/api/sessions/\(sid)", method: .delete) { r in
                XCTAssertEqual(r.status, .methodNotAllowed)
                XCTAssertEqual(r.headers[.allow], "GET, HEAD, PUT")
                XCTAssertTrue(String(buffer: r.body).contains("method_not_allowed"), String(buffer: r.body))
            }
            let r2b = try await client.call(.get, "/api/nowhere/\(sid)")
            XCTAssertEqual(r2b.status, 404)
            let r3 = try await client.call(.get, "/api/sessions/active?user_id=nobody")
            XCTAssertEqual(r3.status, 404)
            let r4 = try await client.call(.get, "/api/sessions/active")
            XCTAssertEqual(r4.errorField, "user_id")
            let r5 = try await client.call(.get, "/api/sessions/\(sid)")
            XCTAssertEqual(r5["user_id"], .string("alice"))
            let r6 = try await client.call(.put, "/api/sessions/\(sid)", #"{"name": "Renamed"}"#)
            XCTAssertEqual(r6["name"], .string("Renamed"))
            let r7 = try await client.call(.put, "/api/sessions/\(sid)", #"{"status": "sleeping"}"#)
            XCTAssertEqual(r7.errorField, "status")
            let r8 = try await client.call(.post, "/api/sessions/\(sid)/activity")
            XCTAssertEqual(r8.status, 200)
            let m = try await client.call(.post, "/api/missions", #"{"user_id": "alice", "name": "M"}"#)
            let mid = try XCTUnwrap(m["id"]?.stringValue)
            let r9 = try await client.call(.post, "/api/sessions/\(sid)/link-mission/\(mid)")
            XCTAssertEqual(r9["mission_id"], .string(mid))
            let r10 = try await client.call(.post, "/api/sessions/\(sid)/link-mission/nope")
            XCTAssertEqual(r10.status, 404)
            let r11 = try await client.call(.post, "/api/sessions/\(sid)/complete")
            XCTAssertEqual(r11["status"], .string("completed"))
            let r12 = try await client.call(.post, "/api/sessions/\(sid)/complete")
            XCTAssertEqual(r12.status, 409, "not active any more")
            let r13 = try await client.call(.post, "/api/sessions/\(sid)/abandon")
            XCTAssertEqual(r13.status, 409)
            let r14 = try await client.call(.post, "/api/sessions/\(sid)/archive")
            XCTAssertEqual(r14["status"], .string("archived"))
            let r15 = try await client.call(.post, "/api/sessions/cleanup", #"{"idle_after_seconds": 0}"#)
            XCTAssertEqual(r15.status, 200)
            let r16 = try await client.call(.post, "/api/sessions/cleanup", #"{"idle_after_seconds": "soon"}"#)
            XCTAssertEqual(r16.errorField, "idle_after_seconds")
            // Out of range (this one once stopped the server: the seconds overflowed an integer).
            for (body, field) in [(#"{"idle_after_seconds": 1e300}"#, "idle_after_seconds"), (#"{"archive_after_seconds": -1}"#, "archive_after_seconds")] {
                let r = try await client.call(.post, "/api/sessions/cleanup", body)
                XCTAssertEqual(r.status, 400, body)
                XCTAssertEqual(r.errorField, field, body)
            }

            // Chats and messages.
            let r17 = try await client.call(.get, "/api/chats/\(chat)")
            XCTAssertEqual(r17["chat"]?["title"], .string("Session 1"))
            for i in 1...3 {
                let r = try await client.call(.post, "/api/chats/\(chat)/messages", #"{"role": "user", "content": "m\#(i)"}"#)
                XCTAssertEqual(r.status, 201, r.text)
                XCTAssertEqual(r["sequence_order"], .int(Int64(i)))
            }
            let page = try await client.call(.get, "/api/chats/\(chat)/messages?after=1&limit=1")
            guard case .array(let msgs)? = page.body else { return XCTFail(page.text) }
            XCTAssertEqual(msgs.map { $0["sequence_order"] }, [.int(2)])
            let mid2 = try XCTUnwrap(msgs.first?["id"]?.stringValue)
            let r18 = try await client.call(.get, "/api/chats/\(chat)/messages/\(mid2)")
            XCTAssertEqual(r18["content"], .string("m2"))
            let r19 = try await client.call(.put, "/api/chats/\(chat)/messages/\(mid2)", #"{"content": "edited"}"#)
            XCTAssertNotNil(r19["updated_at"])
            let r20 = try await client.call(.get, "/api/chats/\(chat)/messages?limit=-1")
            XCTAssertEqual(r20.errorField, "limit")
            let r21 = try await client.call(.put, "/api/chats/\(chat)", #"{"title": "New"}"#)
            XCTAssertEqual(r21["title"], .string("New"))
            let r22 = try await client.call(.put, "/api/chats/\(chat)", #"{"titel": "typo"}"#)
            XCTAssertEqual(r22.errorField, "titel")
            // The owner is not changed by an update (sessions and chats of a user stay together).
            let r22a = try await client.call(.put, "/api/chats/\(chat)", #"{"user_id": "someone else"}"#)
            XCTAssertEqual(r22a.status, 400)
            XCTAssertEqual(r22a.errorField, "user_id")
            // null removes an optional field, and is refused for one a chat always has.
            let r22b = try await client.call(.put, "/api/chats/\(chat)", #"{"context_data": null}"#)
            XCTAssertEqual(r22b.status, 400)
            XCTAssertEqual(r22b.errorField, "context_data")
            let r22c = try await client.call(.put, "/api/chats/\(chat)", #"{"title": null}"#)
            XCTAssertEqual(r22c.status, 200)
            XCTAssertNil(r22c["title"])
            _ = try await client.call(.put, "/api/chats/\(chat)", #"{"title": "New"}"#)
            let r23 = try await client.call(.delete, "/api/chats/\(chat)")
            XCTAssertEqual(r23.status, 409, "a session uses it")
            let c2 = try await client.call(.post, "/api/chats", #"{"user_id": "bob", "title": "Other", "context_data": {"k": 1}}"#)
            XCTAssertEqual(c2.status, 201)
            let r24 = try await client.call(.get, "/api/chats?user_id=bob")
            XCTAssertEqual(r24.body.map { if case .array(let a) = $0 { return a.count } else { return -1 } }, 1)
            let r25 = try await client.call(.delete, "/api/chats/\(c2["id"]!.stringValue!)")
            XCTAssertEqual(r25.status, 204)
            let r26 = try await client.call(.get, "/api/chats/\(c2["id"]!.stringValue!)")
            XCTAssertEqual(r26.status, 404)
        }
    }

    func testBadInputIs4xxAndWritesNothing() async throws {
        let store = try makeServerStore(self)
        let chat = try store.createChat(userID: "u")
        let before = try store.commitCount()
        // Nested past what a response that wraps the document could still be read with (509 levels
        // were accepted, after which listing chats failed for everyone), and just past the rule.
        let deep = String(repeating: "[", count: 509) + String(repeating: "]", count: 509)
        let deep101 = String(repeating: "[", count: 101) + String(repeating: "]", count: 101)
        let deep100 = String(repeating: "[", count: 99) + String(repeating: "]", count: 99)
        try await app(store).test(.router) { client in
            let contract = try await client.call(.get, "/api/openapi.json")
            var codes = Set<String>()
            if case .array(let listed)? = contract.body?["components"]?["schemas"]?["Error"]?["properties"]?["error"]?["properties"]?["code"]?["enum"] {
                codes = Set(listed.compactMap(\.stringValue))
            }
            XCTAssertTrue(codes.contains("invalid_input"))
            let cases: [(HTTPRequest.Method, String, String?, Int, String?)] = [
                (.post, "/api/chats", #"{"user_id": "u", "context_data": {"a": \#(deep)}}"#, 400, "context_data"),
                (.post, "/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "x", "message_metadata": {"a": \#(deep101)}}"#, 400, "message_metadata"),
                (.post, "/api/chats", #"{"user_id": "u", "user_id": "v"}"#, 400, "user_id"),
                (.post, "/api/chats", #"{"user_id": "u", "context_data": {"a": [1, {"b": 1, "\u0062": 2}]}}"#, 400, "context_data.a.1.b"),
                (.post, "/api/chats", #"{"user_id": "u", "context_data": {"big": 12345678901234567890}}"#, 400, "context_data.big"),
                (.post, "/api/chats", "{not json", 400, "body"),
                (.post, "/api/chats", "[1, 2]", 400, "body"),
                (.post, "/api/chats", #"{"title": "no user"}"#, 400, "user_id"),
                (.post, "/api/chats", #"{"user_id": "u", "id": "../escape"}"#, 400, "id"),
                (.post, "/api/chats", #"{"user_id": "u", "context_data": "text"}"#, 400, "context_data"),
                (.post, "/api/chats", #"{"user_id": "u", "colour": "red"}"#, 400, "colour"),
                (.post, "/api/chats/\(chat.id)/messages", #"{"role": "robot", "content": "x"}"#, 400, "role"),
                (.post, "/api/chats/\(chat.id)/messages", #"{"role": "user"}"#, 400, "content"),
                (.post, "/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "\#(String(repeating: "x", count: 5000))"}"#, 400, "content"),
                (.post, "/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "x", "message_metadata": [1]}"#, 400, "message_metadata"),
                (.post, "/api/chats/nochat/messages", #"{"role": "user", "content": "x"}"#, 404, nil),
                (.post, "/api/sessions", #"{"user_id": "u", "mission_id": "nomission"}"#, 404, nil),
                (.post, "/api/assets", #"{"user_id": "u", "name": "a", "schema_definition": {}, "scope_type": "hop", "scope_id": "nohop", "role": "input"}"#, 400, "scope_id"),
                (.post, "/api/assets", #"{"user_id": "u", "name": "a", "schema_definition": {}, "scope_type": "planet", "scope_id": "x", "role": "input"}"#, 400, "scope_type"),
                (.get, "/api/sessions?status=sleeping", nil, 400, "status"),
                (.get, "/api/nothing-here", nil, 404, nil),
                (.post, "/api/chats", #"{"user_id": "u", "id": "\#(chat.id)"}"#, 409, nil),
            ]
            for (method, uri, body, status, field) in cases {
                let r = try await client.call(method, uri, body)
                XCTAssertEqual(r.status, status, "\(method) \(uri): \(r.text)")
                XCTAssertNotNil(r.errorCode, "\(method) \(uri): a JSON error body: \(r.text)")
                XCTAssertTrue(codes.contains(r.errorCode ?? ""), "\(method) \(uri): \(r.errorCode ?? "-") is a code of the contract")
                if let field { XCTAssertEqual(r.errorField, field, "\(method) \(uri): \(r.text)") }
            }
            // Oversize body: 413.
            let huge = #"{"user_id": "u", "title": "\#(String(repeating: "x", count: 5 << 20))"}"#
            let big = try await client.call(.post, "/api/chats", huge)
            XCTAssertEqual(big.status, 413)
            XCTAssertEqual(big.errorCode, "payload_too_large")
            let head = try await client.call(.head, "/api/health")
            XCTAssertEqual(head.status, 200, "HEAD answers as GET does, without the body")
            XCTAssertEqual(head.text, "")
            let wrongMethod = try await client.call(.delete, "/api/sessions")
            XCTAssertEqual(wrongMethod.status, 405)
            XCTAssertTrue(codes.contains(wrongMethod.errorCode ?? ""), wrongMethod.text)
            let listing = try await client.call(.get, "/api/chats")
            XCTAssertEqual(listing.status, 200, "listing still works")
        }
        XCTAssertEqual(try store.commitCount(), before, "no refused request may write")
        // A hundred levels in one field are allowed.
        let kept = try await app(store).test(.router) { client in
            try await client.call(.post, "/api/chats", #"{"user_id": "u", "context_data": {"a": \#(deep100)}}"#)
        }
        XCTAssertEqual(kept.status, 201, kept.text)
    }

    func testMissionsHopsStepsAndAssetsRoutes() async throws {
        let store = try makeServerStore(self)
        try await app(store).test(.router) { client in
            let m = try await client.call(.post, "/api/missions", #"{"user_id": "u", "name": "Analyse", "success_criteria": ["chart"]}"#)
            let mid = try XCTUnwrap(m["id"]?.stringValue)
            XCTAssertEqual(m["status"], .string("awaiting_approval"))
            let h1 = try await client.call(.post, "/api/missions/\(mid)/hops", #"{"name": "collect"}"#)
            let h2 = try await client.call(.post, "/api/missions/\(mid)/hops", #"{"name": "plot", "sequence_order": 1}"#)
            let (hid1, hid2) = (try XCTUnwrap(h1["id"]?.stringValue), try XCTUnwrap(h2["id"]?.stringValue))
            XCTAssertEqual(h2["sequence_order"], .int(1))
            let order = try await client.call(.put, "/api/missions/\(mid)/hops/order", #"{"order": ["\#(hid1)", "\#(hid2)"]}"#)
            guard case .array(let hops)? = order.body else { return XCTFail(order.text) }
            XCTAssertEqual(hops.map { $0["id"] }, [.string(hid1), .string(hid2)])
            let r27 = try await client.call(.put, "/api/missions/\(mid)/hops/order", #"{"order": ["\#(hid1)"]}"#)
            XCTAssertEqual(r27.errorField, "order")
            let r28 = try await client.call(.get, "/api/missions/\(mid)/hops")
            XCTAssertEqual(r28.status, 200)
            let r29 = try await client.call(.get, "/api/hops/\(hid1)")
            XCTAssertEqual(r29["name"], .string("collect"))
            let r30 = try await client.call(.put, "/api/hops/\(hid1)", #"{"rationale": "why"}"#)
            XCTAssertEqual(r30["rationale"], .string("why"))
            let r31 = try await client.call(.patch, "/api/hops/\(hid1)/status", #"{"status": "executing"}"#)
            XCTAssertEqual(r31["status"], .string("executing"))
            let r32 = try await client.call(.patch, "/api/hops/\(hid1)/status", #"{"status": "dreaming"}"#)
            XCTAssertEqual(r32.errorField, "status")
            let s1 = try await client.call(.post, "/api/hops/\(hid1)/tool-steps", #"{"tool_id": "sql", "name": "query", "parameter_mapping": {"q": "select 1"}}"#)
            let s2 = try await client.call(.post, "/api/hops/\(hid1)/tool-steps", #"{"tool_id": "csv", "name": "export"}"#)
            let (sid1, sid2) = (try XCTUnwrap(s1["id"]?.stringValue), try XCTUnwrap(s2["id"]?.stringValue))
            let r33 = try await client.call(.put, "/api/hops/\(hid1)/tool-steps/order", #"{"order": ["\#(sid2)", "\#(sid1)"]}"#)
            XCTAssertEqual(r33.status, 200)
            let r34 = try await client.call(.get, "/api/hops/\(hid1)/tool-steps")
            guard case .array(let steps)? = r34.body else { return XCTFail(r34.text) }
            XCTAssertEqual(steps.first?["id"], .string(sid2))
            let r35 = try await client.call(.get, "/api/tool-steps/\(sid1)")
            XCTAssertEqual(r35["tool_id"], .string("sql"))
            let r36 = try await client.call(.put, "/api/tool-steps/\(sid1)", #"{"execution_result": {"rows": 1}}"#)
            XCTAssertEqual(r36["execution_result"]?["rows"], .int(1))
            let r37 = try await client.call(.patch, "/api/tool-steps/\(sid1)/status", #"{"status": "executing"}"#)
            XCTAssertNotNil(r37["started_at"])
            let r38 = try await client.call(.delete, "/api/tool-steps/\(sid2)")
            XCTAssertEqual(r38.status, 204)
            let full = try await client.call(.get, "/api/missions/\(mid)/full")
            XCTAssertEqual(full["hops"].map { if case .array(let a) = $0 { return a.count } else { return -1 } }, 2)
            let r39 = try await client.call(.put, "/api/missions/\(mid)", #"{"current_hop_id": "\#(hid1)"}"#)
            XCTAssertEqual(r39["current_hop_id"], .string(hid1))
            let r40 = try await client.call(.patch, "/api/missions/\(mid)/status", #"{"status": "in_progress"}"#)
            XCTAssertEqual(r40["status"], .string("in_progress"))
            let r41 = try await client.call(.get, "/api/missions?status=in_progress")
            XCTAssertEqual(r41.body.map { if case .array(let a) = $0 { return a.count } else { return -1 } }, 1)
            let r42 = try await client.call(.get, "/api/missions/\(mid)")
            XCTAssertEqual(r42["name"], .string("Analyse"))
            // Assets.
            let a = try await client.call(.post, "/api/assets", #"{"user_id": "u", "name": "chart", "schema_definition": {"type": "string"}, "scope_type": "hop", "scope_id": "\#(hid1)", "role": "output", "content": "png"}"#)
            XCTAssertEqual(a.status, 201, a.text)
            let aid = try XCTUnwrap(a["id"]?.stringValue)
            let r43 = try await client.call(.get, "/api/assets?scope_type=hop&scope_id=\(hid1)")
            XCTAssertEqual(r43.body.map { if case .array(let x) = $0 { return x.count } else { return -1 } }, 1)
            let r44 = try await client.call(.get, "/api/assets/\(aid)")
            XCTAssertEqual(r44["content"], .string("png"))
            let r45 = try await client.call(.put, "/api/assets/\(aid)", #"{"status": "ready"}"#)
            XCTAssertEqual(r45["status"], .string("ready"))
            let r46 = try await client.call(.delete, "/api/hops/\(hid2)")
            XCTAssertEqual(r46.status, 204)
            let r47 = try await client.call(.delete, "/api/assets/\(aid)")
            XCTAssertEqual(r47.status, 204)
            let r48 = try await client.call(.delete, "/api/missions/\(mid)")
            XCTAssertEqual(r48.status, 204)
            let r49 = try await client.call(.get, "/api/hops/\(hid1)")
            XCTAssertEqual(r49.status, 404)
        }
        XCTAssertTrue(try store.verify().ok)
    }

    func testTokenIsRequiredWhenSet() async throws {
        let store = try makeServerStore(self)
        try await app(store, token: "s3cret").test(.router) { client in
            let r50 = try await client.call(.get, "/api/health")
            XCTAssertEqual(r50.status, 401)
            let r51 = try await client.call(.get, "/api/health", token: "wrong")
            XCTAssertEqual(r51.status, 401)
            let r52 = try await client.call(.get, "/api/health", token: "wrong")
            XCTAssertEqual(r52.errorCode, "unauthorized")
            let r53 = try await client.call(.get, "/api/health", token: "s3cret")
            XCTAssertEqual(r53.status, 200)
            let r54 = try await client.call(.post, "/api/chats", #"{"user_id": "u"}"#)
            XCTAssertEqual(r54.status, 401)
            // The scheme's name is case-insensitive (RFC 9110); the token is not.
            for (header, status) in [("bearer s3cret", 200), ("BEARER  s3cret", 200), ("Bearer S3CRET", 401), ("Basic s3cret", 401), ("s3cret", 401)] {
                let r = try await client.call(.get, "/api/health", authorization: header)
                XCTAssertEqual(r.status, status, header)
            }
        }
        XCTAssertTrue(BearerTokenMiddleware<AppContext>.constantTimeEqual(Array("abc".utf8), Array("abc".utf8)))
        XCTAssertFalse(BearerTokenMiddleware<AppContext>.constantTimeEqual(Array("abc".utf8), Array("abd".utf8)))
        XCTAssertFalse(BearerTokenMiddleware<AppContext>.constantTimeEqual(Array("abc".utf8), Array("abcd".utf8)))
        // Nothing about the token is written to the store.
        let grep = try String(contentsOfFile: store.path + "/.git/config", encoding: .utf8)
        XCTAssertFalse(grep.contains("s3cret"))
    }

    func testNonLoopbackNeedsAToken() throws {
        XCTAssertThrowsError(try ServerConfiguration(host: "0.0.0.0", port: 8080).validate()) { XCTAssertEqual(($0 as? ChatSyncError)?.field, "host") }
        XCTAssertNoThrow(try ServerConfiguration(host: "0.0.0.0", port: 8080, token: "t").validate())
        XCTAssertNoThrow(try ServerConfiguration(host: "127.0.0.1", port: 8080).validate())
        XCTAssertNoThrow(try ServerConfiguration(host: "::1", port: 8080).validate())
    }

    func testSyncAndConflictsRoutes() async throws {
        let store = try makeServerStore(self)
        try await app(store).test(.router) { client in
            let r55 = try await client.call(.post, "/api/sync")
            XCTAssertEqual(r55.status, 404, "no remote named origin")
            let r56 = try await client.call(.post, "/api/sync", #"{"remote": 7}"#)
            XCTAssertEqual(r56.errorField, "remote")
            let r57 = try await client.call(.get, "/api/conflicts")
            XCTAssertEqual(r57.text, "[]")
            let r58 = try await client.call(.get, "/api/conflicts?status=maybe")
            XCTAssertEqual(r58.errorField, "status")
            let r59 = try await client.call(.get, "/api/health")
            XCTAssertEqual(r59["status"], .string("ok"))
        }
        let bare = NSTemporaryDirectory() + "chatsync-server-bare-\(UUID().uuidString).git"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: bare) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["init", "-q", "--bare", "--initial-branch=main", bare]
        try p.run(); p.waitUntilExit()
        try store.addRemote("origin", url: bare)
        try await app(store).test(.router) { client in
            let r = try await client.call(.post, "/api/sync", #"{"remote": "origin"}"#)
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertGreaterThan(r["pushed_commits"].flatMap { if case .int(let n) = $0 { return Int(n) } else { return nil } } ?? 0, 0)
        }
    }
}

final class BlockingPoolTests: XCTestCase {
    /// Sixteen store calls that wait (as appends wait for their batch) all run at once, so that
    /// they can share a batch: each waits until all sixteen have started. (Dispatch's global
    /// queue runs about three at once on this machine: there, they would give up waiting.)
    func testSixteenWaitingCallsRunAtOnce() async throws {
        final class Counter: @unchecked Sendable {
            private let lock = NSLock()
            private var n = 0
            func add() { lock.lock(); n += 1; lock.unlock() }
            var value: Int { lock.lock(); defer { lock.unlock() }; return n }
        }
        let started = Counter()
        let sawAll = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    try await blocking {
                        started.add()
                        let deadline = Date().addingTimeInterval(20)
                        while started.value < 16 && Date() < deadline { usleep(1_000) }
                        return started.value == 16
                    }
                }
            }
            var all = true
            for try await saw in group { all = all && saw }
            return all
        }
        XCTAssertTrue(sawAll, "every call saw the other fifteen running")
    }
}

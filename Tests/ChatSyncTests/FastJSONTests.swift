@testable import ChatSync
import Foundation
import XCTest

/// The quick message reader of the read path agrees with JSONDecoder, and gives up (nil, so
/// JSONDecoder decides) on anything else.
final class FastJSONTests: XCTestCase {
    func fast(_ text: String) -> ChatMessage? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { ChatMessage.fastDecode($0) }
    }

    func testAgreesWithJSONDecoderOnStoredMessages() throws {
        let t = Timestamp(milliseconds: 1_790_000_000_123)
        let messages = [
            ChatMessage(id: "m1", chatID: "c", userID: nil, sequenceOrder: 1, role: .user, content: "hello", messageMetadata: .emptyObject, createdAt: t, updatedAt: nil),
            ChatMessage(id: "m2", chatID: "c", userID: "alice", sequenceOrder: 42, role: .assistant,
                        content: "quotes \" backslash \\ tab \t newline \n é ü 中文 😀 \u{1}", messageMetadata: .object(["model": .string("x"), "n": .int(3), "f": .double(1.5), "ok": .bool(true), "list": .array([.null, .string("s")])]),
                        createdAt: t, updatedAt: t.adding(milliseconds: 5)),
            ChatMessage(id: "m3", chatID: "c", userID: nil, sequenceOrder: 100_000, role: .system, content: "", messageMetadata: .emptyObject, createdAt: t, updatedAt: nil),
        ]
        for m in messages {
            let data = try DocumentCoding.encode(m)
            let viaDecoder = try DocumentCoding.makeDecoder().decode(ChatMessage.self, from: data)
            let viaFast = data.withUnsafeBytes { ChatMessage.fastDecode($0) }
            XCTAssertEqual(viaFast, viaDecoder)
            XCTAssertEqual(viaFast, m)
        }
        // Compact JSON, keys in any order, null for the optional fields.
        let compact = #"{"role":"tool","content":"a\u00e9\ud83d\ude00","chat_id":"c","id":"x","sequence_order":7,"created_at":"2026-11-20T10:00:00.000Z","user_id":null,"updated_at":null,"message_metadata":null}"#
        let m = try XCTUnwrap(fast(compact))
        XCTAssertEqual(m.content, "aé😀")
        XCTAssertEqual(m.messageMetadata, .emptyObject)
        XCTAssertEqual(m, try DocumentCoding.makeDecoder().decode(ChatMessage.self, from: Data(compact.utf8)))
    }

    func testGivesUpOnAnythingElse() {
        let good = #"{"id":"x","chat_id":"c","sequence_order":1,"role":"user","content":"a","created_at":"2026-11-20T10:00:00.000Z"}"#
        XCTAssertNotNil(fast(good))
        for bad in [
            good.replacingOccurrences(of: #""role":"user""#, with: #""role":"robot""#),        // not a role
            good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":1.5"#),  // not an integer
            good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":"1""#),  // not a number
            good.replacingOccurrences(of: #""id":"x","#, with: #""id":"x","id":"y","#),          // a key twice
            good.replacingOccurrences(of: #""id":"x""#, with: #""id" "x""#),                      // no colon
            good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","extra":1"#),  // an unknown field
            good.replacingOccurrences(of: #","content":"a""#, with: ""),                          // a required field missing
            good.replacingOccurrences(of: "2026-11-20T10:00:00.000Z", with: "yesterday"),         // not a time
            good + "x",                                                                            // trailing bytes
            String(good.dropLast()),                                                               // cut short
            "[]", "", "{}",
        ] {
            XCTAssertNil(fast(bad), bad)
        }
    }
}

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

    /// Members come in the order of their keys' UTF-8 bytes (code points, not UTF-16 units),
    /// at every depth, each with its own value.
    func testObjectMembersAreInTheirKeysUTF8ByteOrder() throws {
        let keys = ["b", "a", "B", "é", "z", "aa", "a b", "\u{10000}", "\u{FFFF}", "_", "~"]
        var members: [String: JSONValue] = [:]
        for (i, k) in keys.enumerated() { members[k] = .int(Int64(i)) }
        members["nested"] = .object(["y": .bool(true), "x": .null])
        let text = String(decoding: CanonicalJSON.serialize(.object(members)), as: UTF8.self)
        let expected = ["B", "_", "a", "a b", "aa", "b", "nested", "z", "~", "é", "\u{FFFF}", "\u{10000}"].map { k in
            k == "nested" ? "  \"nested\": {\n    \"x\": null,\n    \"y\": true\n  }" : "  \"\(k)\": \(keys.firstIndex(of: k)!)"
        }
        XCTAssertEqual(text, "{\n" + expected.joined(separator: ",\n") + "\n}\n")
    }

    /// The quick way messages become bytes gives exactly what the Encodable round trip gives.
    func testQuickMessageEncodingAgreesWithTheRoundTrip() throws {
        func roundTrip(_ m: ChatMessage) throws -> Data {
            let compact = JSONEncoder()
            compact.outputFormatting = [.sortedKeys]
            return CanonicalJSON.serialize(try JSONDecoder().decode(JSONValue.self, from: compact.encode(m)))
        }
        let t = Timestamp(milliseconds: 1_790_000_000_123)
        let texts = ["", "hello", "quotes \" backslash \\ tab \t newline \n é ü 中文 😀 \u{1} \u{7F} \u{2028}", String(repeating: "long ", count: 500)]
        let metadata: [JSONValue] = [.emptyObject, .object(["model": .string("x"), "n": .int(-3), "big": .int(Int64.max), "ok": .bool(false),
                                                             "list": .array([.null, .string("s"), .object(["z": .int(0), "a": .array([])])])]),
                                     .object(["f": .double(1.5), "g": .double(2.0)])]
        var count = 0
        for (i, text) in texts.enumerated() {
            for meta in metadata {
                for userID in [nil, "alice"] {
                    for updated in [nil, t.adding(milliseconds: 5)] {
                        let m = ChatMessage(id: "m\(i)", chatID: "chat-1", userID: userID, sequenceOrder: i * 1000 + 1, role: MessageRole.allCases[i % MessageRole.allCases.count],
                                            content: text, messageMetadata: meta, createdAt: t, updatedAt: updated)
                        XCTAssertEqual(try DocumentCoding.encode(m), try roundTrip(m), "\(m)")
                        count += 1
                    }
                }
            }
        }
        XCTAssertEqual(count, 48)
        XCTAssertFalse(metadata[1].containsDouble)
        XCTAssertTrue(metadata[2].containsDouble)
    }

    func testGivesUpOnAnythingElse() {
        let good = #"{"id":"x","chat_id":"c","sequence_order":1,"role":"user","content":"a","created_at":"2026-11-20T10:00:00.000Z"}"#
        XCTAssertNotNil(fast(good))
        // Bytes that are not UTF-8 inside a string.
        var invalid = Array(good.utf8)
        invalid[invalid.firstIndex(of: UInt8(ascii: "a"))!] = 0xFF
        XCTAssertNil(invalid.withUnsafeBytes { ChatMessage.fastDecode($0) })
        XCTAssertNotNil(fast(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":{"x":-0.25,"y":[1,2e-3,-7],"z":"é"}"#)))
        var bads: [String] = []
        bads.append(good.replacingOccurrences(of: #""role":"user""#, with: #""role":"robot""#))
        bads.append(good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":1.5"#))
        bads.append(good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":"1""#))
        bads.append(good.replacingOccurrences(of: #""id":"x","#, with: #""id":"x","id":"y","#))
        bads.append(good.replacingOccurrences(of: #""id":"x""#, with: #""id" "x""#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","extra":1"#))
        bads.append(good.replacingOccurrences(of: #","content":"a""#, with: ""))
        bads.append(good.replacingOccurrences(of: "2026-11-20T10:00:00.000Z", with: "yesterday"))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","user_id":"u","user_id":"v""#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":{"k":1,"k":2}"#))
        bads.append(good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":01"#))
        bads.append(good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":+1"#))
        bads.append(good.replacingOccurrences(of: #""sequence_order":1"#, with: #""sequence_order":1.0"#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":{"x":.5}"#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":{"x":1.}"#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":{"x":1e2}"#))
        bads.append(good.replacingOccurrences(of: #""content":"a""#, with: #""content":"a","message_metadata":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600)))
        bads.append(good + "x")
        bads.append(String(good.dropLast()))
        bads.append(contentsOf: ["[]", "", "{}"])
        for bad in bads {
            XCTAssertNil(fast(bad), bad)
        }
    }

    /// Chat order is (created_at, id): placed by sequence number when the numbers are exactly
    /// 1…N in that order, sorted otherwise (numbers missing, repeated, or out of order).
    func testMessagesComeInChatOrderWhateverTheirNumbers() {
        let t = Timestamp(milliseconds: 1_790_000_000_000)
        func m(_ id: String, _ seq: Int, _ ms: Int64) -> ChatMessage {
            ChatMessage(id: id, chatID: "c", sequenceOrder: seq, role: .user, content: id, createdAt: t.adding(milliseconds: ms))
        }
        let inOrder = [m("a", 1, 0), m("b", 2, 5), m("c", 3, 5), m("d", 4, 9)]
        let expected = inOrder.map(\.id)
        XCTAssertEqual(Store.sortedInChatOrder(inOrder.shuffled()).map(\.id), expected)
        XCTAssertEqual(Store.sortedInChatOrder([inOrder[2], inOrder[0], inOrder[3], inOrder[1]]).map(\.id), expected)
        // Numbers that disagree with the times: the times decide.
        XCTAssertEqual(Store.sortedInChatOrder([m("x", 1, 50), m("y", 2, 10), m("z", 3, 30)]).map(\.id), ["y", "z", "x"])
        // Same time: the id decides, whatever the numbers.
        XCTAssertEqual(Store.sortedInChatOrder([m("b", 1, 0), m("a", 2, 0)]).map(\.id), ["a", "b"])
        // A gap, a repeat, a number past N.
        XCTAssertEqual(Store.sortedInChatOrder([m("p", 1, 3), m("q", 3, 1)]).map(\.id), ["q", "p"])
        XCTAssertEqual(Store.sortedInChatOrder([m("p", 2, 3), m("q", 2, 1)]).map(\.id), ["q", "p"])
        XCTAssertEqual(Store.sortedInChatOrder([m("p", 1, 3), m("q", 9, 1)]).map(\.id), ["q", "p"])
        XCTAssertEqual(Store.sortedInChatOrder([]).map(\.id), [])
        XCTAssertEqual(Store.sortedInChatOrder([m("only", 7, 0)]).map(\.id), ["only"])
        // Longer ones, shuffled: every cycle of the permutation is followed.
        var rng = SystemRandomNumberGenerator()
        for n in [2, 3, 17, 1_000] {
            let many = (0..<n).map { m(String(format: "m%05d", $0), $0 + 1, Int64($0 / 3)) }
            XCTAssertEqual(Store.sortedInChatOrder(many.shuffled(using: &rng)).map(\.id), many.map(\.id))
            // Numbers that do not help (all 1): sorted by time, then id.
            let unnumbered = many.map { var x = $0; x.sequenceOrder = 1; return x }
            XCTAssertEqual(Store.sortedInChatOrder(unnumbered.shuffled(using: &rng)).map(\.id), many.map(\.id))
        }
    }

    /// Strings are read eight bytes at a time and copied between escapes in runs: contents of
    /// every kind and length, written the canonical way and by JSONEncoder (which also escapes
    /// `/`), read back the same as JSONDecoder reads them.
    func testStringsOfEveryKindReadAsJSONDecoderReadsThem() throws {
        let pieces = ["a", "bcdefghij", "\"", "\\", "/", "\n", "\t", "\r", "\u{1}", "\u{1F}", "\u{7F}", "é", "中文", "😀", "\u{2028}", " ", "0123456789abcdef"]
        var rng = SystemRandomNumberGenerator()
        let t = Timestamp(milliseconds: 1_790_000_000_123)
        let plain = JSONEncoder()
        for round in 0..<2_000 {
            var content = ""
            for _ in 0..<Int.random(in: 0...(round % 40), using: &rng) { content += pieces.randomElement(using: &rng)! }
            let m = ChatMessage(id: "m\(round)", chatID: "c", sequenceOrder: round + 1, role: .user, content: content, createdAt: t)
            for data in [try DocumentCoding.encode(m), try plain.encode(m)] {
                let viaFast = data.withUnsafeBytes { ChatMessage.fastDecode($0) }
                XCTAssertEqual(viaFast?.content, content, String(decoding: data, as: UTF8.self))
                XCTAssertEqual(viaFast, try DocumentCoding.makeDecoder().decode(ChatMessage.self, from: data))
            }
        }
        let good = #"{"id":"x","chat_id":"c","sequence_order":1,"role":"user","content":"CONTENT","created_at":"2026-11-20T10:00:00.000Z"}"#
        func read(_ content: [UInt8]) -> String? {
            var bytes = Array(good.utf8)
            let at = bytes.indices.first { bytes[$0...].starts(with: Array("CONTENT".utf8)) }!
            bytes.replaceSubrange(at..<(at + 7), with: content)
            return bytes.withUnsafeBytes { ChatMessage.fastDecode($0) }?.content
        }
        XCTAssertEqual(read(Array(#"ab\n\u00e9\ud83d\ude00\/"#.utf8)), "ab\né😀/")
        // A raw control character, or a byte that is not UTF-8, at any place in an eight-byte
        // block, before and after an escape: given up on.
        for place in 0..<20 {
            for bad: UInt8 in [0x01, 0x0A, 0x1F, 0xFF, 0xC3] {
                var text = Array(String(repeating: "x", count: 20).utf8)
                text[place] = bad
                XCTAssertNil(read(text), "\(bad) at \(place)")
                XCTAssertNil(read(Array(#"\n"#.utf8) + text), "\(bad) at \(place) after an escape")
                XCTAssertNotNil(read(Array(String(repeating: "x", count: 20).utf8) + Array(#"\n"#.utf8)))
            }
        }
        // Escapes that JSON does not have, or that end too soon.
        for bad in [#"\x"#, #"\u12"#, #"\u12g4"#, #"\ud83d"#, #"\ude00"#, #"\ud83dx"#, #"\ud83d\u0041"#, #"a\"#, "\\\u{7}"] {
            XCTAssertNil(read(Array(bad.utf8)), bad)
        }
    }
}

import Foundation

/// What JSONDecoder lets pass in JSON given by a person, checked on the text: a key twice in one
/// object (JSONDecoder keeps the first, most readers the last, so two readers would disagree on
/// the document) and an integer outside 64 bits (it would be stored as an approximate float).
/// The text must already be valid JSON (JSONDecoder read it).
public enum StrictJSON {
    /// Throws `invalid` naming the field (its path from the top, `context_data.a`, or `field`
    /// when given) and the rule.
    public static func check(_ data: Data, field: String? = nil) throws {
        try data.withUnsafeBytes { raw in
            var scanner = Scanner(b: raw)
            if let (path, rule) = scanner.run() {
                let name = [field, path.isEmpty ? nil : path].compactMap { $0 }.joined(separator: ".")
                throw ChatSyncError.invalid(field: name.isEmpty ? "body" : name, rule: rule)
            }
        }
    }

    private struct Scanner {
        let b: UnsafeRawBufferPointer
        var i = 0

        mutating func run() -> (String, String)? {
            if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { i = 3 }  // a byte order mark
            return value(path: [])
        }

        mutating func space() { while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 } }

        mutating func value(path: [String]) -> (String, String)? {
            space()
            guard i < b.count else { return nil }
            switch b[i] {
            case 0x7B:
                i += 1
                var keys = Set<String>()
                space()
                if i < b.count, b[i] == 0x7D { i += 1; return nil }
                while i < b.count {
                    space()
                    let key = string()
                    let here = path + [key]
                    if !keys.insert(key).inserted { return (here.joined(separator: "."), "is given twice in one object") }
                    space(); i += 1  // ':'
                    if let p = value(path: here) { return p }
                    space()
                    guard i < b.count else { return nil }
                    if b[i] == 0x2C { i += 1; continue }
                    i += 1  // '}'
                    return nil
                }
                return nil
            case 0x5B:
                i += 1
                space()
                if i < b.count, b[i] == 0x5D { i += 1; return nil }
                var n = 0
                while i < b.count {
                    if let p = value(path: path + ["\(n)"]) { return p }
                    n += 1
                    space()
                    guard i < b.count else { return nil }
                    if b[i] == 0x2C { i += 1; continue }
                    i += 1  // ']'
                    return nil
                }
                return nil
            case 0x22:
                _ = string()
                return nil
            default:
                let start = i
                var integer = true
                while i < b.count, let c = Optional(b[i]), c == 0x2D || c == 0x2B || c == 0x2E || c == 0x65 || c == 0x45 || (c >= 0x30 && c <= 0x39)
                    || (c >= 0x61 && c <= 0x7A) {
                    if c == 0x2E || c == 0x65 || c == 0x45 { integer = false }
                    if c >= 0x61 && c <= 0x7A && c != 0x65 { integer = false }  // true, false, null
                    i += 1
                }
                if integer, i > start {
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
                    if Int64(text) == nil {
                        return (path.joined(separator: "."), "must be an integer between -9223372036854775808 and 9223372036854775807 (64 bits), got \(text.prefix(40))")
                    }
                }
                return nil
            }
        }

        /// Reads a string (at its opening quote) and returns it unescaped.
        mutating func string() -> String {
            let start = i
            i += 1
            var escaped = false
            while i < b.count {
                let c = b[i]
                if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { break }
                i += 1
            }
            i += 1
            let text = UnsafeRawBufferPointer(rebasing: b[start..<min(i, b.count)])
            if !text.contains(0x5C) { return String(decoding: text.dropFirst().dropLast(), as: UTF8.self) }
            return (try? JSONDecoder().decode(String.self, from: Data(text))) ?? String(decoding: text, as: UTF8.self)
        }
    }
}

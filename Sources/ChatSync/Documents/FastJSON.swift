import Foundation

/// A small, fast JSON reader for the hot read path (a chat's messages). It returns nil on
/// anything it does not expect; callers then fall back to `JSONDecoder`, which also gives the
/// precise error. It never decides validity on its own.
struct FastJSON {
    private let b: UnsafeRawBufferPointer
    private var i = 0
    /// How deep in objects and arrays the reader is (JSONDecoder stops at 512).
    private var depth = 0

    private init(_ b: UnsafeRawBufferPointer) { self.b = b }

    static func parse(_ bytes: UnsafeRawBufferPointer) -> JSONValue? {
        var p = FastJSON(bytes)
        guard let v = p.value() else { return nil }
        p.skipSpace()
        return p.i == p.b.count ? v : nil
    }

    private mutating func skipSpace() {
        while i < b.count {
            let c = b[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    private mutating func value() -> JSONValue? {
        skipSpace()
        guard i < b.count else { return nil }
        switch b[i] {
        case 0x7B: return object()
        case 0x5B: return array()
        case 0x22: return string().map { .string($0) }
        case 0x74: return literal("true", .bool(true))
        case 0x66: return literal("false", .bool(false))
        case 0x6E: return literal("null", .null)
        default: return number()
        }
    }

    private mutating func literal(_ word: StaticString, _ v: JSONValue) -> JSONValue? {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { return nil }
        for k in 0..<n where b[i + k] != word.utf8Start[k] { return nil }
        i += n
        return v
    }

    private mutating func object() -> JSONValue? {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= 512 else { return nil }
        var dict: [String: JSONValue] = [:]
        skipSpace()
        if i < b.count && b[i] == 0x7D { i += 1; return .object(dict) }
        while true {
            skipSpace()
            guard i < b.count, b[i] == 0x22, let key = string() else { return nil }
            skipSpace()
            guard i < b.count, b[i] == 0x3A else { return nil }
            i += 1
            // A key twice: JSONDecoder decides (it keeps the first).
            guard let v = value(), dict[key] == nil else { return nil }
            dict[key] = v
            skipSpace()
            guard i < b.count else { return nil }
            if b[i] == 0x2C { i += 1; continue }
            if b[i] == 0x7D { i += 1; return .object(dict) }
            return nil
        }
    }

    private mutating func array() -> JSONValue? {
        i += 1
        depth += 1
        defer { depth -= 1 }
        guard depth <= 512 else { return nil }
        var items: [JSONValue] = []
        skipSpace()
        if i < b.count && b[i] == 0x5D { i += 1; return .array(items) }
        while true {
            guard let v = value() else { return nil }
            items.append(v)
            skipSpace()
            guard i < b.count else { return nil }
            if b[i] == 0x2C { i += 1; continue }
            if b[i] == 0x5D { i += 1; return .array(items) }
            return nil
        }
    }

    /// The index of the first byte from `from` on that a string cannot hold as it is: a quote,
    /// a backslash or a control character (`b.count` when there is none). `ascii` turns false
    /// when a byte past 0x7F is passed over. Eight bytes are looked at a time: a byte's high
    /// bit in `special` says it matched (the lowest such byte is always a real match; bits above
    /// it can be borrows).
    private func plainRun(from: Int, ascii: inout Bool) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var k = from
        var high: UInt64 = 0
        while k + 8 <= b.count {
            let x = b.loadUnaligned(fromByteOffset: k, as: UInt64.self).littleEndian
            let q = x ^ (0x22 &* ones), e = x ^ (0x5C &* ones)
            let special = ((q &- ones) & ~q | (e &- ones) & ~e | (x &- 0x20 &* ones) & ~x) & highs
            if special != 0 {
                let before = special.trailingZeroBitCount & ~7
                if before > 0 { high |= x & (UInt64.max >> (64 - before)) }
                if high & highs != 0 { ascii = false }
                return k + before / 8
            }
            high |= x
            k += 8
        }
        if high & highs != 0 { ascii = false }
        while k < b.count {
            let c = b[k]
            if c == 0x22 || c == 0x5C || c < 0x20 { return k }
            if c >= 0x80 { ascii = false }
            k += 1
        }
        return k
    }

    private mutating func string() -> String? {
        i += 1
        let start = i
        var ascii = true
        i = plainRun(from: i, ascii: &ascii)
        guard i < b.count else { return nil }
        switch b[i] {
        case 0x22:
            let bytes = UnsafeRawBufferPointer(rebasing: b[start..<i])
            // Bytes that are not UTF-8: JSONDecoder decides (it refuses them).
            guard let s = ascii ? String(decoding: bytes, as: UTF8.self) : String(validating: bytes, as: UTF8.self) else { return nil }
            i += 1
            return s
        case 0x5C: return escapedString(from: start, ascii: ascii)
        default: return nil  // a control character
        }
    }

    /// The rest of a string with escapes in it (`i` at the first backslash; `ascii`, whether
    /// the text before it is). The text between escapes is copied in runs; the unescaped text
    /// is never longer than the escaped one, so the bytes left bound the buffer.
    private mutating func escapedString(from start: Int, ascii: Bool) -> String? {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: b.count - start) { out -> String? in
            let base = out.baseAddress!
            var n = 0
            var run = start
            var ascii = ascii
            func put(_ c: UInt8) { base[n] = c; n += 1 }
            while true {
                i = plainRun(from: i, ascii: &ascii)
                guard i < b.count, b[i] == 0x5C || b[i] == 0x22 else { return nil }
                UnsafeMutableRawPointer(base + n).copyMemory(from: b.baseAddress! + run, byteCount: i - run)
                n += i - run
                if b[i] == 0x22 { break }
                guard i + 1 < b.count else { return nil }
                let e = b[i + 1]
                i += 2
                switch e {
                case 0x22: put(0x22)
                case 0x5C: put(0x5C)
                case 0x2F: put(0x2F)
                case 0x62: put(0x08)
                case 0x66: put(0x0C)
                case 0x6E: put(0x0A)
                case 0x72: put(0x0D)
                case 0x74: put(0x09)
                case 0x75:
                    guard var scalar = hex4() else { return nil }
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 1 < b.count, b[i] == 0x5C, b[i + 1] == 0x75 else { return nil }
                        i += 2
                        guard let low = hex4(), (0xDC00..<0xE000).contains(low) else { return nil }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        return nil
                    }
                    guard let u = Unicode.Scalar(scalar) else { return nil }
                    for unit in UTF8.encode(u)! { put(unit) }
                default: return nil
                }
                run = i
            }
            i += 1
            let text = UnsafeBufferPointer(start: UnsafePointer(base), count: n)
            // Escapes give valid UTF-8; the runs between them are checked unless all ASCII.
            return ascii ? String(decoding: text, as: UTF8.self) : String(validating: text, as: UTF8.self)
        }
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            default: return nil
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func number() -> JSONValue? {
        // JSON's grammar exactly: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
        let start = i
        func digits() -> Int {
            let from = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            return i - from
        }
        if i < b.count && b[i] == 0x2D { i += 1 }
        guard i < b.count, b[i] >= 0x30, b[i] <= 0x39 else { return nil }
        if b[i] == 0x30 { i += 1 } else { _ = digits() }
        var isInteger = true
        if i < b.count && b[i] == 0x2E {
            i += 1
            guard digits() > 0 else { return nil }
            isInteger = false
        }
        if i < b.count && (b[i] == 0x65 || b[i] == 0x45) {
            i += 1
            if i < b.count && (b[i] == 0x2B || b[i] == 0x2D) { i += 1 }
            guard digits() > 0 else { return nil }
            isInteger = false
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        if isInteger, let v = Int64(text) { return .int(v) }
        // Whole numbers written as fractions or exponents: JSONDecoder decides how to read them.
        guard !isInteger, let d = Double(text), d.isFinite, d.rounded() != d else { return nil }
        return .double(d)
    }
}

extension FastJSON {
    /// Whether the key starting at `i` (just after its opening quote) is `key` followed by the
    /// closing quote; moves past it when so.
    private mutating func key(_ key: StaticString) -> Bool {
        let n = key.utf8CodeUnitCount
        guard i + n < b.count, b[i + n] == 0x22 else { return false }
        for k in 0..<n where b[i + k] != key.utf8Start[k] { return false }
        i += n + 1
        skipSpace()
        // The colon; without one, the value that follows fails to read.
        if i < b.count && b[i] == 0x3A { i += 1 } else { i = b.count }
        return true
    }

    private mutating func timestamp() -> Timestamp?? {
        skipSpace()
        guard i < b.count else { return nil }
        if b[i] == 0x6E { return literal("null", .null) == nil ? nil : .some(nil) }
        guard b[i] == 0x22, let text = string(), let t = Timestamp(rfc3339: text) else { return nil }
        return .some(t)
    }

    private mutating func stringValue() -> String? {
        skipSpace()
        guard i < b.count, b[i] == 0x22 else { return nil }
        return string()
    }

    private mutating func integer() -> Int? {
        skipSpace()
        guard case .int(let v)? = number() else { return nil }
        return Int(exactly: v)
    }

    /// A stored message, reading its fields straight from the bytes (no dictionary of values).
    static func message(_ bytes: UnsafeRawBufferPointer) -> ChatMessage? {
        var p = FastJSON(bytes)
        var id: String?, chatID: String?, userID: String?, content: String?, role: MessageRole?
        var seq: Int?, createdAt: Timestamp?, updatedAt: Timestamp?
        var metadata: JSONValue = .emptyObject
        var seenOptional: UInt8 = 0
        func first(_ bit: UInt8) -> Bool {
            defer { seenOptional |= bit }
            return seenOptional & bit == 0
        }
        p.skipSpace()
        guard p.i < p.b.count, p.b[p.i] == 0x7B else { return nil }
        p.i += 1
        p.skipSpace()
        if p.i < p.b.count && p.b[p.i] == 0x7D { return nil }
        while true {
            p.skipSpace()
            guard p.i < p.b.count, p.b[p.i] == 0x22 else { return nil }
            p.i += 1
            let ok: Bool
            if p.key("id") { ok = id == nil && { id = p.stringValue(); return id != nil }() }
            else if p.key("chat_id") { ok = chatID == nil && { chatID = p.stringValue(); return chatID != nil }() }
            else if p.key("content") { ok = content == nil && { content = p.stringValue(); return content != nil }() }
            else if p.key("role") { ok = role == nil && { role = p.stringValue().flatMap(MessageRole.init(rawValue:)); return role != nil }() }
            else if p.key("sequence_order") { ok = seq == nil && { seq = p.integer(); return seq != nil }() }
            else if p.key("created_at") { ok = createdAt == nil && { createdAt = p.timestamp() ?? nil; return createdAt != nil }() }
            else if p.key("updated_at") {
                guard first(1), let t = p.timestamp() else { return nil }
                updatedAt = t
                ok = true
            } else if p.key("user_id") {
                guard first(2) else { return nil }
                p.skipSpace()
                if p.i < p.b.count && p.b[p.i] == 0x6E { ok = p.literal("null", .null) != nil } else { userID = p.stringValue(); ok = userID != nil }
            } else if p.key("message_metadata") {
                guard first(4) else { return nil }
                p.skipSpace()
                guard let v = p.value() else { return nil }
                if case .null = v { metadata = .emptyObject } else { metadata = v }
                ok = true
            } else {
                // A key this reader does not know: let JSONDecoder decide.
                return nil
            }
            guard ok else { return nil }
            p.skipSpace()
            guard p.i < p.b.count else { return nil }
            if p.b[p.i] == 0x2C { p.i += 1; continue }
            if p.b[p.i] == 0x7D { p.i += 1; break }
            return nil
        }
        p.skipSpace()
        guard p.i == p.b.count, let id, let chatID, let seq, let role, let content, let createdAt else { return nil }
        return ChatMessage(id: id, chatID: chatID, userID: userID, sequenceOrder: seq, role: role, content: content,
                           messageMetadata: metadata, createdAt: createdAt, updatedAt: updatedAt)
    }
}

extension ChatMessage {
    /// Reads a stored message quickly; nil when the bytes are anything but a well-formed
    /// message (the caller then uses `JSONDecoder`, which names the problem).
    static func fastDecode(_ bytes: UnsafeRawBufferPointer) -> ChatMessage? { FastJSON.message(bytes) }
}
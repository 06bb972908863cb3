import Foundation

/// The stored form of a JSON value: two-space indentation, keys sorted by their UTF-8 bytes,
/// `"key": value`, empty containers as `{}` and `[]`, non-ASCII text as UTF-8 (not escaped),
/// a trailing newline. The same bytes as Python's
/// `json.dumps(v, indent=2, sort_keys=True, ensure_ascii=False) + "\n"` for the documents
/// chatsync stores, so that any language can write a file chatsync reads as unchanged.
public enum CanonicalJSON {
    public static func serialize(_ value: JSONValue) -> Data {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        write(value, indent: 0, into: &out)
        out.append(0x0A)
        return Data(out)
    }

    private static func write(_ v: JSONValue, indent: Int, into out: inout [UInt8]) {
        switch v {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .double(let d):
            if !d.isFinite { write(.null, indent: indent, into: &out) }
            else if d == d.rounded(), abs(d) < 1e16 { out.append(contentsOf: "\(Int64(d)).0".utf8) }
            else { out.append(contentsOf: "\(d)".utf8) }
        case .string(let s): writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += [0x5B, 0x5D]; return }
            out.append(0x5B)
            for (i, item) in a.enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(indent + 2, &out)
                write(item, indent: indent + 2, into: &out)
            }
            newline(indent, &out)
            out.append(0x5D)
        case .object(let o):
            if o.isEmpty { out += [0x7B, 0x7D]; return }
            out.append(0x7B)
            // Members by their keys' UTF-8 bytes (compared in place, no copies).
            for (i, member) in o.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
                if i > 0 { out.append(0x2C) }
                newline(indent + 2, &out)
                writeString(member.key, into: &out)
                out += [0x3A, 0x20]
                write(member.value, indent: indent + 2, into: &out)
            }
            newline(indent, &out)
            out.append(0x7D)
        }
    }

    private static func newline(_ indent: Int, _ out: inout [UInt8]) {
        out.append(0x0A)
        out += repeatElement(0x20, count: indent)
    }

    private static let hex = Array("0123456789abcdef".utf8)

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0x08: out += [0x5C, 0x62]
            case 0x0C: out += [0x5C, 0x66]
            case 0..<0x20, 0x7F:
                out += [0x5C, 0x75, 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(0x22)
    }
}

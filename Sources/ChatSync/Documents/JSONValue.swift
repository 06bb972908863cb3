import Foundation

/// Any JSON value, for the fields the data model leaves open (metadata, context, results).
/// Integers stay integers, so a document read and written again keeps its bytes.
public enum JSONValue: Hashable, Sendable, Codable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public static let emptyObject = JSONValue.object([:])

    /// How many arrays and objects are nested in the value (0 for a scalar), counted no further than `limit`.
    public func nestingDepth(upTo limit: Int) -> Int {
        guard limit > 0 else { return 0 }
        switch self {
        case .array(let a): return 1 + (a.lazy.map { $0.nestingDepth(upTo: limit - 1) }.max() ?? 0)
        case .object(let o): return 1 + (o.values.lazy.map { $0.nestingDepth(upTo: limit - 1) }.max() ?? 0)
        default: return 0
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else if let o = try? c.decode([String: JSONValue].self) { self = .object(o) }
        else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "is not a JSON value") }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public var isObject: Bool { if case .object = self { return true } else { return false } }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }

    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// Parses JSON text given by a person (a `--metadata` option, a request body field): a key
    /// given twice in an object, or an integer outside 64 bits, is refused.
    /// `field` names the field in the error.
    public static func parse(_ text: String, field: String) throws -> JSONValue {
        guard let data = text.data(using: .utf8), !text.isEmpty else {
            throw ChatSyncError.invalid(field: field, rule: "must be JSON text, got nothing")
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ChatSyncError.invalid(field: field, rule: "must be valid JSON (\(describeDecodingError(error)))")
        }
        try StrictJSON.check(data, field: field)
        return value
    }

    /// Parses JSON text that must be an object.
    public static func parseObject(_ text: String, field: String) throws -> JSONValue {
        let v = try parse(text, field: field)
        guard v.isObject else { throw ChatSyncError.invalid(field: field, rule: "must be a JSON object ({...})") }
        return v
    }

    /// Compact JSON text with sorted keys.
    public var compactText: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}

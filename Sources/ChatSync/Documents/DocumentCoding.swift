import Foundation

extension CodingUserInfoKey {
    /// When set to true, decoding a document refuses fields the data model does not name.
    static let strictKeys = CodingUserInfoKey(rawValue: "chatsync.strictKeys")!
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Refuses a field the data model does not name (a typo like `titel` must not be dropped silently).
func rejectUnknownKeys(_ decoder: Decoder, _ known: [String]) throws {
    guard decoder.userInfo[.strictKeys] as? Bool == true else { return }
    let c = try decoder.container(keyedBy: AnyKey.self)
    for key in c.allKeys where !known.contains(key.stringValue) {
        throw ChatSyncError.invalid(field: key.stringValue, rule: "is not a field of this document (fields: \(known.joined(separator: ", ")))")
    }
}

/// The one way documents become bytes and back: pretty-printed JSON with sorted keys and a
/// trailing newline, so that the same document always has the same bytes and diffs show only
/// what changed.
public enum DocumentCoding {
    public static func makeDecoder(strict: Bool = false) -> JSONDecoder {
        let d = JSONDecoder()
        if strict { d.userInfo[.strictKeys] = true }
        return d
    }

    /// The stored bytes of any encodable value, in canonical form (`CanonicalJSON`).
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        if let v = value as? JSONValue { return CanonicalJSON.serialize(v) }
        let compact = JSONEncoder()
        compact.outputFormatting = [.sortedKeys]
        let tree = try JSONDecoder().decode(JSONValue.self, from: compact.encode(value))
        return CanonicalJSON.serialize(tree)
    }

    /// Reads a document written by chatsync (lenient about unknown fields, so that newer
    /// writers' additions do not break older readers).
    public static func decode<D: Decodable>(_ type: D.Type, from data: Data, decoder: JSONDecoder? = nil) throws -> D {
        try (decoder ?? makeDecoder()).decode(type, from: data)
    }

    /// Reads a document given by a person (a request body, a file edited by hand): unknown
    /// fields are refused, and every rule of the data model is checked.
    public static func decodeInput<D: Document>(_ type: D.Type, from data: Data, limits: DocumentLimits = .default) throws -> D {
        let doc: D
        do {
            doc = try makeDecoder(strict: true).decode(type, from: data)
        } catch {
            throw invalidInput(from: error, document: D.kind.rawValue)
        }
        try doc.validate(limits)
        return doc
    }
}

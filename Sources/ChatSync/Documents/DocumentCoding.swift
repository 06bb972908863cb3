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
        // Messages, the document written most, skip the round trip through JSON text; a
        // number with a fraction in the metadata takes it (JSON text is what turns 1.0 into 1).
        if let m = value as? ChatMessage, !m.messageMetadata.containsDouble { return CanonicalJSON.serialize(m.canonicalValue) }
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
        try StrictJSON.check(data)
        try doc.validate(limits)
        return doc
    }
}

extension ChatMessage {
    /// The message as the JSON value its stored bytes hold (the fields `encode(to:)` writes,
    /// absent optionals left out). A test keeps it equal to the Encodable round trip.
    var canonicalValue: JSONValue {
        var o: [String: JSONValue] = [
            CodingKeys.id.stringValue: .string(id),
            CodingKeys.chatID.stringValue: .string(chatID),
            CodingKeys.sequenceOrder.stringValue: .int(Int64(sequenceOrder)),
            CodingKeys.role.stringValue: .string(role.rawValue),
            CodingKeys.content.stringValue: .string(content),
            CodingKeys.messageMetadata.stringValue: messageMetadata,
            CodingKeys.createdAt.stringValue: .string(createdAt.rfc3339),
        ]
        if let userID { o[CodingKeys.userID.stringValue] = .string(userID) }
        if let updatedAt { o[CodingKeys.updatedAt.stringValue] = .string(updatedAt.rfc3339) }
        return .object(o)
    }
}

extension JSONValue {
    /// Whether a double is anywhere in the value.
    var containsDouble: Bool {
        switch self {
        case .double: return true
        case .array(let a): return a.contains { $0.containsDouble }
        case .object(let o): return o.values.contains { $0.containsDouble }
        default: return false
        }
    }
}

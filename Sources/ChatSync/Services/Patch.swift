import Foundation

/// Applies a partial update, given as a JSON object of fields, to a document: the result is
/// decoded and validated like any input, so an update names the field it got wrong.
enum Patch {
    static func apply<D: Document>(_ patch: [String: JSONValue], to doc: D, immutable: Set<String>, limits: DocumentLimits) throws -> D {
        for key in patch.keys.sorted() {
            guard D.fieldNames.contains(key) else {
                throw ChatSyncError.invalid(field: key, rule: "is not a field of \(D.kind.rawValue) (fields: \(D.fieldNames.joined(separator: ", ")))")
            }
            guard !immutable.contains(key) else {
                throw ChatSyncError.invalid(field: key, rule: "cannot be changed by an update")
            }
        }
        let encoded = try DocumentCoding.makeDecoder().decode(JSONValue.self, from: DocumentCoding.encode(doc))
        guard case .object(var fields) = encoded else { throw ChatSyncError.storage("document did not encode as an object") }
        for (k, v) in patch {
            if v == .null { fields.removeValue(forKey: k) } else { fields[k] = v }
        }
        let data = try DocumentCoding.encode(JSONValue.object(fields))
        let result = try DocumentCoding.decodeInput(D.self, from: data, limits: limits)
        let removed = patch.filter { $0.value == .null }.keys.sorted()
        if !removed.isEmpty { try refuseRemovedFields(removed, written: try DocumentCoding.encode(result), kind: D.kind) }
        return result
    }

    /// null removes an optional field; a field the document always has is refused (its default
    /// would silently come back in `written`, the document as the model writes it). The error
    /// names `field`, or else the removed field.
    static func refuseRemovedFields(_ removed: [String], written: Data, kind: DocumentKind, field: String? = nil) throws {
        guard case .object(let fields)? = written.withUnsafeBytes({ FastJSON.parse($0) }) else { return }
        for key in removed where fields[key] != nil {
            throw ChatSyncError.invalid(field: field ?? key, rule: "\(key) cannot be removed (null): a \(kind.rawValue) always has it")
        }
    }
}

/// Builds a patch from optional values, leaving out what was not given.
public struct PatchBuilder {
    public private(set) var fields: [String: JSONValue] = [:]
    public init() {}
    public mutating func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
    public mutating func set(_ key: String, _ value: JSONValue?) { if let value { fields[key] = value } }
    public mutating func set(_ key: String, _ value: Bool?) { if let value { fields[key] = .bool(value) } }
    public mutating func set(_ key: String, _ value: Int?) { if let value { fields[key] = .int(Int64(value)) } }
    public mutating func set(_ key: String, _ value: [String]?) { if let value { fields[key] = .array(value.map { .string($0) }) } }
    public mutating func clear(_ key: String) { fields[key] = .null }
}

func short(_ id: String) -> String { id.count > 8 ? String(id.prefix(8)) + "…" : id }

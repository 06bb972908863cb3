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
        // null removes an optional field; a field the document always has (its default would
        // silently come back) is refused.
        let removed = patch.filter { $0.value == .null }.keys
        if !removed.isEmpty, case .object(let written)? = try? DocumentCoding.makeDecoder().decode(JSONValue.self, from: DocumentCoding.encode(result)) {
            for key in removed.sorted() where written[key] != nil {
                throw ChatSyncError.invalid(field: key, rule: "cannot be removed (null): a \(D.kind.rawValue) always has it")
            }
        }
        return result
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

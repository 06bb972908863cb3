import Foundation

/// The data model's field rules, each named in the error it throws.
public enum Rules {
    /// `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`: so that no id can reach outside its folder.
    public static let idPattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"

    public static func isValidID(_ s: String) -> Bool {
        let u = s.utf8
        guard let first = u.first, u.count <= 64, isAlnum(first) else { return false }
        return u.allSatisfy { isAlnum($0) || $0 == 95 || $0 == 45 }
    }

    @inline(__always) static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }

    public static func id(_ s: String, _ field: String) throws {
        guard isValidID(s) else {
            throw ChatSyncError.invalid(field: field, rule: "must match \(idPattern) (letters, digits, _ and -, at most 64, starting with a letter or digit), got \"\(s.prefix(80))\"")
        }
    }

    public static func userID(_ s: String, _ field: String) throws {
        try nonEmpty(s, field, max: 255)
    }

    public static func nonEmpty(_ s: String, _ field: String, max: Int) throws {
        guard !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ChatSyncError.invalid(field: field, rule: "must not be empty")
        }
        guard s.count <= max else { throw ChatSyncError.invalid(field: field, rule: "must be at most \(max) characters, got \(s.count)") }
    }

    public static func name(_ s: String?, _ field: String, _ limits: DocumentLimits) throws {
        guard let s else { return }
        guard s.count <= limits.maxNameLength else {
            throw ChatSyncError.invalid(field: field, rule: "must be at most \(limits.maxNameLength) characters, got \(s.count)")
        }
    }

    public static func requiredName(_ s: String, _ field: String, _ limits: DocumentLimits) throws {
        try nonEmpty(s, field, max: limits.maxNameLength)
    }

    public static func content(_ s: String, _ field: String, _ limits: DocumentLimits) throws {
        let bytes = s.utf8.count
        guard bytes <= limits.maxContentBytes else {
            throw ChatSyncError.invalid(field: field, rule: "must be at most \(limits.maxContentBytes) bytes, got \(bytes)")
        }
    }

    public static func object(_ v: JSONValue, _ field: String) throws {
        guard v.isObject else { throw ChatSyncError.invalid(field: field, rule: "must be a JSON object ({...})") }
        try nesting(v, field)
    }

    /// How deep arrays and objects may nest in one field's value. JSON parsers stop somewhere
    /// (Foundation's at 512 levels, counting the document and whatever a response wraps it in),
    /// so a deeper value could be written but no longer read back or listed.
    public static let maxNesting = 100

    public static func nesting(_ v: JSONValue?, _ field: String) throws {
        guard let v, v.nestingDepth(upTo: maxNesting + 1) > maxNesting else { return }
        throw ChatSyncError.invalid(field: field, rule: "must nest arrays and objects at most \(maxNesting) levels deep")
    }
}

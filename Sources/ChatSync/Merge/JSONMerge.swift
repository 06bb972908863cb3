import Foundation

/// A field changed to different values on the two sides of a merge.
struct FieldConflict: Equatable {
    /// The field's JSON path, e.g. `title` or `message_metadata.tokens`.
    var field: String
    var base: JSONValue?
    /// The value the merge kept (nil: absent).
    var chosen: JSONValue?
    /// The value the merge set aside (nil: absent).
    var other: JSONValue?
}

/// Three-way merge of JSON documents, field by field. Small named rules, each symmetric: the
/// result does not depend on which side is "ours", only on which side wins a conflict
/// (`aWins`), and that is decided by the caller from the documents' content.
enum JSONMerge {
    /// Merges `a` and `b` (nil: absent) against `base`.
    /// - `derived`: top-level fields recomputed after the merge (any value will do; the greater is kept).
    /// - `latest`: top-level timestamps where the later value wins without a conflict.
    static func merge(base: JSONValue?, a: JSONValue?, b: JSONValue?, aWins: Bool,
                      derived: Set<String> = [], latest: Set<String> = [], path: String = "",
                      conflicts: inout [FieldConflict]) -> JSONValue? {
        if a == b { return a }
        if a == base { return b }
        if b == base { return a }
        if path.isEmpty || base == nil || base?.isObject == true,
           case .object(let ao)? = a, case .object(let bo)? = b {
            let bases = base?.objectValue ?? [:]
            var out: [String: JSONValue] = [:]
            for key in Set(ao.keys).union(bo.keys).union(bases.keys) {
                let sub = path.isEmpty ? key : path + "." + key
                let merged: JSONValue?
                if path.isEmpty && derived.contains(key) {
                    merged = greater(ao[key], bo[key])
                } else if path.isEmpty && latest.contains(key) {
                    merged = later(ao[key], bo[key])
                } else {
                    merged = merge(base: bases[key], a: ao[key], b: bo[key], aWins: aWins, path: sub, conflicts: &conflicts)
                }
                if let merged { out[key] = merged }
            }
            return .object(out)
        }
        let chosen = aWins ? a : b
        conflicts.append(FieldConflict(field: path.isEmpty ? "(document)" : path, base: base, chosen: chosen, other: aWins ? b : a))
        return chosen
    }

    /// The greater of two values by their canonical text (a stable, content-only order).
    static func greater(_ a: JSONValue?, _ b: JSONValue?) -> JSONValue? {
        guard let a else { return b }
        guard let b else { return a }
        return a.compactText >= b.compactText ? a : b
    }

    /// The later of two RFC 3339 timestamps (canonical ones sort as text).
    static func later(_ a: JSONValue?, _ b: JSONValue?) -> JSONValue? {
        switch (a, b) {
        case (.string(let x)?, .string(let y)?):
            if let tx = Timestamp(rfc3339: x), let ty = Timestamp(rfc3339: y) { return tx >= ty ? a : b }
            return x >= y ? a : b
        default: return greater(a, b)
        }
    }
}

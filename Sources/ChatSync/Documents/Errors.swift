import Foundation

/// Every error chatsync reports. Each names what failed: the field and the rule it broke,
/// the document that was not found, or the state that forbids the change.
public enum ChatSyncError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Bad input: `field` broke `rule`. Nothing was written.
    case invalid(field: String, rule: String)
    /// No document of this kind with this id.
    case notFound(kind: String, id: String)
    /// The change conflicts with the store's state (for example deleting a chat a session uses).
    case conflict(String)
    /// The folder is not a chatsync store, or its format is newer than this program.
    case badStore(String)
    /// libgit2 or the file system failed.
    case storage(String)
    /// A remote could not be reached, refused the credentials, was not found, or rejected a push.
    case remote(String)

    public var description: String {
        switch self {
        case .invalid(let field, let rule): return "invalid \(field): \(rule)"
        case .notFound(let kind, let id): return "\(kind) \(id) not found"
        case .conflict(let m): return "conflict: \(m)"
        case .badStore(let m): return "not a usable chatsync store: \(m)"
        case .storage(let m): return "storage error: \(m)"
        case .remote(let m): return "remote error: \(m)"
        }
    }

    /// A stable code for machines (the HTTP error body, `--json` errors).
    public var code: String {
        switch self {
        case .invalid: return "invalid_input"
        case .notFound: return "not_found"
        case .conflict: return "conflict"
        case .badStore: return "bad_store"
        case .storage: return "storage_error"
        case .remote: return "remote_error"
        }
    }

    /// The field at fault, when there is one.
    public var field: String? {
        if case .invalid(let f, _) = self { return f }
        return nil
    }
}

/// A coding path as a field name: `chats[0].created_at`.
private func path(_ p: [CodingKey]) -> String {
    p.reduce("") { acc, key in
        if let i = key.intValue { return acc + "[\(i)]" }
        return acc.isEmpty ? key.stringValue : acc + "." + key.stringValue
    }
}

/// Turns a `DecodingError` into words: the path of the field and what was wrong.
func describeDecodingError(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    switch e {
    case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])) is required"
    case .typeMismatch(let type, let ctx): return "\(path(ctx.codingPath)) must be of type \(type)"
    case .valueNotFound(let type, let ctx): return "\(path(ctx.codingPath)) must be a \(type), not null"
    case .dataCorrupted(let ctx):
        let p = path(ctx.codingPath)
        return p.isEmpty ? ctx.debugDescription : "\(p) \(ctx.debugDescription)"
    @unknown default: return "\(e)"
    }
}

/// Turns a `DecodingError` into `ChatSyncError.invalid` naming the field.
func invalidInput(from error: Error, document: String) -> ChatSyncError {
    if let e = error as? ChatSyncError { return e }
    guard let e = error as? DecodingError else { return .invalid(field: document, rule: "\(error)") }
    switch e {
    case .keyNotFound(let key, let ctx):
        return .invalid(field: path(ctx.codingPath + [key]), rule: "is required")
    case .typeMismatch(let type, let ctx):
        return .invalid(field: path(ctx.codingPath).isEmpty ? document : path(ctx.codingPath), rule: "must be of type \(type)")
    case .valueNotFound(let type, let ctx):
        return .invalid(field: path(ctx.codingPath).isEmpty ? document : path(ctx.codingPath), rule: "must be a \(type), not null")
    case .dataCorrupted(let ctx):
        let p = path(ctx.codingPath)
        return .invalid(field: p.isEmpty ? document : p, rule: ctx.debugDescription)
    @unknown default:
        return .invalid(field: document, rule: "\(e)")
    }
}

import Foundation
import GitKit

/// One line of a line diff.
public struct DiffLine: Codable, Sendable, Equatable {
    public enum Op: String, Codable, Sendable { case same, added, removed }
    public var op: Op
    public var text: String
}

/// A field of a document that changed.
public struct FieldChange: Codable, Sendable, Equatable {
    public var field: String
    public var old: JSONValue?
    public var new: JSONValue?
}

/// One document's change between two revisions.
public struct DocumentChange: Codable, Sendable, Equatable {
    public enum Change: String, Codable, Sendable { case added, removed, edited }
    public var type: DocumentKind
    public var id: String
    public var chatID: String?
    public var change: Change
    /// The message as it is after (added, edited) or was before (removed).
    public var message: ChatMessage?
    /// Fields that changed (edited), without derived ones (a message's renumbering).
    public var fields: [FieldChange]
    /// A line diff of an edited message's content.
    public var contentDiff: [DiffLine]?
    enum CodingKeys: String, CodingKey {
        case type, id, chatID = "chat_id", change, message, fields, contentDiff = "content_diff"
    }
}

/// The changes between two revisions, document by document.
public struct SemanticDiff: Codable, Sendable, Equatable {
    public var from: String
    public var to: String
    public var changes: [DocumentChange]
}

extension Store {
    /// What changed between two revisions (`to` defaults to the branch's tip): messages added,
    /// edited (with a line diff of the content) and removed, and the changed fields of every
    /// other document. A message whose only change is its number is not listed.
    public func diff(from: String, to: String? = nil, chatID: String? = nil) throws -> SemanticDiff {
        if let chatID { try Rules.id(chatID, "chat_id") }
        return try withRepository { repo in
            let a = try resolve(from, repo)
            let b = try to.map { try resolve($0, repo) } ?? wrapGit { try repo.referenceTarget(branchRef) }!
            let ta = try wrapGit { try repo.commit(a).tree }, tb = try wrapGit { try repo.commit(b).tree }
            var changes: [DocumentChange] = []
            var place: [(folder: String, number: Int)] = []
            for change in try wrapGit({ try repo.diff(from: ta, to: tb) }).sorted(by: { $0.path < $1.path }) {
                guard let loc = Layout.locate(change.path), let type = loc.kind, let id = loc.id else { continue }
                var chat: String?
                switch loc {
                case .message(let c, _): chat = c
                case .chat(let c): chat = c
                default: break
                }
                if let chatID, chat != chatID { continue }
                let old = try change.oldOID.flatMap { try repo.withBlob($0) { FastJSON.parse($0) } }
                let new = try change.newOID.flatMap { try repo.withBlob($0) { FastJSON.parse($0) } }
                func message(_ v: JSONValue?) -> ChatMessage? {
                    guard let v else { return nil }
                    let data = CanonicalJSON.serialize(v)
                    return data.withUnsafeBytes { ChatMessage.fastDecode($0) }
                }
                // Where it goes in the list: a chat's messages right after the chat, in chat order.
                let counted = changes.count
                defer { if changes.count > counted { place.append(Self.place(loc, change.path, new ?? old)) } }
                switch (old, new) {
                case (nil, let n?):
                    changes.append(DocumentChange(type: type, id: id, chatID: type == .message ? chat : nil, change: .added,
                                                  message: type == .message ? message(n) : nil, fields: []))
                case (let o?, nil):
                    changes.append(DocumentChange(type: type, id: id, chatID: type == .message ? chat : nil, change: .removed,
                                                  message: type == .message ? message(o) : nil, fields: []))
                case (let o?, let n?):
                    let derived: Set<String> = type == .message ? ["sequence_order", "updated_at"] : ["updated_at"]
                    let fields = Self.fieldChanges(o, n).filter { !derived.contains($0.field) }
                    if fields.isEmpty { continue }
                    var contentDiff: [DiffLine]?
                    if type == .message, case .string(let x)? = o["content"], case .string(let y)? = n["content"], x != y {
                        contentDiff = LineDiff.diff(x, y)
                    }
                    changes.append(DocumentChange(type: type, id: id, chatID: type == .message ? chat : nil, change: .edited,
                                                  message: type == .message ? message(n) : nil, fields: fields, contentDiff: contentDiff))
                default: continue
                }
            }
            let order = changes.indices.sorted { (place[$0].folder, place[$0].number, changes[$0].id) < (place[$1].folder, place[$1].number, changes[$1].id) }
            return SemanticDiff(from: a.hex, to: b.hex, changes: order.map { changes[$0] })
        }
    }

    /// A change's place in a diff: documents by file, a chat's messages after the chat by
    /// number (the number after the change, or before it for a removed message).
    private static func place(_ loc: Layout.Location, _ path: String, _ value: JSONValue?) -> (folder: String, number: Int) {
        switch loc {
        case .chat(let c): return (Layout.chatDir(c), 0)
        case .message(let c, _):
            if case .int(let n)? = value?["sequence_order"] { return (Layout.chatDir(c), Int(n)) }
            return (Layout.chatDir(c), Int.max)
        default: return (path, 0)
        }
    }

    static func fieldChanges(_ o: JSONValue, _ n: JSONValue) -> [FieldChange] {
        let oo = o.objectValue ?? [:], no = n.objectValue ?? [:]
        return Set(oo.keys).union(no.keys).sorted().compactMap { k in oo[k] == no[k] ? nil : FieldChange(field: k, old: oo[k], new: no[k]) }
    }

    /// A chat's transcript at a revision: Markdown, or JSON (the chat with its messages).
    public func export(chatID: String, format: ExportFormat, at revision: String? = nil) throws -> String {
        let oid = try revision.map { try resolve($0) }
        let full = try chatWithMessages(chatID, at: oid?.hex)
        switch format {
        case .json:
            return String(decoding: try DocumentCoding.encode(full), as: UTF8.self)
        case .markdown:
            var out = "# \(full.chat.title ?? "Chat \(full.chat.id)")\n\n"
            out += "Chat `\(full.chat.id)` of user `\(full.chat.userID)`, \(full.messages.count) message(s)"
            out += (oid.map { " as of commit `\($0.short)`" } ?? "") + ".\n"
            for m in full.messages {
                out += "\n## #\(m.sequenceOrder) \(m.role.rawValue) · \(Self.humanTime(m.createdAt))\(m.updatedAt.map { " (edited \(Self.humanTime($0)))" } ?? "")\n\n"
                out += m.content + (m.content.hasSuffix("\n") ? "" : "\n")
            }
            return out
        }
    }

    /// `2026-11-20 10:31:05`
    static func humanTime(_ t: Timestamp) -> String {
        let s = t.rfc3339
        return String(s.prefix(19)).replacingOccurrences(of: "T", with: " ")
    }
}

public enum ExportFormat: String, StringEnum { case markdown, json }

/// A line diff (longest common subsequence), for message contents.
enum LineDiff {
    static func diff(_ a: String, _ b: String) -> [DiffLine] {
        let x = a.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let y = b.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Contents are short; past a size, show the whole old and new text.
        guard x.count * y.count <= 4_000_000 else {
            return x.map { DiffLine(op: .removed, text: $0) } + y.map { DiffLine(op: .added, text: $0) }
        }
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in stride(from: x.count - 1, through: 0, by: -1) {
            for j in stride(from: y.count - 1, through: 0, by: -1) {
                lcs[i][j] = x[i] == y[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var out: [DiffLine] = []
        var i = 0, j = 0
        while i < x.count && j < y.count {
            if x[i] == y[j] { out.append(DiffLine(op: .same, text: x[i])); i += 1; j += 1 }
            else if lcs[i + 1][j] >= lcs[i][j + 1] { out.append(DiffLine(op: .removed, text: x[i])); i += 1 }
            else { out.append(DiffLine(op: .added, text: y[j])); j += 1 }
        }
        while i < x.count { out.append(DiffLine(op: .removed, text: x[i])); i += 1 }
        while j < y.count { out.append(DiffLine(op: .added, text: y[j])); j += 1 }
        return out
    }
}

/// Readable text of a stored document, for `git diff` and `git log -p` (`chatsync textconv`).
public enum Textconv {
    /// Messages: number, role, time and the content with real line breaks; other documents:
    /// one `field: value` line each. Anything that is not a document is returned as it is.
    public static func render(_ data: Data, path: String? = nil) -> String {
        guard case .object(let o)? = data.withUnsafeBytes({ FastJSON.parse($0) }) else {
            return String(decoding: data, as: UTF8.self)
        }
        if o["role"] != nil, o["content"] != nil, o["chat_id"] != nil {
            var head = "#\(o["sequence_order"]?.compactText ?? "?") \(o["role"]?.stringValue ?? "?")"
            if case .string(let t)? = o["created_at"] { head += " " + t }
            if case .string(let t)? = o["updated_at"] { head += " (edited \(t))" }
            head += "  [\(o["id"]?.stringValue ?? "")]"
            var out = head + "\n"
            for (k, v) in o.sorted(by: { $0.key < $1.key }) where !["role", "content", "sequence_order", "created_at", "updated_at", "id", "chat_id"].contains(k) {
                if v != .emptyObject { out += "\(k): \(v.compactText)\n" }
            }
            out += "\n" + (o["content"]?.stringValue ?? "")
            return out.hasSuffix("\n") ? out : out + "\n"
        }
        var out = ""
        for (k, v) in o.sorted(by: { $0.key < $1.key }) {
            if case .string(let s) = v { out += "\(k): \(s)\n" } else { out += "\(k): \(v.compactText)\n" }
        }
        return out
    }
}

import Foundation
import GitKit

/// What a history query is about.
public enum HistoryTarget: Sendable, Equatable {
    case chat(String), session(String), mission(String)

    /// The file or folder that holds it.
    var path: String {
        switch self {
        case .chat(let id): return Layout.chatDir(id)
        case .session(let id): return Layout.session(id)
        case .mission(let id): return Layout.missionDir(id)
        }
    }

    var id: String {
        switch self { case .chat(let id), .session(let id), .mission(let id): return id }
    }
}

/// Where a message came from and when it last changed.
public struct BlameLine: Codable, Sendable, Equatable {
    public var message: ChatMessage
    public var added: LogEntry
    /// The last commit that changed its content or metadata (nil when never edited).
    public var lastEdited: LogEntry?
    enum CodingKeys: String, CodingKey { case message, added, lastEdited = "last_edited" }
}

extension Store {
    /// Resolves a revision the way git does: a commit id or prefix, `HEAD~3`, a branch, a remote
    /// branch (`origin/main`), or a date on a branch (`@{2026-11-20}`, `main@{2026-11-20 10:00}`:
    /// the last commit of that branch's first-parent chain made at or before it).
    public func resolve(_ revision: String) throws -> OID {
        try withRepository { repo in try resolve(revision, repo) }
    }

    func resolve(_ revision: String, _ repo: Repository) throws -> OID {
        if let at = revision.range(of: "@{"), revision.hasSuffix("}") {
            let branch = String(revision[..<at.lowerBound])
            let dateText = String(revision[at.upperBound..<revision.index(before: revision.endIndex)])
            if let date = Self.parseDate(dateText) {
                return try commit(before: date, on: branch.isEmpty ? branchRef : branch, repo)
            }
        }
        let oid: OID
        do {
            oid = try repo.revparse(revision)
        } catch let e as GitError {
            throw ChatSyncError.invalid(field: "revision", rule: "\"\(revision)\" is not a revision of the store (\(e.message))")
        }
        guard (try? repo.commit(oid)) != nil else {
            throw ChatSyncError.invalid(field: "revision", rule: "\"\(revision)\" names a tree or a file, not a commit")
        }
        return oid
    }

    /// The last commit on `branch`'s first-parent chain at or before `date`.
    public func commit(before date: Timestamp, on branch: String? = nil) throws -> OID {
        try withRepository { repo in try commit(before: date, on: branch ?? branchRef, repo) }
    }

    private func commit(before date: Timestamp, on branch: String, _ repo: Repository) throws -> OID {
        let tip = try wrapGit { try repo.revparse(branch) }
        for c in try wrapGit({ try repo.walk(from: tip, firstParent: true) }) {
            if try wrapGit({ try repo.commit(c) }).committer.time * 1000 <= date.milliseconds { return c }
        }
        throw ChatSyncError.invalid(field: "revision", rule: "the store has no commit on \(branch) at or before \(date)")
    }

    /// `2026-11-20`, `2026-11-20 10:31`, `2026-11-20T10:31:00Z`: the end of that day or minute, UTC.
    static func parseDate(_ text: String) -> Timestamp? {
        let t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "T")
        if t.count == 10, let day = Timestamp(rfc3339: t + "T23:59:59.999Z") { return day }
        if t.count == 16, let minute = Timestamp(rfc3339: t + ":59.999Z") { return minute }
        return Timestamp(rfc3339: t) ?? Timestamp(rfc3339: t + "Z")
    }

    /// The commits that touched a chat, session or mission (or any, without a target), newest
    /// first. A merge counts when it changed the target relative to its first parent.
    public func history(of target: HistoryTarget? = nil, limit: Int = 20, from revision: String? = nil) throws -> [LogEntry] {
        guard limit >= 0 else { throw ChatSyncError.invalid(field: "n", rule: "must be ≥ 0") }
        if let target { try Rules.id(target.id, "id") }
        return try withRepository { repo in
            let start = try revision.map { try resolve($0, repo) } ?? wrapGit { try repo.referenceTarget(branchRef) }
            guard let start else { return [] }
            var out: [LogEntry] = []
            for oid in try wrapGit({ try repo.walk(from: start) }) where out.count < limit {
                let c = try wrapGit { try repo.commit(oid) }
                if let target {
                    let here = try wrapGit { try repo.entry(in: c.tree, path: target.path)?.oid }
                    let before = try wrapGit { try c.parents.first.flatMap { try repo.entry(in: try repo.commit($0).tree, path: target.path)?.oid } }
                    if here == before { continue }
                }
                out.append(Self.logEntry(c))
            }
            if let target, out.isEmpty {
                let exists = try wrapGit { try repo.entry(in: repo.commit(start).tree, path: target.path) } != nil
                if !exists { throw ChatSyncError.notFound(kind: "\(target)".components(separatedBy: "(").first ?? "document", id: target.id) }
            }
            return out
        }
    }

    static func logEntry(_ c: CommitInfo) -> LogEntry {
        LogEntry(commit: c.oid.hex, parents: c.parents.map(\.hex), author: c.author.name, email: c.author.email,
                 time: Timestamp(milliseconds: c.author.time * 1000).rfc3339, summary: c.summary)
    }

    /// A document as it was at a revision.
    public func document<D: Document>(_ type: D.Type, id: String, at revision: String) throws -> D {
        try Rules.id(id, "id")
        let path: String
        switch D.kind {
        case .session: path = Layout.session(id)
        case .chat: path = Layout.chat(id)
        case .mission: path = Layout.mission(id)
        case .asset: path = Layout.asset(id)
        case .conflict: path = Layout.conflict(id)
        default: throw ChatSyncError.invalid(field: "type", rule: "\(D.kind.rawValue) documents are read through their chat or mission")
        }
        let oid = try resolve(revision)
        return try read(at: oid.hex) { snap in
            guard let d = try snap.document(type, at: path) else {
                throw ChatSyncError.notFound(kind: "\(D.kind.rawValue) at \(revision)", id: id)
            }
            return d
        }
    }

    /// For each message of a chat (at a revision): the commit that added it and the last that edited it.
    public func blame(chatID: String, at revision: String? = nil) throws -> [BlameLine] {
        try Rules.id(chatID, "chat_id")
        let tipOID = try revision.map { try resolve($0) }
        let messages = try listMessages(chatID: chatID, at: tipOID?.hex)
        return try withRepository { repo in
            let tip = try tipOID ?? wrapGit { try repo.referenceTarget(branchRef) }!
            // Oldest first: the first commit where each message appears, and the last where its
            // content or metadata changed.
            var added: [String: LogEntry] = [:]
            var edited: [String: LogEntry] = [:]
            var lastContent: [String: String] = [:]
            var lastTree: OID?
            for oid in try wrapGit({ try repo.walk(from: tip, reverse: true) }) {
                let c = try wrapGit { try repo.commit(oid) }
                guard let dir = try wrapGit({ try repo.entry(in: c.tree, path: Layout.messagesDir(chatID))?.oid }), dir != lastTree else { continue }
                let parentDir = try wrapGit { try c.parents.first.flatMap { try repo.entry(in: try repo.commit($0).tree, path: Layout.messagesDir(chatID))?.oid } }
                lastTree = dir
                for change in try wrapGit({ try repo.diff(from: parentDir, to: dir) }) where change.newOID != nil {
                    guard let value = try repo.withBlob(change.newOID!, { FastJSON.parse($0) }), case .string(let id)? = value["id"] else { continue }
                    let key = (value["content"]?.compactText ?? "") + "\u{1F}" + (value["message_metadata"]?.compactText ?? "")
                    if added[id] == nil {
                        added[id] = Self.logEntry(c)
                    } else if lastContent[id] != key {
                        edited[id] = Self.logEntry(c)
                    }
                    lastContent[id] = key
                }
            }
            return messages.compactMap { m in added[m.id].map { BlameLine(message: m, added: $0, lastEdited: edited[m.id]) } }
        }
    }
}

extension Store {
    /// Makes plain `git diff`, `git log -p` and `git show` in the store render documents as
    /// readable text through `textconvCommand` (`chatsync textconv`): `*.json diff=chatsync` in
    /// `.git/info/attributes` (not a tracked file, so the work tree stays clean) and
    /// `diff.chatsync.textconv` in `.git/config`.
    public func configureReadableDiffs(textconvCommand: String) throws {
        let info = gitDir + "info"
        try? FileManager.default.createDirectory(atPath: info, withIntermediateDirectories: true)
        let attributes = info + "/attributes"
        let line = "*.json diff=chatsync"
        let existing = (try? String(contentsOfFile: attributes, encoding: .utf8)) ?? ""
        if !existing.split(separator: "\n").contains(Substring(line)) {
            let text = existing + (existing.isEmpty || existing.hasSuffix("\n") ? "" : "\n") + line + "\n"
            guard FileManager.default.createFile(atPath: attributes, contents: Data(text.utf8)) else {
                throw ChatSyncError.storage("cannot write \(attributes)")
            }
        }
        try withRepository { repo in
            try wrapGit { try repo.setConfigString("diff.chatsync.textconv", textconvCommand) }
            // No cache: git would keep it as notes (`refs/notes/textconv/chatsync`), commits that
            // need an identity, so `git log -p` failed for a user git knew no name of.
            try wrapGit { try repo.setConfigString("diff.chatsync.cachetextconv", "false") }
            // libgit2 does not fsync config: a crash must not leave it torn.
            if options.durable { try wrapGit { try repo.syncCreated(made: []) } }
        }
    }
}

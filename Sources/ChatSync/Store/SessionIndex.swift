import Foundation
import GitKit

/// What the session index keeps of a session: the fields sessions are looked up by.
struct SessionKey: Sendable, Equatable {
    var id: String
    var userID: String
    var status: SessionStatus
    var chatID: String
    var missionID: String?
    var lastActivityAt: Timestamp
    var updatedAt: Timestamp
}

extension SessionKey {
    init(_ s: UserSession) {
        self.init(id: s.id, userID: s.userID, status: s.status, chatID: s.chatID, missionID: s.missionID,
                  lastActivityAt: s.lastActivityAt, updatedAt: s.updatedAt)
    }
}

/// The sessions of the `sessions/` folder by their lookup fields, so that listing a user's
/// sessions by status, finding a user's active session, or the sessions of a chat or a mission,
/// reads only the documents that match.
///
/// The index is a fact about one tree of the `sessions/` folder (its id is the key), so it never
/// disagrees with the commit it is asked about, whoever made that commit (this process, another
/// one, a plain `git pull`): when the branch shows another tree, only the documents that differ
/// between the two trees are read. It lives in memory and, for the next process, in
/// `.git/chatsync/sessions-index` (a cache: written whole and renamed into place; missing,
/// unreadable or about a tree this repository does not have, it is built again from git).
final class SessionIndex: @unchecked Sendable {
    struct Entry: Sendable { var blob: OID; var key: SessionKey }

    private let lock = NSLock()
    /// Where the index is kept between processes; nil: in memory only.
    private let file: String?
    private var tree: OID?
    private var built = false
    private var byPath: [String: Entry] = [:]
    /// Full sessions already decoded, by blob id (only blobs of the current table are kept).
    private var documents: [OID: UserSession] = [:]
    /// Changed documents applied since the file was last written (or read).
    private var unsaved = 0
    /// The file is rewritten once this many documents changed since it was written.
    static let saveAfter = 32

    /// How many session documents the index has decoded (for tests: a rescan shows).
    private(set) var decoded = 0
    /// How many times the file was written, and read (for tests).
    private(set) var saves = 0
    private(set) var loads = 0

    init(file: String? = nil) { self.file = file }

    /// The sessions of the snapshot whose key matches (every session by default).
    func sessions(_ snap: Snapshot, where match: (SessionKey) -> Bool = { _ in true }) throws -> [UserSession] {
        let table = try self.table(snap)
        return try table.values.filter { match($0.key) }.map { try document($0, snap) }
    }

    /// The sessions whose key matches as a change leaves them (the index of its base, then its own edits).
    func sessions(_ tx: Transaction, where match: (SessionKey) -> Bool = { _ in true }) throws -> [UserSession] {
        guard let edits = try tx.edits(under: Layout.sessionsDir) else {
            return try tx.shardedDocuments(UserSession.self, in: Layout.sessionsDir).filter { match(SessionKey($0)) }
        }
        var edited: [String: UserSession?] = [:]
        for (path, data) in edits {
            edited[relative(path)] = try data.map { try decode($0, path, tx.decoder) }
        }
        let table = try self.table(tx.base)
        var out: [UserSession] = []
        for (path, entry) in table where edited[path] == nil && match(entry.key) {
            out.append(try document(entry, tx.base))
        }
        for case let (_, s?) in edited where match(SessionKey(s)) { out.append(s) }
        return out
    }

    private func relative(_ path: String) -> String { String(path.dropFirst(Layout.sessionsDir.count + 1)) }

    /// The full session of an entry: decoded before, or read from its blob now.
    private func document(_ entry: Entry, _ snap: Snapshot) throws -> UserSession {
        lock.lock()
        let known = documents[entry.blob]
        lock.unlock()
        if let known { return known }
        let s = try snap.repo.withBlob(entry.blob) { try decode(Data($0), "sessions/\(entry.key.id)", snap.decoder) }
        lock.lock()
        documents[entry.blob] = s
        decoded += 1
        lock.unlock()
        return s
    }

    private func table(_ snap: Snapshot) throws -> [String: Entry] {
        let current = try snap.oid(at: Layout.sessionsDir)
        lock.lock()
        var (known, wasBuilt, table) = (tree, built, byPath)
        lock.unlock()
        if wasBuilt && known == current { return table }
        if !wasBuilt, let saved = load() {
            (known, table, wasBuilt) = (saved.tree, saved.table, true)
            if known == current {
                install(current, table, [:], changed: 0)
                return table
            }
        }
        var fresh: [OID: UserSession] = [:]
        var changed = 0
        var rebuilt = false
        if let current {
            // The changes since the tree the index shows; nil (read everything) when there is no
            // such tree, or this repository cannot compare with it.
            let changes: [TreeChange]? = wasBuilt ? (known.map { try? snap.repo.diff(from: $0, to: current) } ?? nil) : nil
            if let changes {
                for change in changes where change.path.hasSuffix(".json") {
                    if change.status == .deleted || change.newOID == nil {
                        table[change.path] = nil
                    } else {
                        let blob = change.newOID!
                        let s = try snap.repo.withBlob(blob) { try decode(Data($0), change.path, snap.decoder) }
                        table[change.path] = Entry(blob: blob, key: SessionKey(s))
                        fresh[blob] = s
                    }
                    changed += 1
                }
            } else {
                table = [:]
                for (path, blob) in try snap.blobs(under: current, prefix: Layout.sessionsDir) where path.hasSuffix(".json") {
                    let s = try snap.repo.withBlob(blob) { try decode(Data($0), path, snap.decoder) }
                    table[relative(path)] = Entry(blob: blob, key: SessionKey(s))
                    fresh[blob] = s
                }
                rebuilt = true
            }
        } else {
            table = [:]
            rebuilt = !wasBuilt
        }
        let save = install(current, table, fresh, changed: rebuilt ? Self.saveAfter : changed)
        if save { self.save(current, table) }
        return table
    }

    /// Makes `table` the index of `current`; true when the file is due to be written.
    @discardableResult
    private func install(_ current: OID?, _ table: [String: Entry], _ fresh: [OID: UserSession], changed: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        tree = current
        built = true
        byPath = table
        decoded += fresh.count
        if documents.count + fresh.count > 2 * table.count + 64 {
            // Drop what no entry points at any more.
            let live = Set(table.values.map(\.blob))
            documents = documents.filter { live.contains($0.key) }
        }
        documents.merge(fresh) { a, _ in a }
        unsaved += changed
        guard file != nil, unsaved >= Self.saveAfter else { return false }
        unsaved = 0
        return true
    }

    /// Writes the file when the index moved since it was last written (a handle closing).
    func flush() {
        lock.lock()
        let due = file != nil && built && unsaved > 0
        let (current, table) = (tree, byPath)
        if due { unsaved = 0 }
        lock.unlock()
        if due { save(current, table) }
    }

    private func decode(_ data: Data, _ path: String, _ decoder: JSONDecoder) throws -> UserSession {
        do {
            return try decoder.decode(UserSession.self, from: data)
        } catch {
            throw ChatSyncError.badStore("\(path) is not a valid \(UserSession.kind.rawValue) document: \(describeDecodingError(error))")
        }
    }

    // MARK: The file

    /// `chatsync session index 1`, `tree <hex>` (or `tree none`), `count <n>`, then one line per
    /// session: path in `sessions/`, blob, id, user_id, status, chat_id, mission_id (empty when
    /// none), last_activity_at and updated_at in milliseconds, separated by tabs (`\`, tab and
    /// line breaks in a user id escaped as `\\`, `\t`, `\n`, `\r`); last `end`.
    static let header = "chatsync session index 1"

    private func save(_ tree: OID?, _ table: [String: Entry]) {
        guard let file else { return }
        var text = Self.header + "\ntree " + (tree?.hex ?? "none") + "\ncount \(table.count)\n"
        text.reserveCapacity(table.count * 160)
        for (path, e) in table {
            let k = e.key
            text += path + "\t" + e.blob.hex + "\t" + k.id + "\t" + Self.escape(k.userID) + "\t" + k.status.rawValue + "\t"
                + k.chatID + "\t" + (k.missionID ?? "") + "\t" + String(k.lastActivityAt.milliseconds) + "\t"
                + String(k.updatedAt.milliseconds) + "\n"
        }
        text += "end\n"
        let dir = (file as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // A cache: written whole to a temporary file and renamed, so a reader sees the old file
        // or the new one; a file lost in a crash is rebuilt from git.
        if (try? writeFileAtomically(Data(text.utf8), to: file)) != nil {
            lock.lock()
            saves += 1
            lock.unlock()
        }
    }

    /// The saved index, or nil when there is none or it cannot be trusted whole.
    private func load() -> (tree: OID?, table: [String: Entry])? {
        guard let file, let data = FileManager.default.contents(atPath: file) else { return nil }
        let parsed: (OID?, [String: Entry])? = data.withUnsafeBytes { raw in
            let b = raw.bindMemory(to: UInt8.self)
            var pos = 0
            /// The next line (without its line feed), or nil at the end of the bytes.
            func line() -> Range<Int>? {
                guard pos < b.count, let nl = b[pos...].firstIndex(of: 10) else { return nil }
                defer { pos = nl + 1 }
                return pos..<nl
            }
            func text(_ r: Range<Int>) -> String? { String(validating: UnsafeBufferPointer(rebasing: b[r]), as: UTF8.self) }
            func oid(_ r: Range<Int>) -> OID? { OID(hexUTF8: UnsafeBufferPointer(rebasing: b[r])) }
            func int(_ r: Range<Int>) -> Int64? {
                let negative = !r.isEmpty && b[r.lowerBound] == 45  // "-": a time before 1970
                let digits = negative ? (r.lowerBound + 1)..<r.upperBound : r
                guard !digits.isEmpty, digits.count <= 18 else { return nil }
                var v: Int64 = 0
                for i in digits {
                    guard b[i] >= 48 && b[i] <= 57 else { return nil }
                    v = v * 10 + Int64(b[i] - 48)
                }
                return negative ? -v : v
            }
            guard let h = line(), text(h) == Self.header,
                  let t = line(), let treeLine = text(t), treeLine.hasPrefix("tree "),
                  let c = line(), c.count > 6, text(c.lowerBound..<(c.lowerBound + 6)) == "count ",
                  let count = int((c.lowerBound + 6)..<c.upperBound)
            else { return nil }
            let tree: OID?
            if treeLine == "tree none" { tree = nil } else {
                guard let o = oid((t.lowerBound + 5)..<t.upperBound) else { return nil }
                tree = o
            }
            var table: [String: Entry] = [:]
            table.reserveCapacity(Int(count))
            var fields: [Range<Int>] = []
            fields.reserveCapacity(9)
            for _ in 0..<count {
                guard let l = line() else { return nil }
                fields.removeAll(keepingCapacity: true)
                var from = l.lowerBound
                for i in l where b[i] == 9 {
                    fields.append(from..<i)
                    from = i + 1
                }
                fields.append(from..<l.upperBound)
                guard fields.count == 9, !fields[0].isEmpty, !fields[2].isEmpty, !fields[5].isEmpty,
                      let path = text(fields[0]), let blob = oid(fields[1]), let id = text(fields[2]),
                      let userText = text(fields[3]), let user = Self.unescape(Substring(userText)),
                      let statusText = text(fields[4]), let status = SessionStatus(rawValue: statusText),
                      let chat = text(fields[5]), let mission = text(fields[6]),
                      let active = int(fields[7]), let updated = int(fields[8])
                else { return nil }
                let key = SessionKey(id: id, userID: user, status: status, chatID: chat, missionID: mission.isEmpty ? nil : mission,
                                     lastActivityAt: Timestamp(milliseconds: active), updatedAt: Timestamp(milliseconds: updated))
                table[path] = Entry(blob: blob, key: key)
            }
            guard let e = line(), text(e) == "end", pos == b.count, table.count == Int(count) else { return nil }
            return (tree, table)
        }
        guard let parsed else { return nil }
        lock.lock()
        loads += 1
        lock.unlock()
        return parsed
    }

    static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 92 || $0 == 9 || $0 == 10 || $0 == 13 }) else { return s }
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\t": out += "\\t"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ s: Substring) -> String? {
        guard s.utf8.contains(92) else { return String(s) }
        var out = ""
        var escaped = false
        for c in s.unicodeScalars {
            if escaped {
                switch c {
                case "\\": out += "\\"
                case "t": out += "\t"
                case "n": out += "\n"
                case "r": out += "\r"
                default: return nil
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return escaped ? nil : out
    }
}

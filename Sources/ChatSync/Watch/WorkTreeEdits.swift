import Foundation
import GitKit
#if canImport(Glibc)
import Glibc
#endif

/// Files edited by hand in the work tree: noticed through inotify, read once they have been
/// quiet for a while, validated like any input, and committed one document at a time. An
/// invalid file is reported (an error event naming the path and the reason), never committed
/// and never touched.
final class WorkTreeEdits {
    private let store: Store
    private let fd: Int32
    private var dirs: [Int32: String] = [:]
    /// Relative path → when it last changed.
    private var pending: [String: Date] = [:]

    init(store: Store) throws {
        self.store = store
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { throw ChatSyncError.storage("cannot watch the work tree: inotify_init1: \(String(cString: strerror(errno)))") }
        addWatches("")
        // Edits made while nothing watched: the files that differ from git's index.
        do {
            let changed = try store.follower.whileHeld { _ in try store.withRepository { try $0.workTreeChanges() } }
            for path in changed where Self.isCandidate(path) { pending[path] = .distantPast }
        } catch {
            FileHandle.standardError.write(Data("chatsync: cannot compare the work tree with the index: \(error)\n".utf8))
        }
    }

    deinit { close(fd) }

    private let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE)

    /// Watches a folder and the folders below it (not .git).
    private func addWatches(_ rel: String) {
        let abs = rel.isEmpty ? store.path : store.path + "/" + rel
        let wd = inotify_add_watch(fd, abs, mask | UInt32(IN_ONLYDIR))
        guard wd >= 0 else { return }
        dirs[wd] = rel
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: abs) else { return }
        for name in names where !(rel.isEmpty && name == ".git") {
            var isDir: ObjCBool = false
            let child = rel.isEmpty ? name : rel + "/" + name
            if FileManager.default.fileExists(atPath: abs + "/" + name, isDirectory: &isDir), isDir.boolValue { addWatches(child) }
        }
    }

    /// Files created in a folder before its watch existed.
    private func markFiles(under rel: String, _ now: Date) {
        let abs = store.path + "/" + rel
        guard let e = FileManager.default.enumerator(atPath: abs) else { return }
        while let name = e.nextObject() as? String { if Self.isCandidate(name) { pending[rel + "/" + name] = now } }
    }

    static func isCandidate(_ path: String) -> Bool {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return name.hasSuffix(".json") && !name.hasPrefix(".") && !path.hasPrefix(".git/")
    }

    /// Readable when work tree events are waiting.
    var descriptor: Int32 { fd }

    private func drain() {
        let size = 64 * 1024
        var buffer = [UInt8](repeating: 0, count: size)
        let now = Date()
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, size) }
            if n <= 0 { return }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= n {
                let (wd, evMask, len) = buffer.withUnsafeBytes { raw -> (Int32, UInt32, Int) in
                    let ev = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (ev.wd, ev.mask, Int(ev.len))
                }
                let nameStart = offset + MemoryLayout<inotify_event>.size
                let nameBytes = buffer[nameStart..<min(nameStart + len, n)].prefix { $0 != 0 }
                let name = String(decoding: nameBytes, as: UTF8.self)
                offset = nameStart + len
                guard let dir = dirs[wd], !name.isEmpty else { continue }
                let rel = dir.isEmpty ? name : dir + "/" + name
                if rel == ".git" || rel.hasPrefix(".git/") { continue }
                if evMask & UInt32(IN_ISDIR) != 0 {
                    if evMask & UInt32(IN_CREATE | IN_MOVED_TO) != 0 { addWatches(rel); markFiles(under: rel, now) }
                    continue
                }
                if Self.isCandidate(rel) { pending[rel] = now }
            }
        }
    }

    /// Reads the files that have been quiet for `quietPeriod`, commits the valid edits and
    /// returns the error events of the invalid ones.
    func process(quietPeriod: Double) -> [ChangeEvent] {
        drain()
        let now = Date()
        let ready = pending.filter { now.timeIntervalSince($0.value) >= quietPeriod }.map(\.key).sorted()
        guard !ready.isEmpty else { return [] }
        for p in ready { pending.removeValue(forKey: p) }
        // Which of them differ from what the work tree is recorded to show and from the branch:
        // the others are chatsync's own checkouts, not edits. Each edit's base, the version it
        // started from, is what git's index says the file was last checked out as (the work
        // tree's sync leaves an edited file and its index entry alone while the branch moves
        // on); when the index holds the edit itself (`git add`), the recorded tree's version;
        // none for a file the index does not hold (made by hand). A file and index entry that
        // hold a version the branch had lately is a checkout left behind (the sync skips files it
        // did not write last, such as one a hand edit's commit rewrote): shown as the branch's.
        let edited: [(path: String, bytes: Data?, base: Data?)]
        var behind: [String] = []
        do {
            edited = try store.follower.whileHeld { recorded in
                try store.read { snap in
                    let indexed = try snap.repo.indexBlobs(ready)
                    var out: [(path: String, bytes: Data?, base: Data?)] = []
                    for path in ready {
                        let bytes = FileManager.default.contents(atPath: store.path + "/" + path)
                        let head = try snap.data(at: path)
                        if bytes == head { continue }
                        let shown = try recorded.map { try snap.repo.entry(in: $0, path: path).flatMap { try? snap.repo.readBlob($0.oid) } } ?? head
                        if recorded != nil && bytes == shown { continue }
                        var base = try indexed[path].map { try snap.repo.readBlob($0) }
                        if let bytes, base == bytes {
                            if try Self.committedLately(path, bytes, snap) { behind.append(path); continue }
                            base = shown
                        }
                        out.append((path, bytes, base))
                    }
                    return out
                }
            }
        } catch {
            // Nothing was taken: the files are read again next time.
            for p in ready where pending[p] == nil { pending[p] = now }
            return [errorEvent(nil, "\(error)")]
        }
        for path in behind { showCommitted(path, ifStill: FileManager.default.contents(atPath: store.path + "/" + path) ?? Data()) }
        var events: [ChangeEvent] = []
        // The ids a path names (its folders' names, its file's name without .json).
        func names(_ path: String) -> Set<Substring> {
            Set(path.split(separator: "/").map { $0.hasSuffix(".json") ? $0.dropLast(5) : $0 })
        }
        // Files written first, parents before what they hold; the ids named by those refused, so
        // that a document or folder moved where it cannot be taken (a wrong shard, another
        // chat's folder) is not deleted from its place.
        func level(_ path: String) -> Int {
            switch Layout.locate(path) {
            case .chat?, .mission?: return 0
            case .hop?: return 1
            case .message?, .toolStep?: return 2
            default: return 3
            }
        }
        var refusedNames = Set<Substring>()
        for edit in edited.sorted(by: { (level($0.path), $0.path) < (level($1.path), $1.path) }) {
            guard let bytes = edit.bytes else { continue }
            do {
                try commitEdit(edit.path, bytes, base: edit.base)
            } catch {
                refusedNames.formUnion(names(edit.path))
                events.append(errorEvent(edit.path, (error as? ChatSyncError)?.description ?? "\(error)"))
            }
        }
        // Then deletions. Folders deleted whole (or whose deletion was refused): the files below
        // them are settled.
        var settledDirs: [String] = []
        for edit in edited where edit.bytes == nil && !settledDirs.contains(where: { edit.path.hasPrefix($0 + "/") }) {
            var target = edit.path
            do {
                if let (document, folder) = deletedContainer(of: edit.path) {
                    target = document
                    settledDirs.append(folder)
                    if let id = Layout.locate(document)?.id, refusedNames.contains(Substring(id)) {
                        throw ChatSyncError.invalid(field: folder, rule: "was moved where it cannot be taken (see the errors for its new place), so it is not deleted; move it back")
                    }
                    try commitDeletion(document, folder: folder)
                } else if let id = Layout.locate(edit.path)?.id, refusedNames.contains(Substring(id)) {
                    throw ChatSyncError.invalid(field: edit.path, rule: "was moved where it cannot be taken (see the error for its new place), so it is not deleted; move it back")
                } else {
                    try commitDeletion(edit.path, folder: nil)
                }
            } catch {
                events.append(errorEvent(target, (error as? ChatSyncError)?.description ?? "\(error)"))
            }
        }
        return events
    }

    /// Whether the branch held these bytes at `path` in one of its last 50 commits.
    private static func committedLately(_ path: String, _ bytes: Data, _ snap: Snapshot) throws -> Bool {
        guard let tip = snap.commit else { return false }
        var seen = Set<OID>()
        for commit in try snap.repo.walk(from: tip, limit: 50, firstParent: true) {
            guard let oid = try snap.repo.entry(in: try snap.repo.commit(commit).tree, path: path)?.oid, seen.insert(oid).inserted else { continue }
            if try snap.repo.readBlob(oid) == bytes { return true }
        }
        return false
    }

    private func errorEvent(_ path: String?, _ message: String) -> ChangeEvent {
        let loc = path.flatMap(Layout.locate)
        return ChangeEvent(commit: nil, kind: .error, type: loc?.kind, id: loc?.id, origin: .workdir, time: .now(), path: path, error: message)
    }

    /// Validates and commits one hand edit, against the version it started from (`base`).
    private func commitEdit(_ path: String, _ bytes: Data, base: Data?) throws {
        guard let loc = Layout.locate(path), let type = loc.kind, type != .conflict else {
            if Layout.locate(path) == .marker { throw ChatSyncError.invalid(field: path, rule: "the format marker is not edited by hand") }
            if Layout.locate(path)?.kind == .conflict { throw ChatSyncError.invalid(field: path, rule: "is not edited by hand") }
            throw ChatSyncError.invalid(field: path, rule: "is not where the layout puts a document (see Store/FORMAT.md)")
        }
        let limits = store.options.limits
        // Strict reading: every field known, every rule, the id and the folder matching the file.
        var canonical: Data
        var parentCheck: ((DocumentReader) throws -> Void)
        func decode<D: Document>(_ t: D.Type) throws -> D {
            let d = try DocumentCoding.decodeInput(t, from: bytes, limits: limits)
            guard d.id == loc.id else { throw ChatSyncError.invalid(field: "id", rule: "must match the file name (\(loc.id ?? "")), got \"\(d.id)\"") }
            canonical = try DocumentCoding.encode(d)
            return d
        }
        canonical = bytes
        switch loc {
        case .session:
            let s = try decode(UserSession.self)
            parentCheck = { r in
                guard try r.exists(Layout.chat(s.chatID)) else { throw ChatSyncError.invalid(field: "chat_id", rule: "chat \(s.chatID) does not exist") }
                if let m = s.missionID, try !r.exists(Layout.mission(m)) { throw ChatSyncError.invalid(field: "mission_id", rule: "mission \(m) does not exist") }
            }
        case .chat:
            _ = try decode(Chat.self)
            parentCheck = { _ in }
        case .message(let chatID, _):
            let m = try decode(ChatMessage.self)
            guard m.chatID == chatID else { throw ChatSyncError.invalid(field: "chat_id", rule: "must be the chat of its folder (\(chatID)), got \(m.chatID)") }
            parentCheck = { r in guard try r.exists(Layout.chat(chatID)) else { throw ChatSyncError.invalid(field: "chat_id", rule: "chat \(chatID) does not exist") } }
        case .mission(let id):
            let m = try decode(Mission.self)
            parentCheck = { r in
                if let h = m.currentHopID, try !r.exists(Layout.hop(id, h)) { throw ChatSyncError.invalid(field: "current_hop_id", rule: "must be one of the mission's hops; \(h) is not") }
            }
        case .hop(let missionID, _):
            let h = try decode(Hop.self)
            guard h.missionID == missionID else { throw ChatSyncError.invalid(field: "mission_id", rule: "must be the mission of its folder (\(missionID))") }
            parentCheck = { r in guard try r.exists(Layout.mission(missionID)) else { throw ChatSyncError.invalid(field: "mission_id", rule: "mission \(missionID) does not exist") } }
        case .toolStep(let missionID, let hopID, _):
            let s = try decode(ToolStep.self)
            guard s.hopID == hopID else { throw ChatSyncError.invalid(field: "hop_id", rule: "must be the hop of its folder (\(hopID))") }
            parentCheck = { r in guard try r.exists(Layout.hop(missionID, hopID)) else { throw ChatSyncError.invalid(field: "hop_id", rule: "hop \(hopID) does not exist") } }
        case .asset:
            let a = try decode(Asset.self)
            parentCheck = { r in try Store.checkScope(a.scopeType, a.scopeID, r) }
        case .conflict, .marker:
            throw ChatSyncError.invalid(field: path, rule: "is not edited by hand")
        }
        guard case .object(var hand)? = canonical.withUnsafeBytes({ FastJSON.parse($0) }) else {
            throw ChatSyncError.invalid(field: path, rule: "must be a JSON object")
        }
        // Against the version the edit started from: what an update may not change, the
        // session lifecycle, and a new updated_at unless the person set one.
        let baseValue = base.flatMap { $0.withUnsafeBytes { FastJSON.parse($0) } }
        if baseValue == .object(hand) {
            // The same document, written another way (indented, keys in another order): no edit.
            showCommitted(path, ifStill: bytes)
            return
        }
        try Store.checkPlaced(.object(hand), at: path, over: base)
        if case .object(let old)? = baseValue {
            // (A message's number alone is no edit: it is derived, and put back below.)
            let numberOnly = type == .message && TreeMerge.onlyRenumbered(baseValue, .object(hand))
            if hand["updated_at"] == old["updated_at"], !numberOnly {
                hand["updated_at"] = .string(Timestamp.now().rfc3339)
            }
        }
        let handValue = JSONValue.object(hand)
        try store.read { try parentCheck($0) }
        try store.perform { tx in
            try parentCheck(tx)
            let current = try tx.data(at: path)
            var value = handValue
            if current != base, let current, let currentValue = current.withUnsafeBytes({ FastJSON.parse($0) }) {
                // Changed on the branch too since the work tree showed it (a command, another
                // process): both are kept, field by field; where both changed a field, the hand edit.
                var conflicts: [FieldConflict] = []
                let rules = TreeMerge.mergeRules(for: type)
                value = JSONMerge.merge(base: baseValue, a: handValue, b: currentValue, aWins: true, derived: rules.derived,
                                        latest: rules.latest, conflicts: &conflicts) ?? handValue
            }
            // What may not change holds for what is stored too (the merge with the branch's version).
            try Store.checkPlaced(value, at: path, over: current)
            // Taken already (another watch loop on this store committed the same edit): nothing to do.
            if let current, case .object(var had)? = current.withUnsafeBytes({ FastJSON.parse($0) }), case .object(var will) = value {
                had.removeValue(forKey: "updated_at"); will.removeValue(forKey: "updated_at")
                if had == will { return }
            }
            // A session made by hand is created as `session create` does: a name when it has
            // none, and the user's other active sessions completed when it is active.
            var completed = 0
            if type == .session, current == nil, case .object(var o) = value, case .string(let user)? = o["user_id"] {
                let theirs = try self.store.sessionIndex.sessions(tx) { $0.userID == user }
                if o["name"] == nil || o["name"] == .null { o["name"] = .string("Session \(theirs.count + 1)") }
                if o["status"] == nil || o["status"] == .string(SessionStatus.active.rawValue) {
                    completed = try Store.completeActive(theirs, except: loc.id ?? "", tx).count
                }
                value = .object(o)
            }
            let stored = try Store.putValidated(value, at: path, kind: type, tx)
            try Self.placeReordered(loc, value, before: current, tx)
            try Store.renumber(after: loc, tx)
            tx.origin = .workdir
            tx.message = Self.message(type, loc.id ?? "", old: current, new: stored)
                + (completed > 0 ? "\n\n\(completed) other active session(s) of the user completed" : "")
        }
        showCommitted(path, ifStill: bytes)
    }

    /// Makes the work tree file and the index show what was committed for a hand-edited path
    /// (its canonical form, a renumbering, another change merged in), unless the file changed
    /// again meanwhile (that edit is the next round's). The work tree's sync leaves files that
    /// differ from what it last wrote alone, so without this they would differ from the branch
    /// for good, and be taken for a new edit.
    private func showCommitted(_ path: String, ifStill bytes: Data) {
        do {
            try store.follower.whileHeld { _ in
                guard FileManager.default.contents(atPath: store.path + "/" + path) == bytes else { return }
                try store.withRepository { repo in
                    guard let tip = try store.head() else { return }
                    try repo.showInWorkTree(try repo.commit(tip).tree, paths: [path])
                }
            }
        } catch {
            FileHandle.standardError.write(Data("chatsync: work tree not updated for \(path): \(error)\n".utf8))
        }
    }

    /// The outermost chat, mission or hop at or above a deleted file whose folder is gone from
    /// the work tree (or holds no file any more): deleting such a folder deletes it whole.
    private func deletedContainer(of path: String) -> (document: String, folder: String)? {
        var chain: [(String, String)]
        switch Layout.locate(path) {
        case .chat(let id)?, .message(let id, _)?: chain = [(Layout.chat(id), Layout.chatDir(id))]
        case .mission(let id)?: chain = [(Layout.mission(id), Layout.missionDir(id))]
        case .hop(let m, let h)?, .toolStep(let m, let h, _)?:
            chain = [(Layout.mission(m), Layout.missionDir(m)), (Layout.hop(m, h), Layout.hopDir(m, h))]
        default: return nil
        }
        for (document, folder) in chain where !holdsFiles(folder) { return (document, folder) }
        return nil
    }

    private func holdsFiles(_ folder: String) -> Bool {
        guard let e = FileManager.default.enumerator(atPath: store.path + "/" + folder) else { return false }
        while let name = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: store.path + "/" + folder + "/" + name, isDirectory: &isDir), !isDir.boolValue { return true }
        }
        return false
    }

    /// Commits a deletion by hand as the delete commands make it: a chat with its messages
    /// (refused while a session uses it), a mission or hop with what is below it and the assets
    /// scoped to it, numbers after it renumbered.
    private func commitDeletion(_ path: String, folder: String?) throws {
        guard let loc = Layout.locate(path), loc != .marker else {
            if Layout.locate(path) == .marker { throw ChatSyncError.invalid(field: path, rule: "the format marker is not deleted by hand") }
            throw ChatSyncError.invalid(field: path, rule: "is not where the layout puts a document (see Store/FORMAT.md)")
        }
        if folder == nil {
            switch loc {
            case .chat, .mission, .hop:
                throw ChatSyncError.invalid(field: path, rule: "cannot be deleted while its folder holds other documents; delete the folder, or use the chatsync command")
            default: break
            }
        }
        let store = self.store
        try store.perform { tx in
            guard try tx.data(at: path) != nil else { return }
            try store.removeDocument(at: path, tx)
            tx.origin = .workdir
            tx.message = "\(loc.kind?.rawValue ?? "document") \(short(loc.id ?? "")): deleted by hand\(folder != nil ? " with its folder" : "")\n\nChatsync-Origin: workdir"
        }
    }

    /// A hop or tool step whose `sequence_order` was changed by hand goes to that place (first
    /// among equal numbers), and those it moves get a new `updated_at`, as `reorder` does.
    private static func placeReordered(_ loc: Layout.Location, _ value: JSONValue, before current: Data?, _ tx: Transaction) throws {
        guard case .int(let wanted)? = value["sequence_order"],
              case .object(let old)? = current?.withUnsafeBytes({ FastJSON.parse($0) }), old["sequence_order"] != .int(wanted) else { return }
        func place<D: Document & Sequenced>(_ docs: [D], _ id: String?) -> [D] {
            var rest = docs.filter { $0.id != id }
            guard let moved = docs.first(where: { $0.id == id }) else { return docs }
            rest.insert(moved, at: min(max(Int(wanted) - 1, 0), rest.count))
            return rest
        }
        switch loc {
        case .hop(let missionID, let id):
            try Store.renumber(place(try tx.hops(of: missionID), id), tx) { Layout.hop(missionID, $0.id) }
        case .toolStep(let missionID, let hopID, let id):
            try Store.renumber(place(try tx.steps(of: missionID, hopID), id), tx) { Layout.step(missionID, hopID, $0.id) }
        default: break
        }
    }


    private static func message(_ type: DocumentKind, _ id: String, old: Data?, new: Data) -> String {
        guard let old, case .object(let o)? = old.withUnsafeBytes({ FastJSON.parse($0) }),
              case .object(let n)? = new.withUnsafeBytes({ FastJSON.parse($0) }) else {
            return "\(type.rawValue) \(short(id)): created by hand (from the work tree)\n\nChatsync-Origin: workdir"
        }
        let changed = Set(o.keys).union(n.keys).filter { o[$0] != n[$0] }.sorted()
        return "\(type.rawValue) \(short(id)): edit \(changed.joined(separator: ", ")) by hand (from the work tree)\n\nChatsync-Origin: workdir"
    }
}

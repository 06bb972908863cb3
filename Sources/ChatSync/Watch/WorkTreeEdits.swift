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
        // the others are chatsync's own checkouts, not edits.
        let edited: [(String, Data?)]
        do {
            edited = try store.follower.whileHeld { recorded in
                try store.read { snap in
                    var out: [(String, Data?)] = []
                    for path in ready {
                        let bytes = FileManager.default.contents(atPath: store.path + "/" + path)
                        let head = try snap.data(at: path)
                        if bytes == head { continue }
                        if let recorded, bytes == (try snap.repo.entry(in: recorded, path: path)).flatMap({ try? snap.repo.readBlob($0.oid) }) { continue }
                        out.append((path, bytes))
                    }
                    return out
                }
            }
        } catch {
            return [errorEvent(nil, "\(error)")]
        }
        var events: [ChangeEvent] = []
        var handledDirs: [String] = []
        for (path, bytes) in edited where !handledDirs.contains(where: { path.hasPrefix($0 + "/") }) {
            do {
                if let dir = try commitEdit(path, bytes) { handledDirs.append(dir) }
            } catch {
                events.append(errorEvent(path, (error as? ChatSyncError)?.description ?? "\(error)"))
            }
        }
        return events
    }

    private func errorEvent(_ path: String?, _ message: String) -> ChangeEvent {
        let loc = path.flatMap(Layout.locate)
        return ChangeEvent(commit: nil, kind: .error, type: loc?.kind, id: loc?.id, origin: .workdir, time: .now(), path: path, error: message)
    }

    /// Validates and commits one hand edit. Returns a folder when the edit deleted it whole.
    private func commitEdit(_ path: String, _ bytes: Data?) throws -> String? {
        guard let loc = Layout.locate(path), let type = loc.kind, type != .conflict || bytes == nil else {
            if Layout.locate(path) == .marker { throw ChatSyncError.invalid(field: path, rule: "the format marker is not edited by hand") }
            throw ChatSyncError.invalid(field: path, rule: "is not where the layout puts a document (see Store/FORMAT.md)")
        }
        guard let bytes else { return try commitDeletion(path, loc) }
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
        // A hand edit is an edit: it gets a new updated_at unless the person set one.
        let headBytes = try store.read { try $0.data(at: path) }
        if let headBytes, case .object(let old)? = headBytes.withUnsafeBytes({ FastJSON.parse($0) }),
           case .object(var new)? = canonical.withUnsafeBytes({ FastJSON.parse($0) }),
           new["updated_at"] == old["updated_at"], type != .conflict {
            new["updated_at"] = .string(Timestamp.now().rfc3339)
            canonical = CanonicalJSON.serialize(.object(new))
        }
        let canonicalBytes = canonical
        try store.read { try parentCheck($0) }
        // Valid: the file takes the stored form before the commit, so the work tree shows the branch.
        if canonicalBytes != bytes { try? canonicalBytes.write(to: URL(fileURLWithPath: store.path + "/" + path)) }
        try store.perform { tx in
            try parentCheck(tx)
            let old = try tx.data(at: path)
            tx.putRaw(canonicalBytes, at: path)
            try Self.renumber(after: loc, tx)
            tx.origin = .workdir
            tx.message = Self.message(type, loc.id ?? "", old: old, new: canonicalBytes)
        }
        return nil
    }

    private func commitDeletion(_ path: String, _ loc: Layout.Location) throws -> String? {
        let fm = FileManager.default
        var folder: String?
        switch loc {
        case .chat(let id): folder = Layout.chatDir(id)
        case .mission(let id): folder = Layout.missionDir(id)
        case .hop(let m, let id): folder = Layout.hopDir(m, id)
        default: break
        }
        if let folder, fm.fileExists(atPath: store.path + "/" + folder) {
            throw ChatSyncError.invalid(field: path, rule: "cannot be deleted while its folder holds other documents; delete the folder, or use the chatsync command")
        }
        try store.perform { tx in
            if let folder {
                if case .chat(let id) = loc {
                    let users = try tx.shardedDocuments(UserSession.self, in: "sessions").filter { $0.chatID == id }
                    if !users.isEmpty { throw ChatSyncError.conflict("chat \(id) is used by session(s) \(users.map(\.id).joined(separator: ", "))") }
                }
                try tx.deleteTree(folder)
            } else {
                try tx.delete(path)
                try Self.renumber(after: loc, tx)
            }
            tx.origin = .workdir
            tx.message = "\(loc.kind?.rawValue ?? "document") \(short(loc.id ?? "")): deleted by hand\(folder != nil ? " with its folder" : "")\n\nChatsync-Origin: workdir"
        }
        return folder
    }

    /// Keeps numbers whole after a hand edit: a chat's messages, a mission's hops, a hop's steps.
    private static func renumber(after loc: Layout.Location, _ tx: Transaction) throws {
        switch loc {
        case .message(let chatID, _): _ = try TreeMerge.renumberMessages(chatID, tx)
        case .hop(let missionID, _): _ = try TreeMerge.renumberOrdered(try tx.names(in: Layout.hopsDir(missionID)).map { Layout.hop(missionID, $0) }, tx)
        case .toolStep(let missionID, let hopID, _): _ = try TreeMerge.renumberOrdered(try tx.files(under: Layout.stepsDir(missionID, hopID)), tx)
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

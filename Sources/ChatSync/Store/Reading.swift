import Foundation
import GitKit

/// Read access to the documents of one state of the store: a commit (`Snapshot`) or a change
/// being built on top of one (`Transaction`). The services read through it, so the same rule
/// reads the same way whether it answers a query or checks a change.
public protocol DocumentReader: AnyObject {
    /// The bytes at a path, or nil if there is no file there.
    func data(at path: String) throws -> Data?
    /// Whether a document is at `path` (without reading it).
    func exists(_ path: String) throws -> Bool
    /// Every file path below a folder (recursively), in no particular order.
    func files(under dir: String) throws -> [String]
    /// The names directly inside a folder (files and folders).
    func names(in dir: String) throws -> [String]
    var decoder: JSONDecoder { get }
}

extension DocumentReader {
    /// The document at a path, or nil. A file that does not decode is a damaged store, named by path.
    public func document<D: Document>(_ type: D.Type, at path: String) throws -> D? {
        guard let data = try data(at: path) else { return nil }
        do {
            return try decoder.decode(type, from: data)
        } catch {
            throw ChatSyncError.badStore("\(path) is not a valid \(D.kind.rawValue) document: \(describeDecodingError(error))")
        }
    }

    /// The document at a path; `notFound` naming its kind and id when absent.
    public func require<D: Document>(_ type: D.Type, at path: String, id: String) throws -> D {
        guard let d = try document(type, at: path) else { throw ChatSyncError.notFound(kind: D.kind.rawValue, id: id) }
        return d
    }


    /// Every document of a type stored as `<dir>/<shard>/<id>.json` (sessions, assets).
    public func shardedDocuments<D: Document>(_ type: D.Type, in dir: String) throws -> [D] {
        var result: [D] = []
        for path in try files(under: dir) where path.hasSuffix(".json") {
            if let d = try document(type, at: path) { result.append(d) }
        }
        return result
    }
}

/// One commit's state of the store, read through one libgit2 handle.
public final class Snapshot: DocumentReader {
    let repo: Repository
    /// The commit, or nil when the branch has no commit yet.
    public let commit: OID?
    /// The commit's tree.
    public let tree: OID
    public let decoder = DocumentCoding.makeDecoder()

    init(repo: Repository, commit: OID?, tree: OID) {
        self.repo = repo; self.commit = commit; self.tree = tree
    }

    public func data(at path: String) throws -> Data? {
        guard let e = try repo.entry(in: tree, path: path), e.kind == .blob else { return nil }
        return try repo.readBlob(e.oid)
    }

    public func exists(_ path: String) throws -> Bool {
        try repo.entry(in: tree, path: path)?.kind == .blob
    }

    /// The id of the tree or blob at a path, or nil.
    public func oid(at path: String) throws -> OID? {
        try repo.entry(in: tree, path: path)?.oid
    }

    public func names(in dir: String) throws -> [String] {
        guard let e = try repo.entry(in: tree, path: dir), e.kind == .tree else { return [] }
        return try repo.entries(of: e.oid).map(\.name)
    }

    public func files(under dir: String) throws -> [String] {
        guard let e = try repo.entry(in: tree, path: dir), e.kind == .tree else { return [] }
        var out: [String] = []
        try collect(e.oid, prefix: dir, into: &out)
        return out
    }

    /// Every blob below a tree, with its path.
    func blobs(under treeOID: OID, prefix: String) throws -> [(path: String, oid: OID)] {
        var out: [(String, OID)] = []
        func walk(_ t: OID, _ p: String) throws {
            for e in try repo.entries(of: t) {
                let path = p.isEmpty ? e.name : p + "/" + e.name
                switch e.kind {
                case .tree: try walk(e.oid, path)
                case .blob: out.append((path, e.oid))
                case .other: break
                }
            }
        }
        try walk(treeOID, prefix)
        return out
    }

    private func collect(_ t: OID, prefix: String, into out: inout [String]) throws {
        for e in try repo.entries(of: t) {
            let path = prefix + "/" + e.name
            if e.kind == .tree { try collect(e.oid, prefix: path, into: &out) } else if e.kind == .blob { out.append(path) }
        }
    }
}

/// A change being built on top of a snapshot: writes are kept in memory and read back by
/// later reads of the same change; the writer turns them into one commit.
public final class Transaction: DocumentReader {
    public let base: Snapshot
    /// What a change puts at a path.
    enum Staged {
        case data(Data)
        /// A blob already in the object database (taken from another commit, as in a merge).
        case blob(OID)
        case deleted
    }
    /// Path → what this change puts there.
    private(set) var pending: [String: Staged] = [:]
    /// A second parent: this change is a merge of that commit.
    var mergeParent: OID?
    /// Instead of a new commit, move the branch to this commit (a fast-forward).
    var fastForward: OID?
    /// Where this change comes from, for the watch stream.
    var origin: ChangeOrigin = .local
    /// Folders removed whole (a chat with its messages, a mission with its hops).
    private(set) var removedDirs: [String] = []
    /// The commit message; the change must set it.
    public var message = ""
    /// The clock of this change: one reading, so that every timestamp of a change is the same.
    public let now: Timestamp
    /// Facts about chats' messages after this change, handed to the writer's cache.
    var summaries: [String: ChatSummary] = [:]
    let limits: DocumentLimits

    public var decoder: JSONDecoder { base.decoder }

    init(base: Snapshot, now: Timestamp, limits: DocumentLimits) {
        self.base = base; self.now = now; self.limits = limits
    }

    public var isEmpty: Bool { pending.isEmpty && removedDirs.isEmpty && mergeParent == nil && fastForward == nil }

    private func isRemoved(_ path: String) -> Bool {
        removedDirs.contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    public func exists(_ path: String) throws -> Bool {
        switch pending[path] {
        case .data?, .blob?: return true
        case .deleted?: return false
        case nil: return isRemoved(path) ? false : try base.exists(path)
        }
    }

    public func data(at path: String) throws -> Data? {
        switch pending[path] {
        case .data(let d)?: return d
        case .blob(let oid)?: return try base.repo.readBlob(oid)
        case .deleted?: return nil
        case nil:
            if isRemoved(path) { return nil }
            return try base.data(at: path)
        }
    }

    /// What this change did below a folder: path → the new bytes, nil for deleted. Nil when it
    /// removed a folder there whole (the caller then reads the folder as the change leaves it).
    func edits(under dir: String) throws -> [(String, Data?)]? {
        if removedDirs.contains(where: { $0 == dir || $0.hasPrefix(dir + "/") || dir.hasPrefix($0 + "/") }) { return nil }
        var out: [(String, Data?)] = []
        for (path, value) in pending where path.hasPrefix(dir + "/") && path.hasSuffix(".json") {
            switch value {
            case .deleted: out.append((path, nil))
            case .data(let d): out.append((path, d))
            case .blob(let oid): out.append((path, try base.repo.readBlob(oid)))
            }
        }
        return out
    }

    public func files(under dir: String) throws -> [String] {
        if isRemoved(dir) { return [] }
        var set = Set(try base.files(under: dir).filter { !isRemoved($0) })
        for (path, value) in pending where path.hasPrefix(dir + "/") {
            if case .deleted = value { set.remove(path) } else { set.insert(path) }
        }
        return Array(set)
    }

    public func names(in dir: String) throws -> [String] {
        if isRemoved(dir) { return [] }
        var set = Set(try base.names(in: dir).filter { !isRemoved(dir + "/" + $0) })
        for (path, value) in pending where path.hasPrefix(dir + "/") {
            if case .deleted = value { continue }
            let rest = path.dropFirst(dir.count + 1)
            if let first = rest.split(separator: "/").first { set.insert(String(first)) }
        }
        return Array(set)
    }

    /// Calls `body` with every file below a folder as this change leaves it, reading the
    /// base with one walk of its tree (not a path lookup per file).
    func forEachFile(under dir: String, _ body: (String, UnsafeRawBufferPointer) throws -> Void) throws {
        if isRemoved(dir) { return }
        var seen = Set<String>()
        if let tree = try base.oid(at: dir) {
            for (path, oid) in try base.blobs(under: tree, prefix: dir) where !isRemoved(path) {
                seen.insert(path)
                switch pending[path] {
                case .deleted?: continue
                case .data(let d)?: try d.withUnsafeBytes { try body(path, $0) }
                case .blob(let other)?: try base.repo.withBlob(other) { try body(path, $0) }
                case nil: try base.repo.withBlob(oid) { try body(path, $0) }
                }
            }
        }
        for (path, value) in pending where path.hasPrefix(dir + "/") && !seen.contains(path) {
            switch value {
            case .deleted: continue
            case .data(let d): try d.withUnsafeBytes { try body(path, $0) }
            case .blob(let oid): try base.repo.withBlob(oid) { try body(path, $0) }
            }
        }
    }

    /// Validates a document and stages it at a path.
    public func put<D: Document>(_ doc: D, at path: String) throws {
        try doc.validate(limits)
        pending[path] = .data(try DocumentCoding.encode(doc))
    }

    /// Stages raw bytes (the format marker, files the store keeps beside documents).
    func putRaw(_ data: Data, at path: String) { pending[path] = .data(data) }

    /// Stages a blob that is already in the object database.
    func putBlob(_ oid: OID, at path: String) { pending[path] = .blob(oid) }

    /// Stages the deletion of a file.
    public func delete(_ path: String) throws {
        if try base.oid(at: path) != nil && !isRemoved(path) { pending[path] = .deleted } else { pending.removeValue(forKey: path) }
    }

    /// Stages the deletion of a folder and everything in it.
    public func deleteTree(_ dir: String) throws {
        for key in pending.keys where key.hasPrefix(dir + "/") { pending.removeValue(forKey: key) }
        if try base.oid(at: dir) != nil { removedDirs.append(dir) }
    }

    /// The tree updates of this change, in two steps: removed folders first, then files
    /// (libgit2 leaves removing and adding below one path in one call undefined).
    func treeUpdates(writeBlob: (Data) throws -> OID) throws -> [[TreeUpdate]] {
        var files: [TreeUpdate] = []
        files.reserveCapacity(pending.count)
        for (path, value) in pending.sorted(by: { $0.key < $1.key }) {
            switch value {
            case .data(let d): files.append(.upsert(path, try writeBlob(d)))
            case .blob(let oid): files.append(.upsert(path, oid))
            case .deleted: files.append(.remove(path))
            }
        }
        return [removedDirs.map { .remove($0) }, files].filter { !$0.isEmpty }
    }

    /// The paths this change touches (files and removed folders).
    var touchedPaths: [String] { Array(pending.keys) + removedDirs }
}

import CLibgit2
import Foundation

/// The kind of an entry in a tree.
public enum EntryKind: Sendable, Equatable {
    case blob, tree, other
}

/// One entry of a git tree.
public struct TreeEntry: Sendable, Equatable {
    public let name: String
    public let oid: OID
    public let kind: EntryKind
}

/// One change to apply to a tree: put a blob at a path, or remove the entry at a path.
public struct TreeUpdate: Sendable {
    public enum Action: Sendable { case upsert(OID), remove }
    public let path: String
    public let action: Action
    public init(path: String, action: Action) { self.path = path; self.action = action }
    public static func upsert(_ path: String, _ oid: OID) -> TreeUpdate { .init(path: path, action: .upsert(oid)) }
    public static func remove(_ path: String) -> TreeUpdate { .init(path: path, action: .remove) }
}

/// Author or committer identity.
public struct Signature: Sendable, Equatable {
    public var name: String
    public var email: String
    /// Seconds since 1970.
    public var time: Int64
    public init(name: String, email: String, time: Int64) { self.name = name; self.email = email; self.time = time }
}

/// A commit, read back.
public struct CommitInfo: Sendable {
    public let oid: OID
    public let tree: OID
    public let parents: [OID]
    public let message: String
    public let author: Signature
    public let committer: Signature
    public var summary: String { message.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? "" }
}

/// A path whose blob differs between two trees.
public struct TreeChange: Sendable, Equatable {
    public enum Status: Sendable { case added, deleted, modified }
    public let path: String
    public let status: Status
    public let oldOID: OID?
    public let newOID: OID?
}

/// Results filled in by several threads, one slot each.
private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<T, Error>?]
    init(_ count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    func values() -> [Result<T, Error>] { lock.lock(); defer { lock.unlock() }; return slots.map { $0 ?? .failure(GitError(code: -1, message: "not read", operation: "read blobs")) } }
}

/// A libgit2 repository handle. Not thread-safe: use one handle per thread at a time
/// (several handles on one repository, in one or several processes, are fine).
public final class Repository: @unchecked Sendable {
    let pointer: OpaquePointer
    private var mempack: OpaquePointer?
    private var odbPointer: OpaquePointer?
    /// `PackRemovals.count` when this handle's object database was made.
    private var removalsSeen = PackRemovals.count
    /// When this handle last listed the pack folder, and the indexes it has seen there since its
    /// object database was made (packs removed by other processes: see `letGoOfRemovedPacks`).
    private var packLook: (time: UInt64, indexes: Set<String>) = (0, [])
    /// How often a handle looks for packs removed by other processes (nanoseconds; tests set 0).
    nonisolated(unsafe) static var packLookInterval: UInt64 = 10_000_000_000
    /// The objects written to the in-memory buffer since the last flush.
    private var buffered: [PackObject] = []
    /// The entries of trees this handle built or read lately, by id (trees never change): the
    /// next change below the same folders starts from them instead of reading and parsing them.
    private var builtTrees: [OID: [RawEntry]] = [:]
    /// Whether `core.logAllRefUpdates` is false, as read when `.git/config` was this file
    /// (inode, size, modification time; see `prepareReferenceUpdate`).
    var noReflogs: (file: [Int], value: Bool)?
    /// Names this handle's spare lock files (see `ReferenceUpdate`); nil once renameat2 proved
    /// unusable here.
    var spareToken: String? = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    /// How many trees, and entries of all of them, each generation of kept trees holds (see
    /// `remember`; an entry takes about 100 bytes): a handle that only reads keeps fewer (two
    /// generations of 16,384 entries: about 3 MB) than one that makes changes
    /// (`bufferObjectsInMemory`: 65,536 entries a generation, about 13 MB); lower in tests.
    var keptTreeLimits = (trees: 4_096, entries: 16_384)
    private var olderTrees: [OID: [RawEntry]] = [:]
    /// Trees read through libgit2 because they were not kept (for tests).
    var keptTreeMisses = 0
    /// The entries held in `builtTrees`, all trees together.
    private var builtEntries = 0

    private func track(_ oid: OID, _ type: git_object_t, _ bytes: [UInt8]) {
        if mempack != nil { buffered.append(PackObject(oid: oid, type: type, bytes: bytes)) }
    }

    private init(pointer: OpaquePointer) { self.pointer = pointer }

    deinit {
        if let odbPointer { git_odb_free(odbPointer) }
        git_repository_free(pointer)
    }

    /// Opens an existing repository (the work tree folder or the .git folder).
    public static func open(_ path: String) throws -> Repository {
        GitRuntime.initialize()
        var out: OpaquePointer?
        try check(git_repository_open_ext(&out, path, UInt32(GIT_REPOSITORY_OPEN_NO_SEARCH.rawValue), nil), "open repository \(path)")
        return Repository(pointer: out!)
    }

    /// Creates a repository (non-bare unless `bare`) whose HEAD names `initialBranch`.
    public static func create(at path: String, bare: Bool = false, initialBranch: String = "main") throws -> Repository {
        GitRuntime.initialize()
        var opts = git_repository_init_options()
        try check(git_repository_init_options_init(&opts, UInt32(GIT_REPOSITORY_INIT_OPTIONS_VERSION)), "init options")
        opts.flags = UInt32(GIT_REPOSITORY_INIT_MKPATH.rawValue)
        if bare { opts.flags |= UInt32(GIT_REPOSITORY_INIT_BARE.rawValue) }
        var out: OpaquePointer?
        let code = initialBranch.withCString { branch -> Int32 in
            opts.initial_head = branch
            return git_repository_init_ext(&out, path, &opts)
        }
        try check(code, "create repository \(path)")
        return Repository(pointer: out!)
    }

    /// The folders that do not exist yet on the way to `path` (`path` first, then the folders
    /// above it), which creating a repository there makes.
    public static func missingFolders(_ path: String) -> [String] {
        var made: [String] = []
        var p = (path as NSString).standardizingPath
        while p != "/" && !p.isEmpty && !FileManager.default.fileExists(atPath: p) {
            made.append(p)
            p = (p as NSString).deletingLastPathComponent
        }
        return made
    }

    /// Fsyncs what creating (or configuring) this repository made, so that a crash cannot take
    /// it back under a commit: `HEAD` and `config` (libgit2 fsyncs neither), then at once the
    /// folders of objects, packs and branches, the git folder, the work tree folder and the
    /// folder above each folder in `made` (from `missingFolders`, taken before creating), which
    /// makes every new name durable.
    public func syncCreated(made: [String]) throws {
        let git = gitDir
        try fsyncFiles([git + "HEAD", git + "config"])
        var folders = [git + "objects/pack", git + "objects", git + "refs/heads", git + "refs", git]
        if let workdir { folders.append(workdir) }
        for folder in made { folders.append((folder as NSString).deletingLastPathComponent) }
        var seen = Set<String>()
        try fsyncFiles(folders.map { ($0 as NSString).standardizingPath }.filter { seen.insert($0).inserted })
    }

    /// The work tree folder with a trailing slash, or nil for a bare repository.
    public var workdir: String? { git_repository_workdir(pointer).map { String(cString: $0) } }
    /// The .git folder with a trailing slash.
    public var gitDir: String { String(cString: git_repository_path(pointer)) }
    public var isBare: Bool { git_repository_is_bare(pointer) == 1 }

    // MARK: objects

    /// Writes a blob (to the in-memory pack when one is attached) and returns its id.
    public func writeBlob(_ data: Data) throws -> OID {
        var oid = git_oid()
        if let mempack {
            // Hash it and hand it to the in-memory pack directly (duplicates are harmless there).
            let backend = UnsafeMutablePointer<git_odb_backend>(mempack)
            let code = data.withUnsafeBytes { buf -> Int32 in
                oid = SHA1Hasher.objectID(buf, type: GIT_OBJECT_BLOB)
                return chatsync_backend_write(backend, &oid, buf.baseAddress, buf.count, GIT_OBJECT_BLOB)
            }
            try check(code, "write blob")
            track(OID(oid), GIT_OBJECT_BLOB, [UInt8](data))
            return OID(oid)
        }
        let code = data.withUnsafeBytes { buf in
            git_blob_create_from_buffer(&oid, pointer, buf.baseAddress, buf.count)
        }
        try check(code, "write blob")
        return OID(oid)
    }

    /// Reads a blob's bytes.
    public func readBlob(_ oid: OID) throws -> Data {
        try withBlob(oid) { Data($0) }
    }

    /// The ids of the blobs below a tree (recursively) whose names end with `suffix`, in tree order.
    public func blobs(under treeOID: OID, suffix: String) throws -> [OID] {
        var result: [OID] = []
        try forEachBlob(under: treeOID, suffix: suffix) { result.append($0) }
        return result
    }

    /// Gives each blob's bytes to `body`, reading straight from the pack files (see
    /// `PackReader`; anything else through the object database), on up to `threads` threads,
    /// each with a handle of its own. Results come back in the order of `oids`.
    public func mapBlobs<T>(_ oids: [OID], threads: Int, _ body: @escaping (UnsafeRawBufferPointer) throws -> T) throws -> [T] {
        // Other handles cannot see objects in this one's memory buffer: one thread then.
        let parts = mempack != nil ? 1 : max(1, min(threads, oids.count / 1_000))
        if parts == 1 { return try read(oids, body) }
        let chunk = (oids.count + parts - 1) / parts
        return try inParallel(parts) { repo, part in
            try repo.read(Array(oids[(part * chunk)..<min(oids.count, (part + 1) * chunk)]), body)
        }
    }

    /// Like `mapBlobs(blobs(under:suffix:), ...)`, with the walk shared out too: when the tree
    /// looks big (its first folder's blobs times the number of folders), each thread walks and
    /// reads its own share of the top-level folders. Results come in no particular order.
    public func mapBlobs<T>(under treeOID: OID, suffix: String, threads: Int, _ body: @escaping (UnsafeRawBufferPointer) throws -> T) throws -> [T] {
        let top = try entries(of: treeOID)
        let folders = top.filter { $0.kind == .tree }.map(\.oid)
        var first = top.filter { $0.kind == .blob && $0.name.hasSuffix(suffix) }.map(\.oid)
        if let f = folders.first { try forEachBlob(under: f, suffix: suffix) { first.append($0) } }
        let estimate = first.count * max(1, folders.count)
        // Other handles cannot see objects in this one's memory buffer: one thread then.
        let parts = estimate >= 2_000 && mempack == nil ? max(1, min(threads, folders.count)) : 1
        if parts == 1 {
            var oids = first
            for f in folders.dropFirst() { try forEachBlob(under: f, suffix: suffix) { oids.append($0) } }
            return try read(oids, inPackOrder: true, body)
        }
        nonisolated(unsafe) let firstShare = first
        return try inParallel(parts) { repo, part in
            var oids = part == 0 ? firstShare : []
            for (k, f) in folders.enumerated().dropFirst() where k % parts == part {
                try repo.forEachBlob(under: f, suffix: suffix) { oids.append($0) }
            }
            return try repo.read(oids, inPackOrder: true, body)
        }
    }

    /// Objects' bytes, from the pack files where `PackReader` can, else from the object database:
    /// in the order of `oids`, or, `inPackOrder`, in the order they lie in the packs (each pack
    /// read front to back rather than at random).
    private func read<T>(_ oids: [OID], inPackOrder: Bool = false, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> [T] {
        // Mapping the packs pays off for more than a few objects.
        guard oids.count >= 64 else { return try oids.map { try readRaw($0, body) } }
        let reader = PackReader(packDirectory: packDirectory)
        guard inPackOrder else { return try oids.map { try reader.read($0, body) ?? readRaw($0, body) } }
        var located: [(pack: Int, offset: Int, index: Int)] = []
        located.reserveCapacity(oids.count)
        var elsewhere: [OID] = []
        for (i, oid) in oids.enumerated() {
            if let (p, offset) = reader.locate(oid) { located.append((p, offset, i)) } else { elsewhere.append(oid) }
        }
        located.sort { $0.pack != $1.pack ? $0.pack < $1.pack : $0.offset < $1.offset }
        var out: [T] = []
        out.reserveCapacity(oids.count)
        for l in located { out.append(try reader.read(pack: l.pack, offset: l.offset, body) ?? readRaw(oids[l.index], body)) }
        for oid in elsewhere { out.append(try readRaw(oid, body)) }
        return out
    }

    /// Runs `work` for parts 0..<parts at once, part 0 with this handle and each other part with
    /// a handle of its own (handles are not shared between threads); the results in part order.
    private func inParallel<T>(_ parts: Int, _ work: @escaping (Repository, Int) throws -> [T]) throws -> [T] {
        let box = ResultBox<[T]>(parts)
        let path = gitDir
        nonisolated(unsafe) let unsafeSelf = self
        nonisolated(unsafe) let unsafeWork = work
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            do {
                box.set(part, .success(try unsafeWork(part == 0 ? unsafeSelf : try Repository.open(path), part)))
            } catch {
                box.set(part, .failure(error))
            }
        }
        return try box.values().flatMap { try $0.get() }
    }

    /// An object's raw bytes, read from the object database.
    func readRaw<T>(_ oid: OID, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let odb = try objectDatabase()
        var object: OpaquePointer?
        var raw = oid.raw
        try check(retryingRemovedPacks { git_odb_read(&object, odb, &raw) }, "read object \(oid.short)")
        defer { git_odb_object_free(object) }
        return try body(UnsafeRawBufferPointer(start: git_odb_object_data(object), count: git_odb_object_size(object)))
    }

    /// The repository's object database (kept until `letGoOfRemovedPacks` replaces it).
    func objectDatabase() throws -> OpaquePointer {
        if let odbPointer { return odbPointer }
        var odb: OpaquePointer?
        try check(git_repository_odb(&odb, pointer), "open object database")
        odbPointer = odb
        return odb!
    }

    /// Gives the blob's bytes to `body` without copying them.
    public func withBlob<T>(_ oid: OID, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        var blob: OpaquePointer?
        var raw = oid.raw
        try check(retryingRemovedPacks { git_blob_lookup(&blob, pointer, &raw) }, "read blob \(oid.short)")
        defer { git_blob_free(blob) }
        let size = Int(git_blob_rawsize(blob))
        guard let bytes = git_blob_rawcontent(blob) else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: bytes, count: size))
    }

    /// The id of the empty tree (written if needed).
    public func emptyTree() throws -> OID {
        try writeObject([], type: GIT_OBJECT_TREE)
    }

    private func lookupTree(_ oid: OID) throws -> OpaquePointer {
        var tree: OpaquePointer?
        var raw = oid.raw
        try check(retryingRemovedPacks { git_tree_lookup(&tree, pointer, &raw) }, "read tree \(oid.short)")
        return tree!
    }

    /// The entry at `path` (slash-separated; a trailing slash asks for a folder) below the tree
    /// `root`, or nil when there is none (as `git_tree_entry_bypath` finds it). The trees on the
    /// way come from those this handle built or read lately (see `builtTrees`): a change checks
    /// whether its document exists below trees the change before it built, and libgit2 would
    /// look up and parse each of them, and format an error message for every path not there.
    public func entry(in root: OID, path: String) throws -> TreeEntry? {
        var bytes = Array(path.utf8)
        var mustBeFolder = false
        if bytes.count > 1, bytes.last == UInt8(ascii: "/") {
            bytes.removeLast()
            mustBeFolder = true
        }
        var tree = root
        var start = 0
        while true {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "/")) ?? bytes.count
            guard end > start else { return nil }
            let entries = try treeEntries(tree)
            let found = bytes.withUnsafeBufferPointer { name -> RawEntry? in
                let want = UnsafeBufferPointer(rebasing: name[start..<end])
                for e in entries where e.name.count == want.count {
                    if e.name.withUnsafeBufferPointer({ memcmp($0.baseAddress!, want.baseAddress!, want.count) == 0 }) { return e }
                }
                return nil
            }
            guard let found else { return nil }
            if end == bytes.count {
                if mustBeFolder && !found.isTree { return nil }
                let kind: EntryKind
                switch found.mode & 0o170000 {
                case 0o040000: kind = .tree
                case 0o160000: kind = .other
                default: kind = .blob
                }
                return TreeEntry(name: String(decoding: found.name, as: UTF8.self), oid: OID(found.oid), kind: kind)
            }
            guard found.isTree else { return nil }
            tree = OID(found.oid)
            start = end + 1
        }
    }

    /// A tree's entries in git's order, from those built or read lately, else read and kept.
    private func treeEntries(_ oid: OID) throws -> [RawEntry] {
        if let known = builtTrees[oid] { return known }
        let entries = try olderOrRead(oid)
        remember(oid, entries)
        return entries
    }

    /// A tree's entries from the older generation, else read (a miss), without keeping them.
    private func olderOrRead(_ oid: OID) throws -> [RawEntry] {
        if let older = olderTrees[oid] { return older }
        keptTreeMisses += 1
        return try rawEntries(oid)
    }

    /// Keeps a tree's entries. The kept trees are two generations: when the newer one holds
    /// `keptTreeLimits` trees or entries, it becomes the older one (the
    /// older one is dropped), and a tree found in the older one moves to the newer one, so the
    /// trees in use stay (the folders of a long chat) and those replaced by later changes go.
    private func remember(_ oid: OID, _ entries: [RawEntry]) {
        guard entries.count <= 4096 else { return }
        if builtTrees.count >= keptTreeLimits.trees || builtEntries + entries.count > keptTreeLimits.entries {
            olderTrees = builtTrees
            builtTrees = [:]
            builtTrees.reserveCapacity(olderTrees.count)
            builtEntries = 0
        }
        if builtTrees.updateValue(entries, forKey: oid) == nil { builtEntries += entries.count }
    }

    private func forget(_ oid: OID) {
        if let gone = builtTrees.removeValue(forKey: oid) { builtEntries -= gone.count }
        olderTrees.removeValue(forKey: oid)
    }

    /// The entries of a tree, in git's order.
    public func entries(of treeOID: OID) throws -> [TreeEntry] {
        let tree = try lookupTree(treeOID)
        defer { git_tree_free(tree) }
        let count = git_tree_entrycount(tree)
        var result: [TreeEntry] = []
        result.reserveCapacity(count)
        for i in 0..<count {
            if let e = git_tree_entry_byindex(tree, i) { result.append(Self.makeEntry(e)) }
        }
        return result
    }

    private static func makeEntry(_ e: OpaquePointer) -> TreeEntry {
        let name = String(cString: git_tree_entry_name(e))
        let oid = OID(git_tree_entry_id(e)!.pointee)
        let kind: EntryKind
        switch git_tree_entry_type(e) {
        case GIT_OBJECT_BLOB: kind = .blob
        case GIT_OBJECT_TREE: kind = .tree
        default: kind = .other
        }
        return TreeEntry(name: name, oid: oid, kind: kind)
    }

    /// Calls `body` with the id of every blob below a tree whose name ends with `suffix`, recursively,
    /// without making strings of the names (the fast path for reading many documents).
    public func forEachBlob(under treeOID: OID, suffix: String, _ body: (OID) throws -> Void) throws {
        let tree = try lookupTree(treeOID)
        defer { git_tree_free(tree) }
        let suffixBytes = Array(suffix.utf8)
        for i in 0..<git_tree_entrycount(tree) {
            guard let e = git_tree_entry_byindex(tree, i) else { continue }
            switch git_tree_entry_type(e) {
            case GIT_OBJECT_TREE:
                try forEachBlob(under: OID(git_tree_entry_id(e)!.pointee), suffix: suffix, body)
            case GIT_OBJECT_BLOB:
                let name = git_tree_entry_name(e)!
                let n = strlen(name)
                guard n >= suffixBytes.count else { continue }
                var matches = true
                for (k, c) in suffixBytes.enumerated() where UInt8(bitPattern: name[n - suffixBytes.count + k]) != c { matches = false; break }
                if matches { try body(OID(git_tree_entry_id(e)!.pointee)) }
            default:
                continue
            }
        }
    }

    /// Builds a new tree from `base` with `updates` applied; only the touched folders are
    /// rewritten. A folder left empty disappears; removing a path that is not there does nothing;
    /// removing a folder's path removes the folder with everything in it.
    ///
    /// (Done here rather than with `git_tree_create_updated`, whose every object write makes
    /// libgit2 rescan the pack folder; this writes each new tree once, into the in-memory pack
    /// when one is attached.)
    public func updateTree(_ base: OID, _ updates: [TreeUpdate]) throws -> OID {
        if updates.isEmpty { return base }
        var root = TreeNode()
        for u in updates {
            // Split on the bytes (a split of the String walks it a Character at a time).
            let parts = u.path.utf8.split(separator: UInt8(ascii: "/")).map { String(decoding: $0, as: UTF8.self) }
            guard !parts.isEmpty else { throw GitError(code: -1, message: "empty path", operation: "update tree") }
            try Self.insert(&root, parts[...], u.action, path: u.path)
        }
        return try build(base, root) ?? emptyTree()
    }

    /// The updates below one folder, by name.
    private struct TreeNode {
        var leaf: TreeUpdate.Action?
        var children: [String: TreeNode] = [:]
    }

    /// Adds an update below `node`, changing the nodes on its path in place (no copy of a
    /// folder's updates per update).
    private static func insert(_ node: inout TreeNode, _ parts: ArraySlice<String>, _ action: TreeUpdate.Action, path: String) throws {
        let name = parts.first!
        if parts.count == 1 {
            node.children[name, default: TreeNode()].leaf = action
            return
        }
        if case .upsert? = node.children[name]?.leaf { throw GitError(code: -1, message: "\(path) puts a file under a file", operation: "update tree") }
        try insert(&node.children[name, default: TreeNode()], parts.dropFirst(), action, path: path)
    }

    private struct RawEntry {
        var name: [UInt8]
        var mode: UInt32
        var oid: git_oid
        var isTree: Bool { mode == 0o040000 }
    }

    private func rawEntries(_ treeOID: OID) throws -> [RawEntry] {
        let tree = try lookupTree(treeOID)
        defer { git_tree_free(tree) }
        let count = git_tree_entrycount(tree)
        var result: [RawEntry] = []
        result.reserveCapacity(count + 1)
        for i in 0..<count {
            guard let e = git_tree_entry_byindex(tree, i) else { continue }
            let cname = git_tree_entry_name(e)!
            let name = Array(UnsafeRawBufferPointer(start: cname, count: strlen(cname)).bindMemory(to: UInt8.self))
            result.append(RawEntry(name: name, mode: git_tree_entry_filemode(e).rawValue, oid: git_tree_entry_id(e)!.pointee))
        }
        return result
    }

    private static let blobMode = Array("100644".utf8)
    private static let treeMode = Array("40000".utf8)

    /// git's order of tree entries: by name, a folder's name compared as if it ended with "/".
    private static func gitOrder(_ a: RawEntry, _ b: RawEntry) -> Bool {
        a.name.withUnsafeBufferPointer { x in
            b.name.withUnsafeBufferPointer { y in
                let n = min(x.count, y.count)
                var i = 0
                while i < n {
                    if x[i] != y[i] { return x[i] < y[i] }
                    i += 1
                }
                // One name ends here: a folder goes on with "/", a file ends (-1).
                func at(_ name: UnsafeBufferPointer<UInt8>, _ tree: Bool, _ k: Int) -> Int {
                    k < name.count ? Int(name[k]) : (k == name.count && tree ? 0x2F : -1)
                }
                for k in n...(n + 1) {
                    let p = at(x, a.isTree, k), q = at(y, b.isTree, k)
                    if p != q { return p < q }
                    if p == -1 { return false }
                }
                return false
            }
        }
    }

    /// Applies `node` to the tree `base` (nil: none); returns nil when the result is empty.
    private func build(_ base: OID?, _ node: TreeNode) throws -> OID? {
        // Not kept on the way in: a folder that changes is forgotten below, and keeping it
        // first could turn the generations over for it.
        var entries = try base.map { try builtTrees[$0] ?? olderOrRead($0) } ?? []
        // A few changes (the usual case: one name per folder) are looked up by a scan.
        let useIndex = node.children.count > 4
        var index: [[UInt8]: Int] = [:]
        if useIndex { for (i, e) in entries.enumerated() { index[e.name] = i } }
        var removed = Set<Int>()
        var added: [RawEntry] = []
        for (name, child) in node.children {
            let key = Array(name.utf8)
            let existing = useIndex ? index[key] : entries.firstIndex { $0.name == key }
            if let leaf = child.leaf, child.children.isEmpty {
                switch leaf {
                case .remove:
                    if let i = existing { removed.insert(i) }
                case .upsert(let oid):
                    if let i = existing {
                        if entries[i].isTree { throw GitError(code: -1, message: "\(name) is a folder, not a file", operation: "update tree") }
                        entries[i].oid = oid.raw
                        entries[i].mode = GIT_FILEMODE_BLOB.rawValue
                    } else {
                        added.append(RawEntry(name: key, mode: GIT_FILEMODE_BLOB.rawValue, oid: oid.raw))
                    }
                }
                continue
            }
            // A folder: removed first if asked, then rebuilt with the updates below it.
            var subBase: OID?
            if let i = existing, entries[i].isTree, child.leaf == nil { subBase = OID(entries[i].oid) }
            if let i = existing, !entries[i].isTree, child.leaf == nil {
                throw GitError(code: -1, message: "\(name) is a file, not a folder", operation: "update tree")
            }
            let sub = try build(subBase, child)
            if let sub {
                if let i = existing {
                    entries[i] = RawEntry(name: key, mode: 0o040000, oid: sub.raw)
                    removed.remove(i)
                } else {
                    added.append(RawEntry(name: key, mode: 0o040000, oid: sub.raw))
                }
            } else if let i = existing {
                removed.insert(i)
            }
        }
        if !removed.isEmpty {
            entries = entries.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        }
        // git's order: by name, a folder's name compared as if it ended with "/". A tree read
        // from git is in that order already (checked in one pass, sorted if not), and each of a
        // few new names goes where a binary search puts it (many are sorted in with the rest).
        if added.count > 8 {
            entries += added
            added = []
        }
        if !(1..<max(1, entries.count)).allSatisfy({ Self.gitOrder(entries[$0 - 1], entries[$0]) }) {
            entries.sort(by: Self.gitOrder)
        }
        for e in added {
            var lo = 0, hi = entries.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if Self.gitOrder(entries[mid], e) { lo = mid + 1 } else { hi = mid }
            }
            entries.insert(e, at: lo)
        }
        if entries.isEmpty { return nil }
        let sorted = entries
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * 60)
        for e in sorted {
            switch e.mode {
            case 0o100644: bytes += Self.blobMode
            case 0o040000: bytes += Self.treeMode
            default: bytes += Array(String(e.mode, radix: 8).utf8)
            }
            bytes.append(0x20)
            bytes += e.name
            bytes.append(0)
            withUnsafeBytes(of: e.oid.id) { bytes += $0 }
        }
        let oid = try writeObject(bytes, type: GIT_OBJECT_TREE)
        // The folder's previous version is replaced in the tree being built: it goes, so that
        // the kept trees are those in use (a miss costs a read, never a wrong answer).
        if let base, base != oid { forget(base) }
        remember(oid, sorted)
        return oid
    }

    /// Writes a raw object: into the in-memory pack when one is attached, else through the object database.
    private func writeObject(_ bytes: [UInt8], type: git_object_t) throws -> OID {
        var oid = git_oid()
        let code = bytes.withUnsafeBytes { buf -> Int32 in
            if let mempack {
                oid = SHA1Hasher.objectID(buf, type: type)
                return chatsync_backend_write(UnsafeMutablePointer<git_odb_backend>(mempack), &oid, buf.baseAddress, buf.count, type)
            }
            var odb: OpaquePointer?
            let o = git_repository_odb(&odb, pointer)
            if o < 0 { return o }
            defer { git_odb_free(odb) }
            return git_odb_write(&oid, odb, buf.baseAddress, buf.count, type)
        }
        try check(code, "write \(type == GIT_OBJECT_TREE ? "tree" : "object")")
        track(OID(oid), type, bytes)
        return OID(oid)
    }

    /// Writes a commit object (no reference moves).
    public func createCommit(tree: OID, parents: [OID], author: Signature, committer: Signature? = nil, message: String) throws -> OID {
        // The commit's bytes as git_commit_create writes them (with its "encoding UTF-8"
        // header), written like any other object: git_commit_create would also look up the
        // tree and parents and check whether the commit exists, which rescans the pack folder.
        // Made as bytes (building a String and copying it out cost as much as the rest).
        let authorLine = try Self.signatureLine(author)
        let committerLine = try committer.map { try Self.signatureLine($0) } ?? authorLine
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64 + 48 * parents.count + authorLine.utf8.count + committerLine.utf8.count + message.utf8.count)
        bytes.append(contentsOf: "tree ".utf8)
        tree.appendHex(to: &bytes)
        for p in parents {
            bytes.append(contentsOf: "\nparent ".utf8)
            p.appendHex(to: &bytes)
        }
        bytes.append(contentsOf: "\nauthor ".utf8)
        bytes.append(contentsOf: authorLine.utf8)
        bytes.append(contentsOf: "\ncommitter ".utf8)
        bytes.append(contentsOf: committerLine.utf8)
        bytes.append(contentsOf: "\nencoding UTF-8\n\n".utf8)
        bytes.append(contentsOf: message.utf8)
        return try writeObject(bytes, type: GIT_OBJECT_COMMIT)
    }

    /// `Name <email> seconds +0000`, with the rules of git_signature_new: surrounding white space
    /// trimmed, no angle brackets or line breaks, a name is required.
    static func signatureLine(_ s: Signature) throws -> String {
        // The usual case, printable ASCII with nothing to trim, needs no Foundation.
        func plain(_ t: String) -> Bool {
            guard let first = t.utf8.first, let last = t.utf8.last, first != 0x20, last != 0x20 else { return false }
            return t.utf8.allSatisfy { $0 > 0x20 - 1 && $0 < 0x7F && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") }
        }
        if plain(s.name) && (s.email.isEmpty || plain(s.email)) { return "\(s.name) <\(s.email)> \(s.time) +0000" }
        let trim: (String) -> String = { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let name = trim(s.name), email = trim(s.email)
        let bad = CharacterSet(charactersIn: "<>\n\r\0")
        guard !name.isEmpty, name.rangeOfCharacter(from: bad) == nil, email.rangeOfCharacter(from: bad) == nil else {
            throw GitError(code: -1, message: "invalid signature: a name is required and neither name nor email may contain '<', '>' or a line break",
                           operation: "signature \(s.name) <\(s.email)>")
        }
        return "\(name) <\(email)> \(s.time) +0000"
    }

    /// Reads a commit.
    public func commit(_ oid: OID) throws -> CommitInfo {
        var c: OpaquePointer?
        var raw = oid.raw
        try check(retryingRemovedPacks { git_commit_lookup(&c, pointer, &raw) }, "read commit \(oid.short)")
        defer { git_commit_free(c) }
        let tree = OID(git_commit_tree_id(c)!.pointee)
        var parents: [OID] = []
        for i in 0..<git_commit_parentcount(c) {
            if let p = git_commit_parent_id(c, i) { parents.append(OID(p.pointee)) }
        }
        let message = git_commit_message(c).map { String(cString: $0) } ?? ""
        func sig(_ p: UnsafePointer<git_signature>?) -> Signature {
            guard let p else { return Signature(name: "", email: "", time: 0) }
            return Signature(name: String(cString: p.pointee.name), email: String(cString: p.pointee.email), time: Int64(p.pointee.when.time))
        }
        return CommitInfo(oid: oid, tree: tree, parents: parents, message: message,
                          author: sig(git_commit_author(c)), committer: sig(git_commit_committer(c)))
    }

    /// Resolves a revision the way git does (`HEAD~2`, a branch, an id prefix, `main@{1}`) to an object id,
    /// peeled to a commit when it names one.
    public func revparse(_ spec: String) throws -> OID {
        var obj: OpaquePointer?
        try check(git_revparse_single(&obj, pointer, spec), "resolve revision '\(spec)'")
        defer { git_object_free(obj) }
        var peeled: OpaquePointer?
        if git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT) == 0 {
            defer { git_object_free(peeled) }
            return OID(git_object_id(peeled)!.pointee)
        }
        return OID(git_object_id(obj)!.pointee)
    }

    // MARK: references

    /// The commit a reference points to (following symbolic references), or nil if it does not exist.
    public func referenceTarget(_ name: String) throws -> OID? {
        var out = git_oid()
        let code = git_reference_name_to_id(&out, pointer, name)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "read reference \(name)")
        return OID(out)
    }

    /// Moves `name` to `target` only if it still points to `expected` (nil: only if it does not exist).
    /// Throws a `GitError` with `isModified` when it lost the race, `isLocked` when a lock file is in the way.
    public func compareAndSwapReference(_ name: String, to target: OID, expected: OID?, message: String) throws {
        var ref: OpaquePointer?
        var t = target.raw
        let code: Int32
        if var e = expected?.raw {
            code = git_reference_create_matching(&ref, pointer, name, &t, 1, &e, message)
        } else {
            code = git_reference_create(&ref, pointer, name, &t, 0, message)
            if code == GIT_EEXISTS.rawValue {
                throw GitError(code: GIT_EMODIFIED.rawValue, message: "reference already exists", operation: "create reference \(name)")
            }
        }
        try check(code, "update reference \(name)")
        git_reference_free(ref)
    }

    /// Points HEAD at a branch (symbolic).
    public func setHead(_ refName: String) throws {
        try check(git_repository_set_head(pointer, refName), "set HEAD to \(refName)")
    }

    /// Names of references matching a glob, e.g. `refs/remotes/*`.
    public func referenceNames(glob: String) throws -> [String] {
        var arr = git_strarray()
        try check(git_reference_list(&arr, pointer), "list references")
        defer { git_strarray_dispose(&arr) }
        var names: [String] = []
        for i in 0..<arr.count {
            if let s = arr.strings[i] { names.append(String(cString: s)) }
        }
        return names.filter { fnmatch(glob, $0, 0) == 0 }
    }

    // MARK: work tree

    /// Brings the work tree and index from the tree `baseline` to the tree `target`, touching only `paths`.
    /// Files edited by hand since are left alone (`GIT_CHECKOUT_SAFE`); the other paths are still written.
    /// Each file gets its blob's bytes exactly: no filters (line-ending conversion, `filter=`
    /// drivers) are applied, so their attributes are not even looked up (libgit2 resolved each
    /// file's folder with `realpath` and looked for `.gitattributes` in every folder above it).
    public func checkout(from baseline: OID, to target: OID, paths: [String]) throws {
        if paths.isEmpty { return }
        var opts = git_checkout_options()
        try check(git_checkout_options_init(&opts, UInt32(GIT_CHECKOUT_OPTIONS_VERSION)), "checkout options")
        opts.checkout_strategy = GIT_CHECKOUT_SAFE.rawValue | GIT_CHECKOUT_DISABLE_PATHSPEC_MATCH.rawValue | GIT_CHECKOUT_ALLOW_CONFLICTS.rawValue
        opts.disable_filters = 1
        let baseTree = try lookupTree(baseline)
        defer { git_tree_free(baseTree) }
        let targetTree = try lookupTree(target)
        defer { git_tree_free(targetTree) }
        opts.baseline = baseTree
        let cPaths: [UnsafeMutablePointer<CChar>?] = paths.map { strdup($0) }
        defer { cPaths.forEach { free($0) } }
        var mutablePaths = cPaths
        let code = mutablePaths.withUnsafeMutableBufferPointer { buf -> Int32 in
            opts.paths = git_strarray(strings: buf.baseAddress, count: buf.count)
            return git_checkout_tree(pointer, targetTree, &opts)
        }
        try check(code, "check out \(paths.count) path(s)")
    }

    /// Makes the work tree and git's index show the tree `target`'s version of `paths` (or no
    /// file, where `target` has none), whatever the files hold now: each file that differs is
    /// replaced whole (a new file renamed over it), and its index entry is made from it. For
    /// files whose content the caller has just taken into a commit; the caller holds off other
    /// writers of the work tree.
    public func showInWorkTree(_ target: OID, paths: [String]) throws {
        guard let root = workdir, !paths.isEmpty else { return }
        var index: OpaquePointer?
        try check(git_repository_index(&index, pointer), "open index")
        defer { git_index_free(index) }
        try check(git_index_read(index, 1), "read index")
        for path in paths {
            let file = root + path
            if let e = try entry(in: target, path: path) {
                let data = try readBlob(e.oid)
                if FileManager.default.contents(atPath: file) != data {
                    try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                    try data.write(to: URL(fileURLWithPath: file), options: .atomic)
                }
                try check(git_index_add_bypath(index, path), "add \(path) to the index")
            } else {
                unlink(file)
                let code = git_index_remove_bypath(index, path)
                if code != 0 && code != GIT_ENOTFOUND.rawValue { try check(code, "remove \(path) from the index") }
            }
        }
        try check(git_index_write(index), "write the index")
    }

    /// The blobs git's index records for these paths (what each file was last checked out or
    /// staged as); paths it does not hold are left out.
    public func indexBlobs(_ paths: [String]) throws -> [String: OID] {
        var index: OpaquePointer?
        try check(git_repository_index(&index, pointer), "open index")
        defer { git_index_free(index) }
        try check(git_index_read(index, 1), "read index")
        var out: [String: OID] = [:]
        for path in paths {
            if let entry = git_index_get_bypath(index, path, 0) { out[path] = OID(entry.pointee.id) }
        }
        return out
    }

    /// The files of the work tree that differ from the index: changed, deleted, or not in it
    /// (inside new folders too). Unchanged files are known by their recorded size and times,
    /// not read.
    public func workTreeChanges() throws -> [String] {
        var index: OpaquePointer?
        try check(git_repository_index(&index, pointer), "open index")
        defer { git_index_free(index) }
        var opts = git_diff_options()
        try check(git_diff_options_init(&opts, UInt32(GIT_DIFF_OPTIONS_VERSION)), "diff options")
        opts.flags = GIT_DIFF_INCLUDE_UNTRACKED.rawValue | GIT_DIFF_RECURSE_UNTRACKED_DIRS.rawValue
        var diff: OpaquePointer?
        try check(git_diff_index_to_workdir(&diff, pointer, index, &opts), "compare the work tree with the index")
        defer { git_diff_free(diff) }
        var out: [String] = []
        for i in 0..<git_diff_num_deltas(diff) {
            guard let d = git_diff_get_delta(diff, i) else { continue }
            let file = d.pointee.new_file.path ?? d.pointee.old_file.path
            if let file { out.append(String(cString: file)) }
        }
        return out
    }

    /// The tree git's index describes (what the work tree was last checked out or staged as).
    public func indexTree() throws -> OID {
        var index: OpaquePointer?
        try check(git_repository_index(&index, pointer), "open index")
        defer { git_index_free(index) }
        try check(git_index_read(index, 1), "read index")
        var out = git_oid()
        try check(git_index_write_tree(&out, index), "tree of the index")
        return OID(out)
    }

    // MARK: diff and history

    /// The blobs that differ between two trees (nil: the empty tree), without rename detection,
    /// in git's order; what `git_diff_tree_to_tree` reports with its default options (a file
    /// whose kind changes, such as a file that becomes a symbolic link, is deleted and added).
    /// Walked here through the kept trees, into differing folders only: libgit2's diff, which
    /// compared entries one by one (ids and names, in the profile), took a third of a busy
    /// server's time in a watch loop diffing each commit of a 5,000-message chat.
    public func diff(from old: OID?, to new: OID?) throws -> [TreeChange] {
        var changes: [TreeChange] = []
        try diffTrees(old, new, prefix: [], into: &changes)
        return changes
    }

    private func diffTrees(_ old: OID?, _ new: OID?, prefix: [UInt8], into changes: inout [TreeChange]) throws {
        if old == new { return }
        let a = try old.map { try treeEntries($0) } ?? []
        let b = try new.map { try treeEntries($0) } ?? []
        func path(_ e: RawEntry) -> String { String(decoding: prefix + e.name, as: UTF8.self) }
        func gone(_ e: RawEntry) throws {
            if e.isTree { try diffTrees(OID(e.oid), nil, prefix: prefix + e.name + [0x2F], into: &changes) }
            else { changes.append(TreeChange(path: path(e), status: .deleted, oldOID: OID(e.oid), newOID: nil)) }
        }
        func came(_ e: RawEntry) throws {
            if e.isTree { try diffTrees(nil, OID(e.oid), prefix: prefix + e.name + [0x2F], into: &changes) }
            else { changes.append(TreeChange(path: path(e), status: .added, oldOID: nil, newOID: OID(e.oid))) }
        }
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && Self.gitOrder(a[i], b[j])) {
                try gone(a[i]); i += 1
            } else if i == a.count || Self.gitOrder(b[j], a[i]) {
                try came(b[j]); j += 1
            } else {
                // The same name, both folders or both not.
                let x = a[i], y = b[j]
                i += 1; j += 1
                if x.isTree {
                    if OID(x.oid) != OID(y.oid) { try diffTrees(OID(x.oid), OID(y.oid), prefix: prefix + x.name + [0x2F], into: &changes) }
                } else if x.mode & 0o170000 != y.mode & 0o170000 {
                    try gone(x); try came(y)
                } else if OID(x.oid) != OID(y.oid) || x.mode != y.mode {
                    changes.append(TreeChange(path: path(y), status: .modified, oldOID: OID(x.oid), newOID: OID(y.oid)))
                }
            }
        }
    }

    /// Commits reachable from `start`, newest first (topological, then by time); at most `limit`.
    /// With `firstParent`, only the first-parent chain (the branch's own steps).
    public func walk(from start: OID, hiding: [OID] = [], limit: Int = .max, reverse: Bool = false, firstParent: Bool = false) throws -> [OID] {
        var walker: OpaquePointer?
        try check(git_revwalk_new(&walker, pointer), "new revision walk")
        defer { git_revwalk_free(walker) }
        if firstParent { try check(git_revwalk_simplify_first_parent(walker), "first-parent walk") }
        var sorting = GIT_SORT_TOPOLOGICAL.rawValue | GIT_SORT_TIME.rawValue
        if reverse { sorting |= GIT_SORT_REVERSE.rawValue }
        try check(git_revwalk_sorting(walker, sorting), "sort revision walk")
        var s = start.raw
        try check(git_revwalk_push(walker, &s), "walk from \(start.short)")
        for h in hiding {
            var r = h.raw
            try check(git_revwalk_hide(walker, &r), "hide \(h.short)")
        }
        var result: [OID] = []
        var oid = git_oid()
        while result.count < limit {
            let code = git_revwalk_next(&oid, walker)
            if code == GIT_ITEROVER.rawValue { break }
            try check(code, "walk history")
            result.append(OID(oid))
        }
        return result
    }

    /// The best common ancestor of two commits, or nil for unrelated histories.
    public func mergeBase(_ a: OID, _ b: OID) throws -> OID? {
        var out = git_oid()
        var x = a.raw, y = b.raw
        let code = git_merge_base(&out, pointer, &x, &y)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "merge base of \(a.short) and \(b.short)")
        return OID(out)
    }

    // MARK: config

    /// A string from the repository's config (with the global and system config behind it
    /// unless `localOnly`), or nil.
    public func configString(_ key: String, localOnly: Bool = false) throws -> String? {
        var full: OpaquePointer?
        try check(git_repository_config_snapshot(&full, pointer), "read config")
        defer { git_config_free(full) }
        var config = full
        var local: OpaquePointer?
        if localOnly {
            let code = git_config_open_level(&local, full, GIT_CONFIG_LEVEL_LOCAL)
            if code == GIT_ENOTFOUND.rawValue { return nil }
            try check(code, "open local config")
            config = local
        }
        defer { if let local { git_config_free(local) } }
        var buf = git_buf()
        let code = git_config_get_string_buf(&buf, config, key)
        if code == GIT_ENOTFOUND.rawValue { return nil }
        try check(code, "read config \(key)")
        defer { git_buf_dispose(&buf) }
        return String(cString: buf.ptr)
    }

    /// Sets a string in the repository's own config (.git/config).
    public func setConfigString(_ key: String, _ value: String) throws {
        var config: OpaquePointer?
        try check(git_repository_config(&config, pointer), "open config")
        defer { git_config_free(config) }
        var local: OpaquePointer?
        try check(git_config_open_level(&local, config, GIT_CONFIG_LEVEL_LOCAL), "open local config")
        defer { git_config_free(local) }
        try check(git_config_set_string(local, key, value), "set config \(key)")
    }

    // MARK: object batches: one pack per batch

    /// Sends every object written through this handle to memory until `flushObjects()` writes
    /// them as one pack (one file to fsync instead of one per object).
    public func bufferObjectsInMemory() throws {
        guard mempack == nil else { return }
        let odb = try objectDatabase()
        var backend: UnsafeMutablePointer<git_odb_backend>?
        try check(git_mempack_new(&backend), "new in-memory pack")
        try check(git_odb_add_backend(odb, backend, 999), "attach in-memory pack")
        mempack = OpaquePointer(backend)
        // A handle that makes changes keeps the folders of long chats (4,096 message folders each).
        keptTreeLimits = (trees: 16_384, entries: 65_536)
    }

    /// Writes the objects buffered in memory as one pack and index (fsynced when fsync is on),
    /// then empties the buffer. Returns false when there was nothing to write.
    ///
    /// (libgit2's `git_mempack_dump` packs every commit with its whole tree, so its cost grows
    /// with the repository; this packs only the objects written since the last flush.)
    @discardableResult
    public func flushObjects() throws -> Bool {
        guard let mempack else { return false }
        let wrote = try writePack(takeBufferedObjects())
        try releaseMemory()
        return wrote
    }

    /// Hands over the objects written since the last call (each once: one the object database
    /// already has on disk is written again, which is cheaper than asking the database, where a
    /// miss rescans the pack folder; merging packs keeps one copy), to be written as a pack
    /// by `writePack(_:)` (on this or another handle); they stay readable from memory here
    /// until `releaseMemory()`.
    public func takeBufferedObjects() -> BufferedObjects {
        var seen = Set<OID>()
        var objects: [PackObject] = []
        objects.reserveCapacity(buffered.count)
        for object in buffered where seen.insert(object.oid).inserted { objects.append(object) }
        buffered.removeAll(keepingCapacity: true)
        return BufferedObjects(objects: objects)
    }

    /// Writes objects handed over by `takeBufferedObjects()` as one pack (fsynced when fsync is
    /// on, together with the files `extra`, such as a `ReferenceUpdate`'s lock). Every handle
    /// finds them on disk the next time it looks there (libgit2 looks again when an object is
    /// missing). False when there were none.
    @discardableResult
    public func writePack(_ batch: BufferedObjects, alsoSyncing extra: [String] = []) throws -> Bool {
        let durable = GitRuntime.fsyncEnabled
        guard !batch.objects.isEmpty else {
            if durable && !extra.isEmpty { try fsyncFiles(extra) }
            return false
        }
        try writePack(batch.objects, durable: durable, alsoSyncing: extra)
        return true
    }

    /// Empties the in-memory buffer once everything taken from it is on disk (looks at the disk
    /// again first, so the objects are found there).
    public func releaseMemory() throws {
        guard let mempack else { return }
        try check(refreshObjectDatabase(), "refresh object database")
        try check(git_mempack_reset(UnsafeMutablePointer<git_odb_backend>(mempack)), "reset in-memory pack")
        buffered.removeAll(keepingCapacity: true)
        // The kept trees stay: their objects are on disk now (at most two generations of them).
        try replaceObjectDatabaseIfPacksWereRemoved()
    }

    /// Lets go of the packs removed since this handle's object database was made, when this
    /// process has removed at least `PackRemovals.threshold` since (merging removes packs all
    /// the time). libgit2 1.5 keeps every pack it has seen in the object database, its index
    /// mapped (and up to 128 pack files open), until the database is freed: a process that
    /// appended for long kept thousands of removed files mapped (the space on disk was not
    /// freed either), on the way to the system's limit of mappings (65,530), where reading
    /// fails. So the database is replaced with a fresh one, which opens the packs there are
    /// now as it needs them. Between operations only; a handle that buffers objects in memory
    /// does it in `releaseMemory` only, when its buffer is empty (its objects may be on their
    /// way to disk until then), and not here.
    ///
    /// Packs other processes removed are not counted: for them the handle lists the pack folder
    /// now and then (`packLookInterval`), and lets go when an index it saw there is gone.
    public func letGoOfRemovedPacks() throws {
        guard mempack == nil else { return }
        try replaceObjectDatabaseIfPacksWereRemoved()
        let time = DispatchTime.now().uptimeNanoseconds
        guard time - packLook.time >= Self.packLookInterval else { return }
        let indexes = packIndexNames()
        let gone = !packLook.indexes.isSubset(of: indexes)
        packLook = (time, packLook.indexes.union(indexes))
        if gone { try replaceObjectDatabase() }
    }

    /// This handle removed `count` packs: every handle of the process counts them, and this one
    /// looks at the disk again, with a fresh object database once enough were removed.
    func packsRemoved(_ count: Int) throws {
        PackRemovals.add(count)
        let replaced = try mempack == nil && replaceObjectDatabaseIfPacksWereRemoved()
        if !replaced { try check(refreshObjectDatabase(), "refresh object database") }
    }

    /// Whether the object database was replaced (enough packs were removed since it was made).
    @discardableResult
    private func replaceObjectDatabaseIfPacksWereRemoved() throws -> Bool {
        guard PackRemovals.count - removalsSeen >= PackRemovals.threshold else { return false }
        try replaceObjectDatabase()
        return true
    }

    private func replaceObjectDatabase() throws {
        let now = PackRemovals.count
        var fresh: OpaquePointer?
        try check(git_odb_open(&fresh, gitDir + "objects"), "open object database")
        if mempack != nil {
            // The old buffer goes with the old database (it is empty): a new one for the new.
            var backend: UnsafeMutablePointer<git_odb_backend>?
            guard git_mempack_new(&backend) == 0, let backend else {
                let error = lastError(-1, "new in-memory pack")
                git_odb_free(fresh)
                throw error
            }
            guard git_odb_add_backend(fresh, backend, 999) == 0 else {
                let error = lastError(-1, "attach in-memory pack")
                backend.pointee.free?(backend)
                git_odb_free(fresh)
                throw error
            }
            mempack = OpaquePointer(backend)
        }
        // The repository takes a reference of its own; this handle keeps one (`odbPointer`).
        guard git_repository_set_odb(pointer, fresh) == 0 else {
            let error = lastError(-1, "set object database")
            git_odb_free(fresh)
            throw error
        }
        if let odbPointer { git_odb_free(odbPointer) }
        odbPointer = fresh
        removalsSeen = now
        packLook.indexes = packIndexNames()
    }

    /// The names of the pack indexes in the pack folder now.
    private func packIndexNames() -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: packDirectory)) ?? []).filter { $0.hasSuffix(".idx") })
    }

    func refreshObjectDatabase() -> Int32 {
        if let odbPointer { return git_odb_refresh(odbPointer) }
        var odb: OpaquePointer?
        guard git_repository_odb(&odb, pointer) == 0 else { return -1 }
        defer { git_odb_free(odb) }
        return git_odb_refresh(odb)
    }

    /// Drops the objects buffered in memory without writing them.
    public func discardBufferedObjects() {
        if let mempack { _ = git_mempack_reset(UnsafeMutablePointer<git_odb_backend>(mempack)) }
        buffered.removeAll(keepingCapacity: true)
        // Trees built here may be gone with the buffer: never build on them from memory.
        builtTrees.removeAll()
        olderTrees.removeAll()
        builtEntries = 0
    }
}

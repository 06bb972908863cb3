import CLibgit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Compaction's pack: every object reachable from the refs, written as deltas chosen by where the
// object sits in the history (git's Documentation/gitformat-pack.txt, "Deltified
// representation", and its OFS_DELTA entries).
//
// A store commits once per change, so each commit brings a handful of new trees that differ
// from the previous version at the same path by one entry. A pack builder that looks for delta
// bases among objects of similar name and size (libgit2's groups trees by the last characters of
// their folder's name, here often one hex digit) misses most of these pairs, and leaves small
// trees whole. Here, history is walked from the newest commit back:
// - a tree is a delta against the version at the same path seen just before it (the newer one),
//   so the trees of the tip stay whole and older versions are a few bytes each;
// - a commit is a delta against the commit walked before it;
// - a blob is a delta against the best of the last few blobs of its family: the blobs of
//   folders with the same path once folder names of one or two characters (shards) are left
//   out, with the same file extension;
// - an entry is written as a delta only when that is smaller than the object deflated whole,
//   and no delta chain is longer than `maxDepth`.

/// A base for deltas: its bytes and a hash table of every 6-byte window in them.
struct DeltaIndex {
    static let window = 6
    static let maxChain = 32
    let base: [UInt8]
    private var heads: [Int32]
    private var next: [Int32]
    private let shift: UInt64

    init(_ base: [UInt8]) {
        self.base = base
        var bits = 4
        while (1 << bits) < base.count { bits += 1 }
        heads = [Int32](repeating: -1, count: 1 << bits)
        next = [Int32](repeating: -1, count: base.count)
        shift = UInt64(64 - bits)
        guard base.count >= Self.window else { return }
        let shift = self.shift
        heads.withUnsafeMutableBufferPointer { heads in
            next.withUnsafeMutableBufferPointer { next in
                base.withUnsafeBufferPointer { b in
                    for p in 0...(b.count - Self.window) {
                        let h = Self.hash(b, p, shift)
                        next[p] = heads[h]
                        heads[h] = Int32(p)
                    }
                }
            }
        }
    }

    @inline(__always)
    private static func hash(_ b: UnsafeBufferPointer<UInt8>, _ p: Int, _ shift: UInt64) -> Int {
        var v: UInt64 = 0
        for k in 0..<window { v |= UInt64(b[p + k]) << UInt64(8 * k) }
        return Int(truncatingIfNeeded: (v &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The delta (git's format) that makes `target` from the base, or nil when it would take
    /// `limit` bytes or more.
    func delta(to target: [UInt8], limit: Int) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, target.count) + 16)
        Self.appendSize(base.count, to: &out)
        Self.appendSize(target.count, to: &out)
        let shift = self.shift
        let ok: Bool = base.withUnsafeBufferPointer { b in
            target.withUnsafeBufferPointer { t in
                heads.withUnsafeBufferPointer { heads in
                    next.withUnsafeBufferPointer { next in
                        let n = t.count, m = b.count
                        var literalStart = 0
                        var i = 0
                        // Where the last copy ended, in the base and in the target: after an
                        // edit, the base usually goes on there (a replacement) or just after.
                        var copyEnd = 0, copyEndTarget = 0
                        if m >= Self.window {
                            while i + Self.window <= n {
                                var bestLength = 0, bestPosition = 0
                                /// How many bytes from base position p on equal the target's from i on.
                                func match(_ p: Int) -> (length: Int, most: Int) {
                                    let most = min(m - p, n - i)
                                    var l = 0
                                    while l < most && b[p + l] == t[i + l] { l += 1 }
                                    return (l, most)
                                }
                                for k in 0..<2 {
                                    let p = k == 0 ? copyEnd + (i - copyEndTarget) : copyEnd
                                    guard p < m else { continue }
                                    let l = match(p).length
                                    if l > bestLength {
                                        bestLength = l
                                        bestPosition = p
                                    }
                                }
                                var p = bestLength >= 64 ? -1 : Int(heads[Self.hash(t, i, shift)])
                                var steps = 0
                                while p >= 0 && steps < Self.maxChain {
                                    let (l, most) = match(p)
                                    if l > bestLength {
                                        bestLength = l
                                        bestPosition = p
                                        if l == most { break }
                                    }
                                    p = Int(next[p])
                                    steps += 1
                                }
                                guard bestLength >= Self.window else {
                                    i += 1
                                    continue
                                }
                                // Take back literal bytes that the match covers too.
                                var start = i, from = bestPosition
                                while start > literalStart && from > 0 && b[from - 1] == t[start - 1] {
                                    start -= 1
                                    from -= 1
                                }
                                Self.appendLiteral(t, literalStart..<start, to: &out)
                                var length = bestLength + (i - start)
                                while length > 0 {
                                    let chunk = min(length, 0x10000)
                                    Self.appendCopy(offset: from, size: chunk, to: &out)
                                    from += chunk
                                    length -= chunk
                                }
                                i = start + bestLength + (i - start)
                                literalStart = i
                                copyEnd = from
                                copyEndTarget = i
                                if out.count >= limit { return false }
                            }
                        }
                        Self.appendLiteral(t, literalStart..<n, to: &out)
                        return out.count < limit
                    }
                }
            }
        }
        return ok ? out : nil
    }

    static func appendSize(_ value: Int, to out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    private static func appendLiteral(_ t: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, to out: inout [UInt8]) {
        var at = range.lowerBound
        while at < range.upperBound {
            let chunk = min(127, range.upperBound - at)
            out.append(UInt8(chunk))
            out.append(contentsOf: UnsafeBufferPointer(rebasing: t[at..<(at + chunk)]))
            at += chunk
        }
    }

    /// A copy instruction: offset and size bytes present only when not zero (a size of 0x10000
    /// is written as no size bytes).
    private static func appendCopy(offset: Int, size: Int, to out: inout [UInt8]) {
        var command: UInt8 = 0x80
        var operands: [UInt8] = []
        for k in 0..<4 {
            let byte = UInt8((offset >> (8 * k)) & 0xFF)
            if byte != 0 { command |= 1 << UInt8(k); operands.append(byte) }
        }
        let s = size == 0x10000 ? 0 : size
        for k in 0..<3 {
            let byte = UInt8((s >> (8 * k)) & 0xFF)
            if byte != 0 { command |= 0x10 << UInt8(k); operands.append(byte) }
        }
        out.append(command)
        out.append(contentsOf: operands)
    }
}

/// A pack written entry by entry to a temporary file in `dir`; the header's count and the
/// trailing checksum are filled in by `finish`. The file is removed unless finished.
private final class PackSink {
    let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private(set) var position: UInt64 = 12
    private var finished = false

    init(dir: String) throws {
        (fd, path) = try createTemporary(in: dir, prefix: "tmp_pack_")
        buffer = PackFormat.packHeader(count: 0)
    }

    deinit {
        close(fd)
        if !finished { unlink(path) }
    }

    func append(_ entry: [UInt8]) throws {
        buffer += entry
        position += UInt64(entry.count)
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ chunk: UnsafeRawBufferPointer) throws {
        try GitKit.writeAll(fd, chunk, path: path)
    }

    /// Writes the header's object count, then the checksum of the whole file after it; returns
    /// the checksum. (`install` fsyncs the file.)
    func finish(count: Int) throws -> [UInt8] {
        try flush()
        let header = PackFormat.packHeader(count: count)
        guard header.withUnsafeBytes({ pwrite(fd, $0.baseAddress!, $0.count, 0) }) == header.count,
              lseek(fd, 0, SEEK_SET) == 0 else {
            throw GitError(code: -1, message: String(cString: strerror(errno)), operation: "write \(path)")
        }
        var hasher = SHA1Hasher()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var total: UInt64 = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw GitError(code: -1, message: String(cString: strerror(errno)), operation: "read \(path)")
            }
            if n == 0 { break }
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            total += UInt64(n)
        }
        guard total == position else { throw GitError(code: -1, message: "short pack file", operation: "write \(path)") }
        let checksum = hasher.finish()
        try checksum.withUnsafeBytes { try writeAll($0) }
        fchmod(fd, 0o444)
        finished = true
        return checksum
    }
}

/// Candidate delta bases kept while writing, with an upper bound: past `capacity` keys, the half
/// used least recently is forgotten (their objects are still written, as deltas or whole).
private struct BoundedBases<Value> {
    private var values: [String: (value: Value, used: Int)] = [:]
    private var clock = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    subscript(key: String) -> Value? {
        get { values[key]?.value }
        set {
            clock += 1
            values[key] = newValue.map { ($0, clock) }
            if values.count > capacity {
                let cutoff = values.values.map(\.used).sorted()[values.count / 2]
                values = values.filter { $0.value.used > cutoff }
            }
        }
    }
}

extension Repository {
    /// The type and bytes of an object.
    func readObject(_ oid: OID) throws -> (type: git_object_t, bytes: [UInt8]) {
        let odb = try objectDatabase()
        var object: OpaquePointer?
        var raw = oid.raw
        try check(retryingRemovedPacks { git_odb_read(&object, odb, &raw) }, "read object \(oid.short)")
        defer { git_odb_object_free(object) }
        let bytes = Array(UnsafeRawBufferPointer(start: git_odb_object_data(object), count: git_odb_object_size(object)))
        return (git_odb_object_type(object), bytes)
    }

    /// Writes every object reachable from `tips` (commits, their trees and blobs, annotated tags)
    /// into one new pack whose deltas follow the history (see the top of this file), and puts it
    /// in place with its index. Returns nil, writing nothing, when `tips` is empty.
    public func writeHistoryPack(from tips: [OID], maxDepth: Int = 50, blobDepth: Int = 1, blobWindow: Int = 8,
                                 durable: Bool = GitRuntime.fsyncEnabled) throws -> PackFile? {
        guard !tips.isEmpty else { return nil }
        struct Base { let offset: UInt64; let depth: Int; let index: DeltaIndex }
        struct TreeVersion { let offset: UInt64; let depth: Int; let bytes: [UInt8] }
        let sink = try PackSink(dir: packDirectory)
        let deflater = Deflater(level: Z_BEST_COMPRESSION)
        var entries: [PackIndexEntry] = []
        var seen = Set<OID>()
        var treeAtPath = BoundedBases<TreeVersion>(capacity: 1 << 18)
        var families = BoundedBases<[Base]>(capacity: 4096)
        var previousCommit: Base?
        let largestBase = 1 << 20

        /// Writes one object, as a delta against the base that makes the smallest entry, or whole
        /// when that is smaller; returns its chain depth.
        func write(_ oid: OID, _ type: git_object_t, _ bytes: [UInt8], bases: [Base], maxDepth: Int = maxDepth, worthIt: Double = 1) throws -> Int {
            let position = sink.position
            var best = PackFormat.entryHeader(type: type, size: bytes.count)
            _ = try deflater.deflate(bytes, into: &best)
            let whole = best
            var depth = 0
            for base in bases where base.depth < maxDepth {
                guard let delta = base.index.delta(to: bytes, limit: bytes.count) else { continue }
                var entry = PackFormat.entryHeader(type: GIT_OBJECT_OFS_DELTA, size: delta.count)
                entry += PackFormat.deltaOffset(position - base.offset)
                _ = try deflater.deflate(delta, into: &entry)
                if entry.count < best.count || (entry.count == best.count && depth > base.depth + 1) {
                    best = entry
                    depth = base.depth + 1
                }
            }
            if depth > 0 && Double(best.count) > Double(whole.count) * worthIt {
                best = whole
                depth = 0
            }
            let crc = best.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
            entries.append(PackIndexEntry(oid: oid, crc: UInt32(crc), offset: position))
            try sink.append(best)
            return depth
        }

        func writeBlob(_ oid: OID, family: String) throws {
            let (type, bytes) = try readObject(oid)
            guard bytes.count <= largestBase else {
                _ = try write(oid, type, bytes, bases: [])
                return
            }
            var window = families[family] ?? []
            let position = sink.position
            let depth = try write(oid, type, bytes, bases: window, maxDepth: blobDepth, worthIt: 0.5)
            guard depth < blobDepth else { return }
            window.append(Base(offset: position, depth: depth, index: DeltaIndex(bytes)))
            if window.count > blobWindow { window.removeFirst() }
            families[family] = window
        }

        /// Writes a tree and what it holds that is not written yet; `path` is its folder.
        func writeTree(_ root: OID, path rootPath: String) throws {
            var stack = [(root, rootPath)]
            while let (oid, path) = stack.popLast() {
                let (type, bytes) = try readObject(oid)
                guard type == GIT_OBJECT_TREE else {
                    throw GitError(code: -1, message: "\(oid.short) is not a tree", operation: "pack \(path)")
                }
                var bases: [Base] = []
                if let newer = treeAtPath[path], newer.bytes.count <= largestBase {
                    bases.append(Base(offset: newer.offset, depth: newer.depth, index: DeltaIndex(newer.bytes)))
                }
                let position = sink.position
                let depth = try write(oid, type, bytes, bases: bases)
                treeAtPath[path] = TreeVersion(offset: position, depth: depth, bytes: bytes)
                var family: String?
                var at = 0
                while at < bytes.count {
                    guard let space = bytes[at...].firstIndex(of: 0x20), let nul = bytes[space...].firstIndex(of: 0),
                          nul + 21 <= bytes.count else {
                        throw GitError(code: -1, message: "malformed tree \(oid.short)", operation: "pack \(path)")
                    }
                    var raw = git_oid()
                    withUnsafeMutableBytes(of: &raw.id) { $0.copyBytes(from: bytes[(nul + 1)..<(nul + 21)]) }
                    let child = OID(raw)
                    let mode = bytes[at..<space]
                    let name = bytes[(space + 1)..<nul]
                    at = nul + 21
                    if mode.elementsEqual("160000".utf8) || seen.contains(child) { continue }  // a submodule's commit lives elsewhere
                    seen.insert(child)
                    if mode.elementsEqual("40000".utf8) {
                        stack.append((child, path + "/" + String(decoding: name, as: UTF8.self)))
                    } else {
                        if family == nil {
                            family = path.split(separator: "/").filter { $0.count > 2 }.joined(separator: "/")
                        }
                        let ext = name.lastIndex(of: UInt8(ascii: ".")).map { String(decoding: name[$0...], as: UTF8.self) } ?? ""
                        try writeBlob(child, family: family! + "|" + ext)
                    }
                }
            }
        }

        // Tips: commits go to the walk; annotated tags are written whole and followed.
        var commits: [OID] = []
        var pending = tips
        while let tip = pending.popLast() {
            let (type, bytes) = try readObject(tip)
            switch type {
            case GIT_OBJECT_COMMIT:
                commits.append(tip)
            case GIT_OBJECT_TAG:
                guard seen.insert(tip).inserted else { continue }
                _ = try write(tip, type, bytes, bases: [])
                guard bytes.count >= 47, bytes.prefix(7).elementsEqual("object ".utf8),
                      let target = OID(hex: String(decoding: bytes[7..<47], as: UTF8.self)) else {
                    throw GitError(code: -1, message: "malformed tag \(tip.short)", operation: "pack")
                }
                pending.append(target)
            case GIT_OBJECT_TREE:
                if seen.insert(tip).inserted { try writeTree(tip, path: "") }
            default:
                if seen.insert(tip).inserted { _ = try write(tip, type, bytes, bases: []) }
            }
        }
        if !commits.isEmpty {
            var walker: OpaquePointer?
            try check(git_revwalk_new(&walker, pointer), "new revision walk")
            defer { git_revwalk_free(walker) }
            try check(git_revwalk_sorting(walker, GIT_SORT_TOPOLOGICAL.rawValue | GIT_SORT_TIME.rawValue), "sort revision walk")
            for c in commits {
                var raw = c.raw
                try check(git_revwalk_push(walker, &raw), "walk from \(c.short)")
            }
            var next = git_oid()
            while true {
                let code = git_revwalk_next(&next, walker)
                if code == GIT_ITEROVER.rawValue { break }
                try check(code, "walk history")
                let oid = OID(next)
                guard seen.insert(oid).inserted else { continue }
                let (type, bytes) = try readObject(oid)
                let position = sink.position
                let depth = try write(oid, type, bytes, bases: previousCommit.map { [$0] } ?? [])
                previousCommit = Base(offset: position, depth: depth, index: DeltaIndex(bytes))
                guard bytes.count >= 45, bytes.prefix(5).elementsEqual("tree ".utf8),
                      let tree = OID(hex: String(decoding: bytes[5..<45], as: UTF8.self)) else {
                    throw GitError(code: -1, message: "malformed commit \(oid.short)", operation: "pack")
                }
                if seen.insert(tree).inserted { try writeTree(tree, path: "") }
            }
        }
        guard !entries.isEmpty else { return nil }
        let checksum = try sink.finish(count: entries.count)
        return try install(packTemp: sink.path, indexBytes: PackFormat.index(entries, packChecksum: checksum),
                           count: entries.count, checksum: checksum, durable: durable)
    }
}

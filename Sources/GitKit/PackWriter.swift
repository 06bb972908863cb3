import CLibgit2
import CSHA1
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Pack files written by GitKit itself (format: git's Documentation/gitformat-pack.txt, pack
// version 2 with an index of version 2). libgit2's pack builder searches for deltas and then
// runs its indexer over the result, inflating and hashing every object again; for a batch of a
// few small objects, and for merging packs, neither is needed:
// - a batch's objects are written whole and stored, not deflated (no deltas; `compact` adds
//   them): deflating is the largest cost of writing a small object, and it waits for later;
// - packs are merged by copying their entries byte for byte (an entry's delta base is named by
//   id or by an offset relative to the entry, both still right in the merged pack) and
//   shifting the offsets in the index; a stored entry is deflated then, once.

/// SHA-1 (CSHA1: the processor's SHA instructions where it has them, else plain C).
struct SHA1Hasher {
    private var context = chatsync_sha1()

    init() { chatsync_sha1_init(&context) }

    mutating func update(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        chatsync_sha1_update(&context, base, buffer.count)
    }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest as an object id.
    mutating func finishID() -> git_oid {
        var oid = git_oid()
        withUnsafeMutableBytes(of: &oid.id) { chatsync_sha1_final(&context, $0.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
        return oid
    }

    /// A git object's id: the SHA-1 of its header (`<type> <size>`, a NUL) and its bytes. The
    /// same as `git_odb_hash`, which formats the header with snprintf and sets up its hashing
    /// context anew: a third of the time of hashing a small tree.
    static func objectID(_ bytes: UnsafeRawBufferPointer, type: git_object_t) -> git_oid {
        var h = SHA1Hasher()
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { header in
            var n = 0
            let name: StaticString
            switch type {
            case GIT_OBJECT_COMMIT: name = "commit"
            case GIT_OBJECT_TREE: name = "tree"
            case GIT_OBJECT_TAG: name = "tag"
            default: name = "blob"
            }
            name.withUTF8Buffer { for c in $0 { header[n] = c; n += 1 } }
            header[n] = 0x20; n += 1
            // The size in decimal, written from its last digit back.
            var width = 1, rest = bytes.count / 10
            while rest > 0 { width += 1; rest /= 10 }
            var size = bytes.count
            for k in stride(from: n + width - 1, through: n, by: -1) { header[k] = UInt8(ascii: "0") + UInt8(size % 10); size /= 10 }
            n += width
            header[n] = 0; n += 1
            h.update(UnsafeRawBufferPointer(start: header.baseAddress, count: n))
        }
        h.update(bytes)
        return h.finishID()
    }

    mutating func finish() -> [UInt8] { withUnsafeBytes(of: finishID().id) { Array($0) } }
}

/// A zlib stream set up once and reset for each object.
final class Deflater {
    private var stream = z_stream()
    private var ready = false

    /// `fixedCodes`: Huffman codes fixed by the deflate format instead of codes made for the
    /// input (zlib's `Z_FIXED`): for a small object a little larger, and it inflates about
    /// twice as fast (no code tables to build first).
    init(level: Int32 = 1, fixedCodes: Bool = false) {
        ready = chatsync_deflate_init(&stream, level, fixedCodes ? Z_FIXED : Z_DEFAULT_STRATEGY) == Z_OK
    }

    deinit { if ready { deflateEnd(&stream) } }

    /// Appends the deflated bytes of `input` to `output`; returns how many were appended.
    func deflate(_ input: [UInt8], into output: inout [UInt8]) throws -> Int {
        guard ready, deflateReset(&stream) == Z_OK else { throw GitError(code: -1, message: "zlib stream unusable", operation: "deflate") }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        let start = output.count
        output.append(contentsOf: repeatElement(0, count: bound))
        let code: Int32 = input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                stream.next_in = UnsafeMutablePointer(mutating: src.baseAddress)
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.baseAddress! + start
                stream.avail_out = uInt(bound)
                return CLibgit2.deflate(&stream, Z_FINISH)
            }
        }
        guard code == Z_STREAM_END else { throw GitError(code: -1, message: "zlib error \(code)", operation: "deflate") }
        let written = bound - Int(stream.avail_out)
        output.removeLast(bound - written)
        return written
    }
}

/// A zlib stream of stored (uncompressed) deflate blocks: what a batch's pack holds. Deflating
/// even at zlib's fastest level costs about 10 µs for a small object, more than everything
/// else the committing thread does for it; merging packs deflates the entries instead
/// (`Repository.concatenatePacks`), off the path of a change.
enum StoredZlib {
    /// Appends `input` as a zlib stream (RFC 1950) of stored blocks (RFC 1951, 3.2.4).
    static func append(_ input: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + input.count + 6 + 5 * (input.count / 65_535 + 1))
        out.append(0x78)
        out.append(0x01)
        var start = 0
        repeat {
            let n = min(65_535, input.count - start)
            out.append(start + n == input.count ? 1 : 0)
            out.append(UInt8(n & 0xFF))
            out.append(UInt8(n >> 8))
            out.append(UInt8(~n & 0xFF))
            out.append(UInt8((~n >> 8) & 0xFF))
            out.append(contentsOf: input[start..<(start + n)])
            start += n
        } while start < input.count
        let sum = input.withUnsafeBufferPointer { adler32(1, $0.baseAddress, uInt($0.count)) }
        PackFormat.append32(UInt32(sum), to: &out)
    }

    /// Whether the zlib stream at `at` starts with a stored block (zlib header, then a block
    /// header whose type bits are 00).
    static func startsStored(_ buf: UnsafeRawBufferPointer, at: Int) -> Bool {
        guard at + 3 <= buf.count else { return false }
        return buf[at] & 0x0F == 8 && (UInt16(buf[at]) << 8 | UInt16(buf[at + 1])) % 31 == 0
            && buf[at + 1] & 0x20 == 0 && buf[at + 2] & 0x06 == 0
    }
}

/// A zlib inflate stream set up once and reset for each object.
final class Inflater {
    private var stream = z_stream()
    private let ready: Bool

    init() { ready = chatsync_inflate_init(&stream) == Z_OK }

    deinit { if ready { inflateEnd(&stream) } }

    /// The `size` bytes the zlib stream in `input` inflates to, or nil when it does not
    /// inflate to exactly that many.
    func inflate(_ input: UnsafeRawBufferPointer, size: Int) -> [UInt8]? {
        guard ready, inflateReset(&stream) == Z_OK, let base = input.baseAddress else { return nil }
        var out = [UInt8](repeating: 0, count: max(size, 1))
        let code: Int32 = out.withUnsafeMutableBufferPointer { dst in
            stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(input.count)
            stream.next_out = dst.baseAddress
            stream.avail_out = uInt(size)
            return CLibgit2.inflate(&stream, Z_FINISH)
        }
        guard code == Z_STREAM_END, stream.total_out == uLong(size) else { return nil }
        if size == 0 { out.removeAll() }
        return out
    }
}

/// One object of a pack, as its index lists it.
struct PackIndexEntry {
    var oid: OID
    var crc: UInt32
    var offset: UInt64
}

/// Objects taken from a handle's in-memory buffer, to be written as one pack.
public struct BufferedObjects: @unchecked Sendable {
    let objects: [PackObject]
    public var count: Int { objects.count }
    public var isEmpty: Bool { objects.isEmpty }

    init(objects: [PackObject]) { self.objects = objects }

    /// The objects of several takes, each once (for writing them as one pack).
    public init(combining parts: [BufferedObjects]) {
        if parts.count == 1 { self = parts[0]; return }
        var seen = Set<OID>()
        var all: [PackObject] = []
        all.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for part in parts { for o in part.objects where seen.insert(o.oid).inserted { all.append(o) } }
        objects = all
    }
}

/// An object to write into a pack: its id, type (commit, tree, blob, tag) and raw content.
struct PackObject {
    let oid: OID
    let type: git_object_t
    let bytes: [UInt8]
}

enum PackFormat {
    static let packSignature: [UInt8] = Array("PACK".utf8)
    static let indexSignature: [UInt8] = [0xFF, 0x74, 0x4F, 0x63]

    /// Appends `v`'s four bytes, most significant first (no array made per number).
    static func append32(_ v: UInt32, to out: inout [UInt8]) {
        out.append(UInt8(v >> 24)); out.append(UInt8((v >> 16) & 0xFF)); out.append(UInt8((v >> 8) & 0xFF)); out.append(UInt8(v & 0xFF))
    }

    /// Where the data of the entry at `at` starts (after its type-and-size header; for a
    /// delta, that is where its base's offset or id starts).
    static func dataStart(_ buf: UnsafeRawBufferPointer, at: Int) -> Int {
        var i = at
        while i < buf.count && buf[i] & 0x80 != 0 { i += 1 }
        return i + 1
    }

    static func packHeader(count: Int) -> [UInt8] {
        var out = packSignature
        append32(2, to: &out)
        append32(UInt32(count), to: &out)
        return out
    }

    /// An entry's header: type and inflated size, 4 bits then 7 bits a byte, low bits first.
    static func entryHeader(type: git_object_t, size: Int) -> [UInt8] {
        var out: [UInt8] = []
        var rest = size >> 4
        var byte = UInt8((Int(type.rawValue) << 4) | (size & 0x0F))
        while rest > 0 {
            out.append(byte | 0x80)
            byte = UInt8(rest & 0x7F)
            rest >>= 7
        }
        out.append(byte)
        return out
    }

    /// The distance back to an OFS_DELTA entry's base: 7 bits a byte, most significant first,
    /// each byte but the last meaning one more than its value (so no two encodings overlap).
    static func deltaOffset(_ distance: UInt64) -> [UInt8] {
        var n = distance
        var out = [UInt8(n & 0x7F)]
        n >>= 7
        while n > 0 {
            n -= 1
            out.insert(0x80 | UInt8(n & 0x7F), at: 0)
            n >>= 7
        }
        return out
    }

    static func hex(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(hexDigit(b >> 4))
            out.append(hexDigit(b & 0x0F))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Entries in the order of their ids (by the ids' first eight bytes, then the whole id).
    static func sortedByID(_ entries: [PackIndexEntry]) -> [PackIndexEntry] {
        func key(_ e: PackIndexEntry) -> UInt64 {
            withUnsafeBytes(of: e.oid.raw.id) { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
        var keyed = entries.map { (key($0), $0) }
        keyed.sort { a, b in
            if a.0 != b.0 { return a.0 < b.0 }
            return a.1.oid < b.1.oid
        }
        return keyed.map(\.1)
    }

    /// The index (version 2) of a pack whose trailing checksum is `packChecksum` (`sorted`:
    /// the entries come in id order already).
    static func index(_ unsorted: [PackIndexEntry], packChecksum: [UInt8], sorted: Bool = false) -> [UInt8] {
        let entries = sorted ? unsorted : sortedByID(unsorted)
        var out = indexSignature
        append32(2, to: &out)
        out.reserveCapacity(8 + 1024 + entries.count * 28 + 40)
        var fanout = [UInt32](repeating: 0, count: 256)
        for e in entries { fanout[Int(e.oid.raw.id.0)] += 1 }
        var running: UInt32 = 0
        for i in 0..<256 {
            running += fanout[i]
            append32(running, to: &out)
        }
        for e in entries { withUnsafeBytes(of: e.oid.raw.id) { out.append(contentsOf: $0) } }
        for e in entries { append32(e.crc, to: &out) }
        var large: [UInt64] = []
        for e in entries {
            if e.offset < 0x8000_0000 {
                append32(UInt32(e.offset), to: &out)
            } else {
                append32(0x8000_0000 | UInt32(large.count), to: &out)
                large.append(e.offset)
            }
        }
        for l in large {
            append32(UInt32(l >> 32), to: &out)
            append32(UInt32(l & 0xFFFF_FFFF), to: &out)
        }
        out += packChecksum
        var h = SHA1Hasher()
        h.update(out)
        out += h.finish()
        return out
    }

    /// Where an entry of one of several id-sorted lists is.
    struct ListPosition {
        var list: Int32
        var index: Int32
    }

    /// The entries of several lists, each in id order (as an index has them), in one id order,
    /// each id once: where an id is in several lists, the earliest list's copy. Also which
    /// entries were left out as copies (nil: none). Lists are merged in pairs, in rounds, so
    /// the work is the entries times the rounds (no hashing, no sort of the whole).
    static func mergedByID(_ lists: [[PackIndexEntry]]) -> (order: [ListPosition], copies: [[Bool]]?) {
        @inline(__always) func key(_ p: ListPosition) -> UInt64 {
            withUnsafeBytes(of: lists[Int(p.list)][Int(p.index)].oid.raw.id) { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) }
        }
        @inline(__always) func precedes(_ a: ListPosition, _ b: ListPosition) -> Bool {
            let x = key(a), y = key(b)
            if x != y { return x < y }
            let ia = lists[Int(a.list)][Int(a.index)].oid, ib = lists[Int(b.list)][Int(b.index)].oid
            if ia != ib { return ia < ib }
            return a.list < b.list
        }
        var runs: [[ListPosition]] = lists.indices.map { l in (0..<lists[l].count).map { ListPosition(list: Int32(l), index: Int32($0)) } }
        while runs.count > 1 {
            var next: [[ListPosition]] = []
            next.reserveCapacity((runs.count + 1) / 2)
            var r = 0
            while r < runs.count {
                guard r + 1 < runs.count else { next.append(runs[r]); break }
                // The left run's lists all come before the right run's: on equal ids it goes first.
                let a = runs[r], b = runs[r + 1]
                var out: [ListPosition] = []
                out.reserveCapacity(a.count + b.count)
                var i = 0, j = 0
                while i < a.count && j < b.count {
                    if precedes(b[j], a[i]) { out.append(b[j]); j += 1 } else { out.append(a[i]); i += 1 }
                }
                out.append(contentsOf: a[i...])
                out.append(contentsOf: b[j...])
                next.append(out)
                r += 2
            }
            runs = next
        }
        let all = runs.first ?? []
        var order: [ListPosition] = []
        order.reserveCapacity(all.count)
        var copies: [[Bool]]?
        for p in all {
            if let last = order.last, lists[Int(last.list)][Int(last.index)].oid == lists[Int(p.list)][Int(p.index)].oid {
                if copies == nil { copies = lists.map { [Bool](repeating: false, count: $0.count) } }
                copies![Int(p.list)][Int(p.index)] = true
            } else {
                order.append(p)
            }
        }
        return (order, copies)
    }

    /// Reads a version-2 pack index: its entries and the checksum of its pack.
    static func readIndex(_ path: String) throws -> (entries: [PackIndexEntry], packChecksum: [UInt8]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw GitError(code: -1, message: "cannot read", operation: "read pack index \(path)")
        }
        return try data.withUnsafeBytes { (buf: UnsafeRawBufferPointer) in
            func be32(_ at: Int) -> UInt32 {
                UInt32(buf[at]) << 24 | UInt32(buf[at + 1]) << 16 | UInt32(buf[at + 2]) << 8 | UInt32(buf[at + 3])
            }
            guard buf.count >= 8 + 1024 + 40, Array(buf[0..<4]) == indexSignature, be32(4) == 2 else {
                throw GitError(code: -1, message: "not a version-2 pack index", operation: "read pack index \(path)")
            }
            let n = Int(be32(8 + 255 * 4))
            let oids = 8 + 1024, crcs = oids + 20 * n, offsets = crcs + 4 * n, large = offsets + 4 * n
            guard buf.count >= large + 40 else {
                throw GitError(code: -1, message: "truncated pack index", operation: "read pack index \(path)")
            }
            var entries: [PackIndexEntry] = []
            entries.reserveCapacity(n)
            for i in 0..<n {
                var oid = git_oid()
                withUnsafeMutableBytes(of: &oid.id) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buf[(oids + 20 * i)..<(oids + 20 * i + 20)])) }
                let small = be32(offsets + 4 * i)
                var offset = UInt64(small)
                if small & 0x8000_0000 != 0 {
                    let at = large + 8 * Int(small & 0x7FFF_FFFF)
                    guard at + 8 <= buf.count - 40 else {
                        throw GitError(code: -1, message: "bad large offset", operation: "read pack index \(path)")
                    }
                    offset = UInt64(be32(at)) << 32 | UInt64(be32(at + 4))
                }
                let entry = PackIndexEntry(oid: OID(oid), crc: be32(crcs + 4 * i), offset: offset)
                // Readers find ids by binary search: an index out of order is damaged.
                if let last = entries.last, entry.oid < last.oid {
                    throw GitError(code: -1, message: "ids out of order", operation: "read pack index \(path)")
                }
                entries.append(entry)
            }
            let checksum = Array(buf[(buf.count - 40)..<(buf.count - 20)])
            return (entries, checksum)
        }
    }
}

/// Creates an empty file with a unique name starting with `prefix` in `dir`: its descriptor and path.
func createTemporary(in dir: String, prefix: String) throws -> (fd: Int32, path: String) {
    var template = Array((dir + "/" + prefix + "XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw GitError(code: -1, message: String(cString: strerror(errno)), operation: "create a file in \(dir)") }
    return (fd, String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
}

/// Writes all of `chunk` to `fd` (retrying short writes and interruptions).
func writeAll(_ fd: Int32, _ chunk: UnsafeRawBufferPointer, path: String) throws {
    var done = 0
    while done < chunk.count {
        let n = write(fd, chunk.baseAddress! + done, chunk.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            throw GitError(code: -1, message: String(cString: strerror(errno)), operation: "write \(path)")
        }
        done += n
    }
}

/// Empty temporary files made ahead (`Repository.prepareTemporaryFiles`), by folder and prefix:
/// creating a file costs 0.03 ms on a fresh ext4 folder group and 0.5–0.9 ms where many files
/// were deleted lately, so a writer makes the next batch's files while it waits for the batch.
enum PreparedFiles {
    private static let files = Mutex<[String: [(fd: Int32, path: String, synced: Bool)]]>([:])

    static func prepare(in dir: String, prefix: String) throws {
        let key = dir + "/" + prefix
        if files.withLock({ !($0[key] ?? []).isEmpty }) { return }
        let made = try createTemporary(in: dir, prefix: prefix)
        files.withLock { $0[key, default: []].append((made.fd, made.path, false)) }
    }

    /// A file made ahead, still in its folder (`git prune` removes old temporaries).
    static func take(in dir: String, prefix: String) -> (fd: Int32, path: String)? {
        while let f = files.withLock({ $0[dir + "/" + prefix]?.popLast() }) {
            var st = stat()
            if fstat(f.fd, &st) == 0, st.st_nlink > 0 { return (f.fd, f.path) }
            close(f.fd)
        }
        return nil
    }

    /// Fsyncs the files made ahead in `dir` that are not yet (see `syncPreparedFiles`). Under
    /// the lock: a file being synced is not taken.
    static func sync(in dir: String) {
        files.withLock { all in
            for (key, list) in all where key.hasPrefix(dir + "/") {
                all[key] = list.map { f in
                    if !f.synced { _ = fsync(f.fd) }
                    return (f.fd, f.path, true)
                }
            }
        }
    }

    /// How many files made ahead in `dir` are not yet fsynced.
    static func unsynced(in dir: String) -> Int {
        files.withLock { all in all.filter { $0.key.hasPrefix(dir + "/") }.values.reduce(0) { $0 + $1.filter { !$0.synced }.count } }
    }

    /// Removes the files made ahead in `dir` and not used.
    static func discard(in dir: String) {
        let gone: [(fd: Int32, path: String, synced: Bool)] = files.withLock { all in
            var out: [(fd: Int32, path: String, synced: Bool)] = []
            for key in all.keys where key.hasPrefix(dir + "/") { out += all.removeValue(forKey: key) ?? [] }
            return out
        }
        for f in gone { close(f.fd); unlink(f.path) }
    }
}

/// Writes a file in pieces under a temporary name in `dir` and returns the temporary path (the
/// caller fsyncs it and renames it into place: see `install`).
private func writeTemporary(in dir: String, prefix: String, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws -> String {
    let (fd, path) = try PreparedFiles.take(in: dir, prefix: prefix) ?? createTemporary(in: dir, prefix: prefix)
    var ok = false
    defer {
        close(fd)
        if !ok { unlink(path) }
    }
    try body { chunk in try writeAll(fd, chunk, path: path) }
    fchmod(fd, 0o444)
    ok = true
    return path
}

func fsyncDirectory(_ dir: String) throws {
    let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0, fsync(fd) == 0 else {
        let message = String(cString: strerror(errno))
        if fd >= 0 { close(fd) }
        throw GitError(code: -1, message: message, operation: "fsync \(dir)")
    }
    close(fd)
}

/// Fsyncs files (all of them before any is renamed into place), at once: each waits for the
/// disk, and the waits overlap (one on this thread, the others on Dispatch's; not
/// `concurrentPerform`, which runs only as many at once as there are cores).
func fsyncFiles(_ paths: [String]) throws {
    let failures = LockedFailures()
    @Sendable func sync(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, fsync(fd) == 0 else {
            failures.add(GitError(code: -1, message: String(cString: strerror(errno)), operation: "fsync \(path)"))
            if fd >= 0 { close(fd) }
            return
        }
        close(fd)
    }
    let group = DispatchGroup()
    for path in paths.dropFirst() { DispatchQueue.global().async(group: group) { sync(path) } }
    if let first = paths.first { sync(first) }
    group.wait()
    if let first = failures.first { throw first }
}

private final class LockedFailures: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [GitError] = []
    func add(_ e: GitError) { lock.lock(); errors.append(e); lock.unlock() }
    var first: GitError? { lock.lock(); defer { lock.unlock() }; return errors.first }
}

extension Repository {
    /// Puts a pack (written, not yet fsynced, to `packTemp`) and its index in place: when
    /// `durable`, both files (and the files `extra`) are fsynced before either is renamed, and
    /// the folder after. The pack is renamed first, then the index (readers find packs by their
    /// index, so they never see half of one).
    func install(packTemp: String, indexBytes: [UInt8], count: Int, checksum: [UInt8], durable: Bool, alsoSyncing extra: [String] = []) throws -> PackFile {
        let dir = packDirectory
        let name = dir + "/pack-" + PackFormat.hex(checksum)
        let indexTemp: String
        do {
            indexTemp = try writeTemporary(in: dir, prefix: "tmp_idx_") { write in try indexBytes.withUnsafeBytes(write) }
        } catch {
            unlink(packTemp)
            throw error
        }
        if durable {
            do {
                try fsyncFiles([packTemp, indexTemp] + extra)
            } catch {
                unlink(packTemp)
                unlink(indexTemp)
                throw error
            }
        }
        // A pack of the same name is the same objects (the name is its checksum): it stays.
        let existed = access(name + ".pack", F_OK) == 0
        guard rename(packTemp, name + ".pack") == 0 else {
            let message = String(cString: strerror(errno))
            unlink(packTemp)
            unlink(indexTemp)
            throw GitError(code: -1, message: message, operation: "install pack \(name)")
        }
        guard rename(indexTemp, name + ".idx") == 0 else {
            // No pack without its index is left behind.
            let message = String(cString: strerror(errno))
            if !existed { unlink(name + ".pack") }
            unlink(indexTemp)
            throw GitError(code: -1, message: message, operation: "install pack \(name)")
        }
        if durable { try fsyncDirectory(dir) }
        return PackFile(packPath: name + ".pack", objectCount: count, isKept: false)
    }

    /// Makes the temporary files of the next `writePack` (the pack's and its index's) now, while
    /// nothing waits for them (see `PreparedFiles`); `discardPreparedFiles` removes them unused.
    public func prepareTemporaryFiles() throws {
        try PreparedFiles.prepare(in: packDirectory, prefix: "tmp_pack_")
        try PreparedFiles.prepare(in: packDirectory, prefix: "tmp_idx_")
    }

    public func discardPreparedFiles() { PreparedFiles.discard(in: packDirectory) }

    /// Fsyncs the files `prepareTemporaryFiles` made (when fsync is on). On ext4 without a
    /// journal a new file's first fsync also writes its folder (the new name): done here, that
    /// write is no longer part of the fsync of the batch later written into them. It waits for
    /// the disk, so call it when that wait is otherwise idle.
    public func syncPreparedFiles() { if GitRuntime.fsyncEnabled { PreparedFiles.sync(in: packDirectory) } }

    /// Writes `objects` as one pack (each object whole and stored, not deflated: see
    /// `StoredZlib`; no deltas) and its index.
    @discardableResult
    func writePack(_ objects: [PackObject], durable: Bool, alsoSyncing extra: [String] = []) throws -> PackFile {
        var entries: [PackIndexEntry] = []
        entries.reserveCapacity(objects.count)
        var body: [UInt8] = PackFormat.packHeader(count: objects.count)
        body.reserveCapacity(objects.reduce(12) { $0 + $1.bytes.count + 16 })
        for object in objects {
            let offset = UInt64(body.count)
            let header = PackFormat.entryHeader(type: object.type, size: object.bytes.count)
            body += header
            StoredZlib.append(object.bytes, to: &body)
            let crc = body.withUnsafeBufferPointer { crc32(0, $0.baseAddress! + Int(offset), uInt($0.count - Int(offset))) }
            entries.append(PackIndexEntry(oid: object.oid, crc: UInt32(crc), offset: offset))
        }
        var h = SHA1Hasher()
        h.update(body)
        let checksum = h.finish()
        let temp = try writeTemporary(in: packDirectory, prefix: "tmp_pack_") { write in
            try body.withUnsafeBytes(write)
            try checksum.withUnsafeBytes(write)
        }
        return try install(packTemp: temp, indexBytes: PackFormat.index(entries, packChecksum: checksum), count: entries.count, checksum: checksum,
                           durable: durable, alsoSyncing: extra)
    }

    /// Objects up to this size are deflated with fixed codes: reading a long chat inflates
    /// one small message after another, and building code tables is most of that work.
    static let fixedCodesUpTo = 4096

    /// Which objects merging deflates: blobs (the documents' text) only. Trees and commits are
    /// mostly object ids, which do not compress: deflating them took two thirds of the merging
    /// thread's time and made a store of 100,000 messages a tenth smaller before compaction
    /// (320 against 353 MiB), none after it; `compact` deltifies and deflates them.
    static func deflatedWhenMerged(_ type: UInt8) -> Bool { type == 3 }

    /// A whole object's entry (`entry`: its header, then its zlib stream) whose stream is
    /// stored, deflated; nil when it is not stored or deflating does not make it smaller.
    private func deflatedEntry(_ entry: UnsafeRawBufferPointer, inflater: Inflater, deflater: Deflater, smallDeflater: Deflater) throws -> [UInt8]? {
        let start = PackFormat.dataStart(entry, at: 0)
        guard StoredZlib.startsStored(entry, at: start), Self.deflatedWhenMerged((entry[0] >> 4) & 7) else { return nil }
        var size = Int(entry[0] & 0x0F), shift = 4
        for i in 1..<start {
            size |= Int(entry[i] & 0x7F) << shift
            shift += 7
        }
        guard let raw = inflater.inflate(UnsafeRawBufferPointer(rebasing: entry[start...]), size: size) else {
            throw GitError(code: -1, message: "an entry does not inflate to its size", operation: "merge packs")
        }
        var out = Array(entry[0..<start])
        let written = try (raw.count <= Self.fixedCodesUpTo ? smallDeflater : deflater).deflate(raw, into: &out)
        return written < entry.count - start ? out : nil
    }

    /// Merges packs by copying their entries into one new pack (no delta search; a stored
    /// entry of a pack without deltas is deflated), then removes them. An object in more than
    /// one of them is copied once: the extra copies are left out of packs without deltas (no
    /// entry there refers to another). Returns nil, changing nothing, when an extra copy is in
    /// a pack with deltas.
    public func concatenatePacks(_ packs: [PackFile], durable: Bool = GitRuntime.fsyncEnabled) throws -> PackFile? {
        guard packs.count > 1 else { return nil }
        struct NeedsRepack: Error {}
        var sources: [(pack: PackFile, entries: [PackIndexEntry], checksum: [UInt8])] = []
        // Big packs first: they are the ones that may have deltas, and keep their copies.
        for pack in packs.sorted(by: { $0.objectCount > $1.objectCount }) {
            let (entries, checksum) = try PackFormat.readIndex(pack.indexPath)
            sources.append((pack, entries, checksum))
        }
        // The new index's order, found from the indexes' own (each is sorted by id).
        let (order, copies) = PackFormat.mergedByID(sources.map(\.entries))
        // Each entry's place and checksum in the new pack, by source and index.
        var newOffsets = sources.map { [UInt64](repeating: 0, count: $0.entries.count) }
        var newCRCs = sources.map { $0.entries.map(\.crc) }
        var hasher = SHA1Hasher()
        var checksum: [UInt8] = []
        let inflater = Inflater(), deflater = Deflater(), smallDeflater = Deflater(fixedCodes: true)
        let temp: String
        do {
            temp = try writeTemporary(in: packDirectory, prefix: "tmp_pack_") { write in
                let header = PackFormat.packHeader(count: order.count)
                try header.withUnsafeBytes { try write($0); hasher.update($0) }
                var position = UInt64(header.count)
                for (s, source) in sources.enumerated() {
                    guard let data = FileManager.default.contents(atPath: source.pack.packPath), data.count >= 32,
                          Array(data.suffix(20)) == source.checksum else {
                        throw GitError(code: -1, message: "pack and index do not match", operation: "merge \(source.pack.packPath)")
                    }
                    try data.withUnsafeBytes { buf in
                        let end = buf.count - 20
                        guard source.entries.allSatisfy({ $0.offset >= 12 && $0.offset < UInt64(end) }) else {
                            throw GitError(code: -1, message: "offset out of range", operation: "merge \(source.pack.packPath)")
                        }
                        let duplicates = copies?[s].contains(true) ?? false
                        // Types 6 and 7 are deltas (by offset, by id).
                        let hasDeltas = source.entries.contains { (buf[Int($0.offset)] >> 4) & 7 >= 6 }
                        // A batch's entries are stored, not deflated: deflated here, once (only
                        // in packs without deltas, where no entry's size is another's offset).
                        let stored = !hasDeltas && source.entries.contains {
                            Self.deflatedWhenMerged((buf[Int($0.offset)] >> 4) & 7) && StoredZlib.startsStored(buf, at: PackFormat.dataStart(buf, at: Int($0.offset)))
                        }
                        if !duplicates && !stored {
                            // Entries run from after the 12-byte header to before the 20-byte checksum.
                            let region = UnsafeRawBufferPointer(rebasing: buf[12..<end])
                            try write(region)
                            hasher.update(region)
                            for (i, e) in source.entries.enumerated() { newOffsets[s][i] = e.offset - 12 + position }
                            position += UInt64(end - 12)
                            return
                        }
                        if hasDeltas { throw NeedsRepack() }
                        // Entry by entry, in the pack's order (an entry ends where the next begins).
                        let byOffset = source.entries.indices.sorted { source.entries[$0].offset < source.entries[$1].offset }
                        for (k, i) in byOffset.enumerated() where !(copies?[s][i] ?? false) {
                            let e = source.entries[i]
                            let stop = k + 1 < byOffset.count ? Int(source.entries[byOffset[k + 1]].offset) : end
                            let entry = UnsafeRawBufferPointer(rebasing: buf[Int(e.offset)..<stop])
                            var length = entry.count
                            if let deflated = try deflatedEntry(entry, inflater: inflater, deflater: deflater, smallDeflater: smallDeflater) {
                                try deflated.withUnsafeBytes { try write($0); hasher.update($0) }
                                newCRCs[s][i] = deflated.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
                                length = deflated.count
                            } else {
                                try write(entry)
                                hasher.update(entry)
                            }
                            newOffsets[s][i] = position
                            position += UInt64(length)
                        }
                    }
                }
                checksum = hasher.finish()
                try checksum.withUnsafeBytes(write)
            }
        } catch is NeedsRepack {
            return nil
        }
        let merged = order.map { p in
            PackIndexEntry(oid: sources[Int(p.list)].entries[Int(p.index)].oid, crc: newCRCs[Int(p.list)][Int(p.index)], offset: newOffsets[Int(p.list)][Int(p.index)])
        }
        let result = try install(packTemp: temp, indexBytes: PackFormat.index(merged, packChecksum: checksum, sorted: true), count: merged.count, checksum: checksum, durable: durable)
        try removePacks(packs.filter { $0.packPath != result.packPath })
        return result
    }
}

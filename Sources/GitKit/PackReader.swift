import CLibgit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file mapped into memory, read-only (stays readable after the file is removed).
final class MappedFile {
    let base: UnsafeRawPointer
    let count: Int

    init?(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        guard let p = mmap(nil, Int(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        base = UnsafeRawPointer(p)
        count = Int(st.st_size)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), count) }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

/// Reads objects straight from the repository's pack files, for reading many blobs at once:
/// each pack's index is searched in place (fan-out, then binary search) and an object is
/// inflated with one zlib stream, reset between objects. Deltas against an earlier entry of the
/// same pack (OFS_DELTA, what compaction writes) are applied here, keeping the objects they were
/// made against for the next ones. It answers nil for anything it does not handle (a delta by
/// id, an object not in a pack it saw, a damaged entry), and the caller asks libgit2 instead.
final class PackReader {
    private struct Pack {
        let index: MappedFile
        let pack: MappedFile
        let count: Int
    }
    private var packs: [Pack] = []
    private var stream = z_stream()
    private var ready = false
    private var lastHit = 0
    /// The inflated bytes of the object being read (reused, grown as needed).
    private var buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 1)
    private var bufferSize = 1 << 16
    /// Objects that deltas were made against, by pack and offset (emptied when it grows past
    /// `baseCacheLimit` bytes).
    private var bases: [Int: [UInt8]] = [:]
    private var basesBytes = 0
    private let baseCacheLimit = 32 << 20
    private static let maxChain = 64

    init(packDirectory: String) {
        ready = chatsync_inflate_init(&stream) == Z_OK
        let names = (try? FileManager.default.contentsOfDirectory(atPath: packDirectory)) ?? []
        for name in names where name.hasSuffix(".idx") {
            let base = packDirectory + "/" + String(name.dropLast(4))
            guard let index = MappedFile(base + ".idx"), let pack = MappedFile(base + ".pack"),
                  index.count >= 8 + 1024 + 40, pack.count >= 32 else { continue }
            let ib = index.bytes
            guard ib[0] == 0xFF, ib[1] == 0x74, ib[2] == 0x4F, ib[3] == 0x63, Self.be32(ib, 4) == 2 else { continue }
            let n = Int(Self.be32(ib, 8 + 255 * 4))
            guard index.count >= 8 + 1024 + n * 28 + 40,
                  // The pack is the one the index describes (its checksum).
                  memcmp(pack.base + pack.count - 20, index.base + index.count - 40, 20) == 0 else { continue }
            packs.append(Pack(index: index, pack: pack, count: n))
        }
    }

    deinit {
        if ready { inflateEnd(&stream) }
        buffer.deallocate()
    }

    private static func be32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    /// The offset of an object in a pack, by search in its index. Object ids are spread evenly,
    /// so the first probes go where the id's first eight bytes say it should be, between the
    /// ids known to be below and above it (a few probes instead of a binary search's 10–20,
    /// each likely a cache miss in a large index); after four, the search halves the range.
    private func find(_ oid: inout git_oid, in p: Pack) -> Int? {
        let ib = p.index.bytes
        let first = Int(oid.id.0)
        let lo0 = first == 0 ? 0 : Int(Self.be32(ib, 8 + (first - 1) * 4))
        let hi0 = Int(Self.be32(ib, 8 + first * 4))
        guard lo0 <= hi0, hi0 <= p.count else { return nil }  // a damaged fan-out
        var lo = lo0, hi = hi0
        let table = p.index.base + 8 + 1024
        func key(_ at: UnsafeRawPointer) -> UInt64 { UInt64(bigEndian: at.loadUnaligned(as: UInt64.self)) }
        let target = withUnsafeBytes(of: &oid.id) { key($0.baseAddress!) }
        // Every id in [lo, hi) is above `below` and below `above` (in their first eight bytes).
        var below = UInt64(first) << 56
        var above = first == 255 ? UInt64.max : UInt64(first + 1) << 56
        var probes = 0
        while lo < hi {
            var mid = (lo + hi) / 2
            if probes < 4 && above > below && target >= below {
                let share = Double(target - below) / Double(above - below)
                mid = min(hi - 1, lo + Int(share * Double(hi - lo)))
            }
            probes += 1
            let c = withUnsafeBytes(of: &oid.id) { memcmp(table + mid * 20, $0.baseAddress!, 20) }
            if c == 0 {
                let small = Self.be32(ib, 8 + 1024 + p.count * 24 + mid * 4)
                if small & 0x8000_0000 == 0 { return Int(small) }
                let at = 8 + 1024 + p.count * 28 + Int(small & 0x7FFF_FFFF) * 8
                guard at + 8 <= p.index.count - 40 else { return nil }
                return Int(UInt64(Self.be32(ib, at)) << 32 | UInt64(Self.be32(ib, at + 4)))
            }
            if c < 0 { lo = mid + 1; below = key(table + mid * 20) } else { hi = mid; above = key(table + mid * 20) }
        }
        return nil
    }

    /// Gives a whole object's bytes to `body`; nil when this reader cannot read it.
    func read<T>(_ oid: OID, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T? {
        guard let (p, offset) = locate(oid) else { return nil }
        return try read(pack: p, offset: offset, body)
    }

    /// Which pack holds an object, and where; nil when this reader cannot read it.
    func locate(_ oid: OID) -> (pack: Int, offset: Int)? {
        guard ready, !packs.isEmpty else { return nil }
        var raw = oid.raw
        for k in 0..<packs.count {
            let i = (lastHit + k) % packs.count
            guard let offset = find(&raw, in: packs[i]) else { continue }
            lastHit = i
            return (i, offset)
        }
        return nil
    }

    /// An entry's header: its type, inflated size, and where its data (or delta offset) starts.
    private func entryHeader(_ pack: MappedFile, at offset: Int) -> (type: UInt8, size: Int, data: Int)? {
        let b = pack.bytes
        let end = pack.count - 20
        guard offset >= 12, offset < end else { return nil }
        var i = offset
        var c = b[i]
        let type = (c >> 4) & 7
        var size = Int(c & 0x0F)
        var shift = 4
        i += 1
        while c & 0x80 != 0 {
            guard i < end, shift < 60 else { return nil }
            c = b[i]
            size |= Int(c & 0x7F) << shift
            shift += 7
            i += 1
        }
        // Larger objects (and nonsense sizes from a damaged pack) are libgit2's to read.
        guard size <= 1 << 30 else { return nil }
        return (type, size, i)
    }

    /// Room left after an object's bytes in every output buffer: zlib takes its fast loop only
    /// while 258 bytes of output room remain, so without it the last 258 bytes of every object
    /// (a third of a short message) would be decoded by its slow one.
    static let slack = 320

    /// Inflates `size` bytes from `at` into `output`, which has room for `size + slack` bytes.
    private func inflate(_ pack: MappedFile, at: Int, size: Int, into output: UnsafeMutableRawPointer) -> Bool {
        guard inflateReset(&stream) == Z_OK else { return false }
        let end = pack.count - 20
        stream.next_in = UnsafeMutablePointer(mutating: (pack.base + at).assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(min(end - at, Int(UInt32.max)))
        stream.next_out = output.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(size + Self.slack)
        let code = CLibgit2.inflate(&stream, Z_FINISH)
        return code == Z_STREAM_END && stream.total_out == uLong(size)
    }

    /// `buffer`, with room for `size` bytes and the slack.
    private func scratch(_ size: Int) -> UnsafeMutableRawPointer {
        if size + Self.slack > bufferSize {
            buffer.deallocate()
            bufferSize = size + Self.slack
            buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 1)
        }
        return buffer
    }

    /// The bytes of the object at `offset` of pack `p`, deltas applied; nil when this reader
    /// cannot read it.
    private func resolve(_ p: Int, at offset: Int, depth: Int) -> [UInt8]? {
        let pack = packs[p].pack
        guard depth <= Self.maxChain, let (type, size, data) = entryHeader(pack, at: offset) else { return nil }
        switch type {
        case 1...4:
            var ok = false
            let out = [UInt8](unsafeUninitializedCapacity: size + Self.slack) { buf, count in
                ok = size == 0 || inflate(pack, at: data, size: size, into: buf.baseAddress!)
                count = ok ? size : 0
            }
            return ok ? out : nil
        case 6:
            // The distance back to the base: 7 bits a byte, each byte but the last one more.
            let b = pack.bytes
            let end = pack.count - 20
            var i = data
            guard i < end else { return nil }
            var c = b[i]
            var distance = Int(c & 0x7F)
            i += 1
            while c & 0x80 != 0 {
                guard i < end, distance < 1 << 50 else { return nil }
                c = b[i]
                distance = ((distance + 1) << 7) | Int(c & 0x7F)
                i += 1
            }
            guard distance > 0, distance < offset else { return nil }
            let key = p << 48 | (offset - distance)
            let base: [UInt8]
            if let cached = bases[key] {
                base = cached
            } else {
                guard let b = resolve(p, at: offset - distance, depth: depth + 1) else { return nil }
                if basesBytes + b.count > baseCacheLimit {
                    bases.removeAll(keepingCapacity: true)
                    basesBytes = 0
                }
                bases[key] = b
                basesBytes += b.count
                base = b
            }
            let delta = scratch(size)
            guard size == 0 || inflate(pack, at: i, size: size, into: delta) else { return nil }
            return Self.apply(UnsafeBufferPointer(start: delta.assumingMemoryBound(to: UInt8.self), count: size), to: base)
        default:
            return nil
        }
    }

    /// Applies a delta (git's format: the base's size, the result's size, then copy and insert
    /// instructions) to `base`; nil when it does not fit.
    static func apply(_ delta: [UInt8], to base: [UInt8]) -> [UInt8]? {
        delta.withUnsafeBufferPointer { apply($0, to: base) }
    }

    static func apply(_ d: UnsafeBufferPointer<UInt8>, to base: [UInt8]) -> [UInt8]? {
        var i = 0
        func size() -> Int? {
            var v = 0, shift = 0
            while i < d.count {
                let c = d[i]
                i += 1
                v |= Int(c & 0x7F) << shift
                if c & 0x80 == 0 { return v }
                shift += 7
                if shift > 56 { return nil }
            }
            return nil
        }
        guard let source = size(), source == base.count, let target = size(), target <= 1 << 30 else { return nil }
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: target) { out, count in
            count = 0
            base.withUnsafeBufferPointer { b in
                while i < d.count {
                    let command = d[i]
                    i += 1
                    if command & 0x80 != 0 {
                        var from = 0, length = 0
                        for k in 0..<4 where command & (1 << UInt8(k)) != 0 {
                            guard i < d.count else { failed = true; return }
                            from |= Int(d[i]) << (8 * k)
                            i += 1
                        }
                        for k in 0..<3 where command & (0x10 << UInt8(k)) != 0 {
                            guard i < d.count else { failed = true; return }
                            length |= Int(d[i]) << (8 * k)
                            i += 1
                        }
                        if length == 0 { length = 0x10000 }
                        guard from + length <= b.count, count + length <= target else { failed = true; return }
                        (out.baseAddress! + count).update(from: b.baseAddress! + from, count: length)
                        count += length
                    } else if command != 0 {
                        let length = Int(command)
                        guard i + length <= d.count, count + length <= target else { failed = true; return }
                        (out.baseAddress! + count).update(from: d.baseAddress! + i, count: length)
                        i += length
                        count += length
                    } else {
                        failed = true
                        return
                    }
                }
            }
            if count != target { failed = true }
        }
        return failed ? nil : out
    }

    /// Gives the bytes of the object `locate` found to `body`; nil when this reader cannot
    /// read it. Reading many objects in the order of their offsets reads each pack front to
    /// back, and a delta's base is usually the one read last.
    func read<T>(pack p: Int, offset: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T? {
        let pack = packs[p].pack
        guard let (type, size, data) = entryHeader(pack, at: offset) else { return nil }
        if type == 6 {
            guard let bytes = resolve(p, at: offset, depth: 0) else { return nil }
            return try bytes.withUnsafeBytes { try body($0) }
        }
        guard type >= 1 && type <= 4 else { return nil }  // deltas by id: libgit2's job
        let out = scratch(size)
        guard size == 0 || inflate(pack, at: data, size: size, into: out) else { return nil }
        return try body(UnsafeRawBufferPointer(start: out, count: size))
    }
}

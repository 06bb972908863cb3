import CLibgit2
import Foundation
import Synchronization

/// A pack file of the object database.
public struct PackFile: Sendable {
    /// The path of the `.pack` file.
    public let packPath: String
    public var indexPath: String { String(packPath.dropLast(5)) + ".idx" }
    public let objectCount: Int
    /// A `.keep` file protects the pack from repacking.
    public let isKept: Bool
}

/// How many packs this process has removed (merged into others, or compacted): handles let go
/// of removed packs once this has grown by `threshold` (see `Repository.letGoOfRemovedPacks`).
public enum PackRemovals {
    private static let counter = Atomic<Int>(0)
    static let threshold = 32
    public static var count: Int { counter.load(ordering: .relaxed) }
    static func add(_ n: Int) { counter.add(n, ordering: .relaxed) }
}

extension Repository {
    public var packDirectory: String { gitDir + "objects/pack" }

    /// The packs of the object database, with their object counts (read from their indexes).
    public func packFiles() -> [PackFile] {
        let dir = packDirectory
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        var packs: [PackFile] = []
        for name in names where name.hasSuffix(".pack") {
            let base = dir + "/" + String(name.dropLast(5))
            guard let count = Self.indexObjectCount(base + ".idx") else { continue }
            packs.append(PackFile(packPath: base + ".pack", objectCount: count,
                                  isKept: FileManager.default.fileExists(atPath: base + ".keep")))
        }
        return packs
    }

    /// The object count of a version-2 pack index: the last fan-out entry.
    static func indexObjectCount(_ path: String) -> Int? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        guard let head = try? h.read(upToCount: 8 + 256 * 4), head.count == 8 + 256 * 4,
              head.prefix(4) == Data([0xFF, 0x74, 0x4F, 0x63]) else { return nil }
        let b = [UInt8](head.suffix(4))
        return Int(b[0]) << 24 | Int(b[1]) << 16 | Int(b[2]) << 8 | Int(b[3])
    }

    /// Writes the objects of `packs` as one new pack (with deltas), then removes the old packs.
    /// Readers that still have an old pack open keep reading it; others find the new one.
    public func mergePacks(_ packs: [PackFile]) throws {
        guard packs.count > 1 else { return }
        var builder: OpaquePointer?
        try check(git_packbuilder_new(&builder, pointer), "new pack builder")
        defer { git_packbuilder_free(builder) }
        for pack in packs {
            for entry in try PackFormat.readIndex(pack.indexPath).entries {
                var raw = entry.oid.raw
                try check(git_packbuilder_insert(builder, &raw, nil), "add \(entry.oid.short) to pack")
            }
        }
        try check(git_packbuilder_write(builder, packDirectory, 0, nil, nil), "write pack")
        try removePacks(packs)
    }

    /// Removes packs whose objects another pack holds now (each index first: readers find packs
    /// by their indexes), and has this handle look at the disk again (`packsRemoved`).
    func removePacks(_ packs: [PackFile]) throws {
        for pack in packs {
            unlink(pack.indexPath)
            unlink(pack.packPath)
            unlink(String(pack.packPath.dropLast(5)) + ".rev")
        }
        try packsRemoved(packs.count)
    }

    /// Packs every object reachable from `tips` into one pack with deltas along the history
    /// (`writeHistoryPack`), then removes the packs and loose objects older than `grace` seconds:
    /// what they held that is reachable is in the new pack; younger ones may belong to a writer
    /// that has not moved its ref yet, and stay. Returns the new pack.
    @discardableResult
    public func packReachable(from tips: [OID], grace: Double = 60) throws -> PackFile? {
        let cutoff = Date().addingTimeInterval(-grace)
        let before = packFiles().filter { !$0.isKept && ((try? FileManager.default.attributesOfItem(atPath: $0.packPath)[.modificationDate] as? Date) ?? Date()) < cutoff }
        guard let pack = try writeHistoryPack(from: tips) else { return nil }
        removeLooseObjects(olderThan: cutoff)
        try removePacks(before.filter { $0.packPath != pack.packPath })
        return pack
    }

    /// Removes loose object files older than `cutoff` (call once a pack holds what is reachable).
    func removeLooseObjects(olderThan cutoff: Date) {
        let objects = gitDir + "objects"
        let fm = FileManager.default
        for dir in (try? fm.contentsOfDirectory(atPath: objects)) ?? [] where dir.count == 2 {
            let sub = objects + "/" + dir
            for f in (try? fm.contentsOfDirectory(atPath: sub)) ?? [] {
                let path = sub + "/" + f
                if let m = (try? fm.attributesOfItem(atPath: path))?[.modificationDate] as? Date, m < cutoff { unlink(path) }
            }
            rmdir(sub)
        }
    }

    /// Bytes used by the object database (packs and loose objects).
    public func objectDatabaseSize() -> Int {
        let objects = gitDir + "objects"
        var total = 0
        if let e = FileManager.default.enumerator(atPath: objects) {
            while let p = e.nextObject() as? String {
                if let size = (try? FileManager.default.attributesOfItem(atPath: objects + "/" + p))?[.size] as? Int { total += size }
            }
        }
        return total
    }

    /// The number of loose objects.
    public func looseObjectCount() -> Int {
        let objects = gitDir + "objects"
        let fm = FileManager.default
        var n = 0
        for dir in (try? fm.contentsOfDirectory(atPath: objects)) ?? [] where dir.count == 2 {
            n += ((try? fm.contentsOfDirectory(atPath: objects + "/" + dir)) ?? []).count
        }
        return n
    }
}


import Foundation
import GitKit

/// What a compaction did.
public struct CompactionReport: Codable, Sendable, Equatable {
    public var packsBefore: Int
    public var looseObjectsBefore: Int
    public var bytesBefore: Int
    public var packsAfter: Int
    public var looseObjectsAfter: Int
    public var bytesAfter: Int
    enum CodingKeys: String, CodingKey {
        case packsBefore = "packs_before", looseObjectsBefore = "loose_objects_before", bytesBefore = "bytes_before"
        case packsAfter = "packs_after", looseObjectsAfter = "loose_objects_after", bytesAfter = "bytes_after"
    }
}

extension Store {
    /// Packs everything reachable (the branch, remote branches, every ref) into one pack with
    /// deltas and removes the packs and loose objects it replaces. Safe while other processes
    /// read and write: only packs and loose objects older than `grace` seconds are removed (a
    /// writer moves its ref milliseconds after writing its pack), and readers that have an old
    /// pack open keep reading it.
    @discardableResult
    public func compact(grace: Double = 60) throws -> CompactionReport {
        let lock = try FileLock(path: gitDir + "chatsync/compact.lock")
        return try lock.withLock { try withoutMerges {
            try withRepository { repo in
                let before = (repo.packFiles().count, repo.looseObjectCount(), repo.objectDatabaseSize())
                let refs = try wrapGit { try repo.referenceNames(glob: "refs/*") }
                let tips = try refs.compactMap { name in try wrapGit { try repo.referenceTarget(name) } }
                try wrapGit { _ = try repo.packReachable(from: Array(Set(tips)), grace: grace) }
                return CompactionReport(packsBefore: before.0, looseObjectsBefore: before.1, bytesBefore: before.2,
                                        packsAfter: repo.packFiles().count, looseObjectsAfter: repo.looseObjectCount(),
                                        bytesAfter: repo.objectDatabaseSize())
            }
        } }
    }

    /// The bytes of every document at the tip, as stored (the raw JSON the store holds).
    public func documentBytes() throws -> Int {
        try read { snap in
            var total = 0
            for (_, oid) in try snap.blobs(under: snap.tree, prefix: "") { total += try snap.repo.withBlob(oid) { $0.count } }
            return total
        }
    }
}

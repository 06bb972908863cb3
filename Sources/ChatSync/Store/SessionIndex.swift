import Foundation
import GitKit

/// The sessions of the `sessions/` folder, kept in memory and brought up to date by comparing
/// trees, so that listing a user's sessions by status, or finding a user's active session,
/// does not read every session document. Keyed by the folder's tree id, it is a fact about
/// that tree: it never disagrees with the commit it is asked about, whoever made the commit
/// (this process, another one, a plain `git pull`). Missing (a new handle) it is built from
/// git; stale, it reads only the documents that changed since.
final class SessionIndex: @unchecked Sendable {
    private let lock = NSLock()
    private var tree: OID?
    private var built = false
    private var byPath: [String: UserSession] = [:]

    /// How many session documents the index has decoded (for tests: a rescan shows).
    private(set) var decoded = 0

    /// Every session of the snapshot.
    func sessions(_ snap: Snapshot) throws -> [UserSession] {
        Array(try table(snap).values)
    }

    /// Every session as a change leaves them (the index of its base, then its own edits).
    func sessions(_ tx: Transaction) throws -> [UserSession] {
        guard let edits = try tx.edits(under: Layout.sessionsDir) else {
            return try tx.shardedDocuments(UserSession.self, in: Layout.sessionsDir)
        }
        // A change's base may be a commit still in the writer's memory (the batch before it is
        // not on the branch yet); a reader that cannot see that tree reads everything once.
        var table = try self.table(tx.base)
        for (path, data) in edits {
            table[String(path.dropFirst(Layout.sessionsDir.count + 1))] = try data.map { try decode($0, path, tx.decoder) }
        }
        return Array(table.values)
    }

    private func table(_ snap: Snapshot) throws -> [String: UserSession] {
        let current = try snap.oid(at: Layout.sessionsDir)
        lock.lock()
        let (known, wasBuilt, table) = (tree, built, byPath)
        lock.unlock()
        if wasBuilt && known == current { return table }
        var updated = wasBuilt ? table : [:]
        var count = 0
        if let current {
            // The changes since the tree the index shows; nil (read everything) when there is no
            // such tree, or this handle cannot compare with it.
            let changes: [TreeChange]? = wasBuilt ? (known.map { try? snap.repo.diff(from: $0, to: current) } ?? nil) : nil
            if let changes {
                for change in changes where change.path.hasSuffix(".json") {
                    if change.status == .deleted || change.newOID == nil {
                        updated[change.path] = nil
                    } else {
                        updated[change.path] = try snap.repo.withBlob(change.newOID!) { try decode(Data($0), change.path, snap.decoder) }
                        count += 1
                    }
                }
            } else {
                updated = [:]
                for (path, oid) in try snap.blobs(under: current, prefix: Layout.sessionsDir) where path.hasSuffix(".json") {
                    let relative = String(path.dropFirst(Layout.sessionsDir.count + 1))
                    updated[relative] = try snap.repo.withBlob(oid) { try decode(Data($0), path, snap.decoder) }
                    count += 1
                }
            }
        } else {
            updated = [:]
        }
        lock.lock()
        tree = current
        built = true
        byPath = updated
        decoded += count
        lock.unlock()
        return updated
    }

    private func decode(_ data: Data, _ path: String, _ decoder: JSONDecoder) throws -> UserSession {
        do {
            return try decoder.decode(UserSession.self, from: data)
        } catch {
            throw ChatSyncError.badStore("\(path) is not a valid \(UserSession.kind.rawValue) document: \(describeDecodingError(error))")
        }
    }
}

import Foundation
import GitKit
#if canImport(Glibc)
import Glibc
#endif

/// The result of one change: what the change returned and the commit it made (nil when the
/// change wrote nothing).
struct ChangeOutcome: @unchecked Sendable {
    let value: Any
    let commit: OID?
}

/// A change waiting for the writer.
private final class PendingChange: @unchecked Sendable {
    let apply: (Transaction) throws -> Any
    private var result: Result<ChangeOutcome, Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ apply: @escaping (Transaction) throws -> Any) { self.apply = apply }

    func finish(_ r: Result<ChangeOutcome, Error>) { result = r; done.signal() }
    func wait() throws -> ChangeOutcome { done.wait(); return try result!.get() }
}

/// The one writer of a store in this process. Every change goes through it. It takes the
/// changes waiting at once as a batch (group commit): each change becomes its own commit on
/// top of the previous one, all of the batch's objects are written as one pack, made durable
/// together, and the branch moves once, by compare-and-swap. A writer in another process that
/// moved the branch first makes the batch start again on the new tip; no change is lost.
final class Writer: @unchecked Sendable {
    private let repo: Repository
    private let options: StoreOptions
    private let branchRef: String
    private let gitDir: String
    private let summaries: SummaryCache
    private let worktree: WorkTreeSync?
    private let condition = NSCondition()
    private var queue: [PendingChange] = []
    private var stopping = false
    private var thread: Thread?
    /// How many changes one batch takes at most.
    static let maxBatch = 256

    init(path: String, options: StoreOptions, summaries: SummaryCache) throws {
        repo = try Repository.open(path)
        try repo.bufferObjectsInMemory()
        self.options = options
        branchRef = "refs/heads/" + options.branch
        gitDir = repo.gitDir
        self.summaries = summaries
        worktree = repo.isBare ? nil : try WorkTreeSync(gitDir: repo.gitDir, options: options)
        // The thread keeps the writer alive until `stop()` lets it drain the queue and exit.
        let t = Thread { self.run() }
        t.name = "chatsync-writer"
        thread = t
        t.start()
    }

    /// Stops the writer thread after the changes already queued.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    /// Queues a change and waits until it is committed (and durable, when the store is).
    func submit(_ apply: @escaping (Transaction) throws -> Any) throws -> ChangeOutcome {
        let p = PendingChange(apply)
        condition.lock()
        if stopping { condition.unlock(); throw ChatSyncError.storage("the store is closed") }
        queue.append(p)
        condition.signal()
        condition.unlock()
        return try p.wait()
    }

    private func run() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping { condition.unlock(); return }
            let batch = Array(queue.prefix(Self.maxBatch))
            queue.removeFirst(batch.count)
            condition.unlock()
            process(batch)
        }
    }

    private func process(_ batch: [PendingChange]) {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let (results, oldTree, newTip) = try commitBatch(batch)
                if let worktree, let oldTree, newTip != nil {
                    worktree.sync(repo: repo, branchRef: branchRef, fallbackBaseline: oldTree)
                }
                for (p, r) in zip(batch, results) { p.finish(r) }
                maybeCompact()
                return
            } catch let e as GitError where (e.isModified || e.isLocked) && attempt < 10_000 {
                // Another writer moved the branch (or holds its lock): redo the batch on the new tip.
                repo.discardBufferedObjects()
                if e.isLocked { LockFiles.clearIfStale(gitDir + branchRef + ".lock", olderThan: options.staleLockSeconds) }
                usleep(UInt32.random(in: 50...(attempt < 20 ? 500 : 5_000)))
            } catch {
                repo.discardBufferedObjects()
                let failure: Error = (error as? ChatSyncError) ?? ChatSyncError.storage("\(error)")
                for p in batch { p.finish(.failure(failure)) }
                return
            }
        }
    }

    /// Builds one commit per change on the current tip, writes the objects as one pack and
    /// moves the branch once. Throws a `GitError` (`isModified`) when the tip moved meanwhile.
    private func commitBatch(_ batch: [PendingChange]) throws -> ([Result<ChangeOutcome, Error>], OID?, OID?) {
        let tip = try repo.referenceTarget(branchRef)
        let tipTree = try tip.map { try repo.commit($0).tree } ?? repo.emptyTree()
        var current = tip
        var currentTree = tipTree
        var results: [Result<ChangeOutcome, Error>] = []
        let identity = options.identity
        for p in batch {
            let snapshot = Snapshot(repo: repo, commit: current, tree: currentTree)
            let tx = Transaction(base: snapshot, now: Timestamp.now(), limits: options.limits)
            tx.summaryCache = summaries
            let value: Any
            do {
                value = try p.apply(tx)
            } catch let e as GitError {
                results.append(.failure(ChatSyncError.storage(e.description)))
                continue
            } catch {
                results.append(.failure(error))
                continue
            }
            if tx.isEmpty {
                results.append(.success(ChangeOutcome(value: value, commit: nil)))
                continue
            }
            var tree = currentTree
            for step in try tx.treeUpdates(writeBlob: repo.writeBlob) {
                tree = try repo.updateTree(tree, step)
            }
            let sig = Signature(name: identity.name, email: identity.email, time: tx.now.milliseconds / 1000)
            let message = tx.message.isEmpty ? "chatsync: change" : tx.message
            let commit = try repo.createCommit(tree: tree, parents: current.map { [$0] } ?? [], author: sig, message: message)
            for (chatID, summary) in tx.summaries {
                // Keyed by tree id, a summary is a fact about that tree: safe to keep even if the batch is redone.
                if let oid = try repo.entry(in: tree, path: Layout.messagesDir(chatID))?.oid { summaries.put(oid, summary) }
            }
            current = commit
            currentTree = tree
            results.append(.success(ChangeOutcome(value: value, commit: commit)))
        }
        guard let newTip = current, newTip != tip else {
            repo.discardBufferedObjects()
            return (results, nil, nil)
        }
        // Objects first, durable (one pack, fsynced when durable), then the branch.
        try repo.flushObjects()
        try repo.compareAndSwapReference(branchRef, to: newTip, expected: tip, message: "chatsync: \(batch.count) change(s)")
        return (results, tipTree, newTip)
    }

    private var batchesSinceCompactCheck = 0

    /// Keeps the number of packs small: every batch adds one.
    private func maybeCompact() {
        batchesSinceCompactCheck += 1
        guard batchesSinceCompactCheck >= 16 else { return }
        batchesSinceCompactCheck = 0
        _ = try? Compaction.consolidateSmallPacks(repo: repo, maxPacks: options.maxPacks)
    }
}

/// Keeps the work tree and index equal to the branch: brings them from the tree they last
/// showed (recorded in `.git/chatsync/worktree`) to the branch's tree, under a lock shared by
/// every process, so that syncs from several writers converge whatever their order.
final class WorkTreeSync: @unchecked Sendable {
    private let lock: FileLock
    private let recordPath: String
    private let gitDir: String
    private let options: StoreOptions

    init(gitDir: String, options: StoreOptions) throws {
        let dir = gitDir + "chatsync"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        lock = try FileLock(path: dir + "/worktree.lock")
        recordPath = dir + "/worktree"
        self.gitDir = gitDir
        self.options = options
    }

    /// The tree the work tree last showed, if recorded.
    func recordedTree() -> OID? {
        guard let d = FileManager.default.contents(atPath: recordPath) else { return nil }
        return OID(hex: String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func record(_ tree: OID) {
        try? writeFileAtomically(Data((tree.hex + "\n").utf8), to: recordPath)
    }

    /// Brings the work tree to the branch's tree. Files edited by hand are left as they are.
    /// Failures are not the change's: the commit is made; the next sync tries again.
    func sync(repo: Repository, branchRef: String, fallbackBaseline: OID) {
        lock.withLock {
            do {
                guard let tip = try repo.referenceTarget(branchRef) else { return }
                let target = try repo.commit(tip).tree
                let baseline = recordedTree() ?? fallbackBaseline
                if baseline == target { return }
                let paths = try repo.diff(from: baseline, to: target).map(\.path)
                var attempt = 0
                while true {
                    do {
                        try repo.checkout(from: baseline, to: target, paths: paths)
                        break
                    } catch let e as GitError where e.isLocked && attempt < 200 {
                        attempt += 1
                        LockFiles.clearIfStale(gitDir + "index.lock", olderThan: options.staleLockSeconds)
                        usleep(10_000)
                    }
                }
                record(target)
            } catch {
                FileHandle.standardError.write(Data("chatsync: work tree not updated: \(error)\n".utf8))
            }
        }
    }
}

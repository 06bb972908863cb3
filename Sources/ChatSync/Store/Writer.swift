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
/// together, and the branch moves once, by compare-and-swap.
///
/// Three threads share the work, so that building a batch's commits overlaps with making the
/// previous batch durable: the building thread makes a batch's commits (objects in memory) on
/// top of the batch before it, whether or not that one is on the branch yet, and hands it to
/// the committing thread, which writes the pack, fsyncs, and moves the branch (expecting
/// exactly the tip the batch was built on); the third thread then fsyncs the branch's folder
/// and only then acknowledges the batch's changes, in order, while the committing thread
/// writes the next batch's pack (a batch with nothing behind it is finished on the committing
/// thread, without the hand-over). A writer in another process that moved the branch first
/// makes the batch, and any built on it, start again on the new tip; no change is lost, and
/// none is acknowledged before the state it saw is on the branch.
final class Writer: @unchecked Sendable {
    /// Builds commits (the building thread only); new objects stay in its memory buffer.
    private let repo: Repository
    /// Writes packs, moves the branch (the committing thread only).
    private let committerRepo: Repository
    /// Merges packs, asked by the committing thread.
    private let merger: PackMerger
    private let options: StoreOptions
    private let branchRef: String
    private let gitDir: String
    private let summaries: SummaryCache
    private let follower: WorkTreeFollower?
    /// Guards everything below it.
    private let condition = NSCondition()
    private var queue: [PendingChange] = []
    private var stopping = false
    /// Built batches waiting for the committing thread, in order.
    private var built: [BuiltBatch] = []
    /// Batches handed to the committing thread and not yet done with.
    private var inFlight = 0
    /// Batches to build again: what they were built on did not become the branch.
    private var redo: [[PendingChange]] = []
    /// A batch failed for another reason: the ones built on it must be built again.
    private var poisoned = false
    private var redoAfterLock = false
    /// Redo rounds since a batch last landed (the back-off grows with it; past `maxRedoRounds`
    /// the changes fail rather than wait forever on a branch that keeps moving or stays locked).
    private var redoRounds = 0
    static let maxRedoRounds = 10_000
    private var committerStopping = false
    /// Batches the building thread has taken from the queue, and finished building (or failed).
    private var buildsStarted = 0
    private var buildsFinished = 0
    private let committerFinished = DispatchSemaphore(value: 0)
    /// Makes each batch's branch move durable and acknowledges its changes, in order, on a
    /// thread of its own: that fsync of the branch's folder overlaps with the next batch's.
    private let durability = SerialWorker(name: "chatsync-durable")
    /// How many changes one batch takes at most.
    static let maxBatch = 256
    /// How many batches may be built and not yet committed (the one being committed included).
    /// The committing thread takes every built batch waiting at once and makes them durable
    /// together, so the changes that came during one commit's fsyncs share the next one's.
    static let maxInFlight = 4
    /// After this many batches without a pause, the building thread waits for the committing
    /// thread once and empties its memory buffer (under a steady stream it is never idle).
    static let batchesBetweenReleases = 64

    /// Told, before the branch moves, which commits this writer is about to put on it and where
    /// they came from (so a watcher never sees one of them untold).
    private let tagOrigins: @Sendable ([(OID, ChangeOrigin)]) -> Void
    /// Told after the branch moved.
    private let moved: @Sendable () -> Void

    private struct BuiltBatch {
        let changes: [PendingChange]
        let results: [Result<ChangeOutcome, Error>]
        let objects: BufferedObjects
        /// The branch tip the batch was built on, and its tree.
        let base: OID?
        let baseTree: OID
        /// The batch's last commit and its tree (nil: the batch made no commit).
        let newTip: OID?
        let newTree: OID
        let tags: [(OID, ChangeOrigin)]
    }

    init(path: String, options: StoreOptions, summaries: SummaryCache, follower: WorkTreeFollower?,
         tagOrigins: @escaping @Sendable ([(OID, ChangeOrigin)]) -> Void, moved: @escaping @Sendable () -> Void) throws {
        self.tagOrigins = tagOrigins
        self.moved = moved
        repo = try Repository.open(path)
        try repo.bufferObjectsInMemory()
        committerRepo = try Repository.open(path)
        merger = try PackMerger(path: path, maxPacks: options.maxPacks)
        self.options = options
        branchRef = "refs/heads/" + options.branch
        gitDir = repo.gitDir
        self.summaries = summaries
        self.follower = follower
        // The threads keep the writer alive until `stop()` lets them drain the queue and exit.
        let b = Thread { self.runBuilder() }
        b.name = "chatsync-writer"
        builderThread = b
        let c = Thread { self.runCommitter() }
        c.name = "chatsync-commit"
        b.start()
        c.start()
    }

    /// Waits until this process merges no packs (see `PackMerger.waitUntilIdle`).
    func waitForMerges() { merger.waitUntilIdle() }

    /// Runs `body` with this process's pack merging held still.
    func withoutMerges<T>(_ body: () throws -> T) rethrows -> T { try merger.holdingStill(body) }

    private var builderThread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// Stops the writer after the changes already queued, and waits for it.
    func stop() {
        condition.lock()
        let first = !stopping
        stopping = true
        condition.broadcast()
        condition.unlock()
        if first && Thread.current != builderThread { finished.wait() }
    }

    /// Queues a change and waits until it is committed (and durable, when the store is).
    func submit(_ apply: @escaping (Transaction) throws -> Any) throws -> ChangeOutcome {
        let p = PendingChange(apply)
        condition.lock()
        if stopping { condition.unlock(); throw ChatSyncError.storage("the store is closed") }
        queue.append(p)
        condition.broadcast()
        condition.unlock()
        return try p.wait()
    }

    // MARK: building

    private func runBuilder() {
        /// The tip and tree the next batch builds on (nil: the branch as it is on disk).
        var base: (tip: OID?, tree: OID)?
        var sinceRelease = 0
        while true {
            condition.lock()
            while true {
                let mustRedo = !redo.isEmpty || poisoned
                if mustRedo && inFlight == 0 { break }
                if !mustRedo && !queue.isEmpty && inFlight < Self.maxInFlight { break }
                if !mustRedo && queue.isEmpty && inFlight == 0 && (base != nil || stopping) { break }
                condition.wait()
            }
            if !redo.isEmpty || poisoned {
                // What the batches were built on did not become the branch: build them again on
                // the branch as it is now, before anything queued after them.
                let again = redo.flatMap { $0 }
                redo.removeAll()
                poisoned = false
                let locked = redoAfterLock
                redoAfterLock = false
                redoRounds += 1
                let round = redoRounds
                let giveUp = round > Self.maxRedoRounds
                if !giveUp { queue.insert(contentsOf: again, at: 0) }
                condition.unlock()
                repo.discardBufferedObjects()
                base = nil
                if giveUp {
                    let failure = ChatSyncError.storage("the branch \(branchRef) kept moving or stayed locked: gave up after \(round - 1) attempts")
                    for p in again { p.finish(.failure(failure)) }
                    condition.lock(); redoRounds = 0; condition.unlock()
                    continue
                }
                if locked { LockFiles.clearIfStale(gitDir + branchRef + ".lock", olderThan: options.staleLockSeconds) }
                usleep(UInt32.random(in: 50...(round < 20 ? 500 : 5_000)))
                continue
            }
            if queue.isEmpty {
                let done = stopping
                condition.unlock()
                // Idle: every batch is on disk. The next batch starts from the branch as it is
                // then (another process may move it); the objects stay in memory too (reading
                // them there is quicker than from the new packs) until the buffer is emptied
                // every `batchesBetweenReleases` batches, or the writer stops.
                base = nil
                if done {
                    try? repo.releaseMemory()
                    stopCommitter()
                    committerFinished.wait()
                    merger.stop()
                    finished.signal()
                    return
                }
                continue
            }
            let changes = Array(queue.prefix(Self.maxBatch))
            queue.removeFirst(changes.count)
            buildsStarted += 1
            condition.unlock()
            do {
                let batch = try build(changes, on: base)
                base = (batch.newTip ?? batch.base, batch.newTree)
                condition.lock()
                buildsFinished += 1
                built.append(batch)
                inFlight += 1
                condition.broadcast()
                condition.unlock()
            } catch {
                // The batch could not be built at all (reading the branch): once the batches
                // before it are done, its changes fail, unless what it was built on did not make
                // it (then it is built again with them). The next batch starts from the disk.
                condition.lock()
                buildsFinished += 1
                condition.broadcast()
                condition.unlock()
                waitForCommitter()
                condition.lock()
                let baseFailed = !redo.isEmpty || poisoned
                if baseFailed { redo.append(changes) }
                condition.unlock()
                if !baseFailed {
                    let failure: Error = (error as? ChatSyncError) ?? ChatSyncError.storage("\(error)")
                    for p in changes { p.finish(.failure(failure)) }
                }
                repo.discardBufferedObjects()
                base = nil
                continue
            }
            sinceRelease += 1
            if sinceRelease >= Self.batchesBetweenReleases {
                waitForCommitter()
                try? repo.releaseMemory()
                base = nil
                sinceRelease = 0
            }
        }
    }

    private func waitForCommitter() {
        condition.lock()
        while inFlight > 0 { condition.wait() }
        condition.unlock()
    }

    private func stopCommitter() {
        condition.lock()
        committerStopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Makes one commit per change on `base` (or on the branch's tip), objects in memory.
    private func build(_ batch: [PendingChange], on base: (tip: OID?, tree: OID)?) throws -> BuiltBatch {
        let tip: OID?
        let tipTree: OID
        if let base {
            (tip, tipTree) = base
        } else {
            tip = try repo.referenceTarget(branchRef)
            tipTree = try tip.map { try repo.commit($0).tree } ?? repo.emptyTree()
        }
        var current = tip
        var currentTree = tipTree
        var results: [Result<ChangeOutcome, Error>] = []
        var tags: [(OID, ChangeOrigin)] = []
        let identity = options.identity
        for p in batch {
            let snapshot = Snapshot(repo: repo, commit: current, tree: currentTree)
            let tx = Transaction(base: snapshot, now: Timestamp.now(), limits: options.limits)
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
            if let target = tx.fastForward {
                // The branch moves to a commit that already exists (its objects came with a fetch).
                for c in try repo.walk(from: target, hiding: current.map { [$0] } ?? [], firstParent: true) { tags.append((c, tx.origin)) }
                current = target
                currentTree = try repo.commit(target).tree
                results.append(.success(ChangeOutcome(value: value, commit: target)))
                continue
            }
            if tx.isEmpty {
                results.append(.success(ChangeOutcome(value: value, commit: nil)))
                continue
            }
            // A change whose objects cannot be written fails alone; the batch goes on.
            let made: (commit: OID, tree: OID)?
            do {
                var tree = currentTree
                for step in try tx.treeUpdates(writeBlob: repo.writeBlob) {
                    tree = try repo.updateTree(tree, step)
                }
                if tree == currentTree && tx.mergeParent == nil {
                    made = nil
                } else {
                    let sig = Signature(name: identity.name, email: identity.email, time: tx.now.milliseconds / 1000)
                    let message = tx.message.isEmpty ? "chatsync: change" : tx.message
                    let parents = (current.map { [$0] } ?? []) + (tx.mergeParent.map { [$0] } ?? [])
                    let commit = try repo.createCommit(tree: tree, parents: parents, author: sig, message: message)
                    for (chatID, summary) in tx.summaries {
                        // Keyed by tree id, a summary is a fact about that tree: safe to keep even if the batch is redone.
                        if let oid = try repo.entry(in: tree, path: Layout.messagesDir(chatID))?.oid { summaries.put(oid, summary) }
                    }
                    made = (commit, tree)
                }
            } catch {
                results.append(.failure((error as? ChatSyncError) ?? ChatSyncError.storage("\(error)")))
                continue
            }
            guard let made else {
                // The change wrote back what was there: no commit.
                results.append(.success(ChangeOutcome(value: value, commit: nil)))
                continue
            }
            current = made.commit
            currentTree = made.tree
            tags.append((made.commit, tx.origin))
            results.append(.success(ChangeOutcome(value: value, commit: made.commit)))
        }
        let moved = current != tip
        return BuiltBatch(changes: batch, results: results, objects: repo.takeBufferedObjects(), base: tip, baseTree: tipTree,
                          newTip: moved ? current : nil, newTree: currentTree, tags: tags)
    }

    // MARK: committing

    private func runCommitter() {
        while true {
            // The next batch's pack and index files, made while waiting for it (creating a file
            // is slow where many were deleted lately: merging deletes packs).
            try? committerRepo.letGoOfRemovedPacks()
            try? committerRepo.prepareTemporaryFiles()
            // Under concurrent writers the next batch takes a while to gather: fsyncing the new
            // files meanwhile keeps their folder's write out of that batch's fsync. (One writer's
            // next change is being built already, and would wait for it.)
            if lastRoundChanges > 1 { committerRepo.syncPreparedFiles() }
            condition.lock()
            while built.isEmpty && !committerStopping { condition.wait() }
            // A batch being built now is built on these: it joins them (waiting for that one
            // only), so that a change that came alone does not take a round of fsyncs of its
            // own while the changes that came right after it wait for the next.
            let joining = buildsStarted
            while buildsFinished < joining && !committerStopping { condition.wait() }
            if built.isEmpty {
                condition.unlock()
                committerRepo.discardPreparedFiles()
                durability.stop()
                committerRepo.discardSpareLock(branchRef)
                committerFinished.signal()
                return
            }
            // Every batch built so far: each was built on the one before, so they land together.
            let batches = built
            built.removeAll()
            let stale = !redo.isEmpty || poisoned
            condition.unlock()
            let count = batches.count
            lastRoundChanges = batches.reduce(0) { $0 + $1.changes.count }
            if stale {
                // Built on a batch that did not make it: build them again.
                finishInFlight(count) { w in for b in batches { w.redo.append(b.changes) } }
                continue
            }
            do {
                let (moved, pending) = try commit(batches)
                // Asked before the batches count as done, so that a stopping writer still
                // merges what they added.
                maybeCompact()
                if pending != nil && (moreToCommit() || !durability.isIdle) {
                    // The branch moved; the other thread makes that durable and acknowledges
                    // the changes while this one writes the next batch's pack.
                    durability.add { self.landed(batches, moved: moved, pending) }
                } else {
                    // Nothing else to commit yet: no need for the other thread.
                    landed(batches, moved: moved, pending)
                }
            } catch let e as GitError where e.isModified || e.isLocked {
                // Another writer moved the branch (or holds its lock).
                finishInFlight(count) { w in
                    for b in batches { w.redo.append(b.changes) }
                    w.redoAfterLock = w.redoAfterLock || e.isLocked
                }
            } catch {
                // The first batch's changes fail; the ones built on it are built again.
                let failure: Error = (error as? ChatSyncError) ?? ChatSyncError.storage("\(error)")
                for p in batches[0].changes { p.finish(.failure(failure)) }
                finishInFlight(count) { w in
                    for b in batches.dropFirst() { w.redo.append(b.changes) }
                    w.poisoned = true
                }
            }
        }
    }

    /// Whether a batch is built, being built or queued.
    private func moreToCommit() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return !built.isEmpty || buildsStarted > buildsFinished || !queue.isEmpty
    }

    /// `batches` are committed (`moved`: the branch moved to their last commit): once that is
    /// durable (`pending`: the branch's rename still to make durable), tells the watchers and
    /// the work tree, then acknowledges the changes. A failed fsync fails the changes it was for.
    private func landed(_ batches: [BuiltBatch], moved branchMoved: Bool, _ pending: ReferenceUpdate?) {
        var failure: Error?
        do { try pending?.makeDurable() } catch { failure = (error as? ChatSyncError) ?? ChatSyncError.storage("\(error)") }
        if branchMoved { moved() }
        if branchMoved, let follower, options.workTree != .disabled {
            // The work tree follows the branch; in synchronous mode the change waits for it.
            let generation = follower.request(fallbackBaseline: batches[0].baseTree)
            if options.workTree == .synchronous { follower.wait(for: generation) }
        }
        for b in batches { for (p, r) in zip(b.changes, b.results) { p.finish(failure.map { .failure($0) } ?? r) } }
        finishInFlight(batches.count) { $0.redoRounds = 0 }
    }

    private func finishInFlight(_ batches: Int, _ update: (Writer) -> Void) {
        condition.lock()
        update(self)
        inFlight -= batches
        condition.broadcast()
        condition.unlock()
    }

    /// Consecutive batches (each built on the one before): their objects first, durable (one
    /// pack, fsynced when durable), then the branch, once. Returns whether the branch moved, and
    /// its update when the rename is still to be made durable.
    private func commit(_ batches: [BuiltBatch]) throws -> (moved: Bool, pending: ReferenceUpdate?) {
        guard let first = batches.first, let newTip = batches.last(where: { $0.newTip != nil })?.newTip else { return (false, nil) }
        let objects = BufferedObjects(combining: batches.map(\.objects))
        // The branch's lock is taken and its new value written first, so that the value is
        // fsynced with the pack (the disk waits overlap); it moves once the pack is in place.
        if let update = try committerRepo.prepareReferenceUpdate(branchRef, to: newTip, expected: first.base) {
            defer { update.abandon() }
            try committerRepo.writePack(objects, alsoSyncing: [update.lockPath])
            tagOrigins(batches.flatMap(\.tags))
            try update.putInPlace()
            return (true, GitRuntime.fsyncEnabled ? update : nil)
        } else {
            try committerRepo.writePack(objects)
            tagOrigins(batches.flatMap(\.tags))
            try committerRepo.compareAndSwapReference(branchRef, to: newTip, expected: first.base,
                                                      message: "chatsync: \(batches.reduce(0) { $0 + $1.changes.count }) change(s)")
            return (true, nil)
        }
    }

    private var batchesSinceCompactCheck = 0
    /// How many changes the committing thread's last round took (that thread only).
    private var lastRoundChanges = 0

    /// Keeps the number of packs small: every batch adds one (committing thread). The merging
    /// itself happens on a thread of its own.
    private func maybeCompact() {
        batchesSinceCompactCheck += 1
        guard batchesSinceCompactCheck >= 16 else { return }
        batchesSinceCompactCheck = 0
        merger.request()
    }
}

/// Merges small packs (`Compaction.consolidateSmallPacks`, which also deflates the batches'
/// stored entries) on a thread of its own, at a lower CPU priority, so that no change waits for
/// it. Requests that come while it merges are one more merge.
final class PackMerger: @unchecked Sendable {
    private let repo: Repository
    private let maxPacks: Int
    private let condition = NSCondition()
    private var requested = false
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)
    /// Held during a merge; `holdingStill` holds it too.
    private let merging = NSLock()
    /// Requests so far, and how many of them a finished merge has answered.
    private var asked = 0
    private var answered = 0

    init(path: String, maxPacks: Int) throws {
        repo = try Repository.open(path)
        self.maxPacks = maxPacks
        let t = Thread { self.run() }
        t.name = "chatsync-packs"
        t.start()
    }

    func request() {
        condition.lock()
        requested = true
        asked += 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the merges asked for so far are done.
    func waitUntilIdle() {
        condition.lock()
        let target = asked
        while answered < target && !stopping { condition.wait() }
        condition.unlock()
    }

    /// Runs `body` with no merge under way meanwhile (compaction rewrites every pack).
    func holdingStill<T>(_ body: () throws -> T) rethrows -> T {
        merging.lock()
        defer { merging.unlock() }
        return try body()
    }

    /// Finishes the merge under way (and one asked for), then stops the thread.
    func stop() {
        condition.lock()
        let first = !stopping
        stopping = true
        condition.broadcast()
        condition.unlock()
        if first { finished.wait() }
    }

    private func run() {
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 5)  // on Linux: this thread only
        while true {
            condition.lock()
            while !requested && !stopping { condition.wait() }
            let merge = requested
            requested = false
            let answering = asked
            condition.unlock()
            if merge {
                // Until few enough remain (each round merges the smallest ones).
                merging.lock()
                while (try? Compaction.consolidateSmallPacks(repo: repo, maxPacks: maxPacks)) == true {}
                merging.unlock()
            }
            condition.lock()
            answered = answering
            condition.broadcast()
            let done = stopping && !requested
            condition.unlock()
            if done { finished.signal(); return }
        }
    }
}

/// Keeps the work tree and index equal to the branch. It brings them from the tree they last
/// showed (recorded in `.git/chatsync/worktree`) to the branch's tree, under a lock shared by
/// every process, so that syncs from several writers converge whatever their order. It runs
/// on a thread of its own and coalesces: when commits come faster than the work tree can be
/// written, one sync covers them all (the index is rewritten whole, so this keeps its cost
/// off each change).
final class WorkTreeFollower: @unchecked Sendable {
    private let lock: FileLock
    private let recordPath: String
    private let gitDir: String
    private let path: String
    private let branchRef: String
    private let staleLockSeconds: Double
    private let condition = NSCondition()
    private var requested = 0
    private var completed = 0
    private var fallbackBaseline: OID?
    private var stopping = false
    private var repo: Repository?
    /// Someone waits for the work tree (a flush, a synchronous change): sync at once.
    private var urgent = 0
    /// How long a sync waits for more commits to cover (commits in a burst share one sync).
    static let debounce: UInt32 = 20_000
    /// How long the last sync took (read and written by the follower's thread only).
    private var lastSyncMicroseconds: UInt32 = 0

    /// False when the store keeps no work tree (`WorkTreeMode.disabled`): nothing is ever written.
    private let enabled: Bool

    init(path: String, gitDir: String, options: StoreOptions) throws {
        enabled = options.workTree != .disabled
        let dir = gitDir + "chatsync"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        lock = try FileLock(path: dir + "/worktree.lock")
        recordPath = dir + "/worktree"
        self.gitDir = gitDir
        self.path = path
        branchRef = "refs/heads/" + options.branch
        staleLockSeconds = options.staleLockSeconds
        let t = Thread { self.run() }
        t.name = "chatsync-worktree"
        t.start()
    }

    /// Asks for a sync to the branch's current tip; returns a ticket for `wait(for:)`.
    func request(fallbackBaseline: OID? = nil) -> Int {
        condition.lock()
        defer { condition.unlock() }
        if !enabled { return completed }
        requested += 1
        if self.fallbackBaseline == nil { self.fallbackBaseline = fallbackBaseline }
        condition.broadcast()
        return requested
    }

    /// Waits until the sync asked for by `ticket` (or a later one) is done.
    func wait(for ticket: Int) {
        condition.lock()
        urgent += 1
        condition.broadcast()
        while completed < ticket && !stopping { condition.wait() }
        urgent -= 1
        condition.unlock()
    }

    /// Brings the work tree to the branch's tip as it is now, and waits for it.
    func flush() { wait(for: request()) }

    /// Stops, bringing the work tree to the branch first (unless `sync` is false: a repository
    /// that turned out not to be a usable store is left exactly as it was).
    func stop(sync: Bool = true) {
        condition.lock()
        let first = !stopping
        condition.unlock()
        if first && sync { flush() }
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func run() {
        // The work tree is a mirror of the branch: under load the threads that make commits
        // come first, and the mirror catches up when they pause (a waiting `flush` still gets
        // its sync).
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)  // on Linux: this thread only
        while true {
            condition.lock()
            while completed == requested && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            if urgent == 0 {
                // Let a burst of commits gather, unless someone is waiting; at least as long as
                // the last sync took, so the work tree never takes more than half a core from
                // the writers under a steady stream of commits.
                condition.unlock()
                usleep(max(Self.debounce, min(lastSyncMicroseconds, 500_000)))
                condition.lock()
            }
            let ticket = requested
            let fallback = fallbackBaseline
            fallbackBaseline = nil
            condition.unlock()
            let started = DispatchTime.now().uptimeNanoseconds
            sync(fallbackBaseline: fallback)
            lastSyncMicroseconds = UInt32(min((DispatchTime.now().uptimeNanoseconds - started) / 1000, 1_000_000))
            condition.lock()
            completed = ticket
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Runs `body` with the work tree held still (no sync from any process meanwhile) and the
    /// tree it is recorded to show.
    func whileHeld<T>(_ body: (OID?) throws -> T) rethrows -> T {
        try lock.withLock { try body(recordedTree()) }
    }

    /// The tree the work tree last showed, if recorded.
    func recordedTree() -> OID? {
        guard let d = FileManager.default.contents(atPath: recordPath) else { return nil }
        return OID(hex: String(decoding: d.prefix(40), as: UTF8.self))
    }

    /// Overwrites the record in place (no new file: creating files is the slow part of a commit).
    private func record(_ tree: OID) {
        let fd = open(recordPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((tree.hex + "\n").utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        _ = ftruncate(fd, off_t(bytes.count))
    }

    /// Brings the work tree to the branch's tree. Files edited by hand are left as they are.
    /// Failures are not the change's (the commit is made); the next sync tries again.
    private func sync(fallbackBaseline: OID?) {
        lock.withLock {
            do {
                if repo == nil { repo = try Repository.open(path) }
                guard let repo else { return }
                try? repo.letGoOfRemovedPacks()
                guard let tip = try repo.referenceTarget(branchRef) else { return }
                let target = try repo.commit(tip).tree
                // No record (a clone, or a repository made by plain git): start from what the index shows.
                let baseline = try recordedTree() ?? fallbackBaseline ?? repo.indexTree()
                if baseline == target { return }
                let paths = try repo.diff(from: baseline, to: target).map(\.path)
                var attempt = 0
                while true {
                    do {
                        try repo.checkout(from: baseline, to: target, paths: paths)
                        break
                    } catch let e as GitError where e.isLocked && attempt < 200 {
                        attempt += 1
                        LockFiles.clearIfStale(gitDir + "index.lock", olderThan: staleLockSeconds)
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

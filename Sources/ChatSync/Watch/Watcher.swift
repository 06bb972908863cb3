import Foundation
import GitKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What to watch besides the branch.
public struct WatchOptions: Sendable {
    /// Commit valid JSON files edited by hand in the work tree (and report invalid ones).
    public var workTree: Bool = true
    /// How often the branch is checked for moves by others. On a local file system a move is
    /// noticed at once (inotify on the branch's folder and the packed refs); polling covers
    /// the rest, such as a network file system.
    public var pollInterval: Double = 0.05
    /// How long a file must stay unchanged before it is read (an editor's temp-and-rename save
    /// is not read mid-write).
    public var quietPeriod: Double = 0.3
    /// Sync with this remote every `syncInterval` seconds.
    public var syncRemote: String?
    public var syncInterval: Double = 60
    public var syncOptions: SyncOptions = SyncOptions()
    public init() {}
}

extension Store {
    /// Where a watch resumes: after a commit of the branch's history (a watch event's `commit`:
    /// after all its changes), or after one change of such a commit (an event's `cursor`,
    /// `COMMIT:N`: after its N-th change), never a tree, a file or a commit the branch never had.
    public func watchCursor(_ since: String) throws -> (commit: OID, after: Int?) {
        try withRepository { repo in try watchCursor(since, repo) }
    }

    func watchCursor(_ since: String, _ repo: Repository) throws -> (commit: OID, after: Int?) {
        let rule = "must name a commit of the branch's history (a watch event's \"commit\"), or one of its changes (an event's \"cursor\", COMMIT:N), got \"\(since.prefix(80))\""
        var revision = since
        var after: Int?
        if let colon = since.lastIndex(of: ":"), let n = Int(since[since.index(after: colon)...]), n >= 1,
           String(n) == since[since.index(after: colon)...] {
            revision = String(since[..<colon])
            after = n
        }
        guard let c = try? repo.revparse(revision), (try? repo.commit(c)) != nil else { throw ChatSyncError.invalid(field: "since", rule: rule) }
        guard let tip = try wrapGit({ try repo.referenceTarget(branchRef) }), (try? repo.mergeBase(c, tip)) == c else {
            throw ChatSyncError.invalid(field: "since", rule: rule)
        }
        if let after {
            // The commit's changes, counted as its events are.
            let info = try wrapGit { try repo.commit(c) }
            let parentTree = try wrapGit { try info.parents.first.map { try repo.commit($0).tree } }
            let count = try Watcher.changeEvents(from: parentTree, to: info.tree, commit: c, origin: .external, time: .now(), repo).count
            guard after <= count else {
                throw ChatSyncError.invalid(field: "since", rule: "commit \(c.short) has \(count) change(s), so there is no change \(after) to resume after")
            }
        }
        return (c, after)
    }

    /// Every change to the store as it happens: this process's commits, the branch moved by
    /// anything else, JSON files edited by hand in the work tree, and what a sync merged in.
    /// With `since` (a commit, or an event's `cursor`), it first replays, in commit order, every
    /// change after it, then continues live: a consumer that keeps the `cursor` of the last event
    /// it handled and restarts from it sees no change twice and misses none.
    ///
    ///     for try await event in store.watch(since: lastSeen) { print(event.jsonLine) }
    public func watch(since: String? = nil, options: WatchOptions = WatchOptions()) -> AsyncThrowingStream<ChangeEvent, Error> {
        AsyncThrowingStream { continuation in
            let watcher = Watcher(store: self, since: since, options: options, continuation: continuation)
            continuation.onTermination = { _ in watcher.stop() }
            watcher.start()
        }
    }
}

/// The watch loop: one thread that polls the branch, reads inotify events from the work
/// tree, and runs the periodic sync.
final class Watcher: @unchecked Sendable {
    private let store: Store
    private let since: String?
    private let options: WatchOptions
    private let continuation: AsyncThrowingStream<ChangeEvent, Error>.Continuation
    private let stopped = Mutex(false)
    private var edits: WorkTreeEdits?

    init(store: Store, since: String?, options: WatchOptions, continuation: AsyncThrowingStream<ChangeEvent, Error>.Continuation) {
        self.store = store; self.since = since; self.options = options; self.continuation = continuation
    }

    func start() {
        let t = Thread { self.run() }
        t.name = "chatsync-watch"
        t.start()
    }

    /// Stops the loop; the bell wakes it (with every other loop of the store, which only reads
    /// the branch again), so it ends now rather than at its next poll.
    func stop() {
        stopped.withLock { $0 = true }
        store.bell.ring()
    }
    private var isStopped: Bool { stopped.withLock { $0 } }

    private func run() {
        do {
            let repo = try wrapGit { try Repository.open(store.path) }
            var cursor: OID?
            if let since {
                let resume = try store.watchCursor(since, repo)
                cursor = resume.commit
                // Resuming inside a commit: the rest of its changes first.
                if let after = resume.after {
                    for event in try events(of: resume.commit, repo).dropFirst(after) { continuation.yield(event) }
                }
            } else {
                cursor = try wrapGit { try repo.referenceTarget(store.branchRef) }
            }
            if options.workTree, !repo.isBare { edits = try WorkTreeEdits(store: store) }
            let bell = store.bell.add()
            defer { if let bell { store.bell.remove(bell) } }
            // At least a second between syncs (a NaN or a tiny interval would sync in a loop).
            let syncInterval = options.syncInterval.isFinite ? max(1, options.syncInterval) : 60
            var nextSync = Date().addingTimeInterval(syncInterval)
            while !isStopped {
                // Packs merged away are let go of (the loop reads for as long as it runs).
                try? repo.letGoOfRemovedPacks()
                // 1 and 2: the branch, moved by this process or anything else.
                if let tip = try wrapGit({ try repo.referenceTarget(store.branchRef) }), tip != cursor {
                    try emitCommits(repo, from: cursor, to: tip)
                    cursor = tip
                }
                // 3: files edited by hand, once they have been quiet for a while.
                if let edits {
                    for event in edits.process(quietPeriod: options.quietPeriod) { continuation.yield(event) }
                }
                // 4: the periodic sync; what it merges in comes out of step 1 as `remote` events.
                if let remote = options.syncRemote, Date() >= nextSync {
                    do {
                        _ = try store.sync(remote, options: options.syncOptions)
                    } catch {
                        continuation.yield(ChangeEvent(commit: nil, kind: .error, type: nil, id: nil, origin: .remote,
                                                       time: .now(), error: "\(error)", remote: remote))
                    }
                    nextSync = Date().addingTimeInterval(syncInterval)
                    continue
                }
                // Sleep until the bell (a commit of this process, or a change in the branch's
                // folder), a work tree event, or the next poll of the branch.
                var fds = [pollfd(fd: bell?.read ?? -1, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: edits?.descriptor ?? -1, events: Int16(POLLIN), revents: 0)]
                _ = poll(&fds, 2, Int32(options.pollInterval * 1000))
                if let bell, fds[0].revents != 0 {
                    var sink = [UInt8](repeating: 0, count: 256)
                    while read(bell.read, &sink, 256) > 0 {}
                }
            }
            continuation.finish()
        } catch {
            continuation.finish(throwing: error)
        }
    }

    /// The changes of every commit on the branch's first-parent chain after `from`, oldest first.
    private func emitCommits(_ repo: Repository, from: OID?, to tip: OID) throws {
        // The branch moved to a commit that does not hold the last one seen (a plain `git reset`,
        // a forced push), or whose first-parent chain does not pass through it (a fast-forward to
        // another replica's merge of this one's changes: that chain's commits would bring this
        // side's changes again): what differs between the two, as changes of the new tip, in one step.
        let commits = try wrapGit { try repo.walk(from: tip, hiding: from.map { [$0] } ?? [], reverse: true, firstParent: true) }
        let joinedAt = try commits.first.flatMap { first in try wrapGit { try repo.commit(first).parents.first } }
        if let from, joinedAt != from {
            let before = try wrapGit { try repo.commit(from).tree }
            let info = try wrapGit { try repo.commit(tip) }
            // Moved back: by something else than chatsync; moved on: as the tip's commit says.
            let origin = commits.isEmpty ? .external : store.origins.origin(of: tip) ?? Self.origin(fromMessage: info.message)
            let time = Timestamp(milliseconds: info.committer.time * 1000)
            for event in try Self.changeEvents(from: before, to: info.tree, commit: tip, origin: origin, time: time, repo) {
                continuation.yield(event)
            }
            return
        }
        for c in commits {
            if isStopped { return }
            for event in try events(of: c, repo) { continuation.yield(event) }
        }
    }

    func events(of commit: OID, _ repo: Repository) throws -> [ChangeEvent] {
        let info = try wrapGit { try repo.commit(commit) }
        let parentTree = try wrapGit { try info.parents.first.map { try repo.commit($0).tree } }
        let origin = store.origins.origin(of: commit) ?? Self.origin(fromMessage: info.message)
        let time = Timestamp(milliseconds: info.committer.time * 1000)
        // Each change's place in its commit (the diff's order, the same on every read), to resume after it.
        return try Self.changeEvents(from: parentTree, to: info.tree, commit: commit, origin: origin, time: time, repo)
            .enumerated().map { i, e in
                var e = e
                e.cursor = "\(commit.hex):\(i + 1)"
                return e
            }
    }

    /// The documents that differ between two trees, as events of `commit` (without cursors).
    static func changeEvents(from old: OID?, to new: OID, commit: OID, origin: ChangeOrigin, time: Timestamp,
                             _ repo: Repository) throws -> [ChangeEvent] {
        try wrapGit { try repo.diff(from: old, to: new) }.compactMap { change in
            guard let loc = Layout.locate(change.path), let type = loc.kind else { return nil }
            let kind: ChangeKind = change.status == .added ? .created : (change.status == .deleted ? .deleted : .updated)
            var chatID: String?
            if case .message(let c, _) = loc { chatID = c }
            return ChangeEvent(commit: commit.hex, kind: kind, type: type, id: loc.id, chatID: chatID, origin: origin,
                               time: time, path: change.path)
        }
    }

    /// Commits not made by this process: merges and hand edits say so in a trailer.
    static func origin(fromMessage message: String) -> ChangeOrigin {
        if message.contains("\nChatsync-Origin: remote") { return .remote }
        if message.contains("\nChatsync-Origin: workdir") { return .workdir }
        return .external
    }
}

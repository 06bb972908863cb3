import Foundation
import GitKit
import Synchronization

/// Who the store's commits are by.
public struct Identity: Sendable, Equatable {
    public var name: String
    public var email: String
    public init(name: String, email: String) { self.name = name; self.email = email }
    public static let `default` = Identity(name: "chatsync", email: "chatsync@localhost")
}

/// How a store is opened.
public struct StoreOptions: Sendable {
    /// The branch the store's history lives on.
    public var branch: String = "main"
    /// Fsync objects and refs before a change is acknowledged. On by default.
    /// (libgit2's fsync switch is process-wide: the last store opened sets it.)
    public var durable: Bool = true
    /// The author of commits. Left at `Identity.default`, the store's own git config
    /// (`.git/config` `user.name` and `user.email`) is used when it sets both.
    public var identity: Identity = .default
    public var limits: DocumentLimits = .default
    /// A git lock file older than this many seconds was left by a crashed process and is removed.
    public var staleLockSeconds: Double = 2
    /// Small packs are merged when there are more than this many.
    public var maxPacks: Int = 24
    /// How the work tree follows the branch.
    public var workTree: WorkTreeMode = .background
    public init() {}
}

/// How the store's work tree (the JSON files and git's index) follows its branch.
public enum WorkTreeMode: Sendable, Equatable {
    /// A change is acknowledged once its commit is durable; the work tree follows within
    /// milliseconds on a thread of its own, one sync for many commits under load.
    /// `Store.syncWorkTree()` and `Store.close()` wait for it.
    case background
    /// A change is acknowledged only once the work tree and index show it too.
    case synchronous
    /// The work tree is not kept (for servers and benchmarks that never look at the files:
    /// `git status` then shows them as missing). History and everything else are unchanged.
    case disabled
}

/// A chatsync store: JSON documents in a git repository, one commit per change.
///
///     let store = try Store.open(at: "/tmp/chats", create: true)
///     let chat = try store.createChat(userID: "u1", title: "Hello")
///     let msg = try store.appendMessage(chatID: chat.id, role: .user, content: "Hi!")
public final class Store: @unchecked Sendable {
    /// The store's folder (the git work tree).
    public let path: String
    public let options: StoreOptions
    let gitDir: String
    let branchRef: String
    let summaries = SummaryCache()
    /// The sessions of the branch, by the tree they were read from (see `SessionIndex`).
    let sessionIndex: SessionIndex
    /// Where the commits this process put on the branch came from (for the watch stream).
    let origins = OriginLog()
    let bell: CommitBell
    private let writer: Writer
    let follower: WorkTreeFollower
    private let handles = Mutex<[Repository]>([])

    private init(path: String, options: StoreOptions, gitDir: String) throws {
        self.path = path
        self.options = options
        self.gitDir = gitDir
        branchRef = "refs/heads/" + options.branch
        bell = CommitBell(gitDir: gitDir, branchFolder: ((gitDir + branchRef) as NSString).deletingLastPathComponent)
        sessionIndex = SessionIndex(file: gitDir + "chatsync/sessions-index")
        follower = try WorkTreeFollower(path: path, gitDir: gitDir, options: options)
        let origins = self.origins, bell = self.bell
        writer = try Writer(path: path, options: options, summaries: summaries, follower: follower,
                            tagOrigins: { origins.record($0) }, moved: { bell.ring() })
    }

    deinit { close() }

    /// Opens the store at `path`. With `create`, makes the folder, the repository and the first
    /// commit (the format marker) when they do not exist yet.
    public static func open(at path: String, options: StoreOptions = StoreOptions(), create: Bool = false) throws -> Store {
        GitRuntime.initialize()
        GitRuntime.setFsync(options.durable)
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        let gitExists = fm.fileExists(atPath: absolute + "/.git", isDirectory: &isDir)
        var made: [String] = []
        if fm.fileExists(atPath: absolute, isDirectory: &isDir), !isDir.boolValue {
            throw ChatSyncError.badStore("\(absolute) is a file, not a store's folder")
        }
        if !gitExists {
            guard create else {
                throw ChatSyncError.badStore("\(absolute) is not a chatsync store (no .git); create it with `chatsync init`")
            }
            if fm.fileExists(atPath: absolute), let items = try? fm.contentsOfDirectory(atPath: absolute), !items.isEmpty {
                throw ChatSyncError.badStore("\(absolute) exists, is not empty and is not a git repository: refusing to make a store there")
            }
            made = Repository.missingFolders(absolute)
            _ = try wrapGit { try Repository.create(at: absolute, bare: false, initialBranch: options.branch) }
        }
        var opts = options
        let repo = try wrapGit { try Repository.open(absolute) }
        if !gitExists { try configureNew(repo, made: made, durable: options.durable) }
        if opts.identity == .default,
           let name = try? repo.configString("user.name", localOnly: true),
           let email = try? repo.configString("user.email", localOnly: true) {
            opts.identity = Identity(name: name, email: email)
        }
        // What is not a store this chatsync can use is refused before anything is made in it
        // (the writer's and the work tree's files).
        let branchRef = "refs/heads/" + options.branch
        let head = try wrapGit { try repo.referenceTarget(branchRef) }
        if let head {
            try checkFormat(repo, head: head, path: absolute, branch: options.branch)
        } else {
            // A repository without commits becomes a store; one with history elsewhere is not one.
            let branches = try wrapGit { try repo.referenceNames(glob: "refs/heads/*") }
            guard branches.isEmpty else {
                let names = branches.map { $0.dropFirst("refs/heads/".count) }.sorted().joined(separator: ", ")
                throw ChatSyncError.badStore("\(absolute) is a git repository without a branch \(options.branch) (it has \(names)): not a chatsync store")
            }
            // Only `init` (or the default store's first use) makes an empty repository a store.
            guard create else {
                throw ChatSyncError.badStore("\(absolute) is a git repository without commits, not a chatsync store yet; create it with `chatsync init`")
            }
            // HEAD names the store's branch (plain `git init` may have named another), and no
            // reflogs, as for a repository chatsync makes.
            try wrapGit { try repo.setHead(branchRef) }
            try wrapGit { try repo.setConfigString("core.logAllRefUpdates", "false") }
        }
        let store = try Store(path: absolute, options: opts, gitDir: repo.gitDir)
        store.clearStaleLocks()
        if head == nil {
            do {
                try store.writeMarker()
            } catch {
                store.writer.stop()
                store.follower.stop(sync: false)
                throw error
            }
        }
        return store
    }

    /// Settings of a repository chatsync makes (`init`, `clone`). No reflogs: the branch is the
    /// history, every change a commit on it, and reflogs (HEAD's and the branch's) would cost
    /// two more files to append to and fsync per commit. git's own `init` turns them on.
    /// When `durable`, also fsyncs what creating the repository made (`made`: the folders that
    /// did not exist before), so that a crash after the first commit cannot take the store away.
    static func configureNew(_ repo: Repository, made: [String], durable: Bool) throws {
        try wrapGit { try repo.setConfigString("core.logAllRefUpdates", "false") }
        if durable { try wrapGit { try repo.syncCreated(made: made) } }
    }

    /// Closes the writer (changes already queued are still committed) and waits until the
    /// work tree shows the branch.
    public func close() {
        writer.stop()
        follower.stop()
        sessionIndex.flush()
    }

    /// Waits until the work tree and index show the branch's tip as it is now (they follow it
    /// in the background; see `WorkTreeMode`), and until no pack merge of this process is
    /// under way (merges remove packs: a `git fsck` started meanwhile may miss one). Also
    /// brings in a tip moved by another process.
    public func syncWorkTree() {
        follower.flush()
        writer.waitForMerges()
    }

    /// Runs `body` with this process's pack merging held still.
    func withoutMerges<T>(_ body: () throws -> T) rethrows -> T { try writer.withoutMerges(body) }

    private func clearStaleLocks() {
        LockFiles.clearIfStale(gitDir + branchRef + ".lock", olderThan: options.staleLockSeconds)
        LockFiles.clearIfStale(gitDir + "index.lock", olderThan: options.staleLockSeconds)
        LockFiles.clearIfStale(gitDir + "HEAD.lock", olderThan: options.staleLockSeconds)
        ReferenceUpdate.removeSpares(in: bell.branchFolder, olderThan: options.staleLockSeconds)
    }

    private func writeMarker() throws {
        try perform { tx in
            if try tx.data(at: Layout.marker) != nil { return }
            tx.putRaw(try DocumentCoding.encode(FormatMarker()), at: Layout.marker)
            // A unique trailer: two stores initialised separately never share a root commit.
            tx.message = "init chatsync store (format \(Layout.formatVersion))\n\nChatsync-Store-Id: \(newID())"
        }
    }

    /// Refuses a branch whose tip has no format marker, or a marker of a newer version.
    private static func checkFormat(_ repo: Repository, head: OID, path: String, branch: String) throws {
        let tree = try wrapGit { try repo.commit(head).tree }
        guard let entry = try wrapGit({ try repo.entry(in: tree, path: Layout.marker) }), entry.kind == .blob else {
            throw ChatSyncError.badStore("\(path) is a git repository but not a chatsync store (no \(Layout.marker) on \(branch))")
        }
        let data = try wrapGit { try repo.withBlob(entry.oid) { Data($0) } }
        guard let marker = try? DocumentCoding.makeDecoder().decode(FormatMarker.self, from: data), marker.format == Layout.formatName else {
            throw ChatSyncError.badStore("\(Layout.marker) is not a chatsync format marker")
        }
        guard marker.version <= Layout.formatVersion else {
            throw ChatSyncError.badStore("format version \(marker.version) is newer than this chatsync understands (\(Layout.formatVersion)); upgrade chatsync")
        }
    }

    // MARK: reading

    private func borrowHandle() throws -> Repository {
        if let r = handles.withLock({ $0.popLast() }) {
            try? r.letGoOfRemovedPacks()  // packs merged away since it was last used
            return r
        }
        return try wrapGit { try Repository.open(path) }
    }

    private func returnHandle(_ r: Repository) {
        handles.withLock { if $0.count < 8 { $0.append(r) } }
    }

    /// Runs `body` with a libgit2 handle of this store's (one per thread at a time).
    public func withRepository<T>(_ body: (Repository) throws -> T) throws -> T {
        let repo = try borrowHandle()
        defer { returnHandle(repo) }
        return try body(repo)
    }

    /// Reads the store as it is now (the branch's tip), or at a revision (`HEAD~2`, a commit id…).
    public func read<T>(at revision: String? = nil, _ body: (Snapshot) throws -> T) throws -> T {
        try withRepository { repo in
            let commit: OID?
            if let revision {
                commit = try wrapGit { try repo.revparse(revision) }
            } else {
                commit = try wrapGit { try repo.referenceTarget(branchRef) }
            }
            let tree = try wrapGit { try commit.map { try repo.commit($0).tree } ?? repo.emptyTree() }
            let snap = Snapshot(repo: repo, commit: commit, tree: tree)
            do {
                return try body(snap)
            } catch let e as GitError {
                throw ChatSyncError.storage(e.description)
            }
        }
    }

    /// The branch's tip.
    public func head() throws -> OID? {
        try withRepository { repo in try wrapGit { try repo.referenceTarget(branchRef) } }
    }

    /// The number of commits on the branch.
    public func commitCount() throws -> Int {
        try withRepository { repo in
            guard let tip = try wrapGit({ try repo.referenceTarget(branchRef) }) else { return 0 }
            return try wrapGit { try repo.walk(from: tip).count }
        }
    }

    // MARK: writing

    /// Makes one change: `body` reads and stages documents in a transaction; the writer turns
    /// it into one commit. If `body` throws, nothing is written. Returns what `body` returns.
    @discardableResult
    public func perform<T>(_ body: @escaping (Transaction) throws -> T) throws -> T {
        try performWithCommit(body).value
    }

    /// Like `perform`, and also gives the commit made (nil when the change wrote nothing).
    public func performWithCommit<T>(_ body: @escaping (Transaction) throws -> T) throws -> (value: T, commit: OID?) {
        let outcome = try writer.submit { tx in try body(tx) }
        return (outcome.value as! T, outcome.commit)
    }

    // MARK: summaries

    /// The count and last message of a chat, from the cache when the chat's messages are known.
    func chatSummary(_ chatID: String, in snap: Snapshot) throws -> ChatSummary {
        guard let tree = try snap.oid(at: Layout.messagesDir(chatID)) else { return .empty }
        if let s = summaries.get(tree) { return s }
        var s = ChatSummary.empty
        for m in try messages(inTree: tree, snapshot: snap) {
            s.count += 1
            if s.lastCreatedAt == nil || (m.createdAt, m.id) > (s.lastCreatedAt!, s.lastID!) {
                s.lastCreatedAt = m.createdAt
                s.lastID = m.id
            }
        }
        summaries.put(tree, s)
        return s
    }

    /// Every message below a chat's `messages` tree, unsorted.
    func messages(inTree tree: OID, snapshot snap: Snapshot) throws -> [ChatMessage] {
        // Long chats are walked and read on two threads (inflating and decoding is most of the time).
        try snap.repo.mapBlobs(under: tree, suffix: ".json", threads: 2) { buf -> ChatMessage in
            if let fast = ChatMessage.fastDecode(buf) { return fast }
            do {
                return try DocumentCoding.makeDecoder().decode(ChatMessage.self, from: Data(buf))
            } catch {
                throw ChatSyncError.badStore("a message of chat tree \(tree.short) is not valid: \(describeDecodingError(error))")
            }
        }
    }

    /// Messages in chat order (created_at, then id). Stored messages are numbered 1…N in that
    /// order, so they are placed by number in one pass and the order checked in another; when
    /// the numbers are not exactly 1…N in chat order (a store edited by hand), they are sorted,
    /// by keys rather than whole messages.
    /// The messages are moved into place (swapped, not copied).
    static func sortedInChatOrder(_ messages: consuming [ChatMessage]) -> [ChatMessage] {
        let n = messages.count
        var placed = [Int](repeating: -1, count: n)
        var numbered = true
        for (i, m) in messages.enumerated() {
            let k = m.sequenceOrder - 1
            guard k >= 0, k < n, placed[k] == -1 else { numbered = false; break }
            placed[k] = i
        }
        if numbered && (n < 2 || (1..<n).allSatisfy({ ChatMessage.inChatOrder(messages[placed[$0 - 1]], messages[placed[$0]]) })) {
            permute(&messages, taking: placed)
            return messages
        }
        let times = messages.map(\.createdAt.milliseconds)
        let order = messages.indices.sorted {
            times[$0] != times[$1] ? times[$0] < times[$1] : messages[$0].id < messages[$1].id
        }
        permute(&messages, taking: order)
        return messages
    }

    /// Reorders `items` so that position k holds what was at `from[k]` (`from` is a permutation
    /// of the indices), following each cycle with swaps.
    static func permute<T>(_ items: inout [T], taking from: [Int]) {
        var done = [Bool](repeating: false, count: items.count)
        items.withUnsafeMutableBufferPointer { buf in
            for start in buf.indices where !done[start] {
                // Walk the cycle: position k takes from[k]'s item, which has not moved yet.
                var k = start
                while from[k] != start {
                    buf.swapAt(k, from[k])
                    done[k] = true
                    k = from[k]
                }
                done[k] = true
            }
        }
    }
}

/// Runs a libgit2 call, turning its error into `ChatSyncError.storage`.
func wrapGit<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as GitError { throw ChatSyncError.storage(e.description) }
}

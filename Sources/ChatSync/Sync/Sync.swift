import Foundation
import GitKit

/// Retry with exponential backoff for errors worth retrying (a network that is down), never
/// for authentication, a missing repository or a rejected push.
public struct RetryPolicy: Sendable {
    public var attempts: Int
    public var initialDelay: Double
    public var maxDelay: Double
    public init(attempts: Int = 3, initialDelay: Double = 1, maxDelay: Double = 10) {
        self.attempts = attempts; self.initialDelay = initialDelay; self.maxDelay = maxDelay
    }
    public static let `default` = RetryPolicy()

    /// Sleeps between attempts (at most an hour, whatever the policy says).
    static func pause(_ seconds: Double) {
        guard seconds > 0 else { return }
        Thread.sleep(forTimeInterval: min(seconds, 3600))
    }
}

/// How to talk to remotes.
public struct SyncOptions: Sendable {
    public var credentials: GitCredentials
    public var retry: RetryPolicy
    /// Called with transfer progress (objects and bytes) during fetch and push.
    public var progress: (@Sendable (TransferProgress) -> Void)?
    /// Merge histories with no common commit (two stores initialised separately). Off: a clear error.
    public var allowUnrelatedHistories: Bool
    /// How many times `sync` fetches, merges and pushes again when the remote moved meanwhile.
    public var pushAttempts: Int
    /// A PEM file of the certificate authorities an https remote's certificate must be signed by,
    /// in place of the system's (a Gitea with its own authority). Process-wide once used (see
    /// `GitRuntime.trustCertificateAuthorities`). Default: `CHATSYNC_SSL_CA_FILE`, else git's
    /// `GIT_SSL_CAINFO`.
    public var certificateAuthorities: String? {
        didSet { certificateAuthoritiesField = "certificate_authorities" }
    }
    /// Where `certificateAuthorities` came from, for errors.
    var certificateAuthoritiesField = "certificate_authorities"

    public init(credentials: GitCredentials = .fromEnvironment(), retry: RetryPolicy = .default,
                progress: (@Sendable (TransferProgress) -> Void)? = nil, allowUnrelatedHistories: Bool = false, pushAttempts: Int = 5) {
        self.credentials = credentials; self.retry = retry; self.progress = progress
        self.allowUnrelatedHistories = allowUnrelatedHistories; self.pushAttempts = pushAttempts
        let env = ProcessInfo.processInfo.environment
        for name in ["CHATSYNC_SSL_CA_FILE", "GIT_SSL_CAINFO"] {
            if let file = env[name], !file.isEmpty { certificateAuthorities = file; certificateAuthoritiesField = name; break }
        }
    }

    /// Makes libgit2 trust `certificateAuthorities`, if set, for an https remote (`url`; other
    /// remotes do not use it): an unreadable file or one without a certificate is refused naming
    /// where it was given.
    func applyCertificateAuthorities(for url: String?) throws {
        guard let url, url.lowercased().hasPrefix("https://"), let file = certificateAuthorities else { return }
        let field = certificateAuthoritiesField
        guard !file.isEmpty else { throw ChatSyncError.invalid(field: field, rule: "must name a PEM file of certificate authorities") }
        guard FileManager.default.isReadableFile(atPath: file) else {
            throw ChatSyncError.invalid(field: field, rule: "\(file) cannot be read (a PEM file of certificate authorities)")
        }
        do {
            try GitRuntime.trustCertificateAuthorities(file: file)
        } catch let e as GitError {
            throw ChatSyncError.invalid(field: field, rule: "\(file) holds no certificate authority libgit2 can load (\(e.message))")
        }
    }
}

extension GitCredentials {
    /// `CHATSYNC_GIT_USERNAME`/`CHATSYNC_GIT_PASSWORD` (https; else git's credential helper,
    /// asked once without prompting), `CHATSYNC_SSH_KEY` and `CHATSYNC_SSH_PASSPHRASE` (ssh;
    /// ssh-agent is asked first).
    public static func fromEnvironment() -> GitCredentials {
        let env = ProcessInfo.processInfo.environment
        return GitCredentials(username: env["CHATSYNC_GIT_USERNAME"], password: env["CHATSYNC_GIT_PASSWORD"],
                              sshKeyPath: env["CHATSYNC_SSH_KEY"], sshPassphrase: env["CHATSYNC_SSH_PASSPHRASE"],
                              useSSHAgent: env["SSH_AUTH_SOCK"] != nil, helper: gitCredentialHelper)
    }

    /// Asks git's configured credential helper (`git credential fill`, never prompting).
    @Sendable static func gitCredentialHelper(_ url: String) -> (username: String, password: String)? {
        guard let u = URL(string: url), let scheme = u.scheme, let host = u.host else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "credential", "fill"]
        var env = ProcessInfo.processInfo.environment
        env["GIT_TERMINAL_PROMPT"] = "0"
        env["GIT_ASKPASS"] = "/bin/false"
        p.environment = env
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        var request = "protocol=\(scheme)\nhost=\(host)\(u.port.map { ":\($0)" } ?? "")\n"
        if !u.path.isEmpty { request += "path=\(u.path.dropFirst())\n" }
        input.fileHandleForWriting.write(Data((request + "\n").utf8))
        try? input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        var fields: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        guard let user = fields["username"], let password = fields["password"] else { return nil }
        return (user, password)
    }
}

/// What a pull, push or sync did.
public struct SyncReport: Codable, Sendable, Equatable {
    public var remote: String
    /// Commits fetched that the local branch did not have.
    public var fetchedCommits = 0
    /// Commits brought into the local branch (by a fast-forward or a merge).
    public var mergedCommits = 0
    public var fastForward = false
    /// The merge commit made, if any.
    public var mergeCommit: String?
    /// Commits the remote did not have, pushed.
    public var pushedCommits = 0
    /// Conflicts recorded by the merge.
    public var conflicts = 0
    public var head: String?

    enum CodingKeys: String, CodingKey {
        case remote, fetchedCommits = "fetched_commits", mergedCommits = "merged_commits", fastForward = "fast_forward"
        case mergeCommit = "merge_commit", pushedCommits = "pushed_commits", conflicts, head
    }
}

extension Store {
    // MARK: remotes

    public func addRemote(_ name: String, url: String) throws {
        try Rules.id(name, "name")
        guard !url.isEmpty else { throw ChatSyncError.invalid(field: "url", rule: "must not be empty") }
        try withRepository { repo in
            if try wrapGit({ try repo.remoteURL(name) }) != nil { throw ChatSyncError.conflict("remote \(name) already exists") }
            try wrapGit { try repo.addRemote(name, url: url) }
        }
    }

    public func removeRemote(_ name: String) throws {
        try withRepository { repo in
            guard try wrapGit({ try repo.remoteURL(name) }) != nil else { throw ChatSyncError.notFound(kind: "remote", id: name) }
            try wrapGit { try repo.removeRemote(name) }
        }
    }

    /// The remotes, name → URL.
    public func remotes() throws -> [(name: String, url: String)] {
        try withRepository { repo in
            try wrapGit { try repo.remoteNames().map { ($0, try repo.remoteURL($0) ?? "") } }
        }
    }

    // MARK: fetch, merge, push

    private func remoteRef(_ remote: String) -> String { "refs/remotes/\(remote)/\(options.branch)" }

    /// Runs a network operation with the retry policy. Errors become `ChatSyncError.remote`.
    private func withRetry<T>(_ what: String, _ policy: RetryPolicy, _ body: () throws -> T) throws -> T {
        var delay = policy.initialDelay
        var attempt = 1
        while true {
            do {
                return try body()
            } catch let e as GitError {
                if e.isTransient && attempt < policy.attempts {
                    RetryPolicy.pause(min(delay, policy.maxDelay))
                    delay = min(delay * 2, policy.maxDelay)
                    attempt += 1
                    continue
                }
                let why = e.isAuth ? "authentication failed" : (e.isTransient ? "gave up after \(attempt) attempt(s)" : "not retried")
                throw ChatSyncError.remote("\(what): \(e.message) (\(why))")
            }
        }
    }

    /// The remote's URL; a remote the store does not have is not found.
    @discardableResult
    private func requireRemote(_ remote: String, _ repo: Repository) throws -> String {
        guard let url = try wrapGit({ try repo.remoteURL(remote) }) else { throw ChatSyncError.notFound(kind: "remote", id: remote) }
        try Self.requireLocalRepository(url, what: "remote \(remote)")
        return url
    }

    /// A remote that is a path (or a file:// URL) must be there: libgit2 calls a missing one an
    /// "unsupported URL protocol".
    static func requireLocalRepository(_ url: String, what: String) throws {
        var path: String
        if url.hasPrefix("file://") {
            guard let u = URL(string: url), u.host == nil || u.host == "" || u.host == "localhost" else { return }
            path = u.path
        }
        else if url.contains("://") { return }
        else if let colon = url.firstIndex(of: ":"), !url[..<colon].contains("/") { return }  // host:path (ssh)
        else { path = url }
        if path.isEmpty { path = "." }
        guard FileManager.default.fileExists(atPath: path) else {
            throw ChatSyncError.remote("\(what): no repository at \(path) (the folder does not exist)")
        }
    }

    /// Fetches the remote's branch. Returns its tip (nil when the remote has no such branch yet).
    @discardableResult
    public func fetch(_ remote: String = "origin", options sync: SyncOptions = SyncOptions()) throws -> (tip: OID?, newCommits: Int) {
        try withRepository { repo in
            try sync.applyCertificateAuthorities(for: try requireRemote(remote, repo))
            let before = try wrapGit { try repo.referenceTarget(remoteRef(remote)) }
            try withRetry("fetch from \(remote)", sync.retry) {
                _ = try repo.fetch(remote: remote, credentials: sync.credentials, progress: sync.progress)
            }
            let tip = try wrapGit { try repo.referenceTarget(remoteRef(remote)) }
            if tip == nil {
                // An empty remote is one to push to; one with other branches is not a store.
                let prefix = "refs/remotes/\(remote)/"
                let others = try wrapGit { try repo.referenceNames(glob: prefix + "*") }.map { $0.dropFirst(prefix.count) }.filter { $0 != "HEAD" }
                if !others.isEmpty {
                    throw ChatSyncError.remote("\(remote) has no branch \(options.branch) (it has \(others.sorted().joined(separator: ", "))): it is not a chatsync store")
                }
            }
            guard let tip, tip != before else { return (tip, 0) }
            let local = try wrapGit { try repo.referenceTarget(branchRef) }
            let hidden = [before, local].compactMap { $0 }
            return (tip, try wrapGit { try repo.walk(from: tip, hiding: hidden).count })
        }
    }

    /// Brings a commit (a remote's tip) into the branch: nothing when the branch has it already,
    /// a fast-forward when the branch is behind, else a merge commit (see `TreeMerge`).
    public func merge(_ theirs: OID, from remote: String = "origin", allowUnrelatedHistories: Bool = false) throws -> SyncReport {
        var report = SyncReport(remote: remote)
        let outcome = try performWithCommit { tx -> SyncReport in
            var r = SyncReport(remote: remote)
            let repo = tx.base.repo
            tx.origin = .remote
            // What comes in is checked like any write, before anything is merged.
            let common = try tx.base.commit.flatMap { try repo.mergeBase($0, theirs) }
            if common != theirs {
                let problems = try self.incomingProblems(repo, theirs: theirs, base: common)
                if !problems.isEmpty {
                    let shown = problems.prefix(5).map(\.description).joined(separator: "; ")
                    throw ChatSyncError.remote("\(remote) (\(theirs.short)) brings what a chatsync store may not hold, so nothing was merged: \(shown)"
                                               + (problems.count > 5 ? "; and \(problems.count - 5) more" : ""))
                }
            }
            guard let ours = tx.base.commit else {
                tx.fastForward = theirs
                r.fastForward = true
                r.mergedCommits = try repo.walk(from: theirs).count
                return r
            }
            let base = common
            if base == theirs { return r }  // already have it
            if base == nil && !allowUnrelatedHistories {
                throw ChatSyncError.conflict("the store and \(remote) have unrelated histories (no common commit): they were initialised separately; clone one from the other, or merge them on purpose with --allow-unrelated-histories")
            }
            r.mergedCommits = try repo.walk(from: theirs, hiding: [ours]).count
            if base == ours {
                tx.fastForward = theirs
                r.fastForward = true
                return r
            }
            let summary = try TreeMerge.merge(into: tx, ours: ours, theirs: theirs, base: base)
            let superseded = try self.completeSupersededSessions(changed: summary.sessionPaths, tx)
            tx.mergeParent = theirs
            r.conflicts = summary.conflicts.count
            tx.message = "merge \(remote) (\(theirs.short)): \(r.mergedCommits) commit(s), \(summary.changedPaths) document(s) changed"
                + (summary.conflicts.isEmpty ? "" : ", \(summary.conflicts.count) conflict(s) recorded")
                + (superseded.isEmpty ? "" : ", \(superseded.count) session(s) completed (each side made another one active)")
                + "\n\nChatsync-Origin: remote \(remote)"
            return r
        }
        report = outcome.value
        if !report.fastForward, report.mergedCommits > 0 { report.mergeCommit = outcome.commit?.hex }
        report.head = try head()?.hex
        return report
    }

    /// Fetches and merges the remote's branch.
    public func pull(_ remote: String = "origin", options sync: SyncOptions = SyncOptions()) throws -> SyncReport {
        let (tip, fetched) = try fetch(remote, options: sync)
        guard let tip else {
            var r = SyncReport(remote: remote)
            r.head = try head()?.hex
            return r
        }
        var r = try merge(tip, from: remote, allowUnrelatedHistories: sync.allowUnrelatedHistories)
        r.fetchedCommits = fetched
        return r
    }

    /// Pushes the branch. A remote that moved meanwhile is a non-fast-forward error here;
    /// `sync` handles it by pulling again.
    public func push(_ remote: String = "origin", options sync: SyncOptions = SyncOptions()) throws -> SyncReport {
        var r = SyncReport(remote: remote)
        try withRepository { repo in
            let url = try requireRemote(remote, repo)
            guard let local = try wrapGit({ try repo.referenceTarget(branchRef) }) else { return }
            let known = try wrapGit { try repo.referenceTarget(remoteRef(remote)) }
            if known == local { r.head = local.hex; return }
            try sync.applyCertificateAuthorities(for: url)
            r.pushedCommits = try wrapGit { try repo.walk(from: local, hiding: known.map { [$0] } ?? []).count }
            try withRetry("push to \(remote)", sync.retry) {
                try repo.push(remote: remote, refspecs: ["\(branchRef):\(branchRef)"], credentials: sync.credentials, progress: sync.progress)
            }
            // The remote has our tip now: remember it as the remote's branch, as git does.
            try? repo.compareAndSwapReference(remoteRef(remote), to: local, expected: known, message: "chatsync: push \(remote)")
            r.head = local.hex
        }
        return r
    }

    /// Pull, then push; if the remote moved in between, pull and push again (bounded).
    public func sync(_ remote: String = "origin", options sync: SyncOptions = SyncOptions()) throws -> SyncReport {
        var total = SyncReport(remote: remote)
        for attempt in 1...max(1, sync.pushAttempts) {
            let pulled = try pull(remote, options: sync)
            total.fetchedCommits += pulled.fetchedCommits
            total.mergedCommits += pulled.mergedCommits
            total.conflicts += pulled.conflicts
            total.fastForward = total.fastForward || pulled.fastForward
            total.mergeCommit = pulled.mergeCommit ?? total.mergeCommit
            do {
                let pushed = try push(remote, options: sync)
                total.pushedCommits = pushed.pushedCommits
                total.head = try head()?.hex
                return total
            } catch let e as ChatSyncError where attempt < sync.pushAttempts && Self.isRaceLost(e) {
                continue
            }
        }
        throw ChatSyncError.remote("push to \(remote): the remote kept moving; gave up after \(sync.pushAttempts) attempts")
    }

    static func isRaceLost(_ e: ChatSyncError) -> Bool {
        guard case .remote(let m) = e else { return false }
        let lower = m.lowercased()
        return lower.contains("non-fast-forward") || lower.contains("fetch first") || lower.contains("not present locally")
            || lower.contains("cannot push because a reference that you are trying to update on the remote contains commits")
    }

    // MARK: clone

    /// Clones a store from a remote (named `origin`) into `path`, which must not exist or be empty.
    public static func clone(from url: String, to path: String, options: StoreOptions = StoreOptions(),
                             sync: SyncOptions = SyncOptions()) throws -> Store {
        GitRuntime.initialize()
        GitRuntime.setFsync(options.durable)
        guard !url.trimmingCharacters(in: .whitespaces).isEmpty else { throw ChatSyncError.invalid(field: "url", rule: "must not be empty") }
        try requireLocalRepository(url, what: "clone \(url)")
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: absolute, isDirectory: &isDir), !isDir.boolValue {
            throw ChatSyncError.invalid(field: "store", rule: "\(absolute) is a file, not a folder")
        }
        if fm.fileExists(atPath: absolute), let items = try? fm.contentsOfDirectory(atPath: absolute), !items.isEmpty {
            throw ChatSyncError.invalid(field: "store", rule: "\(absolute) exists and is not empty")
        }
        try sync.applyCertificateAuthorities(for: url)
        let made = Repository.missingFolders(absolute)
        do {
            let repo = try wrapGit { try Repository.create(at: absolute, bare: false, initialBranch: options.branch) }
            // Every setting first, then fsynced with the new folders (libgit2 does not fsync
            // config), so that the branch never moves in a repository a crash could take back.
            try wrapGit { try repo.addRemote("origin", url: url) }
            try wrapGit { try repo.setConfigString("branch.\(options.branch).remote", "origin") }
            try wrapGit { try repo.setConfigString("branch.\(options.branch).merge", "refs/heads/\(options.branch)") }
            try Store.configureNew(repo, made: made, durable: options.durable)
            var delay = sync.retry.initialDelay
            for attempt in 1...max(1, sync.retry.attempts) {
                do {
                    _ = try repo.fetch(remote: "origin", credentials: sync.credentials, progress: sync.progress)
                    break
                } catch let e as GitError {
                    if e.isTransient && attempt < sync.retry.attempts {
                        RetryPolicy.pause(min(delay, sync.retry.maxDelay)); delay *= 2; continue
                    }
                    throw ChatSyncError.remote("clone \(url): \(e.message)")
                }
            }
            let ref = "refs/remotes/origin/\(options.branch)"
            guard let tip = try wrapGit({ try repo.referenceTarget(ref) }) else {
                throw ChatSyncError.badStore("\(url) has no branch \(options.branch): is it a chatsync store?")
            }
            try wrapGit { try repo.compareAndSwapReference("refs/heads/\(options.branch)", to: tip, expected: nil, message: "chatsync: clone \(url)") }
        } catch {
            removeMade(absolute, made)
            throw error
        }
        // A remote that is not a chatsync store leaves nothing behind either.
        let store: Store
        do {
            store = try Store.open(at: absolute, options: options)
        } catch {
            removeMade(absolute, made)
            throw error
        }
        store.syncWorkTree()
        return store
    }

    /// Removes what a failed clone made: the store's folder (only what is in it, when the folder
    /// was there before), and the folders above it that it made (`made`, innermost first).
    private static func removeMade(_ path: String, _ made: [String]) {
        let fm = FileManager.default
        if made.contains(path) {
            try? fm.removeItem(atPath: path)
        } else {
            for name in (try? fm.contentsOfDirectory(atPath: path)) ?? [] { try? fm.removeItem(atPath: path + "/" + name) }
        }
        for folder in made where folder != path { if rmdir(folder) != 0 { break } }
    }

    // MARK: conflicts

    /// The conflicts recorded by merges, newest first.
    public func conflicts(includeResolved: Bool = true) throws -> [ConflictRecord] {
        try read { snap in
            try snap.shardedDocuments(ConflictRecord.self, in: "conflicts")
                .filter { includeResolved || $0.status == .open }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    public func conflict(_ id: String) throws -> ConflictRecord {
        try Rules.id(id, "conflict_id")
        return try read { try $0.require(ConflictRecord.self, at: Layout.conflict(id), id: id) }
    }

    /// Settles a conflict with a commit: `ours` keeps the value the merge chose, `theirs` puts
    /// back the value it set aside, `value` sets the given one.
    public func resolveConflict(_ id: String, take: ConflictResolution, value: JSONValue? = nil) throws -> ConflictRecord {
        try Rules.id(id, "conflict_id")
        if take == .value && value == nil { throw ChatSyncError.invalid(field: "value", rule: "--value needs a JSON value") }
        return try perform { tx in
            var record = try tx.require(ConflictRecord.self, at: Layout.conflict(id), id: id)
            guard record.status == .open else { throw ChatSyncError.conflict("conflict \(id) is already resolved (\(record.resolution?.rawValue ?? "?"))") }
            let wanted: JSONValue?
            switch take {
            case .ours: wanted = record.chosen
            case .theirs: wanted = record.other
            case .value: wanted = value
            }
            if take != .ours {
                try self.apply(wanted, to: record, tx)
            }
            record.status = .resolved
            record.resolution = take
            record.resolvedAt = tx.now
            try tx.put(record, at: Layout.conflict(id))
            tx.message = "conflict \(short(id)): resolve \(record.documentType.rawValue) \(short(record.documentID)) \(record.field) (\(take.rawValue))"
            return record
        }
    }

    /// Writes a value into the conflicted field (or the whole document), validated like any
    /// change and stored in the document's canonical form. `null` (or no value) removes the field,
    /// which is refused for a field the document must have.
    private func apply(_ value: JSONValue?, to record: ConflictRecord, _ tx: Transaction) throws {
        let removing = value == nil || value == .null
        if record.field == "(document)" {
            // A whole document's conflict is an edit against a delete: the delete is taken with
            // --take, never by a null value.
            if value == .null { throw ChatSyncError.invalid(field: "value", rule: "null cannot stand for a whole document; take ours or theirs to keep the delete") }
            if removing { try removeDocument(at: record.path, tx); return }
            try Self.checkPlaced(value!, at: record.path, over: try tx.data(at: record.path))
            try Self.putValidated(value!, at: record.path, kind: record.documentType, tx)
            try Self.renumber(after: Layout.locate(record.path), tx)
            return
        }
        guard let data = try tx.data(at: record.path), case .object(var doc)? = data.withUnsafeBytes({ FastJSON.parse($0) }) else {
            throw ChatSyncError.conflict("\(record.path) no longer exists; resolve with the whole document instead")
        }
        let keys = record.field.split(separator: ".").map(String.init)
        func set(_ obj: inout [String: JSONValue], _ keys: ArraySlice<String>) {
            guard let first = keys.first else { return }
            if keys.count == 1 {
                if removing { obj.removeValue(forKey: first) } else { obj[first] = value }
                return
            }
            var inner = obj[first]?.objectValue ?? [:]
            set(&inner, keys.dropFirst())
            obj[first] = .object(inner)
        }
        set(&doc, keys[...])
        if case .string? = doc["updated_at"] { doc["updated_at"] = .string(tx.now.rfc3339) }
        try Self.checkPlaced(.object(doc), at: record.path, over: data)
        let stored = try Self.putValidated(.object(doc), at: record.path, kind: record.documentType, tx)
        try Self.renumber(after: Layout.locate(record.path), tx)
        if removing, keys.count == 1 {
            try Patch.refuseRemovedFields([keys[0]], written: stored, kind: record.documentType, field: "value")
        }
    }

    /// What a document written outside the commands (a resolution, a hand edit) must still hold,
    /// beyond its own rules: the id
    /// and parent ids its path gives, the fields no update changes (against the document it
    /// replaces), and the session lifecycle.
    static func checkPlaced(_ value: JSONValue, at path: String, over current: Data?) throws {
        guard let loc = Layout.locate(path), case .object(let o) = value else { return }
        func must(_ field: String, _ expected: String, _ what: String) throws {
            guard o[field] == .string(expected) else {
                throw ChatSyncError.invalid(field: field, rule: "must be \(what) (\(expected)), got \(o[field]?.compactText ?? "nothing")")
            }
        }
        if let id = loc.id { try must("id", id, "the file's name") }
        switch loc {
        case .message(let chatID, _): try must("chat_id", chatID, "the chat of its folder")
        case .hop(let missionID, _): try must("mission_id", missionID, "the mission of its folder")
        case .toolStep(_, let hopID, _): try must("hop_id", hopID, "the hop of its folder")
        default: break
        }
        guard case .object(let old)? = current?.withUnsafeBytes({ FastJSON.parse($0) }) else { return }
        func same(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
            if case .string(let x)? = a, case .string(let y)? = b, let tx = Timestamp(rfc3339: x), let ty = Timestamp(rfc3339: y) { return tx == ty }
            return a == b
        }
        for field in ["user_id", "created_at"] where old[field] != nil && !same(o[field], old[field]) {
            throw ChatSyncError.invalid(field: field, rule: "cannot be changed (it is \(old[field]!.compactText))")
        }
        if case .session = loc, case .string(let was)? = old["status"], case .string(let now)? = o["status"],
           let from = SessionStatus(rawValue: was), let to = SessionStatus(rawValue: now) {
            try checkTransition(loc.id ?? "", from: from, to: to)
        }
    }

    /// Removes a document as its delete command does (a resolution that takes a delete, a hand
    /// deletion): a chat goes with its messages (refused while a session uses it), a mission or
    /// hop with what is below it, and the documents numbered after a message, hop or tool step
    /// are renumbered.
    func removeDocument(at path: String, _ tx: Transaction) throws {
        guard try tx.data(at: path) != nil else { return }
        switch Layout.locate(path) {
        case .chat(let id)?: try removeChat(id, tx)
        case .mission(let id)?: try removeMission(id, tx)
        case .hop(let missionID, let id)?: try removeHop(id, missionID: missionID, tx)
        case .toolStep(let missionID, let hopID, let id)?: try removeToolStep(id, missionID: missionID, hopID: hopID, tx)
        case .message(let chatID, _)?:
            try tx.delete(path)
            _ = try TreeMerge.renumberMessages(chatID, tx)
        default: try tx.delete(path)
        }
    }

    /// Checks a document like any input and stages it in its canonical form (so a `null` or a
    /// field left to its default is written as the model writes it); returns the bytes staged.
    @discardableResult
    static func putValidated(_ value: JSONValue, at path: String, kind: DocumentKind, _ tx: Transaction) throws -> Data {
        let data = CanonicalJSON.serialize(value)
        func check<D: Document>(_ t: D.Type) throws -> Data { try DocumentCoding.encode(try DocumentCoding.decodeInput(t, from: data, limits: tx.limits)) }
        let stored: Data
        switch kind {
        case .session: stored = try check(UserSession.self)
        case .chat: stored = try check(Chat.self)
        case .message: stored = try check(ChatMessage.self)
        case .mission: stored = try check(Mission.self)
        case .hop: stored = try check(Hop.self)
        case .toolStep: stored = try check(ToolStep.self)
        case .asset: stored = try check(Asset.self)
        case .conflict: stored = try check(ConflictRecord.self)
        }
        tx.putRaw(stored, at: path)
        return stored
    }
}

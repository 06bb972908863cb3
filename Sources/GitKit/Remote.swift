import CLibgit2
import Foundation

/// How to authenticate to a remote. Each kind is offered once; a rejection fails at once
/// (libgit2 asks again after every rejection, so without a count it would loop forever).
public struct GitCredentials: Sendable {
    public var username: String?
    public var password: String?
    /// A private key file for ssh (its public key beside it as `<path>.pub`).
    public var sshKeyPath: String?
    public var sshPassphrase: String?
    /// Ask ssh-agent for a key first.
    public var useSSHAgent: Bool
    /// Asked once for a user name and password for a URL when none is given (e.g. git's credential helper).
    public var helper: (@Sendable (_ url: String) -> (username: String, password: String)?)?
    public init(username: String? = nil, password: String? = nil, sshKeyPath: String? = nil, sshPassphrase: String? = nil,
                useSSHAgent: Bool = true, helper: (@Sendable (_ url: String) -> (username: String, password: String)?)? = nil) {
        self.username = username; self.password = password; self.sshKeyPath = sshKeyPath
        self.sshPassphrase = sshPassphrase; self.useSSHAgent = useSSHAgent; self.helper = helper
    }
}

/// Progress of a transfer.
public struct TransferProgress: Sendable {
    public enum Phase: Sendable { case receiving, indexing, sending }
    public var phase: Phase
    public var objects: Int
    public var totalObjects: Int
    public var bytes: Int
}

/// What a fetch brought.
public struct FetchResult: Sendable {
    public var receivedObjects: Int
    public var receivedBytes: Int
}

/// State shared with libgit2's C callbacks during one fetch or push.
private final class RemoteSession {
    let credentials: GitCredentials
    let progress: ((TransferProgress) -> Void)?
    var triedAgent = false
    var triedKey = false
    var triedPassword = false
    var triedUsername = false
    var triedHelper = false
    var authFailed = false
    var rejections: [String] = []

    init(credentials: GitCredentials, progress: ((TransferProgress) -> Void)?) {
        self.credentials = credentials
        self.progress = progress
    }
}

private func session(_ payload: UnsafeMutableRawPointer?) -> RemoteSession {
    Unmanaged<RemoteSession>.fromOpaque(payload!).takeUnretainedValue()
}

private func makeCallbacks(_ box: RemoteSession) throws -> git_remote_callbacks {
    var cb = git_remote_callbacks()
    try check(git_remote_init_callbacks(&cb, UInt32(GIT_REMOTE_CALLBACKS_VERSION)), "remote callbacks")
    cb.payload = Unmanaged.passUnretained(box).toOpaque()
    cb.credentials = { out, url, usernameFromURL, allowed, payload in
        let s = session(payload)
        let user = s.credentials.username ?? usernameFromURL.map { String(cString: $0) } ?? "git"
        if allowed & GIT_CREDENTIAL_SSH_KEY.rawValue != 0 {
            if s.credentials.useSSHAgent && !s.triedAgent {
                s.triedAgent = true
                if git_credential_ssh_key_from_agent(out, user) == 0 { return 0 }
            }
            if let key = s.credentials.sshKeyPath, !s.triedKey {
                s.triedKey = true
                let pub = FileManager.default.fileExists(atPath: key + ".pub") ? key + ".pub" : nil
                return git_credential_ssh_key_new(out, user, pub, key, s.credentials.sshPassphrase)
            }
        }
        if allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0, let password = s.credentials.password, !s.triedPassword {
            s.triedPassword = true
            return git_credential_userpass_plaintext_new(out, user, password)
        }
        if allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT.rawValue != 0, s.credentials.password == nil, !s.triedHelper,
           let helper = s.credentials.helper, let url, let found = helper(String(cString: url)) {
            s.triedHelper = true
            return git_credential_userpass_plaintext_new(out, found.username, found.password)
        }
        if allowed & GIT_CREDENTIAL_USERNAME.rawValue != 0, !s.triedUsername {
            s.triedUsername = true
            return git_credential_username_new(out, user)
        }
        s.authFailed = true
        git_error_set_str(Int32(GIT_ERROR_CALLBACK.rawValue), "authentication failed: no (more) credentials to offer")
        return GIT_EAUTH.rawValue
    }
    cb.transfer_progress = { stats, payload in
        guard let stats = stats?.pointee else { return 0 }
        let s = session(payload)
        let indexing = stats.received_objects == stats.total_objects && stats.total_objects > 0
        s.progress?(TransferProgress(phase: indexing ? .indexing : .receiving,
                                     objects: Int(indexing ? stats.indexed_objects : stats.received_objects),
                                     totalObjects: Int(stats.total_objects), bytes: Int(stats.received_bytes)))
        return 0
    }
    cb.push_transfer_progress = { current, total, bytes, payload in
        session(payload).progress?(TransferProgress(phase: .sending, objects: Int(current), totalObjects: Int(total), bytes: bytes))
        return 0
    }
    cb.push_update_reference = { refname, status, payload in
        // The server's verdict on each ref: a non-null status is a rejection (the push call itself returned 0).
        if let status {
            session(payload).rejections.append("\(refname.map { String(cString: $0) } ?? "?"): \(String(cString: status))")
        }
        return 0
    }
    return cb
}

extension Repository {
    /// The configured remotes' names.
    public func remoteNames() throws -> [String] {
        var arr = git_strarray()
        try check(git_remote_list(&arr, pointer), "list remotes")
        defer { git_strarray_dispose(&arr) }
        return (0..<arr.count).compactMap { arr.strings[$0].map { String(cString: $0) } }
    }

    /// A remote's URL, or nil when there is no such remote.
    public func remoteURL(_ name: String) throws -> String? {
        var remote: OpaquePointer?
        let code = git_remote_lookup(&remote, pointer, name)
        if code == GIT_ENOTFOUND.rawValue || code == GIT_EINVALIDSPEC.rawValue { return nil }
        try check(code, "look up remote \(name)")
        defer { git_remote_free(remote) }
        return git_remote_url(remote).map { String(cString: $0) }
    }

    /// Adds a remote with git's default fetch refspec (`+refs/heads/*:refs/remotes/NAME/*`).
    public func addRemote(_ name: String, url: String) throws {
        var remote: OpaquePointer?
        try check(git_remote_create(&remote, pointer, name, url), "add remote \(name)")
        git_remote_free(remote)
    }

    public func removeRemote(_ name: String) throws {
        try check(git_remote_delete(pointer, name), "remove remote \(name)")
    }

    private func withRemote<T>(_ name: String, _ body: (OpaquePointer?) throws -> T) throws -> T {
        var remote: OpaquePointer?
        try check(git_remote_lookup(&remote, pointer, name), "look up remote \(name)")
        defer { git_remote_free(remote) }
        return try body(remote)
    }

    /// Fetches from a remote (its configured refspecs unless given). Authentication errors
    /// carry `isAuth`.
    @discardableResult
    public func fetch(remote name: String, refspecs: [String] = [], credentials: GitCredentials = GitCredentials(),
                      progress: ((TransferProgress) -> Void)? = nil) throws -> FetchResult {
        try withRemote(name) { remote in
            let box = RemoteSession(credentials: credentials, progress: progress)
            var opts = git_fetch_options()
            try check(git_fetch_options_init(&opts, UInt32(GIT_FETCH_OPTIONS_VERSION)), "fetch options")
            opts.callbacks = try makeCallbacks(box)
            opts.prune = GIT_FETCH_NO_PRUNE
            let code = try withExtendedLifetime(box) {
                try withStrArray(refspecs) { specs in git_remote_fetch(remote, refspecs.isEmpty ? nil : specs, &opts, "chatsync: fetch \(name)") }
            }
            if code < 0 {
                var e = lastError(code, "fetch from \(name)")
                if box.authFailed { e = GitError(code: GIT_EAUTH.rawValue, errorClass: e.errorClass, message: e.message, operation: e.operation) }
                throw e
            }
            let stats = git_remote_stats(remote)!.pointee
            return FetchResult(receivedObjects: Int(stats.received_objects), receivedBytes: Int(stats.received_bytes))
        }
    }

    /// Pushes refspecs (`refs/heads/main:refs/heads/main`) to a remote. A ref the server
    /// rejects is an error (libgit2 itself returns success then), as is a non-fast-forward.
    public func push(remote name: String, refspecs: [String], credentials: GitCredentials = GitCredentials(),
                     progress: ((TransferProgress) -> Void)? = nil) throws {
        try withRemote(name) { remote in
            let box = RemoteSession(credentials: credentials, progress: progress)
            var opts = git_push_options()
            try check(git_push_options_init(&opts, UInt32(GIT_PUSH_OPTIONS_VERSION)), "push options")
            opts.callbacks = try makeCallbacks(box)
            let code = try withExtendedLifetime(box) {
                try withStrArray(refspecs) { specs in git_remote_push(remote, specs, &opts) }
            }
            if code < 0 {
                var e = lastError(code, "push to \(name)")
                if box.authFailed { e = GitError(code: GIT_EAUTH.rawValue, errorClass: e.errorClass, message: e.message, operation: e.operation) }
                throw e
            }
            if !box.rejections.isEmpty {
                throw GitError(code: GIT_ERROR.rawValue, errorClass: Int32(GIT_ERROR_REFERENCE.rawValue),
                               message: "the remote rejected the push: " + box.rejections.joined(separator: "; "),
                               operation: "push to \(name)")
            }
        }
    }
}

extension GitError {
    /// A network failure worth trying again (connection refused, reset, timed out…), as
    /// opposed to authentication, a missing repository or a rejected push.
    public var isTransient: Bool {
        if isAuth || isNonFastForward || isNotFound { return false }
        let lower = message.lowercased()
        // "remote error:" is the server's own refusal (an ERR packet), e.g. "no such repository".
        for permanent in ["not found", "no such repository", "remote error:", "does not appear to be a git repository", "access denied", "not exported",
                          "authentication", "unauthorized", "permission denied", "rejected", "unsupported url protocol",
                          "invalid url", "certificate"] where lower.contains(permanent) {
            return false
        }
        let c = UInt32(bitPattern: errorClass)
        return c == GIT_ERROR_NET.rawValue || c == GIT_ERROR_OS.rawValue
            || c == GIT_ERROR_SSL.rawValue || c == GIT_ERROR_SSH.rawValue || c == GIT_ERROR_HTTP.rawValue
    }
}

/// Calls `body` with a `git_strarray` whose strings live for the call.
func withStrArray<T>(_ strings: [String], _ body: (UnsafeMutablePointer<git_strarray>) throws -> T) rethrows -> T {
    var cStrings: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { cStrings.forEach { free($0) } }
    return try cStrings.withUnsafeMutableBufferPointer { buf in
        var arr = git_strarray(strings: buf.baseAddress, count: buf.count)
        return try body(&arr)
    }
}

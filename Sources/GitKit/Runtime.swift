import CLibgit2
import Synchronization

/// Process-wide libgit2 set-up: `git_libgit2_init` once, then the global options.
public enum GitRuntime {
    private static let state = Mutex<Bool>(false)

    /// Initialises libgit2 once for the process. Safe to call from any thread, any number of times.
    public static func initialize() {
        state.withLock { initialized in
            guard !initialized else { return }
            git_libgit2_init()
            // Repositories here are ours; a server running as another user must still open them.
            _ = chatsync_git_set_owner_validation(0)
            // We only create objects from ids we just wrote; skip the extra existence checks.
            _ = chatsync_git_set_strict_object_creation(0)
            _ = chatsync_git_set_cache_max_size(256 * 1024 * 1024)
            // Keep parsed trees up to 1 MiB (libgit2 caches only those up to 4 KiB by default,
            // so a root or shard folder with a few hundred entries was parsed on every read).
            _ = chatsync_git_set_cache_object_limit(GIT_OBJECT_TREE, 1 << 20)
            // At most this many pack files open at once in the process (the least recently used
            // are closed): packs come and go with every batch and merge, and a handle would
            // otherwise keep every pack it ever read open, removed ones included.
            _ = chatsync_git_set_mwindow_file_limit(128)
            initialized = true
        }
    }

    /// Turns fsync of objects, packs and refs (`GIT_OPT_ENABLE_FSYNC_GITDIR`) on or off.
    /// This is a process-wide libgit2 option.
    public static func setFsync(_ enabled: Bool) {
        initialize()
        _ = chatsync_git_set_fsync(enabled ? 1 : 0)
        fsyncState.withLock { $0 = enabled }
    }

    private static let authorities = Mutex<String?>(nil)

    /// Trusts the certificate authorities in `file` (PEM) for https remotes, in place of the
    /// system's (libgit2 1.5 as Debian builds it, with mbedTLS, reads
    /// `/etc/ssl/certs/ca-certificates.crt`). Process-wide (`GIT_OPT_SET_SSL_CERT_LOCATIONS`)
    /// and kept for the rest of the process; setting the same file again does nothing.
    public static func trustCertificateAuthorities(file: String) throws {
        initialize()
        try authorities.withLock { current in
            if current == file { return }
            try check(chatsync_git_set_ssl_cert_locations(file, nil), "load certificate authorities from \(file)")
            current = file
        }
    }

    private static let fsyncState = Mutex<Bool>(false)
    /// Whether fsync is on (the packs GitKit writes itself follow the same switch).
    public static var fsyncEnabled: Bool { fsyncState.withLock { $0 } }
}

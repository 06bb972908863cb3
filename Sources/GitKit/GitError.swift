import CLibgit2
#if canImport(Glibc)
import Glibc
#endif

/// An error reported by libgit2, with the operation that failed and libgit2's own message.
///
/// `git_error_last()` is thread-local, so the message is read synchronously right after
/// the failing call (see `check`), never across an `await`.
public struct GitError: Error, CustomStringConvertible, Sendable, Equatable {
    /// libgit2's return code (`git_error_code`), e.g. -15 for `GIT_EMODIFIED`.
    public let code: Int32
    /// libgit2's error class (`git_error_t`).
    public let errorClass: Int32
    /// libgit2's message, or a message of ours.
    public let message: String
    /// What we were doing, e.g. `update reference refs/heads/main`.
    public let operation: String

    public init(code: Int32, errorClass: Int32 = 0, message: String, operation: String) {
        self.code = code
        self.errorClass = errorClass
        self.message = message
        self.operation = operation
    }

    public var description: String { "\(operation): \(message) (libgit2 code \(code))" }

    public var isNotFound: Bool { code == GIT_ENOTFOUND.rawValue }
    /// The reference moved since it was read (compare-and-swap lost).
    public var isModified: Bool { code == GIT_EMODIFIED.rawValue }
    /// A lock file exists (another writer, or a crashed one).
    public var isLocked: Bool { code == GIT_ELOCKED.rawValue }
    public var isExists: Bool { code == GIT_EEXISTS.rawValue }
    public var isNonFastForward: Bool { code == GIT_ENONFASTFORWARD.rawValue }
    public var isAuth: Bool { code == GIT_EAUTH.rawValue }
    public var isConflict: Bool { code == GIT_ECONFLICT.rawValue }
}

/// Turns a libgit2 return code into a thrown `GitError`, reading the thread-local message at once.
@inline(__always)
func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
    if code < 0 { throw lastError(code, operation()) }
}

/// Runs a libgit2 read again when it failed because a pack merge removed packs under it.
/// A handle keeps every pack it has seen (libgit2 1.5 drops none until the handle replaces its
/// object database: `Repository.letGoOfRemovedPacks`), and libgit2 closes the
/// least recently used pack files (`GIT_OPT_SET_MWINDOW_FILE_LIMIT`) and opens them again when
/// read: when another thread closes such a pack between the moment an object is found in it
/// and the moment it is read, opening it again fails ("invalid packfile"). And a miss makes
/// libgit2 list the pack folder once more, but two merges in a row can remove the pack it
/// found there before it loads it ("object not found"). Looked up again, the object comes from
/// the pack that replaced them (a pack that failed to open is passed over). A path missing in
/// a tree is another message, and not retried.
@inline(__always)
func retryingRemovedPacks(_ call: () -> Int32) -> Int32 {
    var code = call()
    var attempts = 0
    while code < 0 && attempts < 3, let err = git_error_last(), let m = err.pointee.message,
          strncmp(m, "invalid packfile", 16) == 0 || strncmp(m, "object not found", 16) == 0 {
        attempts += 1
        code = call()
    }
    return code
}

func lastError(_ code: Int32, _ operation: String) -> GitError {
    var message = "unknown error"
    var klass: Int32 = 0
    if let err = git_error_last() {
        if let m = err.pointee.message { message = String(cString: m) }
        klass = err.pointee.klass
    }
    return GitError(code: code, errorClass: klass, message: message, operation: operation)
}

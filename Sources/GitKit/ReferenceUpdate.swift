import CLibgit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A compare-and-swap of a reference in git's own lock protocol, split in two so that the
/// waiting for the disk overlaps with the pack's: `Repository.prepareReferenceUpdate` takes
/// `<ref>.lock` (created exclusively, as git and libgit2 do), checks that the reference still
/// points where expected and writes the new id into the lock file; `writePack(_:alsoSyncing:)`
/// fsyncs that file together with the pack and its index; `finish` renames it into place and
/// fsyncs the folder (or `putInPlace`, then `makeDurable`, so that the folder's fsync can
/// overlap with the next update's). Until then any other writer (git, libgit2, another chatsync) finds the
/// reference locked. Dropped without `finish`, the lock file is removed and nothing changed.
public final class ReferenceUpdate: @unchecked Sendable {
    public let name: String
    /// The lock file holding the new value (fsync it before `finish`).
    public let lockPath: String
    let path: String
    private var open = true

    init(name: String, lockPath: String, path: String) {
        self.name = name
        self.lockPath = lockPath
        self.path = path
    }

    /// Puts the new value in place (the lock file must be durable already when `durable`),
    /// then makes the rename durable.
    public func finish(durable: Bool) throws {
        try putInPlace()
        if durable { try makeDurable() }
    }

    /// Renames the lock file over the reference: the reference moves and the lock is free again
    /// (the next update may take it), but the rename is not yet durable (`makeDurable`).
    public func putInPlace() throws {
        guard open else { throw GitError(code: -1, message: "already finished or abandoned", operation: "update reference \(name)") }
        open = false
        guard rename(lockPath, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(lockPath)
            throw GitError(code: -1, message: message, operation: "update reference \(name)")
        }
    }

    /// Makes the rename durable: fsyncs the reference's folder (any thread; a later update's
    /// rename may be in it too, which is no harm).
    public func makeDurable() throws {
        try fsyncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Gives the lock up; the reference stays as it was.
    public func abandon() {
        guard open else { return }
        open = false
        unlink(lockPath)
    }

    deinit { abandon() }
}

extension Repository {
    /// Takes `name`'s lock, checks it points to `expected` (nil: that it does not exist) and
    /// writes `target` into the lock file (not yet fsynced). Throws a `GitError` with `isLocked`
    /// when the lock file exists and `isModified` when the reference moved. Returns nil, having
    /// changed nothing, where this way does not fit and `compareAndSwapReference` must be used:
    /// the repository keeps reflogs (`core.logAllRefUpdates` not false, or a log file for the
    /// reference exists), or the reference is symbolic.
    public func prepareReferenceUpdate(_ name: String, to target: OID, expected: OID?) throws -> ReferenceUpdate? {
        guard name.hasPrefix("refs/"), !name.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else { return nil }
        let dir = gitDir
        guard reflogsOff(), access(dir + "logs/" + name, F_OK) != 0 else { return nil }
        let path = dir + name
        let lockPath = path + ".lock"
        let fd = Glibc.open(lockPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        if fd < 0 && errno == ENOENT { return nil }  // no folder for it yet
        if fd < 0 {
            let code = errno == EEXIST ? GIT_ELOCKED.rawValue : -1
            throw GitError(code: code, message: "cannot lock: \(String(cString: strerror(errno)))", operation: "update reference \(name)")
        }
        let update = ReferenceUpdate(name: name, lockPath: lockPath, path: path)
        var closed = false
        defer { if !closed { close(fd) } }
        // Read under the lock: no git writer can move it now.
        var current: OID?
        var ref: OpaquePointer?
        let code = git_reference_lookup(&ref, pointer, name)
        if code == GIT_ENOTFOUND.rawValue {
            current = nil
        } else {
            try check(code, "read reference \(name)")
            defer { git_reference_free(ref) }
            guard git_reference_type(ref) == GIT_REFERENCE_DIRECT, let id = git_reference_target(ref) else {
                update.abandon()
                return nil
            }
            current = OID(id.pointee)
        }
        guard current == expected else {
            update.abandon()
            throw GitError(code: GIT_EMODIFIED.rawValue, message: "the reference moved (expected \(expected?.hex ?? "none"), found \(current?.hex ?? "none"))",
                           operation: "update reference \(name)")
        }
        let line = Array((target.hex + "\n").utf8)
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        closed = true
        guard written == line.count, close(fd) == 0 else {
            update.abandon()
            throw GitError(code: -1, message: "cannot write the lock file", operation: "update reference \(name)")
        }
        return update
    }

    /// Whether `core.logAllRefUpdates` is false (read again when `.git/config` changes; the
    /// global and system configs are read once per handle).
    private func reflogsOff() -> Bool {
        var st = stat()
        let file = stat(gitDir + "config", &st) == 0 ? [Int(st.st_ino), Int(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec] : []
        if let known = noReflogs, known.file == file { return known.value }
        let value = ((try? configString("core.logAllRefUpdates")) ?? nil)?.lowercased() == "false"
        noReflogs = (file, value)
        return value
    }
}

import CLibgit2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A compare-and-swap of a reference in git's own lock protocol, split in two so that the
/// waiting for the disk overlaps with the pack's: `Repository.prepareReferenceUpdate` takes
/// `<ref>.lock` (exclusively, as git and libgit2 do), checks that the reference still points
/// where expected and writes the new id into the lock file; `writePack(_:alsoSyncing:)`
/// fsyncs that file together with the pack and its index; `finish` puts it in place and
/// fsyncs the folder (or `putInPlace`, then `makeDurable`, so that the folder's fsync can
/// overlap with the next update's). Until then any other writer (git, libgit2, another
/// chatsync) finds the reference locked. Dropped without `finish`, the lock is given up and
/// nothing changed.
///
/// **No file is created or removed per update** where the file system has `renameat2`: the
/// handle keeps a spare file next to the reference (`.<name>.<token>.lock`, a name no reference
/// or lock of git can have, which git and libgit2 skip when they list references). The new id
/// is written into the spare, which becomes the lock by a rename that fails if the lock exists
/// (`RENAME_NOREPLACE`); the lock then trades places with the reference (`RENAME_EXCHANGE`,
/// atomic: a reader sees the old id or the new one), and the old reference file, now at the
/// lock's name, becomes the spare again, which frees the lock. On ext4 without a journal,
/// creating a file scans the inodes freed in the last minutes, and renaming a lock over the
/// reference frees one, so every batch made the next creation slower (0.15–0.9 ms a file here).
/// Without a spare (the first update, or where `renameat2` is refused) the lock is created
/// exclusively and renamed over the reference, as git does.
public final class ReferenceUpdate: @unchecked Sendable {
    public let name: String
    /// The lock file holding the new value (fsync it before `finish`).
    public let lockPath: String
    let path: String
    /// Where the replaced reference file goes (nil: no spares on this file system).
    let sparePath: String?
    private let repository: Repository
    private var open = true

    init(name: String, lockPath: String, path: String, sparePath: String?, repository: Repository) {
        self.name = name
        self.lockPath = lockPath
        self.path = path
        self.sparePath = sparePath
        self.repository = repository
    }

    /// Puts the new value in place (the lock file must be durable already when `durable`),
    /// then makes the change durable.
    public func finish(durable: Bool) throws {
        try putInPlace()
        if durable { try makeDurable() }
    }

    /// Puts the lock file in the reference's place: the reference moves and the lock is free
    /// again (the next update may take it), but the change is not yet durable (`makeDurable`).
    public func putInPlace() throws {
        guard open else { throw GitError(code: -1, message: "already finished or abandoned", operation: "update reference \(name)") }
        open = false
        if let sparePath {
            if chatsync_renameat2(lockPath, path, 2 /* RENAME_EXCHANGE */) == 0 {
                // The lock's name holds the old reference file: it becomes the spare, and the lock is free.
                if rename(lockPath, sparePath) != 0 { unlink(lockPath) }
                return
            }
            if errno == EINVAL || errno == ENOSYS { repository.spareToken = nil }
            else if errno != ENOENT {  // ENOENT: no reference file yet (a new or packed reference)
                let message = String(cString: strerror(errno))
                unlink(lockPath)
                throw GitError(code: -1, message: message, operation: "update reference \(name)")
            }
        }
        guard rename(lockPath, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(lockPath)
            throw GitError(code: -1, message: message, operation: "update reference \(name)")
        }
    }

    /// Makes the change durable: fsyncs the reference's folder (any thread; a later update's
    /// renames may be in it too, which is no harm).
    public func makeDurable() throws {
        try fsyncDirectory((path as NSString).deletingLastPathComponent)
    }

    /// Gives the lock up; the reference stays as it was (the lock file becomes the spare).
    public func abandon() {
        guard open else { return }
        open = false
        if let sparePath, rename(lockPath, sparePath) == 0 { return }
        unlink(lockPath)
    }

    deinit { abandon() }

    /// The spare lock files (see above) in `folder`, of any handle or process, that nothing
    /// touched for `age` seconds: those of a crashed process. Removing a live one is harmless
    /// too (its owner creates the lock instead).
    public static func removeSpares(in folder: String, olderThan age: Double) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        for name in names where isSpareName(name) {
            var st = stat()
            guard stat(folder + "/" + name, &st) == 0 else { continue }
            let touched = max(st.st_mtim.tv_sec, st.st_ctim.tv_sec)
            if Double(now.tv_sec - touched) >= age { unlink(folder + "/" + name) }
        }
    }

    static func isSpareName(_ name: String) -> Bool {
        name.hasPrefix(".") && name.hasSuffix(".lock") && name.split(separator: ".").count >= 3
    }

    /// The spare of the reference file at `path` for the handle's `token`.
    static func sparePath(of path: String, token: String) -> String {
        let ns = path as NSString
        return ns.deletingLastPathComponent + "/." + ns.lastPathComponent + "." + token + ".lock"
    }
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
        let line = Array((target.hex + "\n").utf8)
        let sparePath = spareToken.map { ReferenceUpdate.sparePath(of: path, token: $0) }
        var fd: Int32 = -1
        if let sparePath {
            // The spare becomes the lock, its new value written first (so the lock is never
            // seen empty, nor old: a stale-lock check looks at its times).
            let s = Glibc.open(sparePath, O_WRONLY | O_CLOEXEC)
            if s >= 0 {
                let written = line.withUnsafeBytes { pwrite(s, $0.baseAddress, $0.count, 0) }
                if written == line.count && ftruncate(s, off_t(line.count)) == 0 {
                    if chatsync_renameat2(sparePath, lockPath, 1 /* RENAME_NOREPLACE */) == 0 {
                        fd = s
                    } else if errno == EEXIST {
                        close(s)
                        throw GitError(code: GIT_ELOCKED.rawValue, message: "cannot lock: \(String(cString: strerror(EEXIST)))",
                                       operation: "update reference \(name)")
                    } else {
                        if errno == EINVAL || errno == ENOSYS { spareToken = nil }
                        close(s)
                    }
                } else {
                    close(s)
                }
            }
        }
        let fromSpare = fd >= 0
        if !fromSpare {
            fd = Glibc.open(lockPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd < 0 && errno == ENOENT { return nil }  // no folder for it yet
            if fd < 0 {
                let code = errno == EEXIST ? GIT_ELOCKED.rawValue : -1
                throw GitError(code: code, message: "cannot lock: \(String(cString: strerror(errno)))", operation: "update reference \(name)")
            }
        }
        let update = ReferenceUpdate(name: name, lockPath: lockPath, path: path, sparePath: spareToken == nil ? nil : sparePath, repository: self)
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
        let written = fromSpare ? line.count : line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        closed = true
        guard written == line.count, close(fd) == 0 else {
            update.abandon()
            throw GitError(code: -1, message: "cannot write the lock file", operation: "update reference \(name)")
        }
        return update
    }

    /// Removes this handle's spare lock files (see `ReferenceUpdate`) for `name`: a writer
    /// that stops leaves none behind.
    public func discardSpareLock(_ name: String) {
        guard let token = spareToken else { return }
        unlink(ReferenceUpdate.sparePath(of: gitDir + name, token: token))
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

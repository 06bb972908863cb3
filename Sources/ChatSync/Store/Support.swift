import Foundation
import GitKit
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What a chat's messages add up to: enough to append without reading every message.
public struct ChatSummary: Sendable, Equatable {
    public var count: Int
    public var lastCreatedAt: Timestamp?
    public var lastID: String?
    public static let empty = ChatSummary(count: 0, lastCreatedAt: nil, lastID: nil)
}

/// Chat summaries keyed by the id of the chat's `messages` tree: a key names exactly one set
/// of messages, so an entry can never disagree with the store, whoever changed it.
final class SummaryCache: Sendable {
    private let entries = Mutex<[OID: ChatSummary]>([:])
    private let capacity = 50_000

    func get(_ tree: OID) -> ChatSummary? { entries.withLock { $0[tree] } }

    func put(_ tree: OID, _ summary: ChatSummary) {
        entries.withLock { e in
            if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            e[tree] = summary
        }
    }
}

/// An exclusive lock between processes and threads (`flock`), released by the kernel when its
/// holder dies, so a crash never leaves it held.
final class FileLock: @unchecked Sendable {
    private let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ChatSyncError.storage("cannot open lock file \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        defer { flock(fd, LOCK_UN) }
        return try body()
    }
}

enum LockFiles {
    /// Removes a git lock file (`*.lock`) untouched for `age` seconds: one left by a crashed
    /// process. A live writer holds such a lock for milliseconds. Touched means written or
    /// renamed (the change time): a lock taken by renaming a file into place (see
    /// `ReferenceUpdate`) is fresh whatever its contents' age.
    @discardableResult
    static func clearIfStale(_ path: String, olderThan age: Double) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let (m, c) = (st.st_mtim, st.st_ctim)
        let touched = (c.tv_sec, c.tv_nsec) > (m.tv_sec, m.tv_nsec) ? c : m
        let touchedAt = Double(touched.tv_sec) + Double(touched.tv_nsec) / 1e9
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowS = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        guard nowS - touchedAt > age else { return false }
        return unlink(path) == 0
    }
}

/// Writes a small file atomically (temp file, rename).
func writeFileAtomically(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard FileManager.default.createFile(atPath: tmp, contents: data) else {
        throw ChatSyncError.storage("cannot write \(tmp)")
    }
    guard rename(tmp, path) == 0 else {
        unlink(tmp)
        throw ChatSyncError.storage("cannot rename \(tmp) to \(path): \(String(cString: strerror(errno)))")
    }
}

/// A random UUID (version 4) in lowercase, the default id of new documents. The bytes come
/// from the system's generator (`getrandom` on Linux): Foundation's `UUID()` there opens and
/// reads `/dev/urandom` for each one.
public func newID() -> String {
    var g = SystemRandomNumberGenerator()
    let (a, b) = (g.next() as UInt64, g.next() as UInt64)
    var bytes = [UInt8](repeating: 0, count: 16)
    for i in 0..<8 {
        bytes[i] = UInt8(truncatingIfNeeded: a >> (8 * i))
        bytes[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * i))
    }
    bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
    bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
    let u = UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
    return u.uuidString.lowercased()
}

/// Where the commits this process put on the branch came from, for the watch stream.
final class OriginLog: Sendable {
    private let map = Mutex<[OID: ChangeOrigin]>([:])

    func record(_ tags: [(OID, ChangeOrigin)]) {
        map.withLock { m in
            if m.count > 200_000 { m.removeAll(keepingCapacity: true) }
            for (oid, origin) in tags { m[oid] = origin }
        }
    }

    func origin(of commit: OID) -> ChangeOrigin? { map.withLock { $0[commit] } }
}

/// Wakes the watch loops of this process when the branch may have moved: after each commit of
/// this process, and, while any loop listens, on changes in the branch's folder or the git
/// folder seen through inotify (another process's commit, plain git). One inotify instance
/// serves every loop of the store; the loops still poll, for file systems inotify does not see.
final class CommitBell: Sendable {
    private struct Listeners {
        var fds: [Int32] = []
        var moves: BranchMoves?
    }
    private let listeners = Mutex(Listeners())
    private let gitDir: String
    /// The folder of the branch's file (`refs/heads` for `main`).
    let branchFolder: String

    init(gitDir: String, branchFolder: String) {
        self.gitDir = gitDir
        self.branchFolder = branchFolder
    }

    /// A file descriptor that becomes readable after each commit; give it back with `remove`.
    func add() -> (read: Int32, write: Int32)? {
        var p: [Int32] = [0, 0]
        guard pipe(&p) == 0 else { return nil }
        for fd in p {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        listeners.withLock { l in
            l.fds.append(p[1])
            if l.moves == nil { l.moves = BranchMoves(gitDir: gitDir, branchFolder: branchFolder, ring: { [weak self] in self?.ring() }) }
        }
        return (p[0], p[1])
    }

    func remove(_ pair: (read: Int32, write: Int32)) {
        listeners.withLock { l in
            l.fds.removeAll { $0 == pair.write }
            if l.fds.isEmpty {
                l.moves?.stop()
                l.moves = nil
            }
        }
        close(pair.read)
        close(pair.write)
    }

    func ring() {
        listeners.withLock { l in
            var b: UInt8 = 1
            for fd in l.fds { _ = write(fd, &b, 1) }
        }
    }
}

/// inotify on the branch's folder (git and chatsync move a branch by renaming its lock file
/// over it) and on the git folder (`packed-refs`), read on a thread of its own, which calls
/// `ring` after any event there (the listeners then read the branch again). Nil when inotify
/// refuses (too many instances, say); the watch loops then only poll.
final class BranchMoves: Sendable {
    private let descriptor: Int32
    private let stopped = Mutex(false)

    init?(gitDir: String, branchFolder folder: String, ring: @escaping @Sendable () -> Void) {
        descriptor = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard descriptor >= 0 else { return nil }
        let moves = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM)
        guard inotify_add_watch(descriptor, folder, moves | UInt32(IN_ONLYDIR)) >= 0,
              inotify_add_watch(descriptor, gitDir, UInt32(IN_MOVED_TO | IN_CLOSE_WRITE) | UInt32(IN_ONLYDIR)) >= 0 else {
            close(descriptor)
            return nil
        }
        let t = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            var pfd = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            // Wakes at least every 200 ms to see whether it is still wanted.
            while !stopped.withLock({ $0 }) {
                guard poll(&pfd, 1, 200) > 0 else { continue }
                while read(descriptor, &buffer, buffer.count) > 0 {}
                ring()
            }
        }
        t.name = "chatsync-branch-moves"
        t.start()
    }

    func stop() { stopped.withLock { $0 = true } }

    deinit { close(descriptor) }
}

/// Runs the work handed to it one piece after another, in order, on a thread of its own.
final class SerialWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private var work: [() -> Void] = []
    private var stopping = false
    private var running = false
    private let finished = DispatchSemaphore(value: 0)

    init(name: String) {
        let t = Thread { self.run() }
        t.name = name
        t.start()
    }

    func add(_ body: @escaping () -> Void) {
        condition.lock()
        work.append(body)
        condition.signal()
        condition.unlock()
    }

    /// Nothing handed to it is waiting or running (only the one thread that hands it work may
    /// rely on this staying true).
    var isIdle: Bool {
        condition.lock()
        defer { condition.unlock() }
        return work.isEmpty && !running
    }

    /// Runs what was handed to it so far, then ends the thread (and waits for that).
    func stop() {
        condition.lock()
        let first = !stopping
        stopping = true
        condition.signal()
        condition.unlock()
        if first { finished.wait() }
    }

    private func run() {
        while true {
            condition.lock()
            while work.isEmpty && !stopping { condition.wait() }
            if work.isEmpty { condition.unlock(); finished.signal(); return }
            let next = work
            work.removeAll()
            running = true
            condition.unlock()
            for body in next { body() }
            condition.lock()
            running = false
            condition.unlock()
        }
    }
}

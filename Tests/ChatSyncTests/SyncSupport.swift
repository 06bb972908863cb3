import ChatSync
import Foundation
import XCTest

/// `git daemon` on 127.0.0.1, serving the bare repositories in a folder; started and stopped by the test.
final class GitDaemon {
    let base: String
    let port: Int
    private let process: Process

    init(test: XCTestCase) throws {
        base = NSTemporaryDirectory() + "chatsync-daemon-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        var started: (Process, Int)?
        for _ in 0..<20 {
            let port = Int.random(in: 20_000...60_000)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
            p.arguments = ["daemon", "--listen=127.0.0.1", "--port=\(port)", "--base-path=\(base)", "--export-all",
                           "--enable=receive-pack", "--reuseaddr", "--informative-errors", base]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            if GitDaemon.waitForPort(port, process: p) { started = (p, port); break }
            p.terminate()
            p.waitUntilExit()
        }
        guard let (p, port) = started else { throw XCTSkip("could not start git daemon") }
        process = p
        self.port = port
        test.addTeardownBlock { [base, process] in
            process.terminate()
            process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: base)
        }
    }

    /// A new empty bare repository served as `git://127.0.0.1:PORT/NAME.git`.
    func makeRepository(_ name: String) throws -> String {
        let dir = base + "/\(name).git"
        XCTAssertEqual(try git(base, "init", "-q", "--bare", "--initial-branch=main", dir).status, 0)
        return "git://127.0.0.1:\(port)/\(name).git"
    }

    static func waitForPort(_ port: Int, process: Process) -> Bool {
        for _ in 0..<100 {
            if !process.isRunning { return false }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
            close(fd)
            if ok { return true }
            usleep(50_000)
        }
        return false
    }
}

/// A store in a temporary folder that is not created yet (for clones).
func freshPath(_ test: XCTestCase, _ name: String = "store") -> String {
    let dir = NSTemporaryDirectory() + "chatsync-\(name)-\(UUID().uuidString)"
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
    return dir
}

func clone(_ test: XCTestCase, _ url: String, _ name: String = "clone") throws -> Store {
    var o = StoreOptions()
    o.durable = false
    let store = try Store.clone(from: url, to: freshPath(test, name), options: o, sync: quickSync)
    test.addTeardownBlock { store.close() }
    return store
}

/// Sync options that do not wait long between retries.
let quickSync = SyncOptions(retry: RetryPolicy(attempts: 3, initialDelay: 0.05, maxDelay: 0.2))

func treeID(_ store: Store) throws -> String {
    try git(store.path, "rev-parse", "HEAD^{tree}").out.trimmingCharacters(in: .whitespacesAndNewlines)
}

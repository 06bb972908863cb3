import Foundation
import XCTest

/// What a power cut could do, checked from the system calls: each command runs under `strace`,
/// and `Tests/Fixtures/crash_order.py` replays the calls against a file system that keeps only
/// what was fsynced. At the moment the branch moves, the objects it names and its new value
/// must be durable (names in their folders included); at the moment a pack is removed, the pack
/// that replaces it must be; and at the moment a change is acknowledged (the command prints its
/// result; the server answers 201), the branch as durably recorded must hold at least as many
/// commits as changes acknowledged so far. Covers `init` into new folders, single changes,
/// `clone`, `pull`, `compact` and sixteen concurrent writers through the server.
final class CrashOrderTests: XCTestCase {
    var dir: String!
    static let traced = "trace=openat,open,creat,write,pwrite64,writev,pwritev,sendmsg,sendto,fsync,fdatasync,syncfs,"
        + "rename,renameat,renameat2,link,linkat,unlink,unlinkat,ftruncate,fallocate,mkdir,mkdirat,mmap"
    static let checker = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/crash_order.py").path

    override func setUpWithError() throws {
        for tool in ["/usr/bin/strace", "/usr/bin/python3", "/usr/bin/curl"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("needs \(tool) (.ci/run installs strace, python3 and curl)")
        }
        dir = NSTemporaryDirectory() + "chatsync-crash-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The kernel names files by their real paths in the trace.
        dir = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        addTeardownBlock { [weak self] in if let dir = self?.dir { try? FileManager.default.removeItem(atPath: dir) } }
        let probe = try runTool("/usr/bin/strace", ["-qq", "-o", "/dev/null", "/bin/true"])
        if probe.status != 0 { throw XCTSkip("strace cannot trace here: \(probe.err)") }
    }

    /// Whether a process runs (not gone, not a zombie nobody has reaped).
    func alive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// A child process of `pid` (read from /proc: no procps needed).
    func child(of pid: pid_t) -> pid_t? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let p = pid_t(name), let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, pid_t(fields[1]) == pid { return p }
        }
        return nil
    }

    func commits(_ store: String) throws -> Int {
        let r = try runTool("/usr/bin/git", ["-C", store, "rev-list", "--count", "main"])
        return r.status == 0 ? Int(r.out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 : 0
    }

    /// The checker's verdict on a trace: (branch moves, objects put in place, acknowledgements).
    @discardableResult
    func check(_ trace: String, store: String, before: Int, ack: String,
               file: StaticString = #filePath, line: UInt = #line) throws -> (moves: Int, objects: Int, acks: Int) {
        let r = try runTool("/usr/bin/python3", [Self.checker, trace, store + "/.git", "main", String(before), ack])
        XCTAssertEqual(r.status, 0, "\(trace):\n\(r.out)\(r.err)", file: file, line: line)
        let summary = r.out.split(separator: "\n").last.map(String.init) ?? ""
        func number(before word: String) -> Int {
            guard let range = summary.range(of: " " + word) else { return -1 }
            return Int(summary[..<range.lowerBound].split(separator: " ").last ?? "") ?? -1
        }
        return (number(before: "branch moves"), number(before: "objects put in place"), number(before: "acknowledgements"))
    }

    /// Runs the built binary under strace; checks the trace. `ack`: what acknowledges a change
    /// (with `--json` the command writes its result as soon as it has it, not at exit).
    @discardableResult
    func traced(_ args: [String], store: String, ack: String = "stdout", name: String,
                file: StaticString = #filePath, line: UInt = #line) throws -> (moves: Int, objects: Int, acks: Int) {
        let before = try commits(store)
        let trace = dir + "/\(name).trace"
        let r = try runTool("/usr/bin/strace", ["-f", "-y", "-s", "256", "-qq", "-e", Self.traced, "-o", trace,
                                               CLITests.binary] + args + ["--json", "--store", store])
        XCTAssertEqual(r.status, 0, "\(args): \(r.err)", file: file, line: line)
        return try check(trace, store: store, before: before, ack: ack, file: file, line: line)
    }

    func testNothingAcknowledgedIsLostAndTheBranchNeverNamesWhatACrashCouldTake() throws {
        let bin = CLITests.binary
        // A store in folders that do not exist yet: the new folders' names are fsynced too.
        let a = dir + "/new/deeper/a"
        var seen = try traced(["init"], store: a, name: "init")
        XCTAssertEqual(seen.moves, 1)
        XCTAssertEqual(seen.acks, 1)
        let created = try runTool(bin, ["chat", "create", "--user", "u", "--json", "--store", a])
        let chat = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(created.out.utf8)) as? [String: Any])?["id"] as? String)
        for i in 1...3 {
            seen = try traced(["message", "add", chat, "--role", "user", "--content", "m\(i)"], store: a, name: "add\(i)")
            XCTAssertEqual(seen.moves, 1)
            XCTAssertEqual(seen.acks, 1)
            XCTAssertGreaterThanOrEqual(seen.objects, 2, "a pack and its index")
        }

        // Clone, then pull a change (a fast-forward) and a concurrent one (a merge commit).
        let b = dir + "/b"
        seen = try traced(["clone", a], store: b, ack: "none", name: "clone")
        XCTAssertEqual(seen.moves, 1)
        XCTAssertEqual(try runTool(bin, ["message", "add", chat, "--role", "user", "--content", "in a", "--store", a]).status, 0)
        seen = try traced(["pull"], store: b, name: "pull-ff")
        XCTAssertEqual(seen.moves, 1)
        XCTAssertEqual(try runTool(bin, ["message", "add", chat, "--role", "user", "--content", "in a again", "--store", a]).status, 0)
        XCTAssertEqual(try runTool(bin, ["message", "add", chat, "--role", "user", "--content", "in b", "--store", b]).status, 0)
        seen = try traced(["pull"], store: b, name: "pull-merge")
        XCTAssertEqual(seen.moves, 1)

        // Compaction: the pack that replaces the others is durable before they go.
        seen = try traced(["compact", "--grace", "0"], store: b, ack: "none", name: "compact")
        XCTAssertGreaterThanOrEqual(seen.objects, 2)
        XCTAssertEqual(try runTool("/usr/bin/git", ["-C", b, "fsck", "--strict"]).status, 0)

        // Sixteen writers at once through the server (group commit: a batch's changes are
        // answered once the branch that holds them is durable).
        let before = try commits(a)
        let trace = dir + "/serve.trace", out = dir + "/serve.out"
        let quoted = ["/usr/bin/strace", "-f", "-y", "-s", "256", "-qq", "-e", Self.traced, "-o", trace,
                      bin, "serve", "--store", a, "--port", "0"].map { "'\($0)'" }.joined(separator: " ")
        // Detached in a process group of its own (strace and the server, stopped together), and
        // holding none of this process's descriptors: Foundation waits for a child (here the
        // shell) through a descriptor that the server would otherwise inherit.
        let detach = "import os, sys; os.setsid(); os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])"
        let started = try runTool("/bin/sh", ["-c", "/usr/bin/python3 -c '\(detach)' \(quoted) > '\(out)' 2>&1 < /dev/null & echo $!"])
        let stracePID = try XCTUnwrap(pid_t(started.out.trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { if alive(stracePID) { kill(-stracePID, SIGKILL) } }
        var url = ""
        let deadline = Date().addingTimeInterval(60)
        while url.isEmpty && Date() < deadline {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if let r = text.range(of: "http://") { url = String(text[r.lowerBound...].prefix { !$0.isWhitespace }) }
            else { usleep(50_000) }
        }
        let serverPID = child(of: stracePID)
        XCTAssertFalse(url.isEmpty, "the server did not start")
        XCTAssertNotNil(serverPID)
        let writers = """
            for w in $(seq 16); do
              (for i in 1 2 3 4 5; do
                 curl -s -o /dev/null -w '%{http_code}\\n' -X POST -H 'Content-Type: application/json' \
                   -d "{\\"role\\": \\"user\\", \\"content\\": \\"w$w m$i\\"}" '\(url)/api/chats/\(chat)/messages'
               done) &
            done
            wait
            """
        let codes = try runTool("/bin/sh", ["-c", writers]).out.split(separator: "\n")
        XCTAssertEqual(codes.count, 80)
        XCTAssertEqual(Set(codes), ["201"])
        // Stop the server (it finishes what it has) and wait for strace to write the end.
        if let serverPID { kill(serverPID, SIGTERM) }
        let stopBy = Date().addingTimeInterval(30)
        while alive(stracePID) && Date() < stopBy { usleep(50_000) }
        XCTAssertFalse(alive(stracePID), "strace has written the whole trace")
        seen = try check(trace, store: a, before: before, ack: "http201")
        XCTAssertEqual(seen.acks, 80)
        XCTAssertGreaterThanOrEqual(seen.moves, 2)
        XCTAssertEqual(try commits(a), before + 80)
    }
}

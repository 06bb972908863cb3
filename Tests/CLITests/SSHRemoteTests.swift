import Foundation
import XCTest

/// Sync over `ssh://`: a real OpenSSH server on 127.0.0.1 (started and stopped by the test, its
/// own host key and authorized key in a temporary folder) and the built `chatsync` binary with
/// `CHATSYNC_SSH_KEY`. The server's host key is checked against `~/.ssh/known_hosts` (libgit2
/// 1.5.1 does this itself): an unknown or different host key, or a key the server refuses,
/// fails with a clear error and creates nothing.
final class SSHRemoteTests: XCTestCase {
    var dir: String!
    /// The server's process id (it runs as a daemon: a long-running child `Process` keeps
    /// Foundation from noticing that other children exit).
    var sshd: pid_t?

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") else {
            throw XCTSkip("needs OpenSSH's server (apt-get install openssh-server; .ci/run installs it)")
        }
        dir = NSTemporaryDirectory() + "chatsync-ssh-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/home/.ssh", withIntermediateDirectories: true)
        addTeardownBlock { [weak self] in
            if let pid = self?.sshd { kill(pid, SIGTERM) }
            if let dir = self?.dir { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    @discardableResult
    func run(_ tool: String, _ args: [String], env: [String: String] = [:]) throws -> (out: String, err: String, status: Int32) {
        try runTool(tool, args, env: env)
    }

    func key(_ name: String) throws -> String {
        let r = try run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", dir + "/" + name])
        XCTAssertEqual(r.status, 0, r.err)
        return try String(contentsOfFile: dir + "/\(name).pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
    }

    /// Starts sshd on a free port (with a new host key; `user_key.pub` may log in); returns the
    /// port and the host key as known_hosts has it.
    func startServer() throws -> (port: Int, hostKey: String) {
        let hostKey = try key("host_key")
        try FileManager.default.copyItem(atPath: dir + "/user_key.pub", toPath: dir + "/authorized_keys")
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        for attempt in 0..<10 {
            let port = Int.random(in: 20_000..<60_000)
            let log = dir + "/sshd-\(attempt).log"
            let config = """
                Port \(port)
                ListenAddress 127.0.0.1
                HostKey \(dir!)/host_key
                AuthorizedKeysFile \(dir!)/authorized_keys
                PidFile \(dir!)/sshd.pid
                StrictModes no
                UsePAM no
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                PermitRootLogin prohibit-password

                """
            try config.write(toFile: dir + "/sshd_config", atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/sshd")
            p.arguments = ["-E", log, "-f", dir + "/sshd_config"]
            try? FileManager.default.removeItem(atPath: dir + "/sshd.pid")
            try p.run()
            p.waitUntilExit()
            // The daemon says so in its log once it listens (or why it could not, and exits).
            let deadline = Date().addingTimeInterval(10)
            var said = ""
            while !said.contains("listening") && !said.contains("error") && Date() < deadline {
                usleep(20_000)
                said = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            }
            let pid = (try? String(contentsOfFile: dir + "/sshd.pid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            if said.contains("listening"), let pid { sshd = pid; return (port, hostKey) }
            if let pid { kill(pid, SIGTERM) }
        }
        throw XCTSkip("sshd did not start")
    }

    func testPushCloneAndPullOverSSHWithTheHostKeyChecked() throws {
        let bin = CLITests.binary
        let userKey = dir + "/user_key"
        _ = try key("user_key")
        let otherKey = try key("other_key")
        let (port, hostKey) = try startServer()
        let remote = dir + "/remote.git"
        XCTAssertEqual(try run("/usr/bin/git", ["init", "-q", "--bare", "--initial-branch=main", remote]).status, 0)
        let url = "ssh://root@127.0.0.1:\(port)\(remote)"
        let home = dir + "/home"
        let env = ["HOME": home, "CHATSYNC_SSH_KEY": userKey]

        // An unknown host: refused, nothing made.
        var r = try run(bin, ["clone", url, "--store", dir + "/unknown"], env: env)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("hostkey"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/unknown"))
        // A known host with another key (a man in the middle): refused, nothing made.
        try "[127.0.0.1]:\(port) \(otherKey)\n".write(toFile: home + "/.ssh/known_hosts", atomically: true, encoding: .utf8)
        r = try run(bin, ["clone", url, "--store", dir + "/other"], env: env)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("hostkey"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/other"))

        try "[127.0.0.1]:\(port) \(hostKey)\n".write(toFile: home + "/.ssh/known_hosts", atomically: true, encoding: .utf8)
        // A key the server does not know: refused at once (no endless retry), nothing made.
        r = try run(bin, ["clone", url, "--store", dir + "/refused"], env: ["HOME": home, "CHATSYNC_SSH_KEY": dir + "/other_key"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("authentication"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/refused"))

        // The real thing: A pushes a chat, B clones it, both add a message, both sync.
        let a = dir + "/a", b = dir + "/b"
        XCTAssertEqual(try run(bin, ["init", "--store", a], env: env).status, 0)
        let created = try run(bin, ["chat", "create", "--user", "u", "--json", "--store", a], env: env)
        XCTAssertEqual(created.status, 0, created.err)
        let chat = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(created.out.utf8)) as? [String: Any])?["id"] as? String)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "user", "--content", "from a", "--store", a], env: env).status, 0)
        XCTAssertEqual(try run(bin, ["remote", "add", "origin", url, "--store", a], env: env).status, 0)
        r = try run(bin, ["push", "--store", a], env: env)
        XCTAssertEqual(r.status, 0, r.err)
        r = try run(bin, ["clone", url, "--store", b], env: env)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "assistant", "--content", "from b", "--store", b], env: env).status, 0)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "user", "--content", "again from a", "--store", a], env: env).status, 0)
        r = try run(bin, ["push", "--store", b], env: env)
        XCTAssertEqual(r.status, 0, r.err)
        r = try run(bin, ["pull", "--store", a], env: env)
        XCTAssertEqual(r.status, 0, r.err)
        r = try run(bin, ["push", "--store", a], env: env)
        XCTAssertEqual(r.status, 0, r.err)
        // Both messages are in A, numbered 1…3, and the remote has A's tip (read with git).
        let list = try run(bin, ["message", "list", chat, "--json", "--store", a], env: env)
        let messages = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.out.utf8)) as? [[String: Any]])
        XCTAssertEqual(Set(messages.compactMap { $0["content"] as? String }), ["from a", "from b", "again from a"])
        XCTAssertEqual(messages.compactMap { $0["sequence_order"] as? Int }, [1, 2, 3])
        let tipA = try run("/usr/bin/git", ["-C", a, "rev-parse", "main"]).out
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "rev-parse", "main"]).out, tipA)
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "fsck", "--strict"]).status, 0)
    }
}

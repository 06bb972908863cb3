import Foundation
import XCTest

/// Sync over `https://`: git's own smart-HTTP backend behind TLS and basic authentication on
/// 127.0.0.1 (`Tests/Fixtures/https_git_server.py`, started and stopped by the test, with a
/// certificate for `localhost` made here), and the built `chatsync` binary. The server's
/// certificate must be signed by an authority chatsync trusts (`CHATSYNC_SSL_CA_FILE` or git's
/// `GIT_SSL_CAINFO`); the password comes from `CHATSYNC_GIT_PASSWORD` or git's credential helper.
final class HTTPSRemoteTests: XCTestCase {
    var dir: String!
    /// The server's process id (it runs detached: a long-running child `Process` keeps
    /// Foundation from noticing that other children exit).
    var server: pid_t?

    override func setUpWithError() throws {
        for tool in ["/usr/bin/python3", "/usr/bin/openssl", "/usr/lib/git-core/git-http-backend"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("needs \(tool) (.ci/run installs python3 and openssl; git brings git-http-backend)")
        }
        dir = NSTemporaryDirectory() + "chatsync-https-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/home", withIntermediateDirectories: true)
        addTeardownBlock { [weak self] in
            if let pid = self?.server { kill(pid, SIGTERM) }
            if let dir = self?.dir { try? FileManager.default.removeItem(atPath: dir) }
        }
    }

    @discardableResult
    func run(_ tool: String, _ args: [String], env: [String: String] = [:]) throws -> (out: String, err: String, status: Int32) {
        try runTool(tool, args, env: env)
    }

    /// Makes a certificate for `localhost` (its own authority) in `name.pem`, its key in `name.key`.
    func certificate(_ name: String) throws -> String {
        let r = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                             "-keyout", dir + "/\(name).key", "-out", dir + "/\(name).pem",
                                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
        XCTAssertEqual(r.status, 0, r.err)
        return dir + "/\(name).pem"
    }

    /// Starts the server for the repositories in `root` (user `alice`, password `s3cret`);
    /// returns its port.
    func startServer(root: String, certificate: String) throws -> Int {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/https_git_server.py").path
        let key = certificate.replacingOccurrences(of: ".pem", with: ".key")
        let portFile = dir + "/port", log = dir + "/server.log"
        let quoted = [script, root, certificate, key, "alice", "s3cret"].map { "'\($0)'" }.joined(separator: " ")
        let r = try run("/bin/sh", ["-c", "/usr/bin/python3 \(quoted) > '\(portFile)' 2> '\(log)' < /dev/null & echo $!"])
        server = pid_t(r.out.trimmingCharacters(in: .whitespacesAndNewlines))
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), text.hasSuffix("\n"),
               let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return port
            }
            usleep(20_000)
        }
        XCTFail("the https git server did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        throw XCTSkip("no server")
    }

    /// The requests the server answered with 401 so far.
    func refusals() -> Int {
        let log = (try? String(contentsOfFile: dir + "/server.log", encoding: .utf8)) ?? ""
        return log.split(separator: "\n").filter { $0.hasSuffix("\" 401 -") }.count
    }

    func testPushCloneAndSyncOverHTTPSWithTheCertificateAndPasswordChecked() throws {
        let bin = CLITests.binary
        let trusted = try certificate("server")
        let stranger = try certificate("stranger")
        let repos = dir + "/repos", remote = dir + "/repos/chats.git"
        XCTAssertEqual(try run("/usr/bin/git", ["init", "-q", "--bare", "--initial-branch=main", remote]).status, 0)
        let port = try startServer(root: repos, certificate: trusted)
        let url = "https://localhost:\(port)/chats.git"
        let home = dir + "/home"
        let login = ["HOME": home, "CHATSYNC_GIT_USERNAME": "alice", "CHATSYNC_GIT_PASSWORD": "s3cret"]
        func with(_ env: [String: String], _ more: [String: String]) -> [String: String] { env.merging(more) { $1 } }

        // The store to share: a chat with one message.
        let a = dir + "/a", b = dir + "/b"
        XCTAssertEqual(try run(bin, ["init", "--store", a], env: login).status, 0)
        let created = try run(bin, ["chat", "create", "--user", "u", "--json", "--store", a], env: login)
        XCTAssertEqual(created.status, 0, created.err)
        let chat = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(created.out.utf8)) as? [String: Any])?["id"] as? String)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "user", "--content", "from a", "--store", a], env: login).status, 0)
        XCTAssertEqual(try run(bin, ["remote", "add", "origin", url, "--store", a], env: login).status, 0)
        let tipBefore = try run("/usr/bin/git", ["-C", a, "rev-parse", "main"]).out

        // A certificate no trusted authority signed (here: the system's authorities only, or
        // another self-signed one): refused, nothing pushed or made.
        var r = try run(bin, ["push", "--store", a], env: login)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("certificate"), r.err)
        r = try run(bin, ["clone", url, "--store", dir + "/untrusted"], env: with(login, ["CHATSYNC_SSL_CA_FILE": stranger]))
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("certificate"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/untrusted"))
        // An authority file that is not there, or holds no certificate: named, nothing made.
        for bad in [dir + "/missing.pem", dir + "/server.log"] {
            r = try run(bin, ["clone", url, "--store", dir + "/bad-ca"], env: with(login, ["CHATSYNC_SSL_CA_FILE": bad]))
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.err.contains("CHATSYNC_SSL_CA_FILE") && r.err.contains(bad), r.err)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad-ca"))
        }
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "for-each-ref"]).out, "", "nothing reached the remote")

        // A wrong password: refused at once (not retried), nothing made.
        let refusedBefore = refusals()
        r = try run(bin, ["clone", url, "--store", dir + "/refused"],
                    env: with(login, ["CHATSYNC_SSL_CA_FILE": trusted, "CHATSYNC_GIT_PASSWORD": "wrong"]))
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("authentication"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/refused"))
        XCTAssertLessThanOrEqual(refusals() - refusedBefore, 3, "a refused password is not tried again and again")

        // The authority file is for https remotes only: a push to a folder ignores it.
        let local = dir + "/local.git"
        XCTAssertEqual(try run("/usr/bin/git", ["init", "-q", "--bare", "--initial-branch=main", local]).status, 0)
        XCTAssertEqual(try run(bin, ["remote", "add", "local", local, "--store", a]).status, 0)
        r = try run(bin, ["push", "local", "--store", a], env: with(login, ["CHATSYNC_SSL_CA_FILE": dir + "/missing.pem"]))
        XCTAssertEqual(r.status, 0, r.err)

        // The real thing. A pushes (authority from CHATSYNC_SSL_CA_FILE, password from the environment).
        let trustA = with(login, ["CHATSYNC_SSL_CA_FILE": trusted])
        r = try run(bin, ["push", "--store", a], env: trustA)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "rev-parse", "main"]).out, tipBefore)
        // B clones with git's settings: the authority from GIT_SSL_CAINFO and the password from
        // git's credential helper (`store`, in B's home).
        try "[credential]\n\thelper = store\n".write(toFile: home + "/.gitconfig", atomically: true, encoding: .utf8)
        try "https://alice:s3cret@localhost:\(port)\n".write(toFile: home + "/.git-credentials", atomically: true, encoding: .utf8)
        let trustB = ["HOME": home, "GIT_SSL_CAINFO": trusted]
        r = try run(bin, ["clone", url, "--store", b], env: trustB)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "assistant", "--content", "from b", "--store", b], env: trustB).status, 0)
        XCTAssertEqual(try run(bin, ["message", "add", chat, "--role", "user", "--content", "again from a", "--store", a], env: trustA).status, 0)
        r = try run(bin, ["push", "--store", b], env: trustB)
        XCTAssertEqual(r.status, 0, r.err)
        r = try run(bin, ["sync", "--json", "--store", a], env: trustA)
        XCTAssertEqual(r.status, 0, r.err)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(report["fetched_commits"] as? Int, 1)
        XCTAssertEqual(report["pushed_commits"] as? Int, 2, "A's message and the merge")

        // Both messages are in A, numbered 1…3, and the remote has A's tip (read with git).
        let list = try run(bin, ["message", "list", chat, "--json", "--store", a], env: trustA)
        let messages = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.out.utf8)) as? [[String: Any]])
        XCTAssertEqual(Set(messages.compactMap { $0["content"] as? String }), ["from a", "from b", "again from a"])
        XCTAssertEqual(messages.compactMap { $0["sequence_order"] as? Int }, [1, 2, 3])
        let tipA = try run("/usr/bin/git", ["-C", a, "rev-parse", "main"]).out
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "rev-parse", "main"]).out, tipA)
        XCTAssertEqual(try run("/usr/bin/git", ["-C", remote, "fsck", "--strict"]).status, 0)
        // B pulls it over the same https remote and agrees.
        r = try run(bin, ["pull", "--store", b], env: trustB)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertEqual(try run("/usr/bin/git", ["-C", b, "rev-parse", "main"]).out, tipA)
    }
}

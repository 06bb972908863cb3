@testable import ChatSync
import Foundation
import GitKit
import XCTest

/// Listing a user's sessions and finding the active one read only what changed since the last
/// look, and always agree with the branch, whoever moved it.
final class SessionIndexTests: XCTestCase {
    /// What a full read of the branch's session documents says.
    func scan(_ store: Store) throws -> [String: UserSession] {
        try store.read { snap in
            Dictionary(uniqueKeysWithValues: try snap.shardedDocuments(UserSession.self, in: "sessions").map { ($0.id, $0) })
        }
    }

    func assertAgrees(_ store: Store, file: StaticString = #filePath, line: UInt = #line) throws {
        let listed = try store.listSessions()
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: listed.map { ($0.id, $0) }), try scan(store), file: file, line: line)
    }

    func testListingReadsOnlyWhatChangedAndAgreesWithTheBranch() throws {
        let store = try makeStore(self)
        for i in 0..<120 { _ = try store.createSession(userID: "user-\(i % 40)") }
        try assertAgrees(store)
        let afterFirstLook = store.sessionIndex.decoded
        XCTAssertGreaterThanOrEqual(afterFirstLook, 120, "built from git on first use")

        // A change in this process: one new session, one completed; nothing else is read.
        let s = try store.createSession(userID: "user-3", name: "new")
        XCTAssertEqual(try store.listSessions(userID: "user-3", status: .active).map(\.id), [s.id])
        XCTAssertEqual(try store.listSessions(userID: "user-3").count, 4)
        XCTAssertLessThanOrEqual(store.sessionIndex.decoded - afterFirstLook, 2)
        XCTAssertEqual(try store.activeSession(userID: "user-3")?.id, s.id)

        // Another writer (a second handle, as another process would be).
        let other = try Store.open(at: store.path, options: store.options)
        let t = try other.createSession(userID: "user-7")
        _ = try other.updateSession(s.id, patch: ["status": .string("abandoned")])
        other.close()
        XCTAssertEqual(try store.listSessions(userID: "user-7", status: .active).map(\.id), [t.id])
        XCTAssertEqual(try store.listSessions(userID: "user-3", status: .active), [])
        XCTAssertNil(try store.activeSession(userID: "user-3"))
        try assertAgrees(store)

        // A commit made with plain git: a session file edited by hand and deleted another.
        store.syncWorkTree()
        let edited = try XCTUnwrap(try store.listSessions(userID: "user-9").first)
        let oldName = try XCTUnwrap(edited.name)
        let path = Layout.session(edited.id)
        var text = try String(contentsOfFile: store.path + "/" + path, encoding: .utf8)
        XCTAssertTrue(text.contains("\"name\": \"\(oldName)\""), text)
        text = text.replacingOccurrences(of: "\"name\": \"\(oldName)\"", with: "\"name\": \"Renamed by hand\"")
        try text.write(toFile: store.path + "/" + path, atomically: true, encoding: .utf8)
        let gone = try XCTUnwrap(try store.listSessions(userID: "user-10").first)
        XCTAssertEqual(try git(store.path, "rm", "-q", Layout.session(gone.id)).status, 0)
        XCTAssertEqual(try git(store.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "by hand").status, 0)
        XCTAssertEqual(try store.session(edited.id).name, "Renamed by hand")
        XCTAssertEqual(try store.listSessions(userID: "user-9").first { $0.id == edited.id }?.name, "Renamed by hand")
        XCTAssertFalse(try store.listSessions(userID: "user-10").contains { $0.id == gone.id })
        try assertAgrees(store)

        // A new handle builds its index from git.
        let fresh = try Store.open(at: store.path, options: store.options)
        defer { fresh.close() }
        XCTAssertEqual(Set(try fresh.listSessions().map(\.id)), Set(try store.listSessions().map(\.id)))
    }

    /// A new handle (the next CLI command, a restarted server) starts from the index an earlier
    /// one left in `.git/chatsync/sessions-index` and reads only the documents that match, or
    /// changed since; a file it cannot trust whole is ignored and the index built from git.
    func testTheNextProcessStartsFromTheSavedIndex() throws {
        let store = try makeStore(self)
        let odd = "tab\there \\ new\nline"
        for i in 0..<80 { _ = try store.createSession(userID: i == 5 ? odd : "user-\(i % 20)") }
        _ = try store.listSessions()
        store.close()
        let file = store.gitDir + "chatsync/sessions-index"
        XCTAssertTrue(FileManager.default.fileExists(atPath: file), "built from git, the index is saved")

        func fresh() throws -> Store { try Store.open(at: store.path, options: store.options) }
        func agrees(_ s: Store, line: UInt = #line) throws {
            let listed = try s.listSessions()
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: listed.map { ($0.id, $0) }), try scan(s), line: line)
        }

        // Unchanged branch: the file is the index; only the matching sessions are read.
        var next = try fresh()
        XCTAssertEqual(try next.listSessions(userID: "user-7").count, 4)
        XCTAssertEqual(next.sessionIndex.loads, 1)
        XCTAssertEqual(next.sessionIndex.decoded, 4)
        XCTAssertEqual(try next.listSessions(userID: odd).map(\.userID), [odd], "escaped and read back")
        XCTAssertEqual(try next.activeSession(userID: "user-7")?.userID, "user-7")
        try agrees(next)
        next.close()

        // Another process changed sessions since the file was written: only those are read.
        let other = try fresh()
        let created = try other.createSession(userID: "user-7", name: "newest")
        let victim = try XCTUnwrap(try other.listSessions(userID: "user-8").first)
        _ = try other.archiveSession(victim.id)
        other.close()
        next = try fresh()
        XCTAssertEqual(try next.listSessions(userID: "user-7", status: .active).map(\.id), [created.id])
        XCTAssertEqual(try next.session(victim.id).status, .archived)
        XCTAssertEqual(next.sessionIndex.loads, 1)
        XCTAssertLessThanOrEqual(next.sessionIndex.decoded, 8, "the changed sessions and user-7's, not all 81")
        try agrees(next)
        next.close()

        // A commit by plain git, then a file that cannot be trusted: each time the index agrees.
        let byHand = try XCTUnwrap(try store.listSessions(userID: "user-3").first)
        XCTAssertEqual(try git(store.path, "rm", "-q", Layout.session(byHand.id)).status, 0)
        XCTAssertEqual(try git(store.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "by hand").status, 0)
        let good = try Data(contentsOf: URL(fileURLWithPath: file))
        let text = String(decoding: good, as: UTF8.self)
        let damaged: [String: String] = [
            "truncated": String(text.prefix(text.count / 2)),
            "a line lost": text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().filter { $0.offset != 5 }.map { String($0.element) }.joined(separator: "\n"),
            "a tree this repository does not have": text.split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("tree ") ? "tree 0123456789012345678901234567890123456789" : String($0) }.joined(separator: "\n"),
            "garbage": "chatsync session index 1\ntree none\ncount 1\nnot\ta\tsession\nend\n",
            "another version": text.replacingOccurrences(of: "index 1", with: "index 9"),
        ]
        for (what, content) in damaged.sorted(by: { $0.key < $1.key }) {
            try Data(content.utf8).write(to: URL(fileURLWithPath: file))
            next = try fresh()
            XCTAssertFalse(try next.listSessions(userID: "user-3").contains { $0.id == byHand.id }, what)
            XCTAssertEqual(try next.listSessions(userID: "user-7", status: .active).map(\.id), [created.id], what)
            try agrees(next)
            next.close()
        }
        try FileManager.default.removeItem(atPath: file)
        next = try fresh()
        try agrees(next)
        XCTAssertEqual(next.sessionIndex.loads, 0)
        XCTAssertEqual(next.sessionIndex.saves, 1, "missing, it is built from git and saved")
        next.close()
    }

    /// The index may have been brought to a tree that exists only in the writer's memory (a
    /// batch not yet on the branch); a reader that cannot see that tree reads everything again
    /// instead of failing.
    func testAReaderThatCannotSeeTheIndexedTreeRebuildsIt() throws {
        let store = try makeStore(self)
        let s1 = try store.createSession(userID: "a")
        store.close()
        let writerSide = try Repository.open(store.path)
        try writerSide.bufferObjectsInMemory()
        let tip = try XCTUnwrap(try writerSide.referenceTarget("refs/heads/main"))
        let onDisk = try writerSide.commit(tip).tree
        // A second session, written only to memory.
        var s2 = s1
        s2.id = "in-memory-session"
        let blob = try writerSide.writeBlob(try DocumentCoding.encode(s2))
        let inMemory = try writerSide.updateTree(onDisk, [.upsert(Layout.session(s2.id), blob)])
        let index = SessionIndex()
        XCTAssertEqual(Set(try index.sessions(Snapshot(repo: writerSide, commit: nil, tree: inMemory)).map(\.id)), [s1.id, s2.id])
        let readerSide = try Repository.open(store.path)
        XCTAssertEqual(try index.sessions(Snapshot(repo: readerSide, commit: tip, tree: onDisk)).map(\.id), [s1.id])
        writerSide.discardBufferedObjects()
    }
}

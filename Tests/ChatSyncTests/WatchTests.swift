import ChatSync
import Foundation
import Synchronization
import XCTest

/// Collects a watch stream's events.
final class EventSink: @unchecked Sendable {
    private let events = Box()
    private var task: Task<Void, Never>?

    final class Box: @unchecked Sendable {
        let lock = NSLock()
        var items: [ChangeEvent] = []
        var error: Error?
    }

    init(_ stream: AsyncThrowingStream<ChangeEvent, Error>) {
        let box = events
        task = Task {
            do {
                for try await e in stream { box.lock.withLock { box.items.append(e) } }
            } catch {
                box.lock.withLock { box.error = error }
            }
        }
    }

    var all: [ChangeEvent] { events.lock.lock(); defer { events.lock.unlock() }; return events.items }
    var failure: Error? { events.lock.lock(); defer { events.lock.unlock() }; return events.error }

    /// Waits (up to `timeout` seconds) until `done` holds for the events so far.
    @discardableResult
    func wait(timeout: Double = 10, _ done: ([ChangeEvent]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if done(all) { return true }
            usleep(20_000)
        }
        return done(all)
    }

    func stop() { task?.cancel() }
}

final class WatchTests: XCTestCase {
    func watch(_ store: Store, since: String? = nil, _ configure: (inout WatchOptions) -> Void = { _ in }) -> EventSink {
        var o = WatchOptions()
        o.quietPeriod = 0.2
        configure(&o)
        let sink = EventSink(store.watch(since: since, options: o))
        addTeardownBlock { sink.stop() }
        usleep(200_000)  // let it take its starting point
        return sink
    }

    func testThisProcessesCommitsAreLocalEvents() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let sink = watch(store)
        let m = try store.appendMessage(chatID: chat.id, role: .user, content: "hi")
        let head = try store.head()?.hex
        XCTAssertTrue(sink.wait { $0.contains { $0.id == m.id } })
        let e = try XCTUnwrap(sink.all.first { $0.id == m.id })
        XCTAssertEqual(e.kind, .created)
        XCTAssertEqual(e.type, .message)
        XCTAssertEqual(e.chatID, chat.id)
        XCTAssertEqual(e.origin, .local)
        XCTAssertEqual(e.commit, head)
        try store.deleteChat(chat.id)
        XCTAssertTrue(sink.wait { events in
            events.contains { $0.kind == .deleted && $0.type == .chat } && events.contains { $0.kind == .deleted && $0.id == m.id }
        }, "deleting a chat deletes its messages, one event each: \(sink.all)")
    }

    func testOtherWritersAndPlainGitAreExternalEvents() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let sink = watch(store) { $0.workTree = false }
        // Another store handle on the same folder acts as another process.
        let other = try Store.open(at: store.path, options: store.options)
        defer { other.close() }
        let m = try other.appendMessage(chatID: chat.id, role: .assistant, content: "from elsewhere")
        XCTAssertTrue(sink.wait { $0.contains { $0.id == m.id && $0.origin == .external } }, "\(sink.all)")
        // Plain git: a commit made with the git command in the store.
        store.syncWorkTree()
        let title = store.path + "/" + Layout.chat(chat.id)
        let text = try String(contentsOfFile: title, encoding: .utf8).replacingOccurrences(of: "\"user_id\": \"u\"", with: "\"user_id\": \"v\"")
        try text.write(toFile: title, atomically: true, encoding: .utf8)
        try git(store.path, "commit", "-qam", "hand commit with git")
        XCTAssertTrue(sink.wait { $0.contains { $0.type == .chat && $0.kind == .updated && $0.origin == .external } }, "\(sink.all)")
    }

    /// A move of the branch by someone else wakes the watch at once (inotify), not at the next
    /// poll: with a poll a minute apart, the events still come within seconds.
    func testMovesByOthersAreSeenWithoutWaitingForThePoll() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let sink = watch(store) { $0.workTree = false; $0.pollInterval = 60 }
        let other = try Store.open(at: store.path, options: store.options)
        defer { other.close() }
        for round in 0..<3 {
            let m = try other.appendMessage(chatID: chat.id, role: .assistant, content: "from elsewhere \(round)")
            XCTAssertTrue(sink.wait(timeout: 5) { $0.contains { $0.id == m.id && $0.origin == .external } }, "\(round): \(sink.all)")
        }
        // However many loops watch the store, one inotify instance serves them, while any does.
        func inotifyInstances() -> Int {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
            return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == "anon_inode:inotify" }.count
        }
        let before = inotifyInstances()
        let more = (0..<20).map { _ in watch(store) { $0.workTree = false; $0.pollInterval = 60 } }
        XCTAssertEqual(inotifyInstances(), before, "20 more watch loops, no more inotify instances")
        let m = try other.appendMessage(chatID: chat.id, role: .assistant, content: "to every loop")
        for loop in more { XCTAssertTrue(loop.wait(timeout: 5) { $0.contains { $0.id == m.id } }) }
        // Stopped, the loops end at once (not at their next poll, a minute away), and the
        // inotify instance goes with the last of them. (First the work trees settle, so that
        // no write in the git folder wakes the loops.)
        store.syncWorkTree()
        other.syncWorkTree()
        usleep(500_000)
        for loop in more { loop.stop() }
        sink.stop()
        let deadline = Date().addingTimeInterval(5)
        while inotifyInstances() >= before && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(inotifyInstances(), before - 1, "the store's instance is closed once no loop listens")
        let again = watch(store) { $0.workTree = false; $0.pollInterval = 60 }
        XCTAssertEqual(inotifyInstances(), before, "and opened again for the next loop")
        // The git command moves the branch its own way (a lock file renamed over it).
        other.syncWorkTree()
        let title = store.path + "/" + Layout.chat(chat.id)
        let text = try String(contentsOfFile: title, encoding: .utf8).replacingOccurrences(of: "\"user_id\": \"u\"", with: "\"user_id\": \"w\"")
        try text.write(toFile: title, atomically: true, encoding: .utf8)
        try git(store.path, "commit", "-qam", "hand commit with git")
        XCTAssertTrue(again.wait(timeout: 5) { $0.contains { $0.type == .chat && $0.kind == .updated && $0.origin == .external } }, "\(again.all)")
    }

    func testHandEditsAreValidatedCommittedAndReported() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "Original")
        store.syncWorkTree()
        let sink = watch(store)
        let file = store.path + "/" + Layout.chat(chat.id)
        let before = try store.commitCount()

        // An invalid edit: an error event naming the path and the reason; nothing committed; the file untouched.
        let invalid = Data(#"{"id": "\#(chat.id)", "user_id": "u", "title": 42, "created_at": "2026-11-20T10:00:00.000Z", "updated_at": "2026-11-20T10:00:00.000Z"}"#.utf8)
        try invalid.write(to: URL(fileURLWithPath: file))
        XCTAssertTrue(sink.wait { $0.contains { $0.kind == .error } }, "\(sink.all)")
        let error = try XCTUnwrap(sink.all.first { $0.kind == .error })
        XCTAssertEqual(error.path, Layout.chat(chat.id))
        XCTAssertEqual(error.origin, .workdir)
        XCTAssertTrue(error.error?.contains("title") == true, "\(error)")
        usleep(300_000)
        XCTAssertEqual(try store.commitCount(), before)
        XCTAssertEqual(FileManager.default.contents(atPath: file), invalid, "the file is left as the person wrote it")

        // A later valid edit (written the way editors do: temp file, then rename) is committed.
        var doc = try DocumentCoding.encode(chat)
        doc = Data(String(decoding: doc, as: UTF8.self).replacingOccurrences(of: "\"Original\"", with: "\"Renamed by hand\"").utf8)
        try doc.write(to: URL(fileURLWithPath: file + ".tmp"))
        XCTAssertEqual(rename(file + ".tmp", file), 0)
        XCTAssertTrue(sink.wait { $0.contains { $0.kind == .updated && $0.origin == .workdir } }, "\(sink.all)")
        XCTAssertEqual(try store.chat(chat.id).title, "Renamed by hand")
        XCTAssertGreaterThan(try store.chat(chat.id).updatedAt, chat.updatedAt)
        XCTAssertEqual(try store.commitCount(), before + 1)
        XCTAssertTrue(try git(store.path, "log", "-1", "--format=%s").out.contains("by hand"))
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")

        // A message written by hand into the chat's folder is committed and numbered.
        let m = ChatMessage(id: "hand-1", chatID: chat.id, sequenceOrder: 99, role: .user, content: "typed in an editor", createdAt: .now())
        let mPath = store.path + "/" + Layout.message(chat.id, m.id)
        try FileManager.default.createDirectory(atPath: (mPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try DocumentCoding.encode(m).write(to: URL(fileURLWithPath: mPath))
        XCTAssertTrue(sink.wait { $0.contains { $0.id == "hand-1" && $0.kind == .created } }, "\(sink.all)")
        XCTAssertEqual(try store.message(chatID: chat.id, id: "hand-1").sequenceOrder, 1)
        // A file where no document belongs is reported.
        try Data("{}".utf8).write(to: URL(fileURLWithPath: store.path + "/stray.json"))
        XCTAssertTrue(sink.wait { $0.contains { $0.path == "stray.json" && $0.kind == .error } }, "\(sink.all)")
        XCTAssertTrue(try store.verify().ok, "the stray file was not committed")
        XCTAssertFalse(try git(store.path, "ls-files").out.contains("stray.json"))
    }

    /// Hand edits as a serious user makes them, found by a black-box probe: each is one commit
    /// that keeps what others changed meanwhile, leaves the work tree and git's index showing the
    /// branch (no commit loop, no file missing from the index), and deletes folders the way the
    /// delete commands do.
    func testHandEditsKeepOthersChangesLeaveTheWorkTreeCleanAndDeleteFoldersWhole() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "Original")
        let m1 = try store.appendMessage(chatID: chat.id, role: .user, content: "one")
        _ = try store.appendMessage(chatID: chat.id, role: .user, content: "two")
        let mission = try store.createMission(userID: "u", name: "M")
        let hops = try (1...3).map { try store.addHop(missionID: mission.id, name: "h\($0)") }
        _ = try store.addToolStep(hopID: hops[1].id, toolID: "t", name: "s")
        let asset = try store.createAsset(userID: "u", name: "A", schemaDefinition: .emptyObject, scopeType: .hop, scopeID: hops[1].id, role: .input)
        _ = try store.updateMission(mission.id, patch: ["current_hop_id": .string(hops[1].id)])
        let session = try store.createSession(userID: "u", chatID: chat.id)
        // Edited while nothing watched: taken when the watch starts.
        store.syncWorkTree()
        let chatFile = store.path + "/" + Layout.chat(chat.id)
        func edit(_ file: String, _ from: String, _ to: String) throws {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            XCTAssertTrue(text.contains(from), "\(from) in \(text)")
            try text.replacingOccurrences(of: from, with: to).write(toFile: file, atomically: true, encoding: .utf8)
        }
        try edit(chatFile, "\"Original\"", "\"Edited offline\"")
        let sink = watch(store) { $0.quietPeriod = 0.1 }
        XCTAssertTrue(sink.wait { $0.contains { $0.id == chat.id && $0.kind == .updated && $0.origin == .workdir } }, "\(sink.all)")
        XCTAssertEqual(try store.chat(chat.id).title, "Edited offline")

        // A hand edit and a command changing the same chat at once: both are kept.
        try edit(chatFile, "\"Edited offline\"", "\"Edited by hand\"")
        _ = try store.updateChat(chat.id, patch: ["context_data": .object(["k": .string("cli")])])
        XCTAssertTrue(sink.wait { $0.filter { $0.id == chat.id && $0.origin == .workdir }.count >= 2 }, "\(sink.all)")
        let merged = try store.chat(chat.id)
        XCTAssertEqual(merged.title, "Edited by hand")
        XCTAssertEqual(merged.contextData, .object(["k": .string("cli")]), "the command's change is not undone")

        // A message's number set by hand is derived again: nothing to commit, and the file shows
        // the number (it kept the hand's, and was committed again and again).
        let m1File = store.path + "/" + Layout.message(chat.id, m1.id)
        let beforeRenumber = try store.commitCount()
        try edit(m1File, "\"sequence_order\": 1", "\"sequence_order\": 7")
        XCTAssertTrue(sink.wait { _ in (try? String(contentsOfFile: m1File, encoding: .utf8))?.contains("\"sequence_order\": 1") == true })
        usleep(800_000)
        XCTAssertEqual(try store.commitCount(), beforeRenumber, "no commit, no loop")
        XCTAssertEqual(try store.message(chatID: chat.id, id: m1.id).sequenceOrder, 1)
        // Its content edited by hand: one commit, with updated_at.
        try edit(m1File, "\"one\"", "\"one, edited\"")
        XCTAssertTrue(sink.wait { $0.contains { $0.id == m1.id && $0.origin == .workdir } }, "\(sink.all)")
        XCTAssertNotNil(try store.message(chatID: chat.id, id: m1.id).updatedAt)
        XCTAssertEqual(try store.commitCount(), beforeRenumber + 1)

        // A message file made by hand: committed, and in git's index (a plain `git commit` must not delete it).
        let typed = ChatMessage(id: "hand-1", chatID: chat.id, sequenceOrder: 3, role: .user, content: "typed", createdAt: .now())
        let typedFile = store.path + "/" + Layout.message(chat.id, typed.id)
        try FileManager.default.createDirectory(atPath: (typedFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try DocumentCoding.encode(typed).write(to: URL(fileURLWithPath: typedFile))
        XCTAssertTrue(sink.wait { $0.contains { $0.id == "hand-1" && $0.kind == .created } }, "\(sink.all)")
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "", "work tree and index show the branch")

        // A message moved into a wrong shard folder: refused there, and not deleted from its place.
        let wrongShard = store.path + "/" + Layout.messagesDir(chat.id) + "/zz"
        try FileManager.default.createDirectory(atPath: wrongShard, withIntermediateDirectories: true)
        let beforeMove = try store.commitCount()
        XCTAssertEqual(rename(m1File, wrongShard + "/\(m1.id).json"), 0)
        XCTAssertTrue(sink.wait { $0.contains { $0.path == Layout.message(chat.id, m1.id) && $0.kind == .error } }, "\(sink.all)")
        usleep(400_000)
        XCTAssertEqual(try store.commitCount(), beforeMove)
        XCTAssertNoThrow(try store.message(chatID: chat.id, id: m1.id))
        XCTAssertEqual(rename(wrongShard + "/\(m1.id).json", m1File), 0)
        try FileManager.default.removeItem(atPath: wrongShard)

        // The lifecycle and what never changes hold for hand edits too.
        _ = try store.archiveSession(session.id)
        store.syncWorkTree()
        let before = try store.commitCount()
        let sessionFile = store.path + "/" + Layout.session(session.id)
        try edit(sessionFile, "\"archived\"", "\"active\"")
        XCTAssertTrue(sink.wait { $0.contains { $0.path == Layout.session(session.id) && $0.kind == .error } }, "\(sink.all)")
        try git(store.path, "checkout", "--", Layout.session(session.id))
        try edit(m1File, "\"created_at\": \"", "\"created_at\": \"1")
        XCTAssertTrue(sink.wait { $0.contains { $0.path == Layout.message(chat.id, m1.id) && $0.kind == .error && $0.error?.contains("created_at") == true } }, "\(sink.all)")
        try git(store.path, "checkout", "--", Layout.message(chat.id, m1.id))
        XCTAssertEqual(try store.commitCount(), before)

        // A chat folder a session uses: refused whole (no message deleted one by one).
        try FileManager.default.removeItem(atPath: store.path + "/" + Layout.chatDir(chat.id))
        XCTAssertTrue(sink.wait { $0.contains { $0.path == Layout.chat(chat.id) && $0.kind == .error } }, "\(sink.all)")
        usleep(500_000)
        XCTAssertEqual(try store.commitCount(), before)
        XCTAssertEqual(try store.listMessages(chatID: chat.id).count, 3)
        try git(store.path, "checkout", "--", Layout.chatDir(chat.id))

        // A hop's folder: deleted as `hop delete` does (its steps and assets, the current hop, numbers).
        try FileManager.default.removeItem(atPath: store.path + "/" + Layout.hopDir(mission.id, hops[1].id))
        XCTAssertTrue(sink.wait { $0.contains { $0.id == hops[1].id && $0.kind == .deleted } }, "\(sink.all)")
        XCTAssertEqual(try store.listHops(missionID: mission.id).map(\.id), [hops[0].id, hops[2].id])
        XCTAssertEqual(try store.listHops(missionID: mission.id).map(\.sequenceOrder), [1, 2])
        XCTAssertNil(try store.mission(mission.id).currentHopID)
        XCTAssertThrowsError(try store.asset(asset.id))
        XCTAssertEqual(try store.commitCount(), before + 1, "one commit")
        let report = try store.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    func testResumingFromACursorSeesNoChangeTwiceAndMissesNone() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let start = try XCTUnwrap(store.head()).hex
        let first = watch(store, since: start) { $0.workTree = false }
        var ids: [String] = []
        for i in 0..<3 { ids.append(try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)").id) }
        XCTAssertTrue(first.wait { $0.filter { $0.type == .message }.count == 3 })
        let cursor = try XCTUnwrap(first.all.last?.commit)
        first.stop()
        // While nobody watches: more changes, from this process and another.
        for i in 3..<5 { ids.append(try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)").id) }
        let other = try Store.open(at: store.path, options: store.options)
        ids.append(try other.appendMessage(chatID: chat.id, role: .user, content: "5").id)
        other.close()
        let second = watch(store, since: cursor) { $0.workTree = false }
        ids.append(try store.appendMessage(chatID: chat.id, role: .user, content: "6").id)
        XCTAssertTrue(second.wait { $0.filter { $0.type == .message }.count >= 4 })
        usleep(200_000)
        let seen = first.all.compactMap(\.id) + second.all.compactMap(\.id)
        XCTAssertEqual(seen, ids, "every change once, in commit order")
        // A replay from the start gives the same events again.
        let replay = watch(store, since: start) { $0.workTree = false }
        XCTAssertTrue(replay.wait { $0.count >= ids.count })
        XCTAssertEqual(replay.all.compactMap(\.id), ids)
    }

    /// A watcher stopped in the middle of a commit's changes resumes after the last one it
    /// handled (its `cursor`): the rest of that commit, then what follows, none twice.
    func testResumingInsideACommitGetsTheRestOfIt() throws {
        let store = try makeStore(self)
        _ = try store.createSession(userID: "u")
        let start = try XCTUnwrap(store.head()).hex
        // One commit of three changes: a chat, a session, and the user's other session completed.
        _ = try store.createSession(userID: "u")
        let after = try store.appendMessage(chatID: try store.createChat(userID: "u").id, role: .user, content: "later")
        let first = watch(store, since: start) { $0.workTree = false }
        XCTAssertTrue(first.wait { $0.contains { $0.id == after.id } })
        first.stop()
        let all = first.all
        let commit = try XCTUnwrap(all.first?.commit)
        let ofCommit = all.filter { $0.commit == commit }
        XCTAssertEqual(ofCommit.count, 3, "\(all)")
        XCTAssertEqual(ofCommit.map(\.cursor), (1...3).map { "\(commit):\($0)" })
        // Handled the first change only, then stopped.
        let resumed = watch(store, since: try XCTUnwrap(ofCommit[0].cursor)) { $0.workTree = false }
        XCTAssertTrue(resumed.wait { $0.contains { $0.id == after.id } })
        XCTAssertEqual(resumed.all.map(\.cursor), all.dropFirst().map(\.cursor), "the rest of the commit, then what follows")
        // After its last change: as after the commit.
        let whole = watch(store, since: "\(commit):3") { $0.workTree = false }
        XCTAssertTrue(whole.wait { $0.contains { $0.id == after.id } })
        XCTAssertEqual(whole.all.first?.commit, all.first { $0.commit != commit }?.commit)
        XCTAssertThrowsError(try store.watchCursor("\(commit):x"))
        XCTAssertThrowsError(try store.watchCursor("\(commit):01"))
        XCTAssertThrowsError(try store.watchCursor("\(commit):4"), "the commit has three changes")
        XCTAssertThrowsError(try store.watchCursor("\(commit):0"))
    }

    /// The branch moved back by plain git (`git reset`): the documents that differ are reported
    /// as changes of the new tip (they were not reported at all), and the watch goes on.
    func testABranchMovedBackIsReported() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let sink = watch(store) { $0.workTree = false }
        let gone = try (0..<2).map { try store.appendMessage(chatID: chat.id, role: .user, content: "\($0)").id }
        XCTAssertTrue(sink.wait { $0.filter { $0.type == .message }.count == 2 })
        XCTAssertEqual(try git(store.path, "update-ref", "refs/heads/main", "HEAD~2").status, 0)
        let tip = try XCTUnwrap(store.head()).hex
        XCTAssertTrue(sink.wait { $0.filter { $0.kind == .deleted }.count == 2 }, "\(sink.all)")
        let undone = sink.all.filter { $0.kind == .deleted }
        XCTAssertEqual(Set(undone.compactMap(\.id)), Set(gone))
        XCTAssertTrue(undone.allSatisfy { $0.commit == tip && $0.cursor == nil && $0.origin == .external })
        let later = try store.appendMessage(chatID: chat.id, role: .user, content: "after the reset")
        XCTAssertTrue(sink.wait { $0.contains { $0.id == later.id && $0.kind == .created } })
    }

    /// A sync that fast-forwards to the other replica's merge of this one's changes: its
    /// first-parent chain runs through the other replica's commits, whose diffs would bring
    /// this side's messages again. Each message is created once in the stream.
    func testAFastForwardToAnotherReplicasMergeReportsNothingTwice() throws {
        let p = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try p.createChat(userID: "u")
        try p.addRemote("origin", url: bare)
        _ = try p.push(options: quickSync)
        let q = try clone(self, bare, "q")
        let sink = watch(p) { $0.workTree = false }
        let q1 = try q.appendMessage(chatID: chat.id, role: .user, content: "q1")
        _ = try q.push(options: quickSync)
        let p1 = try p.appendMessage(chatID: chat.id, role: .user, content: "p1")
        _ = try p.sync(options: quickSync)        // P merges q1
        let q2 = try q.appendMessage(chatID: chat.id, role: .user, content: "q2")
        _ = try q.sync(options: quickSync)        // Q merges P's merge
        let r = try p.sync(options: quickSync)    // P fast-forwards to Q's merge
        XCTAssertTrue(r.fastForward)
        XCTAssertTrue(sink.wait { $0.contains { $0.id == q2.id } }, "\(sink.all)")
        usleep(300_000)
        let created = sink.all.filter { $0.kind == .created }.compactMap(\.id)
        XCTAssertEqual(created.sorted(), [p1.id, q1.id, q2.id].sorted(), "\(sink.all)")
    }

    /// A session made by hand is created as `session create` does it, and a hop moved by hand
    /// goes where its number says, the hops it moves touched as a reorder touches them.
    func testHandMadeSessionsAndHandMovedHopsFollowTheCommandsRules() throws {
        let store = try makeStore(self)
        let first = try store.createSession(userID: "alice")
        let mission = try store.createMission(userID: "alice", name: "M")
        let hops = try (1...3).map { try store.addHop(missionID: mission.id, name: "p\($0)") }
        store.syncWorkTree()
        let sink = watch(store) { $0.quietPeriod = 0.1 }
        let now = Timestamp.now().rfc3339
        let hand = #"{"chat_id": "\#(first.chatID)", "created_at": "\#(now)", "id": "handsess", "last_activity_at": "\#(now)", "updated_at": "\#(now)", "user_id": "alice"}"#
        let file = store.path + "/" + Layout.session("handsess")
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(hand.utf8).write(to: URL(fileURLWithPath: file))
        XCTAssertTrue(sink.wait { $0.contains { $0.id == "handsess" && $0.kind == .created } }, "\(sink.all)")
        XCTAssertEqual(try store.listSessions(userID: "alice", status: .active).map(\.id), ["handsess"])
        XCTAssertEqual(try store.session("handsess").name, "Session 2")
        XCTAssertEqual(try store.session(first.id).status, .completed)

        let hopFile = store.path + "/" + Layout.hop(mission.id, hops[2].id)
        let text = try String(contentsOfFile: hopFile, encoding: .utf8)
        try text.replacingOccurrences(of: "\"sequence_order\": 3", with: "\"sequence_order\": 1").write(toFile: hopFile, atomically: true, encoding: .utf8)
        XCTAssertTrue(sink.wait { _ in (try? store.listHops(missionID: mission.id).first?.id) == hops[2].id }, "\(sink.all)")
        let after = try store.listHops(missionID: mission.id)
        XCTAssertEqual(after.map(\.id), [hops[2].id, hops[0].id, hops[1].id])
        XCTAssertEqual(after.map(\.sequenceOrder), [1, 2, 3])
        XCTAssertGreaterThan(after[1].updatedAt, hops[0].updatedAt, "a hop it moved is touched")
        // The mission's folder moved into a wrong shard: refused there, and the mission is not deleted.
        store.syncWorkTree()
        let before = try store.commitCount()
        let folder = store.path + "/" + Layout.missionDir(mission.id)
        let wrong = store.path + "/missions/zz/" + mission.id
        try FileManager.default.createDirectory(atPath: store.path + "/missions/zz", withIntermediateDirectories: true)
        XCTAssertEqual(rename(folder, wrong), 0)
        XCTAssertTrue(sink.wait { $0.contains { $0.kind == .error && $0.path == Layout.mission(mission.id) } }, "\(sink.all)")
        usleep(400_000)
        XCTAssertEqual(try store.commitCount(), before)
        XCTAssertNoThrow(try store.mission(mission.id))
        XCTAssertEqual(rename(wrong, folder), 0)
        XCTAssertTrue(try store.verify().ok)
    }

    func testABadCursorIsAClearError() throws {
        let store = try makeStore(self)
        let sink = EventSink(store.watch(since: "no-such-commit"))
        let deadline = Date().addingTimeInterval(10)
        while sink.failure == nil && Date() < deadline { usleep(20_000) }
        XCTAssertEqual((sink.failure as? ChatSyncError)?.field, "since")
    }

    func testPeriodicSyncBringsRemoteEventsAndReportsFailures() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let other = try clone(self, bare, "other")
        let sink = watch(origin) { o in
            o.workTree = false
            o.syncRemote = "origin"
            o.syncInterval = 0.2
            o.syncOptions = SyncOptions(retry: RetryPolicy(attempts: 1, initialDelay: 0.01, maxDelay: 0.01))
        }
        let m = try other.appendMessage(chatID: chat.id, role: .assistant, content: "from the other machine")
        _ = try other.push(options: quickSync)
        XCTAssertTrue(sink.wait { $0.contains { $0.id == m.id && $0.origin == .remote } }, "\(sink.all)")
        // The remote goes away: a sync error event, and the loop carries on.
        try FileManager.default.removeItem(atPath: bare)
        XCTAssertTrue(sink.wait { $0.contains { $0.kind == .error && $0.remote == "origin" } }, "\(sink.all)")
        let later = try origin.appendMessage(chatID: chat.id, role: .user, content: "still watching")
        XCTAssertTrue(sink.wait { $0.contains { $0.id == later.id } })
    }
}

final class EventSchemaTests: XCTestCase {
    func testEventsMatchTheirSchema() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: repositoryRoot + "/Store/schemas/event.schema.json"))
        let schema = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .object(let props)? = schema["properties"] else { return XCTFail() }
        let full = ChangeEvent(commit: String(repeating: "a", count: 40), kind: .error, type: .message, id: "m", chatID: "c",
                               origin: .remote, time: .now(), path: "p", error: "e", remote: "origin")
        var withCursor = full
        withCursor.cursor = String(repeating: "a", count: 40) + ":1"
        let encoded = try JSONDecoder().decode(JSONValue.self, from: Data(withCursor.jsonLine.utf8))
        XCTAssertEqual(encoded.objectValue.map { Set($0.keys) }, Set(props.keys), "ChangeEvent and event.schema.json name the same fields")
    }
}

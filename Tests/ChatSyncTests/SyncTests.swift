import ChatSync
import Foundation
import GitKit
import XCTest

final class SyncTests: XCTestCase {
    /// The issue's scenario, through `git daemon`: two clones append to the same chat and change
    /// its title while offline; A syncs, B syncs, A syncs.
    func testTwoClonesConvergeThroughGitDaemon() throws {
        let daemon = try GitDaemon(test: self)
        let url = try daemon.makeRepository("shared")
        let a = try makeStore(self)
        let chat = try a.createChat(userID: "alice", title: "Plans")
        _ = try a.appendMessage(chatID: chat.id, role: .user, content: "first")
        try a.addRemote("origin", url: url)
        let pushed = try a.push(options: quickSync)
        XCTAssertEqual(pushed.pushedCommits, try a.commitCount())
        let b = try clone(self, url, "b")
        XCTAssertEqual(try treeID(a), try treeID(b))

        var ids = Set(try a.listMessages(chatID: chat.id).map(\.id))
        for i in 0..<5 {
            ids.insert(try a.appendMessage(chatID: chat.id, role: .user, content: "A \(i)").id)
            ids.insert(try b.appendMessage(chatID: chat.id, role: .assistant, content: "B \(i)").id)
        }
        _ = try a.updateChat(chat.id, patch: ["title": .string("Plans (A)")])
        _ = try b.updateChat(chat.id, patch: ["title": .string("Plans (B)")])

        let r1 = try a.sync(options: quickSync)
        XCTAssertGreaterThan(r1.pushedCommits, 0)
        let r2 = try b.sync(options: quickSync)
        XCTAssertNotNil(r2.mergeCommit)
        XCTAssertEqual(r2.conflicts, 1)
        let r3 = try a.sync(options: quickSync)
        XCTAssertTrue(r3.fastForward)

        XCTAssertEqual(try treeID(a), try treeID(b))
        for store in [a, b] {
            let msgs = try store.listMessages(chatID: chat.id)
            XCTAssertEqual(Set(msgs.map(\.id)), ids, "every message from both sides")
            XCTAssertEqual(msgs.map(\.sequenceOrder), Array(1...ids.count))
            let conflicts = try store.conflicts()
            XCTAssertEqual(conflicts.count, 1)
            XCTAssertEqual(conflicts.first?.field, "title")
            XCTAssertEqual(Set([conflicts.first?.chosen, conflicts.first?.other]), Set([.string("Plans (A)"), .string("Plans (B)")]))
            XCTAssertEqual(try store.chat(chat.id).title, conflicts.first?.chosen?.stringValue)
            store.syncWorkTree()  // no pack merge under way while git looks
            XCTAssertEqual(try git(store.path, "fsck", "--strict").status, 0)
            let report = try store.verify()
            XCTAssertTrue(report.ok, "\(report.problems)")
            store.syncWorkTree()
            XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
        }
        // The later edit (B's) wins the title.
        XCTAssertEqual(try a.chat(chat.id).title, "Plans (B)")
    }

    /// Merging A into B and B into A give the same tree, byte for byte.
    func testMergeIsSymmetric() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u", title: "T")
        let s = try origin.createSession(userID: "u", chatID: chat.id)
        let m = try origin.createMission(userID: "u", name: "M")
        _ = try origin.addHop(missionID: m.id, name: "h1")
        let shared = try origin.appendMessage(chatID: chat.id, role: .user, content: "shared", metadata: .object(["k": .int(1)]))
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        // Diverge: appends, concurrent edits of one message's metadata, hops, session status, title.
        _ = try a.appendMessage(chatID: chat.id, role: .user, content: "a1")
        _ = try b.appendMessage(chatID: chat.id, role: .assistant, content: "b1")
        _ = try a.editMessage(chatID: chat.id, id: shared.id, metadata: .object(["k": .int(2), "a": .bool(true)]))
        _ = try b.editMessage(chatID: chat.id, id: shared.id, metadata: .object(["k": .int(3), "b": .bool(true)]))
        _ = try a.addHop(missionID: m.id, name: "from a")
        _ = try b.addHop(missionID: m.id, name: "from b")
        _ = try a.completeSession(s.id)
        _ = try b.updateChat(chat.id, patch: ["title": .string("B's title")])
        try a.addRemote("peer", url: b.path)
        try b.addRemote("peer", url: a.path)
        let aTip = try XCTUnwrap(a.head()), bTip = try XCTUnwrap(b.head())
        try a.fetch("peer", options: quickSync)
        try b.fetch("peer", options: quickSync)
        _ = try a.merge(bTip, from: "peer")
        _ = try b.merge(aTip, from: "peer")
        XCTAssertEqual(try treeID(a), try treeID(b), "A←B and B←A must give the same tree")
        let hops = try a.listHops(missionID: m.id)
        XCTAssertEqual(hops.map(\.sequenceOrder), [1, 2, 3])
        XCTAssertEqual(Set(hops.map(\.name)), ["h1", "from a", "from b"])
        XCTAssertEqual(hops.first?.name, "h1", "additions are numbered after the order both sides share")
        let merged = try a.message(chatID: chat.id, id: shared.id)
        XCTAssertEqual(merged.messageMetadata["a"], .bool(true))
        XCTAssertEqual(merged.messageMetadata["b"], .bool(true))
        XCTAssertEqual(try a.conflicts().map(\.field), ["message_metadata.k"])
        XCTAssertEqual(try a.session(s.id).status, .completed)
        XCTAssertEqual(try a.chat(chat.id).title, "B's title")
        XCTAssertEqual(try a.listMessages(chatID: chat.id).map(\.sequenceOrder), [1, 2, 3])
        XCTAssertTrue(try a.verify().ok)
    }

    /// Each side creates a session for the same user (each completing the user's others): after
    /// the merge the user has one active session, the newest by activity, and both sides' merges
    /// give the same tree.
    func testSessionsCreatedOnBothSidesLeaveTheUserOneActiveSession() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let first = try origin.createSession(userID: "u")
        let otherUser = try origin.createSession(userID: "v")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        let onA = try a.createSession(userID: "u", name: "on A")
        Thread.sleep(forTimeInterval: 0.005)
        let onB = try b.createSession(userID: "u", name: "on B")
        XCTAssertGreaterThan(onB.lastActivityAt, onA.lastActivityAt)
        try a.addRemote("peer", url: b.path)
        try b.addRemote("peer", url: a.path)
        let aTip = try XCTUnwrap(a.head()), bTip = try XCTUnwrap(b.head())
        try a.fetch("peer", options: quickSync)
        try b.fetch("peer", options: quickSync)
        _ = try a.merge(bTip, from: "peer")
        _ = try b.merge(aTip, from: "peer")
        XCTAssertEqual(try treeID(a), try treeID(b), "both sides complete the same session the same way")
        for store in [a, b] {
            XCTAssertEqual(try store.listSessions(userID: "u", status: .active).map(\.id), [onB.id])
            XCTAssertEqual(try store.activeSession(userID: "u")?.id, onB.id)
            let superseded = try store.session(onA.id)
            XCTAssertEqual(superseded.status, .completed)
            XCTAssertEqual(superseded.updatedAt, onB.createdAt)
            XCTAssertEqual(try store.session(first.id).status, .completed)
            XCTAssertEqual(try store.session(otherUser.id).status, .active, "another user's session is not touched")
            XCTAssertTrue(try store.verify().ok)
        }
        let subject = try git(a.path, "log", "-1", "--merges", "--format=%s").out
        XCTAssertTrue(subject.contains("1 session(s) completed"), subject)
    }

    /// A resolution writes what a command could: a whole document keeps the id and parents its
    /// path gives, numbers stay 1…N, a session follows its lifecycle (a black-box probe left a
    /// store verify refused in each of these ways).
    func testResolutionsKeepIdsParentsNumbersAndTheLifecycle() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let mission = try origin.createMission(userID: "u", name: "M")
        let hops = try (1...3).map { try origin.addHop(missionID: mission.id, name: "h\($0)") }
        let step = try origin.addToolStep(hopID: hops[0].id, toolID: "t", name: "s")
        let session = try origin.createSession(userID: "carol")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        _ = try a.reorderHops(missionID: mission.id, order: [hops[2].id, hops[0].id, hops[1].id])
        _ = try b.reorderHops(missionID: mission.id, order: [hops[1].id, hops[2].id, hops[0].id])
        _ = try a.updateToolStep(step.id, patch: ["name": .string("edited")])
        try b.deleteToolStep(step.id)
        _ = try a.abandonSession(session.id)
        _ = try b.archiveSession(session.id)
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        let open = try b.conflicts(includeResolved: false)
        // A step's whole document: the id and hop its path gives.
        let stepConflict = try XCTUnwrap(open.first { $0.documentID == step.id })
        var doc = try XCTUnwrap(stepConflict.chosen?.objectValue)
        for (field, bad) in [("hop_id", JSONValue.string(hops[1].id)), ("id", .string("ZZZ"))] {
            var wrong = doc
            wrong[field] = bad
            XCTAssertThrowsError(try b.resolveConflict(stepConflict.id, take: .value, value: .object(wrong))) {
                XCTAssertEqual(($0 as? ChatSyncError).flatMap { if case .invalid(let f, _) = $0 { return f } else { return nil } }, field)
            }
        }
        doc["sequence_order"] = .int(7)
        _ = try b.resolveConflict(stepConflict.id, take: .value, value: .object(doc))
        XCTAssertEqual(try b.toolStep(step.id).sequenceOrder, 1, "numbers stay 1…N")
        // Hop numbers: taking either side's number still leaves 1…N.
        for c in open where c.documentType == .hop && c.field == "sequence_order" {
            _ = try b.resolveConflict(c.id, take: .theirs)
        }
        XCTAssertEqual(try b.listHops(missionID: mission.id).map(\.sequenceOrder), [1, 2, 3])
        // A session's status: only where the lifecycle goes.
        let statusConflict = try XCTUnwrap(open.first { $0.documentID == session.id && $0.field == "status" })
        XCTAssertThrowsError(try b.resolveConflict(statusConflict.id, take: .value, value: .string("active")))
        let report = try b.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
    }

    /// A chat edited on one side and deleted on the other: one conflict record, whose kept
    /// value is the edited chat (there were two, one claiming the unedited chat was kept).
    func testAnEditedChatAgainstItsDeleteIsOneRecordOfWhatWasKept() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u", title: "base")
        _ = try origin.appendMessage(chatID: chat.id, role: .user, content: "m")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        _ = try a.updateChat(chat.id, patch: ["title": .string("edited")])
        try b.deleteChat(chat.id)
        _ = try b.push(options: quickSync)
        let r = try a.pull(options: quickSync)
        XCTAssertEqual(r.conflicts, 1)
        let record = try XCTUnwrap(try a.conflicts().first)
        XCTAssertEqual(record.kind, .deleteVsEdit)
        XCTAssertEqual(record.chosen?["title"], .string("edited"))
        XCTAssertEqual(try a.chat(chat.id).title, "edited")
        XCTAssertEqual(try a.listMessages(chatID: chat.id).count, 1)
        XCTAssertTrue(try a.verify().ok)
    }

    func testEditAgainstDeleteKeepsTheEditAndAMessageToADeletedChatIsNotLost() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u", title: "doomed")
        let old = try origin.appendMessage(chatID: chat.id, role: .user, content: "old")
        let m = try origin.createMission(userID: "u", name: "M")
        let asset = try origin.createAsset(userID: "u", name: "A", schemaDefinition: .emptyObject, scopeType: .mission, scopeID: m.id, role: .input)
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        try a.deleteChat(chat.id)
        try a.deleteAsset(asset.id)
        let reply = try b.appendMessage(chatID: chat.id, role: .assistant, content: "written while A deleted the chat")
        _ = try b.updateAsset(asset.id, patch: ["status": .string("ready")])
        _ = try a.sync(options: quickSync)
        let r = try b.sync(options: quickSync)
        XCTAssertEqual(r.conflicts, 2)
        _ = try a.sync(options: quickSync)
        XCTAssertEqual(try treeID(a), try treeID(b))
        for store in [a, b] {
            let msgs = try store.listMessages(chatID: chat.id)
            XCTAssertEqual(msgs.map(\.id), [old.id, reply.id], "the chat comes back whole, with the new message")
            XCTAssertEqual(try store.asset(asset.id).status, .ready, "edit wins over delete")
            XCTAssertEqual(Set(try store.conflicts().map(\.kind)), [.deleteVsEdit])
            XCTAssertTrue(try store.verify().ok)
        }
    }

    func testConflictsCanBeResolved() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u", title: "T")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")
        _ = try a.updateChat(chat.id, patch: ["title": .string("from A")])
        usleep(3000)
        _ = try b.updateChat(chat.id, patch: ["title": .string("from B")])
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        let c = try XCTUnwrap(try b.conflicts().first)
        XCTAssertEqual(c.chosen, .string("from B"))
        let before = try b.commitCount()
        let resolved = try b.resolveConflict(c.id, take: .theirs)
        XCTAssertEqual(resolved.status, .resolved)
        XCTAssertEqual(try b.chat(chat.id).title, "from A")
        XCTAssertEqual(try b.commitCount(), before + 1)
        XCTAssertThrowsError(try b.resolveConflict(c.id, take: .ours)) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "conflict") }
        XCTAssertThrowsError(try b.resolveConflict("nope", take: .ours)) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "not_found") }
        // A value that breaks the rules is refused and writes nothing.
        _ = try b.updateChat(chat.id, patch: ["title": .string("again B")])
        _ = try a.updateChat(chat.id, patch: ["title": .string("again A")])
        _ = try b.sync(options: quickSync)
        _ = try a.sync(options: quickSync)
        let open = try XCTUnwrap(try a.conflicts(includeResolved: false).first)
        try assertRefused(a, field: "title") { _ = try a.resolveConflict(open.id, take: .value, value: .string(String(repeating: "x", count: 300))) }
        _ = try a.resolveConflict(open.id, take: .value, value: .string("agreed"))
        XCTAssertEqual(try a.chat(chat.id).title, "agreed")

        // null removes an optional field (written as the model writes it: left out, not null),
        // and is refused for a field the document must have.
        let mission = try a.createMission(userID: "u", name: "M")
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        _ = try a.updateChat(chat.id, patch: ["title": .string("A3")])
        _ = try a.updateMission(mission.id, patch: ["status": .string("in_progress")])
        usleep(3000)
        _ = try b.updateChat(chat.id, patch: ["title": .string("B3")])
        _ = try b.updateMission(mission.id, patch: ["status": .string("cancelled")])
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        let open3 = try b.conflicts(includeResolved: false)
        let titleConflict = try XCTUnwrap(open3.first { $0.field == "title" })
        let statusConflict = try XCTUnwrap(open3.first { $0.field == "status" })
        try assertRefused(b, field: "value") { _ = try b.resolveConflict(statusConflict.id, take: .value, value: .null) }
        _ = try b.resolveConflict(titleConflict.id, take: .value, value: .null)
        XCTAssertNil(try b.chat(chat.id).title)
        let file = try git(b.path, "show", "HEAD:" + titleConflict.path).out
        XCTAssertFalse(file.contains("null"), file)
        XCTAssertTrue(try b.verify().ok)
    }

    func testWhatARemoteBringsIsCheckedBeforeItIsMerged() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u", title: "T")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a")
        // Someone edits the chat with plain git, breaking two rules (a 300-character title, an
        // unknown field), and pushes; a's pull refuses it, naming the file and the rule.
        let hand = freshPath(self, "hand")
        XCTAssertEqual(try git(NSTemporaryDirectory(), "clone", "-q", bare, hand).status, 0)
        let path = Layout.chat(chat.id)
        var text = try String(contentsOfFile: hand + "/" + path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"title\": \"T\"", with: "\"title\": \"\(String(repeating: "t", count: 300))\",\n  \"zzz\": 1")
        try text.write(toFile: hand + "/" + path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try git(hand, "commit", "-qam", "by hand").status, 0)
        XCTAssertEqual(try git(hand, "push", "-q", "origin", "main").status, 0)
        let before = try a.commitCount(), head = try a.head()
        XCTAssertThrowsError(try a.pull(options: quickSync)) { error in
            XCTAssertEqual((error as? ChatSyncError)?.code, "remote_error")
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("title"), "\(error)")
        }
        XCTAssertEqual(try a.commitCount(), before)
        XCTAssertEqual(try a.head(), head)
        XCTAssertTrue(try a.verify().ok)

        // A remote that is not a chatsync store is refused even when unrelated histories are allowed.
        let plain = freshPath(self, "plain")
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "-b", "main", plain).status, 0)
        try "x\n".write(toFile: plain + "/f.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try git(plain, "add", "f.txt").status, 0)
        XCTAssertEqual(try git(plain, "commit", "-qm", "not a store").status, 0)
        try a.addRemote("plain", url: plain)
        var unrelated = quickSync
        unrelated.allowUnrelatedHistories = true
        XCTAssertThrowsError(try a.pull("plain", options: unrelated)) { error in
            XCTAssertTrue("\(error)".contains("not a chatsync store"), "\(error)")
        }
        // The same repository with its history on another branch only: not a store either (an
        // empty remote, one to push to, is fine).
        XCTAssertEqual(try git(plain, "branch", "-m", "main", "master").status, 0)
        try a.addRemote("plain2", url: plain)
        XCTAssertThrowsError(try a.pull("plain2", options: quickSync)) { error in
            XCTAssertTrue("\(error)".contains("no branch main (it has master)"), "\(error)")
        }
        XCTAssertEqual(try a.head(), head)
        XCTAssertTrue(try a.verify().ok)

        // A marker of a newer format is refused too (merged, it would lock this chatsync out).
        XCTAssertEqual(try git(hand, "reset", "-q", "--hard", "HEAD~1").status, 0)
        try #"{"format": "chatsync", "version": 99}"#.write(toFile: hand + "/chatsync.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(try git(hand, "commit", "-qam", "from the future").status, 0)
        XCTAssertEqual(try git(hand, "push", "-q", "-f", "origin", "main").status, 0)
        XCTAssertThrowsError(try a.pull(options: quickSync)) { XCTAssertTrue("\($0)".contains("newer"), "\($0)") }
        XCTAssertEqual(try a.head(), head)

        // The content size limit is each process's own: a replica that allows more does not stop
        // the syncs of one that allows less.
        XCTAssertEqual(try git(hand, "reset", "-q", "--hard", "HEAD~1").status, 0)
        XCTAssertEqual(try git(hand, "push", "-q", "-f", "origin", "main").status, 0)
        var small = StoreOptions()
        small.limits.maxContentBytes = 10
        let b = try Store.clone(from: bare, to: freshPath(self, "small"), options: small, sync: quickSync)
        defer { b.close() }
        _ = try a.fetch(options: quickSync)
        _ = try a.appendMessage(chatID: chat.id, role: .assistant, content: String(repeating: "long ", count: 20))
        _ = try a.push(options: quickSync)
        XCTAssertEqual(try b.pull(options: quickSync).fastForward, true)
        XCTAssertEqual(try b.listMessages(chatID: chat.id).count, 1)
    }

    /// Deletes next to each other on two replicas are not edits of each other, and taking a
    /// delete when resolving does what the delete commands do (numbers stay 1…N, nothing is
    /// left below a deleted chat).
    func testDeletesOnBothSidesAndResolvedDeletesKeepNumbersWhole() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let mission = try origin.createMission(userID: "u", name: "M")
        let h1 = try origin.addHop(missionID: mission.id, name: "one")
        let h2 = try origin.addHop(missionID: mission.id, name: "two")
        let h3 = try origin.addHop(missionID: mission.id, name: "three")
        let chat = try origin.createChat(userID: "u")
        let m1 = try origin.appendMessage(chatID: chat.id, role: .user, content: "one")
        let m2 = try origin.appendMessage(chatID: chat.id, role: .user, content: "two")
        let m3 = try origin.appendMessage(chatID: chat.id, role: .user, content: "three")
        let other = try origin.createChat(userID: "u")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let a = try clone(self, bare, "a"), b = try clone(self, bare, "b")

        // Each side deletes a different hop; each renumbers the one after it. Neither delete is
        // undone, and no conflict is recorded.
        try a.deleteHop(h1.id)
        try b.deleteHop(h2.id)
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        _ = try a.sync(options: quickSync)
        for s in [a, b] {
            XCTAssertEqual(try s.listHops(missionID: mission.id).map(\.id), [h3.id])
            XCTAssertEqual(try s.listHops(missionID: mission.id).map(\.sequenceOrder), [1])
            let found = try s.conflicts().filter { $0.kind == .deleteVsEdit }
            XCTAssertEqual(found.count, 0, "\(found.map { ($0.documentID, $0.path, $0.base as Any, $0.chosen as Any) })")
            let report = try s.verify()
            XCTAssertTrue(report.ok, "\(report.problems)")
        }

        // A message deleted with plain git on one side and edited on the other: the edit wins,
        // and taking the delete renumbers the chat.
        let hand = freshPath(self, "hand")
        XCTAssertEqual(try git(NSTemporaryDirectory(), "clone", "-q", bare, hand).status, 0)
        XCTAssertEqual(try git(hand, "rm", "-q", Layout.message(chat.id, m1.id)).status, 0)
        XCTAssertEqual(try git(hand, "commit", "-qm", "delete m1 by hand").status, 0)
        XCTAssertEqual(try git(hand, "push", "-q", "origin", "main").status, 0)
        _ = try b.editMessage(chatID: chat.id, id: m1.id, content: "one, edited")
        _ = try b.sync(options: quickSync)
        let deleted = try XCTUnwrap(try b.conflicts(includeResolved: false).first { $0.documentID == m1.id })
        _ = try b.resolveConflict(deleted.id, take: .theirs)
        XCTAssertEqual(try b.listMessages(chatID: chat.id).map(\.id), [m2.id, m3.id])
        XCTAssertEqual(try b.listMessages(chatID: chat.id).map(\.sequenceOrder), [1, 2])
        XCTAssertEqual(try b.appendMessage(chatID: chat.id, role: .user, content: "four").sequenceOrder, 3)
        var report = try b.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")

        // A chat deleted on one side while the other appended to it comes back; taking the
        // delete removes it with its messages.
        _ = try a.sync(options: quickSync)
        try a.deleteChat(other.id)
        _ = try b.appendMessage(chatID: other.id, role: .user, content: "kept for now")
        _ = try a.sync(options: quickSync)
        _ = try b.sync(options: quickSync)
        let chatConflict = try XCTUnwrap(try b.conflicts(includeResolved: false).first { $0.documentID == other.id })
        _ = try b.resolveConflict(chatConflict.id, take: .theirs)
        XCTAssertThrowsError(try b.chat(other.id))
        XCTAssertEqual(try git(b.path, "ls-tree", "-r", "--name-only", "HEAD", Layout.chatDir(other.id)).out, "")
        report = try b.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
    }

    func testAPushTheServerRejectsFailsClearlyAndTheStoreIsUnharmed() throws {
        let daemon = try GitDaemon(test: self)
        let url = try daemon.makeRepository("guarded")
        let hook = daemon.base + "/guarded.git/hooks/pre-receive"
        try Data("#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n".utf8).write(to: URL(fileURLWithPath: hook))
        chmod(hook, 0o755)
        let a = try makeStore(self)
        _ = try a.createChat(userID: "u")
        try a.addRemote("origin", url: url)
        let before = try a.commitCount()
        XCTAssertThrowsError(try a.push(options: quickSync)) { error in
            let e = error as? ChatSyncError
            XCTAssertEqual(e?.code, "remote_error", "\(error)")
            XCTAssertTrue("\(error)".contains("reject") || "\(error)".contains("frozen") || "\(error)".contains("hook declined"), "\(error)")
        }
        XCTAssertEqual(try a.commitCount(), before)
        XCTAssertTrue(try a.verify().ok)
        XCTAssertEqual(try git(daemon.base + "/guarded.git", "rev-parse", "--verify", "-q", "refs/heads/main").status, 1, "nothing landed")
    }

    func testARemoteThatIsDownIsRetriedThenReported() throws {
        let a = try makeStore(self)
        _ = try a.createChat(userID: "u")
        // A port nothing listens on.
        var port = 0
        repeat { port = Int.random(in: 20_000...60_000) } while GitDaemon.waitForPortOnce(port)
        try a.addRemote("origin", url: "git://127.0.0.1:\(port)/nothing.git")
        let before = try a.commitCount()
        let started = Date()
        XCTAssertThrowsError(try a.sync(options: SyncOptions(retry: RetryPolicy(attempts: 3, initialDelay: 0.1, maxDelay: 1)))) { error in
            XCTAssertEqual((error as? ChatSyncError)?.code, "remote_error")
            XCTAssertTrue("\(error)".contains("3 attempt"), "\(error)")
        }
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.3, "two waits: 0.1 s, then 0.2 s")
        XCTAssertEqual(try a.commitCount(), before)
        XCTAssertTrue(try a.verify().ok)
        // Everything local still works.
        _ = try a.createChat(userID: "u")
    }

    func testANotFoundRepositoryIsNotRetried() throws {
        let daemon = try GitDaemon(test: self)
        let a = try makeStore(self)
        try a.addRemote("origin", url: "git://127.0.0.1:\(daemon.port)/missing.git")
        let started = Date()
        XCTAssertThrowsError(try a.pull(options: SyncOptions(retry: RetryPolicy(attempts: 3, initialDelay: 2, maxDelay: 10)))) { error in
            XCTAssertEqual((error as? ChatSyncError)?.code, "remote_error", "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 2, "not retried")
    }

    /// A remote that is a path which is not there: said so (it was "unsupported URL protocol").
    func testAMissingLocalRemoteIsNamed() throws {
        let missing = freshPath(self, "missing") + ".git"
        XCTAssertThrowsError(try Store.clone(from: missing, to: freshPath(self, "c"), sync: quickSync)) {
            XCTAssertTrue("\($0)".contains("no repository at \(missing)"), "\($0)")
        }
        XCTAssertThrowsError(try Store.clone(from: "file://" + missing, to: freshPath(self, "c"), sync: quickSync)) {
            XCTAssertTrue("\($0)".contains("no repository at"), "\($0)")
        }
        let store = try makeStore(self)
        try store.addRemote("gone", url: missing)
        XCTAssertThrowsError(try store.sync("gone", options: quickSync)) {
            XCTAssertEqual(($0 as? ChatSyncError)?.code, "remote_error")
            XCTAssertTrue("\($0)".contains("no repository at"), "\($0)")
        }
    }

    func testUnrelatedHistoriesAreAClearError() throws {
        let a = try makeStore(self), b = try makeStore(self)
        _ = try a.createChat(userID: "u")
        _ = try b.createChat(userID: "v")
        try a.addRemote("other", url: b.path)
        XCTAssertThrowsError(try a.pull("other", options: quickSync)) { error in
            XCTAssertTrue("\(error)".contains("unrelated histories"), "\(error)")
        }
        var allow = quickSync
        allow.allowUnrelatedHistories = true
        _ = try a.pull("other", options: allow)
        XCTAssertEqual(try a.listChats().count, 2)
    }

    func testAPushRaceIsMergedAndPushedAgain() throws {
        let daemon = try GitDaemon(test: self)
        let url = try daemon.makeRepository("race")
        let a = try makeStore(self)
        let chat = try a.createChat(userID: "u")
        try a.addRemote("origin", url: url)
        _ = try a.push(options: quickSync)
        let b = try clone(self, url, "b")
        _ = try a.appendMessage(chatID: chat.id, role: .user, content: "a")
        _ = try b.appendMessage(chatID: chat.id, role: .user, content: "b")
        _ = try a.sync(options: quickSync)
        // B's plain push is refused (the remote moved); sync fetches, merges and pushes again.
        XCTAssertThrowsError(try b.push(options: quickSync))
        let r = try b.sync(options: quickSync)
        XCTAssertGreaterThan(r.pushedCommits, 0)
        _ = try a.sync(options: quickSync)
        XCTAssertEqual(try treeID(a), try treeID(b))
        XCTAssertEqual(try a.listMessages(chatID: chat.id).count, 2)
    }
}

extension GitDaemon {
    static func waitForPortOnce(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

final class AuthTests: XCTestCase {
    /// An HTTP server that refuses every request with 401 (Basic auth) and counts them.
    func startRefusingServer() throws -> (port: Int, counter: String, process: Process) {
        let counter = freshPath(self, "requests") + ".txt"
        let script = """
        import http.server, sys
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with open(sys.argv[2], "a") as f: f.write("x\\n")
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="chatsync-test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_POST = do_GET
            def log_message(self, *a): pass
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """
        for _ in 0..<20 {
            let port = Int.random(in: 20_000...60_000)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", "-c", script, "\(port)", counter]
            p.standardError = FileHandle.nullDevice
            try p.run()
            if GitDaemon.waitForPort(port, process: p) {
                addTeardownBlock { p.terminate(); p.waitUntilExit() }
                return (port, counter, p)
            }
            p.terminate()
        }
        throw XCTSkip("could not start the test HTTP server")
    }

    func testAWrongPasswordFailsAtOnceAndNeverLoops() throws {
        let server = try startRefusingServer()
        let a = try makeStore(self)
        try a.addRemote("origin", url: "http://127.0.0.1:\(server.port)/store.git")
        var options = SyncOptions(credentials: GitCredentials(username: "alice", password: "wrong", useSSHAgent: false),
                                  retry: RetryPolicy(attempts: 3, initialDelay: 1, maxDelay: 10))
        options.credentials.helper = nil
        let started = Date()
        XCTAssertThrowsError(try a.pull(options: options)) { error in
            XCTAssertEqual((error as? ChatSyncError)?.code, "remote_error", "\(error)")
            XCTAssertTrue("\(error)".lowercased().contains("auth"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 1, "not retried, no loop")
        let requests = (try? String(contentsOfFile: server.counter, encoding: .utf8))?.split(separator: "\n").count ?? 0
        XCTAssertGreaterThan(requests, 0)
        XCTAssertLessThanOrEqual(requests, 3, "the password is offered once")
    }
}

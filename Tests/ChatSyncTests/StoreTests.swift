import ChatSync
import Foundation
import GitKit
import Synchronization
import XCTest

final class StoreTests: XCTestCase {
    func testSessionCreatesItsChatAndCompletesTheUsersOtherActiveSessions() throws {
        let store = try makeStore(self)
        let s1 = try store.createSession(userID: "alice")
        XCTAssertEqual(s1.name, "Session 1")
        XCTAssertEqual(s1.status, .active)
        let chat = try store.chat(s1.chatID)
        XCTAssertEqual(chat.title, "Session 1")
        XCTAssertEqual(chat.userID, "alice")
        XCTAssertEqual(chat.contextData, .emptyObject)
        let s2 = try store.createSession(userID: "alice", name: "Planning", chatID: s1.chatID)
        XCTAssertEqual(s2.chatID, s1.chatID)
        XCTAssertEqual(try store.session(s1.id).status, .completed)
        let bob = try store.createSession(userID: "bob")
        XCTAssertEqual(bob.name, "Session 1")
        XCTAssertEqual(try store.session(s2.id).status, .active, "another user's session does not touch alice's")
        XCTAssertEqual(try store.listSessions(userID: "alice").map(\.id).sorted(), [s1.id, s2.id].sorted())
        XCTAssertEqual(try store.listSessions(userID: "alice", status: .active).map(\.id), [s2.id])
        let third = try store.createSession(userID: "alice")
        XCTAssertEqual(third.name, "Session 3")
    }

    func testActiveSessionIsTheNewestActiveAndIsTouched() throws {
        let store = try makeStore(self)
        XCTAssertNil(try store.activeSession(userID: "nobody"))
        let s = try store.createSession(userID: "alice")
        usleep(5_000)
        let recovered = try XCTUnwrap(try store.activeSession(userID: "alice"))
        XCTAssertEqual(recovered.id, s.id)
        XCTAssertGreaterThan(recovered.lastActivityAt, s.lastActivityAt)
        XCTAssertEqual(try store.session(s.id).lastActivityAt, recovered.lastActivityAt)
    }

    func testSessionLifecycleAndCleanup() throws {
        let store = try makeStore(self)
        let a = try store.createSession(userID: "u1")
        let b = try store.createSession(userID: "u2")
        let c = try store.createSession(userID: "u3")
        XCTAssertEqual(try store.completeSession(a.id).status, .completed)
        try assertRefused(store, code: "conflict") { _ = try store.completeSession(a.id) }
        XCTAssertEqual(try store.abandonSession(b.id).status, .abandoned)
        XCTAssertGreaterThanOrEqual(try store.touchSession(c.id).lastActivityAt, c.lastActivityAt)
        usleep(5_000)
        // Nothing is idle for a day: nothing changes, and no commit is made.
        let before = try store.commitCount()
        XCTAssertEqual(try store.cleanupSessions(idleAfter: 86_400, archiveAfter: 86_400), CleanupReport(abandoned: [], archived: []))
        XCTAssertEqual(try store.commitCount(), before)
        let r = try store.cleanupSessions(idleAfter: 0.001, archiveAfter: 0.001)
        XCTAssertEqual(r.abandoned, [c.id])
        XCTAssertEqual(r.archived.sorted(), [a.id, b.id].sorted())
        XCTAssertEqual(try store.commitCount(), before + 1)
        XCTAssertEqual(try store.archiveSession(c.id).status, .archived)
        try assertRefused(store, code: "conflict") { _ = try store.touchSession(c.id) }
        // An update's status change follows the same lifecycle: no way back from archived, or
        // from completed to active (the user would have two active sessions).
        try assertRefused(store, code: "conflict") { _ = try store.updateSession(c.id, patch: ["status": .string("active")]) }
        try assertRefused(store, code: "conflict") { _ = try store.updateSession(c.id, patch: ["status": .string("completed")]) }
        let d = try store.createSession(userID: "u4")
        XCTAssertEqual(try store.updateSession(d.id, patch: ["status": .string("completed")]).status, .completed)
        try assertRefused(store, code: "conflict") { _ = try store.updateSession(d.id, patch: ["status": .string("active")]) }
        XCTAssertEqual(try store.updateSession(d.id, patch: ["status": .string("archived")]).status, .archived)
    }

    func testAppendNumbersMessagesAndKeepsTimeOrder() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "alice", title: "t")
        var last: Timestamp?
        for i in 1...5 {
            let m = try store.appendMessage(chatID: chat.id, role: i % 2 == 0 ? .assistant : .user, content: "m\(i)")
            XCTAssertEqual(m.sequenceOrder, i)
            if let last { XCTAssertGreaterThan(m.createdAt, last) }
            last = m.createdAt
        }
        let all = try store.listMessages(chatID: chat.id)
        XCTAssertEqual(all.map(\.sequenceOrder), [1, 2, 3, 4, 5])
        XCTAssertEqual(all.map(\.content), ["m1", "m2", "m3", "m4", "m5"])
        XCTAssertEqual(try store.listMessages(chatID: chat.id, after: 2, limit: 2).map(\.sequenceOrder), [3, 4])
        XCTAssertEqual(try store.listMessages(chatID: chat.id, after: 5).count, 0)
        XCTAssertEqual(try store.listMessages(chatID: chat.id, limit: 0).count, 0)
    }

    func testAppendAfterAMessageFromAFastClockStaysAfterIt() throws {
        let store = try makeStore(self)
        let future = Timestamp(milliseconds: Timestamp.now().milliseconds + 3_600_000)
        let bundle = """
        {"chats":[{"id":"c1","user_id":"u","context_data":{},"created_at":"\(future.rfc3339)","updated_at":"\(future.rfc3339)"}],
         "messages":[{"id":"m1","chat_id":"c1","sequence_order":1,"role":"user","content":"from a machine whose clock is ahead",
                      "message_metadata":{},"created_at":"\(future.rfc3339)"}]}
        """
        try store.load(Data(bundle.utf8))
        let reply = try store.appendMessage(chatID: "c1", role: .assistant, content: "reply")
        XCTAssertEqual(reply.createdAt, future.adding(milliseconds: 1))
        XCTAssertEqual(reply.sequenceOrder, 2)
        XCTAssertEqual(try store.listMessages(chatID: "c1").map(\.id), ["m1", reply.id])
    }

    func testEditSetsUpdatedAtAndKeepsOrder() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let m = try store.appendMessage(chatID: chat.id, role: .assistant, content: "draft")
        XCTAssertNil(m.updatedAt)
        let edited = try store.editMessage(chatID: chat.id, id: m.id, content: "final", metadata: .object(["model": .string("x")]))
        XCTAssertEqual(edited.content, "final")
        XCTAssertNotNil(edited.updatedAt)
        XCTAssertEqual(edited.sequenceOrder, 1)
        XCTAssertEqual(edited.createdAt, m.createdAt)
        XCTAssertEqual(try store.message(chatID: chat.id, id: m.id), edited)
        try assertRefused(store, field: "content") { _ = try store.editMessage(chatID: chat.id, id: m.id) }
        try assertRefused(store, code: "not_found") { _ = try store.editMessage(chatID: chat.id, id: "missing", content: "x") }
    }

    func testEveryChangeIsOneCommitWithAReadableMessageAndACleanWorkTree() throws {
        let store = try makeStore(self)
        let c0 = try store.commitCount()
        let s = try store.createSession(userID: "alice")
        XCTAssertEqual(try store.commitCount(), c0 + 1)
        let m = try store.appendMessage(chatID: s.chatID, role: .user, content: "hi")
        XCTAssertEqual(try store.commitCount(), c0 + 2)
        _ = try store.updateChat(s.chatID, patch: ["title": .string("Renamed")])
        XCTAssertEqual(try store.commitCount(), c0 + 3)
        // An update that changes nothing commits nothing.
        _ = try store.updateChat(s.chatID, patch: ["title": .string("Renamed")])
        XCTAssertEqual(try store.commitCount(), c0 + 3)
        let log = try git(store.path, "log", "--format=%an <%ae>|%s").out
        XCTAssertTrue(log.contains("add message #1 (user)"), log)
        XCTAssertTrue(log.contains("chatsync <chatsync@localhost>|session"), log)
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
        XCTAssertEqual(try git(store.path, "fsck", "--strict").status, 0)
        // The work tree holds the document, byte for byte as committed.
        store.syncWorkTree()
        let onDisk = FileManager.default.contents(atPath: store.path + "/" + Layout.message(s.chatID, m.id))
        XCTAssertEqual(onDisk, try DocumentCoding.encode(m))
        XCTAssertEqual(try git(store.path, "show", "HEAD:" + Layout.chat(s.chatID)).out.contains("\"title\": \"Renamed\""), true)
        // No reflogs (the branch is the history; see FORMAT.md).
        XCTAssertEqual(try git(store.path, "config", "core.logAllRefUpdates").out.trimmingCharacters(in: .whitespacesAndNewlines), "false")
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path + "/.git/logs/refs/heads/main"))
    }

    func testSynchronousWorkTreeShowsEachChangeBeforeItIsAcknowledged() throws {
        let store = try makeStore(self) { $0.workTree = .synchronous }
        let chat = try store.createChat(userID: "u")
        for i in 0..<5 {
            let m = try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)")
            // No syncWorkTree(): the file and the index are there when the append returns.
            XCTAssertEqual(FileManager.default.contents(atPath: store.path + "/" + Layout.message(chat.id, m.id)), try DocumentCoding.encode(m))
            XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
        }
    }

    func testBackgroundWorkTreeCatchesUpAndLeavesHandEditsAlone() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "original")
        store.syncWorkTree()
        // A hand edit of one file is never overwritten by a sync of other paths.
        let chatFile = store.path + "/" + Layout.chat(chat.id)
        let handEdited = Data("{\"hand\": true}\n".utf8)
        try handEdited.write(to: URL(fileURLWithPath: chatFile))
        var last: ChatMessage?
        for i in 0..<30 { last = try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)") }
        store.syncWorkTree()
        XCTAssertEqual(FileManager.default.contents(atPath: chatFile), handEdited)
        XCTAssertNotNil(FileManager.default.contents(atPath: store.path + "/" + Layout.message(chat.id, last!.id)))
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, " M \(Layout.chat(chat.id))\n")
    }

    func testWorkTreeFilesAreTheStoredBytesWhateverGitsAttributesAsk() throws {
        let store = try makeStore(self)
        // Attributes that would have checkout write CRLF line ends and run a filter driver.
        let info = store.path + "/.git/info/attributes"
        let before = (try? String(contentsOfFile: info, encoding: .utf8)) ?? ""
        try (before + "*.json text eol=crlf filter=upper\n").write(toFile: info, atomically: true, encoding: .utf8)
        XCTAssertEqual(try git(store.path, "config", "filter.upper.smudge", "tr a-z A-Z").status, 0)
        XCTAssertEqual(try git(store.path, "config", "core.autocrlf", "true").status, 0)
        let chat = try store.createChat(userID: "u", title: "lines")
        let m = try store.appendMessage(chatID: chat.id, role: .user, content: "one\ntwo")
        store.syncWorkTree()
        let stored = try DocumentCoding.encode(m)
        XCTAssertTrue(stored.contains(UInt8(ascii: "\n")))
        XCTAssertEqual(FileManager.default.contents(atPath: store.path + "/" + Layout.message(chat.id, m.id)), stored)
        XCTAssertEqual(FileManager.default.contents(atPath: store.path + "/" + Layout.chat(chat.id)),
                       Data(try git(store.path, "show", "HEAD:" + Layout.chat(chat.id)).out.utf8))
        // The watch loop compares files with the branch byte for byte: nothing looks edited.
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
        XCTAssertTrue(try store.verify().ok)
    }

    func testADisabledWorkTreeIsNeverWritten() throws {
        let store = try makeStore(self) { $0.workTree = .disabled }
        let chat = try store.createChat(userID: "u")
        _ = try store.appendMessage(chatID: chat.id, role: .user, content: "x")
        store.syncWorkTree()
        store.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path + "/" + Layout.chat(chat.id)))
        XCTAssertEqual(try git(store.path, "rev-list", "--count", "HEAD").out, "3\n", "history is kept as usual")
    }

    func testConfiguredIdentityAuthorsCommits() throws {
        let store = try makeStore(self) { $0.identity = Identity(name: "Ada", email: "ada@example.com") }
        _ = try store.createChat(userID: "u")
        XCTAssertEqual(try git(store.path, "log", "-1", "--format=%an <%ae>").out, "Ada <ada@example.com>\n")
    }

    func testConcurrentAppendsFromManyThreadsAreGapFree() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let before = try store.commitCount()
        let threads = 8, each = 25
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<each {
                do { _ = try store.appendMessage(chatID: chat.id, role: .user, content: "t\(t) #\(i)") } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
        let all = try store.listMessages(chatID: chat.id)
        XCTAssertEqual(all.map(\.sequenceOrder), Array(1...(threads * each)))
        XCTAssertEqual(try store.commitCount(), before + threads * each)
        XCTAssertTrue(try store.verify().ok)
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    /// Durable group commit, with the branch's folder fsynced on a thread of its own while the
    /// next batch is written: a change is acknowledged only once the branch on disk holds it
    /// (read by `git`), and no change is lost or numbered twice.
    func testDurableConcurrentAppendsAreOnTheBranchWhenAcknowledged() throws {
        let store = try makeStore(self, durable: true)
        let chat = try store.createChat(userID: "u")
        let refPath = store.path + "/.git/refs/heads/main"
        let threads = 16, each = 15
        let seen = Mutex<[String]>([])
        let failures = Mutex<[String]>([])
        let group = DispatchGroup()
        for t in 0..<threads {
            group.enter()
            Thread {
                for i in 0..<each {
                    do {
                        let m = try store.appendMessage(chatID: chat.id, role: .user, content: "t\(t) #\(i)")
                        let tip = try String(contentsOfFile: refPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                        seen.withLock { $0.append("\(tip):\(Layout.message(chat.id, m.id))") }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
                group.leave()
            }.start()
        }
        group.wait()
        XCTAssertEqual(failures.withLock { $0 }, [])
        let lines = seen.withLock { $0 }
        XCTAssertEqual(lines.count, threads * each)
        // Each message is in the tree of the tip that was on disk right after its acknowledgement.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", store.path, "cat-file", "--batch-check"]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        input.fileHandleForWriting.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try input.fileHandleForWriting.close()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let answers = out.split(separator: "\n")
        XCTAssertEqual(answers.count, lines.count)
        XCTAssertEqual(answers.filter { $0.hasSuffix("missing") }, [])
        XCTAssertEqual(answers.filter { $0.contains(" blob ") }.count, lines.count)
        XCTAssertEqual(try store.listMessages(chatID: chat.id).map(\.sequenceOrder), Array(1...(threads * each)))
        store.syncWorkTree()
        let (fsck, code) = try git(store.path, "fsck", "--strict", "--no-dangling")
        XCTAssertEqual(code, 0, fsck)
        // The files the writer makes ahead for the next batch go when the store closes.
        store.close()
        let packDir = store.path + "/.git/objects/pack"
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: packDir).filter { $0.hasPrefix("tmp_") }, [])
    }

    func testTwoStoreHandlesActLikeTwoProcessesAndLoseNothing() throws {
        let first = try makeStore(self)
        let second = try Store.open(at: first.path, options: first.options)
        defer { second.close() }
        let chat = try first.createChat(userID: "u")
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let s = i == 0 ? first : second
            for n in 0..<30 { _ = try? s.appendMessage(chatID: chat.id, role: .user, content: "\(i)-\(n)") }
        }
        let all = try first.listMessages(chatID: chat.id)
        XCTAssertEqual(all.count, 60)
        XCTAssertEqual(all.map(\.sequenceOrder), Array(1...60))
        XCTAssertTrue(try second.verify().ok)
    }

    func testChatsUpdateAndDelete() throws {
        let store = try makeStore(self)
        let s = try store.createSession(userID: "u")
        _ = try store.appendMessage(chatID: s.chatID, role: .user, content: "x")
        let updated = try store.updateChat(s.chatID, patch: ["context_data": .object(["k": .int(1)])])
        XCTAssertEqual(updated.contextData, .object(["k": .int(1)]))
        XCTAssertGreaterThanOrEqual(updated.updatedAt, updated.createdAt)
        try assertRefused(store, code: "conflict") { try store.deleteChat(s.chatID) }
        let other = try store.createChat(userID: "u", title: "other")
        _ = try store.updateSession(s.id, patch: ["chat_id": .string(other.id)])
        try store.deleteChat(s.chatID)
        try assertRefused(store, code: "not_found") { _ = try store.chat(s.chatID) }
        store.syncWorkTree()
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.path + "/" + Layout.chatDir(s.chatID)))
        XCTAssertEqual(try store.listChats().map(\.id), [other.id])
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    func testMissionsHopsAndToolSteps() throws {
        let store = try makeStore(self)
        let m = try store.createMission(userID: "u", name: "Analyse sales", successCriteria: ["a chart"])
        XCTAssertEqual(m.status, .awaitingApproval)
        let h1 = try store.addHop(missionID: m.id, name: "Collect")
        let h2 = try store.addHop(missionID: m.id, name: "Plot")
        let h0 = try store.addHop(missionID: m.id, name: "Plan", sequenceOrder: 1)
        XCTAssertEqual(try store.listHops(missionID: m.id).map(\.name), ["Plan", "Collect", "Plot"])
        XCTAssertEqual(try store.listHops(missionID: m.id).map(\.sequenceOrder), [1, 2, 3])
        // A position past the end (or before the start) is refused, not moved to the end.
        try assertRefused(store, field: "sequence_order") { _ = try store.addHop(missionID: m.id, name: "Far", sequenceOrder: 5) }
        try assertRefused(store, field: "sequence_order") { _ = try store.addHop(missionID: m.id, name: "Before", sequenceOrder: 0) }
        try assertRefused(store, field: "sequence_order") { _ = try store.addToolStep(hopID: h1.id, toolID: "sql", name: "far", sequenceOrder: 2) }
        _ = try store.reorderHops(missionID: m.id, order: [h2.id, h1.id, h0.id])
        XCTAssertEqual(try store.listHops(missionID: m.id).map(\.id), [h2.id, h1.id, h0.id])
        try assertRefused(store, field: "order") { _ = try store.reorderHops(missionID: m.id, order: [h2.id, h1.id]) }
        let s1 = try store.addToolStep(hopID: h1.id, toolID: "sql", name: "query")
        let s2 = try store.addToolStep(hopID: h1.id, toolID: "csv", name: "export")
        XCTAssertEqual([s1.sequenceOrder, s2.sequenceOrder], [1, 2])
        XCTAssertEqual(try store.hop(h1.id).missionID, m.id)
        let running = try store.setToolStepStatus(s1.id, .executing)
        XCTAssertNotNil(running.startedAt)
        XCTAssertNil(running.completedAt)
        XCTAssertNotNil(try store.setToolStepStatus(s1.id, .completed).completedAt)
        _ = try store.reorderToolSteps(hopID: h1.id, order: [s2.id, s1.id])
        XCTAssertEqual(try store.listToolSteps(hopID: h1.id).map(\.id), [s2.id, s1.id])
        let withHop = try store.updateMission(m.id, patch: ["current_hop_id": .string(h1.id)])
        XCTAssertEqual(withHop.currentHopID, h1.id)
        try assertRefused(store, field: "current_hop_id") { _ = try store.updateMission(m.id, patch: ["current_hop_id": .string("nope")]) }
        let full = try store.missionFull(m.id)
        XCTAssertEqual(full.hops.map(\.hop.id), [h2.id, h1.id, h0.id])
        XCTAssertEqual(full.hops[1].toolSteps.map(\.id), [s2.id, s1.id])
        XCTAssertEqual(try store.setMissionStatus(m.id, .inProgress).status, .inProgress)
        XCTAssertEqual(try store.setHopStatus(h2.id, .executing).status, .executing)
        try store.deleteToolStep(s2.id)
        XCTAssertEqual(try store.listToolSteps(hopID: h1.id).map(\.sequenceOrder), [1])
        try store.deleteHop(h1.id)
        XCTAssertNil(try store.mission(m.id).currentHopID)
        XCTAssertEqual(try store.listHops(missionID: m.id).map(\.sequenceOrder), [1, 2])
        try assertRefused(store, code: "not_found") { _ = try store.toolStep(s1.id) }
        let report = try store.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
    }

    func testAssetsAndMissionDeletion() throws {
        let store = try makeStore(self)
        let m = try store.createMission(userID: "u", name: "M")
        let h = try store.addHop(missionID: m.id, name: "H")
        let a1 = try store.createAsset(userID: "u", name: "input", schemaDefinition: .object(["type": .string("object")]), scopeType: .mission, scopeID: m.id, role: .input)
        let a2 = try store.createAsset(userID: "u", name: "chart", schemaDefinition: .emptyObject, scopeType: .hop, scopeID: h.id, role: .output, content: .string("png"))
        XCTAssertEqual(try store.listAssets(scopeType: .hop, scopeID: h.id).map(\.id), [a2.id])
        XCTAssertEqual(try store.updateAsset(a1.id, patch: ["status": .string("ready")]).status, .ready)
        try assertRefused(store, field: "scope_id") {
            _ = try store.createAsset(userID: "u", name: "x", schemaDefinition: .emptyObject, scopeType: .hop, scopeID: "nohop", role: .input)
        }
        try assertRefused(store, field: "status") { _ = try store.updateAsset(a1.id, patch: ["status": .string("shiny")]) }
        let s = try store.createSession(userID: "u", missionID: m.id)
        XCTAssertEqual(s.missionID, m.id)
        try store.deleteMission(m.id)
        XCTAssertNil(try store.session(s.id).missionID)
        XCTAssertEqual(try store.listAssets().count, 0)
        let lone = try store.createMission(userID: "u", name: "N")
        let a3 = try store.createAsset(userID: "u", name: "y", schemaDefinition: .emptyObject, scopeType: .mission, scopeID: lone.id, role: .intermediate)
        try store.deleteAsset(a3.id)
        try assertRefused(store, code: "not_found") { _ = try store.asset(a3.id) }
        XCTAssertTrue(try store.verify().ok)
    }

    func testBadInputIsRefusedWithTheFieldAndNothingIsWritten() throws {
        let store = try makeStore(self) { $0.limits.maxContentBytes = 100 }
        let chat = try store.createChat(userID: "u")
        // Ids that could reach outside their folder, or break the pattern.
        for bad in ["../etc", "a/b", "", ".hidden", "-x", String(repeating: "a", count: 65), "spa ce", "ü"] {
            try assertRefused(store, field: "id") { _ = try store.createChat(userID: "u", id: bad) }
        }
        try assertRefused(store, field: "chat_id") { _ = try store.appendMessage(chatID: "../../x", role: .user, content: "x") }
        // Unknown enum values.
        try assertRefused(store, field: "role") { _ = try MessageRole.parse("robot", field: "role") }
        try assertRefused(store, field: "status") { _ = try store.updateChat(chat.id, patch: ["status": .string("x")]) }
        let s = try store.createSession(userID: "u", chatID: chat.id)
        try assertRefused(store, field: "status") { _ = try store.updateSession(s.id, patch: ["status": .string("sleeping")]) }
        // Oversize content.
        try assertRefused(store, field: "content") { _ = try store.appendMessage(chatID: chat.id, role: .user, content: String(repeating: "x", count: 101)) }
        // Malformed JSON for metadata or context.
        try assertRefused(store, field: "message_metadata") { _ = try JSONValue.parseObject("{not json", field: "message_metadata") }
        try assertRefused(store, field: "context_data") { _ = try JSONValue.parseObject("[1,2]", field: "context_data") }
        try assertRefused(store, field: "context_data") { _ = try store.updateChat(chat.id, patch: ["context_data": .string("text")]) }
        try assertRefused(store, field: "message_metadata") { _ = try store.appendMessage(chatID: chat.id, role: .user, content: "x", metadata: .int(3)) }
        // Names and titles over 255 characters; empty required names.
        try assertRefused(store, field: "title") { _ = try store.createChat(userID: "u", title: String(repeating: "t", count: 256)) }
        try assertRefused(store, field: "name") { _ = try store.createMission(userID: "u", name: "  ") }
        try assertRefused(store, field: "user_id") { _ = try store.createSession(userID: "") }
        // References that do not exist.
        try assertRefused(store, code: "not_found") { _ = try store.appendMessage(chatID: "nochat", role: .user, content: "x") }
        try assertRefused(store, code: "not_found") { _ = try store.createSession(userID: "u", missionID: "nomission") }
        try assertRefused(store, code: "not_found") { _ = try store.createSession(userID: "u", chatID: "nochat") }
        try assertRefused(store, code: "not_found") { _ = try store.updateSession(s.id, patch: ["mission_id": .string("nomission")]) }
        // Unknown and read-only fields in an update.
        try assertRefused(store, field: "titel") { _ = try store.updateChat(chat.id, patch: ["titel": .string("x")]) }
        try assertRefused(store, field: "created_at") { _ = try store.updateChat(chat.id, patch: ["created_at": .string("2026-01-01T00:00:00.000Z")]) }
        // Duplicates.
        try assertRefused(store, code: "conflict") { _ = try store.createChat(userID: "u", id: chat.id) }
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    func testLoadRefusesABundleWithAnyBadDocumentAndWritesNothing() throws {
        let store = try makeStore(self)
        let bad = """
        {"chats":[{"id":"c1","user_id":"u","created_at":"2026-11-20T10:00:00.000Z","updated_at":"2026-11-20T10:00:00.000Z"}],
         "sessions":[{"id":"s1","user_id":"u","chat_id":"c2","created_at":"2026-11-20T10:00:00.000Z","updated_at":"2026-11-20T10:00:00.000Z","last_activity_at":"2026-11-20T10:00:00.000Z"}]}
        """
        try assertRefused(store, field: "sessions.chat_id") { try store.load(Data(bad.utf8)) }
        try assertRefused(store, field: "chats[0].created_at") { try store.load(Data(#"{"chats":[{"id":"c1","user_id":"u","created_at":"yesterday","updated_at":"2026-11-20T10:00:00.000Z"}]}"#.utf8)) }
        try assertRefused(store, field: "colour") { try store.load(Data(#"{"chats":[{"id":"c1","user_id":"u","colour":"red","created_at":"2026-11-20T10:00:00.000Z","updated_at":"2026-11-20T10:00:00.000Z"}]}"#.utf8)) }
    }

    func testSamplesLoadAndVerify() throws {
        let store = try makeStore(self)
        let data = try XCTUnwrap(FileManager.default.contents(atPath: repositoryRoot + "/Samples/sample-data.json"))
        let n = try store.load(data, name: "samples")
        XCTAssertGreaterThan(n, 20)
        let report = try store.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    /// A session's chat id is derived from the session id; a chat that has it already is no
    /// reason to refuse the session (it was a 409).
    func testASessionsChatIdThatIsTakenIsNoConflict() throws {
        let store = try makeStore(self)
        _ = try store.createChat(userID: "bob", id: "chat-foo1")
        let s = try store.createSession(userID: "alice", id: "foo1")
        XCTAssertNotEqual(s.chatID, "chat-foo1")
        XCTAssertEqual(try store.chat(s.chatID).userID, "alice")
        XCTAssertEqual(try store.chat("chat-foo1").userID, "bob")
        let long1 = String(repeating: "b", count: 64), long2 = String(repeating: "b", count: 63) + "c"
        let a = try store.createSession(userID: "alice", id: long1), b = try store.createSession(userID: "alice", id: long2)
        XCTAssertEqual(a.chatID, "chat-" + String(repeating: "b", count: 59))
        XCTAssertNotEqual(a.chatID, b.chatID)
        XCTAssertEqual(try store.createSession(userID: "carol", id: "plain").chatID, "chat-plain")
        XCTAssertTrue(try store.verify().ok)
    }

    func testVerifyReportsAHandCommittedBrokenDocument() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let m1 = try store.appendMessage(chatID: chat.id, role: .user, content: "one")
        let m2 = try store.appendMessage(chatID: chat.id, role: .user, content: "two")
        store.syncWorkTree()
        // Two messages broken by hand: an unknown field, and valid JSON not in canonical form.
        let p1 = store.path + "/" + Layout.message(chat.id, m1.id), p2 = store.path + "/" + Layout.message(chat.id, m2.id)
        let text1 = try String(contentsOfFile: p1, encoding: .utf8)
        try text1.replacingOccurrences(of: "\n}", with: ",\n  \"zzz\": 1\n}").write(toFile: p1, atomically: true, encoding: .utf8)
        let text2 = try String(contentsOfFile: p2, encoding: .utf8)
        try text2.replacingOccurrences(of: "\n  ", with: "").write(toFile: p2, atomically: true, encoding: .utf8)
        let path = store.path + "/" + Layout.chat(chat.id)
        try Data(#"{"id":"\#(chat.id)","user_id":"u","created_at":"nope","updated_at":"2026-11-20T10:00:00.000Z"}"#.utf8).write(to: URL(fileURLWithPath: path))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: store.path + "/stray.json"))
        // Numbers with a gap (unique, but not 1…N): hop #3 made #7, a hop's only step #1 made #2.
        let mission = try store.createMission(userID: "u", name: "M")
        let hops = try (1...3).map { try store.addHop(missionID: mission.id, name: "h\($0)") }
        let step = try store.addToolStep(hopID: hops[0].id, toolID: "t", name: "s")
        store.syncWorkTree()
        for (file, from, to) in [(Layout.hop(mission.id, hops[2].id), 3, 7), (Layout.step(mission.id, hops[0].id, step.id), 1, 2)] {
            let text = try String(contentsOfFile: store.path + "/" + file, encoding: .utf8)
            XCTAssertTrue(text.contains("\"sequence_order\": \(from)"), text)
            try text.replacingOccurrences(of: "\"sequence_order\": \(from)", with: "\"sequence_order\": \(to)")
                .write(toFile: store.path + "/" + file, atomically: true, encoding: .utf8)
        }
        try git(store.path, "add", "-A")
        XCTAssertEqual(try git(store.path, "commit", "-qm", "hand edit").status, 0)
        let report = try store.verify()
        XCTAssertFalse(report.ok)
        XCTAssertTrue(report.problems.contains { $0.path == Layout.chat(chat.id) && $0.problem.contains("created_at") }, "\(report.problems)")
        XCTAssertFalse(report.problems.contains { $0.problem.contains("without a chat.json") }, "the chat.json is there, broken: \(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.path == "stray.json" }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.path == Layout.message(chat.id, m1.id) && $0.problem.contains("zzz") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.path == Layout.message(chat.id, m2.id) && $0.problem.contains("canonical") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.path == Layout.hopsDir(mission.id) && $0.problem.contains("gaps") }, "\(report.problems)")
        XCTAssertTrue(report.problems.contains { $0.path == "hop \(hops[0].id)" && $0.problem.contains("gaps") }, "\(report.problems)")
    }

    /// New ids are random version-4 UUIDs in lowercase (the id rule's form), none repeated.
    func testNewIDsAreLowercaseVersion4UUIDs() throws {
        let ids = (0..<10_000).map { _ in newID() }
        XCTAssertEqual(Set(ids).count, ids.count)
        let form = try NSRegularExpression(pattern: "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        for id in ids { XCTAssertEqual(form.numberOfMatches(in: id, range: NSRange(id.startIndex..., in: id)), 1, id) }
        // Every random nibble takes every value (a stuck byte would not).
        for position in [0, 9, 15, 20, 35] {
            XCTAssertEqual(Set(ids.map { $0[$0.index($0.startIndex, offsetBy: position)] }).count, 16, "position \(position)")
        }
    }

    func testAStaleLockLeftByACrashIsCleared() throws {
        let store = try makeStore(self) { $0.staleLockSeconds = 0.5 }
        let chat = try store.createChat(userID: "u")
        let lock = store.path + "/.git/refs/heads/main.lock"
        XCTAssertTrue(FileManager.default.createFile(atPath: lock, contents: Data()))
        let indexLock = store.path + "/.git/index.lock"
        XCTAssertTrue(FileManager.default.createFile(atPath: indexLock, contents: Data()))
        // Stale means untouched: neither written nor renamed (an old modification time alone is
        // not enough, as a lock taken by a rename keeps its contents' time).
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: lock)
        let started = Date()
        let m = try store.appendMessage(chatID: chat.id, role: .user, content: "after a crash")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.45, "the lock was taken away before it went stale")
        XCTAssertEqual(m.sequenceOrder, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lock))
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "status", "--porcelain").out, "")
    }

    func testOpeningRefusesWhatIsNotAStoreOrIsNewer() throws {
        let dir = NSTemporaryDirectory() + "chatsync-plain-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try Store.open(at: dir)) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "bad_store") }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try git(dir, "init", "-q", "-b", "master")
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: dir + "/readme.txt"))
        try git(dir, "add", "-A")
        try git(dir, "commit", "-qm", "not a store")
        /// What a refused open must leave as it was: the references, the index and the work tree.
        func state() throws -> String {
            try git(dir, "for-each-ref").out + git(dir, "ls-files", "--stage").out + git(dir, "status", "--porcelain", "--ignored").out
        }
        // History on another branch: not a store, and no `main` is made.
        var before = try state()
        XCTAssertThrowsError(try Store.open(at: dir)) {
            XCTAssertEqual(($0 as? ChatSyncError)?.code, "bad_store")
            XCTAssertTrue("\($0)".contains("without a branch main (it has master)"), "\($0)")
        }
        XCTAssertThrowsError(try Store.open(at: dir, create: true)) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "bad_store") }
        XCTAssertEqual(try state(), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.git/chatsync"), "no file of chatsync's is made in it")
        // A branch main whose tree is not a store's, and whose index is behind it (as a fetch
        // leaves it): refused, and nothing is checked out.
        try git(dir, "branch", "-m", "master", "main")
        try Data("y\n".utf8).write(to: URL(fileURLWithPath: dir + "/other.txt"))
        try git(dir, "add", "other.txt")
        try git(dir, "commit", "-qm", "more")
        try git(dir, "read-tree", "HEAD~1")
        try FileManager.default.removeItem(atPath: dir + "/other.txt")
        before = try state()
        XCTAssertThrowsError(try Store.open(at: dir)) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "bad_store") }
        XCTAssertEqual(try state(), before)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/other.txt"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.git/chatsync"))
        try git(dir, "reset", "-q", "--hard", "main")
        try Data(#"{"format": "chatsync", "version": 99}"#.utf8).write(to: URL(fileURLWithPath: dir + "/chatsync.json"))
        try git(dir, "add", "-A")
        try git(dir, "commit", "-qm", "future")
        XCTAssertThrowsError(try Store.open(at: dir)) { XCTAssertTrue("\($0)".contains("newer")) }
    }

    /// JSON given by a person: a key twice, or an integer past 64 bits, is refused with its
    /// path; everything else JSONDecoder reads passes.
    func testStrictJSONRefusesRepeatedKeysAndOversizeIntegers() throws {
        func problem(_ text: String, field: String? = nil) -> String? {
            do { try StrictJSON.check(Data(text.utf8), field: field); return nil } catch let e as ChatSyncError {
                if case .invalid(let f, _) = e { return f }
                return "\(e)"
            } catch { return "\(error)" }
        }
        for good in [#"{"a": 1, "b": {"a": 2}, "c": [{"a": 1}, {"a": 2}]}"#, #"{"a\"b": 1, "a\\\"b": 2, "x": "}{,:\""}"#,
                     #"[-9223372036854775808, 9223372036854775807, 1.5, 1e300, -0.0, true, false, null]"#, #""text""#, "{}"] {
            XCTAssertNil(problem(good), good)
        }
        XCTAssertEqual(problem(#"{"a": 1, "b": 2, "a": 3}"#), "a")
        XCTAssertEqual(problem("\u{FEFF}" + #"{"a": 1, "a": 3}"#), "a", "after a byte order mark too")
        XCTAssertEqual(problem(#"{"m": {"k": [0, {"\u006b": 1, "k": 2}]}}"#, field: "metadata"), "metadata.m.k.1.k")
        XCTAssertEqual(problem(#"{"n": [1, 9223372036854775808]}"#), "n.1")
        XCTAssertEqual(problem(#"-9223372036854775809"#, field: "value"), "value")
        XCTAssertThrowsError(try JSONValue.parse(#"{"k": 1, "k": 2}"#, field: "metadata"))
    }

    /// A repository made by plain `git init` (HEAD on `master`, no commits): only `init` makes
    /// it a store, and then HEAD names the store's branch, so plain git sees the history.
    func testAnEmptyGitRepositoryBecomesAStoreOnlyByInitAndHEADNamesMain() throws {
        let dir = NSTemporaryDirectory() + "chatsync-plain-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--initial-branch=master", dir).status, 0)
        XCTAssertThrowsError(try Store.open(at: dir)) { XCTAssertTrue("\($0)".contains("chatsync init"), "\($0)") }
        XCTAssertEqual(try git(dir, "for-each-ref").out, "", "a read wrote nothing")
        var o = StoreOptions()
        o.durable = false
        let store = try Store.open(at: dir, options: o, create: true)
        _ = try store.createChat(userID: "u")
        store.close()
        XCTAssertEqual(try git(dir, "symbolic-ref", "HEAD").out.trimmingCharacters(in: .whitespacesAndNewlines), "refs/heads/main")
        XCTAssertEqual(try git(dir, "status", "--porcelain").out, "")
        XCTAssertEqual(try git(dir, "rev-list", "--count", "HEAD").out.trimmingCharacters(in: .whitespacesAndNewlines), "2")
    }

    func testTimestampsAndLayout() throws {
        let t = try XCTUnwrap(Timestamp(rfc3339: "2026-11-23T03:27:50.123Z"))
        XCTAssertEqual(t.rfc3339, "2026-11-23T03:27:50.123Z")
        XCTAssertEqual(Timestamp(rfc3339: "2026-11-23T04:27:50.1+01:00")?.rfc3339, "2026-11-23T03:27:50.100Z")
        XCTAssertEqual(Timestamp(rfc3339: "2024-02-29T00:00:00Z")?.rfc3339, "2024-02-29T00:00:00.000Z")
        // More than three fraction digits are cut to milliseconds (four digits stopped the process).
        XCTAssertEqual(Timestamp(rfc3339: "2020-01-01T00:00:00.1234Z")?.rfc3339, "2020-01-01T00:00:00.123Z")
        XCTAssertEqual(Timestamp(rfc3339: "2020-01-01T00:00:00.987654321-00:30")?.rfc3339, "2020-01-01T00:30:00.987Z")
        XCTAssertEqual(Timestamp(rfc3339: "2020-01-01T00:00:00.12Z")?.rfc3339, "2020-01-01T00:00:00.120Z")
        // Only what UTC can write with four year digits (an offset moved these out, and they were stored unreadable).
        XCTAssertNil(Timestamp(rfc3339: "9999-12-31T23:59:59.999-01:00"))
        XCTAssertNil(Timestamp(rfc3339: "0000-01-01T00:30:00.000+01:00"))
        XCTAssertEqual(Timestamp(rfc3339: "9999-12-31T23:59:59.999Z")?.rfc3339, "9999-12-31T23:59:59.999Z")
        XCTAssertEqual(Timestamp(rfc3339: "0001-01-01T00:00:00.000Z")?.rfc3339, "0001-01-01T00:00:00.000Z")
        for bad in ["2026-02-30T00:00:00Z", "2026-11-23 03:27:50Z", "2026-11-23T03:27:50", "yesterday", "2026-13-01T00:00:00Z"] {
            XCTAssertNil(Timestamp(rfc3339: bad), bad)
        }
        XCTAssertEqual(Timestamp(milliseconds: 0).rfc3339, "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Layout.locate(Layout.message("c1", "m1")), .message(chatID: "c1", id: "m1"))
        XCTAssertEqual(Layout.locate(Layout.step("m", "h", "s")), .toolStep(missionID: "m", hopID: "h", id: "s"))
        XCTAssertNil(Layout.locate("sessions/00/x.json"), "a file in the wrong shard is not a document")
        XCTAssertEqual(Layout.shard("abc").count, 2)
    }
}

final class CompactionTests: XCTestCase {
    func testCompactionPacksEverythingAndTheStoreStaysWhole() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        var ids: [String] = []
        for i in 0..<40 { ids.append(try store.appendMessage(chatID: chat.id, role: .user, content: "message \(i)").id) }
        // A loose object as plain git would leave it.
        store.syncWorkTree()
        try Data("{}".utf8).write(to: URL(fileURLWithPath: store.path + "/loose.txt"))
        XCTAssertEqual(try git(store.path, "add", "loose.txt").status, 0)
        XCTAssertEqual(try git(store.path, "commit", "-qm", "plain git commit").status, 0)
        let before = try store.withRepository { ($0.packFiles().count, $0.looseObjectCount()) }
        XCTAssertGreaterThan(before.0, 1)
        XCTAssertGreaterThan(before.1, 0)
        // With a grace period, young packs and objects stay.
        let young = try store.compact(grace: 3600)
        XCTAssertEqual(young.looseObjectsAfter, before.1)
        let r = try store.compact(grace: 0)
        XCTAssertEqual(r.packsAfter, 1)
        XCTAssertEqual(r.looseObjectsAfter, 0)
        XCTAssertLessThan(r.bytesAfter, r.bytesBefore)
        XCTAssertEqual(try git(store.path, "fsck", "--strict", "--no-dangling").status, 0)
        XCTAssertEqual(try store.listMessages(chatID: chat.id).map(\.id), ids)
        XCTAssertEqual(try store.commitCount(), 43, "init, the chat, 40 messages, the plain git commit: all kept")
        // The store works on: more appends, another handle, and verify is clean.
        _ = try store.appendMessage(chatID: chat.id, role: .user, content: "after")
        let other = try Store.open(at: store.path, options: store.options)
        XCTAssertEqual(try other.listMessages(chatID: chat.id).count, 41)
        other.close()
        let report = try store.verify()
        XCTAssertTrue(report.problems.allSatisfy { $0.path == "loose.txt" }, "\(report.problems)")
    }

    /// Every batch adds a pack and merges remove packs: the process must not keep them all open.
    func testOpenFilesStayBoundedAsPacksComeAndGo() throws {
        func openFiles() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u")
        let before = openFiles()
        for i in 0..<400 {
            _ = try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)")
            if i % 50 == 0 { _ = try store.listMessages(chatID: chat.id) }
        }
        XCTAssertLessThan(openFiles() - before, 150, "pack files are closed again")
        XCTAssertEqual(try store.listMessages(chatID: chat.id).count, 400)
    }

    func testTheWriterKeepsPacksFew() throws {
        let store = try makeStore(self) { $0.maxPacks = 8 }
        let chat = try store.createChat(userID: "u")
        for i in 0..<100 { _ = try store.appendMessage(chatID: chat.id, role: .user, content: "\(i)") }
        XCTAssertEqual(try store.listMessages(chatID: chat.id).map(\.content), (0..<100).map { "\($0)" })
        // Packs are merged on a thread of their own while the store is open (a pack listed now
        // may be gone a moment later); syncWorkTree and close wait for it.
        store.syncWorkTree()
        XCTAssertEqual(try git(store.path, "fsck", "--strict", "--no-dangling").status, 0)
        store.close()
        let packs = try Repository.open(store.path).packFiles()
        XCTAssertLessThanOrEqual(packs.count, 8 + 16, "merged geometrically as they come")
        var deflatedBlobs = 0
        for pack in packs {
            let (out, status) = try git(store.path, "verify-pack", "-v", pack.indexPath)
            XCTAssertEqual(status, 0, pack.packPath)
            // "id type size size-in-pack offset": a stored object takes more than its size.
            for line in out.split(separator: "\n") {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                if f.count >= 5, f[1] == "blob", let size = Int(f[2]), let packed = Int(f[3]), packed < size { deflatedBlobs += 1 }
            }
        }
        XCTAssertGreaterThan(deflatedBlobs, 50, "merged packs hold the messages deflated")
    }
}

final class LayoutTests: XCTestCase {
    /// The examples of Store/FORMAT.md, so another implementation can check its hash.
    func testShardsAreTheDocumentedOnes() {
        XCTAssertEqual(Layout.shard("abc"), "0b")
        XCTAssertEqual(Layout.messageShard("abc"), "9/0/b")
        XCTAssertEqual(Layout.message("c1", "abc"), "chats/\(Layout.shard("c1"))/c1/messages/9/0/b/abc.json")
    }
}

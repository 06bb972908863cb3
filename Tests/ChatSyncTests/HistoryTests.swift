import ChatSync
import Foundation
import XCTest

final class HistoryTests: XCTestCase {
    let multiline = "Line one\nligne deux — café\n日本語の三行目"

    func testLogOfAChatSessionAndMission() throws {
        let store = try makeStore(self)
        let s = try store.createSession(userID: "u")
        let other = try store.createChat(userID: "u")
        _ = try store.appendMessage(chatID: s.chatID, role: .user, content: "a")
        _ = try store.appendMessage(chatID: other.id, role: .user, content: "elsewhere")
        _ = try store.updateChat(s.chatID, patch: ["title": .string("T")])
        let m = try store.createMission(userID: "u", name: "M")
        _ = try store.addHop(missionID: m.id, name: "h")
        let chatLog = try store.history(of: .chat(s.chatID))
        XCTAssertEqual(chatLog.map(\.summary).count, 3, "\(chatLog.map(\.summary))")
        XCTAssertTrue(chatLog[0].summary.contains("update title"), "newest first")
        XCTAssertTrue(chatLog[2].summary.contains("session"), "the session's creation made the chat")
        XCTAssertEqual(try store.history(of: .session(s.id)).count, 1)
        XCTAssertEqual(try store.history(of: .mission(m.id)).count, 2)
        XCTAssertEqual(try store.history(of: .chat(s.chatID), limit: 1).count, 1)
        XCTAssertThrowsError(try store.history(of: .chat("nope"))) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "not_found") }
    }

    func testSemanticDiffShowsMessagesAddedEditedRemovedAndFields() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "Before")
        let keep = try store.appendMessage(chatID: chat.id, role: .user, content: multiline)
        let gone = try store.appendMessage(chatID: chat.id, role: .assistant, content: "to be removed")
        let start = try XCTUnwrap(store.head()).hex
        _ = try store.editMessage(chatID: chat.id, id: keep.id, content: "Line one\nligne deux — modifiée\n日本語の三行目")
        let added = try store.appendMessage(chatID: chat.id, role: .assistant, content: "new\nreply")
        _ = try store.updateChat(chat.id, patch: ["title": .string("After")])
        // Remove a message by hand (as a plain git user would), then renumber through a merge-free path.
        let d = try store.diff(from: start)
        XCTAssertEqual(d.changes.first { $0.id == added.id }?.change, .added)
        let edited = try XCTUnwrap(d.changes.first { $0.id == keep.id })
        XCTAssertEqual(edited.change, .edited)
        XCTAssertEqual(edited.contentDiff?.filter { $0.op != .same }.map(\.text), ["ligne deux — café", "ligne deux — modifiée"])
        let chatChange = try XCTUnwrap(d.changes.first { $0.type == .chat })
        XCTAssertEqual(chatChange.fields.map(\.field), ["title"])
        XCTAssertEqual(chatChange.fields.first?.old, .string("Before"))
        XCTAssertEqual(chatChange.fields.first?.new, .string("After"))
        XCTAssertNil(d.changes.first { $0.id == gone.id }, "unchanged")
        // In chat order, after the chat (files are sharded by a hash of the id, so the file order is not).
        let more = try (0..<12).map { try store.appendMessage(chatID: chat.id, role: .user, content: "m\($0)").id }
        let ordered = try store.diff(from: start)
        XCTAssertEqual(ordered.changes.first?.type, .chat)
        XCTAssertEqual(ordered.changes.filter { $0.type == .message }.map(\.id), [keep.id, added.id] + more)
        // Deleting the chat removes every message.
        try store.deleteChat(chat.id)
        let removal = try store.diff(from: start)
        XCTAssertEqual(Set(removal.changes.filter { $0.type == .message }.map(\.change)), [.removed])
        XCTAssertEqual(removal.changes.filter { $0.type == .message }.count, 2)
        // Limited to one chat.
        let other = try store.createChat(userID: "u")
        XCTAssertTrue(try store.diff(from: start, chatID: other.id).changes.allSatisfy { $0.id == other.id })
    }

    func testDocumentsAtARevisionAndDatesAndBadRevisions() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "v1")
        _ = try store.updateChat(chat.id, patch: ["title": .string("v2")])
        _ = try store.updateChat(chat.id, patch: ["title": .string("v3")])
        XCTAssertEqual(try store.document(Chat.self, id: chat.id, at: "HEAD~2").title, "v1")
        XCTAssertEqual(try store.chatWithMessages(chat.id, at: "HEAD~1").chat.title, "v2")
        XCTAssertEqual(try store.resolve("main"), try store.head())
        let today = String(Timestamp.now().rfc3339.prefix(10))
        XCTAssertEqual(try store.resolve("@{\(today)}"), try store.head())
        XCTAssertThrowsError(try store.resolve("@{1999-01-01}"))
        XCTAssertThrowsError(try store.resolve("HEAD~99")) { XCTAssertEqual(($0 as? ChatSyncError)?.field, "revision") }
        XCTAssertThrowsError(try store.document(Chat.self, id: chat.id, at: "HEAD~3")) { XCTAssertEqual(($0 as? ChatSyncError)?.code, "not_found") }
    }

    func testBlameThroughEditsAndMerges() throws {
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chat = try origin.createChat(userID: "u")
        let first = try origin.appendMessage(chatID: chat.id, role: .user, content: multiline)
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        let b = try clone(self, bare, "b")
        let fromB = try b.appendMessage(chatID: chat.id, role: .assistant, content: "from B")
        _ = try b.push(options: quickSync)
        _ = try origin.editMessage(chatID: chat.id, id: first.id, content: "edited")
        _ = try origin.appendMessage(chatID: chat.id, role: .user, content: "after")
        _ = try origin.sync(options: quickSync)
        let blame = try origin.blame(chatID: chat.id)
        XCTAssertEqual(blame.count, 3)
        let byID = Dictionary(uniqueKeysWithValues: blame.map { ($0.message.id, $0) })
        XCTAssertTrue(byID[first.id]?.added.summary.contains("add message #1") == true)
        XCTAssertTrue(byID[first.id]?.lastEdited?.summary.contains("edit message") == true)
        XCTAssertTrue(byID[fromB.id]?.added.summary.contains("add message #2 (assistant)") == true, "added where B made it, not at the merge")
        XCTAssertNil(byID[fromB.id]?.lastEdited, "renumbering by the merge is not an edit")
    }

    func testExportAndTextconv() throws {
        let store = try makeStore(self)
        let chat = try store.createChat(userID: "u", title: "Transcript")
        let m = try store.appendMessage(chatID: chat.id, role: .assistant, content: multiline)
        let md = try store.export(chatID: chat.id, format: .markdown)
        XCTAssertTrue(md.hasPrefix("# Transcript\n"))
        XCTAssertTrue(md.contains("## #1 assistant"))
        XCTAssertTrue(md.contains(multiline))
        let json = try store.export(chatID: chat.id, format: .json)
        XCTAssertEqual(try JSONDecoder().decode(ChatWithMessages.self, from: Data(json.utf8)).messages.first?.content, multiline)
        let text = Textconv.render(try DocumentCoding.encode(m))
        XCTAssertTrue(text.hasPrefix("#1 assistant 20"), text)
        XCTAssertTrue(text.hasSuffix(multiline + "\n"), text)
    }
}

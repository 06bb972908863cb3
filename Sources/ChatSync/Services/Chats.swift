import Foundation
import GitKit

/// A chat with its messages in order.
public struct ChatWithMessages: Codable, Sendable, Equatable {
    public var chat: Chat
    public var messages: [ChatMessage]
}

extension Store {
    // MARK: chats

    /// Creates a chat.
    public func createChat(userID: String, title: String? = nil, contextData: JSONValue = .emptyObject, id: String? = nil) throws -> Chat {
        let id = id ?? newID()
        try Rules.id(id, "id")
        return try perform { tx in
            let chat = Chat(id: id, userID: userID, title: title, contextData: contextData, createdAt: tx.now, updatedAt: tx.now)
            try Self.insertChat(chat, tx)
            tx.message = "chat \(short(id)): create" + (title.map { " \"\($0.prefix(60))\"" } ?? "")
            return chat
        }
    }

    static func insertChat(_ chat: Chat, _ tx: Transaction) throws {
        guard try !tx.exists(Layout.chat(chat.id)) else { throw ChatSyncError.conflict("chat \(chat.id) already exists") }
        try tx.put(chat, at: Layout.chat(chat.id))
    }

    public func chat(_ id: String) throws -> Chat {
        try Rules.id(id, "chat_id")
        return try read { try $0.require(Chat.self, at: Layout.chat(id), id: id) }
    }

    /// A chat and its messages in order, at the tip or at a revision.
    public func chatWithMessages(_ id: String, at revision: String? = nil) throws -> ChatWithMessages {
        try Rules.id(id, "chat_id")
        return try read(at: revision) { snap in
            let chat = try snap.require(Chat.self, at: Layout.chat(id), id: id)
            return ChatWithMessages(chat: chat, messages: try orderedMessages(id, snap))
        }
    }

    /// Chats, newest first; only the user's when `userID` is given.
    public func listChats(userID: String? = nil) throws -> [Chat] {
        try read { snap in
            var chats: [Chat] = []
            for shard in try snap.names(in: "chats") {
                for id in try snap.names(in: "chats/\(shard)") {
                    if let c = try snap.document(Chat.self, at: Layout.chat(id)), userID == nil || c.userID == userID { chats.append(c) }
                }
            }
            return chats.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    /// Changes a chat's fields (`title`, `context_data`, `user_id`) from a patch.
    public func updateChat(_ id: String, patch: [String: JSONValue]) throws -> Chat {
        try Rules.id(id, "chat_id")
        return try perform { tx in
            let old = try tx.require(Chat.self, at: Layout.chat(id), id: id)
            var chat = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "created_at", "updated_at"], limits: tx.limits)
            if chat == old { return old }
            chat.updatedAt = tx.now
            try tx.put(chat, at: Layout.chat(id))
            tx.message = "chat \(short(id)): update " + patch.keys.sorted().joined(separator: ", ")
            return chat
        }
    }

    /// Deletes a chat and its messages. Refused while a session uses the chat.
    public func deleteChat(_ id: String) throws {
        try Rules.id(id, "chat_id")
        try perform { tx in
            _ = try tx.require(Chat.self, at: Layout.chat(id), id: id)
            try self.removeChat(id, tx)
            tx.message = "chat \(short(id)): delete with its messages"
        }
    }

    /// Removes a chat with its messages; refused while a session uses it.
    func removeChat(_ id: String, _ tx: Transaction) throws {
        let users = try self.sessionIndex.sessions(tx) { $0.chatID == id }
        if !users.isEmpty {
            throw ChatSyncError.conflict("chat \(id) is used by session(s) \(users.map(\.id).sorted().joined(separator: ", ")); delete or re-point them first")
        }
        try tx.deleteTree(Layout.chatDir(id))
    }

    // MARK: messages

    /// Appends a message: its `sequence_order` is the chat's count + 1 and its `created_at`
    /// the later of the clock and the chat's latest `created_at` + 1 ms, so that order by time
    /// and order by sequence agree.
    public func appendMessage(chatID: String, role: MessageRole, content: String, metadata: JSONValue = .emptyObject,
                              userID: String? = nil, id: String? = nil) throws -> ChatMessage {
        let id = id ?? newID()
        try Rules.id(id, "id")
        try Rules.id(chatID, "chat_id")
        try Rules.content(content, "content", options.limits)
        try Rules.object(metadata, "message_metadata")
        return try perform { [self] tx in
            guard try tx.exists(Layout.chat(chatID)) else { throw ChatSyncError.notFound(kind: Chat.kind.rawValue, id: chatID) }
            let path = Layout.message(chatID, id)
            guard try !tx.exists(path) else { throw ChatSyncError.conflict("message \(id) already exists in chat \(chatID)") }
            let summary = try chatSummary(chatID, in: tx.base)
            var createdAt = tx.now
            if let last = summary.lastCreatedAt, createdAt <= last { createdAt = last.adding(milliseconds: 1) }
            guard Timestamp.range.contains(createdAt) else {
                throw ChatSyncError.invalid(field: "created_at", rule: "would be after 9999-12-31T23:59:59.999Z (the chat's latest message is dated \(summary.lastCreatedAt?.rfc3339 ?? "-") + 1 ms)")
            }
            let message = ChatMessage(id: id, chatID: chatID, userID: userID, sequenceOrder: summary.count + 1, role: role,
                                      content: content, messageMetadata: metadata, createdAt: createdAt)
            try tx.put(message, at: path)
            tx.summaries[chatID] = ChatSummary(count: summary.count + 1, lastCreatedAt: createdAt, lastID: id)
            tx.message = "chat \(short(chatID)): add message #\(message.sequenceOrder) (\(role.rawValue))"
            return message
        }
    }

    /// A chat's messages in order; `after` keeps those with a greater sequence number, `limit` the first N of them.
    public func listMessages(chatID: String, after: Int? = nil, limit: Int? = nil, at revision: String? = nil) throws -> [ChatMessage] {
        try Rules.id(chatID, "chat_id")
        if let limit, limit < 0 { throw ChatSyncError.invalid(field: "limit", rule: "must be ≥ 0, got \(limit)") }
        if let after, after < 0 { throw ChatSyncError.invalid(field: "after", rule: "must be ≥ 0, got \(after)") }
        return try read(at: revision) { snap in
            _ = try snap.require(Chat.self, at: Layout.chat(chatID), id: chatID)
            var all = try orderedMessages(chatID, snap)
            if let after { all = all.filter { $0.sequenceOrder > after } }
            if let limit, all.count > limit { all = Array(all.prefix(limit)) }
            return all
        }
    }

    func orderedMessages(_ chatID: String, _ snap: Snapshot) throws -> [ChatMessage] {
        guard let tree = try snap.oid(at: Layout.messagesDir(chatID)) else { return [] }
        return Self.sortedInChatOrder(try messages(inTree: tree, snapshot: snap))
    }

    public func message(chatID: String, id: String) throws -> ChatMessage {
        try Rules.id(chatID, "chat_id")
        try Rules.id(id, "message_id")
        return try read { snap in
            _ = try snap.require(Chat.self, at: Layout.chat(chatID), id: chatID)
            return try snap.require(ChatMessage.self, at: Layout.message(chatID, id), id: id)
        }
    }

    /// Edits a message's content and/or metadata; sets `updated_at`.
    public func editMessage(chatID: String, id: String, content: String? = nil, metadata: JSONValue? = nil) throws -> ChatMessage {
        try Rules.id(chatID, "chat_id")
        try Rules.id(id, "message_id")
        guard content != nil || metadata != nil else {
            throw ChatSyncError.invalid(field: "content", rule: "an edit needs new content or metadata")
        }
        if let content { try Rules.content(content, "content", options.limits) }
        if let metadata { try Rules.object(metadata, "message_metadata") }
        return try perform { tx in
            _ = try tx.require(Chat.self, at: Layout.chat(chatID), id: chatID)
            var m = try tx.require(ChatMessage.self, at: Layout.message(chatID, id), id: id)
            let old = m
            if let content { m.content = content }
            if let metadata { m.messageMetadata = metadata }
            if m == old { return old }
            m.updatedAt = tx.now
            try tx.put(m, at: Layout.message(chatID, id))
            var what: [String] = []
            if content != nil && old.content != m.content { what.append("content") }
            if metadata != nil && old.messageMetadata != m.messageMetadata { what.append("metadata") }
            tx.message = "chat \(short(chatID)): edit message #\(m.sequenceOrder) (\(what.joined(separator: ", ")))"
            return m
        }
    }
}

import ArgumentParser
import ChatSync
import Foundation

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "chat", abstract: "Conversations.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Delete.self])

    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var user: String = "default"
        @Option var title: String?
        @Option(help: "A JSON object.") var context: String?
        @Option var id: String?
        func run() throws {
            let ctx = try validated(global) { try parseObject(context, field: "context_data") }
            try global.run { store in
                let c = try store.createChat(userID: user, title: title, contextData: ctx ?? .emptyObject, id: id)
                try global.emit(c, line(c))
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var user: String?
        func run() throws {
            try global.run { store in let list = try store.listChats(userID: user); try global.emit(list, list.map(line).joined(separator: "\n")) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a chat with its messages in order.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws {
            try global.run { store in
                let c = try store.chatWithMessages(id)
                try global.emit(c, ([line(c.chat)] + c.messages.map(transcript)).joined(separator: "\n"))
            }
        }
    }

    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var title: String?
        @Option(help: "A JSON object.") var context: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("title", title)
                p.set("context_data", try parseObject(context, field: "context_data"))
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give --title or --context") }
            }
            try global.run { store in let c = try store.updateChat(id, patch: p.fields); try global.emit(c, line(c)) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a chat with its messages (refused while a session uses it).")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws {
            try global.run { store in try store.deleteChat(id); try global.emit(["deleted": id], "deleted chat \(id)") }
        }
    }
}

struct MessageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "message", abstract: "Messages of a chat.",
        subcommands: [Add.self, List.self, Show.self, Edit.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Append a message (content from --content, --content-file or stdin).")
        @OptionGroup var global: GlobalOptions
        @Argument var chatID: String
        @Option(help: "user, assistant, system, tool or status.") var role: String
        @Option var content: String?
        @Option var contentFile: String?
        @Option(help: "A JSON object.") var metadata: String?
        @Option var id: String?
        @Option var user: String?
        func run() throws {
            let (r, text, meta) = try validated(global) { () -> (MessageRole, String, JSONValue?) in
                let r = try MessageRole.parse(role, field: "role")
                if content != nil && contentFile != nil {
                    throw ChatSyncError.invalid(field: "content-file", rule: "give --content or --content-file, not both")
                }
                let text: String
                if let content {
                    text = content
                } else if let contentFile {
                    guard let d = FileManager.default.contents(atPath: contentFile) else {
                        throw ChatSyncError.invalid(field: "content-file", rule: "cannot read \(contentFile)")
                    }
                    guard let s = String(data: d, encoding: .utf8) else { throw ChatSyncError.invalid(field: "content-file", rule: "must be UTF-8 text") }
                    text = s
                } else if isatty(0) == 0 {
                    let d = FileHandle.standardInput.readDataToEndOfFile()
                    guard let s = String(data: d, encoding: .utf8) else { throw ChatSyncError.invalid(field: "content", rule: "stdin must be UTF-8 text") }
                    text = s
                } else {
                    throw ChatSyncError.invalid(field: "content", rule: "give --content, --content-file or pipe the content on stdin")
                }
                return (r, text, try parseObject(metadata, field: "message_metadata"))
            }
            try global.run { store in
                let m = try store.appendMessage(chatID: chatID, role: r, content: text, metadata: meta ?? .emptyObject, userID: user, id: id)
                try global.emit(m, "#\(m.sequenceOrder) \(m.role.rawValue) \(m.id) \(m.createdAt)")
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chatID: String
        @Option(help: "At most this many messages.") var limit: Int?
        @Option(help: "Only messages with a greater sequence number.") var after: Int?
        func run() throws {
            try global.run { store in
                let list = try store.listMessages(chatID: chatID, after: after, limit: limit)
                try global.emit(list, list.map(transcript).joined(separator: "\n"))
            }
        }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var chatID: String
        @Argument var messageID: String
        func run() throws {
            try global.run { store in let m = try store.message(chatID: chatID, id: messageID); try global.emit(m, transcript(m)) }
        }
    }

    struct Edit: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Edit a message's content or metadata (sets updated_at).")
        @OptionGroup var global: GlobalOptions
        @Argument var chatID: String
        @Argument var messageID: String
        @Option var content: String?
        @Option(help: "A JSON object.") var metadata: String?
        func run() throws {
            let meta = try validated(global) { try parseObject(metadata, field: "message_metadata") }
            try global.run { store in
                let m = try store.editMessage(chatID: chatID, id: messageID, content: content, metadata: meta)
                try global.emit(m, transcript(m))
            }
        }
    }
}

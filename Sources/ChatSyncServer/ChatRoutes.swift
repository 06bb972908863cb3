import ChatSync
import Foundation
import Hummingbird

/// `/api/chats` and their messages.
struct ChatRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let store = state.store
        let limit = state.configuration.maxBodyBytes
        api.post("chats") { request, _ -> Response in
            let b = try await Body.read(request, limit: limit).only(["user_id", "title", "context_data", "id"])
            let (user, title, context, id) = (try b.requiredString("user_id"), try b.string("title"), try b.object("context_data"), try b.string("id"))
            return try json(try await blocking { try store.createChat(userID: user, title: title, contextData: context ?? .emptyObject, id: id) }, status: .created)
        }
        api.get("chats") { request, _ -> Response in
            let user = request.query("user_id")
            return try json(try await blocking { try store.listChats(userID: user) })
        }
        api.get("chats/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.chatWithMessages(id) })
        }
        api.put("chats/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateChat(id, patch: b.fields) })
        }
        api.delete("chats/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            try await blocking { try store.deleteChat(id) }
            return Response(status: .noContent)
        }
        api.get("chats/{id}/messages") { request, context -> Response in
            let id = try context.parameters.require("id")
            let (after, max) = (try request.queryInt("after"), try request.queryInt("limit"))
            return try json(try await blocking { try store.listMessages(chatID: id, after: after, limit: max) })
        }
        api.post("chats/{id}/messages") { request, context -> Response in
            let chat = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["role", "content", "message_metadata", "user_id", "id"])
            guard let role = try b.enumValue("role", MessageRole.self) else { throw ChatSyncError.invalid(field: "role", rule: "is required") }
            let (content, meta, user, id) = (try b.requiredString("content"), try b.object("message_metadata"), try b.string("user_id"), try b.string("id"))
            let m = try await blocking {
                try store.appendMessage(chatID: chat, role: role, content: content, metadata: meta ?? .emptyObject, userID: user, id: id)
            }
            return try json(m, status: .created)
        }
        api.get("chats/{id}/messages/{message_id}") { _, context -> Response in
            let chat = try context.parameters.require("id"), id = try context.parameters.require("message_id")
            return try json(try await blocking { try store.message(chatID: chat, id: id) })
        }
        api.put("chats/{id}/messages/{message_id}") { request, context -> Response in
            let chat = try context.parameters.require("id"), id = try context.parameters.require("message_id")
            let b = try await Body.read(request, limit: limit).only(["content", "message_metadata"])
            let (content, meta) = (try b.string("content"), try b.object("message_metadata"))
            return try json(try await blocking { try store.editMessage(chatID: chat, id: id, content: content, metadata: meta) })
        }
    }
}

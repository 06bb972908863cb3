import ChatSync
import Foundation
import Hummingbird

/// `/api/sessions`: create (with its chat), list, the user's active session, get, update,
/// link a mission, lifecycle, cleanup.
struct SessionRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let store = state.store
        let limit = state.configuration.maxBodyBytes
        api.post("sessions") { request, _ -> Response in
            let b = try await Body.read(request, limit: limit).only(["user_id", "name", "chat_id", "mission_id", "session_metadata", "id"])
            let (user, name, chat, mission, meta, id) = (try b.requiredString("user_id"), try b.string("name"), try b.string("chat_id"),
                                                         try b.string("mission_id"), try b.object("session_metadata"), try b.string("id"))
            let s = try await blocking {
                try store.createSession(userID: user, name: name, chatID: chat, missionID: mission, metadata: meta ?? .emptyObject, id: id)
            }
            return try json(s, status: .created)
        }
        api.get("sessions") { request, _ -> Response in
            let status = try request.query("status").map { try SessionStatus.parse($0, field: "status") }
            let user = request.query("user_id")
            return try json(try await blocking { try store.listSessions(userID: user, status: status) })
        }
        api.get("sessions/active") { request, _ -> Response in
            guard let user = request.query("user_id") else { throw ChatSyncError.invalid(field: "user_id", rule: "is required") }
            guard let s = try await blocking({ try store.activeSession(userID: user) }) else {
                throw ChatSyncError.notFound(kind: "active session of user", id: user)
            }
            return try json(s)
        }
        api.post("sessions/cleanup") { request, _ -> Response in
            let b = try await Body.read(request, limit: limit, allowEmpty: true).only(["idle_after_seconds", "archive_after_seconds"])
            let idle = try b.number("idle_after_seconds") ?? 86_400, archive = try b.number("archive_after_seconds") ?? 2_592_000
            return try json(try await blocking { try store.cleanupSessions(idleAfter: idle, archiveAfter: archive) })
        }
        api.get("sessions/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.session(id) })
        }
        api.put("sessions/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateSession(id, patch: b.fields) })
        }
        api.post("sessions/{id}/link-mission/{mission_id}") { _, context -> Response in
            let id = try context.parameters.require("id"), mission = try context.parameters.require("mission_id")
            return try json(try await blocking { try store.linkMission(sessionID: id, missionID: mission) })
        }
        for (verb, action) in [("activity", Store.touchSession), ("complete", Store.completeSession),
                               ("abandon", Store.abandonSession), ("archive", Store.archiveSession)] {
            api.post("sessions/{id}/\(verb)") { _, context -> Response in
                let id = try context.parameters.require("id")
                return try json(try await blocking { try action(store)(id) })
            }
        }
    }
}

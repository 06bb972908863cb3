import ChatSync
import Foundation
import Hummingbird

/// `/api/missions`, their hops (`/api/hops`) and tool steps (`/api/tool-steps`).
struct MissionRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let store = state.store
        let limit = state.configuration.maxBodyBytes
        // Missions
        api.post("missions") { request, _ -> Response in
            let b = try await Body.read(request, limit: limit)
                .only(["user_id", "name", "description", "goal", "status", "success_criteria", "mission_metadata", "id"])
            let (user, name, description, goal) = (try b.requiredString("user_id"), try b.requiredString("name"), try b.string("description"), try b.string("goal"))
            let (status, criteria, meta, id) = (try b.enumValue("status", MissionStatus.self), try b.strings("success_criteria"), try b.object("mission_metadata"), try b.string("id"))
            let m = try await blocking {
                try store.createMission(userID: user, name: name, description: description, goal: goal, status: status ?? .awaitingApproval,
                                        successCriteria: criteria ?? [], metadata: meta ?? .emptyObject, id: id)
            }
            return try json(m, status: .created)
        }
        api.get("missions") { request, _ -> Response in
            let status = try request.query("status").map { try MissionStatus.parse($0, field: "status") }
            let user = request.query("user_id")
            return try json(try await blocking { try store.listMissions(userID: user, status: status) })
        }
        api.get("missions/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.mission(id) })
        }
        api.get("missions/{id}/full") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.missionFull(id) })
        }
        api.put("missions/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateMission(id, patch: b.fields) })
        }
        api.patch("missions/{id}/status") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["status"])
            guard let status = try b.enumValue("status", MissionStatus.self) else { throw ChatSyncError.invalid(field: "status", rule: "is required") }
            return try json(try await blocking { try store.setMissionStatus(id, status) })
        }
        api.delete("missions/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            try await blocking { try store.deleteMission(id) }
            return Response(status: .noContent)
        }
        // Hops
        api.post("missions/{id}/hops") { request, context -> Response in
            let mission = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["name", "user_id", "description", "goal", "success_criteria", "rationale",
                                                                      "status", "is_final", "sequence_order", "hop_metadata", "id"])
            let (name, user, description, goal) = (try b.requiredString("name"), try b.string("user_id"), try b.string("description"), try b.string("goal"))
            let (criteria, rationale, status, isFinal) = (try b.strings("success_criteria"), try b.string("rationale"), try b.enumValue("status", HopStatus.self), try b.bool("is_final"))
            let (position, meta, id) = (try b.int("sequence_order"), try b.object("hop_metadata"), try b.string("id"))
            let h = try await blocking {
                try store.addHop(missionID: mission, name: name, userID: user, description: description, goal: goal, successCriteria: criteria ?? [],
                                 rationale: rationale, status: status ?? .hopPlanStarted, isFinal: isFinal ?? false, sequenceOrder: position,
                                 metadata: meta ?? .emptyObject, id: id)
            }
            return try json(h, status: .created)
        }
        api.get("missions/{id}/hops") { _, context -> Response in
            let mission = try context.parameters.require("id")
            return try json(try await blocking { try store.listHops(missionID: mission) })
        }
        api.put("missions/{id}/hops/order") { request, context -> Response in
            let mission = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["order"])
            guard let order = try b.strings("order") else { throw ChatSyncError.invalid(field: "order", rule: "is required") }
            return try json(try await blocking { try store.reorderHops(missionID: mission, order: order) })
        }
        api.get("hops/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.hop(id) })
        }
        api.put("hops/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateHop(id, patch: b.fields) })
        }
        api.patch("hops/{id}/status") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["status"])
            guard let status = try b.enumValue("status", HopStatus.self) else { throw ChatSyncError.invalid(field: "status", rule: "is required") }
            return try json(try await blocking { try store.setHopStatus(id, status) })
        }
        api.delete("hops/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            try await blocking { try store.deleteHop(id) }
            return Response(status: .noContent)
        }
        // Tool steps
        api.post("hops/{id}/tool-steps") { request, context -> Response in
            let hop = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["tool_id", "name", "user_id", "description", "status", "parameter_mapping",
                                                                      "result_mapping", "resource_configs", "sequence_order", "id"])
            let (tool, name, user, description) = (try b.requiredString("tool_id"), try b.requiredString("name"), try b.string("user_id"), try b.string("description"))
            let (status, params, results, resources) = (try b.enumValue("status", ToolStepStatus.self), try b.object("parameter_mapping"),
                                                        try b.object("result_mapping"), try b.object("resource_configs"))
            let (position, id) = (try b.int("sequence_order"), try b.string("id"))
            let s = try await blocking {
                try store.addToolStep(hopID: hop, toolID: tool, name: name, userID: user, description: description, status: status ?? .proposed,
                                      parameterMapping: params ?? .emptyObject, resultMapping: results ?? .emptyObject,
                                      resourceConfigs: resources ?? .emptyObject, sequenceOrder: position, id: id)
            }
            return try json(s, status: .created)
        }
        api.get("hops/{id}/tool-steps") { _, context -> Response in
            let hop = try context.parameters.require("id")
            return try json(try await blocking { try store.listToolSteps(hopID: hop) })
        }
        api.put("hops/{id}/tool-steps/order") { request, context -> Response in
            let hop = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["order"])
            guard let order = try b.strings("order") else { throw ChatSyncError.invalid(field: "order", rule: "is required") }
            return try json(try await blocking { try store.reorderToolSteps(hopID: hop, order: order) })
        }
        api.get("tool-steps/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.toolStep(id) })
        }
        api.put("tool-steps/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateToolStep(id, patch: b.fields) })
        }
        api.patch("tool-steps/{id}/status") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit).only(["status"])
            guard let status = try b.enumValue("status", ToolStepStatus.self) else { throw ChatSyncError.invalid(field: "status", rule: "is required") }
            return try json(try await blocking { try store.setToolStepStatus(id, status) })
        }
        api.delete("tool-steps/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            try await blocking { try store.deleteToolStep(id) }
            return Response(status: .noContent)
        }
    }
}

/// `/api/assets`.
struct AssetRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let store = state.store
        let limit = state.configuration.maxBodyBytes
        api.post("assets") { request, _ -> Response in
            let b = try await Body.read(request, limit: limit).only(["user_id", "name", "schema_definition", "scope_type", "scope_id", "role",
                "description", "subtype", "status", "content", "content_summary", "asset_metadata", "db_entity_metadata", "id"])
            let (user, name) = (try b.requiredString("user_id"), try b.requiredString("name"))
            guard let schema = try b.object("schema_definition") else { throw ChatSyncError.invalid(field: "schema_definition", rule: "is required") }
            guard let scopeType = try b.enumValue("scope_type", AssetScopeType.self) else { throw ChatSyncError.invalid(field: "scope_type", rule: "is required") }
            guard let role = try b.enumValue("role", AssetRole.self) else { throw ChatSyncError.invalid(field: "role", rule: "is required") }
            let (scope, description, subtype, status) = (try b.requiredString("scope_id"), try b.string("description"), try b.string("subtype"),
                                                         try b.enumValue("status", AssetStatus.self))
            let (content, summary, meta, db, id) = (b.any("content"), try b.string("content_summary"), try b.object("asset_metadata"),
                                                    try b.object("db_entity_metadata"), try b.string("id"))
            let a = try await blocking {
                try store.createAsset(userID: user, name: name, schemaDefinition: schema, scopeType: scopeType, scopeID: scope, role: role,
                                      description: description, subtype: subtype, status: status ?? .proposed, content: content,
                                      contentSummary: summary, metadata: meta ?? .emptyObject, dbEntityMetadata: db, id: id)
            }
            return try json(a, status: .created)
        }
        api.get("assets") { request, _ -> Response in
            let scopeType = try request.query("scope_type").map { try AssetScopeType.parse($0, field: "scope_type") }
            let (scope, user) = (request.query("scope_id"), request.query("user_id"))
            return try json(try await blocking { try store.listAssets(scopeType: scopeType, scopeID: scope, userID: user) })
        }
        api.get("assets/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            return try json(try await blocking { try store.asset(id) })
        }
        api.put("assets/{id}") { request, context -> Response in
            let id = try context.parameters.require("id")
            let b = try await Body.read(request, limit: limit)
            return try json(try await blocking { try store.updateAsset(id, patch: b.fields) })
        }
        api.delete("assets/{id}") { _, context -> Response in
            let id = try context.parameters.require("id")
            try await blocking { try store.deleteAsset(id) }
            return Response(status: .noContent)
        }
    }
}

import ArgumentParser
import ChatSync
import Foundation

/// Options shared by mission, hop and step updates.
struct DescribedFields: ParsableArguments {
    @Option var name: String?
    @Option var description: String?
    @Option(help: "Repeat for each criterion; replaces the list.") var criterion: [String] = []
    @Option(help: "A JSON object.") var metadata: String?
}

struct MissionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mission", abstract: "Multi-step goals.",
        subcommands: [Create.self, List.self, Show.self, Full.self, Update.self, Status.self, Delete.self])

    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var user: String
        @Option var name: String
        @Option var description: String?
        @Option var goal: String?
        @Option(help: "Repeat for each criterion.") var criterion: [String] = []
        @Option(help: "A JSON object.") var metadata: String?
        @Option var id: String?
        func run() throws {
            let meta = try validated(global) { try parseObject(metadata, field: "mission_metadata") }
            try global.run { store in
                let m = try store.createMission(userID: user, name: name, description: description, goal: goal,
                                                successCriteria: criterion, metadata: meta ?? .emptyObject, id: id)
                try global.emit(m, line(m))
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var user: String?
        @Option var status: String?
        func run() throws {
            let st = try validated(global) { try status.map { try MissionStatus.parse($0, field: "status") } }
            try global.run { store in let l = try store.listMissions(userID: user, status: st); try global.emit(l, l.map(line).joined(separator: "\n")) }
        }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let m = try store.mission(id); try global.emit(m, line(m)) } }
    }

    struct Full: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A mission with its hops and tool steps.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws {
            try global.run { store in
                let f = try store.missionFull(id)
                var lines = [line(f.mission)]
                for h in f.hops {
                    lines.append("  " + line(h.hop))
                    lines += h.toolSteps.map { "      " + line($0) }
                }
                try global.emit(f, lines.joined(separator: "\n"))
            }
        }
    }

    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @OptionGroup var fields: DescribedFields
        @Option var goal: String?
        @Option var currentHop: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("name", fields.name); p.set("description", fields.description); p.set("goal", goal)
                p.set("current_hop_id", currentHop)
                if !fields.criterion.isEmpty { p.set("success_criteria", fields.criterion) }
                p.set("mission_metadata", try parseObject(fields.metadata, field: "mission_metadata"))
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give at least one field to change") }
            }
            try global.run { store in let m = try store.updateMission(id, patch: p.fields); try global.emit(m, line(m)) }
        }
    }

    struct Status: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Argument(help: "awaiting_approval, in_progress, completed, failed or cancelled.") var status: String
        func run() throws {
            let st = try validated(global) { try MissionStatus.parse(status, field: "status") }
            try global.run { store in let m = try store.setMissionStatus(id, st); try global.emit(m, line(m)) }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a mission with its hops, steps and scoped assets; unlinks sessions.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in try store.deleteMission(id); try global.emit(["deleted": id], "deleted mission \(id)") } }
    }
}

struct HopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "hop", abstract: "Stages of a mission.",
        subcommands: [Add.self, List.self, Show.self, Update.self, Status.self, Delete.self, Reorder.self])

    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var missionID: String
        @Option var name: String
        @Option var description: String?
        @Option var goal: String?
        @Option var rationale: String?
        @Option(help: "Repeat for each criterion.") var criterion: [String] = []
        @Flag(help: "This hop is the mission's last.") var final = false
        @Option(help: "Position (1 = first); default last.") var position: Int?
        @Option var id: String?
        func run() throws {
            try global.run { store in
                let h = try store.addHop(missionID: missionID, name: name, description: description, goal: goal, successCriteria: criterion,
                                         rationale: rationale, isFinal: final, sequenceOrder: position, id: id)
                try global.emit(h, line(h))
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var missionID: String
        func run() throws { try global.run { store in let l = try store.listHops(missionID: missionID); try global.emit(l, l.map(line).joined(separator: "\n")) } }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let h = try store.hop(id); try global.emit(h, line(h)) } }
    }

    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @OptionGroup var fields: DescribedFields
        @Option var goal: String?
        @Option var rationale: String?
        @Option(help: "true or false: whether this hop is the mission's last.") var final: Bool?
        @Option(help: "true or false: whether this hop is resolved.") var resolved: Bool?
        @Option var errorMessage: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("name", fields.name); p.set("description", fields.description); p.set("goal", goal); p.set("rationale", rationale)
                p.set("is_final", final); p.set("is_resolved", resolved); p.set("error_message", errorMessage)
                if !fields.criterion.isEmpty { p.set("success_criteria", fields.criterion) }
                p.set("hop_metadata", try parseObject(fields.metadata, field: "hop_metadata"))
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give at least one field to change") }
            }
            try global.run { store in let h = try store.updateHop(id, patch: p.fields); try global.emit(h, line(h)) }
        }
    }

    struct Status: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Argument var status: String
        func run() throws {
            let st = try validated(global) { try HopStatus.parse(status, field: "status") }
            try global.run { store in let h = try store.setHopStatus(id, st); try global.emit(h, line(h)) }
        }
    }

    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in try store.deleteHop(id); try global.emit(["deleted": id], "deleted hop \(id)") } }
    }

    struct Reorder: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a mission's hops in the given order (every hop id, once).")
        @OptionGroup var global: GlobalOptions
        @Argument var missionID: String
        @Argument(help: ArgumentHelp("Every hop id of the mission, once, in the new order.", valueName: "hop-id")) var hopIDs: [String]
        func run() throws {
            try global.run { store in let l = try store.reorderHops(missionID: missionID, order: hopIDs); try global.emit(l, l.map(line).joined(separator: "\n")) }
        }
    }
}

struct StepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "step", abstract: "Tool steps of a hop.",
        subcommands: [Add.self, List.self, Show.self, Update.self, Status.self, Delete.self, Reorder.self])

    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var hopID: String
        @Option var tool: String
        @Option var name: String
        @Option var description: String?
        @Option(help: "A JSON object.") var parameters: String?
        @Option(help: "A JSON object.") var results: String?
        @Option(help: "A JSON object.") var resources: String?
        @Option(help: "Position (1 = first); default last.") var position: Int?
        @Option var id: String?
        func run() throws {
            let (pm, rm, rc) = try validated(global) {
                (try parseObject(parameters, field: "parameter_mapping"), try parseObject(results, field: "result_mapping"),
                 try parseObject(resources, field: "resource_configs"))
            }
            try global.run { store in
                let s = try store.addToolStep(hopID: hopID, toolID: tool, name: name, description: description,
                                              parameterMapping: pm ?? .emptyObject, resultMapping: rm ?? .emptyObject,
                                              resourceConfigs: rc ?? .emptyObject, sequenceOrder: position, id: id)
                try global.emit(s, line(s))
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var hopID: String
        func run() throws { try global.run { store in let l = try store.listToolSteps(hopID: hopID); try global.emit(l, l.map(line).joined(separator: "\n")) } }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let s = try store.toolStep(id); try global.emit(s, line(s)) } }
    }

    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var name: String?
        @Option var description: String?
        @Option var tool: String?
        @Option(help: "A JSON object.") var parameters: String?
        @Option(help: "A JSON object.") var results: String?
        @Option(help: "A JSON object.") var resources: String?
        @Option(help: "Any JSON.") var executionResult: String?
        @Option var errorMessage: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("name", name); p.set("description", description); p.set("tool_id", tool); p.set("error_message", errorMessage)
                p.set("parameter_mapping", try parseObject(parameters, field: "parameter_mapping"))
                p.set("result_mapping", try parseObject(results, field: "result_mapping"))
                p.set("resource_configs", try parseObject(resources, field: "resource_configs"))
                p.set("execution_result", try executionResult.map { try JSONValue.parse($0, field: "execution_result") })
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give at least one field to change") }
            }
            try global.run { store in let s = try store.updateToolStep(id, patch: p.fields); try global.emit(s, line(s)) }
        }
    }

    struct Status: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Argument var status: String
        func run() throws {
            let st = try validated(global) { try ToolStepStatus.parse(status, field: "status") }
            try global.run { store in let s = try store.setToolStepStatus(id, st); try global.emit(s, line(s)) }
        }
    }

    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in try store.deleteToolStep(id); try global.emit(["deleted": id], "deleted tool step \(id)") } }
    }

    struct Reorder: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a hop's tool steps in the given order (every step id, once).")
        @OptionGroup var global: GlobalOptions
        @Argument var hopID: String
        @Argument(help: ArgumentHelp("Every tool step id of the hop, once, in the new order.", valueName: "step-id")) var stepIDs: [String]
        func run() throws {
            try global.run { store in let l = try store.reorderToolSteps(hopID: hopID, order: stepIDs); try global.emit(l, l.map(line).joined(separator: "\n")) }
        }
    }
}

struct AssetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "asset", abstract: "Data produced or consumed by a mission or hop.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Delete.self])

    struct Create: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var user: String
        @Option var name: String
        @Option(help: "mission or hop.") var scopeType: String
        @Option var scope: String
        @Option(help: "input, output or intermediate.") var role: String
        @Option(help: "A JSON object.") var schema: String = "{}"
        @Option var description: String?
        @Option(help: "file, primitive, object, database_entity, markdown, config, …") var subtype: String?
        @Option(help: "Any JSON.") var content: String?
        @Option var summary: String?
        @Option(help: "A JSON object.") var metadata: String?
        @Option var id: String?
        func run() throws {
            let (st, r, sch, c, meta) = try validated(global) {
                (try AssetScopeType.parse(scopeType, field: "scope_type"), try AssetRole.parse(role, field: "role"),
                 try JSONValue.parseObject(schema, field: "schema_definition"),
                 try content.map { try JSONValue.parse($0, field: "content") }, try parseObject(metadata, field: "asset_metadata"))
            }
            try global.run { store in
                let a = try store.createAsset(userID: user, name: name, schemaDefinition: sch, scopeType: st, scopeID: scope, role: r,
                                              description: description, subtype: subtype, content: c, contentSummary: summary,
                                              metadata: meta ?? .emptyObject, id: id)
                try global.emit(a, line(a))
            }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Option var scopeType: String?
        @Option var scope: String?
        @Option var user: String?
        func run() throws {
            let st = try validated(global) { try scopeType.map { try AssetScopeType.parse($0, field: "scope_type") } }
            try global.run { store in
                let l = try store.listAssets(scopeType: st, scopeID: scope, userID: user)
                try global.emit(l, l.map(line).joined(separator: "\n"))
            }
        }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let a = try store.asset(id); try global.emit(a, line(a)) } }
    }

    struct Update: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var name: String?
        @Option var description: String?
        @Option var status: String?
        @Option(help: "Any JSON.") var content: String?
        @Option var summary: String?
        @Option(help: "A JSON object.") var metadata: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("name", name); p.set("description", description); p.set("content_summary", summary)
                if let status { p.set("status", try AssetStatus.parse(status, field: "status").rawValue) }
                p.set("content", try content.map { try JSONValue.parse($0, field: "content") })
                p.set("asset_metadata", try parseObject(metadata, field: "asset_metadata"))
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give at least one field to change") }
            }
            try global.run { store in let a = try store.updateAsset(id, patch: p.fields); try global.emit(a, line(a)) }
        }
    }

    struct Delete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in try store.deleteAsset(id); try global.emit(["deleted": id], "deleted asset \(id)") } }
    }
}

import ArgumentParser
import ChatSync
import Foundation

struct SessionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "session", abstract: "A user's working sessions.",
        subcommands: [Create.self, List.self, Active.self, Show.self, Update.self, LinkMission.self,
                      Touch.self, Complete.self, Abandon.self, Archive.self, Cleanup.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a session (and its chat unless --chat is given); completes the user's other active sessions.")
        @OptionGroup var global: GlobalOptions
        @Option var user: String
        @Option var name: String?
        @Option(help: "Use this existing chat instead of creating one.") var chat: String?
        @Option var mission: String?
        @Option(help: "A JSON object.") var metadata: String?
        @Option var id: String?
        func run() throws {
            let meta = try validated(global) { try parseObject(metadata, field: "session_metadata") }
            try global.run { store in
                let s = try store.createSession(userID: user, name: name, chatID: chat, missionID: mission, metadata: meta ?? .emptyObject, id: id)
                try global.emit(s, line(s))
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sessions, most recently active first.")
        @OptionGroup var global: GlobalOptions
        @Option var user: String?
        @Option(help: "active, completed, abandoned or archived.") var status: String?
        func run() throws {
            let st = try validated(global) { try status.map { try SessionStatus.parse($0, field: "status") } }
            try global.run { store in
                let list = try store.listSessions(userID: user, status: st)
                try global.emit(list, list.map(line).joined(separator: "\n"))
            }
        }
    }

    struct Active: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The user's active session (touches it, as session recovery does).")
        @OptionGroup var global: GlobalOptions
        @Option var user: String
        func run() throws {
            try global.run { store in
                guard let s = try store.activeSession(userID: user) else {
                    throw ChatSyncError.notFound(kind: "active session of user", id: user)
                }
                try global.emit(s, line(s))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a session.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws {
            try global.run { store in let s = try store.session(id); try global.emit(s, line(s)) }
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a session's name, status, chat, mission or metadata.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var name: String?
        @Option var status: String?
        @Option var chat: String?
        @Option var mission: String?
        @Flag(help: "Unlink the mission.") var noMission = false
        @Option(help: "A JSON object.") var metadata: String?
        func run() throws {
            var p = PatchBuilder()
            try validated(global) {
                p.set("name", name)
                if let status { p.set("status", try SessionStatus.parse(status, field: "status").rawValue) }
                p.set("chat_id", chat)
                if noMission && mission != nil { throw ChatSyncError.invalid(field: "no-mission", rule: "give --mission or --no-mission, not both") }
                p.set("mission_id", mission)
                if noMission { p.clear("mission_id") }
                p.set("session_metadata", try parseObject(metadata, field: "session_metadata"))
                if p.fields.isEmpty { throw ChatSyncError.invalid(field: "options", rule: "give at least one field to change") }
            }
            try global.run { store in let s = try store.updateSession(id, patch: p.fields); try global.emit(s, line(s)) }
        }
    }

    struct LinkMission: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "link-mission", abstract: "Link a mission to a session.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Argument var missionID: String
        func run() throws {
            try global.run { store in let s = try store.linkMission(sessionID: id, missionID: missionID); try global.emit(s, line(s)) }
        }
    }

    struct Touch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Record activity (last_activity_at = now).")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let s = try store.touchSession(id); try global.emit(s, line(s)) } }
    }

    struct Complete: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let s = try store.completeSession(id); try global.emit(s, line(s)) } }
    }

    struct Abandon: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let s = try store.abandonSession(id); try global.emit(s, line(s)) } }
    }

    struct Archive: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws { try global.run { store in let s = try store.archiveSession(id); try global.emit(s, line(s)) } }
    }

    struct Cleanup: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Abandon idle active sessions; archive old completed or abandoned ones.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Idle time after which an active session is abandoned (90s, 30m, 24h, 7d).") var idleAfter = "24h"
        @Option(help: "Age after which a completed or abandoned session is archived.") var archiveAfter = "30d"
        func run() throws {
            let (idle, archive) = try validated(global) {
                (try parseDuration(idleAfter, field: "idle-after"), try parseDuration(archiveAfter, field: "archive-after"))
            }
            try global.run { store in
                let r = try store.cleanupSessions(idleAfter: idle, archiveAfter: archive)
                try global.emit(r, "abandoned \(r.abandoned.count): \(r.abandoned.joined(separator: " "))\narchived \(r.archived.count): \(r.archived.joined(separator: " "))")
            }
        }
    }
}

import Foundation

/// What a cleanup did.
public struct CleanupReport: Codable, Sendable, Equatable {
    /// Active sessions idle longer than the threshold, now abandoned.
    public var abandoned: [String]
    /// Completed or abandoned sessions older than the threshold, now archived.
    public var archived: [String]
    public init(abandoned: [String], archived: [String]) { self.abandoned = abandoned; self.archived = archived }
}

extension Store {
    /// Creates a session for a user. Unless `chatID` names an existing chat, a chat is created
    /// for it (title = the session's name). The user's other active sessions are completed.
    public func createSession(userID: String, name: String? = nil, chatID: String? = nil, missionID: String? = nil,
                              metadata: JSONValue = .emptyObject, id: String? = nil) throws -> UserSession {
        let id = id ?? newID()
        try Rules.id(id, "id")
        try Rules.userID(userID, "user_id")
        try Rules.name(name, "name", options.limits)
        if let chatID { try Rules.id(chatID, "chat_id") }
        if let missionID { try Rules.id(missionID, "mission_id") }
        try Rules.object(metadata, "session_metadata")
        return try perform { tx in
            guard try !tx.exists(Layout.session(id)) else { throw ChatSyncError.conflict("session \(id) already exists") }
            if let missionID { _ = try tx.require(Mission.self, at: Layout.mission(missionID), id: missionID) }
            let mine = try self.sessionIndex.sessions(tx) { $0.userID == userID }
            let sessionName = name ?? "Session \(mine.count + 1)"
            let chat: String
            if let chatID {
                _ = try tx.require(Chat.self, at: Layout.chat(chatID), id: chatID)
                chat = chatID
            } else {
                // Derived from the session id, so a change built again makes the same one; a new
                // id when another chat has that one already.
                let derived = Self.newIDFor(session: id)
                chat = try tx.exists(Layout.chat(derived)) ? newID() : derived
                try Self.insertChat(Chat(id: chat, userID: userID, title: sessionName, createdAt: tx.now, updatedAt: tx.now), tx)
            }
            let completed = try Self.completeActive(mine, except: id, tx)
            let session = UserSession(id: id, userID: userID, name: sessionName, chatID: chat, missionID: missionID,
                                      sessionMetadata: metadata, createdAt: tx.now, updatedAt: tx.now, lastActivityAt: tx.now)
            try tx.put(session, at: Layout.session(id))
            tx.message = "session \(short(id)): create for user \(userID) (chat \(short(chat)))"
                + (completed.isEmpty ? "" : "; complete \(completed.count) other active session(s)")
            return session
        }
    }

    /// After a merge: when each side created a session for the same user (each completing the
    /// user's others), the user is left with two active sessions. The one the app sees as active
    /// (the newest by `last_activity_at`, then id) stays active and the others are completed, as
    /// the later creation would have done. Their `updated_at` comes from the merged documents,
    /// not the clock, so both sides' merges write the same documents. Returns the completed ids.
    func completeSupersededSessions(changed paths: [String], _ tx: Transaction) throws -> [String] {
        var users = Set<String>()
        for path in paths {
            if let s = try tx.document(UserSession.self, at: path), s.status == .active { users.insert(s.userID) }
        }
        var completed: [String] = []
        for user in users.sorted() {
            let active = try sessionIndex.sessions(tx) { $0.userID == user && $0.status == .active }
                .sorted { ($0.lastActivityAt, $0.id) > ($1.lastActivityAt, $1.id) }
            guard let kept = active.first else { continue }
            for var other in active.dropFirst() {
                other.status = .completed
                other.updatedAt = max(other.updatedAt, kept.createdAt)
                try tx.put(other, at: Layout.session(other.id))
                completed.append(other.id)
            }
        }
        return completed
    }

    /// Completes the active sessions among `sessions` (a user's), but `id`: what creating a
    /// session does to the user's others. Returns the ids completed.
    static func completeActive(_ sessions: [UserSession], except id: String, _ tx: Transaction) throws -> [String] {
        var completed: [String] = []
        for var other in sessions where other.status == .active && other.id != id {
            other.status = .completed
            other.updatedAt = tx.now
            try tx.put(other, at: Layout.session(other.id))
            completed.append(other.id)
        }
        return completed
    }

    /// The chat id made for a new session: derived from the session id, so a retried change makes the same one.
    private static func newIDFor(session: String) -> String { "chat-" + session.prefix(59) }

    public func session(_ id: String) throws -> UserSession {
        try Rules.id(id, "session_id")
        return try read { try $0.require(UserSession.self, at: Layout.session(id), id: id) }
    }

    /// Sessions, most recently active first, filtered by user and status.
    public func listSessions(userID: String? = nil, status: SessionStatus? = nil) throws -> [UserSession] {
        try read { snap in
            try self.sessionIndex.sessions(snap) { (userID == nil || $0.userID == userID) && (status == nil || $0.status == status) }
                .sorted { ($0.lastActivityAt, $0.id) > ($1.lastActivityAt, $1.id) }
        }
    }

    /// The user's active session (the newest by `last_activity_at`), touched as the app's session
    /// recovery does; nil when the user has none.
    public func activeSession(userID: String) throws -> UserSession? {
        try Rules.userID(userID, "user_id")
        return try perform { tx -> UserSession? in
            let active = try self.sessionIndex.sessions(tx) { $0.userID == userID && $0.status == .active }
                .max { ($0.lastActivityAt, $0.id) < ($1.lastActivityAt, $1.id) }
            guard var s = active else { return nil }
            s.lastActivityAt = max(tx.now, s.lastActivityAt)
            s.updatedAt = max(tx.now, s.updatedAt)
            try tx.put(s, at: Layout.session(s.id))
            tx.message = "session \(short(s.id)): recover (touch activity)"
            return s
        }
    }

    /// Changes a session's fields from a patch (`name`, `status`, `mission_id`, `session_metadata`, `chat_id`).
    public func updateSession(_ id: String, patch: [String: JSONValue]) throws -> UserSession {
        try Rules.id(id, "session_id")
        return try perform { tx in
            let old = try tx.require(UserSession.self, at: Layout.session(id), id: id)
            var s = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "created_at", "updated_at", "last_activity_at"], limits: tx.limits)
            try Self.checkTransition(id, from: old.status, to: s.status)
            if s.chatID != old.chatID { _ = try tx.require(Chat.self, at: Layout.chat(s.chatID), id: s.chatID) }
            if let m = s.missionID, m != old.missionID { _ = try tx.require(Mission.self, at: Layout.mission(m), id: m) }
            if s == old { return old }
            s.updatedAt = tx.now
            try tx.put(s, at: Layout.session(id))
            tx.message = "session \(short(id)): update " + patch.keys.sorted().joined(separator: ", ")
            return s
        }
    }

    /// Refuses a status change the lifecycle does not make (an update, a resolution, a hand edit).
    static func checkTransition(_ id: String, from: SessionStatus, to: SessionStatus) throws {
        guard from != to, !transitions.contains([from, to]) else { return }
        throw ChatSyncError.conflict("cannot change session \(id) from \(from.rawValue) to \(to.rawValue): a session goes from active to completed, abandoned or archived, and from completed or abandoned to archived")
    }

    /// The status changes a session may make (the lifecycle verbs' and an update's).
    static let transitions: Set<[SessionStatus]> = [[.active, .completed], [.active, .abandoned], [.active, .archived],
                                                    [.completed, .archived], [.abandoned, .archived]]

    /// Links a mission to a session.
    public func linkMission(sessionID: String, missionID: String) throws -> UserSession {
        try Rules.id(missionID, "mission_id")
        return try updateSession(sessionID, patch: ["mission_id": .string(missionID)])
    }

    /// Records activity: `last_activity_at` = now. Refused for archived sessions.
    public func touchSession(_ id: String) throws -> UserSession {
        try transition(id, verb: "touch activity", allowedFrom: [.active, .completed, .abandoned], to: nil)
    }

    public func completeSession(_ id: String) throws -> UserSession {
        try transition(id, verb: "complete", allowedFrom: [.active], to: .completed)
    }

    public func abandonSession(_ id: String) throws -> UserSession {
        try transition(id, verb: "abandon", allowedFrom: [.active], to: .abandoned)
    }

    public func archiveSession(_ id: String) throws -> UserSession {
        try transition(id, verb: "archive", allowedFrom: [.active, .completed, .abandoned], to: .archived)
    }

    private func transition(_ id: String, verb: String, allowedFrom: Set<SessionStatus>, to status: SessionStatus?) throws -> UserSession {
        try Rules.id(id, "session_id")
        return try perform { tx in
            var s = try tx.require(UserSession.self, at: Layout.session(id), id: id)
            guard allowedFrom.contains(s.status) else {
                throw ChatSyncError.conflict("cannot \(status == nil ? "record activity on" : verb) session \(id): it is \(s.status.rawValue)")
            }
            if let status { s.status = status } else { s.lastActivityAt = max(tx.now, s.lastActivityAt) }
            s.updatedAt = max(tx.now, s.updatedAt)
            try tx.put(s, at: Layout.session(id))
            tx.message = "session \(short(id)): \(verb)"
            return s
        }
    }

    /// Abandons active sessions idle longer than `idleAfter` seconds and archives completed or
    /// abandoned sessions not updated for `archiveAfter` seconds. One commit, or none.
    public func cleanupSessions(idleAfter: Double = 24 * 3600, archiveAfter: Double = 30 * 24 * 3600) throws -> CleanupReport {
        // Up to a century: a cut-off further back than that is no cut-off (and stays a timestamp).
        let century = 100 * 365.25 * 86_400
        guard idleAfter >= 0, idleAfter <= century else {
            throw ChatSyncError.invalid(field: "idle_after_seconds", rule: "must be a number of seconds from 0 to \(Int(century)) (a century)")
        }
        guard archiveAfter >= 0, archiveAfter <= century else {
            throw ChatSyncError.invalid(field: "archive_after_seconds", rule: "must be a number of seconds from 0 to \(Int(century)) (a century)")
        }
        return try perform { tx in
            var report = CleanupReport(abandoned: [], archived: [])
            let idleCut = tx.now.adding(milliseconds: -Int64(idleAfter * 1000))
            let archiveCut = tx.now.adding(milliseconds: -Int64(archiveAfter * 1000))
            let due = try self.sessionIndex.sessions(tx) {
                ($0.status == .active && $0.lastActivityAt < idleCut)
                    || (($0.status == .completed || $0.status == .abandoned) && $0.updatedAt < archiveCut)
            }
            for var s in due.sorted(by: { $0.id < $1.id }) {
                if s.status == .active && s.lastActivityAt < idleCut {
                    s.status = .abandoned
                    s.updatedAt = tx.now
                    try tx.put(s, at: Layout.session(s.id))
                    report.abandoned.append(s.id)
                } else if (s.status == .completed || s.status == .abandoned) && s.updatedAt < archiveCut {
                    s.status = .archived
                    s.updatedAt = tx.now
                    try tx.put(s, at: Layout.session(s.id))
                    report.archived.append(s.id)
                }
            }
            tx.message = "sessions: cleanup (\(report.abandoned.count) abandoned, \(report.archived.count) archived)"
            return report
        }
    }
}

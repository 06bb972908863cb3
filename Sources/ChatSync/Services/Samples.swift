import Foundation

/// A set of documents to load into a store, as in `Samples/sample-data.json`.
public struct DocumentBundle: Codable, Sendable {
    public var chats: [Chat] = []
    public var messages: [ChatMessage] = []
    public var missions: [Mission] = []
    public var hops: [Hop] = []
    public var toolSteps: [ToolStep] = []
    public var assets: [Asset] = []
    public var sessions: [UserSession] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case chats, messages, missions, hops, toolSteps = "tool_steps", assets, sessions
    }

    public init(from decoder: Decoder) throws {
        // A misspelt list ("chat") would load nothing and still succeed.
        try rejectUnknownKeys(decoder, CodingKeys.allCases.map(\.stringValue))
        let c = try decoder.container(keyedBy: CodingKeys.self)
        chats = try c.decodeIfPresent([Chat].self, forKey: .chats) ?? []
        messages = try c.decodeIfPresent([ChatMessage].self, forKey: .messages) ?? []
        missions = try c.decodeIfPresent([Mission].self, forKey: .missions) ?? []
        hops = try c.decodeIfPresent([Hop].self, forKey: .hops) ?? []
        toolSteps = try c.decodeIfPresent([ToolStep].self, forKey: .toolSteps) ?? []
        assets = try c.decodeIfPresent([Asset].self, forKey: .assets) ?? []
        sessions = try c.decodeIfPresent([UserSession].self, forKey: .sessions) ?? []
    }

    public var count: Int { chats.count + messages.count + missions.count + hops.count + toolSteps.count + assets.count + sessions.count }
}

extension Store {
    /// Loads a bundle of documents in one commit. Every document is checked like any input
    /// (fields, rules, references, sequence numbers); on any error nothing is written.
    @discardableResult
    public func load(_ data: Data, name: String = "documents") throws -> Int {
        let bundle: DocumentBundle
        do {
            bundle = try DocumentCoding.makeDecoder(strict: true).decode(DocumentBundle.self, from: data)
        } catch {
            throw invalidInput(from: error, document: name)
        }
        try StrictJSON.check(data)
        return try perform { tx in
            func put<D: Document>(_ d: D, _ path: String) throws {
                guard try !tx.exists(path) else { throw ChatSyncError.conflict("\(D.kind.rawValue) \(d.id) already exists") }
                try tx.put(d, at: path)
            }
            for c in bundle.chats { try Rules.id(c.id, "chats.id"); try put(c, Layout.chat(c.id)) }
            for m in bundle.missions { try Rules.id(m.id, "missions.id"); try put(m, Layout.mission(m.id)) }
            for h in bundle.hops {
                try Rules.id(h.id, "hops.id"); try Rules.id(h.missionID, "hops.mission_id")
                guard try tx.exists(Layout.mission(h.missionID)) else { throw ChatSyncError.invalid(field: "hops.mission_id", rule: "mission \(h.missionID) does not exist") }
                try put(h, Layout.hop(h.missionID, h.id))
            }
            for s in bundle.toolSteps {
                try Rules.id(s.id, "tool_steps.id"); try Rules.id(s.hopID, "tool_steps.hop_id")
                guard let loc = try tx.locateHop(s.hopID) else { throw ChatSyncError.invalid(field: "tool_steps.hop_id", rule: "hop \(s.hopID) does not exist") }
                try put(s, Layout.step(loc.missionID, s.hopID, s.id))
            }
            for a in bundle.assets {
                try Rules.id(a.id, "assets.id")
                try Self.checkScope(a.scopeType, a.scopeID, tx)
                try put(a, Layout.asset(a.id))
            }
            for s in bundle.sessions {
                try Rules.id(s.id, "sessions.id"); try Rules.id(s.chatID, "sessions.chat_id")
                guard try tx.exists(Layout.chat(s.chatID)) else { throw ChatSyncError.invalid(field: "sessions.chat_id", rule: "chat \(s.chatID) does not exist") }
                if let m = s.missionID, try !tx.exists(Layout.mission(m)) { throw ChatSyncError.invalid(field: "sessions.mission_id", rule: "mission \(m) does not exist") }
                try put(s, Layout.session(s.id))
            }
            let byChat = Dictionary(grouping: bundle.messages, by: \.chatID)
            for (chatID, msgs) in byChat {
                try Rules.id(chatID, "messages.chat_id")
                guard try tx.exists(Layout.chat(chatID)) else { throw ChatSyncError.invalid(field: "messages.chat_id", rule: "chat \(chatID) does not exist") }
                guard try tx.names(in: Layout.messagesDir(chatID)).isEmpty else { throw ChatSyncError.conflict("chat \(chatID) already has messages") }
                for (i, m) in msgs.sorted(by: ChatMessage.inChatOrder).enumerated() {
                    try Rules.id(m.id, "messages.id")
                    guard m.sequenceOrder == i + 1 else {
                        throw ChatSyncError.invalid(field: "messages.sequence_order", rule: "message \(m.id) has \(m.sequenceOrder) but is #\(i + 1) by (created_at, id)")
                    }
                    try put(m, Layout.message(chatID, m.id))
                }
            }
            tx.message = "load \(name): \(bundle.sessions.count) sessions, \(bundle.chats.count) chats, \(bundle.messages.count) messages, \(bundle.missions.count) missions, \(bundle.hops.count) hops, \(bundle.toolSteps.count) tool steps, \(bundle.assets.count) assets"
            return bundle.count
        }
    }
}

import Foundation

/// Where each document lives in the store's tree. Every folder that can grow is sharded by a
/// hash of the id into 256 folders, so that the cost of a change (which rewrites every tree
/// on the changed path) does not grow with the number of chats or with a chat's length.
///
///     chatsync.json                                      format marker
///     sessions/<sh>/<session_id>.json
///     chats/<sh>/<chat_id>/chat.json
///     chats/<sh>/<chat_id>/messages/<x>/<y>/<z>/<message_id>.json
///     missions/<sh>/<mission_id>/mission.json
///     missions/<sh>/<mission_id>/hops/<hop_id>/hop.json
///     missions/<sh>/<mission_id>/hops/<hop_id>/steps/<step_id>.json
///     assets/<sh>/<asset_id>.json
///     conflicts/<sh>/<conflict_id>.json                  conflicts a merge recorded
///
/// `<sh>` is two lowercase hex digits: the low byte of the FNV-1a 32-bit hash of the id's UTF-8 bytes.
/// A chat's messages go three levels deep, `<x>/<y>/<z>` being the three lowest hex digits of
/// that hash (x the highest of them), so that every tree on a message's path stays small (at
/// most 16 entries per level, about 24 messages per folder at 100,000): the cost of an append
/// does not grow with the chat's length.
public enum Layout {
    public static let marker = "chatsync.json"
    public static let formatName = "chatsync"
    public static let formatVersion = 1

    static func fnv(_ id: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in id.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h
    }

    private static let digits = Array("0123456789abcdef")

    public static func shard(_ id: String) -> String {
        let v = Int(fnv(id) & 0xFF)
        return String([digits[v >> 4], digits[v & 15]])
    }

    /// `x/y/z`: the message's three-level folder within its chat.
    public static func messageShard(_ id: String) -> String {
        let v = Int(fnv(id) & 0xFFF)
        return "\(digits[v >> 8])/\(digits[(v >> 4) & 15])/\(digits[v & 15])"
    }

    /// The folder of session documents.
    static let sessionsDir = "sessions"
    public static func session(_ id: String) -> String { "sessions/\(shard(id))/\(id).json" }
    public static func chatDir(_ id: String) -> String { "chats/\(shard(id))/\(id)" }
    public static func chat(_ id: String) -> String { chatDir(id) + "/chat.json" }
    public static func messagesDir(_ chatID: String) -> String { chatDir(chatID) + "/messages" }
    public static func message(_ chatID: String, _ id: String) -> String { messagesDir(chatID) + "/\(messageShard(id))/\(id).json" }
    public static func missionDir(_ id: String) -> String { "missions/\(shard(id))/\(id)" }
    public static func mission(_ id: String) -> String { missionDir(id) + "/mission.json" }
    public static func hopsDir(_ missionID: String) -> String { missionDir(missionID) + "/hops" }
    public static func hopDir(_ missionID: String, _ hopID: String) -> String { hopsDir(missionID) + "/\(hopID)" }
    public static func hop(_ missionID: String, _ hopID: String) -> String { hopDir(missionID, hopID) + "/hop.json" }
    public static func stepsDir(_ missionID: String, _ hopID: String) -> String { hopDir(missionID, hopID) + "/steps" }
    public static func step(_ missionID: String, _ hopID: String, _ id: String) -> String { stepsDir(missionID, hopID) + "/\(id).json" }
    public static func asset(_ id: String) -> String { "assets/\(shard(id))/\(id).json" }
    public static func conflict(_ id: String) -> String { "conflicts/\(shard(id))/\(id).json" }

    /// What a path in the store holds.
    public enum Location: Equatable, Sendable {
        case marker
        case session(id: String)
        case chat(id: String)
        case message(chatID: String, id: String)
        case mission(id: String)
        case hop(missionID: String, id: String)
        case toolStep(missionID: String, hopID: String, id: String)
        case asset(id: String)
        case conflict(id: String)

        public var kind: DocumentKind? {
            switch self {
            case .marker: return nil
            case .session: return .session
            case .chat: return .chat
            case .message: return .message
            case .mission: return .mission
            case .hop: return .hop
            case .toolStep: return .toolStep
            case .asset: return .asset
            case .conflict: return .conflict
            }
        }

        public var id: String? {
            switch self {
            case .marker: return nil
            case .session(let id), .chat(let id), .message(_, let id), .mission(let id), .hop(_, let id),
                 .toolStep(_, _, let id), .asset(let id), .conflict(let id): return id
            }
        }
    }

    /// Parses a path of the store; nil for paths that hold no document (or are not where the
    /// layout puts them, such as a shard folder that does not match the id).
    public static func locate(_ path: String) -> Location? {
        if path == marker { return .marker }
        let p = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        func doc(_ file: String) -> String? {
            guard file.hasSuffix(".json") else { return nil }
            let id = String(file.dropLast(5))
            return Rules.isValidID(id) ? id : nil
        }
        func sharded(_ sh: String, _ id: String) -> Bool { shard(id) == sh }
        switch p.first {
        case "sessions":
            guard p.count == 3, let id = doc(p[2]), sharded(p[1], id) else { return nil }
            return .session(id: id)
        case "assets":
            guard p.count == 3, let id = doc(p[2]), sharded(p[1], id) else { return nil }
            return .asset(id: id)
        case "conflicts":
            guard p.count == 3, let id = doc(p[2]), sharded(p[1], id) else { return nil }
            return .conflict(id: id)
        case "chats":
            guard p.count >= 4, Rules.isValidID(p[2]), sharded(p[1], p[2]) else { return nil }
            if p.count == 4, p[3] == "chat.json" { return .chat(id: p[2]) }
            if p.count == 8, p[3] == "messages", let id = doc(p[7]), p[4...6].joined(separator: "/") == messageShard(id) {
                return .message(chatID: p[2], id: id)
            }
            return nil
        case "missions":
            guard p.count >= 4, Rules.isValidID(p[2]), sharded(p[1], p[2]) else { return nil }
            if p.count == 4, p[3] == "mission.json" { return .mission(id: p[2]) }
            guard p.count >= 6, p[3] == "hops", Rules.isValidID(p[4]) else { return nil }
            if p.count == 6, p[5] == "hop.json" { return .hop(missionID: p[2], id: p[4]) }
            if p.count == 7, p[5] == "steps", let id = doc(p[6]) { return .toolStep(missionID: p[2], hopID: p[4], id: id) }
            return nil
        default:
            return nil
        }
    }
}

/// The format marker at the root of every store.
public struct FormatMarker: Codable, Equatable, Sendable {
    public var format: String
    public var version: Int
    public init(format: String = Layout.formatName, version: Int = Layout.formatVersion) {
        self.format = format; self.version = version
    }
}

import Foundation
import GitKit

/// One problem `verify` found.
public struct VerifyProblem: Codable, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String
    public var description: String { "\(path): \(problem)" }
}

/// What `verify` checked and found.
public struct VerifyReport: Codable, Sendable {
    public var commit: String?
    public var documents: [String: Int]
    public var problems: [VerifyProblem]
    public var ok: Bool { problems.isEmpty }
}

/// A commit as the log shows it.
public struct LogEntry: Codable, Sendable, Equatable {
    public var commit: String
    public var parents: [String]
    public var author: String
    public var email: String
    public var time: String
    public var summary: String
}

extension Store {
    /// Checks the store's integrity at the tip: the format marker, every file where the layout
    /// puts it, every document valid (all fields, all rules), every reference whole, and
    /// sequence numbers unique and gap-free.
    public func verify() throws -> VerifyReport {
        try read { snap in
            var problems: [VerifyProblem] = []
            var counts: [String: Int] = [:]
            func problem(_ path: String, _ text: String) { problems.append(VerifyProblem(path: path, problem: text)) }
            var docs: [String: (Layout.Location, Data)] = [:]
            for path in try snap.blobs(under: snap.tree, prefix: "").map(\.path) {
                if path.hasPrefix(".") { continue } // .gitattributes and other git files
                guard let loc = Layout.locate(path) else { problem(path, "is not where the layout puts any document"); continue }
                guard let data = try snap.data(at: path) else { continue }
                docs[path] = (loc, data)
            }
            var sessions: [UserSession] = [], chats: Set<String> = [], missions: [String: Mission] = [:]
            var hopsByMission: [String: [Hop]] = [:], stepsByHop: [String: [ToolStep]] = [:]
            var messagesByChat: [String: [ChatMessage]] = [:], assets: [(String, Asset)] = []
            func check<D: Document>(_ type: D.Type, _ path: String, _ data: Data, id: String) -> D? {
                do {
                    let d = try DocumentCoding.decodeInput(type, from: data, limits: options.limits)
                    guard d.id == id else { problem(path, "id \"\(d.id)\" does not match its file name \(id)"); return nil }
                    if (try? DocumentCoding.encode(d)) != data { problem(path, "is not in canonical form (sorted keys, pretty-printed, trailing newline)") }
                    counts[D.kind.rawValue, default: 0] += 1
                    return d
                } catch {
                    problem(path, "\(error)")
                    return nil
                }
            }
            for (path, (loc, data)) in docs.sorted(by: { $0.key < $1.key }) {
                switch loc {
                case .marker:
                    if (try? snap.decoder.decode(FormatMarker.self, from: data))?.format != Layout.formatName { problem(path, "is not a format marker") }
                case .session(let id):
                    if let s = check(UserSession.self, path, data, id: id) { sessions.append(s) }
                case .chat(let id):
                    if check(Chat.self, path, data, id: id) != nil { chats.insert(id) }
                case .message(let chatID, let id):
                    if let m = check(ChatMessage.self, path, data, id: id) {
                        if m.chatID != chatID { problem(path, "chat_id \(m.chatID) does not match its chat folder \(chatID)") }
                        messagesByChat[chatID, default: []].append(m)
                    }
                case .mission(let id):
                    if let m = check(Mission.self, path, data, id: id) { missions[id] = m }
                case .hop(let missionID, let id):
                    if let h = check(Hop.self, path, data, id: id) {
                        if h.missionID != missionID { problem(path, "mission_id \(h.missionID) does not match its mission folder \(missionID)") }
                        hopsByMission[missionID, default: []].append(h)
                    }
                case .toolStep(_, let hopID, let id):
                    if let s = check(ToolStep.self, path, data, id: id) {
                        if s.hopID != hopID { problem(path, "hop_id \(s.hopID) does not match its hop folder \(hopID)") }
                        stepsByHop[hopID, default: []].append(s)
                    }
                case .asset(let id):
                    if let a = check(Asset.self, path, data, id: id) { assets.append((path, a)) }
                case .conflict(let id):
                    _ = check(ConflictRecord.self, path, data, id: id)
                }
            }
            for s in sessions {
                if !chats.contains(s.chatID) { problem(Layout.session(s.id), "chat_id \(s.chatID): no such chat") }
                if let m = s.missionID, missions[m] == nil { problem(Layout.session(s.id), "mission_id \(m): no such mission") }
            }
            for (chatID, msgs) in messagesByChat {
                if !chats.contains(chatID) { problem(Layout.chatDir(chatID), "messages without a chat.json") }
                for (i, m) in msgs.sorted(by: ChatMessage.inChatOrder).enumerated() where m.sequenceOrder != i + 1 {
                    problem(Layout.message(chatID, m.id), "sequence_order \(m.sequenceOrder), but its rank by (created_at, id) is \(i + 1)")
                }
            }
            for (missionID, hops) in hopsByMission {
                if missions[missionID] == nil { problem(Layout.missionDir(missionID), "hops without a mission.json") }
                if Set(hops.map(\.sequenceOrder)).count != hops.count { problem(Layout.hopsDir(missionID), "hops' sequence_order is not unique") }
            }
            for (hopID, steps) in stepsByHop where Set(steps.map(\.sequenceOrder)).count != steps.count {
                problem("hop \(hopID)", "tool steps' sequence_order is not unique")
            }
            let allHops = Set(hopsByMission.values.flatMap { $0.map(\.id) })
            let hopsWithFiles = Set(hopsByMission.values.flatMap { $0 }.map(\.id))
            for (hopID, _) in stepsByHop where !hopsWithFiles.contains(hopID) { problem("hop \(hopID)", "tool steps without a hop.json") }
            for (id, m) in missions {
                if let h = m.currentHopID, !(hopsByMission[id] ?? []).contains(where: { $0.id == h }) {
                    problem(Layout.mission(id), "current_hop_id \(h) is not one of the mission's hops")
                }
            }
            for (path, a) in assets {
                let exists = a.scopeType == .mission ? missions[a.scopeID] != nil : allHops.contains(a.scopeID)
                if !exists { problem(path, "scope_id \(a.scopeID): no such \(a.scopeType.rawValue)") }
            }
            return VerifyReport(commit: snap.commit?.hex, documents: counts, problems: problems.sorted { ($0.path, $0.problem) < ($1.path, $1.problem) })
        }
    }
}

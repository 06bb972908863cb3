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
            var sessions: [UserSession] = [], missions: [String: Mission] = [:]
            var hopsByMission: [String: [Hop]] = [:], stepsByHop: [String: [ToolStep]] = [:]
            var messagesByChat: [String: [ChatMessage]] = [:], assets: [(String, Asset)] = []
            for (path, (loc, data)) in docs.sorted(by: { $0.key < $1.key }) {
                let (doc, found) = Self.inspect(loc, data, limits: options.limits)
                for text in found { problem(path, text) }
                guard let doc else { continue }
                counts[type(of: doc).kind.rawValue, default: 0] += 1
                switch (loc, doc) {
                case (_, let s as UserSession): sessions.append(s)
                case (.message(let chatID, _), let m as ChatMessage): messagesByChat[chatID, default: []].append(m)
                case (.mission(let id), let m as Mission): missions[id] = m
                case (.hop(let missionID, _), let h as Hop): hopsByMission[missionID, default: []].append(h)
                case (.toolStep(_, let hopID, _), let t as ToolStep): stepsByHop[hopID, default: []].append(t)
                case (_, let a as Asset): assets.append((path, a))
                default: break
                }
            }
            for s in sessions {
                // A reference to a file that is there but broken is that file's problem, reported above.
                if docs[Layout.chat(s.chatID)] == nil { problem(Layout.session(s.id), "chat_id \(s.chatID): no such chat") }
                if let m = s.missionID, docs[Layout.mission(m)] == nil { problem(Layout.session(s.id), "mission_id \(m): no such mission") }
            }
            for (chatID, msgs) in messagesByChat {
                if docs[Layout.chat(chatID)] == nil { problem(Layout.chatDir(chatID), "messages without a chat.json") }
                for (i, m) in msgs.sorted(by: ChatMessage.inChatOrder).enumerated() where m.sequenceOrder != i + 1 {
                    problem(Layout.message(chatID, m.id), "sequence_order \(m.sequenceOrder), but its rank by (created_at, id) is \(i + 1)")
                }
            }
            for (missionID, hops) in hopsByMission {
                if docs[Layout.mission(missionID)] == nil { problem(Layout.missionDir(missionID), "hops without a mission.json") }
                if let rule = Self.numberingProblem(hops.map(\.sequenceOrder)) { problem(Layout.hopsDir(missionID), "hops' sequence_order \(rule)") }
            }
            for (hopID, steps) in stepsByHop {
                if let rule = Self.numberingProblem(steps.map(\.sequenceOrder)) { problem("hop \(hopID)", "tool steps' sequence_order \(rule)") }
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

    /// Checks one file where the layout puts a document: valid like any input (all fields, all
    /// rules), its id its file name's, its parent its folder's, its bytes canonical. Returns the
    /// document when it could be read (nil for the format marker), and the problems found.
    static func inspect(_ loc: Layout.Location, _ data: Data, limits: DocumentLimits) -> (document: (any Document)?, problems: [String]) {
        var problems: [String] = []
        func check<D: Document>(_ type: D.Type, id: String) -> D? {
            do {
                let d = try DocumentCoding.decodeInput(type, from: data, limits: limits)
                guard d.id == id else { problems.append("id \"\(d.id)\" does not match its file name \(id)"); return nil }
                if (try? DocumentCoding.encode(d)) != data { problems.append("is not in canonical form (sorted keys, pretty-printed, trailing newline)") }
                return d
            } catch {
                problems.append("\(error)")
                return nil
            }
        }
        let doc: (any Document)?
        switch loc {
        case .marker:
            let marker = try? DocumentCoding.makeDecoder().decode(FormatMarker.self, from: data)
            if marker?.format != Layout.formatName { problems.append("is not a format marker") }
            if let marker, marker.version > Layout.formatVersion {
                problems.append("format version \(marker.version) is newer than this chatsync understands (\(Layout.formatVersion))")
            }
            doc = nil
        case .session(let id): doc = check(UserSession.self, id: id)
        case .chat(let id): doc = check(Chat.self, id: id)
        case .message(let chatID, let id):
            // Most documents are messages: a well-formed, canonical one is read without
            // JSONDecoder (which reads the others and names their problems).
            var m: ChatMessage?
            if let fast = data.withUnsafeBytes({ ChatMessage.fastDecode($0) }), fast.id == id, (try? fast.validate(limits)) != nil,
               (try? DocumentCoding.encode(fast)) == data {
                m = fast
            } else {
                m = check(ChatMessage.self, id: id)
            }
            if let m, m.chatID != chatID { problems.append("chat_id \(m.chatID) does not match its chat folder \(chatID)") }
            doc = m
        case .mission(let id): doc = check(Mission.self, id: id)
        case .hop(let missionID, let id):
            let h = check(Hop.self, id: id)
            if let h, h.missionID != missionID { problems.append("mission_id \(h.missionID) does not match its mission folder \(missionID)") }
            doc = h
        case .toolStep(_, let hopID, let id):
            let t = check(ToolStep.self, id: id)
            if let t, t.hopID != hopID { problems.append("hop_id \(t.hopID) does not match its hop folder \(hopID)") }
            doc = t
        case .asset(let id): doc = check(Asset.self, id: id)
        case .conflict(let id): doc = check(ConflictRecord.self, id: id)
        }
        return (doc, problems)
    }

    /// What a remote's commit `theirs` would bring that breaks the format, before it is merged:
    /// the format marker must be there, and every file it adds or changes against `base` (the
    /// common commit; everything when there is none) must be a valid document where the layout
    /// puts it. References between documents are not checked here (the merge settles them), nor
    /// this process's content size limit (another replica may allow more: a limit of this
    /// process must not stop its syncs).
    func incomingProblems(_ repo: Repository, theirs: OID, base: OID?) throws -> [VerifyProblem] {
        var limits = options.limits
        limits.maxContentBytes = Int.max
        let tree = try wrapGit { try repo.commit(theirs).tree }
        let baseTree = try base.map { b in try wrapGit { try repo.commit(b).tree } }
        var problems: [VerifyProblem] = []
        if try wrapGit({ try repo.entry(in: tree, path: Layout.marker) }) == nil {
            problems.append(VerifyProblem(path: Layout.marker, problem: "missing: not a chatsync store"))
        }
        for change in try wrapGit({ try repo.diff(from: baseTree, to: tree) }) where change.status != .deleted {
            if change.path.hasPrefix(".") { continue }  // .gitattributes and other git files, as in verify
            guard let loc = Layout.locate(change.path) else {
                problems.append(VerifyProblem(path: change.path, problem: "is not where the layout puts any document")); continue
            }
            guard let oid = change.newOID else { continue }
            let data = try wrapGit { try repo.withBlob(oid) { Data($0) } }
            for text in Self.inspect(loc, data, limits: limits).problems {
                problems.append(VerifyProblem(path: change.path, problem: text))
            }
        }
        return problems
    }

    /// Why numbers are not 1…N (each once), or nil when they are.
    static func numberingProblem(_ numbers: [Int]) -> String? {
        if Set(numbers).count != numbers.count { return "is not unique" }
        let sorted = numbers.sorted()
        if let gap = sorted.enumerated().first(where: { $0.element != $0.offset + 1 }) {
            return "is not 1…\(numbers.count) without gaps (\(gap.element) where \(gap.offset + 1) belongs)"
        }
        return nil
    }
}

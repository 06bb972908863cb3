import Foundation

/// A hop with its tool steps in order.
public struct HopWithSteps: Codable, Sendable, Equatable {
    public var hop: Hop
    public var toolSteps: [ToolStep]
    enum CodingKeys: String, CodingKey { case hop, toolSteps = "tool_steps" }
}

/// A mission with its hops and their tool steps, in order.
public struct MissionFull: Codable, Sendable, Equatable {
    public var mission: Mission
    public var hops: [HopWithSteps]
}

/// Where a hop or a tool step lives: they are stored under their mission.
struct HopLocation { let missionID: String; let hopID: String }

extension DocumentReader {
    /// Every mission id in the store.
    func missionIDs() throws -> [String] {
        var ids: [String] = []
        for shard in try names(in: "missions") { ids += try names(in: "missions/\(shard)") }
        return ids
    }

    /// The mission a hop belongs to, found by looking for the hop under each mission.
    func locateHop(_ hopID: String) throws -> HopLocation? {
        for m in try missionIDs() where try exists(Layout.hop(m, hopID)) { return HopLocation(missionID: m, hopID: hopID) }
        return nil
    }

    func requireHop(_ hopID: String) throws -> (HopLocation, Hop) {
        guard let loc = try locateHop(hopID), let hop = try document(Hop.self, at: Layout.hop(loc.missionID, hopID)) else {
            throw ChatSyncError.notFound(kind: "hop", id: hopID)
        }
        return (loc, hop)
    }

    /// The hop a tool step belongs to.
    func locateStep(_ stepID: String) throws -> HopLocation? {
        for m in try missionIDs() {
            for h in try names(in: Layout.hopsDir(m)) where try exists(Layout.step(m, h, stepID)) {
                return HopLocation(missionID: m, hopID: h)
            }
        }
        return nil
    }

    func hops(of missionID: String) throws -> [Hop] {
        try names(in: Layout.hopsDir(missionID)).compactMap { try document(Hop.self, at: Layout.hop(missionID, $0)) }
            .sorted { ($0.sequenceOrder, $0.createdAt, $0.id) < ($1.sequenceOrder, $1.createdAt, $1.id) }
    }

    func steps(of missionID: String, _ hopID: String) throws -> [ToolStep] {
        try files(under: Layout.stepsDir(missionID, hopID)).compactMap { try document(ToolStep.self, at: $0) }
            .sorted { ($0.sequenceOrder, $0.createdAt, $0.id) < ($1.sequenceOrder, $1.createdAt, $1.id) }
    }
}

extension Store {
    // MARK: missions

    public func createMission(userID: String, name: String, description: String? = nil, goal: String? = nil,
                              status: MissionStatus = .awaitingApproval, successCriteria: [String] = [],
                              metadata: JSONValue = .emptyObject, id: String? = nil) throws -> Mission {
        let id = id ?? newID()
        try Rules.id(id, "id")
        return try perform { tx in
            guard try !tx.exists(Layout.mission(id)) else { throw ChatSyncError.conflict("mission \(id) already exists") }
            let m = Mission(id: id, userID: userID, name: name, description: description, goal: goal, status: status,
                            successCriteria: successCriteria, missionMetadata: metadata, createdAt: tx.now, updatedAt: tx.now)
            try tx.put(m, at: Layout.mission(id))
            tx.message = "mission \(short(id)): create \"\(name.prefix(60))\""
            return m
        }
    }

    public func mission(_ id: String) throws -> Mission {
        try Rules.id(id, "mission_id")
        return try read { try $0.require(Mission.self, at: Layout.mission(id), id: id) }
    }

    /// A mission with its hops and tool steps in order.
    public func missionFull(_ id: String, at revision: String? = nil) throws -> MissionFull {
        try Rules.id(id, "mission_id")
        return try read(at: revision) { snap in
            let m = try snap.require(Mission.self, at: Layout.mission(id), id: id)
            let hops = try snap.hops(of: id).map { HopWithSteps(hop: $0, toolSteps: try snap.steps(of: id, $0.id)) }
            return MissionFull(mission: m, hops: hops)
        }
    }

    public func listMissions(userID: String? = nil, status: MissionStatus? = nil) throws -> [Mission] {
        try read { snap in
            try snap.missionIDs().compactMap { try snap.document(Mission.self, at: Layout.mission($0)) }
                .filter { (userID == nil || $0.userID == userID) && (status == nil || $0.status == status) }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    /// Changes a mission's fields from a patch. `current_hop_id` must name one of its hops.
    public func updateMission(_ id: String, patch: [String: JSONValue]) throws -> Mission {
        try Rules.id(id, "mission_id")
        return try perform { tx in
            let old = try tx.require(Mission.self, at: Layout.mission(id), id: id)
            var m = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "created_at", "updated_at"], limits: tx.limits)
            if let hop = m.currentHopID, try !tx.exists(Layout.hop(id, hop)) {
                throw ChatSyncError.invalid(field: "current_hop_id", rule: "must be one of the mission's hops; \(hop) is not")
            }
            if m == old { return old }
            m.updatedAt = tx.now
            try tx.put(m, at: Layout.mission(id))
            tx.message = "mission \(short(id)): update " + patch.keys.sorted().joined(separator: ", ")
            return m
        }
    }

    public func setMissionStatus(_ id: String, _ status: MissionStatus) throws -> Mission {
        try updateMission(id, patch: ["status": .string(status.rawValue)])
    }

    /// Deletes a mission with its hops, tool steps and the assets scoped to them; sessions
    /// linked to it are unlinked (their `mission_id` removed).
    public func deleteMission(_ id: String) throws {
        try Rules.id(id, "mission_id")
        try perform { tx in
            _ = try tx.require(Mission.self, at: Layout.mission(id), id: id)
            let hops = try self.removeMission(id, tx)
            tx.message = "mission \(short(id)): delete with \(hops) hop(s)"
        }
    }

    /// Removes a mission with its hops, steps and scoped assets, and unlinks its sessions.
    /// Returns how many hops it had.
    @discardableResult
    func removeMission(_ id: String, _ tx: Transaction) throws -> Int {
        let hopIDs = Set(try tx.names(in: Layout.hopsDir(id)))
        for var s in try self.sessionIndex.sessions(tx, where: { $0.missionID == id }) {
            s.missionID = nil
            s.updatedAt = tx.now
            try tx.put(s, at: Layout.session(s.id))
        }
        for a in try tx.shardedDocuments(Asset.self, in: "assets")
        where (a.scopeType == .mission && a.scopeID == id) || (a.scopeType == .hop && hopIDs.contains(a.scopeID)) {
            try tx.delete(Layout.asset(a.id))
        }
        try tx.deleteTree(Layout.missionDir(id))
        return hopIDs.count
    }

    // MARK: hops

    /// Adds a hop to a mission, last unless `sequenceOrder` is given (later hops move down one).
    public func addHop(missionID: String, name: String, userID: String? = nil, description: String? = nil, goal: String? = nil,
                       successCriteria: [String] = [], rationale: String? = nil, status: HopStatus = .hopPlanStarted,
                       isFinal: Bool = false, sequenceOrder: Int? = nil, metadata: JSONValue = .emptyObject, id: String? = nil) throws -> Hop {
        let id = id ?? newID()
        try Rules.id(id, "id")
        try Rules.id(missionID, "mission_id")
        if let s = sequenceOrder, s < 1 { throw ChatSyncError.invalid(field: "sequence_order", rule: "must be an integer ≥ 1, got \(s)") }
        return try perform { tx in
            let mission = try tx.require(Mission.self, at: Layout.mission(missionID), id: missionID)
            guard try tx.locateHop(id) == nil else { throw ChatSyncError.conflict("hop \(id) already exists") }
            var hops = try tx.hops(of: missionID)
            if let s = sequenceOrder, s > hops.count + 1 {
                throw ChatSyncError.invalid(field: "sequence_order", rule: "must be from 1 to \(hops.count + 1) (the mission has \(hops.count) hop(s)), got \(s)")
            }
            let position = (sequenceOrder ?? hops.count + 1) - 1
            let hop = Hop(id: id, missionID: missionID, userID: userID ?? mission.userID, sequenceOrder: position + 1, name: name,
                          description: description, goal: goal, successCriteria: successCriteria, rationale: rationale,
                          status: status, isFinal: isFinal, hopMetadata: metadata, createdAt: tx.now, updatedAt: tx.now)
            hops.insert(hop, at: position)
            try Self.renumber(hops, tx) { Layout.hop(missionID, $0.id) }
            tx.message = "mission \(short(missionID)): add hop #\(hop.sequenceOrder) \"\(name.prefix(60))\""
            return hop
        }
    }

    /// Keeps numbers whole after a document was written or removed outside the commands (a hand
    /// edit, a resolution): a chat's messages, a mission's hops, a hop's steps.
    static func renumber(after loc: Layout.Location?, _ tx: Transaction) throws {
        switch loc {
        case .message(let chatID, _)?: _ = try TreeMerge.renumberMessages(chatID, tx)
        // As a reorder does: 1…N by (number, created_at, id), each hop or step moved touched.
        case .hop(let missionID, _)?: try renumber(try tx.hops(of: missionID), tx) { Layout.hop(missionID, $0.id) }
        case .toolStep(let missionID, let hopID, _)?:
            try renumber(try tx.steps(of: missionID, hopID), tx) { Layout.step(missionID, hopID, $0.id) }
        default: break
        }
    }

    /// Writes `sequence_order` = 1…N for documents in the given order (only those that change, and the new one).
    static func renumber<D: Document & Sequenced>(_ docs: [D], _ tx: Transaction, path: (D) -> String) throws {
        for (i, var d) in docs.enumerated() {
            let wanted = i + 1
            let isNew = try !tx.exists(path(d))
            if isNew || d.sequenceOrder != wanted {
                if !isNew { d.touch(tx.now) }
                d.sequenceOrder = wanted
                try tx.put(d, at: path(d))
            }
        }
    }

    public func hop(_ id: String) throws -> Hop {
        try Rules.id(id, "hop_id")
        return try read { try $0.requireHop(id).1 }
    }

    public func listHops(missionID: String) throws -> [Hop] {
        try Rules.id(missionID, "mission_id")
        return try read { snap in
            _ = try snap.require(Mission.self, at: Layout.mission(missionID), id: missionID)
            return try snap.hops(of: missionID)
        }
    }

    public func updateHop(_ id: String, patch: [String: JSONValue]) throws -> Hop {
        try Rules.id(id, "hop_id")
        return try perform { tx in
            let (loc, old) = try tx.requireHop(id)
            var h = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "mission_id", "sequence_order", "created_at", "updated_at"], limits: tx.limits)
            if h == old { return old }
            h.updatedAt = tx.now
            try tx.put(h, at: Layout.hop(loc.missionID, id))
            tx.message = "mission \(short(loc.missionID)): update hop #\(h.sequenceOrder) " + patch.keys.sorted().joined(separator: ", ")
            return h
        }
    }

    public func setHopStatus(_ id: String, _ status: HopStatus) throws -> Hop {
        try updateHop(id, patch: ["status": .string(status.rawValue)])
    }

    /// Deletes a hop with its tool steps and the assets scoped to it; the later hops move up.
    public func deleteHop(_ id: String) throws {
        try Rules.id(id, "hop_id")
        try perform { tx in
            let (loc, hop) = try tx.requireHop(id)
            try self.removeHop(id, missionID: loc.missionID, tx)
            tx.message = "mission \(short(loc.missionID)): delete hop #\(hop.sequenceOrder)"
        }
    }

    /// Removes a hop with its steps and scoped assets, clears it as its mission's current hop,
    /// and renumbers the hops after it.
    func removeHop(_ id: String, missionID: String, _ tx: Transaction) throws {
        for a in try tx.shardedDocuments(Asset.self, in: "assets") where a.scopeType == .hop && a.scopeID == id {
            try tx.delete(Layout.asset(a.id))
        }
        if var mission = try tx.document(Mission.self, at: Layout.mission(missionID)), mission.currentHopID == id {
            mission.currentHopID = nil
            mission.updatedAt = tx.now
            try tx.put(mission, at: Layout.mission(missionID))
        }
        try tx.deleteTree(Layout.hopDir(missionID, id))
        try Self.renumber(try tx.hops(of: missionID).filter { $0.id != id }, tx) { Layout.hop(missionID, $0.id) }
    }

    /// Puts a mission's hops in the given order (every hop, once).
    public func reorderHops(missionID: String, order: [String]) throws -> [Hop] {
        try Rules.id(missionID, "mission_id")
        return try perform { tx in
            _ = try tx.require(Mission.self, at: Layout.mission(missionID), id: missionID)
            let hops = try tx.hops(of: missionID)
            let ordered = try Self.permutation(hops, order, field: "order")
            try Self.renumber(ordered, tx) { Layout.hop(missionID, $0.id) }
            tx.message = "mission \(short(missionID)): reorder \(hops.count) hops"
            return try tx.hops(of: missionID)
        }
    }

    static func permutation<D: Document>(_ docs: [D], _ order: [String], field: String) throws -> [D] {
        let byID = Dictionary(uniqueKeysWithValues: docs.map { ($0.id, $0) })
        guard Set(order).count == order.count else { throw ChatSyncError.invalid(field: field, rule: "must name each id once") }
        guard Set(order) == Set(byID.keys) else {
            throw ChatSyncError.invalid(field: field, rule: "must name exactly the current ids: \(docs.map(\.id).joined(separator: ", "))")
        }
        return order.map { byID[$0]! }
    }

    // MARK: tool steps

    public func addToolStep(hopID: String, toolID: String, name: String, userID: String? = nil, description: String? = nil,
                            status: ToolStepStatus = .proposed, parameterMapping: JSONValue = .emptyObject,
                            resultMapping: JSONValue = .emptyObject, resourceConfigs: JSONValue = .emptyObject,
                            sequenceOrder: Int? = nil, id: String? = nil) throws -> ToolStep {
        let id = id ?? newID()
        try Rules.id(id, "id")
        try Rules.id(hopID, "hop_id")
        if let s = sequenceOrder, s < 1 { throw ChatSyncError.invalid(field: "sequence_order", rule: "must be an integer ≥ 1, got \(s)") }
        return try perform { tx in
            let (loc, hop) = try tx.requireHop(hopID)
            guard try tx.locateStep(id) == nil else { throw ChatSyncError.conflict("tool step \(id) already exists") }
            var steps = try tx.steps(of: loc.missionID, hopID)
            if let s = sequenceOrder, s > steps.count + 1 {
                throw ChatSyncError.invalid(field: "sequence_order", rule: "must be from 1 to \(steps.count + 1) (the hop has \(steps.count) tool step(s)), got \(s)")
            }
            let position = (sequenceOrder ?? steps.count + 1) - 1
            let step = ToolStep(id: id, hopID: hopID, toolID: toolID, userID: userID ?? hop.userID, sequenceOrder: position + 1,
                                name: name, description: description, status: status, parameterMapping: parameterMapping,
                                resultMapping: resultMapping, resourceConfigs: resourceConfigs, createdAt: tx.now, updatedAt: tx.now)
            steps.insert(step, at: position)
            try Self.renumber(steps, tx) { Layout.step(loc.missionID, hopID, $0.id) }
            tx.message = "mission \(short(loc.missionID)): hop #\(hop.sequenceOrder): add step #\(step.sequenceOrder) \(toolID)"
            return step
        }
    }

    public func toolStep(_ id: String) throws -> ToolStep {
        try Rules.id(id, "tool_step_id")
        return try read { snap in
            guard let loc = try snap.locateStep(id) else { throw ChatSyncError.notFound(kind: "tool_step", id: id) }
            return try snap.require(ToolStep.self, at: Layout.step(loc.missionID, loc.hopID, id), id: id)
        }
    }

    public func listToolSteps(hopID: String) throws -> [ToolStep] {
        try Rules.id(hopID, "hop_id")
        return try read { snap in
            let (loc, _) = try snap.requireHop(hopID)
            return try snap.steps(of: loc.missionID, hopID)
        }
    }

    /// Changes a tool step's fields from a patch. Moving to `executing` sets `started_at`; to
    /// `completed`, `failed` or `cancelled` sets `completed_at` (unless the patch gives them).
    public func updateToolStep(_ id: String, patch: [String: JSONValue]) throws -> ToolStep {
        try Rules.id(id, "tool_step_id")
        return try perform { tx in
            guard let loc = try tx.locateStep(id) else { throw ChatSyncError.notFound(kind: "tool_step", id: id) }
            let path = Layout.step(loc.missionID, loc.hopID, id)
            let old = try tx.require(ToolStep.self, at: path, id: id)
            var s = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "hop_id", "sequence_order", "created_at", "updated_at"], limits: tx.limits)
            if s.status != old.status {
                if s.status == .executing && patch["started_at"] == nil { s.startedAt = tx.now }
                if [.completed, .failed, .cancelled].contains(s.status) && patch["completed_at"] == nil { s.completedAt = tx.now }
            }
            if s == old { return old }
            s.updatedAt = tx.now
            try tx.put(s, at: path)
            tx.message = "mission \(short(loc.missionID)): update step #\(s.sequenceOrder) " + patch.keys.sorted().joined(separator: ", ")
            return s
        }
    }

    public func setToolStepStatus(_ id: String, _ status: ToolStepStatus) throws -> ToolStep {
        try updateToolStep(id, patch: ["status": .string(status.rawValue)])
    }

    public func deleteToolStep(_ id: String) throws {
        try Rules.id(id, "tool_step_id")
        try perform { tx in
            guard let loc = try tx.locateStep(id) else { throw ChatSyncError.notFound(kind: "tool_step", id: id) }
            let step = try tx.require(ToolStep.self, at: Layout.step(loc.missionID, loc.hopID, id), id: id)
            try self.removeToolStep(id, missionID: loc.missionID, hopID: loc.hopID, tx)
            tx.message = "mission \(short(loc.missionID)): delete step #\(step.sequenceOrder)"
        }
    }

    /// Removes a tool step and renumbers the steps after it.
    func removeToolStep(_ id: String, missionID: String, hopID: String, _ tx: Transaction) throws {
        try tx.delete(Layout.step(missionID, hopID, id))
        try Self.renumber(try tx.steps(of: missionID, hopID), tx) { Layout.step(missionID, hopID, $0.id) }
    }

    /// Puts a hop's tool steps in the given order (every step, once).
    public func reorderToolSteps(hopID: String, order: [String]) throws -> [ToolStep] {
        try Rules.id(hopID, "hop_id")
        return try perform { tx in
            let (loc, hop) = try tx.requireHop(hopID)
            let steps = try tx.steps(of: loc.missionID, hopID)
            let ordered = try Self.permutation(steps, order, field: "order")
            try Self.renumber(ordered, tx) { Layout.step(loc.missionID, hopID, $0.id) }
            tx.message = "mission \(short(loc.missionID)): hop #\(hop.sequenceOrder): reorder \(steps.count) steps"
            return try tx.steps(of: loc.missionID, hopID)
        }
    }
}

/// Documents ordered by a `sequence_order` that people set.
protocol Sequenced {
    var sequenceOrder: Int { get set }
    mutating func touch(_ now: Timestamp)
}

extension Hop: Sequenced { mutating func touch(_ now: Timestamp) { updatedAt = now } }
extension ToolStep: Sequenced { mutating func touch(_ now: Timestamp) { updatedAt = now } }

import Foundation
import GitKit

/// What a merge did.
struct MergeSummary {
    /// Paths whose content came from the other side or from a document merge.
    var changedPaths = 0
    var conflicts: [ConflictRecord] = []
    /// The sessions either side changed (their paths), for the lifecycle's rules after a merge.
    var sessionPaths: [String] = []
}

/// The three-way merge of two commits of a store, done by chatsync (never by git's line
/// merge): a document changed on one side takes that side's version; a document changed on
/// both is merged field by field as JSON; messages are documents of their own, so appends from
/// both sides are a union, renumbered by (created_at, id). Every rule is symmetric, so merging
/// A into B and B into A give the same tree. See Store/FORMAT.md, "Merging".
enum TreeMerge {
    private enum Side { case ours, theirs }

    /// Merges `theirs` into the transaction's base commit (`ours`), staging the result in `tx`.
    static func merge(into tx: Transaction, ours: OID, theirs: OID, base: OID?) throws -> MergeSummary {
        let repo = tx.base.repo
        let baseTree = try base.map { try repo.commit($0).tree } ?? repo.emptyTree()
        let oursTree = tx.base.tree
        let theirsTree = try repo.commit(theirs).tree
        let dOurs = Dictionary(uniqueKeysWithValues: try repo.diff(from: baseTree, to: oursTree).map { ($0.path, $0) })
        let dTheirs = Dictionary(uniqueKeysWithValues: try repo.diff(from: baseTree, to: theirsTree).map { ($0.path, $0) })
        var summary = MergeSummary()
        var records: [String: ConflictRecord] = [:]
        let commits: [Side: String] = [.ours: ours.hex, .theirs: theirs.hex]

        func parse(_ oid: OID?) throws -> JSONValue? {
            guard let oid else { return nil }
            return try repo.withBlob(oid) { FastJSON.parse($0) }
        }
        func record(_ r: ConflictRecord) { records[r.id] = r }

        // 1. A chat, mission or hop deleted on one side but changed (or newly referenced) on the
        //    other is kept whole: the deletion of everything below it is undone.
        let protected = try protectedContainers(dOurs: dOurs, dTheirs: dTheirs, parse: parse)
        func protectingSide(_ path: String) -> Side? {
            for (dir, side) in protected where path.hasPrefix(dir + "/") { return side }
            return nil
        }
        for (dir, side) in protected {
            let containerPath = containerDocument(in: dir)
            let deleted = (side == .ours ? dOurs : dTheirs)[containerPath]
            let baseValue = try parse(deleted?.oldOID)
            // What is kept: the other side's version of the container's document, edited or not.
            let keptChange = (side == .ours ? dTheirs : dOurs)[containerPath]
            let kept = keptChange.map { try? parse($0.newOID) } ?? baseValue
            let loc = Layout.locate(containerPath)
            record(makeRecord(kind: .deleteVsEdit, path: containerPath, location: loc, field: "(document)", base: baseValue,
                              chosen: kept, other: nil, chosenCommit: commits[side == .ours ? .theirs : .ours]!,
                              otherCommit: commits[side]!, when: timestamp(of: baseValue)))
        }

        // 2. Path by path.
        for path in Set(dOurs.keys).union(dTheirs.keys).sorted() {
            let o = dOurs[path], t = dTheirs[path]
            switch (o, t) {
            case (nil, let t?):
                if t.status == .deleted {
                    if protectingSide(path) == .theirs { continue }
                    try tx.delete(path)
                } else {
                    tx.putBlob(t.newOID!, at: path)
                }
                summary.changedPaths += 1
            case (let o?, nil):
                if o.status == .deleted && protectingSide(path) == .ours, let old = o.oldOID {
                    tx.putBlob(old, at: path)
                    summary.changedPaths += 1
                }
            case (let o?, let t?):
                if o.newOID == t.newOID { continue }
                let loc = Layout.locate(path)
                if o.newOID == nil || t.newOID == nil {
                    // Edit against delete: the edit wins, and the conflict is recorded.
                    let editSide: Side = o.newOID == nil ? .theirs : .ours
                    let edited = editSide == .ours ? o : t
                    let (before, kept) = (try parse(edited.oldOID), try parse(edited.newOID))
                    // Renumbered only (a delete on that side moved it up): no edit, the delete stands.
                    if onlyRenumbered(before, kept) {
                        if editSide == .ours { try tx.delete(path); summary.changedPaths += 1 }
                        continue
                    }
                    if editSide == .theirs { tx.putBlob(edited.newOID!, at: path); summary.changedPaths += 1 }
                    // A chat, mission or hop that comes back whole has its record from step 1.
                    if loc?.kind != nil && loc?.kind != .conflict && !protected.keys.contains(where: { containerDocument(in: $0) == path }) {
                        record(makeRecord(kind: .deleteVsEdit, path: path, location: loc, field: "(document)", base: before,
                                          chosen: kept, other: nil, chosenCommit: commits[editSide]!,
                                          otherCommit: commits[editSide == .ours ? .theirs : .ours]!, when: timestamp(of: kept)))
                    }
                    continue
                }
                let baseValue = try parse(o.oldOID)
                guard let ov = try parse(o.newOID), let tv = try parse(t.newOID) else {
                    // Not JSON on one side (a damaged file): keep the greater blob whole, deterministically.
                    if t.newOID!.hex > o.newOID!.hex { tx.putBlob(t.newOID!, at: path); summary.changedPaths += 1 }
                    continue
                }
                let oursWins = wins(ov, over: tv)
                if loc?.kind == .conflict || loc == nil || loc == .marker {
                    // Conflict records (and anything that is not a document) are taken whole.
                    if !oursWins { tx.putBlob(t.newOID!, at: path); summary.changedPaths += 1 }
                    continue
                }
                var fieldConflicts: [FieldConflict] = []
                let rules = mergeRules(for: loc?.kind)
                let merged = JSONMerge.merge(base: baseValue, a: ov, b: tv, aWins: oursWins, derived: rules.derived,
                                             latest: rules.latest, conflicts: &fieldConflicts)
                if let merged, merged != ov {
                    tx.putRaw(CanonicalJSON.serialize(merged), at: path)
                    summary.changedPaths += 1
                }
                for c in fieldConflicts {
                    record(makeRecord(kind: .field, path: path, location: loc, field: c.field, base: c.base, chosen: c.chosen,
                                      other: c.other, chosenCommit: commits[oursWins ? .ours : .theirs]!,
                                      otherCommit: commits[oursWins ? .theirs : .ours]!,
                                      when: max(timestamp(of: ov), timestamp(of: tv))))
                }
            case (nil, nil):
                continue
            }
        }

        // 3. Derived and ordered numbers: messages by (created_at, id); hops and tool steps by
        //    (sequence_order, created_at, id), each renumbered 1…N where either side changed them.
        var chats = Set<String>(), missions = Set<String>(), hops = Set<(String)>()
        var hopMission: [String: String] = [:]
        for path in Set(dOurs.keys).union(dTheirs.keys) {
            switch Layout.locate(path) {
            case .message(let chatID, _)?, .chat(let chatID)?: chats.insert(chatID)
            case .hop(let missionID, _)?, .mission(let missionID)?: missions.insert(missionID)
            case .toolStep(let missionID, let hopID, _)?: hops.insert(hopID); hopMission[hopID] = missionID
            case .session?: summary.sessionPaths.append(path)
            default: break
            }
        }
        summary.sessionPaths.sort()
        for dir in protected.keys {
            switch Layout.locate(containerDocument(in: dir)) {
            case .chat(let id)?: chats.insert(id)
            case .mission(let id)?: missions.insert(id)
            case .hop(let missionID, let id)?: hops.insert(id); hopMission[id] = missionID
            default: break
            }
        }
        for chatID in chats.sorted() { summary.changedPaths += try renumberMessages(chatID, tx) }
        for missionID in missions.sorted() {
            summary.changedPaths += try renumberOrdered(try tx.names(in: Layout.hopsDir(missionID)).map { Layout.hop(missionID, $0) }, tx)
        }
        for hopID in hops.sorted() {
            guard let missionID = hopMission[hopID] else { continue }
            summary.changedPaths += try renumberOrdered(try tx.files(under: Layout.stepsDir(missionID, hopID)), tx)
        }

        // 4. The conflict records, as documents of their own.
        for r in records.values.sorted(by: { $0.id < $1.id }) {
            let path = Layout.conflict(r.id)
            if try tx.exists(path) { continue }
            try tx.put(r, at: path)
            summary.conflicts.append(r)
        }
        return summary
    }

    // MARK: rules

    /// Whether a document changed only in its number (and the `updated_at` a renumbering sets):
    /// the consequence of a delete or reorder next to it, not an edit of it.
    static func onlyRenumbered(_ before: JSONValue?, _ after: JSONValue?) -> Bool {
        guard case .object(var a)? = before, case .object(var b)? = after else { return false }
        for key in ["sequence_order", "updated_at"] { a.removeValue(forKey: key); b.removeValue(forKey: key) }
        return a == b
    }

    static func mergeRules(for kind: DocumentKind?) -> (derived: Set<String>, latest: Set<String>) {
        switch kind {
        case .message?: return (["sequence_order"], ["updated_at"])
        case .session?: return ([], ["updated_at", "last_activity_at"])
        default: return ([], ["updated_at"])
        }
    }

    /// The time a document was last changed: `updated_at`, else `resolved_at`, else `created_at`.
    static func timestamp(of v: JSONValue?) -> Timestamp {
        for key in ["updated_at", "resolved_at", "created_at"] {
            if case .string(let s)? = v?[key], let t = Timestamp(rfc3339: s) { return t }
        }
        return Timestamp(milliseconds: 0)
    }

    /// Whether `a` wins a conflict against `b`: the later `updated_at` wins; on a tie, the
    /// greater canonical text (a stable order of the content alone, the same on every replica).
    static func wins(_ a: JSONValue, over b: JSONValue) -> Bool {
        let ta = timestamp(of: a), tb = timestamp(of: b)
        if ta != tb { return ta > tb }
        return a.compactText >= b.compactText
    }

    private static func makeRecord(kind: ConflictKind, path: String, location: Layout.Location?, field: String, base: JSONValue?,
                                   chosen: JSONValue?, other: JSONValue?, chosenCommit: String, otherCommit: String,
                                   when: Timestamp) -> ConflictRecord {
        // The id depends only on what conflicted, so two replicas that record the same conflict write the same file.
        let values = [chosen?.compactText ?? "-", other?.compactText ?? "-"].sorted()
        let key = [kind.rawValue, path, field, base?.compactText ?? "-"] + values
        return ConflictRecord(id: stableID(key.joined(separator: "\u{1F}")), kind: kind,
                              documentType: location?.kind ?? .chat, documentID: location?.id ?? "unknown",
                              path: path, field: field, base: base, chosen: chosen, other: other,
                              chosenCommit: chosenCommit, otherCommit: otherCommit, createdAt: when)
    }

    /// 32 hex digits from two FNV-1a 64-bit hashes of the text.
    static func stableID(_ text: String) -> String {
        func fnv(_ seed: UInt64) -> UInt64 {
            var h = seed
            for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            return h
        }
        let a = String(fnv(0xcbf2_9ce4_8422_2325), radix: 16), b = String(fnv(0x8422_2325_cbf2_9ce4), radix: 16)
        return String(repeating: "0", count: 16 - a.count) + a + String(repeating: "0", count: 16 - b.count) + b
    }

    // MARK: containers

    /// `chats/ab/C` → `chats/ab/C/chat.json`, and so on.
    private static func containerDocument(in dir: String) -> String {
        if dir.hasPrefix("chats/") { return dir + "/chat.json" }
        if dir.contains("/hops/") { return dir + "/hop.json" }
        return dir + "/mission.json"
    }

    private static func containerDir(of path: String) -> String? {
        for suffix in ["/chat.json", "/mission.json", "/hop.json"] where path.hasSuffix(suffix) {
            return String(path.dropLast(suffix.count))
        }
        return nil
    }

    /// Containers (chat, mission or hop folders) deleted on one side while the other side
    /// changed something below them or made a document refer to them.
    private static func protectedContainers(dOurs: [String: TreeChange], dTheirs: [String: TreeChange],
                                            parse: (OID?) throws -> JSONValue?) throws -> [String: Side] {
        var result: [String: Side] = [:]
        for (side, deleting, other) in [(Side.ours, dOurs, dTheirs), (Side.theirs, dTheirs, dOurs)] {
            var referenced = Set<String>()
            for (path, change) in other where change.newOID != nil {
                switch Layout.locate(path) {
                case .session?:
                    let v = try parse(change.newOID)
                    for key in ["chat_id", "mission_id"] { if let s = v?[key]?.stringValue { referenced.insert(s) } }
                case .asset?:
                    if let s = try parse(change.newOID)?["scope_id"]?.stringValue { referenced.insert(s) }
                default: break
                }
            }
            for (path, change) in deleting where change.status == .deleted {
                guard let dir = containerDir(of: path), let id = Layout.locate(path)?.id else { continue }
                // A change below it that is only a renumbering (a delete next to it) is no edit.
                let touched = try other.contains { path, c in
                    guard path.hasPrefix(dir + "/"), c.newOID != nil else { return false }
                    if c.oldOID == nil { return true }
                    let (before, after) = (try parse(c.oldOID), try parse(c.newOID))
                    return !onlyRenumbered(before, after)
                }
                if touched || referenced.contains(id) { result[dir] = side }
            }
        }
        // A folder inside a protected one is covered by it.
        return result.filter { entry in !result.keys.contains { entry.key.hasPrefix($0 + "/") } }
    }

    // MARK: renumbering

    /// Sets each message's `sequence_order` to its rank by (created_at, id). Returns the number rewritten.
    static func renumberMessages(_ chatID: String, _ tx: Transaction) throws -> Int {
        var items: [(created: Timestamp, id: String, path: String, value: [String: JSONValue])] = []
        try tx.forEachFile(under: Layout.messagesDir(chatID)) { path, bytes in
            guard path.hasSuffix(".json"), case .object(let o)? = FastJSON.parse(bytes), case .string(let id)? = o["id"] else { return }
            items.append((timestamp(ofCreated: o), id, path, o))
        }
        items.sort { $0.created != $1.created ? $0.created < $1.created : $0.id < $1.id }
        return writeRanks(items.map { ($0.path, $0.value) }, tx)
    }

    /// Writes `sequence_order` = 1…N in the given order, for the documents whose number changes.
    private static func writeRanks(_ ordered: [(path: String, value: [String: JSONValue])], _ tx: Transaction) -> Int {
        var changed = 0
        for (rank, item) in ordered.enumerated() where item.value["sequence_order"] != .int(Int64(rank + 1)) {
            var v = item.value
            v["sequence_order"] = .int(Int64(rank + 1))
            tx.putRaw(CanonicalJSON.serialize(.object(v)), at: item.path)
            changed += 1
        }
        return changed
    }

    private static func timestamp(ofCreated o: [String: JSONValue]) -> Timestamp {
        if case .string(let s)? = o["created_at"], let t = Timestamp(rfc3339: s) { return t }
        return Timestamp(milliseconds: 0)
    }

    /// Renumbers hops or tool steps 1…N by (sequence_order, created_at, id).
    static func renumberOrdered(_ paths: [String], _ tx: Transaction) throws -> Int {
        var items: [(seq: Int64, created: Timestamp, id: String, path: String, value: [String: JSONValue])] = []
        for path in paths where path.hasSuffix(".json") {
            guard let data = try tx.data(at: path),
                  case .object(let o)? = data.withUnsafeBytes({ FastJSON.parse($0) }),
                  case .string(let id)? = o["id"] else { continue }
            var seq: Int64 = .max
            if case .int(let s)? = o["sequence_order"] { seq = s }
            items.append((seq, timestamp(ofCreated: o), id, path, o))
        }
        items.sort { ($0.seq, $0.created, $0.id) < ($1.seq, $1.created, $1.id) }
        return writeRanks(items.map { ($0.path, $0.value) }, tx)
    }
}

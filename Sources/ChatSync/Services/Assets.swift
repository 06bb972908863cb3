import Foundation

extension Store {
    /// Creates an asset scoped to a mission or a hop, which must exist.
    public func createAsset(userID: String, name: String, schemaDefinition: JSONValue, scopeType: AssetScopeType, scopeID: String,
                            role: AssetRole, description: String? = nil, subtype: String? = nil, status: AssetStatus = .proposed,
                            content: JSONValue? = nil, contentSummary: String? = nil, metadata: JSONValue = .emptyObject,
                            dbEntityMetadata: JSONValue? = nil, id: String? = nil) throws -> Asset {
        let id = id ?? newID()
        try Rules.id(id, "id")
        try Rules.id(scopeID, "scope_id")
        return try perform { tx in
            guard try !tx.exists(Layout.asset(id)) else { throw ChatSyncError.conflict("asset \(id) already exists") }
            try Self.checkScope(scopeType, scopeID, tx)
            let a = Asset(id: id, userID: userID, name: name, description: description, schemaDefinition: schemaDefinition,
                          subtype: subtype, scopeType: scopeType, scopeID: scopeID, status: status, role: role, content: content,
                          contentSummary: contentSummary, assetMetadata: metadata, dbEntityMetadata: dbEntityMetadata,
                          createdAt: tx.now, updatedAt: tx.now)
            try tx.put(a, at: Layout.asset(id))
            tx.message = "asset \(short(id)): create \"\(name.prefix(60))\" for \(scopeType.rawValue) \(short(scopeID))"
            return a
        }
    }

    static func checkScope(_ type: AssetScopeType, _ id: String, _ r: DocumentReader) throws {
        switch type {
        case .mission:
            guard try r.exists(Layout.mission(id)) else {
                throw ChatSyncError.invalid(field: "scope_id", rule: "must name an existing mission; mission \(id) does not exist")
            }
        case .hop:
            guard try r.locateHop(id) != nil else {
                throw ChatSyncError.invalid(field: "scope_id", rule: "must name an existing hop; hop \(id) does not exist")
            }
        }
    }

    public func asset(_ id: String) throws -> Asset {
        try Rules.id(id, "asset_id")
        return try read { try $0.require(Asset.self, at: Layout.asset(id), id: id) }
    }

    /// Assets, newest first, filtered by scope and user.
    public func listAssets(scopeType: AssetScopeType? = nil, scopeID: String? = nil, userID: String? = nil) throws -> [Asset] {
        if let scopeID { try Rules.id(scopeID, "scope_id") }
        return try read { snap in
            try snap.shardedDocuments(Asset.self, in: "assets")
                .filter { (scopeType == nil || $0.scopeType == scopeType) && (scopeID == nil || $0.scopeID == scopeID)
                    && (userID == nil || $0.userID == userID) }
                .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        }
    }

    public func updateAsset(_ id: String, patch: [String: JSONValue]) throws -> Asset {
        try Rules.id(id, "asset_id")
        return try perform { tx in
            let old = try tx.require(Asset.self, at: Layout.asset(id), id: id)
            var a = try Patch.apply(patch, to: old, immutable: ["id", "user_id", "created_at", "updated_at"], limits: tx.limits)
            if a.scopeType != old.scopeType || a.scopeID != old.scopeID { try Self.checkScope(a.scopeType, a.scopeID, tx) }
            if a == old { return old }
            a.updatedAt = tx.now
            try tx.put(a, at: Layout.asset(id))
            tx.message = "asset \(short(id)): update " + patch.keys.sorted().joined(separator: ", ")
            return a
        }
    }

    public func deleteAsset(_ id: String) throws {
        try Rules.id(id, "asset_id")
        try perform { tx in
            let a = try tx.require(Asset.self, at: Layout.asset(id), id: id)
            try tx.delete(Layout.asset(id))
            tx.message = "asset \(short(id)): delete \"\(a.name.prefix(60))\""
        }
    }
}

import Foundation

/// The kinds of conflict a merge records.
public enum ConflictKind: String, StringEnum {
    /// Both sides changed the same field to different values.
    case field
    /// One side deleted a document (or the chat, mission or hop holding it) that the other changed.
    case deleteVsEdit = "delete_vs_edit"
}

public enum ConflictStatus: String, StringEnum { case open, resolved }

/// How a conflict was settled.
public enum ConflictResolution: String, StringEnum {
    /// The value the merge kept stays.
    case ours
    /// The value the merge set aside is put back.
    case theirs
    /// A value given by a person.
    case value
}

/// A conflict kept in the store, never dropped: what, where, the base, both values, both
/// commits and when. Stored at `conflicts/<sh>/<id>.json` and synced like any document.
public struct ConflictRecord: Document {
    public static let kind = DocumentKind.conflict
    public var id: String
    public var kind: ConflictKind
    public var documentType: DocumentKind
    public var documentID: String
    /// The file the conflict is in.
    public var path: String
    /// The field's JSON path (`title`, `message_metadata.tokens`), or `(document)`.
    public var field: String
    /// The value in the merge base; absent when the field (or document) did not exist there.
    public var base: JSONValue?
    /// The value the merge kept; absent when it kept the field (or document) absent.
    public var chosen: JSONValue?
    /// The value the merge set aside; absent when that side had deleted it.
    public var other: JSONValue?
    public var chosenCommit: String
    public var otherCommit: String
    public var status: ConflictStatus
    /// When the conflict happened: the later of the two sides' `updated_at`.
    public var createdAt: Timestamp
    public var resolvedAt: Timestamp?
    public var resolution: ConflictResolution?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, kind, documentType = "document_type", documentID = "document_id", path, field, base, chosen, other
        case chosenCommit = "chosen_commit", otherCommit = "other_commit", status, createdAt = "created_at"
        case resolvedAt = "resolved_at", resolution
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, kind: ConflictKind, documentType: DocumentKind, documentID: String, path: String, field: String,
                base: JSONValue?, chosen: JSONValue?, other: JSONValue?, chosenCommit: String, otherCommit: String,
                status: ConflictStatus = .open, createdAt: Timestamp, resolvedAt: Timestamp? = nil, resolution: ConflictResolution? = nil) {
        self.id = id; self.kind = kind; self.documentType = documentType; self.documentID = documentID; self.path = path
        self.field = field; self.base = base; self.chosen = chosen; self.other = other; self.chosenCommit = chosenCommit
        self.otherCommit = otherCommit; self.status = status; self.createdAt = createdAt; self.resolvedAt = resolvedAt
        self.resolution = resolution
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        kind = try c.decode(ConflictKind.self, forKey: .kind)
        documentType = try c.decode(DocumentKind.self, forKey: .documentType)
        documentID = try c.decode(String.self, forKey: .documentID)
        path = try c.decode(String.self, forKey: .path)
        field = try c.decode(String.self, forKey: .field)
        base = try c.decodeIfPresent(JSONValue.self, forKey: .base)
        chosen = try c.decodeIfPresent(JSONValue.self, forKey: .chosen)
        other = try c.decodeIfPresent(JSONValue.self, forKey: .other)
        chosenCommit = try c.decode(String.self, forKey: .chosenCommit)
        otherCommit = try c.decode(String.self, forKey: .otherCommit)
        status = try c.decodeIfPresent(ConflictStatus.self, forKey: .status) ?? .open
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        resolvedAt = try c.decodeIfPresent(Timestamp.self, forKey: .resolvedAt)
        resolution = try c.decodeIfPresent(ConflictResolution.self, forKey: .resolution)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.id(documentID, "document_id")
        try Rules.nonEmpty(path, "path", max: 1024)
        try Rules.nonEmpty(field, "field", max: 1024)
    }
}

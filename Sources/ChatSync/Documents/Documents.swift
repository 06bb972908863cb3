import Foundation

/// What every stored document has in common.
public protocol Document: Codable, Sendable, Equatable {
    /// The document type's name as it appears in errors, commit messages and events (`chat`, `message`, …).
    static var kind: DocumentKind { get }
    /// The JSON field names, exactly as stored (snake_case); kept equal to the JSON Schema by a test.
    static var fieldNames: [String] { get }
    var id: String { get }
    /// Checks the data model's rules that a single document can check on its own.
    func validate(_ limits: DocumentLimits) throws
}

/// The seven document types.
public enum DocumentKind: String, StringEnum {
    case session, chat, message, mission, hop, toolStep = "tool_step", asset
    /// A conflict a merge recorded (not one of the apps' documents, but stored and synced like them).
    case conflict
}

/// Configurable limits on document content.
public struct DocumentLimits: Sendable, Equatable {
    /// The largest message `content`, in UTF-8 bytes.
    public var maxContentBytes: Int
    /// The longest `name` or `title`, in characters.
    public var maxNameLength: Int
    public init(maxContentBytes: Int = 1 << 20, maxNameLength: Int = 255) {
        self.maxContentBytes = maxContentBytes
        self.maxNameLength = maxNameLength
    }
    public static let `default` = DocumentLimits()
}

// MARK: - UserSession

/// A user's working session: one chat, at most one mission.
public struct UserSession: Document {
    public static let kind = DocumentKind.session
    public var id: String
    public var userID: String
    public var name: String?
    public var status: SessionStatus
    public var chatID: String
    public var missionID: String?
    public var sessionMetadata: JSONValue
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var lastActivityAt: Timestamp

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, userID = "user_id", name, status, chatID = "chat_id", missionID = "mission_id"
        case sessionMetadata = "session_metadata", createdAt = "created_at", updatedAt = "updated_at"
        case lastActivityAt = "last_activity_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, userID: String, name: String? = nil, status: SessionStatus = .active, chatID: String,
                missionID: String? = nil, sessionMetadata: JSONValue = .emptyObject,
                createdAt: Timestamp, updatedAt: Timestamp, lastActivityAt: Timestamp) {
        self.id = id; self.userID = userID; self.name = name; self.status = status; self.chatID = chatID
        self.missionID = missionID; self.sessionMetadata = sessionMetadata
        self.createdAt = createdAt; self.updatedAt = updatedAt; self.lastActivityAt = lastActivityAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        userID = try c.decode(String.self, forKey: .userID)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        status = try c.decodeIfPresent(SessionStatus.self, forKey: .status) ?? .active
        chatID = try c.decode(String.self, forKey: .chatID)
        missionID = try c.decodeIfPresent(String.self, forKey: .missionID)
        sessionMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .sessionMetadata) ?? .emptyObject
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
        lastActivityAt = try c.decode(Timestamp.self, forKey: .lastActivityAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.userID(userID, "user_id")
        try Rules.name(name, "name", limits)
        try Rules.id(chatID, "chat_id")
        if let missionID { try Rules.id(missionID, "mission_id") }
        try Rules.object(sessionMetadata, "session_metadata")
    }
}

// MARK: - Chat

/// A conversation. Its messages are documents of their own.
public struct Chat: Document {
    public static let kind = DocumentKind.chat
    public var id: String
    public var userID: String
    public var title: String?
    public var contextData: JSONValue
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, userID = "user_id", title, contextData = "context_data", createdAt = "created_at", updatedAt = "updated_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, userID: String, title: String? = nil, contextData: JSONValue = .emptyObject,
                createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id; self.userID = userID; self.title = title; self.contextData = contextData
        self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        userID = try c.decode(String.self, forKey: .userID)
        title = try c.decodeIfPresent(String.self, forKey: .title)
        contextData = try c.decodeIfPresent(JSONValue.self, forKey: .contextData) ?? .emptyObject
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.userID(userID, "user_id")
        try Rules.name(title, "title", limits)
        try Rules.object(contextData, "context_data")
    }
}

// MARK: - ChatMessage

/// One message of a chat.
public struct ChatMessage: Document {
    public static let kind = DocumentKind.message
    public var id: String
    public var chatID: String
    public var userID: String?
    /// The message's rank in its chat when sorted by (created_at, id): 1…N, unique, no gaps.
    public var sequenceOrder: Int
    public var role: MessageRole
    public var content: String
    public var messageMetadata: JSONValue
    public var createdAt: Timestamp
    public var updatedAt: Timestamp?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, chatID = "chat_id", userID = "user_id", sequenceOrder = "sequence_order", role, content
        case messageMetadata = "message_metadata", createdAt = "created_at", updatedAt = "updated_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, chatID: String, userID: String? = nil, sequenceOrder: Int, role: MessageRole, content: String,
                messageMetadata: JSONValue = .emptyObject, createdAt: Timestamp, updatedAt: Timestamp? = nil) {
        self.id = id; self.chatID = chatID; self.userID = userID; self.sequenceOrder = sequenceOrder; self.role = role
        self.content = content; self.messageMetadata = messageMetadata; self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        chatID = try c.decode(String.self, forKey: .chatID)
        userID = try c.decodeIfPresent(String.self, forKey: .userID)
        sequenceOrder = try c.decode(Int.self, forKey: .sequenceOrder)
        role = try c.decode(MessageRole.self, forKey: .role)
        content = try c.decode(String.self, forKey: .content)
        messageMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .messageMetadata) ?? .emptyObject
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decodeIfPresent(Timestamp.self, forKey: .updatedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.id(chatID, "chat_id")
        if let userID { try Rules.userID(userID, "user_id") }
        guard sequenceOrder >= 1 else { throw ChatSyncError.invalid(field: "sequence_order", rule: "must be an integer ≥ 1, got \(sequenceOrder)") }
        try Rules.content(content, "content", limits)
        try Rules.object(messageMetadata, "message_metadata")
    }

    /// The order of messages in a chat: by `created_at`, then by `id`.
    public static func inChatOrder(_ a: ChatMessage, _ b: ChatMessage) -> Bool {
        a.createdAt != b.createdAt ? a.createdAt < b.createdAt : a.id < b.id
    }
}

// MARK: - Mission

/// A multi-step goal worked on in a session; it has an ordered list of hops.
public struct Mission: Document {
    public static let kind = DocumentKind.mission
    public var id: String
    public var userID: String
    public var name: String
    public var description: String?
    public var goal: String?
    public var status: MissionStatus
    public var currentHopID: String?
    public var successCriteria: [String]
    public var missionMetadata: JSONValue
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, userID = "user_id", name, description, goal, status, currentHopID = "current_hop_id"
        case successCriteria = "success_criteria", missionMetadata = "mission_metadata"
        case createdAt = "created_at", updatedAt = "updated_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, userID: String, name: String, description: String? = nil, goal: String? = nil,
                status: MissionStatus = .awaitingApproval, currentHopID: String? = nil, successCriteria: [String] = [],
                missionMetadata: JSONValue = .emptyObject, createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id; self.userID = userID; self.name = name; self.description = description; self.goal = goal
        self.status = status; self.currentHopID = currentHopID; self.successCriteria = successCriteria
        self.missionMetadata = missionMetadata; self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        userID = try c.decode(String.self, forKey: .userID)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        goal = try c.decodeIfPresent(String.self, forKey: .goal)
        status = try c.decodeIfPresent(MissionStatus.self, forKey: .status) ?? .awaitingApproval
        currentHopID = try c.decodeIfPresent(String.self, forKey: .currentHopID)
        successCriteria = try c.decodeIfPresent([String].self, forKey: .successCriteria) ?? []
        missionMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .missionMetadata) ?? .emptyObject
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.userID(userID, "user_id")
        try Rules.requiredName(name, "name", limits)
        if let currentHopID { try Rules.id(currentHopID, "current_hop_id") }
        try Rules.object(missionMetadata, "mission_metadata")
    }
}

// MARK: - Hop

/// One stage of a mission; it has an ordered list of tool steps.
public struct Hop: Document {
    public static let kind = DocumentKind.hop
    public var id: String
    public var missionID: String
    public var userID: String
    public var sequenceOrder: Int
    public var name: String
    public var description: String?
    public var goal: String?
    public var successCriteria: [String]
    public var rationale: String?
    public var status: HopStatus
    public var isFinal: Bool
    public var isResolved: Bool
    public var errorMessage: String?
    public var hopMetadata: JSONValue
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, missionID = "mission_id", userID = "user_id", sequenceOrder = "sequence_order", name, description, goal
        case successCriteria = "success_criteria", rationale, status, isFinal = "is_final", isResolved = "is_resolved"
        case errorMessage = "error_message", hopMetadata = "hop_metadata", createdAt = "created_at", updatedAt = "updated_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, missionID: String, userID: String, sequenceOrder: Int, name: String, description: String? = nil,
                goal: String? = nil, successCriteria: [String] = [], rationale: String? = nil, status: HopStatus = .hopPlanStarted,
                isFinal: Bool = false, isResolved: Bool = false, errorMessage: String? = nil, hopMetadata: JSONValue = .emptyObject,
                createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id; self.missionID = missionID; self.userID = userID; self.sequenceOrder = sequenceOrder; self.name = name
        self.description = description; self.goal = goal; self.successCriteria = successCriteria; self.rationale = rationale
        self.status = status; self.isFinal = isFinal; self.isResolved = isResolved; self.errorMessage = errorMessage
        self.hopMetadata = hopMetadata; self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        missionID = try c.decode(String.self, forKey: .missionID)
        userID = try c.decode(String.self, forKey: .userID)
        sequenceOrder = try c.decode(Int.self, forKey: .sequenceOrder)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        goal = try c.decodeIfPresent(String.self, forKey: .goal)
        successCriteria = try c.decodeIfPresent([String].self, forKey: .successCriteria) ?? []
        rationale = try c.decodeIfPresent(String.self, forKey: .rationale)
        status = try c.decodeIfPresent(HopStatus.self, forKey: .status) ?? .hopPlanStarted
        isFinal = try c.decodeIfPresent(Bool.self, forKey: .isFinal) ?? false
        isResolved = try c.decodeIfPresent(Bool.self, forKey: .isResolved) ?? false
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        hopMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .hopMetadata) ?? .emptyObject
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.id(missionID, "mission_id")
        try Rules.userID(userID, "user_id")
        guard sequenceOrder >= 1 else { throw ChatSyncError.invalid(field: "sequence_order", rule: "must be an integer ≥ 1, got \(sequenceOrder)") }
        try Rules.requiredName(name, "name", limits)
        try Rules.object(hopMetadata, "hop_metadata")
    }
}

// MARK: - ToolStep

/// One tool call planned or run within a hop.
public struct ToolStep: Document {
    public static let kind = DocumentKind.toolStep
    public var id: String
    public var hopID: String
    public var toolID: String
    public var userID: String
    public var sequenceOrder: Int
    public var name: String
    public var description: String?
    public var status: ToolStepStatus
    public var parameterMapping: JSONValue
    public var resultMapping: JSONValue
    public var resourceConfigs: JSONValue
    public var validationErrors: [JSONValue]
    public var executionResult: JSONValue?
    public var errorMessage: String?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp
    public var startedAt: Timestamp?
    public var completedAt: Timestamp?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, hopID = "hop_id", toolID = "tool_id", userID = "user_id", sequenceOrder = "sequence_order", name, description
        case status, parameterMapping = "parameter_mapping", resultMapping = "result_mapping", resourceConfigs = "resource_configs"
        case validationErrors = "validation_errors", executionResult = "execution_result", errorMessage = "error_message"
        case createdAt = "created_at", updatedAt = "updated_at", startedAt = "started_at", completedAt = "completed_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, hopID: String, toolID: String, userID: String, sequenceOrder: Int, name: String,
                description: String? = nil, status: ToolStepStatus = .proposed, parameterMapping: JSONValue = .emptyObject,
                resultMapping: JSONValue = .emptyObject, resourceConfigs: JSONValue = .emptyObject,
                validationErrors: [JSONValue] = [], executionResult: JSONValue? = nil, errorMessage: String? = nil,
                createdAt: Timestamp, updatedAt: Timestamp, startedAt: Timestamp? = nil, completedAt: Timestamp? = nil) {
        self.id = id; self.hopID = hopID; self.toolID = toolID; self.userID = userID; self.sequenceOrder = sequenceOrder
        self.name = name; self.description = description; self.status = status; self.parameterMapping = parameterMapping
        self.resultMapping = resultMapping; self.resourceConfigs = resourceConfigs; self.validationErrors = validationErrors
        self.executionResult = executionResult; self.errorMessage = errorMessage; self.createdAt = createdAt
        self.updatedAt = updatedAt; self.startedAt = startedAt; self.completedAt = completedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        hopID = try c.decode(String.self, forKey: .hopID)
        toolID = try c.decode(String.self, forKey: .toolID)
        userID = try c.decode(String.self, forKey: .userID)
        sequenceOrder = try c.decode(Int.self, forKey: .sequenceOrder)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        status = try c.decodeIfPresent(ToolStepStatus.self, forKey: .status) ?? .proposed
        parameterMapping = try c.decodeIfPresent(JSONValue.self, forKey: .parameterMapping) ?? .emptyObject
        resultMapping = try c.decodeIfPresent(JSONValue.self, forKey: .resultMapping) ?? .emptyObject
        resourceConfigs = try c.decodeIfPresent(JSONValue.self, forKey: .resourceConfigs) ?? .emptyObject
        validationErrors = try c.decodeIfPresent([JSONValue].self, forKey: .validationErrors) ?? []
        executionResult = try c.decodeIfPresent(JSONValue.self, forKey: .executionResult)
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
        startedAt = try c.decodeIfPresent(Timestamp.self, forKey: .startedAt)
        completedAt = try c.decodeIfPresent(Timestamp.self, forKey: .completedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.id(hopID, "hop_id")
        try Rules.nonEmpty(toolID, "tool_id", max: limits.maxNameLength)
        try Rules.userID(userID, "user_id")
        guard sequenceOrder >= 1 else { throw ChatSyncError.invalid(field: "sequence_order", rule: "must be an integer ≥ 1, got \(sequenceOrder)") }
        try Rules.requiredName(name, "name", limits)
        try Rules.object(parameterMapping, "parameter_mapping")
        try Rules.object(resultMapping, "result_mapping")
        try Rules.object(resourceConfigs, "resource_configs")
        try Rules.nesting(.array(validationErrors), "validation_errors")
        try Rules.nesting(executionResult, "execution_result")
    }
}

// MARK: - Asset

/// Data produced or consumed by a mission or a hop.
public struct Asset: Document {
    public static let kind = DocumentKind.asset
    public var id: String
    public var userID: String
    public var name: String
    public var description: String?
    public var schemaDefinition: JSONValue
    public var subtype: String?
    public var scopeType: AssetScopeType
    public var scopeID: String
    public var status: AssetStatus
    public var role: AssetRole
    public var content: JSONValue?
    public var contentSummary: String?
    public var assetMetadata: JSONValue
    public var dbEntityMetadata: JSONValue?
    public var createdAt: Timestamp
    public var updatedAt: Timestamp

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, userID = "user_id", name, description, schemaDefinition = "schema_definition", subtype
        case scopeType = "scope_type", scopeID = "scope_id", status, role, content, contentSummary = "content_summary"
        case assetMetadata = "asset_metadata", dbEntityMetadata = "db_entity_metadata"
        case createdAt = "created_at", updatedAt = "updated_at"
    }
    public static var fieldNames: [String] { CodingKeys.allCases.map(\.stringValue) }

    public init(id: String, userID: String, name: String, description: String? = nil, schemaDefinition: JSONValue,
                subtype: String? = nil, scopeType: AssetScopeType, scopeID: String, status: AssetStatus = .proposed,
                role: AssetRole, content: JSONValue? = nil, contentSummary: String? = nil,
                assetMetadata: JSONValue = .emptyObject, dbEntityMetadata: JSONValue? = nil,
                createdAt: Timestamp, updatedAt: Timestamp) {
        self.id = id; self.userID = userID; self.name = name; self.description = description
        self.schemaDefinition = schemaDefinition; self.subtype = subtype; self.scopeType = scopeType; self.scopeID = scopeID
        self.status = status; self.role = role; self.content = content; self.contentSummary = contentSummary
        self.assetMetadata = assetMetadata; self.dbEntityMetadata = dbEntityMetadata
        self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try rejectUnknownKeys(decoder, Self.fieldNames)
        id = try c.decode(String.self, forKey: .id)
        userID = try c.decode(String.self, forKey: .userID)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        schemaDefinition = try c.decode(JSONValue.self, forKey: .schemaDefinition)
        subtype = try c.decodeIfPresent(String.self, forKey: .subtype)
        scopeType = try c.decode(AssetScopeType.self, forKey: .scopeType)
        scopeID = try c.decode(String.self, forKey: .scopeID)
        status = try c.decodeIfPresent(AssetStatus.self, forKey: .status) ?? .proposed
        role = try c.decode(AssetRole.self, forKey: .role)
        content = try c.decodeIfPresent(JSONValue.self, forKey: .content)
        contentSummary = try c.decodeIfPresent(String.self, forKey: .contentSummary)
        assetMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .assetMetadata) ?? .emptyObject
        dbEntityMetadata = try c.decodeIfPresent(JSONValue.self, forKey: .dbEntityMetadata)
        createdAt = try c.decode(Timestamp.self, forKey: .createdAt)
        updatedAt = try c.decode(Timestamp.self, forKey: .updatedAt)
    }

    public func validate(_ limits: DocumentLimits) throws {
        try Rules.id(id, "id")
        try Rules.userID(userID, "user_id")
        try Rules.requiredName(name, "name", limits)
        try Rules.object(schemaDefinition, "schema_definition")
        try Rules.id(scopeID, "scope_id")
        try Rules.object(assetMetadata, "asset_metadata")
        if let dbEntityMetadata, dbEntityMetadata != .null { try Rules.object(dbEntityMetadata, "db_entity_metadata") }
        try Rules.nesting(content, "content")
    }
}

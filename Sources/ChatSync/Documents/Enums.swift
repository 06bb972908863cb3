import Foundation

/// A closed set of string values. Decoding an unknown value fails with a message that lists
/// the values allowed.
public protocol StringEnum: RawRepresentable, CaseIterable, Codable, Sendable, Hashable where RawValue == String {}

extension StringEnum {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let raw = try c.decode(String.self)
        guard let v = Self(rawValue: raw) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "must be one of \(Self.allowedValues), got \"\(raw.prefix(40))\"")
        }
        self = v
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }

    /// `active, completed, abandoned, archived`
    public static var allowedValues: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Parses a value given by a person, naming the field in the error.
    public static func parse(_ text: String, field: String) throws -> Self {
        guard let v = Self(rawValue: text) else {
            throw ChatSyncError.invalid(field: field, rule: "must be one of \(allowedValues), got \"\(text.prefix(40))\"")
        }
        return v
    }
}

public enum SessionStatus: String, StringEnum { case active, completed, abandoned, archived }

public enum MessageRole: String, StringEnum { case user, assistant, system, tool, status }

public enum MissionStatus: String, StringEnum {
    case awaitingApproval = "awaiting_approval", inProgress = "in_progress", completed, failed, cancelled
}

public enum HopStatus: String, StringEnum {
    case hopPlanStarted = "hop_plan_started", hopPlanProposed = "hop_plan_proposed", hopPlanReady = "hop_plan_ready"
    case hopImplStarted = "hop_impl_started", hopImplProposed = "hop_impl_proposed", hopImplReady = "hop_impl_ready"
    case executing, completed, failed, cancelled
}

public enum ToolStepStatus: String, StringEnum {
    case proposed, readyToConfigure = "ready_to_configure", readyToExecute = "ready_to_execute"
    case executing, completed, failed, cancelled
}

public enum AssetScopeType: String, StringEnum { case mission, hop }

public enum AssetStatus: String, StringEnum { case proposed, pending, inProgress = "in_progress", ready, error, expired }

public enum AssetRole: String, StringEnum { case input, output, intermediate }

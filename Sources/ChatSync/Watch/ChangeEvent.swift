import Foundation

/// Where a change came from, as seen by the watching process.
public enum ChangeOrigin: String, StringEnum {
    /// Made by this process (through its store).
    case local
    /// The branch moved by anything else: another chatsync process, plain `git commit` or `git pull`.
    case external
    /// A JSON file in the work tree created, changed or deleted by hand (or by another tool).
    case workdir
    /// Merged in by a sync with a remote.
    case remote
}

/// What happened to a document.
public enum ChangeKind: String, StringEnum {
    case created, updated, deleted
    /// Not a change: a hand edit that was refused, or a sync that failed.
    case error
}

/// One event of the watch stream. Its JSON shape is described in Store/FORMAT.md and
/// `Store/schemas/event.schema.json`.
public struct ChangeEvent: Codable, Sendable, Equatable {
    /// The commit that made the change (resuming after it skips all its changes); absent for errors.
    public var commit: String?
    /// `COMMIT:N`, this change's place in its commit (the N-th): what to resume after; absent for errors.
    public var cursor: String?
    public var kind: ChangeKind
    /// The document type; absent for a failed sync.
    public var type: DocumentKind?
    public var id: String?
    /// The chat of a message.
    public var chatID: String?
    public var origin: ChangeOrigin
    /// When: the commit's time, or (for errors) when it happened.
    public var time: Timestamp
    /// The file (for changes and refused hand edits).
    public var path: String?
    /// What went wrong (errors only).
    public var error: String?
    /// The remote of a failed sync.
    public var remote: String?

    enum CodingKeys: String, CodingKey {
        case commit, cursor, kind, type, id, chatID = "chat_id", origin, time, path, error, remote
    }

    public init(commit: String?, kind: ChangeKind, type: DocumentKind?, id: String?, chatID: String? = nil, origin: ChangeOrigin,
                time: Timestamp, path: String? = nil, error: String? = nil, remote: String? = nil) {
        self.commit = commit; self.kind = kind; self.type = type; self.id = id; self.chatID = chatID; self.origin = origin
        self.time = time; self.path = path; self.error = error; self.remote = remote
    }

    /// One line of compact JSON (sorted keys), as `chatsync watch` prints it.
    public var jsonLine: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

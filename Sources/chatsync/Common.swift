import ArgumentParser
import ChatSync
import Foundation

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store's folder.", discussion: "Default: $CHATSYNC_STORE, else ~/.local/share/chatsync/store (created on first use)."))
    var store: String?

    @Flag(name: .long, help: "Print the resulting documents as JSON on stdout (errors as JSON on stderr).")
    var json = false

    @Flag(name: .long, help: "Do not fsync objects and refs (faster, but a crash may lose acknowledged changes).")
    var noFsync = false

    /// The store path and whether it is the per-user default (which is created on first use).
    func storeLocation() -> (path: String, isDefault: Bool) {
        if let store { return (store, false) }
        let env = ProcessInfo.processInfo.environment
        if let s = env["CHATSYNC_STORE"], !s.isEmpty { return (s, false) }
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (home + "/.local/share")
        return (base + "/chatsync/store", true)
    }

    func storeOptions() throws -> StoreOptions {
        var o = StoreOptions()
        o.durable = !noFsync
        let env = ProcessInfo.processInfo.environment
        if let name = env["CHATSYNC_AUTHOR_NAME"], let email = env["CHATSYNC_AUTHOR_EMAIL"], !name.isEmpty, !email.isEmpty {
            o.identity = Identity(name: name, email: email)
        }
        if let limit = env["CHATSYNC_MAX_CONTENT_BYTES"] {
            guard let n = Int(limit.trimmingCharacters(in: .whitespaces)), n > 0 else {
                throw ChatSyncError.invalid(field: "CHATSYNC_MAX_CONTENT_BYTES", rule: "must be a whole number of bytes above 0, got \"\(limit)\"")
            }
            o.limits.maxContentBytes = n
        }
        return o
    }

    func openStore(create: Bool = false) throws -> Store {
        let (path, isDefault) = storeLocation()
        return try Store.open(at: path, options: try storeOptions(), create: create || isDefault)
    }

    /// Opens the store, runs `body`, and turns errors into a message on stderr and exit code 1.
    func run(create: Bool = false, _ body: (Store) throws -> Void) throws {
        do {
            let store = try openStore(create: create)
            defer { store.close() }
            try body(store)
        } catch let e as ExitCode {
            throw e
        } catch {
            report(error)
            throw ExitCode(1)
        }
    }

    func report(_ error: Error) {
        let e = (error as? ChatSyncError) ?? .storage("\(error)")
        if json {
            var body: [String: JSONValue] = ["code": .string(e.code), "message": .string(e.description)]
            if let f = e.field { body["field"] = .string(f) }
            FileHandle.standardError.write(Data((JSONValue.object(["error": .object(body)]).compactText + "\n").utf8))
        } else {
            FileHandle.standardError.write(Data("chatsync: error: \(e.description)\n".utf8))
        }
    }

    /// Prints a value as JSON (with `--json`) or as the given human text.
    func emit<T: Encodable>(_ value: T, _ human: @autoclosure () -> String) throws {
        if json {
            let data = try DocumentCoding.encode(value)
            FileHandle.standardOutput.write(data)
        } else {
            let text = human()
            if !text.isEmpty { print(text) }
        }
    }
}

/// Parses `--metadata`-style JSON object options.
func parseObject(_ text: String?, field: String) throws -> JSONValue? {
    try text.map { try JSONValue.parseObject($0, field: field) }
}

/// Parses a duration: `90s`, `30m`, `24h`, `7d` or a number of seconds.
func parseDuration(_ text: String, field: String) throws -> Double {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
    var t = text.trimmingCharacters(in: .whitespaces)
    var factor = 1.0
    if let last = t.last, let u = units[last] { factor = u; t.removeLast() }
    guard let v = Double(t), v >= 0, v.isFinite else {
        throw ChatSyncError.invalid(field: field, rule: "must be a duration like 90s, 30m, 24h or 7d, got \"\(text)\"")
    }
    guard v * factor <= 100 * 365.25 * 86_400 else {
        throw ChatSyncError.invalid(field: field, rule: "must be at most a century, got \"\(text)\"")
    }
    return v * factor
}

/// Runs a body that can throw a `ChatSyncError` before the store is opened (argument checks).
func validated<T>(_ g: GlobalOptions, _ body: () throws -> T) throws -> T {
    do { return try body() } catch {
        g.report(error)
        throw ExitCode(1)
    }
}

// MARK: human output

func line(_ s: UserSession) -> String {
    "\(s.id)  user=\(s.userID)  status=\(s.status.rawValue)  chat=\(s.chatID)  mission=\(s.missionID ?? "-")  last_activity=\(s.lastActivityAt)  name=\"\(s.name ?? "")\""
}

func line(_ c: Chat) -> String {
    "\(c.id)  user=\(c.userID)  created=\(c.createdAt)  title=\"\(c.title ?? "")\""
}

func transcript(_ m: ChatMessage) -> String {
    let head = "#\(m.sequenceOrder) \(m.role.rawValue) \(m.createdAt)\(m.updatedAt != nil ? " (edited \(m.updatedAt!))" : "")  [\(m.id)]"
    let body = m.content.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n")
    return head + "\n" + body
}

func line(_ m: Mission) -> String {
    "\(m.id)  user=\(m.userID)  status=\(m.status.rawValue)  current_hop=\(m.currentHopID ?? "-")  name=\"\(m.name)\""
}

func line(_ h: Hop) -> String {
    "#\(h.sequenceOrder) \(h.id)  status=\(h.status.rawValue)\(h.isFinal ? "  final" : "")\(h.isResolved ? "  resolved" : "")  name=\"\(h.name)\""
}

func line(_ s: ToolStep) -> String {
    "#\(s.sequenceOrder) \(s.id)  tool=\(s.toolID)  status=\(s.status.rawValue)  name=\"\(s.name)\""
}

func line(_ a: Asset) -> String {
    "\(a.id)  \(a.scopeType.rawValue)=\(a.scopeID)  role=\(a.role.rawValue)  status=\(a.status.rawValue)  name=\"\(a.name)\""
}

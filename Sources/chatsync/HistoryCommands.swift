import ArgumentParser
import ChatSync
import Foundation

/// Colours for a terminal (none when stdout is not one).
enum Colour {
    static let on = isatty(1) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    static func green(_ s: String) -> String { on ? "\u{1B}[32m\(s)\u{1B}[0m" : s }
    static func red(_ s: String) -> String { on ? "\u{1B}[31m\(s)\u{1B}[0m" : s }
    static func yellow(_ s: String) -> String { on ? "\u{1B}[33m\(s)\u{1B}[0m" : s }
}

/// The command that renders documents for git (`diff.chatsync.textconv`): this program by its
/// absolute path, so that plain git renders documents whatever its PATH holds.
func textconvCommand() -> String {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return "'\(me.replacingOccurrences(of: "'", with: "'\\''"))' textconv"
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff",
        abstract: "What changed between two revisions: messages added, edited, removed; fields of other documents.",
        discussion: "A revision is what git takes: a commit id or prefix, HEAD~3, a branch, origin/main, or a date: @{2026-11-20}.")
    @OptionGroup var global: GlobalOptions
    @Argument var from: String
    @Argument var to: String?
    @Option var chat: String?

    func run() throws {
        try global.run { store in
            let d = try store.diff(from: from, to: to, chatID: chat)
            try global.emit(d, Self.render(d))
        }
    }

    static func render(_ d: SemanticDiff) -> String {
        var lines: [String] = [Colour.yellow("diff \(d.from.prefix(10))..\(d.to.prefix(10))")]
        if d.changes.isEmpty { lines.append("no changes") }
        for c in d.changes {
            if c.type == .message, let m = c.message {
                let head = "#\(m.sequenceOrder) \(m.role.rawValue) \(humanTime(m.createdAt))"
                switch c.change {
                case .added: lines.append(Colour.green("+ \(head): " + indentContent(m.content, "  ")))
                case .removed: lines.append(Colour.red("- \(head): " + indentContent(m.content, "  ")))
                case .edited:
                    lines.append(Colour.yellow("~ \(head) [\(m.id)] edited:"))
                    for l in c.contentDiff ?? [] {
                        switch l.op {
                        case .same: lines.append("    " + l.text)
                        case .added: lines.append(Colour.green("  + " + l.text))
                        case .removed: lines.append(Colour.red("  - " + l.text))
                        }
                    }
                    for f in c.fields where f.field != "content" { lines.append("    " + fieldLine(f)) }
                }
                continue
            }
            switch c.change {
            case .added: lines.append(Colour.green("+ \(c.type.rawValue) \(c.id) created"))
            case .removed: lines.append(Colour.red("- \(c.type.rawValue) \(c.id) deleted"))
            case .edited:
                lines.append(Colour.yellow("~ \(c.type.rawValue) \(c.id):"))
                for f in c.fields { lines.append("    " + fieldLine(f)) }
            }
        }
        return lines.joined(separator: "\n")
    }

    static func fieldLine(_ f: FieldChange) -> String {
        "\(f.field): \(f.old?.compactText ?? "(none)") → \(f.new?.compactText ?? "(none)")"
    }

    static func humanTime(_ t: Timestamp) -> String { String(t.rfc3339.prefix(16)).replacingOccurrences(of: "T", with: " ") }

    /// Content with real line breaks, continuation lines indented.
    static func indentContent(_ s: String, _ indent: String) -> String {
        s.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n" + indent)
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "A document as it was at a revision.",
        discussion: "chatsync show chat ID --at HEAD~2 · chatsync show session ID --at-date 2026-11-20")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "chat, session or mission.") var type: String
    @Argument var id: String
    @Option(help: "A revision: commit, HEAD~N, branch, origin/main, @{2026-11-20}.") var at: String?
    @Option(help: "A date: the store as it was then (2026-11-20, \"2026-11-20 10:30\").") var atDate: String?

    func run() throws {
        let revision = try validated(global) { () -> String in
            guard ["chat", "session", "mission"].contains(type) else { throw ChatSyncError.invalid(field: "type", rule: "must be chat, session or mission, got \"\(type)\"") }
            switch (at, atDate) {
            case (let a?, nil): return a
            case (nil, let d?): return "@{\(d)}"
            case (nil, nil): return "HEAD"
            default: throw ChatSyncError.invalid(field: "at", rule: "give --at or --at-date, not both")
            }
        }
        try global.run { store in
            let commit: String
            do {
                commit = try store.resolve(revision).hex
            } catch ChatSyncError.invalid(field: "revision", let rule) where atDate != nil {
                throw ChatSyncError.invalid(field: "at-date", rule: "must be a date like 2026-11-20 or \"2026-11-20 10:30\" (\(rule))")
            }
            do {
                try show(store, commit)
            } catch ChatSyncError.notFound(let kind, let id) {
                // Which revision it was looked for in (the document may come later).
                throw ChatSyncError.notFound(kind: kind.components(separatedBy: " at ").first ?? kind, id: "\(id) at \(revision) (commit \(commit.prefix(10)))")
            }
        }
    }

    private func show(_ store: Store, _ commit: String) throws {
        switch type {
        case "chat":
            let c = try store.chatWithMessages(id, at: commit)
            try global.emit(c, ([line(c.chat)] + c.messages.map(transcript)).joined(separator: "\n"))
        case "session":
            let s = try store.document(UserSession.self, id: id, at: commit)
            try global.emit(s, line(s))
        default:
            let f = try store.missionFull(id, at: commit)
            try global.emit(f, ([line(f.mission)] + f.hops.map { "  " + line($0.hop) }).joined(separator: "\n"))
        }
    }
}

struct BlameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "blame", abstract: "For each message: the commit that added it and the last that edited it.")
    @OptionGroup var global: GlobalOptions
    @Argument var chatID: String
    @Option var at: String?

    func run() throws {
        try global.run { store in
            let lines = try store.blame(chatID: chatID, at: at)
            try global.emit(lines, lines.map { b in
                "#\(b.message.sequenceOrder) \(b.message.role.rawValue)  added \(b.added.commit.prefix(10)) \(b.added.author) \(b.added.time)"
                    + (b.lastEdited.map { "  edited \($0.commit.prefix(10)) \($0.author) \($0.time)" } ?? "")
                    + "  \(b.message.content.split(separator: "\n").first.map { String($0.prefix(50)) } ?? "")"
            }.joined(separator: "\n"))
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "A chat's transcript as Markdown or JSON.")
    @OptionGroup var global: GlobalOptions
    @Argument var chatID: String
    @Option(help: "markdown or json (default: markdown, json with --json).") var format: String?
    @Option var at: String?

    func run() throws {
        let f = try validated(global) { () -> ExportFormat in
            let f = try ExportFormat.parse(format ?? (global.json ? "json" : "markdown"), field: "format")
            if global.json && f != .json { throw ChatSyncError.invalid(field: "format", rule: "--json prints JSON; give --format json or leave --format out") }
            return f
        }
        try global.run { store in
            let text = try store.export(chatID: chatID, format: f, at: at)
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}

struct TextconvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "textconv",
        abstract: "Print a stored document as readable text (git's diff.chatsync.textconv).",
        discussion: """
        chatsync init and clone set this up. In a clone made with plain git clone:
          git config diff.chatsync.textconv "chatsync textconv"
          echo '*.json diff=chatsync' >> .git/info/attributes
        """)
    @Argument var file: String

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else {
            FileHandle.standardError.write(Data("chatsync: error: cannot read \(file)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardOutput.write(Data(Textconv.render(data).utf8))
    }
}

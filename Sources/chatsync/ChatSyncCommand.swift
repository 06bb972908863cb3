import ArgumentParser
import ChatSync
import Foundation

@main
struct ChatSyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chatsync",
        abstract: "AI-assistant chat sessions, chats and missions as JSON documents in git.",
        discussion: """
        Every change is one git commit. The store is a git repository whose work tree holds one
        pretty-printed JSON file per document. See README.md and Store/FORMAT.md.
        """,
        subcommands: [
            InitCommand.self, ServeCommand.self, SessionCommand.self, ChatCommand.self, MessageCommand.self,
            MissionCommand.self, HopCommand.self, StepCommand.self, AssetCommand.self,
            CloneCommand.self, RemoteCommand.self, PullCommand.self, PushCommand.self, SyncCommand.self, ConflictsCommand.self,
            WatchCommand.self, LogCommand.self, DiffCommand.self, ShowCommand.self, BlameCommand.self, ExportCommand.self,
            TextconvCommand.self, VerifyCommand.self, CompactCommand.self,
        ]
    )

    /// Runs the command. Arguments that do not parse are bad input like any other: exit code 1
    /// (not ArgumentParser's 64) and, with `--json`, the error as JSON naming the option. Errors
    /// of the command itself are its own (it reports them and exits 1).
    static func main() async {
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }  // --help, --version
            let message = message(for: error)
            if CommandLine.arguments.contains("--json") {
                var body: [String: JSONValue] = ["code": .string("invalid_input"), "message": .string(message)]
                if let field = usageField(message) { body["field"] = .string(field) }
                FileHandle.standardError.write(Data((JSONValue.object(["error": .object(body)]).compactText + "\n").utf8))
            } else {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            }
            Foundation.exit(1)
        }
        do {
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }

    /// The option or argument a usage error names (`… for '--limit <limit>'` → `limit`).
    static func usageField(_ message: String) -> String? {
        let quoted = message.split(separator: "'", omittingEmptySubsequences: false).enumerated()
            .filter { $0.offset % 2 == 1 }.map(\.element)
        guard let name = quoted.last(where: { $0.hasPrefix("-") || $0.hasPrefix("<") }) ?? quoted.first else { return nil }
        let field = name.prefix { $0 != " " && $0 != "=" }.drop { $0 == "-" || $0 == "<" }.prefix { $0 != ">" }
        return field.isEmpty ? nil : String(field)
    }
}


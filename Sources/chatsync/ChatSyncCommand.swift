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
}


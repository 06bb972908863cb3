import ArgumentParser
import ChatSync
import Foundation
import GitKit

/// Options of commands that talk to a remote.
struct NetworkOptions: ParsableArguments {
    @Option(help: "Attempts for network errors worth retrying (1 s doubling to a 10 s cap).") var attempts = 3
    @Option(help: "The first retry's delay, in seconds.") var retryDelay = 1.0

    func syncOptions(_ global: GlobalOptions, allowUnrelated: Bool = false) throws -> SyncOptions {
        guard attempts >= 1 else { throw ChatSyncError.invalid(field: "attempts", rule: "must be ≥ 1") }
        guard retryDelay >= 0, retryDelay <= 3600 else { throw ChatSyncError.invalid(field: "retry-delay", rule: "must be from 0 to 3600 seconds") }
        var o = SyncOptions(retry: RetryPolicy(attempts: attempts, initialDelay: retryDelay, maxDelay: max(10, retryDelay)),
                            allowUnrelatedHistories: allowUnrelated)
        if isatty(2) == 1 && !global.json { o.progress = Progress.show }
        return o
    }
}

/// Progress on stderr (only when it is a terminal).
enum Progress {
    @Sendable static func show(_ p: TransferProgress) {
        let verb: String
        switch p.phase {
        case .receiving: verb = "receiving objects"
        case .indexing: verb = "indexing objects"
        case .sending: verb = "sending objects"
        }
        let kib = Double(p.bytes) / 1024
        let line = "\r\(verb): \(p.objects)/\(p.totalObjects), \(String(format: "%.1f", kib)) KiB"
        FileHandle.standardError.write(Data(line.utf8))
        if p.objects == p.totalObjects { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

func describe(_ r: SyncReport) -> String {
    var parts = ["\(r.remote): fetched \(r.fetchedCommits) commit(s)"]
    if r.fastForward { parts.append("fast-forwarded \(r.mergedCommits)") }
    else if let m = r.mergeCommit { parts.append("merged \(r.mergedCommits) in \(m.prefix(10))") }
    else { parts.append("nothing to merge") }
    parts.append("pushed \(r.pushedCommits)")
    if r.conflicts > 0 { parts.append("\(r.conflicts) conflict(s) recorded (see `chatsync conflicts`)") }
    return parts.joined(separator: ", ") + "; HEAD \(r.head?.prefix(10) ?? "-")"
}

struct CloneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "clone", abstract: "Make a store from a remote one (as `origin`).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var network: NetworkOptions
    @Argument(help: "A path or file:// URL to a bare repository, git://, ssh:// or https://.") var url: String

    func run() throws {
        let sync = try validated(global) { try network.syncOptions(global) }
        do {
            let (path, _) = global.storeLocation()
            let store = try Store.clone(from: url, to: path, options: try global.storeOptions(), sync: sync)
            defer { store.close() }
            try store.configureReadableDiffs(textconvCommand: textconvCommand())
            let head = try store.head()?.hex ?? "-"
            try global.emit(["store": store.path, "head": head, "origin": url], "cloned \(url) into \(store.path) (HEAD \(head.prefix(10)))")
        } catch {
            global.report(error)
            throw ExitCode(1)
        }
    }
}

struct RemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remote", abstract: "The remotes the store syncs with.",
        subcommands: [Add.self, List.self, Remove.self], defaultSubcommand: List.self)

    struct Add: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        @Argument var url: String
        func run() throws {
            try global.run { store in try store.addRemote(name, url: url); try global.emit(["name": name, "url": url], "added remote \(name) \(url)") }
        }
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        func run() throws {
            try global.run { store in
                let remotes = try store.remotes()
                try global.emit(remotes.map { ["name": $0.name, "url": $0.url] }, remotes.map { "\($0.name)\t\($0.url)" }.joined(separator: "\n"))
            }
        }
    }

    struct Remove: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var name: String
        func run() throws {
            try global.run { store in try store.removeRemote(name); try global.emit(["removed": name], "removed remote \(name)") }
        }
    }
}

struct PullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pull", abstract: "Fetch from a remote and merge (per document, per message).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var network: NetworkOptions
    @Argument var remote = "origin"
    @Flag(help: "Merge a store with no common history (two stores initialised separately).") var allowUnrelatedHistories = false
    func run() throws {
        let o = try validated(global) { try network.syncOptions(global, allowUnrelated: allowUnrelatedHistories) }
        try global.run { store in let r = try store.pull(remote, options: o); try global.emit(r, describe(r)) }
    }
}

struct PushCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "push", abstract: "Push the store's branch to a remote.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var network: NetworkOptions
    @Argument var remote = "origin"
    func run() throws {
        let o = try validated(global) { try network.syncOptions(global) }
        try global.run { store in let r = try store.push(remote, options: o); try global.emit(r, describe(r)) }
    }
}

struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sync", abstract: "Pull, then push (again, if the remote moved meanwhile).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var network: NetworkOptions
    @Argument var remote = "origin"
    @Flag(help: "Merge a store with no common history.") var allowUnrelatedHistories = false
    func run() throws {
        let o = try validated(global) { try network.syncOptions(global, allowUnrelated: allowUnrelatedHistories) }
        try global.run { store in let r = try store.sync(remote, options: o); try global.emit(r, describe(r)) }
    }
}

struct ConflictsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "conflicts", abstract: "Conflicts recorded by merges.",
        subcommands: [List.self, Show.self, Resolve.self], defaultSubcommand: List.self)

    static func line(_ c: ConflictRecord) -> String {
        "\(c.id)  \(c.status.rawValue)  \(c.kind.rawValue)  \(c.documentType.rawValue) \(c.documentID)  \(c.field): kept \(c.chosen?.compactText ?? "(absent)"), set aside \(c.other?.compactText ?? "(absent)")"
    }

    struct List: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Only open conflicts.") var open = false
        func run() throws {
            try global.run { store in
                let list = try store.conflicts(includeResolved: !open)
                try global.emit(list, list.isEmpty ? "no conflicts" : list.map(ConflictsCommand.line).joined(separator: "\n"))
            }
        }
    }

    struct Show: ParsableCommand {
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        func run() throws {
            try global.run { store in
                let c = try store.conflict(id)
                let text = """
                conflict \(c.id) (\(c.status.rawValue)\(c.resolution.map { ", \($0.rawValue)" } ?? ""))
                  what:  \(c.kind.rawValue) in \(c.documentType.rawValue) \(c.documentID), field \(c.field)
                  where: \(c.path)
                  when:  \(c.createdAt)
                  base:  \(c.base?.compactText ?? "(absent)")
                  kept (ours):         \(c.chosen?.compactText ?? "(absent)")   from \(c.chosenCommit.prefix(10))
                  set aside (theirs):  \(c.other?.compactText ?? "(absent)")   from \(c.otherCommit.prefix(10))
                """
                try global.emit(c, text)
            }
        }
    }

    struct Resolve: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Settle a conflict with a commit.",
            discussion: "--take ours keeps the value the merge kept; --take theirs puts back the value it set aside; --value sets a JSON value.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option(help: "ours or theirs.") var take: String?
        @Option(help: "A JSON value for the field.") var value: String?
        func run() throws {
            let (resolution, v) = try validated(global) { () -> (ConflictResolution, JSONValue?) in
                switch (take, value) {
                case (let t?, nil):
                    guard t == "ours" || t == "theirs" else { throw ChatSyncError.invalid(field: "take", rule: "must be ours or theirs, got \"\(t)\"") }
                    return (ConflictResolution(rawValue: t)!, nil)
                case (nil, let text?):
                    return (.value, try JSONValue.parse(text, field: "value"))
                default:
                    throw ChatSyncError.invalid(field: "take", rule: "give either --take ours|theirs or --value JSON")
                }
            }
            try global.run { store in
                let c = try store.resolveConflict(id, take: resolution, value: v)
                try global.emit(c, ConflictsCommand.line(c))
            }
        }
    }
}

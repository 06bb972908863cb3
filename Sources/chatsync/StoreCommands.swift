import ArgumentParser
import ChatSync
import Foundation

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", abstract: "Create a store (or check an existing one).",
        discussion: "With --samples, loads Samples/sample-data.json (or --samples-file) in one commit.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Load the sample sessions, chats, missions and assets.") var samples = false
    @Option(help: "A sample bundle to load instead of Samples/sample-data.json.") var samplesFile: String?

    func run() throws {
        // The samples are read before anything is made: a bad --samples-file creates no store.
        let bundle: (data: Data, path: String)? = try validated(global) {
            guard samples || samplesFile != nil else { return nil }
            guard let path = samplesFile ?? Self.findSamples() else {
                throw ChatSyncError.invalid(field: "samples-file", rule: "Samples/sample-data.json was not found next to this program; give --samples-file PATH")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ChatSyncError.invalid(field: "samples-file", rule: "cannot read \(path)")
            }
            return (data, path)
        }
        let path = global.storeLocation().path
        let folderExisted = FileManager.default.fileExists(atPath: path)
        let storeExisted = FileManager.default.fileExists(atPath: path + "/.git")
        try global.run(create: true) { store in
            var loaded = 0
            if let bundle {
                do {
                    loaded = try store.load(bundle.data, name: "samples")
                } catch {
                    // Samples that break the rules leave no half-made store behind.
                    if !storeExisted {
                        store.close()
                        if folderExisted {
                            for name in [".git", "chatsync.json"] { try? FileManager.default.removeItem(atPath: store.path + "/" + name) }
                        } else {
                            try? FileManager.default.removeItem(atPath: store.path)
                        }
                    }
                    throw error
                }
            }
            try store.configureReadableDiffs(textconvCommand: textconvCommand())
            let head = try store.head()?.hex ?? "-"
            try global.emit(["store": store.path, "head": head, "loaded": "\(loaded)"],
                            "store \(store.path) ready (HEAD \(head.prefix(10)))" + (loaded > 0 ? "; loaded \(loaded) sample documents" : ""))
        }
    }

    /// Looks for Samples/sample-data.json: $CHATSYNC_SAMPLES, the current folder, then the folders above this program.
    static func findSamples() -> String? {
        let fm = FileManager.default
        if let env = ProcessInfo.processInfo.environment["CHATSYNC_SAMPLES"], fm.fileExists(atPath: env) { return env }
        var candidates = [fm.currentDirectoryPath]
        var dir = URL(fileURLWithPath: (try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<6 { candidates.append(dir.path); dir = dir.deletingLastPathComponent() }
        return candidates.map { $0 + "/Samples/sample-data.json" }.first { fm.fileExists(atPath: $0) }
    }
}

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "log", abstract: "The commits that touched the store (or one chat, session or mission), newest first.")
    @OptionGroup var global: GlobalOptions
    @Option(name: .short, help: "How many commits.") var n: Int = 20
    @Option var chat: String?
    @Option var session: String?
    @Option var mission: String?

    func run() throws {
        let target = try validated(global) { () -> HistoryTarget? in
            let given = [chat.map(HistoryTarget.chat), session.map(HistoryTarget.session), mission.map(HistoryTarget.mission)].compactMap { $0 }
            guard given.count <= 1 else { throw ChatSyncError.invalid(field: "chat", rule: "give one of --chat, --session, --mission") }
            return given.first
        }
        try global.run { store in
            let entries = try store.history(of: target, limit: n)
            try global.emit(entries, entries.map { "\($0.commit.prefix(10))  \($0.time)  \($0.author)  \($0.summary)" }.joined(separator: "\n"))
        }
    }
}

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify",
        abstract: "Check the store's integrity: format, every document valid, references whole, sequence numbers gap-free.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try global.run { store in
            let report = try store.verify()
            let counts = report.documents.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            try global.emit(report, report.ok
                ? "ok: \(counts.isEmpty ? "no documents" : counts) at \(report.commit?.prefix(10) ?? "-")"
                : "\(report.problems.count) problem(s):\n" + report.problems.map { "  \($0)" }.joined(separator: "\n"))
            if !report.ok { throw ExitCode(1) }
        }
    }
}

struct CompactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compact",
        abstract: "Pack everything into one pack with deltas and remove what it replaces (safe while others read and write).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Keep packs and loose objects younger than this many seconds (a writer may still need them).") var grace: Double = 60

    func run() throws {
        try validated(global) { if grace < 0 { throw ChatSyncError.invalid(field: "grace", rule: "must be ≥ 0") } }
        try global.run { store in
            let r = try store.compact(grace: grace)
            try global.emit(r, "packs \(r.packsBefore) → \(r.packsAfter), loose objects \(r.looseObjectsBefore) → \(r.looseObjectsAfter), \(r.bytesBefore / 1024) KiB → \(r.bytesAfter / 1024) KiB")
        }
    }
}

import ArgumentParser
import ChatSync
import Dispatch
import Foundation

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch",
        abstract: "Print every change as one JSON line: this process's, other processes', hand edits, and syncs.",
        discussion: """
        Each line is a change event (see Store/FORMAT.md, "Change events"). With --since CURSOR it
        first replays every change after that event's "cursor" (COMMIT:N), or after all the changes
        of a COMMIT, then continues live; keep the "cursor" of the last event you handled and pass
        it again to miss nothing and see nothing twice. JSON files edited by hand in the store are validated and
        committed; invalid ones give an error event and are left as they are. Stops on SIGINT or SIGTERM.
        """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Replay the changes after this event cursor (COMMIT:N) or commit first.") var since: String?
    @Option(help: "Sync with this remote periodically.") var sync: String?
    @Option(help: "Seconds between syncs.") var interval: Double = 60
    @Flag(help: "Do not watch the work tree for hand edits.") var noWorkTree = false

    func run() async throws {
        var options = WatchOptions()
        try validated(global) {
            if sync != nil && !(interval >= 1 && interval <= 31_536_000) {
                throw ChatSyncError.invalid(field: "interval", rule: "must be from 1 second to a year, got \(interval)")
            }
            if sync == nil && interval != 60 { throw ChatSyncError.invalid(field: "interval", rule: "goes with --sync REMOTE") }
        }
        options.syncRemote = sync
        options.syncInterval = interval
        options.workTree = !noWorkTree
        let store: Store
        do { store = try global.openStore() } catch { global.report(error); throw ExitCode(1) }
        if let since {
            do { _ = try store.watchCursor(since) } catch { global.report(error); store.close(); throw ExitCode(1) }
        }
        if let sync {
            do {
                guard try store.remotes().contains(where: { $0.name == sync }) else { throw ChatSyncError.notFound(kind: "remote", id: sync) }
            } catch { global.report(error); store.close(); throw ExitCode(1) }
        }
        // Stop cleanly on SIGINT and SIGTERM: end the stream, close the store (its work tree catches up).
        let task = Task {
            for try await event in store.watch(since: since, options: options) {
                FileHandle.standardOutput.write(Data((event.jsonLine + "\n").utf8))
            }
        }
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { task.cancel() }
            s.resume()
            return s
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            try await task.value
        } catch is CancellationError {
        } catch {
            global.report(error)
            store.close()
            throw ExitCode(1)
        }
        store.close()
    }
}

import ArgumentParser
import ChatSync
import ChatSyncServer
import Foundation
import Hummingbird
import Logging

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve",
        abstract: "Serve the store over HTTP: the apps' routes under /api and a live change feed.",
        discussion: """
        Routes are described in Store/openapi.json (also served at /api/openapi.json). With --token
        (or $CHATSYNC_TOKEN) every request needs `Authorization: Bearer TOKEN`; without one the server
        listens on a loopback address only. Stops on SIGINT or SIGTERM.
        """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The address to listen on.") var host = "127.0.0.1"
    @Option(help: "The port (0: any free port; the URL printed says which).") var port = 8080
    @Option(help: "Require this bearer token (default: $CHATSYNC_TOKEN).") var token: String?

    func run() async throws {
        var config = ServerConfiguration(host: host, port: port,
                                         token: token ?? ProcessInfo.processInfo.environment["CHATSYNC_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        do {
            config.maxBodyBytes = max(4 << 20, try global.storeOptions().limits.maxContentBytes * 2 + (64 << 10))
            try config.validate()
        } catch { global.report(error); throw ExitCode(1) }
        let store: Store
        do { store = try global.openStore() } catch { global.report(error); throw ExitCode(1) }
        defer { store.close() }
        var logger = Logger(label: "chatsync")
        logger.logLevel = .info
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let app = try buildApplication(store: store, configuration: config, logger: logger) { boundPort in
            // The first line says where: tests and scripts read it.
            FileHandle.standardOutput.write(Data("chatsync serving \(store.path) at http://\(shownHost):\(boundPort)\n".utf8))
        }
        do {
            try await app.runService()
        } catch {
            global.report(error)
            throw ExitCode(1)
        }
    }
}

import ChatSync
import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore

/// How the server runs.
public struct ServerConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    public var port: Int = 8080
    /// When set, every route needs `Authorization: Bearer TOKEN`.
    public var token: String?
    /// The largest request body, in bytes (more is a 413).
    public var maxBodyBytes: Int = 4 << 20
    public init(host: String = "127.0.0.1", port: Int = 8080, token: String? = nil) {
        self.host = host; self.port = port; self.token = token
    }

    /// Refuses to listen beyond this machine without a token.
    public func validate() throws {
        if let token, token.isEmpty { throw ChatSyncError.invalid(field: "token", rule: "must not be empty") }
        guard (1...65535).contains(port) || port == 0 else { throw ChatSyncError.invalid(field: "port", rule: "must be 0…65535") }
        if token == nil && !Self.isLoopback(host) {
            throw ChatSyncError.invalid(field: "host", rule: "\(host) is not a loopback address: give --token to listen beyond this machine")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

/// The request context of every route (WebSocket-capable, so one router serves the feed too).
public struct AppContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<AppContext>
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
    }
}

/// Everything the routes share.
final class ServerState: Sendable {
    let store: Store
    let configuration: ServerConfiguration
    let feed: Feed

    init(store: Store, configuration: ServerConfiguration) {
        self.store = store
        self.configuration = configuration
        feed = Feed(store: store)
    }
}

/// Builds the router: every route of the API under `/api`. Tests call this too.
public func buildRouter(store: Store, configuration: ServerConfiguration = ServerConfiguration()) -> Router<AppContext> {
    let state = ServerState(store: store, configuration: configuration)
    let router = Router(context: AppContext.self, options: .autoGenerateHeadEndpoints)  // HEAD for every GET (RFC 9110)
    router.add(middleware: ErrorAndLogMiddleware())
    if let token = configuration.token { router.add(middleware: BearerTokenMiddleware(token: token)) }
    let api = router.group("api")
    MetaRoutes(state).register(api)
    SessionRoutes(state).register(api)
    ChatRoutes(state).register(api)
    MissionRoutes(state).register(api)
    AssetRoutes(state).register(api)
    FeedRoutes(state).register(api)
    return router
}

/// Builds the application: the router, served with WebSocket upgrade, on the configured address.
public func buildApplication(store: Store, configuration: ServerConfiguration = ServerConfiguration(), logger: Logger? = nil,
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
    try configuration.validate()
    var log = logger ?? Logger(label: "chatsync.server")
    if logger == nil { log.logLevel = .info }
    let router = buildRouter(store: store, configuration: configuration)
    return Application(
        router: router,
        server: .http1WebSocketUpgrade(webSocketRouter: router),
        configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port), serverName: "chatsync"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: log
    )
}

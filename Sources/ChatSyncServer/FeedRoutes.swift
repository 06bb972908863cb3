import ChatSync
import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import Synchronization

/// The change feed: every client gets its own watch stream (replay from `since`, then live),
/// plus the error events of the one watch that commits hand edits to the work tree.
final class Feed: Sendable {
    let store: Store
    private let subscribers = Mutex<[UUID: AsyncStream<ChangeEvent>.Continuation]>([:])

    init(store: Store) {
        self.store = store
        // One watch commits JSON files edited by hand in the store's work tree; its refused
        // edits are passed to every client (its commits reach them through their own streams).
        let stream = store.watch(options: WatchOptions())
        Task.detached { [weak self] in
            do {
                for try await event in stream where event.kind == .error {
                    guard let self else { return }
                    self.subscribers.withLock { subs in for c in subs.values { c.yield(event) } }
                }
            } catch {}
        }
    }

    /// Every change after `since` (a commit), then every change as it happens.
    func stream(since: String?) -> AsyncThrowingStream<ChangeEvent, Error> {
        AsyncThrowingStream { continuation in
            let id = UUID()
            let (errors, errorsContinuation) = AsyncStream<ChangeEvent>.makeStream()
            subscribers.withLock { $0[id] = errorsContinuation }
            var options = WatchOptions()
            options.workTree = false
            let changes = store.watch(since: since, options: options)
            let forwardChanges = Task {
                do {
                    for try await e in changes { continuation.yield(e) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            let forwardErrors = Task { for await e in errors { continuation.yield(e) } }
            continuation.onTermination = { [weak self] _ in
                forwardChanges.cancel()
                forwardErrors.cancel()
                _ = self?.subscribers.withLock { $0.removeValue(forKey: id) }
            }
        }
    }

    /// Checks a cursor before a stream starts, so a bad one is a 400, not a broken stream.
    func checkCursor(_ since: String?) async throws {
        guard let since else { return }
        _ = try await blocking { [store] in try store.watchCursor(since) }
    }
}

/// `GET /api/watch?since=COMMIT` (WebSocket) and `GET /api/changes?since=COMMIT` (Server-Sent
/// Events): the watch loop's events, one JSON object per frame or `data:` line.
struct FeedRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let feed = state.feed
        api.ws("watch", shouldUpgrade: { request, _ in
            // The cursor first: a refused handshake is an empty 400 (the WebSocket layer's), so
            // a plain GET of the same URL is how a client reads which field was wrong.
            try await feed.checkCursor(request.query("since"))
            // A plain GET (no upgrade asked for) would get an empty 200.
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                throw APIError(.badRequest, code: "invalid_input",
                               message: "/api/watch is a WebSocket: ask for Upgrade: websocket, or read /api/changes (Server-Sent Events)",
                               field: "Upgrade")
            }
            return .upgrade([:])
        }, onUpgrade: { inbound, outbound, context in
            let since = context.request.uri.queryParameters.get("since")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for try await _ in inbound {} }
                group.addTask {
                    for try await event in feed.stream(since: since) { try await outbound.write(.text(event.jsonLine)) }
                }
                try await group.next()
                group.cancelAll()
            }
        })
        api.get("changes") { request, _ -> Response in
            // A reconnecting EventSource sends its URL again (with the since it started from) and
            // the last event's id: the id is where it is.
            let since = request.headers.first(where: { $0.name.canonicalName == "last-event-id" })?.value ?? request.query("since")
            try await feed.checkCursor(since)
            let events = feed.stream(since: since)
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    try await request.body.consumeWithCancellationOnInboundClose { _ in
                        try await writer.write(ByteBuffer(string: ": chatsync change feed\n\n"))
                        for try await event in events {
                            var chunk = ""
                            // The cursor, or the commit for a one-step report (a reset, a switch of lines).
                            if let id = event.cursor ?? event.commit { chunk += "id: \(id)\n" }
                            chunk += "data: \(event.jsonLine)\n\n"
                            try await writer.write(ByteBuffer(string: chunk))
                        }
                    }
                    try await writer.finish(nil)
                })
        }
    }
}

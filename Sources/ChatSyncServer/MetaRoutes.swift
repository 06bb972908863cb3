import ChatSync
import Foundation
import Hummingbird

/// Health, the OpenAPI document and its schemas, sync, conflicts.
struct MetaRoutes {
    let state: ServerState
    init(_ state: ServerState) { self.state = state }

    func register(_ api: RouterGroup<AppContext>) {
        let store = state.store
        let limit = state.configuration.maxBodyBytes
        api.get("health") { _, _ -> Response in
            let head = try await blocking { try store.head()?.hex }
            return try json(["status": JSONValue.string("ok"), "store": .string(store.path), "head": head.map { .string($0) } ?? .null,
                             "format_version": .int(Int64(Layout.formatVersion))])
        }
        api.get("openapi.json") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: EmbeddedStore.openAPI)))
        }
        api.get("schemas/{name}") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard let text = EmbeddedStore.schemas[name] else { throw ChatSyncError.notFound(kind: "schema", id: name) }
            return Response(status: .ok, headers: [.contentType: "application/schema+json"], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        api.post("sync") { request, _ -> Response in
            let body = try await Body.read(request, limit: limit, allowEmpty: true).only(["remote"])
            let remote = try body.string("remote") ?? "origin"
            return try json(try await blocking { try store.sync(remote) })
        }
        api.get("conflicts") { request, _ -> Response in
            let status = try request.query("status").map { try ConflictStatus.parse($0, field: "status") }
            let list = try await blocking { try store.conflicts() }
            return try json(list.filter { status == nil || $0.status == status })
        }
    }
}

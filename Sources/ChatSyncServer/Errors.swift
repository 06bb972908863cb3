import ChatSync
import Foundation
import Hummingbird
import NIOCore

/// The error body every route answers with: `{"error": {"code", "message", "field"}}`.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let message: String
    let field: String?

    init(_ status: HTTPResponse.Status, code: String, message: String, field: String? = nil) {
        self.status = status; self.code = code; self.message = message; self.field = field
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var body: [String: JSONValue] = ["code": .string(code), "message": .string(message)]
        if let field { body["field"] = .string(field) }
        let data = JSONValue.object(["error": .object(body)]).compactText
        var headers: HTTPFields = [.contentType: "application/json; charset=utf-8"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: data)))
    }

    /// The status and body for any error a route can meet. Bad input never becomes a 500.
    static func from(_ error: Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as ChatSyncError:
            switch e {
            case .invalid(let field, _): return APIError(.badRequest, code: e.code, message: e.description, field: field)
            case .notFound: return APIError(.notFound, code: e.code, message: e.description)
            case .conflict: return APIError(.conflict, code: e.code, message: e.description)
            case .remote: return APIError(.badGateway, code: e.code, message: e.description)
            case .badStore, .storage: return APIError(.internalServerError, code: e.code, message: e.description)
            }
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, code: "payload_too_large", message: "the request body is larger than the server accepts")
        case let e as HTTPError:
            return APIError(e.status, code: code(for: e.status), message: e.body ?? e.status.reasonPhrase)
        case let e as any HTTPResponseError:
            return APIError(e.status, code: code(for: e.status), message: e.status.reasonPhrase)
        default:
            // A bug of the server's: the whole error goes to the log, a short one to the client.
            return APIError(.internalServerError, code: "internal_error", message: String("\(error)".prefix(300)))
        }
    }

    /// The error code (one of the OpenAPI document's `Error.code` values) for a status.
    static func code(for status: HTTPResponse.Status) -> String {
        switch status.code {
        case 401: return "unauthorized"
        case 404: return "not_found"
        case 405: return "method_not_allowed"
        case 409: return "conflict"
        case 413: return "payload_too_large"
        case 400..<500: return "invalid_input"
        default: return "internal_error"
        }
    }
}

/// Turns every error a route throws into the JSON error body, and logs one line per request
/// (method, path, status, duration) at info level.
struct ErrorAndLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            var e = APIError.from(error)
            var allow: String?
            // A path the API has, asked with a method it does not take: 405 and the methods it does.
            if e.status == .notFound, (error as? HTTPError)?.status == .notFound {
                let methods = RouteTable.methods(forPath: request.uri.path)
                if !methods.isEmpty {
                    allow = methods.joined(separator: ", ")
                    e = APIError(.methodNotAllowed, code: "method_not_allowed",
                                 message: "\(request.method) is not a method of \(request.uri.path); it takes \(allow!)")
                }
            }
            if e.status == .internalServerError { context.logger.error("\(request.method) \(request.uri.path): \(error)") }
            var r = try e.response(from: request, context: context)
            if let allow { r.headers[.allow] = allow }
            response = r
        }
        let ms = Double((ContinuousClock.now - start).components.attoseconds) / 1e15 + Double((ContinuousClock.now - start).components.seconds) * 1000
        context.logger.info("\(request.method) \(request.uri.path) \(response.status.code) \(String(format: "%.1f", ms))ms")
        return response
    }
}

/// Every route needs `Authorization: Bearer TOKEN` (compared in constant time).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]

    init(token: String) { self.token = Array(token.utf8) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // `Bearer TOKEN`, the scheme's name in any case (RFC 9110), spaces after it.
        let header = request.headers[.authorization] ?? ""
        var given: [UInt8] = []
        if let space = header.firstIndex(of: " "), header[..<space].lowercased() == "bearer" {
            given = Array(header[space...].drop { $0 == " " }.utf8)
        }
        guard Self.constantTimeEqual(given, token) else {
            throw APIError(.unauthorized, code: "unauthorized", message: "a valid bearer token is required (Authorization: Bearer TOKEN)")
        }
        return try await next(request, context)
    }

    /// Compares without stopping at the first difference, so the time taken says nothing of the token.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}

/// The API's paths and their methods, from the OpenAPI document the server serves (a test keeps
/// that document equal to the routes).
enum RouteTable {
    static let routes: [(segments: [Substring], methods: [String])] = {
        guard case .object(let doc)? = try? JSONDecoder().decode(JSONValue.self, from: Data(EmbeddedStore.openAPI.utf8)),
              case .object(let paths)? = doc["paths"] else { return [] }
        return paths.map { path, item in
            let methods = item.objectValue.map { Array($0.keys) } ?? []
            var allowed = methods.filter { ["get", "put", "post", "patch", "delete"].contains($0) }.map { $0.uppercased() }
            if allowed.contains("GET") { allowed.append("HEAD") }  // every GET answers HEAD too
            return (path.split(separator: "/"), allowed.sorted())
        }
    }()

    /// The methods of every API path `path` matches (`{name}` matches any one segment).
    static func methods(forPath path: String) -> [String] {
        let parts = path.split(separator: "/")
        var found = Set<String>()
        for route in routes where route.segments.count == parts.count {
            if zip(route.segments, parts).allSatisfy({ $0.hasPrefix("{") || $0 == $1 }) { found.formUnion(route.methods) }
        }
        return found.sorted()
    }
}

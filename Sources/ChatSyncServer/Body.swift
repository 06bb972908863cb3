import ChatSync
import Foundation
import Hummingbird
import NIOCore

/// A JSON request body read as an object, with typed getters that name the field in errors.
struct Body {
    let fields: [String: JSONValue]

    /// Reads and parses the body (at most `limit` bytes: more is a 413).
    static func read(_ request: Request, limit: Int, allowEmpty: Bool = false) async throws -> Body {
        var request = request
        let buffer = try await request.collectBody(upTo: limit)
        if buffer.readableBytes == 0 {
            if allowEmpty { return Body(fields: [:]) }
            throw ChatSyncError.invalid(field: "body", rule: "a JSON object is required")
        }
        let data = Data(buffer.readableBytesView)
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ChatSyncError.invalid(field: "body", rule: "must be valid JSON")
        }
        guard case .object(let o) = value else { throw ChatSyncError.invalid(field: "body", rule: "must be a JSON object") }
        try StrictJSON.check(data)
        return Body(fields: o)
    }

    /// Refuses fields not in `allowed`.
    func only(_ allowed: [String]) throws -> Body {
        for key in fields.keys.sorted() where !allowed.contains(key) {
            throw ChatSyncError.invalid(field: key, rule: "is not accepted here (fields: \(allowed.joined(separator: ", ")))")
        }
        return self
    }

    func string(_ key: String) throws -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        default: throw ChatSyncError.invalid(field: key, rule: "must be a string")
        }
    }

    func requiredString(_ key: String) throws -> String {
        guard let s = try string(key) else { throw ChatSyncError.invalid(field: key, rule: "is required") }
        return s
    }

    func object(_ key: String) throws -> JSONValue? {
        switch fields[key] {
        case nil, .null?: return nil
        case let v? where v.isObject: return v
        default: throw ChatSyncError.invalid(field: key, rule: "must be a JSON object ({...})")
        }
    }

    func any(_ key: String) -> JSONValue? {
        if case .null? = fields[key] { return nil }
        return fields[key]
    }

    func int(_ key: String) throws -> Int? {
        switch fields[key] {
        case nil, .null?: return nil
        case .int(let i)?: return Int(i)
        default: throw ChatSyncError.invalid(field: key, rule: "must be an integer")
        }
    }

    func number(_ key: String) throws -> Double? {
        switch fields[key] {
        case nil, .null?: return nil
        case .int(let i)?: return Double(i)
        case .double(let d)?: return d
        default: throw ChatSyncError.invalid(field: key, rule: "must be a number")
        }
    }

    func bool(_ key: String) throws -> Bool? {
        switch fields[key] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        default: throw ChatSyncError.invalid(field: key, rule: "must be true or false")
        }
    }

    func strings(_ key: String) throws -> [String]? {
        switch fields[key] {
        case nil, .null?: return nil
        case .array(let a)?:
            return try a.map { v in
                guard case .string(let s) = v else { throw ChatSyncError.invalid(field: key, rule: "must be a list of strings") }
                return s
            }
        default: throw ChatSyncError.invalid(field: key, rule: "must be a list of strings")
        }
    }

    func enumValue<E: StringEnum>(_ key: String, _ type: E.Type) throws -> E? {
        try string(key).map { try E.parse($0, field: key) }
    }
}

extension Request {
    /// A query parameter as an integer ≥ 0, naming it when it is not one.
    func queryInt(_ key: String) throws -> Int? {
        guard let raw = uri.queryParameters.get(key) else { return nil }
        guard let v = Int(raw), v >= 0 else { throw ChatSyncError.invalid(field: key, rule: "must be an integer ≥ 0, got \"\(raw.prefix(40))\"") }
        return v
    }

    func query(_ key: String) -> String? { uri.queryParameters.get(key) }
}

/// Runs blocking store work off the concurrency pool (the store's writer waits for durability).
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        BlockingPool.shared.run {
            continuation.resume(with: Result { try body() })
        }
    }
}

/// Threads for store calls, which mostly wait: for their batch to be durable. Swift's
/// concurrency pool has one thread a core, and Dispatch's global queue on Linux runs about as
/// many blocks at once (three here, measured: 16 blocks that sleep 100 ms took 600 ms), so
/// with either only that many requests could be in one batch (group commit). A thread is
/// started when work comes and no idle thread is left for it, up to `limit`; beyond that, work
/// waits its turn.
final class BlockingPool: @unchecked Sendable {
    static let shared = BlockingPool(limit: 64)
    private let limit: Int
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var next = 0
    private var threads = 0
    private var idle = 0

    init(limit: Int) { self.limit = limit }

    func run(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        jobs.append(job)
        // Each job waiting gets an idle thread (woken, perhaps not yet running) or a new one.
        if jobs.count - next > idle && threads < limit {
            threads += 1
            let t = Thread { self.work() }
            t.name = "chatsync-store-\(threads)"
            t.start()
        } else {
            condition.signal()
        }
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while next == jobs.count {
                idle += 1
                condition.wait()
                idle -= 1
            }
            let job = jobs[next]
            next += 1
            if next == jobs.count { jobs.removeAll(keepingCapacity: true); next = 0 }
            condition.unlock()
            job()
        }
    }
}

/// A Codable value as a JSON response with the given status.
func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = try enc.encode(value)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

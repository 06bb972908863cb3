import ChatSync
import ChatSyncServer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GitKit
import Hummingbird
import Logging

// The benchmark: one run, one table, every figure next to its baseline measured in the same
// run (absolute times on shared machines are noise). `--json` prints the rows as JSON;
// `--quick` runs smaller sizes (a smoke test, not for figures).

struct Row: Codable {
    var name: String
    var value: Double
    var unit: String
    var note: String
}

let arguments = CommandLine.arguments.dropFirst()
let asJSON = arguments.contains("--json")
let quick = arguments.contains("--quick")
var rows: [Row] = []

func log(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
@MainActor func record(_ name: String, _ value: Double, _ unit: String, _ note: String = "") {
    rows.append(Row(name: name, value: value, unit: unit, note: note))
    log("  " + pad(name, 64) + " " + pad(String(format: "%.2f", value), 12, right: true) + " " + unit)
}
func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return right ? fill + s : s + fill
}
/// Runs `body` on `n` threads of its own at once (Dispatch's concurrentPerform would use only one per core).
func onThreads(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<n {
        group.enter()
        let t = Thread { body(i); group.leave() }
        t.stackSize = 1 << 20
        t.start()
    }
    group.wait()
}
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

let root = NSTemporaryDirectory() + "chatsync-bench-\(getpid())"
try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
defer { if ProcessInfo.processInfo.environment["BENCH_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) } else { log("kept \(root)") } }
var storeCounter = 0

@MainActor func freshStore(durable: Bool, workTree: Bool = true) throws -> Store {
    storeCounter += 1
    var o = StoreOptions()
    o.durable = durable
    if !workTree { o.workTree = .disabled }
    let env = ProcessInfo.processInfo.environment
    if let m = env["BENCH_MAXPACKS"], let n = Int(m) { o.maxPacks = n }
    if env["BENCH_SYNC_WORKTREE"] != nil { o.workTree = .synchronous }
    if env["BENCH_NO_WORKTREE"] != nil { o.workTree = .disabled }
    return try Store.open(at: "\(root)/store-\(storeCounter)", options: o, create: true)
}

func sh(_ command: String, _ cwd: String) -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    p.currentDirectoryURL = URL(fileURLWithPath: cwd)
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try? p.run()
    p.waitUntilExit()
    return p.terminationStatus
}

/// A bundle of `n` messages for one chat, with increasing times, to build a long chat in one commit.
func bundle(chatID: String, messages n: Int) -> Data {
    let start = Timestamp.now().milliseconds - Int64(n) - 10_000
    var parts: [String] = []
    parts.reserveCapacity(n)
    for i in 0..<n {
        let t = Timestamp(milliseconds: start + Int64(i)).rfc3339
        parts.append(#"{"id":"m\#(i)","chat_id":"\#(chatID)","sequence_order":\#(i + 1),"role":"\#(i % 2 == 0 ? "user" : "assistant")","content":"Message \#(i): a typical line of chat text, about as long as a short reply from an assistant.","message_metadata":{},"created_at":"\#(t)"}"#)
    }
    let created = Timestamp(milliseconds: start - 1).rfc3339
    return Data((#"{"chats":[{"id":"\#(chatID)","user_id":"bench","context_data":{},"created_at":"\#(created)","updated_at":"\#(created)"}],"messages":["# + parts.joined(separator: ",") + "]}").utf8)
}

// `--profile-read`: only read a 10,000-message chat, many times (for a profiler).
if arguments.contains("--profile-read") {
    // BENCH_READ_STORE=DIR reads the first chat of an existing store instead (fresh handles).
    if let dir = ProcessInfo.processInfo.environment["BENCH_READ_STORE"] {
        for _ in 0..<5 {
            let store = try Store.open(at: dir, options: { var o = StoreOptions(); o.durable = false; o.workTree = .disabled; return o }())
            let id = try store.listChats().first!.id
            let t = now()
            let count = try store.listMessages(chatID: id).count
            log("read \(count) messages: \((now() - t) * 1000) ms")
            store.close()
        }
        exit(0)
    }
    let n = Int(ProcessInfo.processInfo.environment["BENCH_READ_N"] ?? "") ?? 10_000
    let store = try bulkStore()
    try store.load(bundle(chatID: "read", messages: n), name: "bench")
    // Packs merged: objects deflated, as in a store written to for a while.
    _ = try store.withRepository { repo in try repo.concatenatePacks(repo.packFiles()) }
    let t = now()
    for _ in 0..<20 { _ = try store.listMessages(chatID: "read") }
    log("read: \((now() - t) / 20 * 1000) ms each")
    exit(0)
}

// `--profile-appends`: only appends from BENCH_WRITERS threads (default 16), BENCH_N in all
// (default 20,000), durable when BENCH_DURABLE is set, into one fresh store (for a profiler).
if arguments.contains("--profile-appends") {
    let env = ProcessInfo.processInfo.environment
    let writers = Int(env["BENCH_WRITERS"] ?? "") ?? 16
    let n = Int(env["BENCH_N"] ?? "") ?? 20_000
    guard writers >= 1, n >= writers else {
        FileHandle.standardError.write(Data("chatsync-bench: BENCH_WRITERS must be at least 1 and BENCH_N at least BENCH_WRITERS (got \(writers), \(n))\n".utf8))
        exit(2)
    }
    let store = try freshStore(durable: env["BENCH_DURABLE"] != nil)
    let chat = try store.createChat(userID: "bench")
    let t = now()
    onThreads(writers) { w in
        var i = w
        while i < n {
            _ = try! store.appendMessage(chatID: chat.id, role: .user, content: "message \(i)")
            i += writers
        }
    }
    log("\(n) appends from \(writers) writers: \(Int(Double(n) / (now() - t))) a second")
    store.close()
    exit(0)
}

/// `BENCH_ONLY=size,group` runs only those sections (names: appends, length, read, sessions, size, group, merge, pull, watch, http).
let only = ProcessInfo.processInfo.environment["BENCH_ONLY"].map { Set($0.split(separator: ",").map(String.init)) }
func want(_ section: String) -> Bool { only?.contains(section) ?? true }

var sqliteRate = 0.0
/// SQLite (WAL, synchronous=FULL, one connection, one transaction per append): sets `sqliteRate`.
@MainActor func measureSQLite(_ file: String, _ label: String) throws {
    let sqlite = try SQLiteBaseline(path: "\(root)/\(file)")
    let q0 = now()
    let count = quick ? 200 : 2000
    for i in 0..<count { sqlite.append(chat: "bench-chat", content: "message \(i)") }
    sqliteRate = Double(count) / (now() - q0)
    record("baseline: SQLite WAL + synchronous=FULL, 1 connection" + label, sqliteRate, "ops/s", "\(count) appends, one transaction each")
}
@MainActor func bulkStore() throws -> Store {
    storeCounter += 1
    var o = StoreOptions(); o.durable = false; o.workTree = .disabled
    return try Store.open(at: "\(root)/store-\(storeCounter)", options: o, create: true)
}
func residentMemoryMB() -> Double {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}
final class PortBox: @unchecked Sendable { var port = 0; let ready = DispatchSemaphore(value: 0) }
func startServer(_ store: Store) throws -> (port: Int, task: Task<Void, Error>) {
    let box = PortBox()
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let app = try buildApplication(store: store, configuration: ServerConfiguration(host: "127.0.0.1", port: 0), logger: logger) { port in
        box.port = port
        box.ready.signal()
    }
    let task = Task.detached { try await app.run() }
    box.ready.wait()
    return (box.port, task)
}
let httpSession: URLSession = {
    let c = URLSessionConfiguration.default
    c.httpMaximumConnectionsPerHost = 32
    return URLSession(configuration: c)
}()
func post(_ url: String, _ body: String) async throws -> Int {
    var r = URLRequest(url: URL(string: url)!)
    r.httpMethod = "POST"
    r.httpBody = Data(body.utf8)
    let (_, response) = try await httpSession.data(for: r)
    return (response as? HTTPURLResponse)?.statusCode ?? 0
}
final class Failures: @unchecked Sendable { let lock = NSLock(); var count = 0 }

/// One keep-alive HTTP/1.1 connection over a blocking socket, for measuring the server
/// rather than a client library (URLSession on Linux took most of the time of a request).
final class RawHTTPConnection {
    private let fd: Int32
    private var pending: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard fd >= 0, connected == 0 else { throw ChatSyncError.storage("connect to port \(port): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Sends a POST with a JSON body; returns the response's status (its body is read and dropped).
    func post(_ path: String, _ body: String) throws -> Int {
        let request = Array("POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ChatSyncError.storage("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        // The head, then as many body bytes as Content-Length says.
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while true {
            if headEnd == nil, let r = pending.firstRange(of: separator) { headEnd = r.upperBound }
            if let end = headEnd {
                let head = String(decoding: pending[..<end], as: UTF8.self)
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                if pending.count >= end + length {
                    pending.removeFirst(end + length)
                    let status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
                    return status
                }
            }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ChatSyncError.storage("recv: connection closed") }
            pending += chunk[..<n]
        }
    }
}
let appendCount = Int(ProcessInfo.processInfo.environment["BENCH_APPENDS"] ?? "") ?? (quick ? 100 : 1000)
let baselineCount = quick ? 20 : 100

log("chatsync benchmark (\(quick ? "quick" : "full") run); rows as they are measured:")

/// Appends `n` messages from 16 threads (group commit keeps the setup quick).
func appendMany(_ store: Store, _ chatID: String, _ n: Int, _ label: String, realistic: Bool = false, text: (@Sendable (Int) -> String)? = nil) {
    onThreads(16) { w in
        var i = w
        while i < n {
            let content = text?(i) ?? (realistic ? reply(i) : "\(label) \(i)")
            _ = try! store.appendMessage(chatID: chatID, role: i % 2 == 0 ? .user : .assistant, content: content)
            i += 16
        }
    }
}

/// About 600 bytes of text that does not repeat from message to message: words drawn at
/// random (the same for the same `i`) from 32 English function words and 4,096 made-up words
/// of 2 to 9 letters. zlib takes it to about 64%, as it does 600-byte English paragraphs
/// (50–67% for this README's).
func prose(_ i: Int) -> String {
    var state = UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15 | 1
    func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
    var text = ""
    while text.utf8.count < 600 {
        // Some words far more often than others, as in English: two in five are function
        // words, the rest favour the start of the vocabulary (the least of three draws).
        let n = UInt64(vocabulary.count)
        let word = next() % 5 < 2 ? functionWords[Int(next() % UInt64(functionWords.count))]
                                  : vocabulary[Int(min(next() % n, next() % n, next() % n))]
        text += text.isEmpty ? word.capitalized : (next() % 12 == 0 ? ". " + word.capitalized : " " + word)
    }
    return text + "."
}
let functionWords = ["the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by",
                     "this", "are", "or", "from", "at", "which", "but", "not", "have", "an", "they", "you", "we", "can", "if", "so"]
let vocabulary: [String] = {
    var state: UInt64 = 0x2545_F491_4F6C_DD1D
    func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
    let letters = Array("etaoinshrdlucmfwypvbgkjqxz")
    return (0..<4096).map { _ in
        let length = 2 + Int(next() % 8)
        // Common letters more often, as in English.
        return String((0..<length).map { _ in letters[Int(min(next() % 32, next() % 32) % 26)] })
    }
}()

/// A reply of the size and kind an assistant writes (about 700 bytes of prose, varied).
func reply(_ i: Int) -> String {
    let openings = ["Sure — here is how I would approach it.", "Good question.", "Let me break this down.", "Here is a summary of the data."]
    let bodies = ["The quarterly figures show revenue growing in the north region while costs stayed flat, so the margin improved by roughly two points.",
                  "First, load the CSV into a dataframe, then group by region and month, and finally plot the totals as a stacked bar chart.",
                  "The error comes from a missing column: the export renamed `customer_id` to `client`, so the join silently produced no rows.",
                  "If you want to compare the two periods fairly, normalise by the number of working days in each month before computing the ratio."]
    var text = openings[i % 4] + " " + bodies[(i / 4) % 4] + "\n\n"
    text += "Step \(i % 7 + 1): " + bodies[(i + 1) % 4] + " " + bodies[(i / 3 + 2) % 4] + "\n\n"
    text += "Let me know if you want the chart split by product line (message \(i))."
    return text
}

if want("appends") {
// 1. Appends, one commit each: chatsync (not durable, durable) vs the git command driven by a
// script. Durable appends take turns with libgit2 used the plain way (below), three rounds each.
var plainRates: [Double] = [], durableRates: [Double] = []
do {
    let store = try freshStore(durable: false)
    let chat = try store.createChat(userID: "bench")
    let t0 = now()
    for i in 0..<appendCount { _ = try store.appendMessage(chatID: chat.id, role: .user, content: "message \(i)") }
    let rate = Double(appendCount) / (now() - t0)
    record("appends/s, 1 writer, one commit each, no fsync", rate, "ops/s", "\(appendCount) appends")
    store.close()
}
do {
    let store = try freshStore(durable: true)
    let chat = try store.createChat(userID: "bench")
    GitRuntime.setFsync(true)
    let plain = try PlainLibgit2Baseline(path: "\(root)/plain-libgit2.git")
    var n = 0
    for _ in 0..<(quick ? 1 : 3) {
        let t0 = now()
        for i in 0..<appendCount { _ = try store.appendMessage(chatID: chat.id, role: .user, content: "message \(i)") }
        durableRates.append(Double(appendCount) / (now() - t0))
        let p0 = now()
        for i in 0..<baselineCount * 2 { n += 1; try plain.append(chat: "bench-chat", content: "message \(i)", n: n) }
        plainRates.append(Double(baselineCount * 2) / (now() - p0))
    }
    store.close()
    record("appends/s, 1 writer, one commit each, durable (fsync)", median(durableRates), "ops/s",
           "median of \(durableRates.count) × \(appendCount) appends: " + durableRates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
}

let gitDir = "\(root)/git-baseline"
try FileManager.default.createDirectory(atPath: gitDir, withIntermediateDirectories: true)
_ = sh("git init -q -b main && git config user.name bench && git config user.email bench@localhost && mkdir -p messages", gitDir)
let g0 = now()
for i in 0..<baselineCount {
    let file = "messages/m\(i).json"
    try Data(#"{"id": "m\#(i)", "content": "message \#(i)", "sequence_order": \#(i + 1)}"#.utf8).write(to: URL(fileURLWithPath: gitDir + "/" + file))
    _ = sh("git add \(file) && git commit -q -m 'add message \(i)'", gitDir)
}
let gitRate = Double(baselineCount) / (now() - g0)
record("baseline: git command (write file, git add, git commit)", gitRate, "ops/s", "\(baselineCount) appends, git's default fsync")
let nonDurable = rows[0].value
record("chatsync (no fsync) / git command", nonDurable / gitRate, "x", "target ≥ 10")
record("chatsync (durable) / git command", rows[1].value / gitRate, "x", "")

// Baselines for durable appends: libgit2 the plain way (measured in turns with chatsync above),
// and SQLite (WAL, synchronous=FULL).
record("baseline: libgit2 the plain way (loose objects, fsync), 1 writer", median(plainRates), "ops/s",
       "median of \(plainRates.count) × \(baselineCount * 2) appends, in turns with chatsync: " + plainRates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
record("chatsync (durable, 1 writer) / plain libgit2", median(durableRates) / median(plainRates), "x", "target ≥ 3")
try measureSQLite("baseline.sqlite", "")

}

if want("length") {
// 2. Append time against the chat's length (and with many chats). The stores are built with
// one bulk commit and keep no work tree (writing 100,000 files is not what is measured). The
// appends take turns between the stores, so that the machine's ups and downs hit all alike.
var subjects: [(label: String, store: Store, chat: String)] = []
for length in quick ? [100, 2_000] : [100, 10_000, 20_000, 100_000] {
    let store = try bulkStore()
    try store.load(bundle(chatID: "long-\(length)", messages: length), name: "bench")
    subjects.append(("chat of \(length) messages", store, "long-\(length)"))
}
do {
    let chats = quick ? 1_000 : 10_000
    let store = try bulkStore()
    var parts: [String] = []
    let created = Timestamp(milliseconds: Timestamp.now().milliseconds - 100_000).rfc3339
    for i in 0..<chats { parts.append(#"{"id":"c\#(i)","user_id":"bench","context_data":{},"created_at":"\#(created)","updated_at":"\#(created)"}"#) }
    try store.load(Data((#"{"chats":["# + parts.joined(separator: ",") + "]}").utf8), name: "chats")
    subjects.append(("store of \(chats) chats", store, "c7"))
}
var appendTimes = Array(repeating: [Double](), count: subjects.count)
for s in subjects { _ = try s.store.appendMessage(chatID: s.chat, role: .user, content: "warm-up") }  // reads each chat's summary once
for i in 0..<(quick ? 50 : 300) {
    for (k, s) in subjects.enumerated() {
        let t = now()
        _ = try s.store.appendMessage(chatID: s.chat, role: .assistant, content: "reply \(i)")
        appendTimes[k].append(now() - t)
    }
}
let medians = appendTimes.map { median($0) * 1000 }
for (k, s) in subjects.enumerated() { record("append time (median), \(s.label)", medians[k], "ms", "no fsync") }
for (k, s) in subjects.enumerated().dropFirst() {
    let note = s.label.hasSuffix("20000 messages") ? "target ≤ 1.5 (store issue)" : (s.label.hasSuffix("100000 messages") ? "target ≤ 1.5" : "")
    record("append time ratio, \(s.label) / \(subjects[0].label)", medians[k] / medians[0], "x", note)
}
for s in subjects { s.store.close() }
subjects.removeAll()
}

if want("read") {
// 3. Reading a long chat in order (a fresh store handle each time), and the size on disk.
for n in quick ? [2_000] : [10_000, 100_000] {
    let dir: String
    do {
        let store = try bulkStore()
        try store.load(bundle(chatID: "read", messages: n), name: "bench")
        dir = store.path
        store.close()
    }
    func readTimes() throws -> Double {
        var times: [Double] = []
        for _ in 0..<5 {
            let store = try Store.open(at: dir, options: { var o = StoreOptions(); o.durable = false; o.workTree = .disabled; return o }())
            let t = now()
            let msgs = try store.listMessages(chatID: "read")
            times.append(now() - t)
            precondition(msgs.count == n && msgs.last?.sequenceOrder == n)
            store.close()
        }
        return median(times) * 1000
    }
    // As written (one batch: its pack's objects are stored, not deflated), then once the packs
    // are merged (deflated), as they are in a store that has been written to for a while.
    record("read a \(n)-message chat in order, as written (median of 5, fresh handle)", try readTimes(), "ms", "objects stored")
    do {
        let store = try Store.open(at: dir, options: { var o = StoreOptions(); o.durable = false; o.workTree = .disabled; return o }())
        let merged = try store.withRepository { repo in try repo.concatenatePacks(repo.packFiles()) }
        precondition(merged != nil)
        store.close()
    }
    record("read a \(n)-message chat in order, packs merged (median of 5, fresh handle)", try readTimes(), "ms", n >= 100_000 ? "target < 300" : "target < 100")
}
}

if want("sessions") {
// 3b. Sessions of a user by status in a store of 10,000 sessions: the first look builds the
// index from git (every session read once); later looks read only what changed.
do {
    let n = quick ? 1_000 : 10_000
    let store = try bulkStore()
    let created = Timestamp(milliseconds: Timestamp.now().milliseconds - 100_000).rfc3339
    var chats: [String] = [], sessions: [String] = []
    for i in 0..<n {
        chats.append(#"{"id":"c\#(i)","user_id":"u\#(i % 1000)","context_data":{},"created_at":"\#(created)","updated_at":"\#(created)"}"#)
        sessions.append(#"{"id":"s\#(i)","user_id":"u\#(i % 1000)","chat_id":"c\#(i)","status":"\#(i < 1000 ? "active" : "completed")","session_metadata":{},"created_at":"\#(created)","updated_at":"\#(created)","last_activity_at":"\#(created)"}"#)
    }
    try store.load(Data((#"{"chats":["# + chats.joined(separator: ",") + #"],"sessions":["# + sessions.joined(separator: ",") + "]}").utf8), name: "sessions")
    var t = now()
    _ = try store.listSessions(userID: "u7", status: .active)
    record("list a user's active sessions, store of \(n) sessions: first look", (now() - t) * 1000, "ms", "index built from git")
    var later: [Double] = []
    for i in 0..<20 {
        _ = try store.updateSession("s\(i)", patch: ["name": .string("renamed \(i)")])
        t = now()
        _ = try store.listSessions(userID: "u7", status: .active)
        later.append(now() - t)
    }
    record("  after each change (median of 20)", median(later) * 1000, "ms", "only the changed sessions are read")
    t = now()
    _ = try store.read { snap in try snap.shardedDocuments(UserSession.self, in: "sessions") }
    record("  baseline: reading every session document", (now() - t) * 1000, "ms", "what each look cost before the index")
    store.close()
    // The next process (a CLI command, a restarted server) starts from the index the last one saved.
    var next: [Double] = []
    for _ in 0..<5 {
        let reopened = try Store.open(at: store.path, options: store.options)
        t = now()
        _ = try reopened.listSessions(userID: "u7", status: .active)
        next.append(now() - t)
        reopened.close()
    }
    record("  first look in a new process (median of 5)", median(next) * 1000, "ms", "saved index read, then only what matches")
}
}

if want("size") {
do {
    // Size: 100,000 messages appended one commit each would take minutes here; they are
    // appended by 16 writers (group commit: still one commit each) in the full run.
    let n = Int(ProcessInfo.processInfo.environment["BENCH_SIZE"] ?? "") ?? (quick ? 2_000 : 100_000)
    let store = try bulkStore()
    let chat = try store.createChat(userID: "bench")
    let t = now()
    appendMany(store, chat.id, n, "size", realistic: true)
    let appendTime = now() - t
    let raw = try store.documentBytes()
    let before = try store.withRepository { $0.objectDatabaseSize() }
    let c0 = now()
    let report = try store.compact(grace: 0)
    let compactTime = now() - c0
    record("store size on disk, \(n) messages of ~600 bytes (one commit each), before compaction", Double(before) / 1_048_576, "MiB",
           "appended in \(String(format: "%.0f", appendTime)) s by 16 writers")
    record("  after compaction (chatsync compact)", Double(report.bytesAfter) / 1_048_576, "MiB", "compaction took \(String(format: "%.1f", compactTime)) s")
    let (objects, indexBytes) = try store.withRepository { repo in
        (repo.packFiles().reduce(0) { $0 + $1.objectCount },
         repo.packFiles().reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1.indexPath)[.size] as? Int) ?? 0) })
    }
    record("    of which pack indexes (28 bytes an object)", Double(indexBytes) / 1_048_576, "MiB", "\(objects) objects: \(String(format: "%.1f", Double(objects) / Double(n))) a message")
    record("  raw JSON bytes of the documents", Double(raw) / 1_048_576, "MiB", "target: after ≤ raw")
    let path = store.path
    store.close()
    var times: [Double] = []
    for _ in 0..<3 {
        let reader = try Store.open(at: path, options: { var o = StoreOptions(); o.durable = false; o.workTree = .disabled; return o }())
        let t = now()
        let count = try reader.listMessages(chatID: chat.id).count
        times.append(now() - t)
        precondition(count == n)
        reader.close()
    }
    record("  read the \(n)-message chat after compaction (median of 3, fresh handle)", median(times) * 1000, "ms", "deltas cost reads")
}
do {
    // The same with text that does not repeat: the messages above are built from a few
    // sentences, so their deltas against each other are small; real prose's are not.
    let n = quick ? 2_000 : 20_000
    let store = try bulkStore()
    let chat = try store.createChat(userID: "bench")
    appendMany(store, chat.id, n, "prose", text: prose)
    let raw = try store.documentBytes()
    let report = try store.compact(grace: 0)
    record("size after compaction, \(n) messages of ~600 bytes of non-repeating prose", Double(report.bytesAfter) / 1_048_576, "MiB",
           String(format: "raw JSON %.2f MiB: %.2f×; %.0f / %.0f bytes a message", Double(raw) / 1_048_576, Double(report.bytesAfter) / Double(raw),
                  Double(report.bytesAfter) / Double(n), Double(raw) / Double(n)))
    store.close()
}

}

if want("group") {
// 4. Group commit: 16 writers appending at once. The disk's speed here changes from second to
// second, so SQLite and chatsync take turns, three rounds each, and the ratio is of the medians.
func sqliteRound(_ round: Int) throws -> Double {
    let sqlite = try SQLiteBaseline(path: "\(root)/baseline-group-\(round).sqlite")
    let count = quick ? 200 : 2000
    let t0 = now()
    for i in 0..<count { sqlite.append(chat: "bench-chat", content: "message \(i)") }
    return Double(count) / (now() - t0)
}
func groupRound(durable: Bool, workTree: Bool = true) throws -> Double {
    let store = try freshStore(durable: durable, workTree: workTree)
    let chat = try store.createChat(userID: "bench")
    let writers = 16, each = quick ? 20 : 200
    let t0 = now()
    onThreads(writers) { w in
        for i in 0..<each { _ = try! store.appendMessage(chatID: chat.id, role: .user, content: "w\(w) \(i)") }
    }
    let rate = Double(writers * each) / (now() - t0)
    let numbers = try store.listMessages(chatID: chat.id).map(\.sequenceOrder)
    precondition(numbers == Array(1...(writers * each)))
    store.close()
    return rate
}
let rounds = quick ? 1 : 3
var sqliteRates: [Double] = [], durableRates: [Double] = [], bareRates: [Double] = []
for round in 0..<rounds {
    sqliteRates.append(try sqliteRound(round))
    durableRates.append(try groupRound(durable: true))
    bareRates.append(try groupRound(durable: true, workTree: false))
}
let fast = try groupRound(durable: false)
let each = (quick ? 20 : 200) * 16
record("baseline: SQLite WAL + synchronous=FULL, 1 connection (taking turns)", median(sqliteRates), "ops/s",
       "median of \(rounds): " + sqliteRates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
record("appends/s, 16 concurrent writers, one commit each, no fsync", fast, "ops/s", "\(each) appends")
record("appends/s, 16 concurrent writers, one commit each, durable", median(durableRates), "ops/s",
       "median of \(rounds) × \(each) appends: " + durableRates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
record("chatsync (durable, 16 writers) / SQLite (1 connection)", median(durableRates) / median(sqliteRates), "x", "target ≥ 1")
record("  the same without a work tree (StoreOptions.workTree = .disabled)", median(bareRates), "ops/s",
       String(format: "%.2f× SQLite; ", median(bareRates) / median(sqliteRates)) + bareRates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
}

if want("merge") {
// 5. Merging two replicas that each added messages to one chat (three times, each on replicas
// of its own: one merge is a few disk writes, and this machine's disk varies).
do {
    let n = Int(ProcessInfo.processInfo.environment["BENCH_MERGE"] ?? "") ?? (quick ? 200 : 1_000)
    var times: [Double] = []
    for round in 0..<(quick ? 1 : 3) {
        let origin = try freshStore(durable: false)
        let chat = try origin.createChat(userID: "bench")
        let bare = "\(root)/merge-remote-\(round).git"
        _ = sh("git init -q --bare --initial-branch=main \(bare)", root)
        try origin.addRemote("origin", url: bare)
        _ = try origin.push()
        var o = StoreOptions(); o.durable = false
        let a = try Store.clone(from: bare, to: "\(root)/merge-a-\(round)", options: o)
        let b = try Store.clone(from: bare, to: "\(root)/merge-b-\(round)", options: o)
        appendMany(a, chat.id, n, "a")
        appendMany(b, chat.id, n, "b")
        try a.addRemote("b", url: b.path)
        let (tip, _) = try a.fetch("b")
        // The setup's work trees are written in the background; let them finish first, so that
        // only the merge is timed.
        a.syncWorkTree()
        b.syncWorkTree()
        let t = now()
        let report = try a.merge(tip!, from: "b")
        times.append(now() - t)
        let mergedCount = try a.listMessages(chatID: chat.id).count
        precondition(report.mergeCommit != nil && mergedCount == 2 * n)
        a.close(); b.close(); origin.close()
    }
    record("merge two replicas that each added \(n) messages to one chat", median(times) * 1000, "ms",
           "median of \(times.count): " + times.map { String(format: "%.0f", $0 * 1000) }.joined(separator: ", ") + "; target < 200")
}

}

if want("pull") {
// 6. Pulling many commits through git daemon.
do {
    let n = quick ? 1_000 : 10_000
    let daemonBase = "\(root)/daemon"
    try FileManager.default.createDirectory(atPath: daemonBase, withIntermediateDirectories: true)
    _ = sh("git init -q --bare --initial-branch=main \(daemonBase)/pull.git", root)
    let port = Int.random(in: 30_000...60_000)
    let daemon = Process()
    daemon.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    daemon.arguments = ["daemon", "--listen=127.0.0.1", "--port=\(port)", "--base-path=\(daemonBase)", "--export-all",
                        "--enable=receive-pack", "--reuseaddr", daemonBase]
    daemon.standardOutput = FileHandle.nullDevice
    daemon.standardError = FileHandle.nullDevice
    try daemon.run()
    defer { daemon.terminate(); daemon.waitUntilExit() }
    usleep(500_000)
    let url = "git://127.0.0.1:\(port)/pull.git"
    let writer = try freshStore(durable: false)
    let chat = try writer.createChat(userID: "bench")
    try writer.addRemote("origin", url: url)
    _ = try writer.push()
    var o = StoreOptions(); o.durable = false
    let reader = try Store.clone(from: url, to: "\(root)/pull-reader", options: o)
    appendMany(writer, chat.id, n, "m")
    _ = try writer.push()
    let t = now()
    let r = try reader.pull()
    let pullTime = now() - t
    precondition(r.fetchedCommits == n && r.fastForward)
    record("pull \(n) commits through git daemon (fetch + fast-forward)", pullTime * 1000, "ms", "\(Int(Double(n) / pullTime)) commits/s")
    let w = now()
    reader.syncWorkTree()
    record("  then bring the work tree to them (\(n) new files)", (now() - w) * 1000, "ms", "")
    reader.close(); writer.close()
}

}

if want("watch") {
// 7. The watch stream: delay from a commit to its event.
final class Seen: @unchecked Sendable {
    let lock = NSLock()
    var times: [String: Double] = [:]
    func see(_ id: String) { lock.withLock { times[id] = now() } }
    func time(_ id: String) -> Double? { lock.withLock { times[id] } }
}
do {
    let store = try freshStore(durable: false)
    let chat = try store.createChat(userID: "bench")
    let other = try Store.open(at: store.path, options: { var o = StoreOptions(); o.durable = false; return o }())
    var options = WatchOptions()
    options.workTree = false
    let seen = Seen()
    let stream = store.watch(options: options)
    let task = Task.detached { for try await e in stream { if let id = e.id { seen.see(id) } } }
    usleep(300_000)
    for (label, writer) in [("a commit in this process", store), ("a commit by another store handle (noticed through inotify)", other)] {
        var delays: [Double] = []
        for i in 0..<(quick ? 10 : 40) {
            let t = now()
            let m = try writer.appendMessage(chatID: chat.id, role: .user, content: "watch \(i)")
            while seen.time(m.id) == nil { usleep(500) }
            delays.append((seen.time(m.id)! - t) * 1000)
            usleep(UInt32.random(in: 0...60_000))  // land at a random point of the poll interval (the fallback)
        }
        record("watch: from the append call, \(label), to its event (median)", median(delays), "ms", "max \(String(format: "%.1f", delays.max()!)) ms")
    }
    task.cancel()
    other.close()
    store.close()
}

}

if want("http") {
// 8. The HTTP server: appends over 16 connections; memory with a large store.
for durable in [true] {
    let store = try freshStore(durable: durable)
    let chat = try store.createChat(userID: "bench")
    let (port, task) = try startServer(store)
    let each = quick ? 20 : 100
    let failures = Failures()
    let t0 = now()
    onThreads(16) { c in
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            for i in 0..<each {
                if (try? await post("http://127.0.0.1:\(port)/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "client \#(c) \#(i)"}"#)) != 201 {
                    failures.lock.withLock { failures.count += 1 }
                }
            }
            done.signal()
        }
        done.wait()
    }
    let rate = Double(16 * each) / (now() - t0)
    precondition(failures.count == 0, "\(failures.count) HTTP appends failed")
    record("HTTP appends/s, 16 concurrent connections, durable", rate, "ops/s", "\(16 * each) POSTs through URLSession")
    // The same with a thin client (a blocking socket a connection, keep-alive): the server's rate.
    let t1 = now()
    let raw = quick ? 20 : 200
    onThreads(16) { c in
        do {
            let connection = try RawHTTPConnection(port: port)
            for i in 0..<raw {
                if try connection.post("/api/chats/\(chat.id)/messages", #"{"role": "user", "content": "raw client \#(c) \#(i)"}"#) != 201 {
                    failures.lock.withLock { failures.count += 1 }
                }
            }
        } catch {
            failures.lock.withLock { failures.count += 1 }
        }
    }
    precondition(failures.count == 0, "\(failures.count) HTTP appends failed")
    record("  the same through a thin client (one socket a connection)", Double(16 * raw) / (now() - t1), "ops/s", "\(16 * raw) POSTs")
    task.cancel()
    store.close()
}
do {
    let n = quick ? 10_000 : 100_000
    var o = StoreOptions(); o.durable = false; o.workTree = .disabled
    storeCounter += 1
    let store = try Store.open(at: "\(root)/store-\(storeCounter)", options: o, create: true)
    try store.load(bundle(chatID: "big", messages: n), name: "bench")
    let before = residentMemoryMB()
    let (port, task) = try startServer(store)
    for _ in 0..<3 { _ = try await post("http://127.0.0.1:\(port)/api/chats/big/messages", #"{"role": "user", "content": "one more"}"#) }
    var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/api/chats/big/messages?after=\(n)")!)
    r.httpMethod = "GET"
    _ = try await URLSession.shared.data(for: r)
    record("server resident memory, store of \(n) messages (after appends and a read)", residentMemoryMB(), "MiB", "the bench process; \(String(format: "%.0f", before)) MiB before the server")
    task.cancel()
    store.close()
}

}

if asJSON {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try enc.encode(rows), as: UTF8.self))
} else {
    print("")
    print(pad("measure", 66) + pad("value", 12, right: true) + "  " + pad("unit", 6) + " note")
    print(String(repeating: "-", count: 110))
    for r in rows {
        print(pad(r.name, 66) + pad(String(format: "%.2f", r.value), 12, right: true) + "  " + pad(r.unit, 6) + " " + r.note)
    }
}

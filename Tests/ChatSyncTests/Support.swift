import ChatSync
import Foundation
import XCTest

/// A store in a fresh temporary folder, removed at the end of the test.
func makeStore(_ test: XCTestCase, durable: Bool = false, configure: (inout StoreOptions) -> Void = { _ in }) throws -> Store {
    let dir = NSTemporaryDirectory() + "chatsync-test-\(UUID().uuidString)"
    var o = StoreOptions()
    o.durable = durable
    configure(&o)
    let store = try Store.open(at: dir, options: o, create: true)
    test.addTeardownBlock {
        store.close()
        try? FileManager.default.removeItem(atPath: dir)
    }
    return store
}

/// Runs the `git` command in a folder (an independent reader of the store).
@discardableResult
func git(_ dir: String, _ args: String...) throws -> (out: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
    p.arguments = ["-C", dir] + args
    var env = ProcessInfo.processInfo.environment
    env["GIT_AUTHOR_NAME"] = "Hand Editor"; env["GIT_AUTHOR_EMAIL"] = "hand@example.com"
    env["GIT_COMMITTER_NAME"] = "Hand Editor"; env["GIT_COMMITTER_EMAIL"] = "hand@example.com"
    p.environment = env
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), p.terminationStatus)
}

/// Asserts that `body` fails with `ChatSyncError.invalid` naming `field`, and wrote no commit.
func assertRefused(_ store: Store, field: String? = nil, code: String = "invalid_input", _ body: () throws -> Void,
                   file: StaticString = #filePath, line: UInt = #line) throws {
    let before = try store.commitCount()
    do {
        try body()
        XCTFail("expected an error", file: file, line: line)
    } catch let e as ChatSyncError {
        XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        if let field { XCTAssertEqual(e.field, field, "\(e)", file: file, line: line) }
        XCTAssertFalse(e.description.isEmpty, file: file, line: line)
    }
    XCTAssertEqual(try store.commitCount(), before, "a refused change must not commit", file: file, line: line)
}

/// The repository root (for Store/ and Samples/).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

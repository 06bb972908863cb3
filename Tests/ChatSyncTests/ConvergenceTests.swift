import ChatSync
import Foundation
import XCTest

/// A small, seedable random generator, so a failing case can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The property: random concurrent histories on three replicas (appends, edits, session status
/// changes, title edits, hop additions), synced in random orders, always converge to one tree
/// with no message lost and sequence numbers 1…N.
/// `CHATSYNC_PROPERTY_CASES` sets the number of cases (default 200); `CHATSYNC_PROPERTY_SEED` the seed.
final class ConvergenceTests: XCTestCase {
    func testRandomHistoriesOnThreeReplicasConverge() throws {
        let env = ProcessInfo.processInfo.environment
        let cases = Int(env["CHATSYNC_PROPERTY_CASES"] ?? "") ?? 200
        let seed = UInt64(env["CHATSYNC_PROPERTY_SEED"] ?? "") ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let casesPerWorld = 10
        var done = 0
        var world = 0
        while done < cases {
            let n = min(casesPerWorld, cases - done)
            try runWorld(seed: seed &+ UInt64(world), cases: n, label: "seed \(seed) world \(world)")
            done += n
            world += 1
        }
    }

    /// One set of replicas; each case is a round of random offline work and random syncs,
    /// followed by everyone syncing and the checks.
    private func runWorld(seed: UInt64, cases: Int, label: String) throws {
        var rng = SplitMix64(seed: seed)
        let origin = try makeStore(self)
        let bare = freshPath(self, "bare") + ".git"
        XCTAssertEqual(try git(NSTemporaryDirectory(), "init", "-q", "--bare", "--initial-branch=main", bare).status, 0)
        let chats = [try origin.createChat(userID: "u", title: "one"), try origin.createChat(userID: "u", title: "two")]
        let session = try origin.createSession(userID: "u", chatID: chats[0].id)
        let mission = try origin.createMission(userID: "u", name: "M")
        try origin.addRemote("origin", url: bare)
        _ = try origin.push(options: quickSync)
        origin.close()
        let replicas = [try clone(self, bare, "r0"), try clone(self, bare, "r1"), try clone(self, bare, "r2")]
        var expected: [String: Set<String>] = [chats[0].id: [], chats[1].id: []]
        var messages: [(chat: String, id: String)] = []

        for round in 0..<cases {
            let where_ = "\(label) round \(round)"
            let steps = Int.random(in: 3...9, using: &rng)
            for _ in 0..<steps {
                let r = replicas[Int.random(in: 0..<3, using: &rng)]
                switch Int.random(in: 0..<10, using: &rng) {
                case 0...3:
                    let chat = chats[Int.random(in: 0..<2, using: &rng)].id
                    let m = try r.appendMessage(chatID: chat, role: .user, content: "m\(messages.count)")
                    expected[chat, default: []].insert(m.id)
                    messages.append((chat, m.id))
                case 4:
                    if let pick = messages.randomElement(using: &rng) {
                        // The message may not have reached this replica yet.
                        _ = try? r.editMessage(chatID: pick.chat, id: pick.id, content: "edited \(Int.random(in: 0..<1000, using: &rng))")
                    }
                case 5:
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: _ = try? r.touchSession(session.id)
                    case 1: _ = try? r.completeSession(session.id)
                    default: _ = try? r.updateSession(session.id, patch: ["status": .string("active")])
                    }
                case 6:
                    _ = try r.updateChat(chats[Int.random(in: 0..<2, using: &rng)].id, patch: ["title": .string("t\(Int.random(in: 0..<100, using: &rng))")])
                case 7:
                    _ = try r.addHop(missionID: mission.id, name: "hop \(Int.random(in: 0..<1000, using: &rng))")
                default:
                    _ = try r.sync(options: quickSync)
                }
            }
            // Everyone syncs (in a random order), twice round, then all must agree.
            let order = [0, 1, 2].shuffled(using: &rng)
            for i in order + order { _ = try replicas[i].sync(options: quickSync) }
            let trees = try replicas.map(treeID)
            XCTAssertEqual(Set(trees).count, 1, "\(where_): replicas did not converge: \(trees)")
            for r in replicas {
                for (chat, ids) in expected {
                    let got = try r.listMessages(chatID: chat)
                    XCTAssertEqual(Set(got.map(\.id)), ids, "\(where_): messages lost or invented in \(chat)")
                    XCTAssertEqual(got.map(\.sequenceOrder), Array(0..<got.count).map { $0 + 1 }, "\(where_): sequence not 1…N")
                }
                let hops = try r.listHops(missionID: mission.id)
                XCTAssertEqual(hops.map(\.sequenceOrder), Array(0..<hops.count).map { $0 + 1 }, "\(where_): hops not 1…N")
            }
            let report = try replicas[0].verify()
            XCTAssertTrue(report.ok, "\(where_): \(report.problems)")
            if testRun?.hasSucceeded == false { return }
        }
        // The test exercised real merges, not only fast-forwards.
        let merges = try git(replicas[0].path, "rev-list", "--merges", "--count", "HEAD").out.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertGreaterThan(Int(merges) ?? 0, 0, "\(label): no merge happened")
        XCTAssertGreaterThan(messages.count, cases, "\(label): too few messages")
    }
}

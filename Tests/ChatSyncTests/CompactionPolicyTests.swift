@testable import ChatSync
import Foundation
import GitKit
import XCTest

final class CompactionPolicyTests: XCTestCase {
    /// Packs are merged until each kept pack is bigger than all smaller ones together, and no
    /// further: of packs of 1, 1, 3, 6 and 20 objects, only the two smallest are merged (the
    /// rule was "twice as big as all smaller ones together": every pack was merged into one,
    /// and each object was rewritten more often).
    func testMergingStopsAtThePackBiggerThanAllSmallerOnes() throws {
        let path = freshPath(self)
        let repo = try Repository.create(at: path, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var n = 0
        for count in [1, 1, 3, 6, 20] {
            for _ in 0..<count {
                _ = try repo.writeBlob(Data("object \(n)\n".utf8))
                n += 1
            }
            XCTAssertTrue(try repo.flushObjects())  // one pack
        }
        func counts() -> [Int] { repo.packFiles().map(\.objectCount).sorted() }
        XCTAssertEqual(counts(), [1, 1, 3, 6, 20])
        XCTAssertFalse(try Compaction.consolidateSmallPacks(repo: repo, maxPacks: 5), "not more than maxPacks: nothing to do")
        XCTAssertTrue(try Compaction.consolidateSmallPacks(repo: repo, maxPacks: 4))
        XCTAssertEqual(counts(), [2, 3, 6, 20])
        // Over the limit again: the smallest ones, until the next is bigger than them together.
        XCTAssertTrue(try Compaction.consolidateSmallPacks(repo: repo, maxPacks: 3))
        XCTAssertEqual(counts(), [5, 6, 20])
        XCTAssertTrue(try Compaction.consolidateSmallPacks(repo: repo, maxPacks: 2))
        XCTAssertEqual(counts(), [11, 20])
        XCTAssertTrue(try Compaction.consolidateSmallPacks(repo: repo, maxPacks: 1))
        XCTAssertEqual(counts(), [31])
        XCTAssertEqual(try git(path, "fsck", "--strict").status, 0)
    }
}

import Foundation
import CLibgit2
@testable import GitKit
import CSHA1
import Synchronization
import XCTest

final class RepositoryTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "gitkit-\(UUID().uuidString)"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func git(_ args: String...) throws -> (String, Int32) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", dir] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: data, as: UTF8.self), p.terminationStatus)
    }

    func sig() -> Signature { Signature(name: "Test", email: "test@example.com", time: 1_700_000_000) }

    /// Commits `tree` as the first commit of main (objects written from the buffer) and checks
    /// the repository with `git fsck --strict`.
    func commitOnMainAndFsck(_ repo: Repository, _ tree: OID, file: StaticString = #filePath, line: UInt = #line) throws {
        let commit = try repo.createCommit(tree: tree, parents: [], author: sig(), message: "t")
        try repo.flushObjects()
        try repo.compareAndSwapReference("refs/heads/main", to: commit, expected: nil, message: "t")
        let (text, code) = try git("fsck", "--strict", "--no-dangling")
        XCTAssertEqual(code, 0, text, file: file, line: line)
    }

    func testCommitWithoutWorkTreeThenCheckout() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let empty = try repo.emptyTree()
        let blob = try repo.writeBlob(Data("hello\n".utf8))
        let tree = try repo.updateTree(empty, [.upsert("a/b/c.txt", blob)])
        let c1 = try repo.commit(repo.createCommit(tree: tree, parents: [], author: sig(), message: "first"))
        try repo.compareAndSwapReference("refs/heads/main", to: c1.oid, expected: nil, message: "init")
        XCTAssertEqual(try repo.referenceTarget("refs/heads/main"), c1.oid)
        XCTAssertEqual(try repo.entry(in: tree, path: "a/b/c.txt")?.oid, blob)
        XCTAssertNil(try repo.entry(in: tree, path: "a/nope"))
        XCTAssertEqual(try repo.readBlob(blob), Data("hello\n".utf8))
        try repo.checkout(from: empty, to: tree, paths: ["a/b/c.txt"])
        XCTAssertEqual(FileManager.default.contents(atPath: dir + "/a/b/c.txt"), Data("hello\n".utf8))
        let (status, _) = try git("status", "--porcelain")
        XCTAssertEqual(status, "")
        let (_, fsck) = try git("fsck", "--strict")
        XCTAssertEqual(fsck, 0)
    }

    func testCompareAndSwapRefusesAStaleExpectation() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let t = try repo.emptyTree()
        let a = try repo.createCommit(tree: t, parents: [], author: sig(), message: "a")
        let b = try repo.createCommit(tree: t, parents: [a], author: sig(), message: "b")
        let c = try repo.createCommit(tree: t, parents: [a], author: sig(), message: "c")
        try repo.compareAndSwapReference("refs/heads/main", to: a, expected: nil, message: "a")
        XCTAssertThrowsError(try repo.compareAndSwapReference("refs/heads/main", to: b, expected: nil, message: "again")) {
            XCTAssertTrue(($0 as? GitError)?.isModified == true)
        }
        try repo.compareAndSwapReference("refs/heads/main", to: b, expected: a, message: "b")
        XCTAssertThrowsError(try repo.compareAndSwapReference("refs/heads/main", to: c, expected: a, message: "c")) {
            XCTAssertTrue(($0 as? GitError)?.isModified == true, "\($0)")
        }
        XCTAssertEqual(try repo.referenceTarget("refs/heads/main"), b)
    }

    /// The two-step update (lock and value first, fsynced with the pack; then in place) keeps
    /// git's lock protocol and compare-and-swap: a lock in the way, a moved or existing branch
    /// refuse it, and an update given up leaves neither a lock nor a change.
    func testPreparedReferenceUpdatesFollowGitsLockProtocol() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let refPath = repo.gitDir + "refs/heads/main"
        let t = try repo.emptyTree()
        let a = try repo.createCommit(tree: t, parents: [], author: sig(), message: "a")
        let b = try repo.createCommit(tree: t, parents: [a], author: sig(), message: "b")
        let c = try repo.createCommit(tree: t, parents: [a], author: sig(), message: "c")
        try repo.flushObjects()
        // git's own default keeps reflogs, which this way does not write: the caller falls back.
        XCTAssertNil(try repo.prepareReferenceUpdate("refs/heads/main", to: a, expected: nil))
        try repo.setConfigString("core.logAllRefUpdates", "false")

        let first = try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: a, expected: nil))
        XCTAssertEqual(try String(contentsOfFile: refPath + ".lock", encoding: .utf8), a.hex + "\n")
        // While it is held, git itself cannot move the branch.
        XCTAssertNotEqual(try git("update-ref", "refs/heads/main", b.hex).1, 0)
        try first.finish(durable: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: refPath + ".lock"))
        XCTAssertEqual(try git("rev-parse", "main").0.trimmingCharacters(in: .whitespacesAndNewlines), a.hex)

        // A branch that exists is not created again; a stale expectation is refused.
        XCTAssertThrowsError(try repo.prepareReferenceUpdate("refs/heads/main", to: b, expected: nil)) {
            XCTAssertTrue(($0 as? GitError)?.isModified == true, "\($0)")
        }
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: b, expected: a)).finish(durable: false)
        XCTAssertThrowsError(try repo.prepareReferenceUpdate("refs/heads/main", to: c, expected: a)) {
            XCTAssertTrue(($0 as? GitError)?.isModified == true, "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: refPath + ".lock"), "a refused update leaves no lock")

        // Someone else's lock: refused as locked, and left alone.
        FileManager.default.createFile(atPath: refPath + ".lock", contents: Data())
        XCTAssertThrowsError(try repo.prepareReferenceUpdate("refs/heads/main", to: c, expected: b)) {
            XCTAssertTrue(($0 as? GitError)?.isLocked == true, "\($0)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: refPath + ".lock"))
        unlink(refPath + ".lock")

        // Given up (or dropped): no lock left, the branch unchanged.
        let dropped = try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: c, expected: b))
        dropped.abandon()
        XCTAssertThrowsError(try dropped.finish(durable: false))
        XCTAssertFalse(FileManager.default.fileExists(atPath: refPath + ".lock"))
        XCTAssertEqual(try repo.referenceTarget("refs/heads/main"), b)

        // A branch only in packed-refs is read there, and the new value written loose.
        XCTAssertEqual(try git("pack-refs", "--all").1, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: refPath))
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: c, expected: b)).finish(durable: true)
        XCTAssertEqual(try git("rev-parse", "main").0.trimmingCharacters(in: .whitespacesAndNewlines), c.hex)
        XCTAssertEqual(try git("fsck", "--strict").1, 0)

        // A symbolic reference is left to libgit2.
        XCTAssertEqual(try git("symbolic-ref", "refs/heads/alias", "refs/heads/main").1, 0)
        XCTAssertNil(try repo.prepareReferenceUpdate("refs/heads/alias", to: a, expected: c))
    }

    /// A reference update neither creates nor removes a file once the handle has a spare: the
    /// new value goes into the spare, which becomes the lock, trades places with the reference,
    /// and the old reference file becomes the spare. git and libgit2 see no extra reference.
    func testReferenceUpdatesRecycleTheirFiles() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.setConfigString("core.logAllRefUpdates", "false")
        let heads = repo.gitDir + "refs/heads"
        let t = try repo.emptyTree()
        var commits: [OID] = []
        for i in 0..<6 { commits.append(try repo.createCommit(tree: t, parents: commits.suffix(1), author: sig(), message: "c\(i)")) }
        try repo.flushObjects()
        func inode(_ path: String) -> UInt64? {
            var st = stat()
            return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
        }
        func spares() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: heads).filter { $0 != "main" }.sorted() }

        // The first update creates the branch; the second makes the spare (the old branch file).
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[0], expected: nil)).finish(durable: true)
        XCTAssertEqual(try spares(), [])
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[1], expected: commits[0])).finish(durable: true)
        let spareNames = try spares()
        XCTAssertEqual(spareNames.count, 1)
        let spare = heads + "/" + spareNames[0]
        XCTAssertTrue(spareNames[0].hasPrefix(".main.") && spareNames[0].hasSuffix(".lock"), spareNames[0])

        // From then on the two files trade places: no file is made or removed.
        for i in 2..<5 {
            let (mainBefore, spareBefore) = (inode(heads + "/main"), inode(spare))
            try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[i], expected: commits[i - 1])).finish(durable: true)
            XCTAssertEqual(inode(heads + "/main"), spareBefore)
            XCTAssertEqual(inode(spare), mainBefore)
            XCTAssertEqual(try spares(), spareNames)
            XCTAssertEqual(try String(contentsOfFile: heads + "/main", encoding: .utf8), commits[i].hex + "\n")
        }
        // A refused update gives its lock back to the spare; so does one given up.
        XCTAssertThrowsError(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[5], expected: commits[0])) {
            XCTAssertTrue(($0 as? GitError)?.isModified == true, "\($0)")
        }
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[5], expected: commits[4])).abandon()
        XCTAssertEqual(try spares(), spareNames)
        // Someone else's lock: refused, left alone, and the spare kept.
        FileManager.default.createFile(atPath: heads + "/main.lock", contents: Data())
        XCTAssertThrowsError(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[5], expected: commits[4])) {
            XCTAssertTrue(($0 as? GitError)?.isLocked == true, "\($0)")
        }
        XCTAssertEqual(try spares(), (spareNames + ["main.lock"]).sorted())
        unlink(heads + "/main.lock")

        // git and libgit2 list one branch, and git reads and checks the store as usual.
        XCTAssertEqual(try git("for-each-ref", "--format=%(refname)").0, "refs/heads/main\n")
        XCTAssertEqual(try repo.referenceNames(glob: "refs/*"), ["refs/heads/main"])
        XCTAssertEqual(try git("rev-parse", "main").0, commits[4].hex + "\n")
        let fsck = try git("fsck", "--strict")
        XCTAssertEqual(fsck.1, 0, fsck.0)
        XCTAssertEqual(try git("update-ref", "refs/heads/main", commits[5].hex, commits[4].hex).1, 0)
        try XCTUnwrap(try repo.prepareReferenceUpdate("refs/heads/main", to: commits[4], expected: commits[5])).finish(durable: true)
        XCTAssertEqual(try git("rev-parse", "main").0, commits[4].hex + "\n")

        // The handle's spare goes when asked; spares nobody touched lately go too.
        repo.discardSpareLock("refs/heads/main")
        XCTAssertEqual(try spares(), [])
        FileManager.default.createFile(atPath: heads + "/.main.1234.lock", contents: Data())
        ReferenceUpdate.removeSpares(in: heads, olderThan: 60)
        XCTAssertEqual(try spares(), [".main.1234.lock"])
        ReferenceUpdate.removeSpares(in: heads, olderThan: 0)
        XCTAssertEqual(try spares(), [])
    }

    /// A handle keeps reading while another merges packs and removes the old ones, with
    /// libgit2 allowed one open pack file, so that it closes and opens packs all the time: a
    /// read that finds an object in a removed pack whose file was closed meanwhile finds it
    /// again in the merged pack instead of failing.
    func testReadsSurvivePacksRemovedByMergesWhileFilesAreClosedAndOpened() throws {
        let writer = try Repository.create(at: dir, initialBranch: "main")
        try writer.bufferObjectsInMemory()
        _ = chatsync_git_set_mwindow_file_limit(1)
        defer { _ = chatsync_git_set_mwindow_file_limit(128) }
        let readers = try (0..<2).map { _ in try Repository.open(dir) }
        let written = Mutex<[OID]>([])
        let failures = Mutex<[String]>([])
        let done = Atomic<Bool>(false)
        let group = DispatchGroup()
        for reader in readers {
            DispatchQueue.global().async(group: group) {
                while !done.load(ordering: .relaxed) {
                    for oid in written.withLock({ $0 }).suffix(64) {
                        do { _ = try reader.withBlob(oid) { $0.count } } catch { failures.withLock { $0.append("\(error)") } }
                    }
                }
            }
        }
        for round in 0..<300 {
            var made: [OID] = []
            for i in 0..<4 { made.append(try writer.writeBlob(Data("round \(round) blob \(i)\n".utf8))) }
            try writer.flushObjects()
            written.withLock { $0 += made }
            if round % 3 == 2 { try writer.concatenatePacks(writer.packFiles()) }
        }
        done.store(true, ordering: .relaxed)
        group.wait()
        XCTAssertEqual(failures.withLock { Array($0.prefix(3)) }, [])
        for oid in written.withLock({ $0 }) { XCTAssertNoThrow(try readers[0].withBlob(oid) { $0.count }) }
    }

    func testBufferedObjectsAreWrittenAsOnePack() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var tree = try repo.emptyTree()
        for i in 0..<20 {
            tree = try repo.updateTree(tree, [.upsert("f/\(i).txt", repo.writeBlob(Data("file \(i)\n".utf8)))])
        }
        let c = try repo.createCommit(tree: tree, parents: [], author: sig(), message: "many")
        XCTAssertTrue(try repo.flushObjects())
        try repo.compareAndSwapReference("refs/heads/main", to: c, expected: nil, message: "many")
        XCTAssertEqual(repo.packFiles().count, 1)
        // The index is byte for byte the one git's own `index-pack` makes of the pack.
        let pack = try XCTUnwrap(repo.packFiles().first)
        XCTAssertEqual(try git("index-pack", "-o", dir + "/by-git.idx", pack.packPath).1, 0)
        XCTAssertEqual(FileManager.default.contents(atPath: pack.indexPath), FileManager.default.contents(atPath: dir + "/by-git.idx"))
        XCTAssertEqual(repo.looseObjectCount(), 0)
        // A fresh handle (another reader) sees every object.
        let other = try Repository.open(dir)
        XCTAssertEqual(try other.readBlob(try other.entry(in: tree, path: "f/7.txt")!.oid), Data("file 7\n".utf8))
        let (_, fsck) = try git("fsck", "--strict")
        XCTAssertEqual(fsck, 0)
        // Discarded objects never reach the disk.
        _ = try repo.writeBlob(Data("dropped".utf8))
        repo.discardBufferedObjects()
        XCTAssertFalse(try repo.flushObjects())
    }

    /// A pack whose index cannot be put in place is not left behind without it.
    func testAPackIsNeverLeftWithoutItsIndex() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let objects = [PackObject(oid: try repo.writeBlob(Data("x".utf8)), type: GIT_OBJECT_BLOB, bytes: Array("x".utf8))]
        let pack = try repo.writePack(objects, durable: false)
        unlink(pack.indexPath)
        unlink(pack.packPath)
        // The same objects make the same pack name; a folder where its index goes makes the rename fail.
        XCTAssertEqual(mkdir(pack.indexPath, 0o755), 0)
        XCTAssertThrowsError(try repo.writePack(objects, durable: true))
        XCTAssertFalse(FileManager.default.fileExists(atPath: pack.packPath))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: repo.packDirectory).filter { $0.hasPrefix("tmp_") }
        XCTAssertEqual(leftovers, [])
        rmdir(pack.indexPath)
        XCTAssertEqual(try repo.writePack(objects, durable: true).packPath, pack.packPath)
        XCTAssertEqual(repo.packFiles().count, 1)
    }

    func testMergePacksKeepsEveryObject() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var tree = try repo.emptyTree()
        var parent: OID?
        for i in 0..<6 {
            tree = try repo.updateTree(tree, [.upsert("n/\(i).txt", repo.writeBlob(Data("n \(i)\n".utf8)))])
            let c = try repo.createCommit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig(), message: "\(i)")
            try repo.flushObjects()
            try repo.compareAndSwapReference("refs/heads/main", to: c, expected: parent, message: "\(i)")
            parent = c
        }
        XCTAssertEqual(repo.packFiles().count, 6)
        try repo.mergePacks(repo.packFiles())
        XCTAssertEqual(repo.packFiles().count, 1)
        let (out, fsck) = try git("fsck", "--strict", "--no-dangling")
        XCTAssertEqual(fsck, 0, out)
        XCTAssertEqual(try repo.walk(from: parent!).count, 6)
    }

    /// Packs written by GitKit (whole objects, then merged by copying entries, also entries that
    /// are deltas made by libgit2's pack builder) are packs git itself accepts.
    func testConcatenatedPacksAreValidForGit() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var tree = try repo.emptyTree()
        var parent: OID?
        // Similar large blobs (the pack builder makes deltas of them) and small ones; sizes that
        // need one, two and three bytes of entry header.
        let big = (0..<3000).map { "line \($0) of a long document\n" }.joined()
        func commit(_ files: [(String, String)]) throws {
            for (path, text) in files { tree = try repo.updateTree(tree, [.upsert(path, repo.writeBlob(Data(text.utf8)))]) }
            let c = try repo.createCommit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig(), message: "commit \(files.count)\n\nbody ü")
            try repo.flushObjects()
            try repo.compareAndSwapReference("refs/heads/main", to: c, expected: parent, message: "x")
            parent = c
        }
        for i in 0..<4 { try commit([("big/\(i).txt", big + "edit \(i)\n")]) }
        try repo.mergePacks(repo.packFiles())  // one pack with deltas
        XCTAssertEqual(repo.packFiles().count, 1)
        for i in 0..<5 { try commit([("s/\(i).txt", "x"), ("m/\(i).txt", String(repeating: "m", count: 20 + i * 300))]) }
        XCTAssertEqual(repo.packFiles().count, 6)
        // Batches may write an object again (the empty tree, a tree that came back): merging keeps one copy.
        let total = try Set(repo.packFiles().flatMap { try PackFormat.readIndex($0.indexPath).entries.map(\.oid) }).count
        let merged = try XCTUnwrap(try repo.concatenatePacks(repo.packFiles()))
        XCTAssertEqual(repo.packFiles().count, 1)
        XCTAssertEqual(merged.objectCount, total)
        let (verify, code) = try git("verify-pack", "-v", merged.indexPath)
        XCTAssertEqual(code, 0, verify)
        XCTAssertTrue(verify.contains("chain length"), "the delta entries came along: \(verify.suffix(300))")
        let (fsck, fsckCode) = try git("fsck", "--strict", "--full", "--no-dangling")
        XCTAssertEqual(fsckCode, 0, fsck)
        let (shown, _) = try git("show", "main:big/2.txt")
        XCTAssertEqual(shown, big + "edit 2\n")
        let other = try Repository.open(dir)
        XCTAssertEqual(try other.readBlob(try other.entry(in: tree, path: "m/4.txt")!.oid), Data(String(repeating: "m", count: 1220).utf8))
        XCTAssertEqual(try other.walk(from: parent!).count, 9)
        XCTAssertEqual(try other.commit(parent!).message, "commit 2\n\nbody ü")

        // An object in two packs without deltas is copied once.
        let same = Array("same".utf8)
        let sameID = try repo.writeBlob(Data(same))
        let otherID = try repo.writeBlob(Data("other".utf8))
        repo.discardBufferedObjects()
        try repo.writePack([PackObject(oid: sameID, type: GIT_OBJECT_BLOB, bytes: same)], durable: false)
        try repo.writePack([PackObject(oid: sameID, type: GIT_OBJECT_BLOB, bytes: same),
                            PackObject(oid: otherID, type: GIT_OBJECT_BLOB, bytes: Array("other".utf8))], durable: false)
        XCTAssertEqual(repo.packFiles().count, 3)
        let deduplicated = try XCTUnwrap(try repo.concatenatePacks(repo.packFiles()))
        XCTAssertEqual(deduplicated.objectCount, total + 2)
        XCTAssertEqual(try git("verify-pack", deduplicated.indexPath).1, 0)

        // An extra copy in a pack with deltas: not concatenated (nil, nothing changed); libgit2's
        // pack builder merges them instead.
        let bigID = try repo.entry(in: tree, path: "big/1.txt")!.oid
        let bigBytes = Array(try repo.readBlob(bigID))
        let similar = Array((big + "a different ending\n").utf8)
        let similarID = try repo.writeBlob(Data(similar))
        repo.discardBufferedObjects()
        let a = try repo.writePack([PackObject(oid: bigID, type: GIT_OBJECT_BLOB, bytes: bigBytes)], durable: false)
        let b = try repo.writePack([PackObject(oid: similarID, type: GIT_OBJECT_BLOB, bytes: similar)], durable: false)
        try repo.mergePacks([a, b])
        let all = repo.packFiles()
        XCTAssertEqual(all.count, 2)
        XCTAssertNil(try repo.concatenatePacks(all))
        XCTAssertEqual(repo.packFiles().count, 2)
        try repo.mergePacks(all)
        XCTAssertEqual(repo.packFiles().count, 1)
        let (fsck2, fsckCode2) = try git("fsck", "--strict", "--full", "--no-dangling")
        XCTAssertEqual(fsckCode2, 0, fsck2)
        XCTAssertEqual(try Repository.open(dir).readBlob(sameID), Data(same))
        XCTAssertEqual(try Repository.open(dir).readBlob(similarID), Data(similar))
    }

    /// The lines of /proc/self/maps, read to the end (its size reads as 0, so reading by the
    /// size gives only its beginning).
    func processMappings() throws -> [Substring] {
        let fd = open("/proc/self/maps", O_RDONLY)
        guard fd >= 0 else { throw XCTSkip("no /proc/self/maps") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n")
    }

    /// How many files of `folder` this process maps that were removed.
    func removedFilesMapped(in folder: String) throws -> Int {
        try processMappings().filter { $0.contains(folder + "/") && $0.hasSuffix("(deleted)") }.count
    }

    /// A handle lets go of packs merged away once enough were (libgit2 1.5 keeps every pack it
    /// has seen mapped until its object database is freed: a long-running writer piled up
    /// thousands of mappings of removed files), and then reads from the merged pack.
    func testHandlesLetGoOfPacksMergedAway() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var ids: [OID] = []
        for i in 0..<(PackRemovals.threshold + 8) {
            ids.append(try repo.writeBlob(Data("blob \(i)\n".utf8)))
            XCTAssertTrue(try repo.flushObjects())  // a pack each
        }
        let packDir = try XCTUnwrap(URL(fileURLWithPath: repo.packDirectory).resolvingSymlinksInPath().path)
        func removedMappings() throws -> Int { try removedFilesMapped(in: packDir) }
        let reader = try Repository.open(dir)
        for (i, id) in ids.enumerated() { XCTAssertEqual(try reader.readBlob(id), Data("blob \(i)\n".utf8)) }
        XCTAssertEqual(try removedMappings(), 0)
        let merger = try Repository.open(dir)
        let before = PackRemovals.count
        XCTAssertNotNil(try merger.concatenatePacks(merger.packFiles()))
        XCTAssertEqual(PackRemovals.count - before, ids.count)
        XCTAssertGreaterThan(try removedMappings(), 0, "the reader still maps the removed indexes")
        try reader.letGoOfRemovedPacks()
        try repo.releaseMemory()  // the writing handle, its buffer empty
        XCTAssertEqual(try removedMappings(), 0)
        for (i, id) in ids.enumerated() { XCTAssertEqual(try reader.readBlob(id), Data("blob \(i)\n".utf8)) }
        // The writing handle still buffers and writes after its database was replaced.
        let after = try repo.writeBlob(Data("after\n".utf8))
        XCTAssertTrue(try repo.flushObjects())
        XCTAssertEqual(try Repository.open(dir).readBlob(after), Data("after\n".utf8))
        XCTAssertEqual(try git("fsck", "--strict").1, 0)
    }

    /// Packs another process removes (here `git repack -a -d`) are let go of too: the handle
    /// looks at the pack folder now and then and finds indexes it saw there gone.
    func testHandlesLetGoOfPacksAnotherProcessRemoved() throws {
        // Eight packs, by a handle gone before the reader comes (libgit2 shares a pack's
        // mappings between the handles of a process: the reader's are the only ones then).
        let ids: [OID] = try {
            let repo = try Repository.create(at: dir, initialBranch: "main")
            try repo.bufferObjectsInMemory()
            var tree = try repo.emptyTree()
            var parent: OID?
            var ids: [OID] = []
            for i in 0..<8 {
                let id = try repo.writeBlob(Data("blob \(i)\n".utf8))
                ids.append(id)
                tree = try repo.updateTree(tree, [.upsert("f/\(i).txt", id)])
                let c = try repo.createCommit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig(), message: "\(i)")
                XCTAssertTrue(try repo.flushObjects())
                try repo.compareAndSwapReference("refs/heads/main", to: c, expected: parent, message: "\(i)")
                parent = c
            }
            return ids
        }()
        let packDir = URL(fileURLWithPath: dir + "/.git/objects/pack").resolvingSymlinksInPath().path
        func removedMappings() throws -> Int { try removedFilesMapped(in: packDir) }
        let interval = Repository.packLookInterval
        Repository.packLookInterval = 0
        defer { Repository.packLookInterval = interval }
        let reader = try Repository.open(dir)
        for (i, id) in ids.enumerated() { XCTAssertEqual(try reader.readBlob(id), Data("blob \(i)\n".utf8)) }
        try reader.letGoOfRemovedPacks()  // a look: the packs as they are
        let before = PackRemovals.count
        XCTAssertEqual(try git("repack", "-a", "-d", "-q").1, 0)
        XCTAssertEqual(PackRemovals.count, before, "not this process's removals")
        XCTAssertGreaterThan(try removedMappings(), 0, "the reader maps the removed indexes")
        try reader.letGoOfRemovedPacks()
        XCTAssertEqual(try removedMappings(), 0)
        for (i, id) in ids.enumerated() { XCTAssertEqual(try reader.readBlob(id), Data("blob \(i)\n".utf8)) }
    }

    /// Merging many packs, some objects in several of them (also several times in one), gives
    /// the index git's own `index-pack` makes of the merged pack, byte for byte: every id once,
    /// in order, with its entry's offset and checksum. (The order comes from the packs' indexes,
    /// merged in pairs; the copy kept is the one in the biggest pack.)
    func testMergingManyPacksWithSharedObjectsGivesGitsIndex() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var rng = SystemRandomNumberGenerator()
        var shared: [(OID, [UInt8])] = []
        for i in 0..<40 {
            var objects: [PackObject] = []
            for j in 0..<(1 + i % 7) {
                let bytes = Array("pack \(i) object \(j) \(UInt64.random(in: 0...UInt64.max, using: &rng))\n".utf8)
                objects.append(PackObject(oid: try repo.writeBlob(Data(bytes)), type: GIT_OBJECT_BLOB, bytes: bytes))
            }
            if i % 5 == 0 {
                let bytes = Array("shared \(i)\n".utf8)
                shared.append((try repo.writeBlob(Data(bytes)), bytes))
            }
            // Every fourth pack repeats some shared objects (the first time, one of them twice).
            if i % 4 == 3 {
                for (id, bytes) in shared.suffix(2) { objects.append(PackObject(oid: id, type: GIT_OBJECT_BLOB, bytes: bytes)) }
                if i == 3, let again = shared.first { objects.append(PackObject(oid: again.0, type: GIT_OBJECT_BLOB, bytes: again.1)) }
            }
            repo.discardBufferedObjects()
            try repo.writePack(objects, durable: false)
        }
        let packs = repo.packFiles()
        XCTAssertEqual(packs.count, 40)
        let ids = try Set(packs.flatMap { try PackFormat.readIndex($0.indexPath).entries.map(\.oid) })
        let merged = try XCTUnwrap(try repo.concatenatePacks(packs))
        XCTAssertEqual(repo.packFiles().count, 1)
        XCTAssertEqual(merged.objectCount, ids.count)
        XCTAssertEqual(try git("index-pack", "-o", dir + "/by-git.idx", merged.packPath).1, 0)
        XCTAssertEqual(FileManager.default.contents(atPath: merged.indexPath), FileManager.default.contents(atPath: dir + "/by-git.idx"))
        for (id, bytes) in shared { XCTAssertEqual(try Repository.open(dir).readBlob(id), Data(bytes)) }

        // Lists merged directly: the union in id order, the earliest list's copy kept.
        func entry(_ byte: UInt8, _ list: UInt64) -> PackIndexEntry {
            var raw = git_oid()
            raw.id.0 = byte
            raw.id.19 = 1
            return PackIndexEntry(oid: OID(raw), crc: 0, offset: list)
        }
        let lists: [[PackIndexEntry]] = [[entry(5, 0), entry(9, 0)], [entry(1, 1), entry(5, 1)], [entry(5, 2), entry(7, 2), entry(9, 2)]]
        let (order, copies) = PackFormat.mergedByID(lists)
        XCTAssertEqual(order.map { lists[Int($0.list)][Int($0.index)].oid.raw.id.0 }, [1, 5, 7, 9])
        XCTAssertEqual(order.map(\.list), [1, 0, 2, 0])
        XCTAssertEqual(copies, [[false, false], [false, true], [true, false, true]])
        XCTAssertNil(PackFormat.mergedByID([[entry(1, 0)], [entry(2, 1)]]).copies)

        // An index whose ids are out of order is damaged: reading it fails.
        var damaged = try XCTUnwrap(FileManager.default.contents(atPath: merged.indexPath))
        let first = 8 + 1024
        let a = damaged[first..<(first + 20)], b = damaged[(first + 20)..<(first + 40)]
        damaged.replaceSubrange(first..<(first + 40), with: b + a)
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/damaged.idx", contents: damaged))
        XCTAssertThrowsError(try PackFormat.readIndex(dir + "/damaged.idx")) { error in
            XCTAssertTrue("\(error)".contains("out of order"), "\(error)")
        }
    }

    /// A batch's pack holds its objects stored (not deflated); merging packs deflates them, once,
    /// and git reads both.
    func testBatchPacksAreStoredAndMergingDeflatesThem() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        func entrySizes(_ pack: PackFile) throws -> [String: (size: Int, packed: Int)] {
            let (out, code) = try git("verify-pack", "-v", pack.indexPath)
            XCTAssertEqual(code, 0, out)
            var sizes: [String: (Int, Int)] = [:]
            for line in out.split(separator: "\n") {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                if f.count >= 5, f[0].count == 40, let size = Int(f[2]), let packed = Int(f[3]) { sizes[String(f[0])] = (size, packed) }
            }
            return sizes
        }
        // Compressible, empty, and bigger than one stored block (65,535 bytes).
        let contents: [[UInt8]] = [Array(String(repeating: "compressible ", count: 200).utf8), [],
                                   Array((0..<70_000).map { "line \($0)\n" }.joined().utf8)]
        try repo.bufferObjectsInMemory()
        var ids: [OID] = []
        for bytes in contents {
            let id = try repo.writeBlob(Data(bytes))
            repo.discardBufferedObjects()  // only the packs below hold it
            ids.append(id)
            try repo.writePack([PackObject(oid: id, type: GIT_OBJECT_BLOB, bytes: bytes)], durable: false)
        }
        for pack in repo.packFiles() {
            for (id, s) in try entrySizes(pack) { XCTAssertGreaterThan(s.packed, s.size, "stored, not deflated: \(id)") }
        }
        let merged = try XCTUnwrap(try repo.concatenatePacks(repo.packFiles()))
        XCTAssertEqual(repo.packFiles().count, 1)
        let sizes = try entrySizes(merged)
        XCTAssertEqual(sizes.count, 3)
        XCTAssertLessThan(sizes[ids[0].hex]!.packed, contents[0].count / 10, "deflated when merged")
        XCTAssertLessThan(sizes[ids[2].hex]!.packed, contents[2].count / 3, "deflated when merged")
        let other = try Repository.open(dir)
        for (id, bytes) in zip(ids, contents) { XCTAssertEqual(try other.readBlob(id), Data(bytes)) }
        let (cat, catCode) = try git("cat-file", "-p", ids[2].hex)
        XCTAssertEqual(catCode, 0)
        XCTAssertEqual(Array(cat.utf8), contents[2])
    }

    /// Temporary files made ahead are the ones the next pack is written to; unused ones are
    /// removed; none is left behind either way.
    func testPreparedTemporaryFilesAreUsedOrRemoved() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let packDir = repo.gitDir + "objects/pack"
        func temporaries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: packDir).filter { $0.hasPrefix("tmp_") }.sorted() }
        try repo.prepareTemporaryFiles()
        let made = try temporaries()
        XCTAssertEqual(made.count, 2)
        XCTAssertEqual(made.filter { $0.hasPrefix("tmp_pack_") }.count, 1)
        try repo.prepareTemporaryFiles()  // already there: no more
        XCTAssertEqual(try temporaries(), made)
        // Fsynced ahead (as a writer does between rounds under concurrent writers): still the
        // files the next pack is written to.
        let fsyncWas = GitRuntime.fsyncEnabled
        GitRuntime.setFsync(true)
        defer { GitRuntime.setFsync(fsyncWas) }
        XCTAssertEqual(PreparedFiles.unsynced(in: packDir), 2)
        repo.syncPreparedFiles()
        XCTAssertEqual(PreparedFiles.unsynced(in: packDir), 0)
        XCTAssertEqual(try temporaries(), made)
        let bytes = Array("prepared".utf8)
        try repo.bufferObjectsInMemory()
        let id = try repo.writeBlob(Data(bytes))
        repo.discardBufferedObjects()
        try repo.writePack([PackObject(oid: id, type: GIT_OBJECT_BLOB, bytes: bytes)], durable: true)
        XCTAssertEqual(try temporaries(), [], "the pack and its index were written to the prepared files")
        XCTAssertEqual(try Repository.open(dir).readBlob(id), Data(bytes))
        // Removed by someone else (git prune): a new file is made instead.
        try repo.prepareTemporaryFiles()
        for name in try temporaries() { unlink(packDir + "/" + name) }
        let other = Array("after prune".utf8)
        let otherID = try repo.writeBlob(Data(other))
        repo.discardBufferedObjects()
        try repo.writePack([PackObject(oid: otherID, type: GIT_OBJECT_BLOB, bytes: other)], durable: true)
        XCTAssertEqual(try Repository.open(dir).readBlob(otherID), Data(other))
        try repo.prepareTemporaryFiles()
        XCTAssertEqual(try temporaries().count, 2)
        repo.discardPreparedFiles()
        XCTAssertEqual(try temporaries(), [])
        let (fsck, code) = try git("fsck", "--strict")
        XCTAssertEqual(code, 0, fsck)
    }

    /// Merging deflates blobs only: trees and commits (mostly object ids, which do not
    /// compress) stay stored until `compact`; git reads all of them.
    func testMergingDeflatesBlobsAndKeepsTreesAndCommitsStored() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var parent: OID?
        var tree = try repo.emptyTree()
        let text = String(repeating: "a message that compresses well, ", count: 40)
        for i in 0..<3 {
            let blob = try repo.writeBlob(Data("\(i) \(text)".utf8))
            tree = try repo.updateTree(tree, [.upsert("chats/\(i)/message.json", blob)])
            let commit = try repo.createCommit(tree: tree, parents: parent.map { [$0] } ?? [],
                                               author: Signature(name: "t", email: "t@example.com", time: 1_700_000_000 + Int64(i)),
                                               message: "change \(i)")
            parent = commit
            XCTAssertTrue(try repo.writePack(repo.takeBufferedObjects()))
        }
        try repo.compareAndSwapReference("refs/heads/main", to: parent!, expected: nil, message: "test")
        XCTAssertEqual(repo.packFiles().count, 3)
        let merged = try XCTUnwrap(try repo.concatenatePacks(repo.packFiles()))
        let (out, code) = try git("verify-pack", "-v", merged.indexPath)
        XCTAssertEqual(code, 0, out)
        var seen: [String: Int] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 5, f[0].count == 40, let size = Int(f[2]), let packed = Int(f[3]) else { continue }
            let type = String(f[1])
            seen[type, default: 0] += 1
            if type == "blob" { XCTAssertLessThan(packed, size / 4, "blobs are deflated when merged") }
            else { XCTAssertGreaterThan(packed, size, "\(type)s stay stored when merged") }
        }
        XCTAssertEqual(seen["blob"], 3)
        XCTAssertEqual(seen["commit"], 3)
        XCTAssertGreaterThanOrEqual(seen["tree"] ?? 0, 6)
        let (fsck, fsckCode) = try git("fsck", "--strict", "--full", "--no-dangling")
        XCTAssertEqual(fsckCode, 0, fsck)
        let (log, logCode) = try git("log", "--format=%s", "main")
        XCTAssertEqual(logCode, 0)
        XCTAssertEqual(log, "change 2\nchange 1\nchange 0\n")
    }

    /// Deltas in git's format: applying one to its base gives the target back, for edits at the
    /// start, middle and end, repeats, long copies, and texts with nothing in common.
    func testDeltasRebuildTheirTarget() throws {
        var rng = SystemRandomNumberGenerator()
        func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        let text = Array((0..<400).map { "entry \($0): some words that repeat\n" }.joined().utf8)
        var pairs: [([UInt8], [UInt8])] = [
            (text, text),
            (text, Array(text[100...]) + random(30)),
            (text, random(50) + text + random(7)),
            (text, Array(text[..<5000]) + random(20) + Array(text[5000...])),
            (text, Array(text[8000...]) + Array(text[..<8000])),
            (random(300), random(300)),
            ([], random(10)),
            (random(10), []),
            (Array(repeating: 7, count: 200_000), Array(repeating: 7, count: 150_000) + random(3)),
        ]
        for _ in 0..<200 {
            var target = text
            for _ in 0..<Int.random(in: 1...5) {
                let at = Int.random(in: 0..<target.count)
                switch Int.random(in: 0..<3) {
                case 0: target.insert(contentsOf: random(Int.random(in: 1...300)), at: at)
                case 1: target.removeSubrange(at..<min(target.count, at + Int.random(in: 1...500)))
                default: target[at] ^= 0xFF
                }
            }
            pairs.append((text, target))
        }
        for (base, target) in pairs {
            let index = DeltaIndex(base)
            let delta = try XCTUnwrap(index.delta(to: target, limit: .max))
            XCTAssertEqual(PackReader.apply(delta, to: base), target)
        }
        // Similar texts make small deltas; a limit it cannot meet gives nil.
        let edited = Array(text[..<6000]) + Array("changed".utf8) + Array(text[6000...])
        let delta = try XCTUnwrap(DeltaIndex(text).delta(to: edited, limit: .max))
        XCTAssertLessThan(delta.count, 40)
        XCTAssertNil(DeltaIndex(text).delta(to: edited, limit: delta.count))
        XCTAssertNil(PackReader.apply(delta, to: Array(text.dropLast())), "a delta for another base is refused")
    }

    /// Compaction's pack: every object reachable from the refs (a branch, a side branch merged
    /// in, an annotated tag), its trees as deltas against the tree at the same path in the
    /// commit after, readable by git, libgit2 and the pack reader alike.
    func testHistoryPackKeepsEveryObjectWithDeltasAlongPaths() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        var tree = try repo.emptyTree()
        var parent: OID?
        var commits: [OID] = []
        for i in 0..<80 {
            var updates: [TreeUpdate] = [.upsert("docs/\(i % 4)/\(i % 3)/m\(i).json", try repo.writeBlob(Data("{\"id\": \"m\(i)\", \"text\": \"message number \(i), about the same as the others\"}\n".utf8)))]
            updates.append(.upsert("index.json", try repo.writeBlob(Data((0...i).map { "line \($0)\n" }.joined().utf8))))
            if i % 10 == 9 { updates.append(.remove("docs/\((i - 5) % 4)/\((i - 5) % 3)/m\(i - 5).json")) }
            tree = try repo.updateTree(tree, updates)
            let c = try repo.createCommit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig(), message: "change \(i)")
            try repo.compareAndSwapReference("refs/heads/main", to: c, expected: parent, message: "x")
            parent = c
            commits.append(c)
        }
        XCTAssertEqual(try git("checkout", "-q", "-f", "main").1, 0)
        XCTAssertEqual(try git("-c", "user.name=T", "-c", "user.email=t@e", "tag", "-a", "v1", "-m", "release", commits[40].hex).1, 0)
        XCTAssertEqual(try git("branch", "side", commits[60].hex).1, 0)
        XCTAssertEqual(try git("-c", "user.name=T", "-c", "user.email=t@e", "checkout", "-q", "side").1, 0)
        try "side".write(toFile: dir + "/side.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try git("add", "side.txt").1, 0)
        XCTAssertEqual(try git("-c", "user.name=T", "-c", "user.email=t@e", "commit", "-q", "-m", "side").1, 0)
        XCTAssertEqual(try git("-c", "user.name=T", "-c", "user.email=t@e", "checkout", "-q", "main").1, 0)
        XCTAssertEqual(try git("-c", "user.name=T", "-c", "user.email=t@e", "merge", "-q", "--no-edit", "side").1, 0)
        let (listed, listCode) = try git("rev-list", "--objects", "--all")
        XCTAssertEqual(listCode, 0, listed)
        let oids = listed.split(separator: "\n").compactMap { OID(hex: String($0.prefix(40))) }
        let plain = try Repository.open(dir)
        let before = try oids.map { try plain.readObject($0) }
        // An unreachable object older than the grace period goes; the reachable ones all stay.
        let stray = try plain.writeBlob(Data("unreachable".utf8))
        let refs = try repo.referenceNames(glob: "refs/*")
        let tips = try refs.compactMap { try repo.referenceTarget($0) }
        XCTAssertTrue(refs.contains("refs/tags/v1"))

        let pack = try XCTUnwrap(try repo.packReachable(from: tips, grace: -1))
        XCTAssertEqual(repo.packFiles().map(\.packPath), [pack.packPath])
        XCTAssertEqual(repo.looseObjectCount(), 0)
        XCTAssertEqual(pack.objectCount, Set(oids).count)
        let (fsck, fsckCode) = try git("fsck", "--strict", "--full", "--no-dangling")
        XCTAssertEqual(fsckCode, 0, fsck)
        let (verify, verifyCode) = try git("verify-pack", "-v", pack.indexPath)
        XCTAssertEqual(verifyCode, 0, verify)
        // verify-pack lists a delta with its depth and base: 7 columns.
        let rows = verify.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        let trees = rows.filter { $0.count >= 5 && $0[1] == "tree" }
        let deltaTrees = trees.filter { $0.count == 7 }
        XCTAssertGreaterThan(deltaTrees.count * 10, trees.count * 8, "most trees are deltas: \(deltaTrees.count) of \(trees.count)")
        XCTAssertGreaterThan(rows.filter { $0.count == 7 && $0[1] == "commit" }.count, 60)
        XCTAssertThrowsError(try Repository.open(dir).readObject(stray))

        let fresh = try Repository.open(dir)
        for (oid, object) in zip(oids, before) {
            let after = try fresh.readObject(oid)
            XCTAssertEqual(after.type, object.type, oid.hex)
            XCTAssertEqual(after.bytes, object.bytes, oid.hex)
        }
        // The pack reader applies the deltas itself and agrees.
        let reader = PackReader(packDirectory: fresh.packDirectory)
        var resolved = 0
        for (oid, object) in zip(oids, before) {
            let bytes = try XCTUnwrap(reader.read(oid) { Array($0) }, oid.hex)
            XCTAssertEqual(bytes, object.bytes, oid.hex)
            resolved += 1
        }
        XCTAssertEqual(resolved, oids.count)
        let (shown, _) = try git("show", "v1:index.json")
        XCTAssertEqual(shown, (0...40).map { "line \($0)\n" }.joined())
        // Compacting again changes nothing that can be read.
        let again = try XCTUnwrap(try fresh.packReachable(from: tips, grace: -1))
        XCTAssertEqual(again.objectCount, pack.objectCount)
        XCTAssertEqual(try git("fsck", "--strict", "--full", "--no-dangling").1, 0)
    }

    /// The pack reader's index search (guessing where an id lies from its first bytes, then
    /// halving) finds every object of a large pack at the offset git gives, and nothing for ids
    /// the pack does not hold, also ids next to ones it holds.
    func testPackIndexSearchFindsEveryObjectAtGitsOffsetAndNothingElse() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var oids: [OID] = []
        for i in 0..<20_000 { oids.append(try repo.writeBlob(Data("object \(i)".utf8))) }
        XCTAssertTrue(try repo.flushObjects())
        let pack = try XCTUnwrap(repo.packFiles().first)
        let (verify, code) = try git("verify-pack", "-v", pack.indexPath)
        XCTAssertEqual(code, 0, verify)
        var offsets: [String: Int] = [:]
        for row in verify.split(separator: "\n") {
            let f = row.split(separator: " ", omittingEmptySubsequences: true)
            if f.count >= 5, f[0].count == 40, let offset = Int(f[4]) { offsets[String(f[0])] = offset }
        }
        XCTAssertEqual(offsets.count, oids.count)
        let reader = PackReader(packDirectory: repo.packDirectory)
        for oid in oids {
            XCTAssertEqual(reader.locate(oid)?.offset, offsets[oid.hex], oid.hex)
        }
        // Ids one above and one below held ones (last byte changed), the lowest and highest
        // ids there can be, and ids whose first byte no held id has.
        var absent: [OID] = [OID(hex: String(repeating: "0", count: 40))!, OID(hex: String(repeating: "f", count: 40))!]
        for oid in oids.prefix(500) {
            for change in [1, 255] {
                var raw = oid.raw
                raw.id.19 = raw.id.19 &+ UInt8(change)
                absent.append(OID(raw))
            }
        }
        let held = Set(oids.map(\.hex))
        for oid in absent where !held.contains(oid.hex) {
            XCTAssertNil(reader.locate(oid), oid.hex)
        }

        // An entry whose header says one byte fewer or more than its data inflates to is not
        // read (zlib is given room past the stated size, and the size must come out exact).
        let victim = oids[7], neighbour = oids[8]
        let offset = try XCTUnwrap(offsets[victim.hex])
        XCTAssertEqual(try repo.readBlob(victim), Data("object 7".utf8))
        XCTAssertEqual(chmod(pack.packPath, 0o644), 0)
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: pack.packPath))
        XCTAssertEqual(bytes[offset], 0x38, "a blob of 8 bytes: type 3, size 8, one header byte")
        for header: UInt8 in [0x37, 0x39] {
            bytes[offset] = header
            try bytes.write(to: URL(fileURLWithPath: pack.packPath))
            let damaged = PackReader(packDirectory: repo.packDirectory)
            XCTAssertNil(damaged.read(victim) { Array($0) }, "header \(header)")
            XCTAssertEqual(damaged.read(neighbour) { Data($0) }, Data("object 8".utf8))
        }
    }

    /// Names added one change at a time go where git's order puts them (a binary search in
    /// the folder's entries, not a sort), files and folders alike, and so do many added in one
    /// change and a file that becomes a folder of the same name; git fsck --strict finds every
    /// tree in order.
    func testNamesAddedOneAtATimeKeepGitsOrder() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        let blob = try repo.writeBlob(Data("x\n".utf8))
        var names: [String] = []
        for stem in ["n", "n-1", "n.txt", "n0", "na", "m", "o", "n_"] {
            names += [stem, stem + "/f", stem + "-x/f", stem + ".json"]
        }
        var rng = SystemRandomNumberGenerator()
        var tree = try repo.emptyTree()
        var added = Set<String>()
        for name in names.shuffled(using: &rng) {
            // A name that is a file already cannot hold a file under it (and the other way).
            let top = String(name.split(separator: "/")[0])
            if name.contains("/") ? added.contains(top) : added.contains(top + "/") { continue }
            tree = try repo.updateTree(tree, [.upsert(name, blob)])
            added.insert(name.contains("/") ? top + "/" : top)
        }
        // Many new names in one change (sorted in with the rest): files and folders.
        var bulk: [TreeUpdate] = []
        for stem in ["p", "p-1", "p.txt", "p0", "pa", "l", "q", "p_"] {
            bulk += [.upsert(stem, blob), .upsert(stem + "-d/f", blob), .upsert(stem + ".md", blob)]
            added.formUnion([stem, stem + "-d/", stem + ".md"])
        }
        tree = try repo.updateTree(tree, bulk.shuffled(using: &rng))
        // A file that becomes a folder of the same name, in one change.
        let file = try XCTUnwrap(added.first { !$0.hasSuffix("/") })
        tree = try repo.updateTree(tree, [.remove(file), .upsert(file + "/inner", blob)])
        XCTAssertEqual(try repo.entry(in: tree, path: file + "/inner")?.oid, blob)
        // Empty parts of a path are skipped; a file under a file in one change is refused.
        tree = try repo.updateTree(tree, [.upsert("r//s/", blob)])
        added.insert("r/")
        XCTAssertEqual(try repo.entry(in: tree, path: "r/s")?.oid, blob)
        XCTAssertThrowsError(try repo.updateTree(tree, [.upsert("z", blob), .upsert("z/y", blob)])) {
            XCTAssertTrue("\($0)".contains("z/y puts a file under a file"), "\($0)")
        }
        try commitOnMainAndFsck(repo, tree)
        let (listed, _) = try git("ls-tree", "--name-only", "main")
        XCTAssertEqual(listed.split(separator: "\n").count, added.count)
    }

    /// Finding an entry by path (from the trees the handle keeps, not through libgit2) finds
    /// what libgit2's `git_tree_entry_bypath` and the git command find, for files, folders,
    /// an executable, a symbolic link and a submodule, and nothing where they find nothing.
    func testEntriesByPathAgreeWithLibgit2AndGit() throws {
        _ = try Repository.create(at: dir, initialBranch: "main")
        try FileManager.default.createDirectory(atPath: dir + "/dir/sub", withIntermediateDirectories: true)
        for (path, text) in [("a.txt", "a"), ("dir/b.txt", "b"), ("dir/sub/c.txt", "c"), ("dir.txt", "d"), ("dir-x", "e"), ("run.sh", "#!/bin/sh\n")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/" + path))
        }
        chmod(dir + "/run.sh", 0o755)
        symlink("a.txt", dir + "/link")
        _ = try git("add", "-A")
        _ = try git("update-index", "--add", "--cacheinfo", "160000,1111111111111111111111111111111111111111,mod")
        let (_, committed) = try git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "t")
        XCTAssertEqual(committed, 0)
        let (treeHex, _) = try git("rev-parse", "HEAD^{tree}")
        let root = try XCTUnwrap(OID(hex: treeHex.trimmingCharacters(in: .whitespacesAndNewlines)))
        let repo = try Repository.open(dir)
        let paths = ["a.txt", "dir", "dir/", "dir/b.txt", "dir/sub", "dir/sub/", "dir/sub/c.txt", "dir.txt", "dir-x", "run.sh",
                     "link", "mod", "mod/x", "mod/", "a.txt/", "a.txt/x", "dir/sub/c.txt/", "dir//b.txt", "/a.txt", "", "/", "//",
                     "nope", "dir/nope", "dir/sub/nope/x", "di", "dir/b", "dir/sub/c.txt/x", "dir/./b.txt", "dir/../a.txt"]
        var found = 0
        for path in paths {
            // libgit2's answer.
            var tree: OpaquePointer?
            var raw = root.raw
            XCTAssertEqual(git_tree_lookup(&tree, repo.pointer, &raw), 0)
            var e: OpaquePointer?
            let code = git_tree_entry_bypath(&e, tree, path)
            let expected: (String, OID, EntryKind)? = code == 0 ? (String(cString: git_tree_entry_name(e)), OID(git_tree_entry_id(e)!.pointee), {
                switch git_tree_entry_type(e) {
                case GIT_OBJECT_BLOB: return EntryKind.blob
                case GIT_OBJECT_TREE: return EntryKind.tree
                default: return EntryKind.other
                }
            }()) : nil
            if code == 0 { git_tree_entry_free(e) } else { XCTAssertEqual(code, GIT_ENOTFOUND.rawValue, path) }
            git_tree_free(tree)
            // Asked twice: once reading the trees, once from those kept.
            for _ in 0..<2 {
                let got = try repo.entry(in: root, path: path)
                XCTAssertEqual(got?.name, expected?.0, "path \(path)")
                XCTAssertEqual(got?.oid, expected?.1, "path \(path)")
                XCTAssertEqual(got?.kind, expected?.2, "path \(path)")
            }
            // The git command's answer, for the paths it takes as they are.
            if let got = try repo.entry(in: root, path: path), !path.hasSuffix("/") {
                found += 1
                let (hex, status) = try git("rev-parse", "HEAD:" + path)
                XCTAssertEqual(status, 0, path)
                XCTAssertEqual(hex.trimmingCharacters(in: .whitespacesAndNewlines), got.oid.hex, path)
            }
        }
        XCTAssertEqual(found, 10)
    }

    /// The trees a handle keeps are two generations; lookups and changes stay right while
    /// generations turn over many times (limits lowered to a few trees), checked against a
    /// record of every file and by git.
    func testKeptTreesTurnOverWithoutWrongAnswers() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        repo.keptTreeLimits = (trees: 6, entries: 40)
        var rng = SystemRandomNumberGenerator()
        var files: [String: OID] = [:]
        var tree = try repo.emptyTree()
        for i in 0..<400 {
            let path = "m/\(Int.random(in: 0..<4, using: &rng))/\(Int.random(in: 0..<4, using: &rng))/f\(i % 97).json"
            if Bool.random(using: &rng), let gone = files.keys.randomElement(using: &rng) {
                tree = try repo.updateTree(tree, [.remove(gone)])
                files[gone] = nil
                XCTAssertNil(try repo.entry(in: tree, path: gone))
            }
            let blob = try repo.writeBlob(Data("\(i)\n".utf8))
            tree = try repo.updateTree(tree, [.upsert(path, blob)])
            files[path] = blob
            for probe in files.keys.shuffled(using: &rng).prefix(3) + [path] {
                XCTAssertEqual(try repo.entry(in: tree, path: probe)?.oid, files[probe], probe)
            }
        }
        try commitOnMainAndFsck(repo, tree)
        let (listed, _) = try git("ls-tree", "-r", "main")
        var listedFiles: [String: String] = [:]
        for line in listed.split(separator: "\n") {
            let parts = line.split(separator: "\t")
            listedFiles[String(parts[1])] = String(parts[0].split(separator: " ")[2])
        }
        XCTAssertEqual(listedFiles, files.mapValues(\.hex))
    }

    /// A folder's previous version is dropped from the kept trees when a change replaces it,
    /// so the trees in use stay kept: with room for a few hundred trees, a chat-like layout of
    /// 273 folders takes 1,500 more changes without reading a tree through libgit2.
    func testReplacedTreesMakeRoomForTheOnesInUse() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        repo.keptTreeLimits = (trees: 600, entries: 8_000)
        let blob = try repo.writeBlob(Data("x\n".utf8))
        var tree = try repo.emptyTree()
        func change(_ i: Int) throws {
            let path = "m/\(String(i % 16, radix: 16))/\(String(i / 16 % 16, radix: 16))/n\(i).json"
            XCTAssertNil(try repo.entry(in: tree, path: path))
            tree = try repo.updateTree(tree, [.upsert(path, blob)])
        }
        for i in 0..<2_000 { try change(i) }
        let before = repo.keptTreeMisses
        for i in 2_000..<3_500 { try change(i) }
        XCTAssertEqual(repo.keptTreeMisses, before)
        XCTAssertEqual(try repo.entry(in: tree, path: "m/f/5/n95.json")?.oid, blob)
    }

    /// What libgit2's tree-to-tree diff reports (with its default options), as `TreeChange`s.
    func libgit2Diff(_ repo: Repository, _ old: OID?, _ new: OID?) -> [TreeChange] {
        func tree(_ oid: OID?) -> OpaquePointer? {
            guard let oid else { return nil }
            var t: OpaquePointer?
            var raw = oid.raw
            XCTAssertEqual(git_tree_lookup(&t, repo.pointer, &raw), 0)
            return t
        }
        let a = tree(old), b = tree(new)
        defer { git_tree_free(a); git_tree_free(b) }
        var diff: OpaquePointer?
        XCTAssertEqual(git_diff_tree_to_tree(&diff, repo.pointer, a, b, nil), 0)
        defer { git_diff_free(diff) }
        return (0..<git_diff_num_deltas(diff)).map { i in
            let d = git_diff_get_delta(diff, i)!.pointee
            let status: TreeChange.Status = d.status == GIT_DELTA_ADDED ? .added : (d.status == GIT_DELTA_DELETED ? .deleted : .modified)
            return TreeChange(path: String(cString: (d.new_file.path ?? d.old_file.path)!), status: status,
                              oldOID: status == .added ? nil : OID(d.old_file.id), newOID: status == .deleted ? nil : OID(d.new_file.id))
        }
    }

    /// Diffs of trees (walked through the kept trees, into differing folders only) are what
    /// libgit2 reports: random changes to nested folders (files added, changed, removed, a file
    /// becoming a folder and back, whole folders going), in both directions and from nothing.
    func testTreeDiffsAgreeWithLibgit2() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var rng = SystemRandomNumberGenerator()
        let names = ["a", "a.txt", "a-b", "a0", "b", "m.json", "z"]
        func randomPath() -> String {
            (0..<Int.random(in: 1...3, using: &rng)).map { _ in names.randomElement(using: &rng)! }.joined(separator: "/")
        }
        var tree = try repo.emptyTree()
        var trees = [tree]
        var compared = 0
        for i in 0..<300 {
            var updates: [TreeUpdate] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let p = randomPath()
                updates.append(Bool.random(using: &rng) ? .remove(p) : .upsert(p, try repo.writeBlob(Data("\(i) \(p)\n".utf8))))
            }
            // A path that is a file now cannot take a file below it (and the other way): such
            // changes are refused, and skipped here.
            guard let next = try? repo.updateTree(tree, updates) else { continue }
            trees.append(next)
            let earlier = trees.randomElement(using: &rng)!
            for (x, y) in [(tree, next), (next, tree), (earlier, next), (nil, next), (next, nil)] as [(OID?, OID?)] {
                XCTAssertEqual(try repo.diff(from: x, to: y), libgit2Diff(repo, x, y), "\(String(describing: x)) → \(String(describing: y))")
                compared += 1
            }
            tree = next
        }
        XCTAssertGreaterThan(compared, 500)
    }

    /// The same for kinds of entries git has and chatsync does not write: an executable, a
    /// symbolic link and a submodule, changing mode, kind and id between two commits.
    func testTreeDiffsOfOtherKindsAgreeWithLibgit2() throws {
        _ = try Repository.create(at: dir, initialBranch: "main")
        try FileManager.default.createDirectory(atPath: dir + "/dir", withIntermediateDirectories: true)
        for (path, text) in [("a.txt", "a"), ("run.sh", "#!/bin/sh\n"), ("a", "file a"), ("dir/x", "x"), ("plain", "p")] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/" + path))
        }
        symlink("a.txt", dir + "/link")
        _ = try git("add", "-A")
        _ = try git("update-index", "--add", "--cacheinfo", "160000,1111111111111111111111111111111111111111,mod")
        _ = try git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "one")
        // The executable bit, a link that becomes a file, a file that becomes a link, a file
        // that becomes a folder, a folder that goes, a submodule that moves.
        chmod(dir + "/run.sh", 0o755)
        try FileManager.default.removeItem(atPath: dir + "/link")
        try Data("now a file".utf8).write(to: URL(fileURLWithPath: dir + "/link"))
        try FileManager.default.removeItem(atPath: dir + "/plain")
        symlink("a.txt", dir + "/plain")
        try FileManager.default.removeItem(atPath: dir + "/a")
        try FileManager.default.createDirectory(atPath: dir + "/a", withIntermediateDirectories: true)
        try Data("y".utf8).write(to: URL(fileURLWithPath: dir + "/a/y"))
        try FileManager.default.removeItem(atPath: dir + "/dir")
        _ = try git("add", "-A")
        _ = try git("update-index", "--cacheinfo", "160000,2222222222222222222222222222222222222222,mod")
        let (_, committed) = try git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "two")
        XCTAssertEqual(committed, 0)
        let repo = try Repository.open(dir)
        let one = try repo.commit(repo.revparse("HEAD~1")).tree
        let two = try repo.commit(repo.revparse("HEAD")).tree
        for (x, y) in [(one, two), (two, one)] {
            let ours = try repo.diff(from: x, to: y)
            XCTAssertEqual(ours, libgit2Diff(repo, x, y))
            XCTAssertEqual(ours.count, 9, "\(ours.map(\.path))")
        }
    }

    /// SHA-1 with the processor's SHA instructions and in plain C gives mbedtls's digests, for
    /// lengths around every block boundary and input fed in pieces of every size.
    func testSHA1AgreesWithMbedtlsBothWays() throws {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<5_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        func mbedtls(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var digest = [UInt8](repeating: 0, count: 20)
            _ = Array(bytes).withUnsafeBufferPointer { mbedtls_sha1_ret($0.baseAddress, $0.count, &digest) }
            return digest
        }
        defer { chatsync_sha1_force_portable(0) }
        var ways = 0
        for portable in [false, true] {
            chatsync_sha1_force_portable(portable ? 1 : 0)
            if !portable && chatsync_sha1_accelerated() == 0 { continue }
            ways += 1
            XCTAssertEqual(chatsync_sha1_accelerated() == 1, !portable)
            var lengths = Array(0...200) + [255, 256, 257, 447, 448, 449, 511, 512, 513, 4_999, 5_000]
            lengths += (0..<50).map { _ in Int.random(in: 0...5_000, using: &rng) }
            for n in lengths {
                var h = SHA1Hasher()
                var at = 0
                while at < n {
                    let piece = min(n - at, Int.random(in: 1...130, using: &rng))
                    data[at..<(at + piece)].withUnsafeBytes { h.update($0) }
                    at += piece
                }
                XCTAssertEqual(h.finish(), mbedtls(data[0..<n]), "length \(n), portable \(portable)")
            }
        }
        // Both ways were tried where the processor has the instructions (this machine has).
        let hasInstructions = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains(" sha_ni") ?? false
        XCTAssertEqual(ways, hasInstructions ? 2 : 1)
    }

    /// Object ids are hashed here (not by `git_odb_hash`): the same ids, for every kind and
    /// for sizes whose decimal length changes.
    /// Ids are equal exactly when all twenty bytes are: one differing byte anywhere makes them
    /// differ, for ==, for sets, and for libgit2's own comparison.
    func testIDsDifferingInAnyOneByteAreNotEqual() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            var raw = git_oid()
            withUnsafeMutableBytes(of: &raw.id) { for i in 0..<20 { $0[i] = UInt8.random(in: 0...255, using: &rng) } }
            let id = OID(raw)
            XCTAssertEqual(id, OID(raw))
            XCTAssertEqual(id, OID(hex: id.hex))
            for position in 0..<20 {
                var other = raw
                withUnsafeMutableBytes(of: &other.id) { $0[position] ^= UInt8.random(in: 1...255, using: &rng) }
                XCTAssertNotEqual(id, OID(other), "byte \(position)")
                XCTAssertEqual(Set([id, OID(other), OID(raw)]).count, 2)
                var a = raw, b = other
                XCTAssertNotEqual(git_oid_cmp(&a, &b), 0)
            }
        }
    }

    /// A commit made here is byte for byte the one libgit2's `git_commit_create` makes (same
    /// id), for no, one and two parents, signatures that need trimming, and messages with line
    /// breaks and non-ASCII text; a signature git refuses is refused.
    func testCommitsAreTheOnesLibgit2Makes() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let t1 = try repo.updateTree(repo.emptyTree(), [.upsert("a.txt", repo.writeBlob(Data("a\n".utf8)))])
        let t2 = try repo.updateTree(t1, [.upsert("b/c.txt", repo.writeBlob(Data("c\n".utf8)))])
        let root = try repo.createCommit(tree: t1, parents: [], author: sig(), message: "root")
        let other = try repo.createCommit(tree: t2, parents: [root], author: sig(), message: "other")
        let signatures = [sig(), Signature(name: "  Zoë Ünïcode ", email: " z@例え.jp ", time: 0),
                          Signature(name: "A", email: "a@b", time: 4_102_444_800), Signature(name: "x y", email: "x@y", time: 1)]
        let messages = ["one line", "subject\n\nbody with\nlines\n", "ünïcode ✓ 中文\n", ""]
        for (i, author) in signatures.enumerated() {
            let committer = signatures[(i + 1) % signatures.count]
            for parents in [[], [root], [root, other]] {
                let message = messages[(i + parents.count) % messages.count]
                let ours = try repo.createCommit(tree: t2, parents: parents, author: author, committer: committer, message: message)
                var theirs = git_oid()
                func signature(_ s: Signature) throws -> UnsafeMutablePointer<git_signature> {
                    var out: UnsafeMutablePointer<git_signature>?
                    XCTAssertEqual(git_signature_new(&out, s.name, s.email, git_time_t(s.time), 0), 0, "\(s)")
                    return try XCTUnwrap(out)
                }
                let a = try signature(author), c = try signature(committer)
                defer { git_signature_free(a); git_signature_free(c) }
                var treeObject: OpaquePointer?
                var treeID = t2.raw
                XCTAssertEqual(git_tree_lookup(&treeObject, repo.pointer, &treeID), 0)
                defer { git_tree_free(treeObject) }
                var parentObjects: [OpaquePointer?] = []
                for p in parents {
                    var object: OpaquePointer?
                    var id = p.raw
                    XCTAssertEqual(git_commit_lookup(&object, repo.pointer, &id), 0)
                    parentObjects.append(object)
                }
                defer { parentObjects.forEach { git_commit_free($0) } }
                XCTAssertEqual(git_commit_create(&theirs, repo.pointer, nil, a, c, "UTF-8", message, treeObject, parentObjects.count, &parentObjects), 0)
                XCTAssertEqual(ours, OID(theirs), "author \(author), \(parents.count) parent(s), message \(message.debugDescription)")
            }
        }
        XCTAssertThrowsError(try repo.createCommit(tree: t1, parents: [], author: Signature(name: "a <b>", email: "c", time: 0), message: "m"))
        XCTAssertThrowsError(try repo.createCommit(tree: t1, parents: [], author: Signature(name: "  ", email: "c", time: 0), message: "m"))
    }

    func testObjectIDsAreGitsIDs() throws {
        var rng = SystemRandomNumberGenerator()
        for size in [0, 1, 9, 10, 55, 56, 63, 64, 99, 100, 1_000, 65_537, 1_000_000] {
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for type in [GIT_OBJECT_BLOB, GIT_OBJECT_TREE, GIT_OBJECT_COMMIT, GIT_OBJECT_TAG] {
                var expected = git_oid()
                bytes.withUnsafeBytes { XCTAssertEqual(git_odb_hash(&expected, $0.baseAddress, $0.count, type), 0) }
                let got = bytes.withUnsafeBytes { SHA1Hasher.objectID($0, type: type) }
                XCTAssertEqual(OID(got), OID(expected), "size \(size), type \(type)")
            }
        }
        // And by the git command, for a blob written through the in-memory buffer.
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        let text = "hello, ids\n"
        let oid = try repo.writeBlob(Data(text.utf8))
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/h.txt"))
        let (hex, _) = try git("hash-object", "h.txt")
        XCTAssertEqual(hex.trimmingCharacters(in: .whitespacesAndNewlines), oid.hex)
    }

    /// Reading many blobs at once (straight from the packs, on two threads) gives what libgit2
    /// reads, also for objects stored as deltas, in another pack, or loose.
    func testReadingManyBlobsAgreesWithLibgit2() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        var oids: [OID] = []
        let long = String(repeating: "a shared paragraph of text, ", count: 40)
        for batch in 0..<6 {
            for i in 0..<500 {
                oids.append(try repo.writeBlob(Data("\(long) blob \(batch)-\(i) \(String(repeating: "é", count: i % 40))".utf8)))
            }
            try repo.flushObjects()
        }
        // Two packs merged by libgit2 (with deltas), the rest whole; one object loose.
        let packs = repo.packFiles()
        try repo.mergePacks(Array(packs.prefix(2)))
        let plain = try Repository.open(dir)
        oids.append(try plain.writeBlob(Data("loose".utf8)))
        let expected = try oids.map { try plain.readBlob($0) }
        for threads in [1, 2] {
            let read = try repo.mapBlobs(oids, threads: threads) { Data($0) }
            XCTAssertEqual(read, expected, "\(threads) thread(s)")
        }
        XCTAssertEqual(try repo.mapBlobs(Array(oids.prefix(10)), threads: 2) { Data($0) }, Array(expected.prefix(10)))

        // Walking a big tree on two threads finds every blob with the suffix, once.
        var tree = try repo.emptyTree()
        var updates: [TreeUpdate] = []
        for (i, oid) in oids.enumerated() { updates.append(.upsert("m/\(String(i % 16, radix: 16))/\(i % 7)/\(i).json", oid)) }
        updates.append(.upsert("m/top.json", oids[0]))
        updates.append(.upsert("m/0/skip.txt", oids[1]))
        tree = try repo.updateTree(tree, updates)
        try repo.flushObjects()
        let folder = try XCTUnwrap(try repo.entry(in: tree, path: "m")).oid
        let walked = try repo.mapBlobs(under: folder, suffix: ".json", threads: 2) { Data($0) }
        XCTAssertEqual(walked.count, oids.count + 1)

        // Objects still only in this handle's memory buffer are read too (one thread then).
        var fresh: [OID] = []
        var memoryTree = try repo.emptyTree()
        for i in 0..<3000 { fresh.append(try repo.writeBlob(Data("only in memory \(i)".utf8))) }
        memoryTree = try repo.updateTree(memoryTree, fresh.enumerated().map { .upsert("\($0.offset % 16)/\($0.offset).json", $0.element) })
        let fromMemory = try repo.mapBlobs(under: memoryTree, suffix: ".json", threads: 2) { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(Set(fromMemory), Set((0..<3000).map { "only in memory \($0)" }))
        XCTAssertEqual(try repo.mapBlobs(fresh, threads: 2) { String(decoding: $0, as: UTF8.self) }.count, 3000)
        repo.discardBufferedObjects()
        XCTAssertEqual(walked.sorted { $0.lexicographicallyPrecedes($1) }, (expected + [expected[0]]).sorted { $0.lexicographicallyPrecedes($1) })
    }

    func testSignaturesFollowGitsRules() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let t = try repo.emptyTree()
        XCTAssertThrowsError(try repo.createCommit(tree: t, parents: [], author: Signature(name: "A <b>", email: "a@b", time: 1), message: "m"))
        XCTAssertThrowsError(try repo.createCommit(tree: t, parents: [], author: Signature(name: "  ", email: "a@b", time: 1), message: "m"))
        let c = try repo.createCommit(tree: t, parents: [], author: Signature(name: " Ann ", email: "ann@example.com", time: 1_700_000_000), message: "m")
        try repo.compareAndSwapReference("refs/heads/main", to: c, expected: nil, message: "m")
        let (out, code) = try git("cat-file", "-p", "main")
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.contains("author Ann <ann@example.com> 1700000000 +0000\n"), out)
        // Plain names take a quicker way to the same line.
        let d = try repo.createCommit(tree: t, parents: [c], author: Signature(name: "Bob Lee", email: "bob@example.com", time: 1_700_000_001), message: "m")
        try repo.compareAndSwapReference("refs/heads/main", to: d, expected: c, message: "m")
        XCTAssertTrue(try git("cat-file", "-p", "main").0.contains("author Bob Lee <bob@example.com> 1700000001 +0000\n"))
        XCTAssertThrowsError(try repo.createCommit(tree: t, parents: [], author: Signature(name: "Bob>", email: "a@b", time: 1), message: "m"))
        XCTAssertThrowsError(try repo.createCommit(tree: t, parents: [], author: Signature(name: "Bob", email: "a@\nb", time: 1), message: "m"))
        let (_, fsck) = try git("fsck", "--strict")
        XCTAssertEqual(fsck, 0)
    }

    func testRevparseAndDiff() throws {
        let repo = try Repository.create(at: dir, initialBranch: "main")
        let t0 = try repo.emptyTree()
        let t1 = try repo.updateTree(t0, [.upsert("x.json", repo.writeBlob(Data("1".utf8))), .upsert("y.json", repo.writeBlob(Data("2".utf8)))])
        let t2 = try repo.updateTree(t1, [.remove("x.json"), .upsert("y.json", repo.writeBlob(Data("3".utf8))), .upsert("z.json", repo.writeBlob(Data("4".utf8)))])
        let c1 = try repo.createCommit(tree: t1, parents: [], author: sig(), message: "1")
        let c2 = try repo.createCommit(tree: t2, parents: [c1], author: sig(), message: "2")
        try repo.compareAndSwapReference("refs/heads/main", to: c2, expected: nil, message: "x")
        XCTAssertEqual(try repo.revparse("HEAD~1"), c1)
        XCTAssertEqual(try repo.revparse(String(c2.hex.prefix(8))), c2)
        XCTAssertThrowsError(try repo.revparse("nope~3"))
        let changes = try repo.diff(from: t1, to: t2).sorted { $0.path < $1.path }
        XCTAssertEqual(changes.map(\.path), ["x.json", "y.json", "z.json"])
        XCTAssertEqual(changes.map(\.status), [.deleted, .modified, .added])
    }
}

final class TreeUpdateTests: XCTestCase {
    func testTreesAreBuiltInGitsOrderAndEmptyFoldersDisappear() throws {
        let dir = NSTemporaryDirectory() + "gitkit-tree-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repo = try Repository.create(at: dir, initialBranch: "main")
        try repo.bufferObjectsInMemory()
        let blob = try repo.writeBlob(Data("x\n".utf8))
        // Names whose order differs between "as files" and "as folders".
        var tree = try repo.updateTree(repo.emptyTree(), [
            .upsert("foo.txt", blob), .upsert("foo/bar.json", blob), .upsert("foo-bar", blob), .upsert("fo/o", blob),
            .upsert("a/b/c/d.json", blob), .upsert("a/b/e.json", blob), .upsert("z", blob),
        ])
        let sig = Signature(name: "t", email: "t@example.com", time: 1_700_000_000)
        var parent = try repo.createCommit(tree: tree, parents: [], author: sig, message: "1")
        tree = try repo.updateTree(tree, [.remove("a/b/c/d.json"), .upsert("foo/baz.json", blob), .remove("nothing/here")])
        XCTAssertNil(try repo.entry(in: tree, path: "a/b/c"), "an emptied folder disappears")
        XCTAssertNotNil(try repo.entry(in: tree, path: "a/b/e.json"))
        parent = try repo.createCommit(tree: tree, parents: [parent], author: sig, message: "2")
        tree = try repo.updateTree(tree, [.remove("foo")])
        XCTAssertNil(try repo.entry(in: tree, path: "foo/bar.json"), "removing a folder removes what is in it")
        XCTAssertNotNil(try repo.entry(in: tree, path: "foo.txt"))
        parent = try repo.createCommit(tree: tree, parents: [parent], author: sig, message: "3")
        XCTAssertThrowsError(try repo.updateTree(tree, [.upsert("z/under-a-file", blob)]))
        try repo.flushObjects()
        try repo.compareAndSwapReference("refs/heads/main", to: parent, expected: nil, message: "t")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-C", dir, "fsck", "--strict", "--no-dangling"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        XCTAssertFalse(text.contains("sorted"), text)
    }
}

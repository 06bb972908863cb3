import Foundation
import GitKit

/// Keeps the object database small and quick to read. Every batch of changes adds one small
/// pack; packs are merged geometrically (each kept pack bigger than all smaller ones
/// together), so the number of packs stays logarithmic in the store's size and every object is
/// rewritten only a logarithmic number of times. (With "twice as big" instead, each message
/// was rewritten 4.0, 5.6 and 7.2 times over 1,250, 10,000 and 100,000 batches, against 2.9,
/// 3.7 and 4.9, in a model of this policy with batches of 10 to 160 objects.) Merging copies
/// the packs' entries as they are (no delta search: that is `chatsync compact`'s job), so it
/// costs little more than reading and writing the bytes.
enum Compaction {
    /// Merges the small packs when there are more than `maxPacks`. Returns whether it merged.
    @discardableResult
    static func consolidateSmallPacks(repo: Repository, maxPacks: Int) throws -> Bool {
        let packs = repo.packFiles().filter { !$0.isKept }.sorted { $0.objectCount < $1.objectCount }
        guard packs.count > maxPacks else { return false }
        var merge: [PackFile] = []
        var sum = 0
        for p in packs {
            if merge.count < 2 || p.objectCount <= sum {
                merge.append(p)
                sum += p.objectCount
            } else {
                break
            }
        }
        // Packs that share an object (rare: two writers wrote the same object) go through
        // libgit2's pack builder, which writes each object once.
        if try repo.concatenatePacks(merge) == nil { try repo.mergePacks(merge) }
        return true
    }
}

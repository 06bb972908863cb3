import CSQLite
import ChatSync
import Foundation
import GitKit

/// SQLite with WAL and full sync, one connection: the database a user would otherwise pick.
/// Each append is one transaction: the next sequence number, then the insert.
final class SQLiteBaseline {
    private var db: OpaquePointer?
    private var insert: OpaquePointer?
    private var next: OpaquePointer?

    init(path: String) throws {
        guard sqlite3_open(path, &db) == SQLITE_OK else { throw ChatSyncError.storage("sqlite open") }
        for sql in ["PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                    "CREATE TABLE messages (id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, sequence_order INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (chat_id, sequence_order))"] {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw ChatSyncError.storage("sqlite: \(sql)") }
        }
        sqlite3_prepare_v2(db, "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)", -1, &insert, nil)
        sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(sequence_order), 0) + 1 FROM messages WHERE chat_id = ?", -1, &next, nil)
    }

    deinit {
        sqlite3_finalize(insert)
        sqlite3_finalize(next)
        sqlite3_close(db)
    }

    func append(chat: String, content: String) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", nil, nil, nil)
        sqlite3_bind_text(next, 1, chat, -1, chatsync_sqlite_transient())
        sqlite3_step(next)
        let seq = sqlite3_column_int64(next, 0)
        sqlite3_reset(next)
        sqlite3_bind_text(insert, 1, newID(), -1, chatsync_sqlite_transient())
        sqlite3_bind_text(insert, 2, chat, -1, chatsync_sqlite_transient())
        sqlite3_bind_int64(insert, 3, seq)
        sqlite3_bind_text(insert, 4, "user", -1, chatsync_sqlite_transient())
        sqlite3_bind_text(insert, 5, content, -1, chatsync_sqlite_transient())
        sqlite3_bind_text(insert, 6, Timestamp.now().rfc3339, -1, chatsync_sqlite_transient())
        sqlite3_step(insert)
        sqlite3_reset(insert)
        sqlite3_exec(db, "COMMIT", nil, nil, nil)
    }
}

/// libgit2 used the plain way: every object a loose file, fsync on, the same sharded layout,
/// one commit per append, the branch moved by compare-and-swap.
final class PlainLibgit2Baseline {
    let repo: Repository
    var tip: OID?
    var tree: OID

    init(path: String) throws {
        repo = try Repository.create(at: path, bare: true)
        tree = try repo.emptyTree()
    }

    func append(chat: String, content: String, n: Int) throws {
        let id = newID()
        let doc = Data(#"{"chat_id": "\#(chat)", "content": "\#(content)", "id": "\#(id)", "sequence_order": \#(n)}"#.utf8)
        let blob = try repo.writeBlob(doc)
        tree = try repo.updateTree(tree, [.upsert(Layout.message(chat, id), blob)])
        let sig = Signature(name: "bench", email: "bench@localhost", time: Int64(Date().timeIntervalSince1970))
        let commit = try repo.createCommit(tree: tree, parents: tip.map { [$0] } ?? [], author: sig, message: "add message #\(n)")
        try repo.compareAndSwapReference("refs/heads/main", to: commit, expected: tip, message: "append")
        tip = commit
    }
}

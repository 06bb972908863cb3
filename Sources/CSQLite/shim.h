#include <sqlite3.h>
/* SQLITE_TRANSIENT is a macro over a cast that does not import into Swift. */
static inline sqlite3_destructor_type chatsync_sqlite_transient(void) { return SQLITE_TRANSIENT; }

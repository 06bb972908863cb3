#ifndef CHATSYNC_LIBGIT2_SHIM_H
#define CHATSYNC_LIBGIT2_SHIM_H

#define GIT_DEPRECATE_HARD 1
#include <git2.h>
#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <git2/sys/repository.h>
/* zlib and mbedtls come with libgit2-dev (its dependencies zlib1g-dev and libmbedtls-dev):
   GitKit writes pack files itself (deflate, CRC-32, SHA-1). */
#include <zlib.h>
#include <mbedtls/sha1.h>
#include <string.h>

/* deflateInit is a macro; a stream is set up once and reset for each object (setting one up
   costs far more than deflating a small object). */
static inline int chatsync_deflate_init(z_stream *s, int level, int strategy) {
    memset(s, 0, sizeof *s);
    return deflateInit2(s, level, Z_DEFLATED, 15, 8, strategy);
}
static inline int chatsync_inflate_init(z_stream *s) {
    memset(s, 0, sizeof *s);
    return inflateInit(s);
}

/* git_libgit2_opts is variadic and does not import into Swift: one wrapper per option. */
static inline int chatsync_git_set_fsync(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_FSYNC_GITDIR, enabled);
}
static inline int chatsync_git_set_owner_validation(int enabled) {
    return git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, enabled);
}
static inline int chatsync_git_set_strict_object_creation(int enabled) {
    return git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, enabled);
}
static inline int chatsync_git_set_cache_object_limit(git_object_t type, long long bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_OBJECT_LIMIT, type, (size_t)bytes);
}
static inline int chatsync_git_set_mwindow_file_limit(long long files) {
    return git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, (size_t)files);
}
static inline int chatsync_git_set_cache_max_size(long long bytes) {
    return git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, (ssize_t)bytes);
}
static inline int chatsync_git_set_ssl_cert_locations(const char *file, const char *path) {
    return git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, file, path);
}

/* Call the function pointers of a git_odb_writepack (Swift cannot call them through the struct easily). */
static inline int chatsync_writepack_append(git_odb_writepack *wp, const void *data, size_t size, git_indexer_progress *stats) {
    return wp->append(wp, data, size, stats);
}
static inline int chatsync_writepack_commit(git_odb_writepack *wp, git_indexer_progress *stats) {
    return wp->commit(wp, stats);
}
static inline void chatsync_writepack_free(git_odb_writepack *wp) {
    wp->free(wp);
}

/* Write straight into an object backend (the in-memory pack), skipping git_odb_write's
   existence check, which rescans the pack folder for every new object. */
static inline int chatsync_backend_write(git_odb_backend *b, const git_oid *oid, const void *data, size_t len, git_object_t type) {
    return b->write(b, oid, data, len, type);
}

/* renameat2 (Linux 3.15+; glibc declares it only with _GNU_SOURCE): -1 with errno EINVAL or
   ENOSYS where the file system or the system cannot. 1 is RENAME_NOREPLACE, 2 RENAME_EXCHANGE. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
static inline int chatsync_renameat2(const char *from, const char *to, unsigned int flags) {
#if defined(__linux__) && defined(SYS_renameat2)
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
}

#endif

#ifndef CHATSYNC_SHA1_H
#define CHATSYNC_SHA1_H

#include <stddef.h>
#include <stdint.h>

/* SHA-1 for git object ids and pack checksums: with the processor's SHA instructions where it
   has them (x86-64 SHA-NI), else in plain C. */
typedef struct {
    uint32_t state[5];
    uint64_t length;       /* bytes hashed so far */
    uint8_t buffer[64];
    size_t used;           /* bytes waiting in buffer */
} chatsync_sha1;

void chatsync_sha1_init(chatsync_sha1 *c);
void chatsync_sha1_update(chatsync_sha1 *c, const void *data, size_t length);
void chatsync_sha1_final(chatsync_sha1 *c, uint8_t digest[20]);

/* Whether the SHA instructions are used (1) or plain C (0). */
int chatsync_sha1_accelerated(void);
/* For tests: 1 uses plain C even where the instructions exist; 0 goes back. */
void chatsync_sha1_force_portable(int on);

#endif

#include "csha1.h"
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include <cpuid.h>
#endif

static inline uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static inline uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* FIPS 180-4, section 6.1.2, one 64-byte block at a time. */
static void blocks_portable(uint32_t state[5], const uint8_t *data, size_t blocks) {
    while (blocks--) {
        uint32_t w[80];
        for (int t = 0; t < 16; t++) w[t] = load_be32(data + 4 * t);
        for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
        for (int t = 0; t < 80; t++) {
            uint32_t f, k;
            if (t < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (t < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (t < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t temp = rol(a, 5) + f + e + k + w[t];
            e = d; d = c; c = rol(b, 30); b = a; a = temp;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d; state[4] += e;
        data += 64;
    }
}

#if defined(__x86_64__)
/* The same with the SHA extensions: four rounds an instruction (sha1rnds4); sha1msg1,
   sha1msg2 and an xor make the next four words of the schedule from the sixteen before. The
   state is kept with A in the highest lane, words byte-swapped to it. */
__attribute__((target("sha,sse4.1,ssse3")))
static void blocks_accelerated(uint32_t state[5], const uint8_t *data, size_t blocks) {
    const __m128i swap = _mm_set_epi64x(0x0001020304050607ULL, 0x08090a0b0c0d0e0fULL);
    __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)state), 0x1B);
    __m128i e0 = _mm_set_epi32((int)state[4], 0, 0, 0);
    while (blocks--) {
        const __m128i abcd_start = abcd, e_start = e0;
        __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 0)), swap);
        __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16)), swap);
        __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 32)), swap);
        __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 48)), swap);
        __m128i e, prev;
        /* Rounds 0-3: E is added to the first words; later groups take E from the state four
           rounds back (sha1nexte). */
        e = _mm_add_epi32(e0, m0); prev = abcd; abcd = _mm_sha1rnds4_epu32(abcd, e, 0);
#define GROUP(m, f) do { e = _mm_sha1nexte_epu32(prev, m); prev = abcd; abcd = _mm_sha1rnds4_epu32(abcd, e, f); } while (0)
/* w[t..t+3] from w[t-16..t-13] (into), w[t-12..t-9], w[t-8..t-5] and w[t-4..t-1]. */
#define NEXT(into, b, c, d) into = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(into, b), c), d)
        GROUP(m1, 0);
        GROUP(m2, 0);
        GROUP(m3, 0);
        NEXT(m0, m1, m2, m3); GROUP(m0, 0);   /* rounds 16-19 */
        NEXT(m1, m2, m3, m0); GROUP(m1, 1);   /* 20-23 */
        NEXT(m2, m3, m0, m1); GROUP(m2, 1);
        NEXT(m3, m0, m1, m2); GROUP(m3, 1);
        NEXT(m0, m1, m2, m3); GROUP(m0, 1);
        NEXT(m1, m2, m3, m0); GROUP(m1, 1);   /* 36-39 */
        NEXT(m2, m3, m0, m1); GROUP(m2, 2);   /* 40-43 */
        NEXT(m3, m0, m1, m2); GROUP(m3, 2);
        NEXT(m0, m1, m2, m3); GROUP(m0, 2);
        NEXT(m1, m2, m3, m0); GROUP(m1, 2);
        NEXT(m2, m3, m0, m1); GROUP(m2, 2);   /* 56-59 */
        NEXT(m3, m0, m1, m2); GROUP(m3, 3);   /* 60-63 */
        NEXT(m0, m1, m2, m3); GROUP(m0, 3);
        NEXT(m1, m2, m3, m0); GROUP(m1, 3);
        NEXT(m2, m3, m0, m1); GROUP(m2, 3);
        NEXT(m3, m0, m1, m2); GROUP(m3, 3);   /* 76-79 */
#undef GROUP
#undef NEXT
        /* E after the 80 rounds is A of four rounds before the end, rotated. */
        e0 = _mm_sha1nexte_epu32(prev, e_start);
        abcd = _mm_add_epi32(abcd, abcd_start);
        data += 64;
    }
    _mm_storeu_si128((__m128i *)state, _mm_shuffle_epi32(abcd, 0x1B));
    state[4] = (uint32_t)_mm_extract_epi32(e0, 3);
}

static int has_sha_instructions(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int sse41 = (c >> 19) & 1, ssse3 = (c >> 9) & 1;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return sse41 && ssse3 && ((b >> 29) & 1);
}
#endif

/* -1: not looked at yet; 0: plain C; 1: SHA instructions. */
static int mode = -1;
static int portable_forced = 0;

int chatsync_sha1_accelerated(void) {
    int m = __atomic_load_n(&mode, __ATOMIC_RELAXED);
    if (m < 0) {
#if defined(__x86_64__)
        m = has_sha_instructions();
#else
        m = 0;
#endif
        __atomic_store_n(&mode, m, __ATOMIC_RELAXED);
    }
    return m && !__atomic_load_n(&portable_forced, __ATOMIC_RELAXED);
}

void chatsync_sha1_force_portable(int on) { __atomic_store_n(&portable_forced, on, __ATOMIC_RELAXED); }

static void blocks(uint32_t state[5], const uint8_t *data, size_t count) {
#if defined(__x86_64__)
    if (chatsync_sha1_accelerated()) { blocks_accelerated(state, data, count); return; }
#endif
    blocks_portable(state, data, count);
}

void chatsync_sha1_init(chatsync_sha1 *c) {
    c->state[0] = 0x67452301; c->state[1] = 0xEFCDAB89; c->state[2] = 0x98BADCFE;
    c->state[3] = 0x10325476; c->state[4] = 0xC3D2E1F0;
    c->length = 0;
    c->used = 0;
}

void chatsync_sha1_update(chatsync_sha1 *c, const void *data, size_t length) {
    const uint8_t *p = data;
    c->length += length;
    if (c->used) {
        size_t take = 64 - c->used < length ? 64 - c->used : length;
        memcpy(c->buffer + c->used, p, take);
        c->used += take; p += take; length -= take;
        if (c->used < 64) return;
        blocks(c->state, c->buffer, 1);
        c->used = 0;
    }
    if (length >= 64) {
        blocks(c->state, p, length / 64);
        p += length / 64 * 64;
        length %= 64;
    }
    if (length) { memcpy(c->buffer, p, length); c->used = length; }
}

void chatsync_sha1_final(chatsync_sha1 *c, uint8_t digest[20]) {
    uint64_t bits = c->length * 8;
    uint8_t pad[72] = { 0x80 };
    size_t padding = (c->used < 56 ? 56 : 120) - c->used;
    uint8_t tail[8];
    for (int i = 0; i < 8; i++) tail[i] = (uint8_t)(bits >> (56 - 8 * i));
    chatsync_sha1_update(c, pad, padding);
    chatsync_sha1_update(c, tail, 8);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (uint8_t)(c->state[i] >> 24); digest[4 * i + 1] = (uint8_t)(c->state[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(c->state[i] >> 8); digest[4 * i + 3] = (uint8_t)c->state[i];
    }
}

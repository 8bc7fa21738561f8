/* util: small pure helpers shared by every module (buffers, time, encoding,
 * constant-time compare). No I/O, no library glue. */
#ifndef USERGATE_UTIL_H
#define USERGATE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Growable byte buffer. Always NUL-terminated (data[len] == 0) once anything
 * was appended, so text users may treat data as a C string. Zero-init is an
 * empty buffer. buf_free leaves it empty and reusable. Allocation failure
 * aborts (a daemon that cannot allocate a few KB cannot do anything useful). */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
/* Decimal and fixed-width lower-case hex, without the printf family (hot paths). */
void buf_put_u64(struct buf *b, uint64_t v);
void buf_put_i64(struct buf *b, int64_t v);
void buf_put_hex(struct buf *b, uint64_t v, int digits);
/* The decimal digits of v into out (at least 20 bytes, not NUL-terminated); returns their count. */
size_t util_u64_digits(char *out, uint64_t v);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_free(struct buf *b);

/* Clocks in milliseconds. */
int64_t util_now_ms(void);  /* CLOCK_MONOTONIC: deadlines, durations */
int64_t util_wall_ms(void); /* CLOCK_REALTIME: stored-at / fresh-until in cache envelopes */

/* Constant-time equality of two byte strings (length difference is not hidden,
 * contents are). */
bool util_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Standard base64 (RFC 4648, with padding). out must hold 4*((n+2)/3)+1 bytes;
 * returns length written (NUL-terminated). */
size_t util_base64_encode(const void *in, size_t n, char *out);
/* Decode standard base64; returns decoded length or -1 on bad input.
 * out must hold 3*(n/4)+3 bytes. Result is NUL-terminated. */
long util_base64_decode(const char *in, size_t n, char *out);

/* Percent-decode exactly once. '+' stays '+' (path semantics) unless
 * plus_is_space (form semantics). Returns decoded length, or -1 on an invalid
 * escape ('%' not followed by two hex digits). out must hold n+1 bytes; result
 * is NUL-terminated. Decoding may produce NUL bytes: callers that need C
 * strings must check (memchr) and reject them. */
long util_pct_decode(const char *in, size_t n, char *out, bool plus_is_space);
/* Percent-encode everything except RFC 3986 unreserved characters
 * (A-Z a-z 0-9 - . _ ~). Appends to b. */
void util_pct_encode(struct buf *b, const char *in, size_t n);

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when the
 * bytes there are not one (overlongs, surrogates and code points above
 * U+10FFFF are invalid). */
size_t util_utf8_seq_len(const unsigned char *p, size_t n);
/* True when s[0..n) is valid UTF-8 throughout. */
bool util_utf8_valid(const char *s, size_t n);

/* Append s as a JSON string literal, quotes included: '"', '\\' and control
 * bytes escaped, and every byte that is not part of valid UTF-8 replaced by
 * \ufffd, so the result is valid JSON whatever s holds. */
void util_json_string(struct buf *b, const char *s);

/* Parse a decimal integer in [min,max] from a whole NUL-terminated string. */
bool util_parse_long(const char *s, long min, long max, long *out);
/* strdup that aborts on OOM; NULL in, NULL out. */
char *util_strdup(const char *s);
char *util_strndup(const char *s, size_t n);
void *util_calloc(size_t n, size_t size); /* aborts on OOM */

/* A free list of one thread's objects of one size, for what a request path
 * allocates and frees many times a second. pool_take returns an object as
 * pool_put left it (the caller resets it, and may keep buffers it owns for
 * the next use), or a zeroed new one. At most POOL_KEEP are kept; what does
 * not fit, and what pool_clear finds, goes to drop (which frees the object
 * and what it owns). Under AddressSanitizer a kept object is poisoned, so a
 * use after pool_put is still caught. */
#define POOL_KEEP 128
struct pool {
    size_t size;
    void (*drop)(void *obj);
    size_t n;
    void *kept[POOL_KEEP];
};
void *pool_take(struct pool *p);
void pool_put(struct pool *p, void *obj);
void pool_clear(struct pool *p);
/* Trim ASCII whitespace in place; returns s. */
char *util_trim(char *s);
/* Read a whole (small) file into a new NUL-terminated string with one trailing
 * newline stripped (secret files). Returns NULL and sets errno on failure. */
char *util_read_secret_file(const char *path);
/* Random bytes from getrandom(2) (non-blocking after boot). */
void util_random(void *out, size_t n);
/* Uniform random in [0, n) (n > 0). */
uint64_t util_random_below(uint64_t n);

/* SipHash-2-4 (Aumasson & Bernstein): a keyed PRF, for logging identities as
 * hashes that correlate across lines and instances but cannot be reversed
 * without the key. */
uint64_t util_siphash(const uint64_t key[2], const void *data, size_t n);
/* FNV-1a of data: a fast hash for in-process tables (not for anything a
 * client could aim collisions at without a bound on chain length). */
uint64_t util_fnv1a(const void *data, size_t n);

#endif

/* auth: the pure rules of client admission — HTTP Basic credentials,
 * source-network grants and token-bucket arithmetic. No I/O, no clocks, no
 * shared state (limits.c holds the buckets; router.c applies the rules), so
 * every function here is unit-tested and fuzzed on its own. */
#ifndef USERGATE_AUTH_H
#define USERGATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest Authorization header value looked at; longer ones fail. */
#define AUTH_BASIC_MAX 1024

/* Split an Authorization header value "Basic base64(user:password)" into
 * user and password, decoded into out (AUTH_BASIC_MAX bytes). The scheme is
 * case-insensitive; the user is everything before the first ':'. Returns
 * false for any other scheme, bad base64, no ':' or an over-long value. */
bool auth_basic_parse(const char *header, char *out, const char **user, size_t *user_len,
                      const char **pass, size_t *pass_len);

/* What a connection last proved: the Authorization value it sent, the
 * client that value authenticated, and the configuration (by generation)
 * that said so. A keep-alive connection sending the same value again is not
 * decoded and checked again. Only successes are kept, values longer than
 * the memo are not, and a value is compared in constant time. The client is
 * opaque here: a pointer into the configuration of that generation. */
#define AUTH_MEMO_MAX 160
struct auth_memo {
    uint64_t generation; /* 0: empty */
    const void *client;
    size_t len;
    char value[AUTH_MEMO_MAX];
};
/* The client kept for this value under this generation, or NULL. */
const void *auth_memo_find(const struct auth_memo *m, uint64_t generation, const char *value);
void auth_memo_keep(struct auth_memo *m, uint64_t generation, const char *value,
                    const void *client);
void auth_memo_clear(struct auth_memo *m); /* empty, and the value wiped */

/* A client's source address as admission sees it. */
struct auth_peer {
    int family;       /* AF_INET, AF_INET6 or AF_UNIX */
    uint8_t addr[16]; /* IPv4 in the first 4 bytes; IPv4-mapped IPv6 is stored as IPv4 */
};
/* "192.0.2.7" / "2001:db8::1" (or "unix") for logs; out holds 48 bytes. */
void auth_peer_format(const struct auth_peer *p, char *out, size_t outlen);

/* One entry of a `networks` list: CIDR, bare address, or "unix". */
struct auth_net {
    int family; /* AF_INET, AF_INET6, or AF_UNIX for "unix" */
    uint8_t addr[16];
    unsigned prefix; /* bits */
};
/* Parse "10.0.0.0/8", "127.0.0.1", "::1/128", "unix". Host bits set below
 * the prefix are an error (a typo like 10.1.0.0/8 should not silently widen
 * or narrow a grant). Returns false with a reason in why. */
bool auth_net_parse(const char *s, struct auth_net *out, const char **why);
/* True when p falls in any of nets[0..n). */
bool auth_nets_match(const struct auth_net *nets, size_t n, const struct auth_peer *p);

/* A token bucket: `rate` tokens per second up to `burst`, filled lazily from
 * the time of the last take. */
struct auth_bucket {
    double tokens;
    int64_t last_ms;
    bool init;
};
/* Take one token at now_ms. Returns true when one was there; otherwise
 * false and *wait_ms is how long until one will be. */
bool auth_bucket_take(struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                      int64_t *wait_ms);
/* Would a take succeed? Same arithmetic, nothing taken. */
bool auth_bucket_peek(const struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                      int64_t *wait_ms);

#endif

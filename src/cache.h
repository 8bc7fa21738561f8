/* cache: the one interface every cache lookup and write goes through (so an
 * in-process L1 tier can be added later without touching callers). Backed by
 * redis.c; knows keys and envelopes (entry.c), not HTTP. Fails open: any Redis
 * trouble is reported as CACHE_ERROR and the caller goes upstream. */
#ifndef USERGATE_CACHE_H
#define USERGATE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "route.h"

struct redis;
struct config;
struct cache;

/* Which user a lookup or write concerns. */
struct cache_user {
    const char *account; /* AC… */
    enum api_family family;
    const char *service; /* IS… (for FAMILY_V1_DEFAULT: the default service) */
    const char *user;    /* identity or US… SID, decoded */
    size_t user_len;
    bool user_is_sid;
};

enum cache_result {
    CACHE_FOUND = 0, /* an entry exists (fresh or stale: compare fresh_until_ms) */
    CACHE_ABSENT,    /* no entry */
    CACHE_ERROR,     /* Redis down/slow/garbled: treat as a miss, do not store */
};

/* Coherence: every invalidation increments the account's counter in Redis and
 * stamps the user's tombstones (identity and SID) with the new value. A lookup
 * reports the counter it saw as `epoch` (-1 when unknown); a store carries the
 * epoch of the lookup that preceded its upstream fetch and is refused (by a
 * script, atomically) if any tombstone of that user is newer. So a fetch that
 * overlapped a write can never put the pre-write user back. One clock (Redis),
 * so instances' wall clocks do not matter.
 *
 * Lookup callback: exactly once; e is valid only during the callback and
 * only when result == CACHE_FOUND. A SID lookup resolves the alias and checks
 * the entry's sid equals the requested SID (else CACHE_ABSENT). */
typedef void (*cache_lookup_cb)(void *arg, enum cache_result result, const struct entry *e,
                                int64_t epoch);
/* Write/invalidate callback: exactly once; ok false if Redis failed (or, for
 * a store, the body was not a user object). May be NULL.
 * No cache callback ever runs from inside the cache_* call that started it.
 * In-flight calls depend on the redis client only: cache_free may come
 * before or after redis_free, which answers them (with errors) at the latest. */
typedef void (*cache_done_cb)(void *arg, bool ok);

struct cache *cache_new(struct redis *r);
void cache_free(struct cache *c);

void cache_lookup(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  cache_lookup_cb cb, void *arg);

/* Store a fetch result. status 200: body must be a user object — the entry is
 * stored under its identity (from the body) and the SID alias is written; 404:
 * (epoch < 0: nothing is stored)
 * stored as a negative entry under u->user. ttl_s is the freshness; the Redis
 * key lives ttl_s + max(stale_while_revalidate, stale_if_error) (+ jitter). */
void cache_store(struct cache *c, const struct config *cfg, const struct cache_user *u, int status,
                 const char *body, size_t body_len, long ttl_s, int64_t epoch, cache_done_cb cb,
                 void *arg);

/* Remove every key of a user in every API family of u->service: the entries
 * under identity and under sid, and the SID alias. Either may be NULL; with
 * only a SID, the alias is read first to find the identity; with only an
 * identity, its cached entries are read first to find the SID. */
void cache_invalidate_user(struct cache *c, const struct config *cfg, const char *account,
                           const char *service, const char *identity, size_t identity_len,
                           const char *sid, cache_done_cb cb, void *arg);

/* Cross-instance single-flight: a short lock per user name and family, taken
 * with SET NX PX and an owner token, released only by its owner (a script
 * compares the token), and expiring by itself if the owner dies. */
enum cache_lock_result {
    CACHE_LOCK_ACQUIRED = 0,
    CACHE_LOCK_HELD, /* another fetch (here or on another instance) holds it */
    CACHE_LOCK_ERROR,
};
typedef void (*cache_lock_cb)(void *arg, enum cache_lock_result result);
/* token: NUL-terminated, at most 64 bytes. cb runs exactly once. */
void cache_lock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                const char *token, long ttl_ms, cache_lock_cb cb, void *arg);
/* Fire and forget; after cache_store on the same connection, so Redis runs
 * the store first and waiters polling the cache find the entry. */
void cache_unlock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  const char *token);

/* Purge every cached key of one service (entries of all families and SID
 * aliases) with SCAN MATCH in bounded steps, never KEYS. cb gets the number
 * of keys deleted, or -1 if Redis failed part way. */
typedef void (*cache_count_cb)(void *arg, long long deleted);
void cache_purge_service(struct cache *c, const struct config *cfg, const char *account,
                         const char *service, cache_count_cb cb, void *arg);

#endif

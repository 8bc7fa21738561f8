/* cache: the one interface every cache lookup and write goes through (so an
 * in-process tier can be added later without touching callers). Backed by
 * redis.c; knows keys and envelopes (entry.c), not HTTP. Fails open: any
 * Redis trouble is reported as CACHE_ERROR and the caller goes upstream.
 *
 * Coherence, per user name (identity), with no account-wide key:
 *   - Every identity has a version in Redis: a random value that every
 *     invalidation replaces. An entry records the version it was stored
 *     under and is valid only while that version is current and no hold is
 *     on, so an entry is never served after an invalidation, even if its
 *     DEL was lost, its version key was evicted or Redis restarted (a
 *     missing version is never equal to a recorded one).
 *   - A fetch may store its answer only if the version is still the one its
 *     lookup saw before it went upstream (a script checks, atomically), so a
 *     fetch that overlapped a write never puts the old user back.
 *   - A hold (unknown-outcome writes) makes the name uncacheable until it
 *     expires; the writer invalidates once more when it does.
 *   - SID -> identity aliases and 404s for a SID are facts that never
 *     change (Twilio never reuses a SID, nor changes an identity), so they
 *     need no invalidation; an alias's lifetime only ever grows.
 *   - An invalidation Redis did not take is queued (bounded, per worker)
 *     and retried; meanwhile this worker bypasses the cache for that name.
 * Every key of one name shares a hash tag: one Redis Cluster slot. */
#ifndef USERGATE_CACHE_H
#define USERGATE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"
#include "route.h"
#include "twilio.h"

struct redis;
struct config;
struct cache;
struct event_base;
struct metrics_shard;

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
    CACHE_FOUND = 0, /* a valid entry (fresh or stale: compare fresh_until_ms) */
    CACHE_ABSENT,    /* no valid entry */
    CACHE_ERROR,     /* Redis down/slow/garbled: treat as a miss, do not store */
};

/* What a lookup saw of the identity it resolved to. known: the lookup
 * reached Redis and the identity is known (from the request, or through a
 * SID's alias) and not awaiting a queued invalidation here; ver: its
 * version (a lookup that finds none creates one, so a store can tell
 * "unchanged" from "lost since"); held: a hold is on. */
struct cache_stamp {
    bool known;
    bool held;
    char ver[ENTRY_VER_MAX + 1];
    char ident[TWILIO_IDENTITY_MAX + 1];
    size_t ident_len;
};
/* A stamp under which an answer may be stored. */
bool cache_stamp_storable(const struct cache_stamp *s);
/* Requests may share one upstream fetch only when their stamps are equal:
 * same identity, same version, same hold (flight.c). */
bool cache_stamp_equal(const struct cache_stamp *a, const struct cache_stamp *b);

/* Lookup callback: exactly once; e and stamp are valid only during the
 * callback; e only when result == CACHE_FOUND. A SID lookup resolves the
 * alias and checks the entry carries that SID. */
typedef void (*cache_lookup_cb)(void *arg, enum cache_result result, const struct entry *e,
                                const struct cache_stamp *stamp);
/* Write callback: exactly once; ok false if Redis failed (or refused the
 * store). May be NULL. No cache callback ever runs from inside the cache_*
 * call that started it. In-flight calls depend on the redis client only:
 * cache_free may come before or after redis_free. */
typedef void (*cache_done_cb)(void *arg, bool ok);

/* base drives the retry timer of queued invalidations; metrics (may be NULL)
 * gets their gauge and counters. */
struct cache *cache_new(struct redis *r, struct event_base *base, struct metrics_shard *metrics);
void cache_free(struct cache *c);
/* Put a local tier of max_items in front of Redis, kept coherent through
 * sub (a redis client of its own, made a subscriber here): every
 * invalidation, by any instance, publishes the user's tag in the same
 * script that replaces its version; a message evicts the user's items; the
 * tier is used only while the subscription is confirmed and flushed
 * whenever it is lost. Only fresh entries Redis vouched for are kept, for
 * at most cfg->local_ttl, and not when an eviction happened while the
 * lookup was in flight. sub must be freed before c. */
void cache_enable_local(struct cache *c, struct redis *sub, const struct config *cfg,
                        size_t max_items);

void cache_lookup(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  cache_lookup_cb cb, void *arg);

/* Store a fetch result under the stamp its lookup saw. 200: the body names
 * the user; the SID alias is written, and the entry (under the body's
 * identity) only when seen is storable and is that identity. 404: a SID's
 * negative entry unconditionally, an identity's under the stamp. ttl_s is
 * the freshness; the Redis key lives ttl_s + max(stale_while_revalidate,
 * stale_if_error) (+ jitter). */
void cache_store(struct cache *c, const struct config *cfg, const struct cache_user *u, int status,
                 const char *body, size_t body_len, long ttl_s, const struct cache_stamp *seen,
                 cache_done_cb cb, void *arg);

/* Invalidate every entry of an identity in every API family of service:
 * a new version, the entries deleted, and with hold_ms > 0 a hold for that
 * long (then this worker invalidates once more when it ends). The callback
 * says how it went; a failure is queued and retried (the name is bypassed
 * here meanwhile), and only a full queue drops it. */
enum cache_inval_result { CACHE_INVAL_DONE = 0, CACHE_INVAL_QUEUED, CACHE_INVAL_DROPPED };
typedef void (*cache_inval_cb)(void *arg, enum cache_inval_result res);
void cache_invalidate(struct cache *c, const struct config *cfg, const char *account,
                      const char *service, const char *identity, size_t identity_len, long hold_ms,
                      cache_inval_cb cb, void *arg);
/* Queued invalidations on this worker (for /metrics). */
size_t cache_pending(const struct cache *c);

/* The identity behind a SID, from its alias. cb gets ident NULL when there
 * is none (or Redis failed: then error is true). */
typedef void (*cache_ident_cb)(void *arg, const char *ident, size_t ident_len, bool error);
void cache_resolve_sid(struct cache *c, const struct config *cfg, const char *account,
                       const char *service, const char *sid, cache_ident_cb cb, void *arg);

/* Cross-instance single-flight: a short lock per identity and family, taken
 * with SET NX PX and an owner token, released only by its owner (a script
 * compares the token), and expiring by itself if the owner dies. */
enum cache_lock_result {
    CACHE_LOCK_ACQUIRED = 0,
    CACHE_LOCK_HELD, /* another fetch (here or on another instance) holds it */
    CACHE_LOCK_ERROR,
};
typedef void (*cache_lock_cb)(void *arg, enum cache_lock_result result);
/* u names the identity (user_is_sid false). token: NUL-terminated, at most
 * 64 bytes. cb runs exactly once. */
void cache_lock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                const char *token, long ttl_ms, cache_lock_cb cb, void *arg);
/* Fire and forget; after cache_store on the same connection, so Redis runs
 * the store first and waiters polling the cache find the entry. */
void cache_unlock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  const char *token);

/* Purge every cached key of one service (all kinds) with SCAN MATCH in
 * bounded steps, never KEYS. cb gets the number of keys deleted, or -1 if
 * Redis failed part way. */
typedef void (*cache_count_cb)(void *arg, long long deleted);
void cache_purge_service(struct cache *c, const struct config *cfg, const char *account,
                         const char *service, cache_count_cb cb, void *arg);

#endif

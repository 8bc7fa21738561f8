/* cache: user lookups, stores and invalidations as short chains of Redis
 * commands (redis.c) over the keys and envelopes of entry.c (see cache.h for
 * the coherence rules). Each call owns one small heap state that lives until
 * its callback has run; the states point at the redis client only, so
 * cache_free does not strand them (the redis client answers every command,
 * with ERROR at the latest in redis_free). Callbacks are never run from
 * inside a cache_* call. The queue of invalidations Redis did not take is
 * the only state a struct cache keeps. */
#include "cache.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "local.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "twilio.h"
#include "util.h"

/* Retry delays of a queued invalidation: from 100 ms, doubling, to 5 s. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

/* One invalidation to (re)send: a failed one (bypass: this worker does not
 * trust the cache for that name meanwhile) or the second invalidation at
 * the end of a hold. */
struct pending {
    struct pending *next;
    struct cache *owner; /* NULL once the cache is gone (a send still owes its reply) */
    char account[TWILIO_SID_LEN + 1];
    char service[TWILIO_SID_LEN + 1];
    char *ident;
    size_t ident_len;
    long hold_ms;
    int64_t due_ms;
    long backoff_ms;
    bool bypass;
};

/* An invalidation Redis took, remembered for failover_replay seconds: a
 * failover may lose it (asynchronous replication), so it is sent again to
 * the new primary. */
struct recent {
    char account[TWILIO_SID_LEN + 1];
    char service[TWILIO_SID_LEN + 1];
    char *ident;
    size_t ident_len;
    int64_t at_ms;
};

struct cache {
    struct redis *r;
    struct event_base *base;
    struct metrics_shard *metrics;
    struct config *cfg;      /* for queued invalidations: the latest snapshot seen */
    struct pending *pending; /* waiting for their due time */
    struct pending *sending; /* sent, reply owed */
    size_t n_pending;        /* both lists */
    struct event *timer;
    /* The local tier (cache_enable_local): used only while the subscription
     * to invalidations is confirmed; flushed whenever it is lost. */
    struct local *local;
    bool local_live;
    struct event *deliver_ev;                   /* local hits answered on the next turn */
    struct lookup *deliver_head, *deliver_tail; /* their queue */
    struct pool lookups;                        /* freed lookups, with their local_env */
    struct buf keys;                            /* a lookup's keys, built here per command */
    /* Invalidations that landed, oldest first from recent_head: a ring of
     * at most invalidation_queue items, allocated at the first. */
    struct recent *recent;
    size_t recent_cap, recent_head, n_recent;
};

struct lookup;
static void deliver_local(evutil_socket_t fd, short what, void *arg);
static struct pool lookup_pool(void);

static void arm_timer(struct cache *c);
static void on_primary_changed(void *arg);

struct cache *cache_new(struct redis *r, struct event_base *base, struct metrics_shard *metrics)
{
    struct cache *c = util_calloc(1, sizeof *c);
    c->r = r;
    c->lookups = lookup_pool();
    c->base = base;
    c->metrics = metrics;
    redis_set_primary_cb(r, on_primary_changed, c);
    return c;
}

static void pending_free(struct pending *p)
{
    free(p->ident);
    free(p);
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        pending_free(p);
    }
    for (struct pending *p = c->sending; p; p = p->next)
        p->owner = NULL; /* on_pending_done frees it */
    if (c->timer)
        event_free(c->timer);
    if (c->deliver_ev) {
        deliver_local(-1, 0, c); /* answer the local hits still queued */
        event_free(c->deliver_ev);
    }
    local_free(c->local);
    for (size_t i = 0; i < c->n_recent; i++)
        free(c->recent[(c->recent_head + i) % c->recent_cap].ident);
    free(c->recent);
    config_unref(c->cfg);
    pool_clear(&c->lookups);
    buf_free(&c->keys);
    free(c);
}

size_t cache_pending(const struct cache *c)
{
    return c ? c->n_pending : 0;
}

static void set_pending_gauge(struct cache *c)
{
    if (c->metrics)
        metrics_gauge_set(c->metrics, MGAUGE_INVALIDATIONS_PENDING, (int64_t)c->n_pending);
}

/* A name this worker must not trust the cache for: an invalidation of it is
 * still queued here. */
static bool bypassed(const struct cache *c, const char *account, const char *service,
                     const char *ident, size_t ident_len)
{
    const struct pending *lists[2] = {c->pending, c->sending};
    for (int i = 0; i < 2; i++)
        for (const struct pending *p = lists[i]; p; p = p->next)
            if (p->bypass && p->ident_len == ident_len && memcmp(p->ident, ident, ident_len) == 0 &&
                strcmp(p->service, service) == 0 && strcmp(p->account, account) == 0)
                return true;
    return false;
}

bool cache_stamp_storable(const struct cache_stamp *s)
{
    return s && s->known && !s->held && s->ver[0];
}

bool cache_stamp_equal(const struct cache_stamp *a, const struct cache_stamp *b)
{
    return a->known == b->known && a->held == b->held && strcmp(a->ver, b->ver) == 0 &&
           a->ident_len == b->ident_len && memcmp(a->ident, b->ident, a->ident_len) == 0;
}

/* A fresh version value: 62 random bits in decimal. Random, not counted, so
 * a version that was evicted or lost in a restart is never re-created equal
 * to one an old entry recorded. */
static void new_version(char out[24])
{
    snprintf(out, 24, "%" PRIu64, util_random_below(UINT64_C(1) << 62) + 1);
}

/* Milliseconds a user entry's Redis key lives at most. */
static int64_t entry_lifetime_ms(const struct config *cfg)
{
    long ttl = cfg->ttl > cfg->negative_ttl ? cfg->ttl : cfg->negative_ttl;
    long stale = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                                   : cfg->stale_if_error;
    return (int64_t)(ttl + stale) * 1000 * 21 / 20 + 1000; /* + jitter + margin */
}

typedef void (*redis_send_fn)(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                              const size_t *argvlen);

/* EVAL script with keys[0..nkeys) as KEYS and args[0..nargs) as ARGV, every
 * one binary-safe, sent with send. */
static void eval_script_via(redis_send_fn send, struct redis *r, const char *script,
                            size_t script_len, const struct buf *keys, int nkeys,
                            const char *const *args, const size_t *arg_lens, int nargs, redis_cb cb,
                            void *arg)
{
    enum { MAX_ARGS = 24 };
    char nk[12];
    snprintf(nk, sizeof nk, "%d", nkeys);
    const char *argv[MAX_ARGS] = {"EVAL", script, nk};
    size_t lens[MAX_ARGS] = {4, script_len, strlen(nk)};
    int argc = 3;
    for (int k = 0; k < nkeys && argc < MAX_ARGS; k++, argc++) {
        argv[argc] = keys[k].data;
        lens[argc] = keys[k].len;
    }
    for (int a = 0; a < nargs && argc < MAX_ARGS; a++, argc++) {
        argv[argc] = args[a];
        lens[argc] = arg_lens[a];
    }
    send(r, cb, arg, argc, argv, lens);
}

static void eval_script(struct redis *r, const char *script, size_t script_len,
                        const struct buf *keys, int nkeys, const char *const *args,
                        const size_t *arg_lens, int nargs, redis_cb cb, void *arg)
{
    eval_script_via(redis_command, r, script, script_len, keys, nkeys, args, arg_lens, nargs, cb,
                    arg);
}

static bool bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* ---- lookup */

struct lookup {
    struct cache *c;
    cache_lookup_cb cb;
    void *arg;
    struct config *cfg; /* a reference: the key prefix and TTLs it was asked under */
    const char *prefix; /* cfg->key_prefix */
    char account[TWILIO_SID_LEN + 1], service[TWILIO_SID_LEN + 1];
    enum api_family family;
    char sid[TWILIO_SID_LEN + 1]; /* a SID lookup: the SID asked for */
    int64_t lifetime_ms;          /* entry_lifetime_ms of the lookup's config */
    struct cache_stamp stamp;
    /* local tier: fill it with the answer if nothing was evicted meanwhile */
    bool local_fill;
    uint64_t local_epoch;
    long local_ttl_ms;
    struct buf local_env;      /* a local hit's envelope (copied: delivered later) */
    struct entry local_entry;  /* decoded, pointing into local_env */
    struct lookup *local_next; /* in c->deliver_head */
};

/* ---- the local tier's keys and tags */

/* account + service + kind + family + name: a service's items share a prefix. */
#define LKEY_MAX (2 * TWILIO_SID_LEN + 2 + TWILIO_IDENTITY_MAX)
static size_t lkey(char out[LKEY_MAX], const char *account, const char *service, char kind,
                   int family, const char *name, size_t name_len)
{
    memcpy(out, account, TWILIO_SID_LEN);
    memcpy(out + TWILIO_SID_LEN, service, TWILIO_SID_LEN);
    out[2 * TWILIO_SID_LEN] = kind;
    out[2 * TWILIO_SID_LEN + 1] = (char)('0' + family);
    memcpy(out + 2 * TWILIO_SID_LEN + 2, name, name_len);
    return 2 * TWILIO_SID_LEN + 2 + name_len;
}

/* A name's tag as a number: what invalidation messages carry (in hex). */
static uint64_t ltag(const char *account, const char *service, const char *name, size_t name_len)
{
    char hex[ENTRY_TAG_LEN + 1];
    entry_tag(hex, account, service, name, name_len);
    uint64_t t = strtoull(hex, NULL, 16);
    return t ? t : 1; /* 0 means "no tag" to local.c */
}

static bool local_usable(const struct cache *c, const char *account, const char *service)
{
    return c->local && c->local_live && strlen(account) == TWILIO_SID_LEN &&
           strlen(service) == TWILIO_SID_LEN;
}

static void local_gauge(struct cache *c)
{
    if (c->metrics)
        metrics_gauge_set(c->metrics, MGAUGE_LOCAL_ENTRIES, (int64_t)local_count(c->local));
}

/* A pooled lookup keeps a local_env of up to this much for the next. */
#define LOOKUP_ENV_KEEP (16 * 1024)

static void lookup_finish(struct lookup *st, enum cache_result res, const struct entry *e)
{
    if (res == CACHE_ERROR)
        st->stamp.known = false;
    st->cb(st->arg, res, res == CACHE_FOUND ? e : NULL, &st->stamp);
    config_unref(st->cfg);
    if (st->local_env.cap > LOOKUP_ENV_KEEP)
        buf_free(&st->local_env);
    pool_put(&st->c->lookups, st);
}

static void lookup_drop(void *obj)
{
    struct lookup *st = obj;
    buf_free(&st->local_env);
    free(st);
}

static struct pool lookup_pool(void)
{
    return (struct pool){.size = sizeof(struct lookup), .drop = lookup_drop};
}

/* KEYS: version; ARGV: a new version, PX. The version, created if absent. */
static const char ensure_script[] = "local v = redis.call('GET', KEYS[1])\n"
                                    "if v then return v end\n"
                                    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                    "return ARGV[1]\n";

static void on_ensure(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type == REDIS_R_STRING && rep->len > 0 && rep->len <= ENTRY_VER_MAX) {
        memcpy(st->stamp.ver, rep->str, rep->len);
        st->stamp.ver[rep->len] = '\0';
        lookup_finish(st, CACHE_ABSENT, NULL);
        return;
    }
    lookup_finish(st, CACHE_ERROR, NULL);
}

static void ensure_version(struct lookup *st)
{
    struct buf k = {0};
    entry_key(&k, st->prefix, EK_VERSION, st->account, st->service, -1, st->stamp.ident,
              st->stamp.ident_len);
    char ver[24], px[24];
    new_version(ver);
    snprintf(px, sizeof px, "%" PRId64, st->lifetime_ms);
    const char *args[2] = {ver, px};
    size_t alens[2] = {strlen(ver), strlen(px)};
    eval_script(st->c->r, ensure_script, sizeof ensure_script - 1, &k, 1, args, alens, 2, on_ensure,
                st);
    buf_free(&k);
}

static void local_keep(struct lookup *st, const char *env, size_t env_len, const struct entry *e);

/* MGET entry, version, hold of the identity (asked for, or the SID's alias). */
static void on_identity_mget(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 3) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    const struct redis_reply *ent = &rep->elements[0], *ver = &rep->elements[1],
                             *hold = &rep->elements[2];
    if (ent->type == REDIS_R_ERROR || ver->type == REDIS_R_ERROR || hold->type == REDIS_R_ERROR) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    struct cache_stamp *s = &st->stamp;
    if (ver->type == REDIS_R_STRING && ver->len <= ENTRY_VER_MAX) {
        memcpy(s->ver, ver->str, ver->len);
        s->ver[ver->len] = '\0';
    }
    s->held = hold->type != REDIS_R_NIL;
    s->known = !bypassed(st->c, st->account, st->service, s->ident, s->ident_len);
    if (s->known && !s->ver[0]) {
        /* No version yet (never invalidated, expired, evicted, or Redis
         * restarted): nothing cached can be valid. Create one now, before
         * the fetch, so the store can tell "unchanged" from "lost since". */
        ensure_version(st);
        return;
    }
    struct entry e;
    enum cache_result res = CACHE_ABSENT;
    if (s->known && !s->held && s->ver[0] && ent->type == REDIS_R_STRING &&
        entry_decode(ent->str, ent->len, &e) == 0 &&
        bytes_eq(e.ver, e.ver_len, s->ver, strlen(s->ver)) &&
        (e.status == 404 || bytes_eq(e.identity, e.identity_len, s->ident, s->ident_len)) &&
        (!st->sid[0] || (e.status == 200 && bytes_eq(e.sid, e.sid_len, st->sid, strlen(st->sid)))))
        res = CACHE_FOUND;
    if (res == CACHE_FOUND)
        local_keep(st, ent->str, ent->len, &e);
    lookup_finish(st, res, &e);
}

/* Keep a fresh entry Redis just vouched for, unless an invalidation (of
 * anyone: the epoch is coarse) or a loss of the subscription came between
 * the lookup's start and now: its answer may predate it. */
static void local_keep(struct lookup *st, const char *env, size_t env_len, const struct entry *e)
{
    struct cache *c = st->c;
    if (!st->local_fill || !local_usable(c, st->account, st->service) ||
        local_epoch(c->local) != st->local_epoch || e->fresh_until_ms <= util_wall_ms())
        return;
    char k[LKEY_MAX];
    const struct cache_stamp *s = &st->stamp;
    int64_t expires = util_now_ms() + st->local_ttl_ms;
    size_t n = lkey(k, st->account, st->service, EK_ENTRY, (int)st->family, s->ident, s->ident_len);
    local_put(c->local, k, n, ltag(st->account, st->service, s->ident, s->ident_len), env, env_len,
              expires);
    if (st->sid[0]) { /* a SID's identity never changes */
        n = lkey(k, st->account, st->service, EK_ALIAS, 0, st->sid, TWILIO_SID_LEN);
        local_put(c->local, k, n, 0, s->ident, s->ident_len, expires);
    }
    local_gauge(c);
}

/* A fresh entry in the local tier: answered on the next loop turn (callbacks
 * never run inside cache_lookup) from a copy of it. */
static bool local_lookup(struct cache *c, struct lookup *st, const struct cache_user *u)
{
    char k[LKEY_MAX];
    size_t n, vlen;
    const char *v;
    struct cache_stamp *s = &st->stamp;
    if (u->user_is_sid) {
        n = lkey(k, u->account, u->service, EK_ALIAS, 0, u->user, u->user_len);
        if (!(v = local_get(c->local, k, n, util_now_ms(), &vlen)) || vlen > TWILIO_IDENTITY_MAX)
            return false;
        memcpy(s->ident, v, vlen);
        s->ident[vlen] = '\0';
        s->ident_len = vlen;
    }
    if (bypassed(c, u->account, u->service, s->ident, s->ident_len))
        return false;
    n = lkey(k, u->account, u->service, EK_ENTRY, (int)u->family, s->ident, s->ident_len);
    struct entry e;
    if (!(v = local_get(c->local, k, n, util_now_ms(), &vlen)) || entry_decode(v, vlen, &e) < 0 ||
        e.fresh_until_ms <= util_wall_ms() || e.ver_len > ENTRY_VER_MAX ||
        (u->user_is_sid && !(e.status == 200 && bytes_eq(e.sid, e.sid_len, u->user, u->user_len))))
        return false;
    memcpy(s->ver, e.ver, e.ver_len);
    s->ver[e.ver_len] = '\0';
    s->known = true;
    size_t off = st->local_env.len;
    buf_append(&st->local_env, v, vlen);
    /* Decoded once: the same fields, moved into the copy. */
    const char *base = st->local_env.data + off;
    e.ver = base + (e.ver - v);
    e.sid = base + (e.sid - v);
    e.identity = base + (e.identity - v);
    e.body = base + (e.body - v);
    st->local_entry = e;
    st->local_next = NULL;
    if (c->deliver_tail)
        c->deliver_tail->local_next = st;
    else
        c->deliver_head = st;
    c->deliver_tail = st;
    event_active(c->deliver_ev, EV_TIMEOUT, 0);
    return true;
}

static void deliver_local(evutil_socket_t fd, short what, void *arg)
{
    struct cache *c = arg;
    (void)fd;
    (void)what;
    struct lookup *st = c->deliver_head;
    c->deliver_head = c->deliver_tail = NULL;
    while (st) {
        struct lookup *next = st->local_next;
        if (c->metrics)
            metrics_inc(c->metrics, MCOUNT_LOCAL_HITS);
        lookup_finish(st, CACHE_FOUND, &st->local_entry);
        st = next;
    }
}

static void identity_mget(struct lookup *st)
{
    /* Three keys of one name: one tag, one buffer. */
    const struct cache_stamp *s = &st->stamp;
    char tag[ENTRY_TAG_LEN + 1];
    entry_tag(tag, st->account, st->service, s->ident, s->ident_len);
    struct buf *k = &st->c->keys; /* hiredis copies the command: reused */
    buf_reset(k);
    size_t end[3];
    entry_key_append(k, st->prefix, EK_ENTRY, tag, st->account, st->service, (int)st->family,
                     s->ident, s->ident_len);
    end[0] = k->len;
    entry_key_append(k, st->prefix, EK_VERSION, tag, st->account, st->service, -1, s->ident,
                     s->ident_len);
    end[1] = k->len;
    entry_key_append(k, st->prefix, EK_HOLD, tag, st->account, st->service, -1, s->ident,
                     s->ident_len);
    end[2] = k->len;
    const char *argv[4] = {"MGET", k->data, k->data + end[0], k->data + end[1]};
    size_t lens[4] = {4, end[0], end[1] - end[0], end[2] - end[1]};
    redis_command(st->c->r, on_identity_mget, st, 4, argv, lens);
}

/* MGET alias, negative entry of the SID (the SID's slot). */
static void on_sid_mget(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 2) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    const struct redis_reply *alias = &rep->elements[0], *neg = &rep->elements[1];
    if (alias->type == REDIS_R_STRING && alias->len > 0 && alias->len <= TWILIO_IDENTITY_MAX) {
        /* The positive path wins over a negative entry: an alias is only
         * ever written from a 200 for this SID. */
        memcpy(st->stamp.ident, alias->str, alias->len);
        st->stamp.ident[alias->len] = '\0';
        st->stamp.ident_len = alias->len;
        identity_mget(st);
        return;
    }
    if (alias->type != REDIS_R_NIL || (neg->type != REDIS_R_NIL && neg->type != REDIS_R_STRING)) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    /* The identity is unknown: a 404 for the SID is still a fact (SIDs are
     * never reused), anything else is a miss that may not be stored under
     * an identity (stamp.known stays false). */
    struct entry e;
    if (neg->type == REDIS_R_STRING && entry_decode(neg->str, neg->len, &e) == 0 &&
        e.status == 404) {
        lookup_finish(st, CACHE_FOUND, &e);
        return;
    }
    lookup_finish(st, CACHE_ABSENT, NULL);
}

/* Delivers CACHE_ABSENT for a request that can never match a stored key. */
static void on_lookup_none(void *arg, const struct redis_reply *rep)
{
    (void)rep;
    lookup_finish(arg, CACHE_ABSENT, NULL);
}

void cache_lookup(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  cache_lookup_cb cb, void *arg)
{
    struct lookup *st = pool_take(&c->lookups);
    struct buf env = st->local_env; /* its memory is kept for the next local hit */
    *st = (struct lookup){.local_env = env};
    buf_reset(&st->local_env);
    st->c = c;
    st->cb = cb;
    st->arg = arg;
    st->cfg = config_ref((struct config *)cfg);
    st->prefix = st->cfg->key_prefix;
    size_t alen = strlen(u->account), slen = strlen(u->service);
    if (alen > TWILIO_SID_LEN || slen > TWILIO_SID_LEN) { /* never a SID: nothing stored */
        redis_call_soon(c->r, on_lookup_none, st);
        return;
    }
    memcpy(st->account, u->account, alen + 1);
    memcpy(st->service, u->service, slen + 1);
    st->family = u->family;
    st->lifetime_ms = entry_lifetime_ms(cfg);
    if (u->user_len == 0 || u->user_len > TWILIO_IDENTITY_MAX ||
        (u->user_is_sid && u->user_len != TWILIO_SID_LEN)) {
        redis_call_soon(c->r, on_lookup_none, st);
        return;
    }
    if (!u->user_is_sid) {
        memcpy(st->stamp.ident, u->user, u->user_len);
        st->stamp.ident_len = u->user_len;
    }
    if (local_usable(c, u->account, u->service)) {
        st->local_fill = true;
        st->local_epoch = local_epoch(c->local);
        st->local_ttl_ms = cfg->local_ttl * 1000;
        if (local_lookup(c, st, u))
            return;
    }
    if (!u->user_is_sid) {
        identity_mget(st);
        return;
    }
    st->stamp.ident_len = 0; /* a local alias may have set it */
    memcpy(st->sid, u->user, TWILIO_SID_LEN);
    char tag[ENTRY_TAG_LEN + 1];
    entry_tag(tag, u->account, u->service, st->sid, TWILIO_SID_LEN);
    struct buf *k = &c->keys; /* hiredis copies the command: reused */
    buf_reset(k);
    entry_key_append(k, st->prefix, EK_ALIAS, tag, u->account, u->service, -1, st->sid,
                     TWILIO_SID_LEN);
    size_t end = k->len;
    entry_key_append(k, st->prefix, EK_ENTRY, tag, u->account, u->service, (int)u->family, st->sid,
                     TWILIO_SID_LEN);
    const char *argv[3] = {"MGET", k->data, k->data + end};
    size_t lens[3] = {4, end, k->len - end};
    redis_command(c->r, on_sid_mget, st, 3, argv, lens);
}

/* ---- resolve a SID */

struct resolve {
    cache_ident_cb cb;
    void *arg;
};

static void on_alias(void *arg, const struct redis_reply *rep)
{
    struct resolve *st = arg;
    if (rep->type == REDIS_R_STRING && rep->len > 0)
        st->cb(st->arg, rep->str, rep->len, false);
    else
        st->cb(st->arg, NULL, 0, rep->type != REDIS_R_NIL);
    free(st);
}

void cache_resolve_sid(struct cache *c, const struct config *cfg, const char *account,
                       const char *service, const char *sid, cache_ident_cb cb, void *arg)
{
    struct resolve *st = util_calloc(1, sizeof *st);
    st->cb = cb;
    st->arg = arg;
    struct buf k = {0};
    entry_key(&k, cfg->key_prefix, EK_ALIAS, account, service, -1, sid, strlen(sid));
    const char *argv[2] = {"GET", k.data};
    size_t lens[2] = {3, k.len};
    redis_command(c->r, on_alias, st, 2, argv, lens);
    buf_free(&k);
}

/* ---- store */

struct store {
    cache_done_cb cb;
    void *arg;
    bool ok;
    int replies; /* commands still owed a reply */
};

/* Store an entry only under the version the lookup saw, still current (a
 * missing version was lost: evicted, expired or Redis restarted, so nothing
 * proves the answer current), and never during a hold. KEYS: entry,
 * version, hold; ARGV: envelope, entry PX, seen version, version PX.
 * Returns 1 stored, 0 refused. */
static const char store_script[] = "local cur = redis.call('GET', KEYS[2])\n"
                                   "if cur ~= ARGV[3] then return 0 end\n"
                                   "if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then\n"
                                   "  redis.call('PEXPIRE', KEYS[2], ARGV[4])\n"
                                   "end\n"
                                   "if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end\n"
                                   "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                   "return 1\n";

/* An alias maps a SID to its identity for good; its lifetime only grows, so
 * it outlives every entry stored through it. KEYS: alias; ARGV: identity, PX. */
static const char alias_script[] = "local px = tonumber(ARGV[2])\n"
                                   "local t = redis.call('PTTL', KEYS[1])\n"
                                   "if t > px then px = t end\n"
                                   "redis.call('SET', KEYS[1], ARGV[1], 'PX', px)\n"
                                   "return 1\n";

static void store_reply(void *arg, const struct redis_reply *rep)
{
    struct store *st = arg;
    if (!(rep->type == REDIS_R_INTEGER && rep->integer == 1))
        st->ok = false;
    if (--st->replies > 0)
        return;
    if (st->cb)
        st->cb(st->arg, st->ok);
    free(st);
}

static void send_set(struct cache *c, const struct buf *key, const struct buf *val, const char *px,
                     struct store *st)
{
    const char *argv[5] = {"SET", key->data, val->data, "PX", px};
    size_t lens[5] = {3, key->len, val->len, 2, strlen(px)};
    st->replies++;
    redis_command(c->r, store_reply, st, 5, argv, lens);
}

void cache_store(struct cache *c, const struct config *cfg, const struct cache_user *u, int status,
                 const char *body, size_t body_len, long ttl_s, const struct cache_stamp *seen,
                 cache_done_cb cb, void *arg)
{
    struct store *st = util_calloc(1, sizeof *st);
    st->cb = cb;
    st->arg = arg;
    st->ok = true;
    char sid[TWILIO_SID_LEN + 1] = "", identity[TWILIO_IDENTITY_MAX + 1] = "";
    struct entry e = {.status = status, .ver = "", .sid = "", .body = body, .body_len = body_len};
    if (status == 200) {
        /* The body, not the request, says who this is. */
        if (entry_user_fields(body, body_len, sid, sizeof sid, identity, sizeof identity) < 0 ||
            (u->user_is_sid && strcmp(sid, u->user) != 0) ||
            (!u->user_is_sid && !bytes_eq(identity, strlen(identity), u->user, u->user_len)))
            goto refuse;
        e.sid = sid;
        e.sid_len = strlen(sid);
        e.identity = identity;
        e.identity_len = strlen(identity);
    } else if (status == 404 && u->user_len > 0) {
        e.identity = u->user_is_sid ? "" : u->user;
        e.identity_len = u->user_is_sid ? 0 : u->user_len;
    } else {
        goto refuse;
    }
    /* ±5 % on freshness so entries written together do not all expire (and
     * stampede upstream) together. */
    int64_t ttl_ms = ttl_s > 0 ? (int64_t)ttl_s * 1000 : 0;
    int64_t jitter = ttl_ms / 20;
    int64_t fresh_ms = ttl_ms - jitter + (int64_t)util_random_below((uint64_t)(2 * jitter) + 1);
    long stale_s = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                                     : cfg->stale_if_error;
    int64_t px = fresh_ms + (int64_t)(stale_s > 0 ? stale_s : 0) * 1000;
    if (px <= 0)
        goto refuse;
    e.stored_ms = util_wall_ms();
    e.fresh_until_ms = e.stored_ms + fresh_ms;
    char pxs[24], vpxs[24];
    snprintf(pxs, sizeof pxs, "%" PRId64, px);
    snprintf(vpxs, sizeof vpxs, "%" PRId64, entry_lifetime_ms(cfg));

    struct buf key = {0}, val = {0};
    if (status == 404 && u->user_is_sid) {
        /* A SID that does not exist never will: no version to check. */
        entry_encode(&val, &e);
        entry_key(&key, cfg->key_prefix, EK_ENTRY, u->account, u->service, (int)u->family, u->user,
                  u->user_len);
        send_set(c, &key, &val, pxs, st);
        goto sent;
    }
    if (status == 200) {
        /* The alias is a fact whatever the stamp says. */
        entry_key(&key, cfg->key_prefix, EK_ALIAS, u->account, u->service, -1, sid, e.sid_len);
        const char *aargs[2] = {identity, pxs};
        size_t alens[2] = {e.identity_len, strlen(pxs)};
        st->replies++;
        eval_script(c->r, alias_script, sizeof alias_script - 1, &key, 1, aargs, alens, 2,
                    store_reply, st);
    }
    if (!cache_stamp_storable(seen) ||
        !bytes_eq(seen->ident, seen->ident_len, e.status == 200 ? identity : u->user,
                  e.status == 200 ? e.identity_len : u->user_len)) {
        st->ok = false; /* nothing proves this answer is current for that identity */
        goto sent;
    }
    e.ver = seen->ver;
    e.ver_len = strlen(e.ver);
    entry_encode(&val, &e);
    struct buf keys[3] = {{0}};
    entry_key(&keys[0], cfg->key_prefix, EK_ENTRY, u->account, u->service, (int)u->family,
              seen->ident, seen->ident_len);
    entry_key(&keys[1], cfg->key_prefix, EK_VERSION, u->account, u->service, -1, seen->ident,
              seen->ident_len);
    entry_key(&keys[2], cfg->key_prefix, EK_HOLD, u->account, u->service, -1, seen->ident,
              seen->ident_len);
    const char *args[4] = {val.data, pxs, seen->ver, vpxs};
    size_t alens[4] = {val.len, strlen(pxs), strlen(seen->ver), strlen(vpxs)};
    /* A newer answer for the same version (a refresh) replaces what this
     * worker's local tier holds; other instances keep theirs at most until
     * its freshness ends, as they would a Redis entry. */
    if (c->local && strlen(u->account) == TWILIO_SID_LEN && strlen(u->service) == TWILIO_SID_LEN) {
        char lk[LKEY_MAX];
        local_remove(c->local, lk,
                     lkey(lk, u->account, u->service, EK_ENTRY, (int)u->family, seen->ident,
                          seen->ident_len));
        local_gauge(c);
    }
    st->replies++;
    eval_script(c->r, store_script, sizeof store_script - 1, keys, 3, args, alens, 4, store_reply,
                st);
    for (int i = 0; i < 3; i++)
        buf_free(&keys[i]);
sent:
    buf_free(&key);
    buf_free(&val);
    if (st->replies > 0)
        return;
refuse:
    st->ok = false;
    st->replies = 1;
    redis_call_soon(c->r, store_reply, st);
}

/* ---- invalidate */

/* A new version, the entries gone, maybe a hold, and the name's tag
 * published to every instance's local tier, all in one step. KEYS: version,
 * hold, entries...; ARGV: new version, version PX, hold PX ("0": none),
 * channel, tag. */
static const char inval_script[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end\n"
    "if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end\n"
    "redis.call('PUBLISH', ARGV[4], ARGV[5])\n"
    "return 1\n";

/* The channel of invalidation messages: one per key prefix. Messages: a
 * name's tag (16 hex digits), or "S" + account + service (a purge). */
static void inval_channel(struct buf *out, const struct config *cfg)
{
    buf_puts(out, cfg->key_prefix);
    buf_puts(out, "invalidations");
}

struct inval {
    struct cache *c;
    cache_inval_cb cb;
    void *arg;
    char account[TWILIO_SID_LEN + 1];
    char service[TWILIO_SID_LEN + 1];
    char *ident;
    size_t ident_len;
    long hold_ms;
};

static void send_inval(struct cache *c, const struct config *cfg, const char *account,
                       const char *service, const char *ident, size_t ident_len, long hold_ms,
                       redis_cb cb, void *arg)
{
    struct buf keys[2 + FAMILY_COUNT] = {{0}};
    entry_key(&keys[0], cfg->key_prefix, EK_VERSION, account, service, -1, ident, ident_len);
    entry_key(&keys[1], cfg->key_prefix, EK_HOLD, account, service, -1, ident, ident_len);
    for (int f = 0; f < FAMILY_COUNT; f++)
        entry_key(&keys[2 + f], cfg->key_prefix, EK_ENTRY, account, service, f, ident, ident_len);
    char ver[24], vpx[24], hpx[24], tag[ENTRY_TAG_LEN + 1];
    new_version(ver);
    snprintf(vpx, sizeof vpx, "%" PRId64, entry_lifetime_ms(cfg));
    snprintf(hpx, sizeof hpx, "%ld", hold_ms > 0 ? hold_ms : 0);
    entry_tag(tag, account, service, ident, ident_len);
    struct buf ch = {0};
    inval_channel(&ch, cfg);
    const char *args[5] = {ver, vpx, hpx, ch.data, tag};
    size_t alens[5] = {strlen(ver), strlen(vpx), strlen(hpx), ch.len, ENTRY_TAG_LEN};
    /* This worker's own tier forgets the name now, before Redis does. */
    if (c->local) {
        local_evict_tag(c->local, ltag(account, service, ident, ident_len));
        local_gauge(c);
    }
    /* Past an open breaker: the other instances' correctness hangs on it. */
    eval_script_via(redis_command_urgent, c->r, inval_script, sizeof inval_script - 1, keys,
                    2 + FAMILY_COUNT, args, alens, 5, cb, arg);
    for (int i = 0; i < 2 + FAMILY_COUNT; i++)
        buf_free(&keys[i]);
    buf_free(&ch);
}

/* Add to the queue (false when it is full). */
static bool enqueue(struct cache *c, const char *account, const char *service, const char *ident,
                    size_t ident_len, long hold_ms, int64_t due_ms, bool bypass)
{
    size_t max = c->cfg ? (size_t)c->cfg->invalidation_queue : 0;
    if (c->n_pending >= max) {
        if (c->metrics)
            metrics_inc(c->metrics, MCOUNT_INVALIDATIONS_DROPPED);
        return false;
    }
    struct pending *p = util_calloc(1, sizeof *p);
    snprintf(p->account, sizeof p->account, "%s", account);
    snprintf(p->service, sizeof p->service, "%s", service);
    p->ident = util_strndup(ident, ident_len);
    p->ident_len = ident_len;
    p->hold_ms = hold_ms;
    p->due_ms = due_ms;
    p->backoff_ms = RETRY_MIN_MS;
    p->bypass = bypass;
    p->owner = c;
    p->next = c->pending;
    c->pending = p;
    c->n_pending++;
    set_pending_gauge(c);
    arm_timer(c);
    return true;
}

static void remember_recent(struct cache *c, const char *account, const char *service,
                            const char *ident, size_t ident_len)
{
    if (!c->cfg || c->cfg->failover_replay <= 0 || c->cfg->invalidation_queue <= 0)
        return;
    if (!c->recent) {
        c->recent_cap = (size_t)c->cfg->invalidation_queue;
        c->recent = util_calloc(c->recent_cap, sizeof *c->recent);
    }
    if (c->n_recent == c->recent_cap) { /* full: forget the oldest */
        free(c->recent[c->recent_head].ident);
        c->recent_head = (c->recent_head + 1) % c->recent_cap;
        c->n_recent--;
    }
    struct recent *e = &c->recent[(c->recent_head + c->n_recent++) % c->recent_cap];
    snprintf(e->account, sizeof e->account, "%s", account);
    snprintf(e->service, sizeof e->service, "%s", service);
    e->ident = util_strndup(ident, ident_len);
    e->ident_len = ident_len;
    e->at_ms = util_now_ms();
}

/* A failover (the sentinels named another primary, or a node that was no
 * master serves a cluster's slots): what the old one took in the last
 * failover_replay seconds may not have reached it, so send it again; this
 * worker trusts the cache for those names only once it landed (bypass). */
static void on_primary_changed(void *arg)
{
    struct cache *c = arg;
    if (c->metrics)
        metrics_inc(c->metrics, MCOUNT_REDIS_PRIMARY_CHANGES);
    /* Invalidations still queued (the old primary died under them) go now,
     * not at their back-off: other instances read the new primary already. */
    int64_t now = util_now_ms();
    for (struct pending *p = c->pending; p; p = p->next)
        if (p->bypass && p->due_ms > now) {
            p->due_ms = now;
            p->backoff_ms = RETRY_MIN_MS;
        }
    arm_timer(c);
    if (!c->cfg)
        return;
    int64_t since = now - (int64_t)c->cfg->failover_replay * 1000;
    size_t n = 0;
    for (size_t i = 0; i < c->n_recent; i++) {
        const struct recent *e = &c->recent[(c->recent_head + i) % c->recent_cap];
        if (e->at_ms >= since &&
            enqueue(c, e->account, e->service, e->ident, e->ident_len, 0, now, true)) {
            n++;
            if (c->metrics)
                metrics_inc(c->metrics, MCOUNT_INVALIDATIONS_REPLAYED);
        }
    }
    if (n)
        log_notice("redis failover: sending %zu invalidation%s of the last %ld s again to the new "
                   "primary",
                   n, n == 1 ? "" : "s", c->cfg->failover_replay);
}

/* An invalidation Redis took: count it, remember it for a failover, and
 * when it set a hold, schedule the second one for the hold's end (a write
 * Twilio applied late must not leave an answer fetched just before it). */
static void inval_landed(struct cache *c, const char *account, const char *service,
                         const char *ident, size_t ident_len, long hold_ms)
{
    remember_recent(c, account, service, ident, ident_len);
    if (c->metrics)
        metrics_inc(c->metrics, MCOUNT_INVALIDATIONS);
    if (hold_ms > 0)
        enqueue(c, account, service, ident, ident_len, 0, util_now_ms() + hold_ms, false);
}

static void remember_cfg(struct cache *c, const struct config *cfg)
{
    if (c->cfg != cfg) {
        config_unref(c->cfg);
        c->cfg = config_ref((struct config *)cfg);
    }
}

static void on_inval(void *arg, const struct redis_reply *rep)
{
    struct inval *st = arg;
    struct cache *c = st->c;
    enum cache_inval_result res = CACHE_INVAL_DONE;
    if (rep->type == REDIS_R_INTEGER && rep->integer == 1)
        inval_landed(c, st->account, st->service, st->ident, st->ident_len, st->hold_ms);
    else
        res = enqueue(c, st->account, st->service, st->ident, st->ident_len, st->hold_ms,
                      util_now_ms() + RETRY_MIN_MS, true)
                  ? CACHE_INVAL_QUEUED
                  : CACHE_INVAL_DROPPED;
    if (st->cb)
        st->cb(st->arg, res);
    free(st->ident);
    free(st);
}

void cache_invalidate(struct cache *c, const struct config *cfg, const char *account,
                      const char *service, const char *identity, size_t identity_len, long hold_ms,
                      cache_inval_cb cb, void *arg)
{
    remember_cfg(c, cfg);
    struct inval *st = util_calloc(1, sizeof *st);
    st->c = c;
    st->cb = cb;
    st->arg = arg;
    snprintf(st->account, sizeof st->account, "%s", account);
    snprintf(st->service, sizeof st->service, "%s", service);
    st->ident = util_strndup(identity, identity_len);
    st->ident_len = identity_len;
    st->hold_ms = hold_ms;
    send_inval(c, cfg, account, service, identity, identity_len, hold_ms, on_inval, st);
}

/* ---- keeping the local tier coherent */

static void on_inval_message(void *arg, const char *msg, size_t len)
{
    struct cache *c = arg;
    char hex[ENTRY_TAG_LEN + 1];
    if (len == ENTRY_TAG_LEN && strspn(msg, "0123456789abcdef") >= ENTRY_TAG_LEN) {
        memcpy(hex, msg, ENTRY_TAG_LEN);
        hex[ENTRY_TAG_LEN] = '\0';
        uint64_t t = strtoull(hex, NULL, 16);
        local_evict_tag(c->local, t ? t : 1);
    } else if (len == 1 + 2 * TWILIO_SID_LEN && msg[0] == 'S') {
        local_evict_prefix(c->local, msg + 1, 2 * TWILIO_SID_LEN);
    } else {
        local_flush(c->local); /* not ours to read: forget everything */
    }
    if (c->metrics)
        metrics_inc(c->metrics, MCOUNT_LOCAL_INVALIDATIONS);
    local_gauge(c);
}

/* Lost: messages may be missed from now on, so nothing kept can be
 * trusted. Confirmed: start empty (nothing was kept while down either). */
static void on_inval_live(void *arg, bool live)
{
    struct cache *c = arg;
    c->local_live = live;
    local_flush(c->local);
    if (c->metrics) {
        metrics_inc(c->metrics, MCOUNT_LOCAL_FLUSHES);
        metrics_gauge_set(c->metrics, MGAUGE_LOCAL_UP, live);
    }
    local_gauge(c);
    if (live)
        log_info("local tier on: subscribed to invalidations");
    else
        log_warn("local tier flushed and off: the invalidation subscription was lost");
}

void cache_enable_local(struct cache *c, struct redis *sub, const struct config *cfg,
                        size_t max_items)
{
    c->local = local_new(max_items);
    c->deliver_ev = event_new(c->base, -1, 0, deliver_local, c);
    struct buf ch = {0};
    inval_channel(&ch, cfg);
    redis_subscribe(sub, ch.data, on_inval_message, on_inval_live, c);
    buf_free(&ch);
}

/* ---- the queue of invalidations to (re)send */

static void on_pending_done(void *arg, const struct redis_reply *rep)
{
    struct pending *p = arg;
    struct cache *c = p->owner;
    if (!c) {
        pending_free(p); /* the cache went away meanwhile */
        return;
    }
    struct pending **pp = &c->sending;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    if (rep->type == REDIS_R_INTEGER && rep->integer == 1) {
        c->n_pending--;
        inval_landed(c, p->account, p->service, p->ident, p->ident_len, p->hold_ms);
        set_pending_gauge(c);
        pending_free(p);
        return;
    }
    if (c->metrics)
        metrics_inc(c->metrics, MCOUNT_INVALIDATIONS_RETRIED);
    p->bypass = true; /* it failed: do not trust the cache for it meanwhile */
    p->backoff_ms = p->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : p->backoff_ms * 2;
    p->due_ms = util_now_ms() + p->backoff_ms;
    p->next = c->pending;
    c->pending = p;
    arm_timer(c);
}

static void run_due(evutil_socket_t fd, short what, void *arg)
{
    struct cache *c = arg;
    (void)fd;
    (void)what;
    int64_t now = util_now_ms();
    struct pending **pp = &c->pending;
    while (*pp) {
        struct pending *p = *pp;
        if (p->due_ms > now || !c->cfg) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        p->next = c->sending;
        c->sending = p;
        send_inval(c, c->cfg, p->account, p->service, p->ident, p->ident_len, p->hold_ms,
                   on_pending_done, p);
    }
    arm_timer(c);
}

static void arm_timer(struct cache *c)
{
    if (!c->base)
        return;
    if (!c->timer && !(c->timer = evtimer_new(c->base, run_due, c)))
        return;
    int64_t next = INT64_MAX, now = util_now_ms();
    for (const struct pending *p = c->pending; p; p = p->next)
        if (p->due_ms < next)
            next = p->due_ms;
    if (next == INT64_MAX) {
        evtimer_del(c->timer);
        return;
    }
    int64_t ms = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->timer, &tv);
}

/* ---- cross-instance fetch lock */

struct lock_op {
    cache_lock_cb cb;
    void *arg;
};

static void on_lock_set(void *arg, const struct redis_reply *rep)
{
    struct lock_op *op = arg;
    enum cache_lock_result res = CACHE_LOCK_ERROR;
    if (rep->type == REDIS_R_STATUS)
        res = CACHE_LOCK_ACQUIRED;
    else if (rep->type == REDIS_R_NIL)
        res = CACHE_LOCK_HELD;
    op->cb(op->arg, res);
    free(op);
}

void cache_lock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                const char *token, long ttl_ms, cache_lock_cb cb, void *arg)
{
    struct lock_op *op = util_calloc(1, sizeof *op);
    op->cb = cb;
    op->arg = arg;
    struct buf key = {0};
    char px[24];
    snprintf(px, sizeof px, "%ld", ttl_ms > 0 ? ttl_ms : 1);
    entry_key(&key, cfg->key_prefix, EK_LOCK, u->account, u->service, (int)u->family, u->user,
              u->user_len);
    const char *argv[6] = {"SET", key.data, token, "NX", "PX", px};
    size_t lens[6] = {3, key.len, strlen(token), 2, 2, strlen(px)};
    redis_command(c->r, on_lock_set, op, 6, argv, lens);
    buf_free(&key);
}

/* Delete the lock only if it still holds our token: once it expired, another
 * fetch may own it. */
static const char unlock_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

static void on_unlocked(void *arg, const struct redis_reply *rep)
{
    (void)arg;
    (void)rep; /* a lock left behind expires by itself */
}

void cache_unlock(struct cache *c, const struct config *cfg, const struct cache_user *u,
                  const char *token)
{
    struct buf key = {0};
    entry_key(&key, cfg->key_prefix, EK_LOCK, u->account, u->service, (int)u->family, u->user,
              u->user_len);
    const char *args[1] = {token};
    size_t alens[1] = {strlen(token)};
    eval_script(c->r, unlock_script, sizeof unlock_script - 1, &key, 1, args, alens, 1, on_unlocked,
                NULL);
    buf_free(&key);
}

/* ---- purge a service */

/* Keys examined per SCAN step: bounds the work Redis does per command, so a
 * purge never stalls other clients the way KEYS would. */
#define PURGE_SCAN_COUNT "500"

struct purge {
    struct redis *r;
    cache_count_cb cb;
    void *arg;
    struct buf channel, message; /* announced when done, so local tiers forget it */
    struct buf pattern;
    char cursor[32];
    long long deleted;
    size_t shard, n_shards; /* a cluster's masters are scanned one after the other */
    size_t unlinking;       /* UNLINKs of this step still unanswered */
    bool failed;
};

static void purge_scan(struct purge *st);

static void on_published(void *arg, const struct redis_reply *rep)
{
    (void)arg;
    (void)rep;
}

static void purge_finish(struct purge *st, bool ok)
{
    /* Announced even after a failure: whatever was deleted must leave the
     * local tiers too (a lost announcement costs them their subscription
     * only if Redis is gone, and then they flush anyway). */
    const char *argv[3] = {"PUBLISH", st->channel.data, st->message.data};
    size_t lens[3] = {7, st->channel.len, st->message.len};
    redis_command_urgent(st->r, on_published, NULL, 3, argv, lens);
    st->cb(st->arg, ok ? st->deleted : -1);
    buf_free(&st->pattern);
    buf_free(&st->channel);
    buf_free(&st->message);
    free(st);
}

/* After a step: the next SCAN of this shard, the next shard, or done. */
static void purge_next(struct purge *st)
{
    if (st->failed) {
        purge_finish(st, false);
        return;
    }
    if (strcmp(st->cursor, "0") == 0 && ++st->shard >= st->n_shards) {
        purge_finish(st, true);
        return;
    }
    purge_scan(st);
}

static void on_purge_del(void *arg, const struct redis_reply *rep)
{
    struct purge *st = arg;
    if (rep->type == REDIS_R_INTEGER)
        st->deleted += rep->integer;
    else
        st->failed = true;
    if (--st->unlinking == 0)
        purge_next(st);
}

static void on_purge_scan(void *arg, const struct redis_reply *rep)
{
    struct purge *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 2 ||
        rep->elements[0].type != REDIS_R_STRING || rep->elements[0].len >= sizeof st->cursor ||
        rep->elements[1].type != REDIS_R_ARRAY) {
        purge_finish(st, false);
        return;
    }
    memcpy(st->cursor, rep->elements[0].str, rep->elements[0].len);
    st->cursor[rep->elements[0].len] = '\0';
    const struct redis_reply *keys = &rep->elements[1];
    if (keys->n_elements == 0) {
        purge_next(st);
        return;
    }
    /* One UNLINK per key: in a cluster the keys of one step live in many
     * slots, and a command may touch only one. */
    st->unlinking = keys->n_elements;
    for (size_t i = 0; i < keys->n_elements; i++) {
        const char *argv[2] = {"UNLINK", keys->elements[i].str ? keys->elements[i].str : ""};
        size_t lens[2] = {6, keys->elements[i].len};
        redis_command(st->r, on_purge_del, st, 2, argv, lens);
    }
}

static void purge_scan(struct purge *st)
{
    const struct buf *pat = &st->pattern;
    const char *argv[6] = {"SCAN", st->cursor, "MATCH", pat->data, "COUNT", PURGE_SCAN_COUNT};
    size_t lens[6] = {4, strlen(st->cursor), 5, pat->len, 5, strlen(PURGE_SCAN_COUNT)};
    redis_command_shard(st->r, st->shard, on_purge_scan, st, 6, argv, lens);
}

void cache_purge_service(struct cache *c, const struct config *cfg, const char *account,
                         const char *service, cache_count_cb cb, void *arg)
{
    struct purge *st = util_calloc(1, sizeof *st);
    st->r = c->r;
    st->cb = cb;
    st->arg = arg;
    entry_service_pattern(&st->pattern, cfg->key_prefix, account, service);
    inval_channel(&st->channel, cfg);
    buf_printf(&st->message, "S%s%s", account, service);
    if (c->local) {
        char k[LKEY_MAX];
        local_evict_prefix(c->local, k, lkey(k, account, service, 0, 0, "", 0) - 2);
        local_gauge(c);
    }
    snprintf(st->cursor, sizeof st->cursor, "0");
    st->n_shards = redis_shards(c->r);
    if (!st->n_shards) { /* a cluster whose map is not known yet */
        st->failed = true;
        st->shard = 0;
        st->n_shards = 1;
    }
    purge_scan(st);
}

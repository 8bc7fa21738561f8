/* cache: user lookups, stores and invalidations as short chains of Redis
 * commands (redis.c) over the keys and envelopes of entry.c. Each call owns
 * one small heap state that lives until its callback has run; the states
 * point at the redis client only, so cache_free does not strand them (the
 * redis client answers every command, with ERROR at the latest in
 * redis_free). Callbacks are never run from inside a cache_* call. */
#include "cache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "redis.h"
#include "twilio.h"
#include "util.h"

struct cache {
    struct redis *r;
};

struct cache *cache_new(struct redis *r)
{
    struct cache *c = util_calloc(1, sizeof *c);
    c->r = r;
    return c;
}

void cache_free(struct cache *c)
{
    free(c);
}

/* The key parts a multi-step call needs after the caller's strings (and
 * config snapshot) may be gone: one allocation, freed with the call. */
struct keyparts {
    char *block;
    const char *prefix, *account, *service, *sid; /* sid "" when none */
};

static void keyparts_init(struct keyparts *k, const char *prefix, const char *account,
                          const char *service, const char *sid)
{
    const char *in[4] = {prefix, account, service, sid ? sid : ""};
    size_t len[4], total = 0;
    for (int i = 0; i < 4; i++)
        total += (len[i] = strlen(in[i])) + 1;
    k->block = util_calloc(1, total);
    const char **out[4] = {&k->prefix, &k->account, &k->service, &k->sid};
    char *p = k->block;
    for (int i = 0; i < 4; i++) {
        memcpy(p, in[i], len[i] + 1);
        *out[i] = p;
        p += len[i] + 1;
    }
}

/* ---- lookup */

struct lookup {
    struct redis *r;
    cache_lookup_cb cb;
    void *arg;
    enum api_family family;
    bool by_sid;
    struct keyparts k;
    char *ident; /* identity the entry must carry (requested, or from the alias) */
    size_t ident_len;
    struct buf key;
    int64_t epoch; /* invalidation counter seen by the first read, -1 unknown */
};

/* The counter element of an MGET: absent = 0 (no invalidation yet). */
static int64_t parse_epoch(const struct redis_reply *rep)
{
    if (rep->type == REDIS_R_NIL)
        return 0;
    if (rep->type != REDIS_R_STRING || rep->len == 0 || rep->len > 19)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < rep->len; i++) {
        if (rep->str[i] < '0' || rep->str[i] > '9')
            return -1;
        v = v * 10 + (rep->str[i] - '0');
    }
    return v;
}

static void lookup_finish(struct lookup *st, enum cache_result res, const struct entry *e)
{
    st->cb(st->arg, res, e, res == CACHE_ERROR ? -1 : st->epoch);
    free(st->k.block);
    free(st->ident);
    buf_free(&st->key);
    free(st);
}

static bool bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The user entry, found under an identity (asked for directly or via the
 * SID alias). */
static void user_reply(struct lookup *st, const struct redis_reply *rep)
{
    struct entry e;
    enum cache_result res = CACHE_ABSENT;
    if (rep->type == REDIS_R_STRING) {
        if (entry_decode(rep->str, rep->len, &e) == 0)
            res = CACHE_FOUND;
    } else if (rep->type != REDIS_R_NIL) {
        res = CACHE_ERROR;
    }
    if (res == CACHE_FOUND && st->by_sid) {
        /* The alias may outlive its user: after a delete and re-create the
         * identity names a different user (another SID). Serve the entry
         * only if it is the very user that was asked for. */
        if (e.status != 200 || !bytes_eq(e.sid, e.sid_len, st->k.sid, strlen(st->k.sid)) ||
            !bytes_eq(e.identity, e.identity_len, st->ident, st->ident_len))
            res = CACHE_ABSENT;
    } else if (res == CACHE_FOUND && e.status == 200 &&
               !bytes_eq(e.identity, e.identity_len, st->ident, st->ident_len)) {
        res = CACHE_ABSENT;
    }
    lookup_finish(st, res, res == CACHE_FOUND ? &e : NULL);
}

static void on_user_get(void *arg, const struct redis_reply *rep)
{
    user_reply(arg, rep);
}

/* MGET entry, counter. */
static void on_ident_mget(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 2) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    st->epoch = parse_epoch(&rep->elements[1]);
    user_reply(st, &rep->elements[0]);
}

/* MGET alias, negative-entry-under-SID, counter. */
static void on_sid_mget(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 3) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    const struct redis_reply *alias = &rep->elements[0], *neg = &rep->elements[1];
    st->epoch = parse_epoch(&rep->elements[2]);
    if (alias->type == REDIS_R_STRING && alias->len > 0) {
        /* The positive path wins over a negative entry: an alias is only
         * ever written from a 200 for this SID. */
        st->ident = util_strndup(alias->str, alias->len);
        st->ident_len = alias->len;
        entry_user_key(&st->key, st->k.prefix, st->k.account, st->family, st->k.service, st->ident,
                       st->ident_len);
        const char *argv[2] = {"GET", st->key.data};
        size_t lens[2] = {3, st->key.len};
        redis_command(st->r, on_user_get, st, 2, argv, lens);
        return;
    }
    struct entry e;
    enum cache_result res = CACHE_ERROR;
    if (neg->type == REDIS_R_STRING)
        res = entry_decode(neg->str, neg->len, &e) == 0 && e.status == 404 ? CACHE_FOUND
                                                                           : CACHE_ABSENT;
    else if (neg->type == REDIS_R_NIL &&
             (alias->type == REDIS_R_NIL || alias->type == REDIS_R_STRING))
        res = CACHE_ABSENT;
    lookup_finish(st, res, res == CACHE_FOUND ? &e : NULL);
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
    struct lookup *st = util_calloc(1, sizeof *st);
    st->r = c->r;
    st->cb = cb;
    st->arg = arg;
    st->family = u->family;
    st->by_sid = u->user_is_sid;
    st->epoch = -1;
    if (u->user_len == 0 || (u->user_is_sid && u->user_len != TWILIO_SID_LEN)) {
        redis_call_soon(c->r, on_lookup_none, st);
        return;
    }
    if (!st->by_sid) {
        st->ident = util_calloc(1, u->user_len + 1);
        memcpy(st->ident, u->user, u->user_len);
        st->ident_len = u->user_len;
        entry_user_key(&st->key, cfg->key_prefix, u->account, u->family, u->service, u->user,
                       u->user_len);
        struct buf clock = {0};
        entry_clock_key(&clock, cfg->key_prefix, u->account);
        const char *argv[3] = {"MGET", st->key.data, clock.data};
        size_t lens[3] = {4, st->key.len, clock.len};
        redis_command(c->r, on_ident_mget, st, 3, argv, lens);
        buf_free(&clock);
        return;
    }
    char sid[TWILIO_SID_LEN + 1];
    memcpy(sid, u->user, TWILIO_SID_LEN);
    sid[TWILIO_SID_LEN] = '\0';
    keyparts_init(&st->k, cfg->key_prefix, u->account, u->service, sid);
    struct buf alias = {0};
    entry_alias_key(&alias, cfg->key_prefix, u->account, u->service, sid);
    entry_user_key(&st->key, cfg->key_prefix, u->account, u->family, u->service, sid,
                   TWILIO_SID_LEN);
    struct buf clock = {0};
    entry_clock_key(&clock, cfg->key_prefix, u->account);
    const char *argv[4] = {"MGET", alias.data, st->key.data, clock.data};
    size_t lens[4] = {4, alias.len, st->key.len, clock.len};
    redis_command(c->r, on_sid_mget, st, 4, argv, lens);
    buf_free(&alias);
    buf_free(&clock);
}

/* ---- store */

struct store {
    cache_done_cb cb;
    void *arg;
    bool ok;
};

/* EVAL script with keys[0..nkeys) as KEYS and args[0..nargs) as ARGV, every
 * one binary-safe. */
static void eval_script(struct redis *r, const char *script, size_t script_len,
                        const struct buf *keys, int nkeys, const char *const *args,
                        const size_t *arg_lens, int nargs, redis_cb cb, void *arg)
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
    redis_command(r, cb, arg, argc, argv, lens);
}

/* Store only if no tombstone of this user is newer than the epoch the lookup
 * saw, and the counter has not gone back (Redis restarted or evicted it since
 * the lookup: tombstones may be lost with it, so nothing proves the fetch is
 * current). KEYS: entry, alias (= entry when none), counter, tombstones...;
 * ARGV: value, PX, alias value, epoch, "1" to write the alias. Returns 1
 * stored, 0 refused. */
static const char store_script[] =
    "local e = tonumber(ARGV[4])\n"
    "if tonumber(redis.call('GET', KEYS[3]) or '0') < e then return 0 end\n"
    "for i = 4, #KEYS do\n"
    "  local g = redis.call('GET', KEYS[i])\n"
    "  if g and tonumber(g) > e then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "if ARGV[5] == '1' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end\n"
    "return 1\n";

static void store_reply(void *arg, const struct redis_reply *rep)
{
    struct store *st = arg;
    /* A refusal (0) is the coherence rule working, not a failure. */
    st->ok = rep->type == REDIS_R_INTEGER;
    if (st->cb)
        st->cb(st->arg, st->ok);
    free(st);
}

/* For a store that sends nothing: report the preset outcome. */
static void store_soon(void *arg, const struct redis_reply *rep)
{
    struct store *st = arg;
    (void)rep;
    if (st->cb)
        st->cb(st->arg, st->ok);
    free(st);
}

void cache_store(struct cache *c, const struct config *cfg, const struct cache_user *u, int status,
                 const char *body, size_t body_len, long ttl_s, int64_t epoch, cache_done_cb cb,
                 void *arg)
{
    struct store *st = util_calloc(1, sizeof *st);
    st->cb = cb;
    st->arg = arg;
    st->ok = true;

    char sid[TWILIO_SID_LEN + 1] = "";
    char identity[TWILIO_IDENTITY_MAX + 1];
    struct entry e = {.status = status, .sid = "", .body = body, .body_len = body_len};
    if (epoch < 0)
        goto fail; /* no lookup saw the counter: cannot prove the fetch is current */
    if (status == 200) {
        /* The body, not the request, says who this is: a fetch by SID
         * learns the identity here. */
        if (entry_user_fields(body, body_len, sid, sizeof sid, identity, sizeof identity) < 0)
            goto fail;
        e.sid = sid;
        e.sid_len = strlen(sid);
        e.identity = identity;
        e.identity_len = strlen(identity);
    } else if (status == 404 && u->user_len > 0) {
        e.identity = u->user_is_sid ? "" : u->user;
        e.identity_len = u->user_is_sid ? 0 : u->user_len;
    } else {
        goto fail;
    }

    /* ±5 % on freshness so entries written together do not all expire (and
     * stampede upstream) together. */
    int64_t ttl_ms = ttl_s > 0 ? (int64_t)ttl_s * 1000 : 0;
    int64_t jitter = ttl_ms / 20;
    int64_t fresh_ms = ttl_ms - jitter + (int64_t)util_random_below((uint64_t)(2 * jitter) + 1);
    long stale_s = cfg->stale_while_revalidate > cfg->stale_if_error ? cfg->stale_while_revalidate
                                                                     : cfg->stale_if_error;
    int64_t px = fresh_ms + (int64_t)(stale_s > 0 ? stale_s : 0) * 1000;
    if (px <= 0) /* nothing would survive: not storing is the correct outcome */
        goto done;
    e.stored_ms = util_wall_ms();
    e.fresh_until_ms = e.stored_ms + fresh_ms;
    char pxs[24], eps[24];
    snprintf(pxs, sizeof pxs, "%" PRId64, px);
    snprintf(eps, sizeof eps, "%" PRId64, epoch);

    enum { K_ENTRY, K_ALIAS, K_CLOCK, K_TOMB_A, K_TOMB_B, K_MAX };
    struct buf keys[K_MAX] = {{0}}, val = {0};
    int nkeys = K_TOMB_A + 1;
    entry_clock_key(&keys[K_CLOCK], cfg->key_prefix, u->account);
    entry_encode(&val, &e);
    if (status == 200) {
        entry_user_key(&keys[K_ENTRY], cfg->key_prefix, u->account, u->family, u->service,
                       e.identity, e.identity_len);
        /* Same lifetime as the entry, rewritten with every store, so the
         * alias never expires before the entry it leads to. */
        entry_alias_key(&keys[K_ALIAS], cfg->key_prefix, u->account, u->service, sid);
        entry_tomb_key(&keys[K_TOMB_A], cfg->key_prefix, u->account, u->service, e.identity,
                       e.identity_len);
        entry_tomb_key(&keys[K_TOMB_B], cfg->key_prefix, u->account, u->service, sid, e.sid_len);
        nkeys = K_TOMB_B + 1;
    } else {
        entry_user_key(&keys[K_ENTRY], cfg->key_prefix, u->account, u->family, u->service, u->user,
                       u->user_len);
        entry_user_key(&keys[K_ALIAS], cfg->key_prefix, u->account, u->family, u->service, u->user,
                       u->user_len);
        entry_tomb_key(&keys[K_TOMB_A], cfg->key_prefix, u->account, u->service, u->user,
                       u->user_len);
    }
    const char *args[5] = {val.data, pxs, e.identity, eps, status == 200 ? "1" : "0"};
    size_t alens[5] = {val.len, strlen(pxs), e.identity_len, strlen(eps), 1};
    eval_script(c->r, store_script, sizeof store_script - 1, keys, nkeys, args, alens, 5,
                store_reply, st);
    for (int k = 0; k < K_MAX; k++)
        buf_free(&keys[k]);
    buf_free(&val);
    return;

fail:
    st->ok = false;
done:
    if (cb)
        redis_call_soon(c->r, store_soon, st);
    else
        free(st);
}

/* ---- invalidate */

struct inval {
    struct redis *r;
    cache_done_cb cb;
    void *arg;
    struct keyparts k;
    char *ident; /* identity-only invalidations, while the SID is looked up */
    size_t ident_len;
    bool partial; /* the alias could not be read: identity keys may survive */
    char tomb_px[24];
};

/* KEYS: counter, keys to delete..., tombstones (ARGV[1] of them); ARGV[2]:
 * tombstone PX. One script, so the counter, the deletes and the tombstones
 * change together. */
static const char inval_script[] =
    "local c = redis.call('INCR', KEYS[1])\n"
    "local nt = tonumber(ARGV[1])\n"
    "for i = 2, #KEYS - nt do redis.call('DEL', KEYS[i]) end\n"
    "for i = #KEYS - nt + 1, #KEYS do redis.call('SET', KEYS[i], c, 'PX', ARGV[2]) end\n"
    "return c\n";

static void inval_finish(struct inval *st, bool ok)
{
    if (st->cb)
        st->cb(st->arg, ok && !st->partial);
    free(st->k.block);
    free(st->ident);
    free(st);
}

static void on_del(void *arg, const struct redis_reply *rep)
{
    inval_finish(arg, rep->type == REDIS_R_INTEGER);
}

static void on_nothing(void *arg, const struct redis_reply *rep)
{
    (void)rep;
    inval_finish(arg, true);
}

/* Every key the user can have in this service goes at once: its entry in each
 * family under identity and under SID (negative entries), and the alias; the
 * counter moves on and the user's tombstones record it. */
static void inval_del(struct inval *st, const char *ident, size_t ident_len)
{
    enum { MAX_KEYS = 1 + 2 * FAMILY_COUNT + 1 + 2 };
    struct buf keys[MAX_KEYS];
    memset(keys, 0, sizeof keys);
    int n = 0, ntomb = 0;
    entry_clock_key(&keys[n++], st->k.prefix, st->k.account);
    for (int f = 0; f < FAMILY_COUNT; f++) {
        if (ident)
            entry_user_key(&keys[n++], st->k.prefix, st->k.account, (enum api_family)f,
                           st->k.service, ident, ident_len);
        if (st->k.sid[0])
            entry_user_key(&keys[n++], st->k.prefix, st->k.account, (enum api_family)f,
                           st->k.service, st->k.sid, strlen(st->k.sid));
    }
    if (st->k.sid[0])
        entry_alias_key(&keys[n++], st->k.prefix, st->k.account, st->k.service, st->k.sid);
    if (ident) {
        entry_tomb_key(&keys[n++], st->k.prefix, st->k.account, st->k.service, ident, ident_len);
        ntomb++;
    }
    if (st->k.sid[0]) {
        entry_tomb_key(&keys[n++], st->k.prefix, st->k.account, st->k.service, st->k.sid,
                       strlen(st->k.sid));
        ntomb++;
    }
    char nt[12];
    snprintf(nt, sizeof nt, "%d", ntomb);
    const char *args[2] = {nt, st->tomb_px};
    size_t alens[2] = {strlen(nt), strlen(st->tomb_px)};
    eval_script(st->r, inval_script, sizeof inval_script - 1, keys, n, args, alens, 2, on_del, st);
    for (int i = 0; i < n; i++)
        buf_free(&keys[i]);
}

static void on_inval_alias(void *arg, const struct redis_reply *rep)
{
    struct inval *st = arg;
    if (rep->type == REDIS_R_STRING && rep->len > 0) {
        inval_del(st, rep->str, rep->len);
        return;
    }
    /* Without the identity the SID keys can still go; report the failure
     * so the caller knows identity keys may be left. */
    if (rep->type != REDIS_R_NIL && rep->type != REDIS_R_STRING)
        st->partial = true;
    inval_del(st, NULL, 0);
}

/* The identity's cached entries (one per family) name its SID, so the SID
 * alias and SID-keyed entries go too. Any entry will do: all are the same
 * user, or a cached 404 (no SID). */
static void on_inval_entries(void *arg, const struct redis_reply *rep)
{
    struct inval *st = arg;
    char sid[TWILIO_SID_LEN + 1] = "";
    for (size_t i = 0; rep->type == REDIS_R_ARRAY && i < rep->n_elements && !sid[0]; i++) {
        const struct redis_reply *el = &rep->elements[i];
        struct entry e;
        if (el->type == REDIS_R_STRING && entry_decode(el->str, el->len, &e) == 0 &&
            e.status == 200 && e.sid_len == TWILIO_SID_LEN &&
            bytes_eq(e.identity, e.identity_len, st->ident, st->ident_len)) {
            memcpy(sid, e.sid, TWILIO_SID_LEN);
            sid[TWILIO_SID_LEN] = '\0';
        }
    }
    if (sid[0]) {
        struct keyparts k;
        keyparts_init(&k, st->k.prefix, st->k.account, st->k.service, sid);
        free(st->k.block);
        st->k = k;
    }
    inval_del(st, st->ident, st->ident_len);
}

void cache_invalidate_user(struct cache *c, const struct config *cfg, const char *account,
                           const char *service, const char *identity, size_t identity_len,
                           const char *sid, cache_done_cb cb, void *arg)
{
    struct inval *st = util_calloc(1, sizeof *st);
    st->r = c->r;
    st->cb = cb;
    st->arg = arg;
    if (sid && !*sid)
        sid = NULL;
    if (identity && identity_len == 0)
        identity = NULL;
    keyparts_init(&st->k, cfg->key_prefix, account, service, sid);
    /* A tombstone must outlive any fetch that could have read the counter
     * before this invalidation: every retry, the queue wait, and margin. */
    long long tomb_ms =
        2LL * (cfg->timeout_ms * (cfg->max_retries + 1) + cfg->queue_timeout_ms) + 5000;
    snprintf(st->tomb_px, sizeof st->tomb_px, "%lld", tomb_ms);
    if (!identity && !sid) {
        redis_call_soon(c->r, on_nothing, st);
        return;
    }
    if (identity && sid) {
        inval_del(st, identity, identity_len);
        return;
    }
    if (identity) {
        st->ident = util_calloc(1, identity_len + 1);
        memcpy(st->ident, identity, identity_len);
        st->ident_len = identity_len;
        struct buf keys[FAMILY_COUNT] = {{0}};
        const char *argv[1 + FAMILY_COUNT] = {"MGET"};
        size_t lens[1 + FAMILY_COUNT] = {4};
        for (int f = 0; f < FAMILY_COUNT; f++) {
            entry_user_key(&keys[f], cfg->key_prefix, account, (enum api_family)f, service,
                           identity, identity_len);
            argv[1 + f] = keys[f].data;
            lens[1 + f] = keys[f].len;
        }
        redis_command(c->r, on_inval_entries, st, 1 + FAMILY_COUNT, argv, lens);
        for (int f = 0; f < FAMILY_COUNT; f++)
            buf_free(&keys[f]);
        return;
    }
    struct buf alias = {0};
    entry_alias_key(&alias, cfg->key_prefix, account, service, sid);
    const char *argv[2] = {"GET", alias.data};
    size_t lens[2] = {3, alias.len};
    redis_command(c->r, on_inval_alias, st, 2, argv, lens);
    buf_free(&alias);
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
    entry_lock_key(&key, cfg->key_prefix, u->account, u->family, u->service, u->user, u->user_len);
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
    entry_lock_key(&key, cfg->key_prefix, u->account, u->family, u->service, u->user, u->user_len);
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
    struct buf patterns[2]; /* user entries, SID aliases */
    int pattern;
    char cursor[32];
    long long deleted;
};

static void purge_scan(struct purge *st);

static void purge_finish(struct purge *st, bool ok)
{
    st->cb(st->arg, ok ? st->deleted : -1);
    buf_free(&st->patterns[0]);
    buf_free(&st->patterns[1]);
    free(st);
}

/* After a step: the next SCAN of this pattern, the next pattern, or done. */
static void purge_next(struct purge *st)
{
    if (strcmp(st->cursor, "0") == 0) {
        if (++st->pattern == 2) {
            purge_finish(st, true);
            return;
        }
    }
    purge_scan(st);
}

static void on_purge_del(void *arg, const struct redis_reply *rep)
{
    struct purge *st = arg;
    if (rep->type != REDIS_R_INTEGER) {
        purge_finish(st, false);
        return;
    }
    st->deleted += rep->integer;
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
    size_t n = keys->n_elements + 1;
    const char **argv = util_calloc(n, sizeof *argv);
    size_t *lens = util_calloc(n, sizeof *lens);
    argv[0] = "UNLINK";
    lens[0] = 6;
    for (size_t i = 0; i < keys->n_elements; i++) {
        argv[i + 1] = keys->elements[i].str ? keys->elements[i].str : "";
        lens[i + 1] = keys->elements[i].len;
    }
    redis_command(st->r, on_purge_del, st, (int)n, argv, lens);
    free(argv);
    free(lens);
}

static void purge_scan(struct purge *st)
{
    const struct buf *pat = &st->patterns[st->pattern];
    const char *argv[6] = {"SCAN", st->cursor, "MATCH", pat->data, "COUNT", PURGE_SCAN_COUNT};
    size_t lens[6] = {4, strlen(st->cursor), 5, pat->len, 5, strlen(PURGE_SCAN_COUNT)};
    redis_command(st->r, on_purge_scan, st, 6, argv, lens);
}

void cache_purge_service(struct cache *c, const struct config *cfg, const char *account,
                         const char *service, cache_count_cb cb, void *arg)
{
    struct purge *st = util_calloc(1, sizeof *st);
    st->r = c->r;
    st->cb = cb;
    st->arg = arg;
    entry_service_pattern(&st->patterns[0], cfg->key_prefix, account, service, false);
    entry_service_pattern(&st->patterns[1], cfg->key_prefix, account, service, true);
    snprintf(st->cursor, sizeof st->cursor, "0");
    purge_scan(st);
}

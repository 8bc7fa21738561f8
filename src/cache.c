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
};

static void lookup_finish(struct lookup *st, enum cache_result res, const struct entry *e)
{
    st->cb(st->arg, res, e);
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
static void on_user_get(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
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

/* MGET alias, negative-entry-under-SID. */
static void on_sid_mget(void *arg, const struct redis_reply *rep)
{
    struct lookup *st = arg;
    if (rep->type != REDIS_R_ARRAY || rep->n_elements != 2) {
        lookup_finish(st, CACHE_ERROR, NULL);
        return;
    }
    const struct redis_reply *alias = &rep->elements[0], *neg = &rep->elements[1];
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
        const char *argv[2] = {"GET", st->key.data};
        size_t lens[2] = {3, st->key.len};
        redis_command(c->r, on_user_get, st, 2, argv, lens);
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
    const char *argv[3] = {"MGET", alias.data, st->key.data};
    size_t lens[3] = {4, alias.len, st->key.len};
    redis_command(c->r, on_sid_mget, st, 3, argv, lens);
    buf_free(&alias);
}

/* ---- store */

struct store {
    cache_done_cb cb;
    void *arg;
    int waiting; /* replies still due */
    bool ok;
};

static void store_reply(void *arg, const struct redis_reply *rep)
{
    struct store *st = arg;
    if (rep->type != REDIS_R_STATUS)
        st->ok = false;
    if (--st->waiting > 0)
        return;
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

static void set_px(struct redis *r, struct store *st, const struct buf *key, const char *val,
                   size_t val_len, const char *px)
{
    const char *argv[5] = {"SET", key->data, val, "PX", px};
    size_t lens[5] = {3, key->len, val_len, 2, strlen(px)};
    st->waiting++;
    redis_command(r, store_reply, st, 5, argv, lens);
}

void cache_store(struct cache *c, const struct config *cfg, const struct cache_user *u, int status,
                 const char *body, size_t body_len, long ttl_s, cache_done_cb cb, void *arg)
{
    struct store *st = util_calloc(1, sizeof *st);
    st->cb = cb;
    st->arg = arg;
    st->ok = true;

    char sid[TWILIO_SID_LEN + 1] = "";
    char identity[TWILIO_IDENTITY_MAX + 1];
    struct entry e = {.status = status, .sid = "", .body = body, .body_len = body_len};
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
    char pxs[24];
    snprintf(pxs, sizeof pxs, "%" PRId64, px);

    struct buf key = {0}, val = {0};
    entry_encode(&val, &e);
    if (status == 200) {
        entry_user_key(&key, cfg->key_prefix, u->account, u->family, u->service, e.identity,
                       e.identity_len);
        set_px(c->r, st, &key, val.data, val.len, pxs);
        /* Same lifetime as the entry, rewritten with every store, so the
         * alias never expires before the entry it leads to. */
        entry_alias_key(&key, cfg->key_prefix, u->account, u->service, sid);
        set_px(c->r, st, &key, identity, e.identity_len, pxs);
    } else {
        entry_user_key(&key, cfg->key_prefix, u->account, u->family, u->service, u->user,
                       u->user_len);
        set_px(c->r, st, &key, val.data, val.len, pxs);
    }
    buf_free(&key);
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
    bool partial; /* the alias could not be read: identity keys may survive */
};

static void inval_finish(struct inval *st, bool ok)
{
    if (st->cb)
        st->cb(st->arg, ok && !st->partial);
    free(st->k.block);
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

/* One DEL for every key the user can have in this service: its entry in
 * each family under identity and under SID (negative entries), and the
 * alias. One command, so it succeeds or fails as a whole. */
static void inval_del(struct inval *st, const char *ident, size_t ident_len)
{
    enum { MAX_KEYS = 2 * FAMILY_COUNT + 1 };
    struct buf keys[MAX_KEYS];
    const char *argv[MAX_KEYS + 1] = {"DEL"};
    size_t lens[MAX_KEYS + 1] = {3};
    int n = 0;
    memset(keys, 0, sizeof keys);
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
    for (int i = 0; i < n; i++) {
        argv[i + 1] = keys[i].data;
        lens[i + 1] = keys[i].len;
    }
    redis_command(st->r, on_del, st, n + 1, argv, lens);
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
    if (!identity && !sid) {
        redis_call_soon(c->r, on_nothing, st);
        return;
    }
    if (identity) {
        inval_del(st, identity, identity_len);
        return;
    }
    struct buf alias = {0};
    entry_alias_key(&alias, cfg->key_prefix, account, service, sid);
    const char *argv[2] = {"GET", alias.data};
    size_t lens[2] = {3, alias.len};
    redis_command(c->r, on_inval_alias, st, 2, argv, lens);
    buf_free(&alias);
}

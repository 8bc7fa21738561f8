/* router: the request state machine. For each request: admit it (admit.c),
 * take a token from the client's rate, validate, then either answer from the
 * cache or go upstream, keeping the cache coherent on writes. Per-worker
 * state: the single-flight table (flights of flight.c's state machine, keyed
 * by user and coherence stamp) and the default-service learner. */
#include "router.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admit.h"
#include "cache.h"
#include "config.h"
#include "entry.h"
#include "flight.h"
#include "admission.h"
#include "links.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "response.h"
#include "upstream.h"
#include "webhook.h"
#include "worker.h"

#define FLIGHT_BUCKETS 1024
/* How often worker 0 asks Twilio for the account's default Conversation
 * Service again (GET /v1/Configuration), once it is known. */
#define DEFAULT_SERVICE_RECHECK_S 300

struct rstate;

/* One fetch of one user, shared by every request whose lookup saw the same
 * stamp; its life is flight.c's state machine, this is its I/O. With
 * lock_timeout_ms set it first takes the identity's lock in Redis, so
 * gateways sharing that Redis fetch once. */
struct flight {
    struct flight *next; /* bucket chain */
    struct router *r;
    struct flight_sm sm;
    struct flight_policy pol;
    bool linked;    /* in the table (joinable) */
    struct buf key; /* foreground/background, family, service, user, stamp */
    struct rstate *waiters;
    struct upstream_call *call;
    struct config *cfg;   /* snapshot used for the fetch and the store */
    struct cache_user cu; /* the user as the requests named it */
    struct cache_user id; /* its identity (for the lock), when known */
    struct cache_stamp stamp;
    char service[TWILIO_SID_LEN + 1];
    char *user;
    char *url;
    bool store;
    struct event *poll_timer;
    char token[33]; /* lock owner token */
};

/* Flights polling for another's lock, per worker: past this, new misses
 * fetch on their own rather than queue up more pollers. */
#define MAX_LOCK_WAITS 1024
#define POLL_MIN_MS 5
#define POLL_MAX_MS 100

struct router {
    struct worker *w;
    struct flight *buckets[FLIGHT_BUCKETS];
    struct event *learn_timer;
    long learn_backoff_ms;
    bool learning;
    int lock_waits;      /* flights in FS_WAITING / FS_POLLING */
    struct pool rstates; /* freed request states */
};

/* Per-request state; freed by finish(). */
struct rstate {
    struct request *req;
    struct router *r;
    char service[TWILIO_SID_LEN + 1]; /* resolved service ("" = unknown) */
    struct cache_user cu;
    struct flight *flight;
    struct rstate *flight_next;
    /* A stale entry kept to answer with if upstream fails (stale_if_error). */
    struct buf stale_body;
    int stale_status;
    long stale_age;
    bool has_stale;
    bool refresh; /* Cache-Control: no-cache: fetch and store, never serve the entry */
    /* Writes: the upstream answer, held while the cache is invalidated. */
    struct buf body;  /* form re-encoded for upstream */
    struct buf query; /* list query rebuilt from validated parameters */
    struct buf resp_body;
    int resp_status;
    long retry_after;   /* REJECTED: when to come back */
    bool pace_rejected; /* REJECTED by write pacing */
    /* A forwarded GET (list, sub-resource): cancelled if the client leaves. */
    struct upstream_call *call;
    char content_type[128];
    char request_id[64];
    enum upstream_outcome outcome;
    char identity[TWILIO_IDENTITY_MAX + 1]; /* from the create form, or the SID's alias */
    size_t identity_len;
    int invals_owed; /* invalidation callbacks still to come */
};

static enum metric_api family_api(enum api_family f)
{
    return f == FAMILY_V2 ? API_CHAT : API_CONVERSATIONS;
}

static const char *family_base(const struct config *cfg, enum api_family f)
{
    return f == FAMILY_V2 ? cfg->chat_url : cfg->conversations_url;
}

static const char *api_label(enum api_family f)
{
    return f == FAMILY_V2 ? "chat" : "conversations";
}

static struct rstate *rstate_new(struct request *req, struct router *r)
{
    struct rstate *rs = pool_take(&r->rstates);
    *rs = (struct rstate){0};
    rs->req = req;
    rs->r = r;
    req->rstate = rs;
    return rs;
}

static void rstate_free(struct rstate *rs)
{
    if (!rs)
        return;
    buf_free(&rs->stale_body);
    buf_free(&rs->body);
    buf_free(&rs->query);
    buf_free(&rs->resp_body);
    rs->req->rstate = NULL;
    pool_put(&rs->r->rstates, rs);
}

/* Every request ends in one of these two. */
static void finish_error(struct request *req, int status, int code, const char *msg)
{
    rstate_free(req->rstate);
    req->on_abort = NULL;
    response_error(req, status, code, msg);
}

/* Bodies keep Twilio's URLs in the cache; with public_url set they are
 * rewritten on the way out so clients following url/links/next_page_url stay
 * behind the gateway. */
static void finish(struct request *req, int status, const struct response_meta *meta,
                   const char *body, size_t len)
{
    rstate_free(req->rstate);
    req->on_abort = NULL;
    const struct config *cfg = req->cfg;
    struct buf rewritten = {0};
    if (cfg->public_url) {
        const char *bases[] = {cfg->conversations_url, cfg->chat_url,
                               "https://conversations.twilio.com", "https://chat.twilio.com", NULL};
        if (links_rewrite(body, len, bases, cfg->public_url, &rewritten)) {
            body = rewritten.data;
            len = rewritten.len;
        }
    }
    response_send(req, status, meta, body, len);
    buf_free(&rewritten);
}

/* ---- upstream outcome -> client answer ---- */

/* What libcurl said about a request Twilio did not answer, at most once a
 * second per worker (an outage must not flood the log), with the count of
 * the ones left unsaid. */
static void log_upstream_failure(const struct request *req, const struct upstream_response *resp)
{
    static __thread int64_t last_ms;
    static __thread unsigned long unsaid;
    int64_t now = util_now_ms();
    if (last_ms && now - last_ms < 1000) {
        unsaid++;
        return;
    }
    log_warn("request %llu: upstream %s: %s%s", (unsigned long long)req->id,
             resp->outcome == UPSTREAM_TIMEOUT ? "timed out" : "failed",
             resp->error[0] ? resp->error : "no answer", unsaid ? " (and others like it)" : "");
    last_ms = now;
    unsaid = 0;
}

static void finish_transport_error(struct request *req, const struct upstream_response *resp)
{
    if (resp->outcome == UPSTREAM_REJECTED) {
        admission_count(req->w->srv->admission, req->client ? req->client->name : NULL,
                        resp->pace_rejected ? LIMIT_PACING : LIMIT_INFLIGHT);
        rstate_free(req->rstate);
        req->on_abort = NULL;
        response_error_retry(req, 429, TWILIO_E_TOO_MANY,
                             resp->pace_rejected
                                 ? "Too many writes to this service; retry after the delay given"
                                 : "Too many requests to Twilio in flight; retry shortly",
                             resp->retry_after > 0 ? resp->retry_after : 1);
        return;
    }
    if (resp->outcome == UPSTREAM_CANCELLED) {
        finish_error(req, 499, TWILIO_E_BAD_REQUEST, "Client closed the request");
        return;
    }
    log_upstream_failure(req, resp);
    if (resp->outcome == UPSTREAM_TIMEOUT)
        finish_error(req, 504, TWILIO_E_TIMEOUT, "Upstream Twilio API timed out");
    else
        finish_error(req, 502, TWILIO_E_UNAVAILABLE, "Upstream Twilio API unreachable");
}

static void finish_passthrough(struct request *req, int status, const char *content_type,
                               const char *request_id, const char *body, size_t len)
{
    struct response_meta meta = RESPONSE_META_INIT;
    meta.content_type = content_type && content_type[0] ? content_type : NULL;
    meta.request_id = request_id && request_id[0] ? request_id : NULL;
    finish(req, status, &meta, body, len);
}

static void update_upstream_gauges(struct router *r)
{
    if (!r->w->upstream)
        return;
    metrics_gauge_set(r->w->metrics, MGAUGE_UPSTREAM_INFLIGHT,
                      (int64_t)upstream_inflight(r->w->upstream));
    metrics_gauge_set(r->w->metrics, MGAUGE_UPSTREAM_QUEUE,
                      (int64_t)upstream_queued(r->w->upstream));
}

static void record_upstream(struct router *r, enum api_family f,
                            const struct upstream_response *resp)
{
    if (resp->paced_ms > 0)
        metrics_inc(r->w->metrics, MCOUNT_UPSTREAM_PACED);
    if (resp->pace_rejected)
        metrics_inc(r->w->metrics, MCOUNT_UPSTREAM_PACE_REFUSED);
    if (resp->outcome == UPSTREAM_CANCELLED || resp->outcome == UPSTREAM_REJECTED) {
        update_upstream_gauges(r);
        return;
    }
    metrics_upstream(r->w->metrics, family_api(f), resp->outcome == UPSTREAM_OK ? resp->status : 0,
                     resp->duration_ms);
    for (int i = 0; i < resp->retries; i++)
        metrics_inc(r->w->metrics, MCOUNT_UPSTREAM_RETRIES);
    for (int i = 0; i < resp->throttled; i++)
        metrics_inc(r->w->metrics, MCOUNT_UPSTREAM_THROTTLED);
    update_upstream_gauges(r);
}

static struct upstream_call *start_upstream(struct router *r, const struct config *cfg,
                                            enum api_family f, const char *service,
                                            const char *method, const char *url,
                                            const struct buf *body, const char *webhook,
                                            upstream_cb cb, void *arg)
{
    bool read = strcmp(method, "GET") == 0;
    struct upstream_request ureq = {
        .method = method,
        .url = url,
        .body = body ? body->data : NULL,
        .body_len = body ? body->len : 0,
        .webhook_enabled = webhook,
        .api = api_label(f),
        .pace_key = read ? NULL : service,
        .idempotent = read,
    };
    if (!r->w->upstream)
        return NULL; /* worker teardown */
    struct upstream_call *c = upstream_start(r->w->upstream, cfg, &ureq, cb, arg);
    update_upstream_gauges(r);
    return c;
}

/* ---- single-flight fetches ---- */

static uint64_t hash_bytes(const char *p, size_t n)
{
    return util_fnv1a(p, n);
}

static struct flight **flight_slot(struct router *r, const struct buf *key)
{
    struct flight **pp = &r->buckets[hash_bytes(key->data, key->len) % FLIGHT_BUCKETS];
    while (*pp &&
           !((*pp)->key.len == key->len && memcmp((*pp)->key.data, key->data, key->len) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* Out of the table: nobody joins it any more. */
static void flight_unlink(struct flight *fl)
{
    if (!fl->linked)
        return;
    struct flight **pp = &fl->r->buckets[hash_bytes(fl->key.data, fl->key.len) % FLIGHT_BUCKETS];
    while (*pp && *pp != fl)
        pp = &(*pp)->next;
    if (*pp)
        *pp = fl->next;
    fl->linked = false;
}

/* Give the lock back, free. Waiters must have been answered. */
static void flight_free(struct flight *fl)
{
    flight_unlink(fl);
    if (fl->sm.locked)
        cache_unlock(fl->r->w->cache, fl->cfg, &fl->id, fl->token);
    if (fl->poll_timer)
        event_free(fl->poll_timer);
    buf_free(&fl->key);
    free(fl->user);
    free(fl->url);
    config_unref(fl->cfg);
    free(fl);
}

/* Take the waiters off the flight (and it out of the table, so requests
 * arriving while they are answered start afresh). */
static struct rstate *flight_take_waiters(struct flight *fl)
{
    flight_unlink(fl);
    struct rstate *rs = fl->waiters;
    fl->waiters = NULL;
    fl->sm.waiters = 0;
    for (struct rstate *w = rs; w; w = w->flight_next)
        w->flight = NULL;
    return rs;
}

/* Answer one waiting request from the flight's upstream response. */
static void answer_waiter(struct rstate *rs, const struct upstream_response *resp)
{
    struct request *req = rs->req;
    bool failed = resp->outcome != UPSTREAM_OK || resp->status >= 500 || resp->status == 429;
    if (failed && rs->has_stale) {
        /* stale_if_error: a recent-enough copy beats an error. */
        struct response_meta meta = RESPONSE_META_INIT;
        meta.age = rs->stale_age;
        req->cache = XCACHE_STALE;
        metrics_cache(rs->r->w->metrics, req->route.id, MC_STALE);
        struct buf body = rs->stale_body;
        rs->stale_body = (struct buf){0};
        finish(req, rs->stale_status, &meta, body.data, body.len);
        buf_free(&body);
        return;
    }
    if (resp->outcome != UPSTREAM_OK) {
        finish_transport_error(req, resp);
        return;
    }
    req->upstream_status = resp->status;
    req->upstream_ms = resp->duration_ms;
    finish_passthrough(req, resp->status, resp->content_type, resp->request_id, resp->body.data,
                       resp->body.len);
}

static void flight_step_run(struct flight *fl, enum flight_event ev, const void *data);

static void flight_done(void *arg, const struct upstream_response *resp)
{
    struct flight *fl = arg;
    fl->call = NULL;
    record_upstream(fl->r, fl->cu.family, resp);
    flight_step_run(fl, FE_FETCH_DONE, resp);
}

static void on_flight_lock(void *arg, enum cache_lock_result res)
{
    struct flight *fl = arg;
    if (res == CACHE_LOCK_ACQUIRED)
        metrics_inc(fl->r->w->metrics, MCOUNT_LOCK_ACQUIRED);
    flight_step_run(fl,
                    res == CACHE_LOCK_ACQUIRED ? FE_LOCK_ACQUIRED
                    : res == CACHE_LOCK_HELD   ? FE_LOCK_HELD
                                               : FE_LOCK_ERROR,
                    NULL);
}

static void on_flight_poll(void *arg, enum cache_result res, const struct entry *e,
                           const struct cache_stamp *stamp)
{
    struct flight *fl = arg;
    (void)stamp;
    if (res == CACHE_FOUND && util_wall_ms() < e->fresh_until_ms)
        flight_step_run(fl, FE_POLL_FOUND, e);
    else
        flight_step_run(fl, res == CACHE_ERROR ? FE_POLL_ERROR : FE_POLL_ABSENT, NULL);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flight_step_run(arg, FE_POLL_TIMER, NULL);
}

/* Every waiter gets the entry another fetch (usually another instance's)
 * put in the cache while we polled. */
static void flight_answer_cache(struct flight *fl, const struct entry *e)
{
    metrics_inc(fl->r->w->metrics, MCOUNT_LOCK_SERVED);
    int64_t now = util_wall_ms();
    struct response_meta meta = RESPONSE_META_INIT;
    meta.age = now > e->stored_ms ? (long)((now - e->stored_ms) / 1000) : 0;
    struct rstate *rs = flight_take_waiters(fl);
    while (rs) {
        struct rstate *next = rs->flight_next;
        finish(rs->req, e->status, &meta, e->body, e->body_len);
        rs = next;
    }
}

static void flight_answer_fetch(struct flight *fl, const struct upstream_response *resp)
{
    struct router *r = fl->r;
    if (resp->outcome == UPSTREAM_OK && fl->store && (resp->status == 200 || resp->status == 404)) {
        long ttl = resp->status == 200 ? fl->cfg->ttl : fl->cfg->negative_ttl;
        /* Sent before the unlock (flight_free) on the same connection, so
         * pollers on other instances find the entry when the lock goes. */
        cache_store(r->w->cache, fl->cfg, &fl->cu, resp->status, resp->body.data, resp->body.len,
                    ttl, &fl->stamp, NULL, NULL);
        metrics_inc(r->w->metrics, MCOUNT_CACHE_STORES);
    }
    struct rstate *rs = flight_take_waiters(fl);
    while (rs) {
        struct rstate *next = rs->flight_next;
        answer_waiter(rs, resp);
        rs = next;
    }
}

/* Feed an event to the state machine and carry out what it asks. The
 * flight may be freed when this returns. */
static void flight_step_run(struct flight *fl, enum flight_event ev, const void *data)
{
    struct router *r = fl->r;
    enum flight_action a = flight_step(&fl->sm, ev, util_now_ms(), &fl->pol);
    if (ev == FE_LOCK_HELD && a == FA_FETCH)
        metrics_inc(r->w->metrics,
                    fl->sm.wait_until_ms ? MCOUNT_LOCK_TIMEOUT : MCOUNT_LOCK_OVERFLOW);
    switch (a) {
    case FA_NONE:
        return;
    case FA_TRY_LOCK:
        cache_lock(r->w->cache, fl->cfg, &fl->id, fl->token, fl->cfg->lock_timeout_ms,
                   on_flight_lock, fl);
        return;
    case FA_FETCH:
        fl->call = start_upstream(r, fl->cfg, fl->cu.family, fl->service, "GET", fl->url, NULL,
                                  NULL, flight_done, fl);
        if (!fl->call) {
            struct rstate *rs = flight_take_waiters(fl);
            while (rs) {
                struct rstate *next = rs->flight_next;
                finish_error(rs->req, 502, TWILIO_E_UNAVAILABLE, "Cannot start upstream request");
                rs = next;
            }
            flight_free(fl);
        }
        return;
    case FA_ARM_POLL: {
        if (!fl->poll_timer && !(fl->poll_timer = evtimer_new(r->w->base, on_poll_timer, fl))) {
            flight_step_run(fl, FE_POLL_TIMER, NULL); /* poll at once rather than hang */
            return;
        }
        struct timeval tv = {0, fl->sm.poll_ms * 1000};
        evtimer_add(fl->poll_timer, &tv);
        return;
    }
    case FA_POLL:
        cache_lookup(r->w->cache, fl->cfg, &fl->cu, on_flight_poll, fl);
        return;
    case FA_ANSWER_CACHE:
        flight_answer_cache(fl, data);
        flight_free(fl);
        return;
    case FA_ANSWER_FETCH:
        flight_answer_fetch(fl, data);
        flight_free(fl);
        return;
    case FA_CANCEL_FETCH:
        if (fl->call)
            upstream_cancel(fl->call); /* flight_done runs later with CANCELLED */
        return;
    case FA_FREE:
        flight_free(fl);
        return;
    }
}

/* The client went away while waiting on a flight: stop waiting. The
 * listener has already detached req, so answering here only records it
 * (499, as nginx logs it) and frees it. */
static void fetch_abort(struct request *req)
{
    struct rstate *rs = req->rstate;
    struct flight *fl = rs ? rs->flight : NULL;
    if (!fl)
        return; /* not waiting on upstream: the request finishes on its own */
    struct rstate **pp = &fl->waiters;
    while (*pp && *pp != rs)
        pp = &(*pp)->flight_next;
    if (*pp)
        *pp = rs->flight_next;
    rs->flight = NULL;
    finish_error(req, 499, TWILIO_E_BAD_REQUEST, "Client closed the request");
    flight_step_run(fl, FE_WAITER_LEFT, NULL);
}

/* Requests share a flight only when everything that decides its answer is
 * the same: foreground or not, family, service, the name asked for, and the
 * stamp their lookups saw (a request that looked up after a write has a new
 * version, so it never joins a fetch that started before the write). */
static void flight_key(struct buf *key, bool background, const struct cache_user *cu,
                       const struct cache_stamp *s)
{
    buf_reset(key);
    buf_puts(key, background ? "B" : "F");
    buf_puts(key, route_family_tag(cu->family));
    buf_append(key, "\0", 1);
    buf_puts(key, cu->service);
    buf_append(key, "\0", 1);
    buf_append(key, cu->user, cu->user_len);
    buf_append(key, "\0", 1);
    buf_printf(key, "%d%d%s", s->known, s->held, s->ver);
    buf_append(key, "\0", 1);
    buf_append(key, s->ident, s->ident_len);
}

/* Join (or start) the flight for rs's user. rs == NULL starts a background
 * refresh nobody waits for. rs may be answered before this returns (when
 * upstream cannot be started). store: the answer may go into the cache
 * (cache_store then decides what the stamp allows). */
static void flight_join(struct router *r, struct rstate *rs, const struct cache_user *cu,
                        struct config *cfg, const struct route_match *m, bool store,
                        const struct cache_stamp *stamp)
{
    struct buf key = {0};
    flight_key(&key, rs == NULL, cu, stamp);
    struct flight **slot = flight_slot(r, &key);
    struct flight *fl = *slot;
    /* Without a version (a SID whose alias is not cached, Redis failing) an
     * equal stamp proves nothing about writes in between: join only a fetch
     * that has not gone upstream yet, so its answer is newer than this
     * request. Otherwise it starts its own (the old one is left to its
     * waiters). */
    if (fl && !stamp->ver[0] && fl->sm.state >= FS_FETCHING) {
        flight_unlink(fl);
        fl = NULL;
        slot = flight_slot(r, &key);
    }
    if (fl) {
        buf_free(&key);
        if (!rs)
            return; /* this refresh is already under way */
        metrics_cache(r->w->metrics, m->id, MC_COALESCED);
        rs->flight = fl;
        rs->flight_next = fl->waiters;
        fl->waiters = rs;
        fl->sm.waiters++;
        rs->req->on_abort = fetch_abort;
        return;
    }
    fl = util_calloc(1, sizeof *fl);
    fl->r = r;
    fl->key = key;
    fl->cfg = config_ref(cfg);
    fl->store = store;
    fl->stamp = *stamp;
    fl->sm.background = !rs;
    fl->sm.waiting = &r->lock_waits;
    snprintf(fl->service, sizeof fl->service, "%s", cu->service);
    fl->user = util_strndup(cu->user, cu->user_len);
    fl->cu = *cu;
    fl->cu.service = fl->service;
    fl->cu.user = fl->user;
    fl->cu.account = fl->cfg->account_sid;
    fl->id = fl->cu;
    fl->id.user = fl->stamp.ident;
    fl->id.user_len = fl->stamp.ident_len;
    fl->id.user_is_sid = false;
    /* Only an answer that will be stored under a known identity is worth
     * a lock: it is what the other instances are waiting to find. */
    fl->pol = (struct flight_policy){
        .use_lock = store && cache_stamp_storable(stamp) && cfg->lock_timeout_ms > 0,
        .lock_wait_ms = cfg->lock_timeout_ms,
        .max_waiting = MAX_LOCK_WAITS,
        .poll_min_ms = POLL_MIN_MS,
        .poll_max_ms = POLL_MAX_MS,
    };
    struct buf url = {0};
    buf_puts(&url, family_base(cfg, m->family));
    route_upstream_path(m, NULL, &url);
    fl->url = url.data;
    fl->next = *slot;
    *slot = fl;
    fl->linked = true;
    if (fl->pol.use_lock) {
        uint8_t raw[16];
        util_random(raw, sizeof raw);
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(fl->token + 2 * i, 3, "%02x", raw[i]);
    }
    if (rs) {
        rs->flight = fl;
        rs->flight_next = NULL;
        fl->waiters = rs;
        fl->sm.waiters = 1;
        rs->req->on_abort = fetch_abort;
    }
    flight_step_run(fl, FE_START, NULL);
}

/* ---- fetch ---- */

static void on_lookup(void *arg, enum cache_result result, const struct entry *e,
                      const struct cache_stamp *stamp)
{
    struct rstate *rs = arg;
    struct request *req = rs->req;
    struct metrics_shard *m = rs->r->w->metrics;
    const struct config *cfg = req->cfg;
    bool store = result != CACHE_ERROR;
    if (result == CACHE_ERROR) {
        metrics_cache(m, req->route.id, MC_ERROR);
        req->cache = XCACHE_MISS;
        flight_join(rs->r, rs, &rs->cu, req->cfg, &req->route, false, stamp);
        return;
    }
    if (rs->refresh) {
        /* Cache-Control: no-cache: the lookup only learned the stamp. */
        flight_join(rs->r, rs, &rs->cu, req->cfg, &req->route, store, stamp);
        return;
    }
    if (result == CACHE_FOUND) {
        int64_t now = util_wall_ms();
        long age = now > e->stored_ms ? (long)((now - e->stored_ms) / 1000) : 0;
        if (now < e->fresh_until_ms) {
            struct response_meta meta = RESPONSE_META_INIT;
            meta.age = age;
            req->cache = XCACHE_HIT;
            metrics_cache(m, req->route.id, e->status == 200 ? MC_HIT : MC_NEGATIVE_HIT);
            finish(req, e->status, &meta, e->body, e->body_len);
            return;
        }
        int64_t past = now - e->fresh_until_ms;
        if (past < cfg->stale_while_revalidate * 1000) {
            /* Serve at once; one background refresh brings the entry back. */
            struct response_meta meta = RESPONSE_META_INIT;
            meta.age = age;
            req->cache = XCACHE_STALE;
            metrics_cache(m, req->route.id, MC_STALE);
            flight_join(rs->r, NULL, &rs->cu, req->cfg, &req->route, true, stamp);
            finish(req, e->status, &meta, e->body, e->body_len);
            return;
        }
        if (past < cfg->stale_if_error * 1000) {
            buf_append(&rs->stale_body, e->body, e->body_len);
            rs->stale_status = e->status;
            rs->stale_age = age;
            rs->has_stale = true;
        }
    }
    metrics_cache(m, req->route.id, MC_MISS);
    req->cache = XCACHE_MISS;
    flight_join(rs->r, rs, &rs->cu, req->cfg, &req->route, store, stamp);
}

/* Cache-Control request directives the cache honours. */
static void cache_control(const struct request *req, bool *no_cache, bool *no_store)
{
    *no_cache = *no_store = false;
    const char *cc = http1_msg_header(&req->msg, "Cache-Control");
    const char *pragma = http1_msg_header(&req->msg, "Pragma");
    if (cc) {
        *no_store = strcasestr(cc, "no-store") != NULL;
        *no_cache = strcasestr(cc, "no-cache") != NULL || strcasestr(cc, "max-age=0") != NULL;
    } else if (pragma && strcasestr(pragma, "no-cache")) {
        *no_cache = true;
    }
}

static void forward(struct rstate *rs, const char *method, const struct buf *body);

static void handle_fetch(struct rstate *rs)
{
    struct request *req = rs->req;
    struct metrics_shard *m = rs->r->w->metrics;
    bool no_cache, no_store;
    cache_control(req, &no_cache, &no_store);
    if (!rs->service[0] || no_store) {
        /* Default service not learned yet, or the client forbids storing:
         * straight through, cache untouched. */
        metrics_cache(m, req->route.id, MC_BYPASS);
        req->cache = XCACHE_BYPASS;
        forward(rs, "GET", NULL);
        return;
    }
    rs->cu = (struct cache_user){
        .account = req->cfg->account_sid,
        .family = req->route.family,
        .service = rs->service,
        .user = req->route.user,
        .user_len = req->route.user_len,
        .user_is_sid = req->route.user_is_sid,
    };
    if (no_cache) {
        metrics_cache(m, req->route.id, MC_BYPASS);
        req->cache = XCACHE_BYPASS;
        rs->refresh = true;
    }
    cache_lookup(rs->r->w->cache, req->cfg, &rs->cu, on_lookup, rs);
}

/* ---- writes and plain forwarding ---- */

static void finish_held(struct rstate *rs)
{
    struct request *req = rs->req;
    if (rs->outcome != UPSTREAM_OK) {
        struct upstream_response held = {.outcome = rs->outcome,
                                         .retry_after = rs->retry_after,
                                         .pace_rejected = rs->pace_rejected};
        finish_transport_error(req, &held);
        return;
    }
    struct buf body = rs->resp_body;
    char ct[sizeof rs->content_type], rid[sizeof rs->request_id];
    memcpy(ct, rs->content_type, sizeof ct);
    memcpy(rid, rs->request_id, sizeof rid);
    int status = rs->resp_status;
    rs->resp_body = (struct buf){0};
    finish_passthrough(req, status, ct, rid, body.data, body.len);
    buf_free(&body);
}

/* Invalidations of one write: its identity in its service, and in the
 * service Twilio's answer named when that differs (see below). */
static void on_invalidated(void *arg, enum cache_inval_result res)
{
    struct rstate *rs = arg;
    if (res == CACHE_INVAL_DROPPED)
        log_warn("request %llu: cache invalidation lost (redis failing and the retry queue "
                 "full); other instances may serve the old user until its TTL",
                 (unsigned long long)rs->req->id);
    else if (res == CACHE_INVAL_QUEUED)
        log_warn("request %llu: cache invalidation queued for retry (redis failing)",
                 (unsigned long long)rs->req->id);
    if (--rs->invals_owed == 0)
        finish_held(rs);
}

/* After a write: invalidate the user (hold_ms > 0: and hold it uncacheable),
 * then answer. */
static void invalidate_then_finish(struct rstate *rs, const char *service, const char *body_service,
                                   const char *identity, size_t identity_len, long hold_ms)
{
    struct request *req = rs->req;
    if (!service[0] || !identity_len) {
        /* A 404 by a SID nobody can name: that user is gone already. Only a
         * change of unknown identity is worth a warning. */
        if (rs->resp_status == 404)
            log_debug("request %llu: no identity to invalidate", (unsigned long long)req->id);
        else
            log_warn("request %llu: write with no identity or service to invalidate; entries "
                     "expire by TTL",
                     (unsigned long long)req->id);
        finish_held(rs);
        return;
    }
    /* /v1/Users stores under the default service usergate resolved; if
     * Twilio's answer names another, the default changed under us: both go,
     * and operators hear of it. */
    bool second = body_service && body_service[0] && strcmp(body_service, service) != 0;
    if (second) {
        metrics_inc(rs->r->w->metrics, MCOUNT_DEFAULT_SERVICE_MISMATCH);
        log_warn("request %llu: Twilio answered for service %s, usergate resolved %s; "
                 "invalidating both (is default_service_sid current?)",
                 (unsigned long long)req->id, body_service, service);
    }
    rs->invals_owed = second ? 2 : 1;
    cache_invalidate(rs->r->w->cache, req->cfg, req->cfg->account_sid, service, identity,
                     identity_len, hold_ms, on_invalidated, rs);
    if (second)
        cache_invalidate(rs->r->w->cache, req->cfg, req->cfg->account_sid, body_service, identity,
                         identity_len, hold_ms, on_invalidated, rs);
}

static void on_write_done(void *arg, const struct upstream_response *resp)
{
    struct rstate *rs = arg;
    struct request *req = rs->req;
    const struct route_match *m = &req->route;
    record_upstream(rs->r, m->family, resp);
    rs->call = NULL;
    rs->outcome = resp->outcome;
    rs->resp_status = resp->status;
    rs->retry_after = resp->retry_after;
    rs->pace_rejected = resp->pace_rejected;
    req->upstream_status = resp->status;
    req->upstream_ms = resp->duration_ms;
    if (resp->outcome == UPSTREAM_OK) {
        buf_append(&rs->resp_body, resp->body.data, resp->body.len);
        snprintf(rs->content_type, sizeof rs->content_type, "%s", resp->content_type);
        snprintf(rs->request_id, sizeof rs->request_id, "%s", resp->request_id);
    }
    if (m->action == ACTION_LIST || m->action == ACTION_SUB || m->action == ACTION_FETCH) {
        finish_held(rs);
        return;
    }
    /* Never reached Twilio: nothing changed, nothing to invalidate. */
    if (resp->outcome == UPSTREAM_CONNECT_FAIL || resp->outcome == UPSTREAM_CANCELLED ||
        resp->outcome == UPSTREAM_REJECTED) {
        finish_held(rs);
        return;
    }
    bool ok2xx = resp->outcome == UPSTREAM_OK && resp->status >= 200 && resp->status < 300;
    /* No answer, or a 5xx: Twilio may have applied the write, or may still. */
    bool unknown = resp->outcome != UPSTREAM_OK || resp->status >= 500;
    /* A 4xx other than 404 (validation, 409 on create…) changed nothing. */
    if (!ok2xx && !unknown && !(resp->status == 404 && m->action != ACTION_CREATE)) {
        finish_held(rs);
        return;
    }
    /* Which identity: the answer's body names it best; else the create's
     * form, the path, or the SID's alias resolved before forwarding. */
    char sid[TWILIO_SID_LEN + 1] = "", ident[TWILIO_IDENTITY_MAX + 1] = "";
    char body_service[TWILIO_SID_LEN + 1] = "";
    const char *id = NULL;
    size_t id_len = 0;
    if (ok2xx && resp->body.len &&
        entry_user_fields(resp->body.data, resp->body.len, sid, sizeof sid, ident, sizeof ident) ==
            0) {
        id = ident;
        id_len = strlen(ident);
        if (entry_user_service(resp->body.data, resp->body.len, body_service, sizeof body_service) <
            0)
            body_service[0] = '\0';
    } else if (rs->identity_len) {
        id = rs->identity;
        id_len = rs->identity_len;
    } else if (!m->user_is_sid) {
        id = m->user;
        id_len = m->user_len;
    }
    invalidate_then_finish(rs, rs->service, body_service, id ? id : "", id_len,
                           unknown ? req->cfg->unknown_write_hold_ms : 0);
}

/* The client of a forwarded GET left: cancel it. on_write_done still runs
 * (with CANCELLED) and finishes the request, which the listener has detached. */
static void forward_abort(struct request *req)
{
    struct rstate *rs = req->rstate;
    req->on_abort = NULL;
    if (rs && rs->call)
        upstream_cancel(rs->call);
}

static void forward(struct rstate *rs, const char *method, const struct buf *body)
{
    struct request *req = rs->req;
    const struct route_match *m = &req->route;
    struct buf url = {0};
    buf_puts(&url, family_base(req->cfg, m->family));
    route_upstream_path(m, rs->query.data, &url);
    const char *webhook = http1_msg_header(&req->msg, "X-Twilio-Webhook-Enabled");
    struct upstream_call *c = start_upstream(rs->r, req->cfg, m->family, rs->service, method,
                                             url.data, body, webhook, on_write_done, rs);
    buf_free(&url);
    if (!c) {
        finish_error(req, 502, TWILIO_E_UNAVAILABLE, "Cannot start upstream request");
        return;
    }
    /* A read is cancelled when its client leaves; writes run to completion,
     * so the cache stays coherent. */
    if (strcmp(method, "GET") == 0) {
        rs->call = c;
        req->on_abort = forward_abort;
    }
}

static bool is_form(const struct request *req)
{
    const char *ct = http1_msg_header(&req->msg, "Content-Type");
    if (!ct)
        return req->msg.body.len == 0;
    return strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
           (ct[33] == 0 || ct[33] == ';' || ct[33] == ' ');
}

/* Parse and validate a write's form (a user form for op, else a
 * sub-resource form of kind); re-encode it for upstream. */
static bool prepare_form(struct rstate *rs, const enum twilio_user_op *op,
                         enum twilio_sub_kind kind)
{
    struct request *req = rs->req;
    char err[256];
    int code = TWILIO_E_BAD_REQUEST;
    if (!is_form(req)) {
        finish_error(req, 400, TWILIO_E_BAD_REQUEST,
                     "Content-Type must be application/x-www-form-urlencoded");
        return false;
    }
    struct form f = {0};
    if (form_parse(req->msg.body.data ? req->msg.body.data : "", req->msg.body.len, &f, err,
                   sizeof err) < 0 ||
        (op ? twilio_validate_user_form(&f, *op, &code, err, sizeof err)
            : twilio_validate_sub_form(&f, kind, err, sizeof err)) < 0) {
        form_free(&f);
        finish_error(req, 400, code, err);
        return false;
    }
    const struct form_field *id = form_get(&f, "Identity");
    if (id && id->value_len < sizeof rs->identity) {
        memcpy(rs->identity, id->value, id->value_len + 1);
        rs->identity_len = id->value_len;
    }
    form_encode(&f, &rs->body);
    form_free(&f);
    return true;
}

/* ---- writes addressed by SID: learn the identity first ----
 *
 * Invalidation works on identities (cache.h). An update's answer names its
 * identity, but a delete's (204) does not, and neither does a write whose
 * outcome is unknown; so before a write by SID is forwarded its identity is
 * read from the alias, or, when there is none (never fetched, expired,
 * evicted), asked of Twilio with a GET of that SID. */

static void forward_user_write(struct rstate *rs)
{
    if (rs->req->route.action == ACTION_DELETE)
        forward(rs, "DELETE", NULL);
    else
        forward(rs, "POST", &rs->body);
}

static void on_sid_prefetch(void *arg, const struct upstream_response *resp)
{
    struct rstate *rs = arg;
    record_upstream(rs->r, rs->req->route.family, resp);
    char sid[TWILIO_SID_LEN + 1];
    if (resp->outcome == UPSTREAM_OK && resp->status == 200 &&
        entry_user_fields(resp->body.data, resp->body.len, sid, sizeof sid, rs->identity,
                          sizeof rs->identity) == 0)
        rs->identity_len = strlen(rs->identity);
    /* Otherwise the user does not exist (404: nothing cached can name it
     * under an identity that still exists) or Twilio failed: go on; the
     * write's own answer may still name it. */
    forward_user_write(rs);
}

static void on_sid_alias(void *arg, const char *ident, size_t len, bool error)
{
    struct rstate *rs = arg;
    struct request *req = rs->req;
    (void)error;
    if (ident && len < sizeof rs->identity) {
        memcpy(rs->identity, ident, len);
        rs->identity[len] = '\0';
        rs->identity_len = len;
        forward_user_write(rs);
        return;
    }
    const struct route_match *m = &req->route;
    struct buf url = {0};
    buf_puts(&url, family_base(req->cfg, m->family));
    route_upstream_path(m, NULL, &url);
    struct upstream_call *call = start_upstream(rs->r, req->cfg, m->family, rs->service, "GET",
                                                url.data, NULL, NULL, on_sid_prefetch, rs);
    buf_free(&url);
    if (!call)
        forward_user_write(rs);
}

static void handle_user_write(struct rstate *rs)
{
    struct request *req = rs->req;
    const struct route_match *m = &req->route;
    if (m->action != ACTION_DELETE) {
        enum twilio_user_op op =
            m->action == ACTION_CREATE ? TWILIO_USER_CREATE : TWILIO_USER_UPDATE;
        if (!prepare_form(rs, &op, TWILIO_SUB_CONVERSATIONS))
            return;
    }
    if (m->user_is_sid)
        cache_resolve_sid(rs->r->w->cache, req->cfg, req->cfg->account_sid, rs->service, m->user,
                          on_sid_alias, rs);
    else
        forward_user_write(rs);
}

static void handle_write(struct rstate *rs)
{
    struct request *req = rs->req;
    const struct route_match *m = &req->route;
    switch (m->action) {
    case ACTION_CREATE:
    case ACTION_UPDATE:
    case ACTION_DELETE:
        handle_user_write(rs);
        return;
    case ACTION_SUB: {
        char err[256];
        bool get = strcmp(req->msg.method, "GET") == 0;
        if (get && m->item_len == 0) {
            /* A sub-resource list: same paging rules as user lists. */
            if (twilio_validate_list_query(m->query, m->query_len, 50, m->sub == ROUTE_SUB_BINDINGS,
                                           &rs->query, err, sizeof err) < 0) {
                finish_error(req, 400, TWILIO_E_BAD_REQUEST, err);
                return;
            }
        } else if (m->query) {
            finish_error(req, 400, TWILIO_E_BAD_REQUEST,
                         "Query parameters are not accepted on this resource");
            return;
        }
        if (strcmp(req->msg.method, "POST") == 0) {
            enum twilio_sub_kind kind =
                m->sub == ROUTE_SUB_CHANNELS ? TWILIO_SUB_CHANNELS : TWILIO_SUB_CONVERSATIONS;
            if (prepare_form(rs, NULL, kind))
                forward(rs, "POST", &rs->body);
        } else {
            forward(rs, req->msg.method, NULL);
        }
        return;
    }
    case ACTION_LIST: {
        char err[256];
        long max = m->family == FAMILY_V2 ? 100 : 50;
        if (twilio_validate_list_query(m->query, m->query_len, max, false, &rs->query, err,
                                       sizeof err) < 0) {
            finish_error(req, 400, TWILIO_E_BAD_REQUEST, err);
            return;
        }
        forward(rs, "GET", NULL);
        return;
    }
    default:
        finish_error(req, 500, TWILIO_E_INTERNAL, "Unhandled route");
    }
}

void router_handle(struct request *req)
{
    if (webhook_match(req->cfg, req->msg.target, req->msg.target_len)) {
        webhook_handle(req);
        return;
    }
    struct router *r = req->w->router;
    struct admit_refusal no;
    char service[TWILIO_SID_LEN + 1] = "";
    if (!admit_request(req->w, req->cfg, &req->msg, &req->peer, req->auth_memo, &req->route,
                       &req->client, service, &no)) {
        admit_refuse(req, &no);
        return;
    }
    const struct route_match *m = &req->route;
    memcpy(req->service, service, sizeof req->service);
    long retry = 0;
    if (!admission_client_take(req->w->srv->admission, req->client, m->action, util_now_ms(),
                               &retry)) {
        response_error_retry(req, 429, TWILIO_E_TOO_MANY,
                             "Too many requests from this client; retry after the delay given",
                             retry);
        return;
    }
    struct rstate *rs = rstate_new(req, r);
    memcpy(rs->service, service, sizeof rs->service);
    if (m->action == ACTION_FETCH)
        handle_fetch(rs);
    else
        handle_write(rs);
}

/* ---- learning the default Conversation Service ---- */

static void learn_start(struct router *r);

static void learn_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    learn_start(arg);
}

static void on_configuration(void *arg, const struct upstream_response *resp)
{
    struct router *r = arg;
    r->learning = false;
    record_upstream(r, FAMILY_V1_DEFAULT, resp);
    if (resp->outcome == UPSTREAM_CANCELLED)
        return;
    char sid[TWILIO_SID_LEN + 1], cur[TWILIO_SID_LEN + 1];
    if (resp->outcome == UPSTREAM_OK && resp->status == 200 &&
        entry_json_string(resp->body.data, resp->body.len, "default_chat_service_sid", sid,
                          sizeof sid) == 0 &&
        twilio_is_sid(sid, strlen(sid), "IS")) {
        twilio_sid_canon(sid);
        bool known = server_default_service(r->w->srv, cur);
        if (!known) {
            log_notice("default Conversation Service is %s", sid);
        } else if (strcmp(cur, sid) != 0) {
            /* /v1/Users goes wherever Twilio says: stores and invalidations
             * must follow it, whatever was configured or learned before. */
            metrics_inc(r->w->metrics, MCOUNT_DEFAULT_SERVICE_MISMATCH);
            log_warn("the account's default Conversation Service is %s, not %s as %s; using "
                     "%s for /v1/Users from now on",
                     sid, cur, r->w->cfg->default_service_sid ? "configured" : "learned", sid);
        }
        server_set_default_service(r->w->srv, sid);
        /* Checked again now and then: the default can change while we run. */
        struct timeval tv = {DEFAULT_SERVICE_RECHECK_S, 0};
        evtimer_add(r->learn_timer, &tv);
        return;
    }
    char why[sizeof resp->error + 32];
    if (resp->outcome == UPSTREAM_OK)
        snprintf(why, sizeof why, "answered %d", resp->status);
    else
        snprintf(why, sizeof why, "%s", resp->error[0] ? resp->error : "no answer");
    log_warn("cannot learn the default Conversation Service (GET %s/v1/Configuration: %s); "
             "retrying in %ld ms",
             r->w->cfg->conversations_url, why, r->learn_backoff_ms);
    struct timeval tv = {r->learn_backoff_ms / 1000, (r->learn_backoff_ms % 1000) * 1000};
    evtimer_add(r->learn_timer, &tv);
    r->learn_backoff_ms = r->learn_backoff_ms * 2 > 30000 ? 30000 : r->learn_backoff_ms * 2;
}

static void learn_start(struct router *r)
{
    if (r->learning)
        return;
    struct config *cfg = r->w->cfg;
    struct buf url = {0};
    buf_printf(&url, "%s/v1/Configuration", cfg->conversations_url);
    r->learning = start_upstream(r, cfg, FAMILY_V1_DEFAULT, NULL, "GET", url.data, NULL, NULL,
                                 on_configuration, r) != NULL;
    buf_free(&url);
    if (!r->learning) {
        struct timeval tv = {1, 0};
        evtimer_add(r->learn_timer, &tv);
    }
}

void router_learn_default_service(struct worker *w)
{
    struct router *r = w->router;
    r->learn_backoff_ms = 500;
    char sid[TWILIO_SID_LEN + 1];
    if (server_default_service(w->srv, sid)) {
        /* Configured: trusted at start, checked against Twilio later. */
        struct timeval tv = {DEFAULT_SERVICE_RECHECK_S, 0};
        evtimer_add(r->learn_timer, &tv);
        return;
    }
    learn_start(r);
}

struct router *router_new(struct worker *w)
{
    struct router *r = util_calloc(1, sizeof *r);
    r->w = w;
    r->rstates = (struct pool){.size = sizeof(struct rstate), .drop = free};
    r->learn_timer = evtimer_new(w->base, learn_retry, r);
    return r;
}

void router_free(struct router *r)
{
    if (!r)
        return;
    /* Upstream and Redis are gone by now: their callbacks have run, so the
     * only flights left are waiting between polls. */
    for (size_t b = 0; b < FLIGHT_BUCKETS; b++) {
        while (r->buckets[b]) {
            struct flight *fl = r->buckets[b];
            struct rstate *rs = flight_take_waiters(fl);
            while (rs) {
                struct rstate *next = rs->flight_next;
                finish_error(rs->req, 503, TWILIO_E_UNAVAILABLE, "Gateway shutting down");
                rs = next;
            }
            fl->sm.locked = false; /* Redis is gone: the lock expires by itself */
            flight_free(fl);
        }
    }
    if (r->learn_timer)
        event_free(r->learn_timer);
    pool_clear(&r->rstates);
    free(r);
}

/* webhook: Twilio's events invalidate the users they name (see webhook.h).
 * Nothing here trusts the request before its signature is checked: an
 * unsigned, forged or altered delivery gets 403, counts as a failed
 * authentication of its source address, and touches neither Redis nor the
 * event parser. */
#include "webhook.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admission.h"
#include "cache.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "response.h"
#include "signature.h"
#include "twilio.h"
#include "worker.h"

/* What became of one event (the result label). */
enum wh_result {
    WH_INVALIDATED = 0, /* in Redis */
    WH_QUEUED,          /* in this worker's invalidation retry queue */
    WH_UNCACHED,        /* a SID with no known identity: nothing of it can be cached */
    WH_IGNORED,         /* not a user event */
    WH_FOREIGN,         /* another account's */
    WH_MALFORMED,       /* a user event without a usable user or service */
    WH_FAILED,          /* Redis took neither the invalidation nor the retry: 503 */
    WH_RESULT_COUNT
};
static const char *const result_names[WH_RESULT_COUNT] = {
    "invalidated", "queued", "uncached", "ignored", "foreign_account", "malformed", "failed",
};

/* ---- usergate_webhook_events_total */

#define STATS_ROWS 256

struct stats_row {
    enum event_source source;
    enum wh_result result;
    char type[EVENT_TYPE_MAX + 1];
    uint64_t count;
};

struct webhook_stats {
    pthread_mutex_t lock;
    struct stats_row rows[STATS_ROWS];
    size_t n;
};

struct webhook_stats *webhook_stats_new(void)
{
    struct webhook_stats *s = util_calloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void webhook_stats_free(struct webhook_stats *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static struct stats_row *stats_find(struct webhook_stats *s, enum event_source src,
                                    const char *type, enum wh_result res)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->rows[i].source == src && s->rows[i].result == res &&
            strcmp(s->rows[i].type, type) == 0)
            return &s->rows[i];
    return NULL;
}

static void stats_add(struct webhook_stats *s, enum event_source src, const char *type,
                      enum wh_result res)
{
    pthread_mutex_lock(&s->lock);
    struct stats_row *row = stats_find(s, src, type, res);
    /* The last rows are kept for "other", so the table never overflows. */
    if (!row && s->n >= STATS_ROWS - EVENT_SRC_COUNT * WH_RESULT_COUNT)
        row = stats_find(s, src, type = "other", res);
    if (!row) {
        row = &s->rows[s->n++];
        row->source = src;
        row->result = res;
        snprintf(row->type, sizeof row->type, "%s", type);
    }
    row->count++;
    pthread_mutex_unlock(&s->lock);
}

void webhook_stats_render(struct webhook_stats *s, struct buf *out, const char *metric)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        const struct stats_row *r = &s->rows[i];
        buf_printf(out, "%s{source=\"%s\",type=\"", metric, event_source_name(r->source));
        metrics_label_value(out, r->type);
        buf_printf(out, "\",result=\"%s\"} %llu\n", result_names[r->result],
                   (unsigned long long)r->count);
    }
    pthread_mutex_unlock(&s->lock);
}

/* ---- the receiver */

bool webhook_match(const struct config *cfg, const char *target, size_t len)
{
    if (!cfg->webhooks_enabled)
        return false;
    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    return plen == strlen(cfg->webhook_path) && memcmp(target, cfg->webhook_path, plen) == 0;
}

struct delivery;
struct item {
    struct delivery *d;
    size_t i;
};

struct delivery {
    struct request *req;
    struct events ev;
    struct item *items;
    enum wh_result *results;
    int owed; /* callbacks still to come, plus one while starting */
};

/* The URL Twilio called: public_url (scheme, host, port, path as configured
 * at Twilio) with the query the request arrived with; without public_url,
 * http:// + Host + the request-target (Twilio calling usergate directly). */
static void signed_url(const struct config *cfg, const struct http1_msg *m, struct buf *out)
{
    if (cfg->webhook_public_url) {
        buf_puts(out, cfg->webhook_public_url);
        const char *q = memchr(m->target, '?', m->target_len);
        if (q)
            buf_append(out, q, m->target_len - (size_t)(q - m->target));
        return;
    }
    const char *host = http1_msg_header(m, "Host");
    buf_puts(out, "http://");
    buf_puts(out, host ? host : "");
    buf_append(out, m->target, m->target_len);
}

static bool is_json(const struct http1_msg *m)
{
    const char *ct = http1_msg_header(m, "Content-Type");
    return ct && strncasecmp(ct, "application/json", 16) == 0;
}

/* Twilio, once the signature holds: the access log's client name. */
static const struct config_client twilio_client = {.name = (char *)"twilio"};

static void delivery_free(struct delivery *d)
{
    events_free(&d->ev);
    free(d->items);
    free(d->results);
    free(d);
}

static void finish(struct delivery *d)
{
    struct request *req = d->req;
    struct worker *w = req->w;
    size_t count[WH_RESULT_COUNT] = {0};
    for (size_t i = 0; i < d->ev.n; i++) {
        const struct event *e = &d->ev.v[i];
        count[d->results[i]]++;
        stats_add(w->srv->webhook_stats, e->source, e->type, d->results[i]);
    }
    /* The access log names the first user event (a SID as is, an identity
     * hashed, as for any request). */
    for (size_t i = 0; i < d->ev.n; i++) {
        const struct event *e = &d->ev.v[i];
        if (e->kind == EVENT_OTHER || e->kind == EVENT_MALFORMED)
            continue;
        bool sid = e->user_sid[0] != '\0';
        const char *u = sid ? e->user_sid : e->identity;
        size_t n = sid ? strlen(e->user_sid) : e->identity_len;
        memcpy(req->route.user, u, n);
        req->route.user[n] = '\0';
        req->route.user_len = n;
        req->route.user_is_sid = sid;
        memcpy(req->service, e->service, sizeof req->service);
        break;
    }
    if (d->ev.n)
        snprintf(req->event, sizeof req->event, "%s%s", d->ev.v[0].type, d->ev.n > 1 ? "+" : "");
    if (count[WH_FAILED]) {
        log_warn("request %llu: webhook: %zu of %zu events not invalidated (Redis failing and "
                 "the retry queue full); answering 503 so Twilio delivers again",
                 (unsigned long long)req->id, count[WH_FAILED], d->ev.n);
        delivery_free(d);
        response_error_retry(req, 503, TWILIO_E_UNAVAILABLE,
                             "Cannot record the invalidation now; deliver again", 1);
        return;
    }
    struct buf b = {0};
    buf_printf(&b, "{\"events\":%zu", d->ev.n);
    for (int r = 0; r < WH_RESULT_COUNT; r++)
        if (count[r])
            buf_printf(&b, ",\"%s\":%zu", result_names[r], count[r]);
    buf_puts(&b, "}");
    delivery_free(d);
    response_send(req, 200, NULL, b.data, b.len);
    buf_free(&b);
}

static void settle(struct delivery *d)
{
    if (--d->owed == 0)
        finish(d);
}

static void on_invalidated(void *arg, enum cache_inval_result res)
{
    struct item *it = arg;
    it->d->results[it->i] = res == CACHE_INVAL_DONE     ? WH_INVALIDATED
                            : res == CACHE_INVAL_QUEUED ? WH_QUEUED
                                                        : WH_FAILED;
    settle(it->d);
}

static void on_identity(void *arg, const char *ident, size_t ident_len, bool error)
{
    struct item *it = arg;
    struct delivery *d = it->d;
    struct request *req = d->req;
    struct event *e = &d->ev.v[it->i];
    if (ident) {
        cache_invalidate(req->w->cache, req->cfg, req->cfg->account_sid, e->service, ident,
                         ident_len, 0, on_invalidated, it);
        return;
    }
    d->results[it->i] = error ? WH_FAILED : WH_UNCACHED;
    settle(d);
}

/* Start one event's invalidation, or settle its result at once. */
static void start(struct delivery *d, size_t i)
{
    struct request *req = d->req;
    const struct config *cfg = req->cfg;
    struct event *e = &d->ev.v[i];
    struct item *it = &d->items[i];
    it->d = d;
    it->i = i;
    if (e->kind == EVENT_OTHER) {
        d->results[i] = WH_IGNORED;
        return;
    }
    if (e->kind == EVENT_MALFORMED) {
        d->results[i] = WH_MALFORMED;
        return;
    }
    if (e->account[0] && strcmp(e->account, cfg->account_sid) != 0) {
        d->results[i] = WH_FOREIGN;
        return;
    }
    /* An event that names no service is about the account's default one
     * (Event Streams' user schema carries none). */
    if (!e->service[0] && !server_default_service(req->w->srv, e->service)) {
        log_warn("request %llu: webhook %s names no service and the default Conversation "
                 "Service is not known yet",
                 (unsigned long long)req->id, e->type);
        d->results[i] = WH_FAILED;
        return;
    }
    d->owed++;
    if (e->identity_len)
        cache_invalidate(req->w->cache, cfg, cfg->account_sid, e->service, e->identity,
                         e->identity_len, 0, on_invalidated, it);
    else
        cache_resolve_sid(req->w->cache, cfg, cfg->account_sid, e->service, e->user_sid,
                          on_identity, it);
}

void webhook_handle(struct request *req)
{
    struct worker *w = req->w;
    const struct config *cfg = req->cfg;
    const struct http1_msg *m = &req->msg;
    req->route.id = ROUTE_WEBHOOK;
    if (strcmp(m->method, "POST") != 0) {
        response_error(req, 405, TWILIO_E_METHOD, "Twilio events are delivered with POST");
        return;
    }
    int64_t now = util_now_ms();
    long retry = 0;
    if (admission_auth_blocked(w->srv->admission, &req->peer, cfg->auth_failures_per_minute, now,
                               &retry)) {
        response_error_retry(req, 429, TWILIO_E_TOO_MANY,
                             "Too many failed authentications from this address; retry later",
                             retry);
        return;
    }
    struct buf url = {0};
    signed_url(cfg, m, &url);
    bool json = is_json(m);
    struct form form = {0};
    char err[256];
    bool readable = json || form_parse(m->body.data, m->body.len, &form, err, sizeof err) == 0;
    enum signature_result sr =
        readable ? signature_check(cfg->webhook_token, strlen(cfg->webhook_token), url.data,
                                   url.len, &form, m->body.data, m->body.len, json,
                                   http1_msg_header(m, "X-Twilio-Signature"))
                 : SIGNATURE_MISMATCH;
    buf_free(&url);
    if (sr != SIGNATURE_OK) {
        form_free(&form);
        metrics_inc(w->metrics, MCOUNT_WEBHOOK_SIGNATURE_FAILURES);
        admission_auth_failed(w->srv->admission, &req->peer, cfg->auth_failures_per_minute, now);
        char addr[48];
        auth_peer_format(&req->peer, addr, sizeof addr);
        log_notice("request %llu: webhook from %s refused: signature %s",
                   (unsigned long long)req->id, addr, signature_result_name(sr));
        response_error(req, 403, TWILIO_E_FORBIDDEN, "Invalid X-Twilio-Signature");
        return;
    }
    req->client = &twilio_client;
    struct delivery *d = util_calloc(1, sizeof *d);
    d->req = req;
    if (json) {
        if (events_from_json(m->body.data, m->body.len, &d->ev, err, sizeof err) < 0) {
            stats_add(w->srv->webhook_stats, EVENT_SRC_EVENTSTREAMS, "none", WH_MALFORMED);
            delivery_free(d);
            response_error(req, 400, TWILIO_E_BAD_REQUEST, err);
            return;
        }
    } else {
        events_from_form(&form, &d->ev);
    }
    form_free(&form);
    d->items = util_calloc(d->ev.n ? d->ev.n : 1, sizeof *d->items);
    d->results = util_calloc(d->ev.n ? d->ev.n : 1, sizeof *d->results);
    /* The request must be answered even if Twilio hangs up: no on_abort. */
    req->on_abort = NULL;
    d->owed = 1;
    for (size_t i = 0; i < d->ev.n; i++)
        start(d, i);
    settle(d);
}

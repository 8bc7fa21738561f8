/* admin: the operator's listener on the main thread (evhttp is fine here; the
 * client path never uses it): /metrics, /healthz, /readyz and cache purges.
 * Reads worker metric shards, never worker state directly. Purges go through
 * the same cache interface as the workers, on a Redis connection of the
 * admin's own (on the main thread's loop). */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "config.h"
#include "admission.h"
#include "webhook.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "twilio.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

/* Bounds on what an admin request may send: its routes take no body. */
#define ADMIN_MAX_HEADERS 8192
#define ADMIN_MAX_BODY 1024
#define ADMIN_TIMEOUT_S 10

struct admin {
    struct evhttp *http;
    struct server *srv;
    struct redis *redis;
    struct cache *cache;
    /* Connections that have sent a request, for admin_max_connections
     * (libevent 2.1's evhttp has no limit of its own); one that never sends
     * one is closed by evhttp's timeout. */
    struct evhttp_connection **conns;
    size_t n_conns;
};

static void reply(struct evhttp_request *r, int status, const char *ctype, const struct buf *b)
{
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b->data ? b->data : "", b->len);
    evhttp_add_header(evhttp_request_get_output_headers(r), "Content-Type", ctype);
    evhttp_send_reply(r, status, NULL, out);
    evbuffer_free(out);
}

static void reply_error(struct evhttp_request *r, int status, int code, const char *msg)
{
    struct buf b = {0};
    twilio_error_json(&b, status, code, msg);
    reply(r, status, "application/json", &b);
    buf_free(&b);
}

static size_t shards(struct admin *a, struct metrics_shard **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < a->srv->n_workers && n < max; i++)
        if (a->srv->workers[i])
            out[n++] = a->srv->workers[i]->metrics;
    return n;
}

static void get_metrics(struct admin *a, struct evhttp_request *r)
{
    struct metrics_shard *sh[64];
    size_t n = shards(a, sh, UG_ARRAY_LEN(sh));
    struct buf b = {0}, throttled = {0}, webhook = {0};
    admission_render_throttled(a->srv->admission, &throttled, "usergate_client_throttled_total");
    webhook_stats_render(a->srv->webhook_stats, &webhook, "usergate_webhook_events_total");
    struct config *cfg = server_config(a->srv);
    struct metrics_external ext = {.throttled = throttled.data,
                                   .webhook_events = webhook.data,
                                   .upstream = cfg->demo ? "demo" : "twilio"};
    metrics_render(&b, sh, n, PACKAGE_VERSION, &ext);
    buf_free(&throttled);
    buf_free(&webhook);
    config_unref(cfg);
    reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
    buf_free(&b);
}

static void get_healthz(struct admin *a, struct evhttp_request *r)
{
    struct buf b = {0};
    bool stopping = __atomic_load_n(&a->srv->stopping, __ATOMIC_ACQUIRE);
    buf_puts(&b, stopping ? "{\"status\":\"stopping\"}" : "{\"status\":\"ok\"}");
    reply(r, stopping ? 503 : 200, "application/json", &b);
    buf_free(&b);
}

static void get_readyz(struct admin *a, struct evhttp_request *r)
{
    struct metrics_shard *sh[64];
    size_t n = shards(a, sh, UG_ARRAY_LEN(sh));
    const char *reason = NULL;
    if (__atomic_load_n(&a->srv->stopping, __ATOMIC_ACQUIRE))
        reason = "shutting down";
    else if (metrics_gauge_value(sh, n, MGAUGE_REDIS_UP) != 1)
        reason = "redis unreachable";
    struct buf b = {0};
    if (reason)
        buf_printf(&b, "{\"status\":\"not ready\",\"reason\":\"%s\"}", reason);
    else
        buf_puts(&b, "{\"status\":\"ready\"}");
    reply(r, reason ? 503 : 200, "application/json", &b);
    buf_free(&b);
}

/* ---- purges: DELETE /cache/services/{IS} and
 * DELETE /cache/services/{IS}/users/{Sid-or-identity} */

struct purge_req {
    struct admin *a;
    struct evhttp_request *r;
    struct config *cfg;
    char service[TWILIO_SID_LEN + 1];
    char sid[TWILIO_SID_LEN + 1]; /* a purge by SID */
};

static void purged(struct purge_req *p, bool ok, const char *what, long long deleted)
{
    if (!ok) {
        reply_error(p->r, 503, TWILIO_E_UNAVAILABLE, "Redis failed during the purge; retry");
    } else {
        /* Counters are atomic: any thread may add to a worker's shard. */
        metrics_inc(p->a->srv->workers[0]->metrics, MCOUNT_PURGES);
        struct buf b = {0};
        buf_printf(&b, "{\"purged\":\"%s\",\"service_sid\":\"%s\"", what, p->service);
        if (deleted >= 0)
            buf_printf(&b, ",\"deleted\":%lld", deleted);
        buf_puts(&b, "}");
        reply(p->r, 200, "application/json", &b);
        buf_free(&b);
    }
    config_unref(p->cfg);
    free(p);
}

static void on_user_purged(void *arg, enum cache_inval_result res)
{
    /* Queued is not done: the operator should retry (purges are idempotent). */
    purged(arg, res == CACHE_INVAL_DONE, "user", -1);
}

/* A purge by SID purges the identity behind it (its alias says which); a
 * SID no alias names has nothing cached under an identity. */
static void on_purge_alias(void *arg, const char *ident, size_t len, bool error)
{
    struct purge_req *p = arg;
    if (error) {
        purged(p, false, "user", -1);
        return;
    }
    if (!ident) {
        purged(p, true, "user", -1);
        return;
    }
    cache_invalidate(p->a->cache, p->cfg, p->cfg->account_sid, p->service, ident, len, 0,
                     on_user_purged, p);
}

static void on_service_purged(void *arg, long long deleted)
{
    purged(arg, deleted >= 0, "service", deleted);
}

static void purge(struct admin *a, struct evhttp_request *r)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    static const char pfx[] = "/cache/services/";
    if (strncmp(path, pfx, sizeof pfx - 1) != 0) {
        reply_error(r, 404, TWILIO_E_NOT_FOUND, "The requested resource was not found");
        return;
    }
    const char *svc = path + sizeof pfx - 1;
    const char *slash = strchr(svc, '/');
    size_t svc_len = slash ? (size_t)(slash - svc) : strlen(svc);
    if (!twilio_is_sid(svc, svc_len, "IS")) {
        reply_error(r, 400, TWILIO_E_BAD_REQUEST, "Invalid service SID: expected IS + 32 hex");
        return;
    }
    static const char users[] = "/users/";
    char user[TWILIO_IDENTITY_MAX + 1];
    long user_len = -1;
    if (slash) {
        if (strncmp(slash, users, sizeof users - 1) != 0) {
            reply_error(r, 404, TWILIO_E_NOT_FOUND, "The requested resource was not found");
            return;
        }
        const char *raw = slash + sizeof users - 1;
        size_t raw_len = strlen(raw);
        char tmp[3 * TWILIO_IDENTITY_MAX + 1], why[128];
        if (raw_len == 0 || strchr(raw, '/')) {
            reply_error(r, 404, TWILIO_E_NOT_FOUND, "The requested resource was not found");
            return;
        }
        if (raw_len > 3 * TWILIO_IDENTITY_MAX ||
            (user_len = util_pct_decode(raw, raw_len, tmp, false)) < 0 ||
            twilio_validate_identity(tmp, (size_t)user_len, why, sizeof why) < 0) {
            reply_error(r, 400, TWILIO_E_BAD_REQUEST, "Invalid user Sid or Identity");
            return;
        }
        memcpy(user, tmp, (size_t)user_len + 1);
    }
    struct config *cfg = server_config(a->srv);
    struct purge_req *p = util_calloc(1, sizeof *p);
    p->a = a;
    p->r = r;
    p->cfg = cfg; /* the purge's reference */
    memcpy(p->service, svc, TWILIO_SID_LEN);
    twilio_sid_canon(p->service);
    if (user_len < 0) {
        log_notice("admin: purging service %s", p->service);
        cache_purge_service(a->cache, cfg, cfg->account_sid, p->service, on_service_purged, p);
    } else if (twilio_is_sid(user, (size_t)user_len, "US")) {
        twilio_sid_canon(user);
        log_notice("admin: purging one user of service %s", p->service);
        cache_resolve_sid(a->cache, cfg, cfg->account_sid, p->service, user, on_purge_alias, p);
    } else {
        log_notice("admin: purging one user of service %s", p->service);
        cache_invalidate(a->cache, cfg, cfg->account_sid, p->service, user, (size_t)user_len, 0,
                         on_user_purged, p);
    }
}

/* Who may use a route: anyone, the token holder, or the token holder when
 * admin_token_for_metrics is on. */
enum admin_access { OPEN, TOKEN, METRICS };

/* The route table: path (exact, or prefix when it ends in '/'), method,
 * access, handler. */
static const struct {
    const char *path;
    enum evhttp_cmd_type method;
    enum admin_access access;
    void (*fn)(struct admin *, struct evhttp_request *);
} routes[] = {
    {"/metrics", EVHTTP_REQ_GET, METRICS, get_metrics},
    {"/healthz", EVHTTP_REQ_GET, OPEN, get_healthz},
    {"/readyz", EVHTTP_REQ_GET, OPEN, get_readyz},
    {"/cache/", EVHTTP_REQ_DELETE, TOKEN, purge},
};

/* With admin_token set, TOKEN routes (and METRICS ones when configured)
 * need "Authorization: Bearer <token>", compared in constant time. */
static bool authorized(const struct config *cfg, enum admin_access access, struct evhttp_request *r)
{
    if (!cfg->admin_token || access == OPEN || (access == METRICS && !cfg->admin_token_for_metrics))
        return true;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(r), "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    return util_ct_equal(tok, strlen(tok), cfg->admin_token, strlen(cfg->admin_token));
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct admin *a = arg;
    for (size_t i = 0; i < a->n_conns; i++) {
        if (a->conns[i] == evcon) {
            a->conns[i] = a->conns[--a->n_conns];
            return;
        }
    }
}

/* Track the request's connection; false when it is one too many. */
static bool admit_conn(struct admin *a, const struct config *cfg, struct evhttp_request *r)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(r);
    for (size_t i = 0; i < a->n_conns; i++)
        if (a->conns[i] == evcon)
            return true;
    if (a->n_conns >= (size_t)cfg->admin_max_connections)
        return false;
    struct evhttp_connection **nc = realloc(a->conns, (a->n_conns + 1) * sizeof *nc);
    if (!nc)
        return false;
    a->conns = nc;
    a->conns[a->n_conns++] = evcon;
    evhttp_connection_set_closecb(evcon, on_conn_close, a);
    return true;
}

static void dispatch(struct evhttp_request *r, void *arg)
{
    struct admin *a = arg;
    struct config *cfg = server_config(a->srv);
    bool admitted = admit_conn(a, cfg, r);
    if (!admitted) {
        evhttp_add_header(evhttp_request_get_output_headers(r), "Connection", "close");
        reply_error(r, 503, TWILIO_E_UNAVAILABLE, "Too many admin connections");
        config_unref(cfg);
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(r));
    if (!path)
        path = "/";
    bool known = false;
    for (size_t i = 0; i < UG_ARRAY_LEN(routes); i++) {
        size_t n = strlen(routes[i].path);
        bool match = routes[i].path[n - 1] == '/' ? strncmp(path, routes[i].path, n) == 0
                                                  : strcmp(path, routes[i].path) == 0;
        if (!match)
            continue;
        known = true;
        if (evhttp_request_get_command(r) != routes[i].method)
            continue;
        if (!authorized(cfg, routes[i].access, r)) {
            evhttp_add_header(evhttp_request_get_output_headers(r), "WWW-Authenticate",
                              "Bearer realm=\"usergate-admin\"");
            reply_error(r, 401, TWILIO_E_AUTH, "Authenticate: admin_token required");
        } else {
            routes[i].fn(a, r);
        }
        config_unref(cfg);
        return;
    }
    config_unref(cfg);
    if (known)
        reply_error(r, 405, TWILIO_E_METHOD, "Method not allowed on this resource");
    else
        reply_error(r, 404, TWILIO_E_NOT_FOUND, "The requested resource was not found");
}

struct admin *admin_start(struct event_base *base, struct server *srv)
{
    struct config *cfg = server_config(srv);
    const struct config_addr *addr = &cfg->admin_listen;
    struct admin *a = util_calloc(1, sizeof *a);
    a->srv = srv;
    a->http = evhttp_new(base);
    if (!a->http) {
        log_err("admin: cannot create HTTP server");
        goto fail;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_POST | EVHTTP_REQ_PUT);
    evhttp_set_gencb(a->http, dispatch, a);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY);
    if (addr->is_unix) {
        log_err("admin: unix sockets are not supported for admin_listen (%s)", addr->text);
        goto fail;
    }
    if (!evhttp_bind_socket_with_handle(a->http, addr->host, (ev_uint16_t)addr->port)) {
        log_err("admin: cannot listen on %s: %m", addr->text);
        goto fail;
    }
    a->redis = redis_new(base, cfg);
    if (!a->redis) {
        log_err("admin: cannot create the Redis client");
        goto fail;
    }
    a->cache = cache_new(a->redis, base, NULL);
    log_notice("admin listening on %s", addr->text);
    config_unref(cfg);
    return a;
fail:
    config_unref(cfg);
    admin_stop(a);
    return NULL;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    /* Redis first: purges still waiting are answered (with an error) while
     * their evhttp requests still exist. */
    if (a->redis)
        redis_free(a->redis);
    if (a->http)
        evhttp_free(a->http); /* runs on_conn_close for each connection */
    cache_free(a->cache);
    free(a->conns);
    free(a);
}

void admin_reconfigure(struct admin *a, const struct config *cfg)
{
    if (a && a->redis)
        redis_reconfigure(a->redis, cfg);
}

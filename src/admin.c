/* admin: the operator's listener on the main thread (evhttp is fine here; the
 * client path never uses it): /metrics, /healthz, /readyz and cache purges.
 * Reads worker metric shards, never worker state directly. */
#include "admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "twilio.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

struct admin {
    struct evhttp *http;
    struct server *srv;
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

static size_t shards(struct server *srv, struct metrics_shard **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < srv->n_workers && n < max; i++)
        if (srv->workers[i])
            out[n++] = srv->workers[i]->metrics;
    return n;
}

static void get_metrics(struct admin *a, struct evhttp_request *r)
{
    struct metrics_shard *sh[64];
    size_t n = shards(a->srv, sh, UG_ARRAY_LEN(sh));
    struct buf b = {0};
    metrics_render(&b, sh, n, PACKAGE_VERSION);
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
    size_t n = shards(a->srv, sh, UG_ARRAY_LEN(sh));
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

static void purge(struct admin *a, struct evhttp_request *r)
{
    (void)a;
    reply_error(r, 501, TWILIO_E_BAD_REQUEST, "Cache purge is not available in this version");
}

/* The route table: path (exact, or prefix when it ends in '/'), method, handler. */
static const struct {
    const char *path;
    enum evhttp_cmd_type method;
    void (*fn)(struct admin *, struct evhttp_request *);
} routes[] = {
    {"/metrics", EVHTTP_REQ_GET, get_metrics},
    {"/healthz", EVHTTP_REQ_GET, get_healthz},
    {"/readyz", EVHTTP_REQ_GET, get_readyz},
    {"/cache/", EVHTTP_REQ_DELETE, purge},
};

static void dispatch(struct evhttp_request *r, void *arg)
{
    struct admin *a = arg;
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
        if (evhttp_request_get_command(r) == routes[i].method) {
            routes[i].fn(a, r);
            return;
        }
    }
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
    evhttp_set_timeout(a->http, 30);
    if (addr->is_unix) {
        log_err("admin: unix sockets are not supported for admin_listen (%s)", addr->text);
        goto fail;
    }
    if (!evhttp_bind_socket_with_handle(a->http, addr->host, (ev_uint16_t)addr->port)) {
        log_err("admin: cannot listen on %s: %m", addr->text);
        goto fail;
    }
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
    if (a->http)
        evhttp_free(a->http);
    free(a);
}

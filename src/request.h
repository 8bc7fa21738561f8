/* request: one client request from parse to reply. Created by the listener,
 * driven by the router, finished by exactly one response_* call. The listener
 * owns the memory; if the client goes away first, the listener detaches it
 * (conn = NULL) and calls on_abort once, and the request is freed by the
 * response call that finishes it. */
#ifndef USERGATE_REQUEST_H
#define USERGATE_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "events.h"
#include "http1.h"
#include "route.h"
#include "util.h"

struct worker;
struct conn;
struct config;
struct config_client;

/* X-Cache values. */
enum cache_status { XCACHE_NONE = 0, XCACHE_HIT, XCACHE_MISS, XCACHE_STALE, XCACHE_BYPASS };

struct request {
    struct worker *w;
    struct conn *conn;                  /* NULL once the client has gone */
    struct request *next;               /* listener's per-connection FIFO (pipelining order) */
    uint64_t id;                        /* per-process unique, for logs */
    int64_t start_ms;                   /* util_now_ms() at parse completion */
    struct http1_msg msg;               /* method, target, headers, body */
    struct auth_peer peer;              /* the connection's source address */
    struct auth_memo *auth_memo;        /* the connection's; NULL once detached */
    struct config *cfg;                 /* snapshot ref taken at start, dropped at finish */
    const struct config_client *client; /* after auth; points into cfg */
    struct route_match route;

    /* Filled for the access log / metrics as the request proceeds. */
    enum cache_status cache;
    int upstream_status; /* 0 = no upstream call */
    int64_t upstream_ms;
    char service[TWILIO_SID_LEN + 1]; /* resolved (/v1/Users: the default service), "" unknown */
    char event[EVENT_TYPE_MAX + 2];   /* webhooks: the first event's type (+ "+" when more
                                         followed), for the log */

    /* Response, serialized by response.c, flushed in order by the listener.
     * Requests are pooled per worker and keep this buffer's memory. */
    struct buf out;
    int status;
    bool done;        /* a response_* call happened */
    bool close_after; /* Connection: close after this response */

    /* Router state (opaque to the listener). */
    void *rstate;
    /* Called (at most once) when the client goes away before the response.
     * The router cancels what it can; it must still finish the request. */
    void (*on_abort)(struct request *req);
};

#endif

/* upstream: the only file that includes curl. One curl multi handle per worker,
 * driven by the worker's event base through CURLMOPT_SOCKETFUNCTION /
 * CURLMOPT_TIMERFUNCTION (the hiperfifo.c pattern): never curl_easy_perform.
 * Injects the account's credentials as HTTP Basic, keeps connections alive,
 * and calls back exactly once per request. */
#ifndef USERGATE_UPSTREAM_H
#define USERGATE_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pace.h"
#include "util.h"

#define CURL_ERROR_SIZE_UG 256

struct event_base;
struct config;
struct upstream;      /* per worker */
struct upstream_call; /* one request in flight */

enum upstream_outcome {
    UPSTREAM_OK = 0,       /* an HTTP response arrived (any status) */
    UPSTREAM_CONNECT_FAIL, /* never reached upstream (DNS, refused, TLS handshake): safe to retry
                              any method */
    UPSTREAM_TIMEOUT,      /* timed out after the request may have left: outcome unknown */
    UPSTREAM_ERROR,        /* other transport error after sending (reset…): outcome unknown */
    UPSTREAM_CANCELLED,    /* upstream_cancel was called (callback still runs once) */
    UPSTREAM_REJECTED,     /* never sent: max_inflight reached and the queue was full,
                              or the queue wait passed queue_timeout_ms */
};

struct upstream_response {
    enum upstream_outcome outcome;
    int status; /* HTTP status when outcome == UPSTREAM_OK, else 0 */
    struct buf body;
    char content_type[128]; /* "" if none */
    char request_id[64];    /* Twilio-Request-Id, "" if none */
    long retry_after;       /* seconds from Retry-After, -1 if none; for REJECTED: when to
                               come back (>= 1) */
    int64_t duration_ms;
    int retries;                    /* attempts made beyond the first */
    int throttled;                  /* attempts Twilio answered 429 (the last one included) */
    int64_t paced_ms;               /* time a write waited for its service's pacing */
    bool pace_rejected;             /* REJECTED by write pacing (not by the queue) */
    char error[CURL_ERROR_SIZE_UG]; /* transport error text, "" when OK */
};

/* Callback runs exactly once, on the worker's loop, never from inside
 * upstream_start. The response is only valid during the callback. */
typedef void (*upstream_cb)(void *arg, const struct upstream_response *resp);

struct upstream_request {
    const char *method; /* "GET", "POST", "DELETE" */
    const char *url;    /* absolute: base url + path (+ query) */
    const char *body;   /* form body for POST, or NULL */
    size_t body_len;
    const char *webhook_enabled; /* X-Twilio-Webhook-Enabled value to pass through, or NULL */
    const char *api;             /* metric label: "conversations" | "chat" */
    /* Write pacing: the service SID a create/update/delete belongs to (paced at
     * writes_per_second per service across all workers), NULL for reads. */
    const char *pace_key;
    /* GETs may be retried after they reached Twilio (5xx, 429); writes only
     * when they provably never left (connect failure). */
    bool idempotent;
};

/* Process-wide limits shared by every worker's upstream (atomics): at most
 * cfg->max_inflight calls on the wire, at most cfg->queue_size waiting, and
 * writes paced per service at cfg->writes_per_second (pace.h). Zero-initialised
 * is ready. */
struct upstream_limits {
    long inflight;
    long queued;
    struct pace_table pace;
};

struct upstream *upstream_new(struct event_base *base);
/* Share limits between workers; without it each upstream counts alone. */
void upstream_set_limits(struct upstream *u, struct upstream_limits *limits);
/* Calls of this upstream waiting for a slot. */
size_t upstream_queued(const struct upstream *u);
/* Tear down: cancels calls in flight; their callbacks run with CANCELLED
 * synchronously, inside this call (the loop may already be gone), and any
 * upstream_start they attempt returns NULL. Must not be called from inside an
 * upstream callback. */
void upstream_free(struct upstream *u);
/* Start a request using cfg's credentials and timeouts (cfg and req, body
 * included, are only read during this call). Returns a handle valid until the
 * callback runs, or NULL if curl refused to start it, the method is not
 * GET/POST/DELETE, or webhook_enabled holds control characters (then the
 * callback is NOT called). Response bodies over 4 MiB end as UPSTREAM_ERROR. */
struct upstream_call *upstream_start(struct upstream *u, const struct config *cfg,
                                     const struct upstream_request *req, upstream_cb cb, void *arg);
/* Cancel a call in flight; its callback runs once, later (from the loop, never
 * inside this call), with UPSTREAM_CANCELLED. A no-op from the call's own
 * callback; after that callback the handle is gone. */
void upstream_cancel(struct upstream_call *call);
/* Calls attached to curl right now: started, not yet finished or cancelled. */
size_t upstream_inflight(const struct upstream *u);

/* "libcurl/7.88.1 OpenSSL/…" for -V. */
const char *upstream_version(void);
/* Once per process before threads: curl_global_init. */
int upstream_global_init(void);
void upstream_global_cleanup(void);

#endif

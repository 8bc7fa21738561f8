/* admission: the admission state all workers share — per-client request rate
 * buckets, per-address authentication-failure buckets, connection counts
 * (all workers together and per source address) and the per-client count of
 * 429s given. One mutex guards it; every call is a few table operations
 * under it. Client state is keyed by client name, so it survives reloads
 * (counters stay monotonic). The arithmetic is auth.c's. */
#ifndef USERGATE_ADMISSION_H
#define USERGATE_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "route.h"
#include "util.h"

/* usergate_client_throttled_total{client,reason} */
enum admission_reason {
    LIMIT_RATE = 0, /* the client's rate / burst (or rate.ACTION) */
    LIMIT_AUTH,     /* too many failed authentications from the source address */
    LIMIT_INFLIGHT, /* upstream max_inflight and queue full */
    LIMIT_PACING,   /* the service's writes_per_second */
    LIMIT_REASON_COUNT
};

struct admission;
struct config_client;

struct admission *admission_new(void);
void admission_free(struct admission *l);

/* Take a token for one request of client cl doing action: from its overall
 * bucket (rate/burst) and from the action's (rate.ACTION/burst.ACTION) when
 * set; both or neither. Returns true when allowed, else false with
 * *retry_after_s (seconds until a token, at least 1) and the refusal
 * counted. */
bool admission_client_take(struct admission *l, const struct config_client *cl,
                           enum route_action action, int64_t now_ms, long *retry_after_s);
/* Count a 429 given to a client for another reason (name NULL: unknown). */
void admission_count(struct admission *l, const char *client, enum admission_reason why);

/* Authentication failures per source address, at per_minute a minute
 * (burst per_minute). blocked: is the address out of attempts (its request
 * is refused before its credentials are even compared)? failed: one more
 * failure. per_minute 0 disables both. */
bool admission_auth_blocked(struct admission *l, const struct auth_peer *p, long per_minute,
                            int64_t now_ms, long *retry_after_s);
void admission_auth_failed(struct admission *l, const struct auth_peer *p, long per_minute,
                           int64_t now_ms);

/* A new connection from p: admitted when fewer than max_total are open
 * (all workers) and fewer than max_per_ip from its address (0 = no per
 * address limit; unix peers are exempt). Every admitted connection must be
 * released exactly once. */
enum admission_conn { LIMIT_CONN_OK = 0, LIMIT_CONN_TOTAL, LIMIT_CONN_PER_IP };
enum admission_conn admission_conn_open(struct admission *l, const struct auth_peer *p,
                                        long max_total, long max_per_ip);
void admission_conn_close(struct admission *l, const struct auth_peer *p);

/* The throttle counters as Prometheus samples, one line per (client,
 * reason) with a non-zero count: `{client="…",reason="…"} N` (label values
 * escaped), appended to out. Used by metrics_render. */
void admission_render_throttled(struct admission *l, struct buf *out, const char *metric);

#endif

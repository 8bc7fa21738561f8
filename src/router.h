/* router: the request state machine. Authenticates the client, matches the
 * route, validates input, and drives cache and upstream to an answer handed
 * to response.c. Owns the per-worker single-flight table. */
#ifndef USERGATE_ROUTER_H
#define USERGATE_ROUTER_H

#include <stdbool.h>

#include "route.h"

struct worker;
struct request;
struct router;
struct http1_msg;
struct auth_peer;

/* Why a request was refused before it was handled. */
struct router_refusal {
    enum route_id route; /* for metrics */
    int status, code;    /* HTTP status, Twilio error code */
    long retry_after;    /* seconds, or -1 */
    char message[256];
};

struct router *router_new(struct worker *w);
void router_free(struct router *r);
/* Take over a fully parsed request; it ends with exactly one response_* call
 * (possibly before this returns). */
void router_handle(struct request *req);
/* Would a request with this head be admitted (credentials, source network,
 * route, grant, header values)? The listener asks before answering
 * "Expect: 100-continue", so a refused request's body is never read. Failed
 * authentications count against the source address as usual. */
bool router_admissible(struct worker *w, const struct http1_msg *msg, const struct auth_peer *peer,
                       struct router_refusal *no);
/* Answer req with the refusal (Retry-After where it has one). */
void router_refuse(struct request *req, const struct router_refusal *no);
/* Start learning the default Conversation Service (GET /v1/Configuration),
 * retrying with backoff until it succeeds, unless configured. */
void router_learn_default_service(struct worker *w);

#endif

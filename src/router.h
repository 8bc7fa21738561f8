/* router: the request state machine. Authenticates the client, matches the
 * route (admit.c), validates input, and drives cache and upstream to an
 * answer handed to response.c. Owns the per-worker single-flight table. */
#ifndef USERGATE_ROUTER_H
#define USERGATE_ROUTER_H

struct worker;
struct request;
struct router;

struct router *router_new(struct worker *w);
void router_free(struct router *r);
/* Take over a fully parsed request; it ends with exactly one response_* call
 * (possibly before this returns). */
void router_handle(struct request *req);
/* Start learning the default Conversation Service (GET /v1/Configuration),
 * retrying with backoff until it succeeds, unless configured. */
void router_learn_default_service(struct worker *w);

#endif

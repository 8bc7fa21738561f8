/* admit: whether a request may go further, decided from its head alone
 * (credentials, source network, route, grant, forwarded header values). See
 * admit.c. */
#ifndef USERGATE_ADMIT_H
#define USERGATE_ADMIT_H

#include <stdbool.h>

#include "route.h"
#include "twilio.h"

struct worker;
struct config;
struct config_client;
struct request;
struct http1_msg;
struct auth_peer;
struct auth_memo;

/* Why a request was refused before it was handled. */
struct admit_refusal {
    enum route_id route; /* for metrics */
    int status, code;    /* HTTP status, Twilio error code */
    long retry_after;    /* seconds, or -1 */
    char message[256];
};

/* Admit msg from peer under cfg: on success m, *client and service (the
 * resolved service, "" when /v1/Users' default is not known yet) are set;
 * otherwise no says why. Failed authentications count against the source
 * address. memo (the connection's, or NULL) remembers a proven
 * Authorization value so the next request with it skips the decoding. */
bool admit_request(struct worker *w, const struct config *cfg, const struct http1_msg *msg,
                   const struct auth_peer *peer, struct auth_memo *memo, struct route_match *m,
                   const struct config_client **client, char service[TWILIO_SID_LEN + 1],
                   struct admit_refusal *no);
/* The same for a head alone, under the worker's current config: the
 * listener asks before answering "Expect: 100-continue", so a refused
 * request's body is never read. */
bool admit_head(struct worker *w, const struct http1_msg *msg, const struct auth_peer *peer,
                struct auth_memo *memo, struct admit_refusal *no);
/* Answer req with the refusal (Retry-After where it has one). */
void admit_refuse(struct request *req, const struct admit_refusal *no);

#endif

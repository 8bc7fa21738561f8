/* route: the client-facing route table as a pure function from (method, path)
 * to a route match. Knows Twilio's URL shapes, decodes and validates path
 * segments, and nothing else (no auth, no I/O). */
#ifndef USERGATE_ROUTE_H
#define USERGATE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "twilio.h"

/* API family: which URL shape (and so which response body shape) a route has.
 * The same user appears in all three for one service. */
enum api_family {
    FAMILY_V1_DEFAULT = 0, /* /v1/Users…              (default Conversation Service) */
    FAMILY_V1_SERVICE = 1, /* /v1/Services/{IS}/Users… */
    FAMILY_V2 = 2,         /* /v2/Services/{IS}/Users… (Programmable Chat) */
    FAMILY_COUNT
};
/* "v1", "v1s", "v2": stable strings used inside cache keys. */
const char *route_family_tag(enum api_family f);

enum route_action {
    ACTION_FETCH = 0,  /* GET  …/Users/{Sid}    */
    ACTION_CREATE = 1, /* POST …/Users          */
    ACTION_UPDATE = 2, /* POST …/Users/{Sid}    */
    ACTION_DELETE = 3, /* DELETE …/Users/{Sid}  */
    ACTION_LIST = 4,   /* GET  …/Users          */
    ACTION_SUB = 5,    /* sub-resources (…/Users/{Sid}/Conversations|Channels|Bindings…) */
    ACTION_COUNT
};
/* "fetch", "create", "update", "delete", "list", "sub": the words of a client's `allow`. */
const char *route_action_name(enum route_action a);
/* Bit for the action in a client's allow mask. */
#define ROUTE_ACTION_BIT(a) (1u << (a))

/* Route ids: one per (family, shape). Used as metric label index. */
enum route_id {
    ROUTE_V1_USERS = 0, /* /v1/Users */
    ROUTE_V1_USER,      /* /v1/Users/{Sid} */
    ROUTE_V1_USER_SUB,  /* /v1/Users/{Sid}/Conversations[/{ConversationSid}] */
    ROUTE_V1S_USERS,    /* /v1/Services/{IS}/Users */
    ROUTE_V1S_USER,     /* /v1/Services/{IS}/Users/{Sid} */
    ROUTE_V1S_USER_SUB, /* /v1/Services/{IS}/Users/{Sid}/Conversations[/…] */
    ROUTE_V2_USERS,     /* /v2/Services/{IS}/Users */
    ROUTE_V2_USER,      /* /v2/Services/{IS}/Users/{Sid} */
    ROUTE_V2_USER_SUB,  /* /v2/Services/{IS}/Users/{Sid}/Channels|Bindings[/…] */
    ROUTE_WEBHOOK,      /* [webhooks] path: Twilio's events (webhook.c) */
    ROUTE_NONE,         /* anything else (404) — still counted in metrics */
    ROUTE_COUNT
};
/* Metric label for a route: "/v1/Users/{Sid}" etc.; ROUTE_NONE is "other". */
const char *route_label(enum route_id r);

/* The sub-resource collections under a user. */
enum route_sub {
    ROUTE_SUB_NONE = 0,
    ROUTE_SUB_CONVERSATIONS, /* v1, v1s: …/Users/{Sid}/Conversations[/{ConversationSid}] */
    ROUTE_SUB_CHANNELS,      /* v2: …/Users/{Sid}/Channels[/{ChannelSid}] */
    ROUTE_SUB_BINDINGS,      /* v2: …/Users/{Sid}/Bindings[/{BS…}] */
};

struct route_match {
    enum route_id id;
    enum api_family family;
    enum route_action action;
    char service[TWILIO_SID_LEN + 1]; /* "IS…" or "" for FAMILY_V1_DEFAULT */
    /* The {Sid} segment, percent-decoded once ('+' literal). Empty for
     * collection routes. user_is_sid when it matches ^US[0-9a-fA-F]{32}$. */
    char user[TWILIO_IDENTITY_MAX + 1];
    size_t user_len;
    bool user_is_sid;
    /* For ACTION_SUB: which sub-resource collection, and its item segment
     * (decoded and validated like {Sid}; item_len 0 for the collection). */
    enum route_sub sub;
    char item[TWILIO_IDENTITY_MAX + 1];
    size_t item_len;
    /* Query string (raw, without '?'), pointing into the caller's path; NULL
     * if none. Only for validation: it is never forwarded as received. */
    const char *query;
    size_t query_len;
};

enum route_result {
    ROUTE_OK = 0,
    ROUTE_NOT_FOUND,   /* 404 20404: not a route usergate serves */
    ROUTE_BAD_METHOD,  /* 405 20004: known path, method not allowed */
    ROUTE_BAD_REQUEST, /* 400: malformed service SID, bad escape, bad identity… (err set) */
};

/* Match method ("GET", "POST", "DELETE") and the raw request-target
 * path[0..len) (origin-form, may include "?query"). On ROUTE_BAD_REQUEST err
 * holds a human message and *code the Twilio code. m->id is set to the best
 * route id even on errors (ROUTE_NONE when unknown) for metrics. */
enum route_result route_match(const char *method, const char *path, size_t len,
                              struct route_match *m, int *code, char *err, size_t errlen);

/* Build the upstream path for a match from the route's template alone: its
 * literal segments, the service SID, and the decoded user and item segments
 * re-encoded with util_pct_encode (so '/', '?', '#', '%' and '.'-only
 * segments can never appear unencoded); then "?canon_query" when canon_query
 * is non-empty (a query rebuilt from validated parameters, never the raw
 * one). */
void route_upstream_path(const struct route_match *m, const char *canon_query, struct buf *out);

#endif

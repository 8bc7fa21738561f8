/* events: what a Twilio event delivery says about users, as pure functions
 * over the (already authenticated) request body. Three shapes arrive:
 *   - Conversations post-action webhooks: a form with EventType
 *     (onUserAdded, onUserUpdated…), ChatServiceSid, UserSid, Identity,
 *     AccountSid;
 *   - Programmable Chat post-event webhooks: the same form shape with the
 *     service as InstanceSid (or ServiceSid);
 *   - Event Streams deliveries to a webhook sink: JSON, a CloudEvent or an
 *     array of them, type com.twilio.conversations.user.added/.updated,
 *     fields under "data" (AccountSid, UserSid, Identity; a service SID
 *     when the schema carries one).
 * Each becomes one struct event; anything not about a user is kept with
 * kind EVENT_OTHER so it can be acknowledged and counted. */
#ifndef USERGATE_EVENTS_H
#define USERGATE_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "twilio.h"

#define EVENT_TYPE_MAX 64
/* Deliveries with more events than this are refused whole (400). */
#define EVENTS_MAX 1000

enum event_source {
    EVENT_SRC_CONVERSATIONS = 0,
    EVENT_SRC_CHAT,
    EVENT_SRC_EVENTSTREAMS,
    EVENT_SRC_COUNT
};
const char *event_source_name(enum event_source s); /* "conversations", "chat", "eventstreams" */

enum event_kind {
    EVENT_USER_ADDED = 0,
    EVENT_USER_UPDATED,
    EVENT_USER_REMOVED,
    EVENT_OTHER,     /* not about a user: acknowledged, ignored */
    EVENT_MALFORMED, /* about a user, but without a usable user, service or account */
};

struct event {
    enum event_source source;
    enum event_kind kind;
    /* The type as sent when it is a safe metric label ([A-Za-z0-9._-], at
     * most EVENT_TYPE_MAX bytes), else "invalid"; "none" when missing. */
    char type[EVENT_TYPE_MAX + 1];
    char account[TWILIO_SID_LEN + 1]; /* "" when the event names none */
    char service[TWILIO_SID_LEN + 1]; /* IS…, "" when the event names none */
    char user_sid[TWILIO_SID_LEN + 1];
    char identity[TWILIO_IDENTITY_MAX + 1];
    size_t identity_len; /* 0 = none */
};

struct events {
    struct event *v;
    size_t n;
};

/* A form webhook (Conversations or Chat): always exactly one event. */
void events_from_form(const struct form *f, struct events *out);
/* An Event Streams JSON body: a CloudEvent object or an array of them.
 * Returns 0, or -1 with err when the body is not JSON of that shape. */
int events_from_json(const char *body, size_t len, struct events *out, char *err, size_t errlen);
void events_free(struct events *e);

#endif

/* response: the only module that writes replies. Serializes status line,
 * headers (Content-Type, Content-Length, X-Cache, Age, Twilio-Request-Id,
 * Retry-After, Connection) and body into req->out, records metrics and the
 * access log line, then tells the listener the request is done. Every
 * request ends with exactly one call here. */
#ifndef USERGATE_RESPONSE_H
#define USERGATE_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

struct response_meta {
    const char *content_type; /* NULL = application/json */
    const char *request_id;   /* upstream Twilio-Request-Id or NULL */
    long age;                 /* seconds for Age, -1 for none */
    long retry_after;         /* seconds for Retry-After, -1 for none */
};
#define RESPONSE_META_INIT                                                                         \
    {                                                                                              \
        NULL, NULL, -1, -1                                                                         \
    }

/* Send status + body. X-Cache is taken from req->cache (omitted when
 * XCACHE_NONE). meta may be NULL. */
void response_send(struct request *req, int status, const struct response_meta *meta,
                   const char *body, size_t len);
/* Twilio-shaped error produced by usergate. */
void response_error(struct request *req, int status, int code, const char *message);
/* Same, with Retry-After (429/503). */
void response_error_retry(struct request *req, int status, int code, const char *message,
                          long retry_after);

/* Reason phrase for a status code ("OK", "Not Found"…). */
const char *response_reason(int status);

#endif

/* http1: HTTP/1.1 request parsing as a pure function over byte ranges, wrapping
 * Debian's http-parser. Collects method, target, headers and (de-chunked) body
 * of each message with size limits; the listener feeds it bytes and gets whole
 * messages back. No I/O here, so it can be unit-tested and fuzzed. */
#ifndef USERGATE_HTTP1_H
#define USERGATE_HTTP1_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define HTTP1_MAX_HEADERS 64

struct http1_header {
    char *name;  /* NUL-terminated, as received (compare case-insensitively) */
    char *value; /* NUL-terminated, leading/trailing whitespace trimmed */
};

/* One complete request. Ownership passes to the on_message callback's caller
 * (see http1_msg_free). target and every header name/value live in one
 * allocation that target points at; http1_msg_free frees it and the body. A
 * zeroed message is empty and may be freed. */
struct http1_msg {
    char method[8]; /* "GET", "POST", "DELETE", … */
    char *target;   /* request-target as received, NUL-terminated */
    size_t target_len;
    struct http1_header headers[HTTP1_MAX_HEADERS];
    size_t n_headers;
    struct buf body; /* de-chunked */
    bool keep_alive; /* after this message, per HTTP version and Connection */
    int http_minor;  /* 0 or 1 */
};
void http1_msg_free(struct http1_msg *m);
/* Case-insensitive header lookup; first match or NULL. */
const char *http1_msg_header(const struct http1_msg *m, const char *name);

enum http1_error {
    HTTP1_OK = 0,
    HTTP1_BAD_REQUEST,     /* 400: syntax */
    HTTP1_HEADERS_TOO_BIG, /* 431 */
    HTTP1_BODY_TOO_BIG,    /* 413 */
    HTTP1_UNSUPPORTED,     /* 501: e.g. CONNECT, upgrade, transfer-encoding we can't do */
};

struct http1_limits {
    size_t max_header_bytes; /* request line + all headers */
    size_t max_body_bytes;
    /* RFC 9112 3.2: refuse an HTTP/1.1 request without Host (more than one
     * Host is refused in any case: it is ambiguous). */
    bool require_host;
};

struct http1_parser;
/* Called for each complete message, in order. The callee takes ownership of
 * the contents of *msg by copying the struct (and must http1_msg_free the
 * copy); the parser forgets them when the callback returns. Return 0 to
 * continue, -1 to pause parsing (http1_feed returns early; feed the remaining
 * bytes later). The callbacks must not call http1_free. */
typedef int (*http1_message_cb)(void *arg, struct http1_msg *msg);
/* Called when the headers of a message are complete, before its body — the
 * listener uses it for "Expect: 100-continue". May be NULL. */
typedef void (*http1_headers_cb)(void *arg, const struct http1_msg *msg);

struct http1_parser *http1_new(const struct http1_limits *lim, http1_message_cb on_message,
                               http1_headers_cb on_headers, void *arg);
void http1_free(struct http1_parser *p);
/* Feed data[0..len). Returns bytes consumed (may be < len if the callback
 * paused), or -1 on error (*err set; the connection should get the matching
 * error response and be closed). len == 0 signals EOF. */
long http1_feed(struct http1_parser *p, const char *data, size_t len, enum http1_error *err);
/* True when no message is partly received (between messages): a read timeout
 * then means the client is waiting for us, not sending slowly. */
bool http1_idle(const struct http1_parser *p);

/* Where the message being received is: between messages, in its head
 * (request line, headers), or in its body (chunked trailers included). With
 * http1_messages_begun, the listener can tell a new message from the same
 * one and arm the head and body deadlines once per message. */
enum http1_phase { HTTP1_PHASE_IDLE, HTTP1_PHASE_HEAD, HTTP1_PHASE_BODY };
enum http1_phase http1_phase(const struct http1_parser *p);
unsigned long http1_messages_begun(const struct http1_parser *p);

#endif

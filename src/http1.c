/* http1: the glue between http-parser's streaming callbacks and whole request
 * messages. The request line and headers are gathered into one growing block
 * (target, then name\0value\0 pairs) whose pointers are fixed up once the
 * headers are complete, so a request costs one allocation for its head and
 * one (pre-sized from Content-Length) for its body. Limits are enforced while
 * bytes arrive, never after buffering them. Pure: no I/O, no clocks. */
#include "http1.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Fixed bytes a request line and header block have beyond what the data
 * callbacks report: " HTTP/1.1\r\n" after the target, one space after the
 * method, and the blank line ending the headers. Each header adds ": " and
 * CRLF. Optional whitespace is not counted (http-parser's own cap bounds it). */
#define REQUEST_LINE_OVERHEAD (1 + 11 + 2)
#define HEADER_OVERHEAD 4
/* What a head block starts at: a typical request's target and headers. */
#define HEAD_INITIAL 1024

enum last_cb { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };

struct http1_parser {
    http_parser hp;
    struct http1_limits lim;
    http1_message_cb on_message;
    http1_headers_cb on_headers;
    void *arg;

    struct http1_msg msg;              /* message being assembled; moved out when complete */
    struct buf head;                   /* target\0 name\0 value\0 …; becomes msg.target */
    size_t offs[HTTP1_MAX_HEADERS][2]; /* name and value offsets into head */
    size_t head_bytes;                 /* request line + headers, as counted */
    enum last_cb last;
    bool in_message;
    bool in_headers;
    bool closed;         /* a message said Connection: close; later bytes are ignored */
    bool force_close;    /* this message's framing is suspect: close after its answer */
    unsigned long begun; /* messages begun */
    bool failed;
    enum http1_error err;
};

void http1_msg_free(struct http1_msg *m)
{
    if (!m)
        return;
    free(m->target);
    buf_free(&m->body);
    memset(m, 0, sizeof *m);
}

/* The first letter first: most names differ there, and this runs a dozen
 * times per request. name is given capitalized or lower case. */
static bool name_is(const struct http1_header *h, const char *name)
{
    return (h->name[0] | 0x20) == (name[0] | 0x20) && strcasecmp(h->name, name) == 0;
}

const char *http1_msg_header(const struct http1_msg *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (name_is(&m->headers[i], name))
            return m->headers[i].value;
    return NULL;
}

static struct http1_parser *from_hp(http_parser *hp)
{
    return hp->data;
}

/* Record err and make http-parser stop (a non-zero callback return). */
static int fail(struct http1_parser *p, enum http1_error err)
{
    if (p->err == HTTP1_OK)
        p->err = err;
    return -1;
}

static int count_head(struct http1_parser *p, size_t n)
{
    p->head_bytes += n;
    if (p->head_bytes > p->lim.max_header_bytes)
        return fail(p, HTTP1_HEADERS_TOO_BIG);
    return 0;
}

/* Each piece of the head is NUL-terminated when the next one starts. */
static void head_terminate(struct http1_parser *p)
{
    buf_append(&p->head, "", 1);
}

static int cb_message_begin(http_parser *hp)
{
    struct http1_parser *p = from_hp(hp);
    http1_msg_free(&p->msg);
    buf_free(&p->head);
    p->head_bytes = 0;
    p->last = LAST_NONE;
    p->in_message = true;
    p->in_headers = true;
    p->force_close = false;
    p->begun++;
    return 0;
}

static int cb_url(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = from_hp(hp);
    size_t extra = 0;
    if (p->last == LAST_NONE) {
        extra = strlen(http_method_str((enum http_method)hp->method)) + REQUEST_LINE_OVERHEAD;
        p->last = LAST_URL;
        /* Room for a usual head at once, rather than growing it three times. */
        buf_reserve(&p->head, HEAD_INITIAL);
    }
    if (count_head(p, len + extra) < 0)
        return -1;
    buf_append(&p->head, at, len);
    p->msg.target_len += len;
    return 0;
}

static int cb_header_field(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = from_hp(hp);
    if (!p->in_headers) /* trailer fields after a chunked body: counted, not kept */
        return count_head(p, len + HEADER_OVERHEAD);
    size_t extra = 0;
    if (p->last != LAST_FIELD) {
        if (p->msg.n_headers == HTTP1_MAX_HEADERS)
            return fail(p, HTTP1_HEADERS_TOO_BIG);
        head_terminate(p);
        p->offs[p->msg.n_headers][0] = p->head.len;
        p->offs[p->msg.n_headers][1] = SIZE_MAX;
        p->msg.n_headers++;
        p->last = LAST_FIELD;
        extra = HEADER_OVERHEAD;
    }
    if (count_head(p, len + extra) < 0)
        return -1;
    buf_append(&p->head, at, len);
    return 0;
}

static int cb_header_value(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = from_hp(hp);
    if (!p->in_headers)
        return count_head(p, len);
    if (p->last != LAST_VALUE) {
        head_terminate(p);
        p->offs[p->msg.n_headers - 1][1] = p->head.len;
        p->last = LAST_VALUE;
    }
    if (count_head(p, len) < 0)
        return -1;
    buf_append(&p->head, at, len);
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* Turn the head block into the message's pointers; it no longer grows. */
static void head_finish(struct http1_parser *p)
{
    struct http1_msg *m = &p->msg;
    head_terminate(p);
    /* A field without any value callback gets the empty string at its NUL. */
    if (m->n_headers > 0 && p->offs[m->n_headers - 1][1] == SIZE_MAX)
        p->offs[m->n_headers - 1][1] = p->head.len - 1;
    char *base = p->head.data;
    m->target = base;
    p->head = (struct buf){0};
    for (size_t i = 0; i < m->n_headers; i++) {
        m->headers[i].name = base + p->offs[i][0];
        m->headers[i].value = trim(base + p->offs[i][1]);
    }
    const char *method = http_method_str((enum http_method)p->hp.method);
    size_t ml = strlen(method);
    if (ml >= sizeof m->method)
        ml = sizeof m->method - 1; /* exotic WebDAV names; never routed anyway */
    memcpy(m->method, method, ml);
    m->method[ml] = 0;
    m->http_minor = p->hp.http_minor;
}

static int cb_headers_complete(http_parser *hp)
{
    struct http1_parser *p = from_hp(hp);
    struct http1_msg *m = &p->msg;
    p->in_headers = false;
    head_finish(p);
    if (hp->upgrade || hp->method == HTTP_CONNECT || hp->http_major != 1)
        return fail(p, HTTP1_UNSUPPORTED);
    size_t hosts = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct http1_header *h = &m->headers[i];
        bool te = name_is(h, "Transfer-Encoding");
        if (name_is(h, "Host"))
            hosts++;
        /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has
         * faulty framing: answer it, then close. */
        if (hp->http_minor == 0 && te)
            p->force_close = true;
        /* Debian builds http-parser non-strict, which lets whitespace into
         * field names ("Content-Length : 5"); RFC 9112 says reject. */
        if (m->headers[i].name[0] == 0 || strpbrk(m->headers[i].name, " \t"))
            return fail(p, HTTP1_BAD_REQUEST);
        /* http-parser treats "gzip, chunked" as chunked; the body would still
         * be compressed, so accept only plain chunked. */
        if (te && strcasecmp(h->value, "chunked") != 0)
            return fail(p, HTTP1_UNSUPPORTED);
    }
    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in 1.0. */
    if (hosts > 1 || (p->lim.require_host && hosts == 0 && hp->http_minor >= 1))
        return fail(p, HTTP1_BAD_REQUEST);
    if (hp->flags & F_CONTENTLENGTH) {
        if (hp->content_length > p->lim.max_body_bytes)
            return fail(p, HTTP1_BODY_TOO_BIG);
        if (hp->content_length > 0)
            buf_reserve(&m->body, (size_t)hp->content_length);
    }
    if (p->on_headers)
        p->on_headers(p->arg, m);
    return 0;
}

static int cb_chunk_header(http_parser *hp)
{
    struct http1_parser *p = from_hp(hp);
    /* Reject an oversized chunk from its size line, before it arrives. */
    if (hp->content_length > p->lim.max_body_bytes - p->msg.body.len)
        return fail(p, HTTP1_BODY_TOO_BIG);
    return 0;
}

static int cb_body(http_parser *hp, const char *at, size_t len)
{
    struct http1_parser *p = from_hp(hp);
    if (len > p->lim.max_body_bytes - p->msg.body.len)
        return fail(p, HTTP1_BODY_TOO_BIG);
    buf_append(&p->msg.body, at, len);
    return 0;
}

static int cb_message_complete(http_parser *hp)
{
    struct http1_parser *p = from_hp(hp);
    p->msg.keep_alive = http_should_keep_alive(hp) != 0 && !p->force_close;
    p->in_message = false;
    if (!p->msg.keep_alive)
        p->closed = true;
    int rc = p->on_message(p->arg, &p->msg);
    memset(&p->msg, 0, sizeof p->msg); /* now owned by the callee */
    /* After a closing message nothing more is parsed (http-parser itself
     * only knows Connection: close, not our reasons). */
    if (rc != 0 || p->closed)
        http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
    .on_chunk_header = cb_chunk_header,
};

struct http1_parser *http1_new(const struct http1_limits *lim, http1_message_cb on_message,
                               http1_headers_cb on_headers, void *arg)
{
    struct http1_parser *p = util_calloc(1, sizeof *p);
    http_parser_init(&p->hp, HTTP_REQUEST);
    p->hp.data = p;
    p->lim = *lim;
    p->on_message = on_message;
    p->on_headers = on_headers;
    p->arg = arg;
    return p;
}

void http1_free(struct http1_parser *p)
{
    if (!p)
        return;
    http1_msg_free(&p->msg);
    buf_free(&p->head);
    free(p);
}

bool http1_idle(const struct http1_parser *p)
{
    return !p->in_message;
}

enum http1_phase http1_phase(const struct http1_parser *p)
{
    if (!p->in_message)
        return HTTP1_PHASE_IDLE;
    return p->in_headers ? HTTP1_PHASE_HEAD : HTTP1_PHASE_BODY;
}

unsigned long http1_messages_begun(const struct http1_parser *p)
{
    return p->begun;
}

static enum http1_error map_errno(enum http_errno e)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW:
        return HTTP1_HEADERS_TOO_BIG;
    case HPE_INVALID_TRANSFER_ENCODING:
        return HTTP1_UNSUPPORTED;
    default:
        return HTTP1_BAD_REQUEST;
    }
}

static long feed_fail(struct http1_parser *p, enum http1_error err, enum http1_error *out)
{
    p->failed = true;
    if (p->err == HTTP1_OK)
        p->err = err;
    *out = p->err;
    return -1;
}

long http1_feed(struct http1_parser *p, const char *data, size_t len, enum http1_error *err)
{
    *err = HTTP1_OK;
    if (p->failed) {
        *err = p->err;
        return -1;
    }
    if (len == 0) {
        /* EOF: fine between messages, a truncated request otherwise. */
        if (p->in_message)
            return feed_fail(p, HTTP1_BAD_REQUEST, err);
        return 0;
    }
    if (p->closed)
        return (long)len; /* after Connection: close nothing more is read */
    size_t n = http_parser_execute(&p->hp, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
    if (e == HPE_PAUSED) {
        http_parser_pause(&p->hp, 0);
        return p->closed ? (long)len : (long)n;
    }
    /* Bytes after a Connection: close message make http-parser report
     * HPE_CLOSED_CONNECTION; they are ignored, not an error. */
    if (p->closed)
        return (long)len;
    if (e != HPE_OK)
        return feed_fail(p, map_errno(e), err);
    return (long)n;
}

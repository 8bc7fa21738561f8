/* response: every reply leaves through here. The head is formatted into one
 * stack buffer and appended to req->out with the body; the listener later
 * writes req->out to the socket, or queues what the socket did not take.
 * Also the single place where a request's metrics and access log line are
 * recorded, so each request is counted exactly once. */
#include "response.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "route.h"
#include "twilio.h"
#include "worker.h"

/* Longest Content-Type / Twilio-Request-Id passed through; longer values
 * from upstream are dropped rather than truncated. */
#define HEADER_VALUE_MAX 256

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Payload Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {422, "Unprocessable Entity"},
    {423, "Locked"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

const char *response_reason(int status)
{
    for (size_t i = 0; i < UG_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    static const char *const by_class[] = {"Unknown",     "Informational", "Success",
                                           "Redirection", "Client Error",  "Server Error"};
    int cls = status / 100;
    return cls >= 1 && cls <= 5 ? by_class[cls] : by_class[0];
}

static const char *xcache_name(enum cache_status s)
{
    switch (s) {
    case XCACHE_HIT:
        return "HIT";
    case XCACHE_MISS:
        return "MISS";
    case XCACHE_STALE:
        return "STALE";
    case XCACHE_BYPASS:
        return "BYPASS";
    default:
        return NULL;
    }
}

/* "Date: <IMF-fixdate>\r\n" (RFC 9110), formatted by hand (strftime's names
 * follow the locale) once a second per thread. */
static const char *date_header(size_t *len)
{
    static __thread time_t sec = -1;
    static __thread char line[48];
    static __thread size_t line_len;
    time_t now = time(NULL);
    if (now != sec) {
        static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
        static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
        struct tm tm;
        gmtime_r(&now, &tm);
        int n = snprintf(line, sizeof line, "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                         days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
                         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        line_len = n > 0 ? (size_t)n : 0;
        sec = now;
    }
    *len = line_len;
    return line;
}

/* Values relayed from upstream must not be able to split the head. */
static bool header_value_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (((unsigned char)s[n] < 0x20 && s[n] != '\t') || s[n] == 0x7f)
            return false;
    return n > 0 && n <= HEADER_VALUE_MAX;
}

/* The response head, appended into a stack buffer without the printf
 * family. Every value is bounded (HEADER_VALUE_MAX, numbers), so the
 * buffer cannot overflow; put() still refuses to. */
struct head {
    char buf[1024];
    size_t len;
};

static void put(struct head *h, const char *s, size_t n)
{
    if (n > sizeof h->buf - h->len)
        n = sizeof h->buf - h->len;
    memcpy(h->buf + h->len, s, n);
    h->len += n;
}

static void puts_(struct head *h, const char *s)
{
    put(h, s, strlen(s));
}

static void put_num(struct head *h, long long v)
{
    char d[21];
    if (v < 0) {
        put(h, "-", 1);
        v = -v;
    }
    put(h, d, util_u64_digits(d, (uint64_t)v));
}

/* "Name: value\r\n" */
static void put_header(struct head *h, const char *name, const char *value)
{
    puts_(h, name);
    put(h, ": ", 2);
    puts_(h, value);
    put(h, "\r\n", 2);
}

/* logfmt value: bare when safe, else quoted with \" and \\ escaped, and
 * control bytes and bytes that are not valid UTF-8 as \xNN, so a line stays
 * one valid UTF-8 logfmt record whatever a client sent. */
static void logfmt_value(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    bool bare = n > 0 && util_utf8_valid(s, n);
    for (const char *p = s; *p && bare; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            bare = false;
    if (bare) {
        buf_append(b, s, n);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t l = p[i] >= 0x80 ? util_utf8_seq_len(p + i, n - i) : 1;
        if (p[i] == '"' || p[i] == '\\') {
            buf_append(b, "\\", 1);
            buf_append(b, p + i, 1);
        } else if (p[i] < 0x20 || p[i] == 0x7f || l == 0) {
            buf_printf(b, "\\x%02x", p[i]);
            l = 1;
        } else {
            buf_append(b, p + i, l);
        }
        i += l;
    }
    buf_append(b, "\"", 1);
}

/* The user a request named, as the access log shows it: a SID as is (not
 * PII), an identity as "h:" + its keyed SipHash (config.c finish_log_key)
 * unless log_identities is on. Identities may hold any byte, so the logfmt
 * and JSON writers escape them. */
static void user_field(const struct request *req, char *hash, size_t hashlen, const char **out)
{
    const struct route_match *m = &req->route;
    *out = NULL;
    if (m->user_len == 0 || !req->cfg)
        return;
    if (m->user_is_sid || req->cfg->log_identities) {
        *out = m->user;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t v = util_siphash(req->cfg->log_key, m->user, m->user_len);
    if (hashlen < 19)
        return;
    hash[0] = 'h';
    hash[1] = ':';
    for (int i = 17; i >= 2; i--, v >>= 4)
        hash[i] = hex[v & 15];
    hash[18] = '\0';
    *out = hash;
}

/* Deliberately limited to ids, route templates and outcomes: never the path,
 * query, body or attributes (PII), and identities only as a keyed hash. */
static void access_log(const struct request *req, int status, int64_t ms)
{
    const char *mode = req->cfg ? req->cfg->access_log : NULL;
    if ((mode && strcmp(mode, "off") == 0) || log_get_level() < LOG_INFO)
        return;
    const char *client = req->client && req->client->name ? req->client->name : "-";
    const char *method = req->msg.method[0] ? req->msg.method : "-";
    const char *cache = xcache_name(req->cache);
    if (!cache)
        cache = "-";
    const char *service = req->service[0] ? req->service : "-";
    char hash[24];
    const char *user;
    user_field(req, hash, sizeof hash, &user);
    /* One table of fields, written as JSON or logfmt by hand into the
     * worker's batch (no printf family on the hot path); every value is a
     * fixed word, a number, or escaped. */
    enum { RAW, QUOTED, TEXT, NUM }; /* QUOTED: a fixed word logfmt must quote */
    const struct {
        const char *name;
        int kind;
        const char *s;
        int64_t n;
    } fields[] = {
        {"id", NUM, NULL, (int64_t)req->id},
        {"client", TEXT, client, 0},
        {"method", RAW, method, 0},
        {"route", QUOTED, route_label(req->route.id), 0},
        {"service", RAW, service, 0},
        {"user", TEXT, user, 0},
        {"event", RAW, req->event[0] ? req->event : NULL, 0},
        {"status", NUM, NULL, status},
        {"cache", RAW, cache, 0},
        {"upstream_status", NUM, NULL, req->upstream_status},
        {"upstream_ms", NUM, NULL, req->upstream_ms},
        {"ms", NUM, NULL, ms},
    };
    bool json = mode && strcmp(mode, "json") == 0;
    struct buf *b = worker_log_lines(req->w);
    char prefix[LOG_PREFIX_MAX];
    buf_append(b, prefix, log_prefix(prefix, LOG_INFO));
    buf_puts(b, json ? "{\"msg\":\"access\"" : "access");
    for (size_t i = 0; i < UG_ARRAY_LEN(fields); i++) {
        const char *s = fields[i].s;
        bool absent = fields[i].kind != NUM && !s;
        if (absent && strcmp(fields[i].name, "event") == 0)
            continue; /* only webhook deliveries have one */
        buf_puts(b, json ? ",\"" : " ");
        buf_puts(b, fields[i].name);
        buf_puts(b, json ? "\":" : "=");
        if (fields[i].kind == NUM) {
            buf_put_i64(b, fields[i].n);
        } else if (json) {
            if (absent)
                buf_puts(b, "null");
            else
                util_json_string(b, s);
        } else if (fields[i].kind == TEXT || absent) {
            logfmt_value(b, absent ? "-" : s);
        } else if (fields[i].kind == QUOTED) {
            buf_puts(b, "\"");
            buf_puts(b, s);
            buf_puts(b, "\"");
        } else {
            buf_puts(b, s);
        }
    }
    buf_puts(b, json ? "}\n" : "\n");
    worker_log_commit(req->w);
}

static void serialize(struct request *req, int status, const struct response_meta *meta,
                      const char *body, size_t len)
{
    struct head h = {.len = 0};
    put(&h, "HTTP/1.1 ", 9);
    put_num(&h, status);
    put(&h, " ", 1);
    puts_(&h, response_reason(status));
    put(&h, "\r\n", 2);
    size_t dlen;
    const char *date = date_header(&dlen);
    put(&h, date, dlen);
    /* 1xx, 204 and 304 carry no body and (RFC 9110) no Content-Length. */
    bool bodyless = status < 200 || status == 204 || status == 304;
    if (!bodyless) {
        const char *ct = meta && meta->content_type && header_value_ok(meta->content_type)
                             ? meta->content_type
                             : "application/json";
        put_header(&h, "Content-Type", ct);
        put(&h, "Content-Length: ", 16);
        put_num(&h, (long long)len);
        put(&h, "\r\n", 2);
    }
    const char *xc = xcache_name(req->cache);
    if (xc)
        put_header(&h, "X-Cache", xc);
    if (req->cfg && req->cfg->demo)
        put_header(&h, "X-Usergate-Upstream", "demo");
    if (meta && meta->age >= 0) {
        put(&h, "Age: ", 5);
        put_num(&h, meta->age);
        put(&h, "\r\n", 2);
    }
    if (meta && meta->request_id && header_value_ok(meta->request_id))
        put_header(&h, "Twilio-Request-Id", meta->request_id);
    if (meta && meta->retry_after >= 0) {
        put(&h, "Retry-After: ", 13);
        put_num(&h, meta->retry_after);
        put(&h, "\r\n", 2);
    }
    if (req->close_after)
        put_header(&h, "Connection", "close");
    else if (req->msg.http_minor == 0)
        put_header(&h, "Connection", "keep-alive");
    put(&h, "\r\n", 2);
    if (bodyless || strcmp(req->msg.method, "HEAD") == 0)
        len = 0;
    buf_reserve(&req->out, h.len + len);
    buf_append(&req->out, h.buf, h.len);
    buf_append(&req->out, body, len);
}

void response_send(struct request *req, int status, const struct response_meta *meta,
                   const char *body, size_t len)
{
    if (req->done) {
        /* A bug in the caller; the first answer stands. */
        log_err("request %" PRIu64 ": second response (%d) ignored", req->id, status);
        return;
    }
    /* While draining, only the last request queued on a connection says
     * close, so the pipelined ones before it are still answered. */
    if (!req->msg.keep_alive || (req->w->draining && listener_request_is_last(req)))
        req->close_after = true;
    if (req->conn) /* a detached request's answer goes nowhere */
        serialize(req, status, meta, body, len);
    req->status = status;
    req->done = true;
    int64_t ms = util_now_ms() - req->start_ms;
    if (req->w->metrics)
        metrics_request(req->w->metrics, req->route.id, status, ms);
    access_log(req, status, ms);
    listener_request_done(req); /* may free req */
}

void response_error_retry(struct request *req, int status, int code, const char *message,
                          long retry_after)
{
    struct buf b = {0};
    twilio_error_json(&b, status, code, message);
    struct response_meta meta = RESPONSE_META_INIT;
    meta.retry_after = retry_after;
    response_send(req, status, &meta, b.data, b.len);
    buf_free(&b);
}

void response_error(struct request *req, int status, int code, const char *message)
{
    response_error_retry(req, status, code, message, -1);
}

/* response: every reply leaves through here. The head is formatted into one
 * stack buffer and added to req->out with the body (two evbuffer_adds); the
 * listener later moves req->out into the socket's output without copying.
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

/* IMF-fixdate (RFC 9110), formatted by hand: strftime's names follow the
 * locale. */
static void http_date(char out[80])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, 80, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
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

struct head {
    char buf[1024];
    size_t len;
};

static void head_add(struct head *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void head_add(struct head *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(h->buf + h->len, sizeof h->buf - h->len, fmt, ap);
    va_end(ap);
    /* Every value is bounded (HEADER_VALUE_MAX), so this cannot overflow. */
    if (n > 0)
        h->len += (size_t)n < sizeof h->buf - h->len ? (size_t)n : sizeof h->buf - h->len - 1;
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
    snprintf(hash, hashlen, "h:%016llx",
             (unsigned long long)util_siphash(req->cfg->log_key, m->user, m->user_len));
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
    struct buf b = {0};
    if (mode && strcmp(mode, "json") == 0) {
        buf_printf(&b, "{\"msg\":\"access\",\"id\":%" PRIu64 ",\"client\":", req->id);
        util_json_string(&b, client);
        buf_printf(&b, ",\"method\":\"%s\",\"route\":\"%s\",\"service\":\"%s\",\"user\":", method,
                   route_label(req->route.id), service);
        if (user)
            util_json_string(&b, user);
        else
            buf_puts(&b, "null");
        if (req->event[0])
            buf_printf(&b, ",\"event\":\"%s\"", req->event);
        buf_printf(&b,
                   ",\"status\":%d,\"cache\":\"%s\",\"upstream_status\":%d,\"upstream_ms\":%" PRId64
                   ",\"ms\":%" PRId64 "}",
                   status, cache, req->upstream_status, req->upstream_ms, ms);
    } else {
        buf_printf(&b, "access id=%" PRIu64 " client=", req->id);
        logfmt_value(&b, client);
        buf_printf(&b, " method=%s route=\"%s\" service=%s user=", method,
                   route_label(req->route.id), service);
        logfmt_value(&b, user ? user : "-");
        if (req->event[0])
            buf_printf(&b, " event=%s", req->event);
        buf_printf(&b, " status=%d cache=%s upstream_status=%d upstream_ms=%" PRId64 " ms=%" PRId64,
                   status, cache, req->upstream_status, req->upstream_ms, ms);
    }
    log_msg(LOG_INFO, "%s", b.data);
    buf_free(&b);
}

static void serialize(struct request *req, int status, const struct response_meta *meta,
                      const char *body, size_t len)
{
    struct head h = {.len = 0};
    char date[80];
    http_date(date);
    head_add(&h, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status, response_reason(status), date);
    /* 1xx, 204 and 304 carry no body and (RFC 9110) no Content-Length. */
    bool bodyless = status < 200 || status == 204 || status == 304;
    if (!bodyless) {
        const char *ct = meta && meta->content_type && header_value_ok(meta->content_type)
                             ? meta->content_type
                             : "application/json";
        head_add(&h, "Content-Type: %s\r\nContent-Length: %zu\r\n", ct, len);
    }
    const char *xc = xcache_name(req->cache);
    if (xc)
        head_add(&h, "X-Cache: %s\r\n", xc);
    if (meta && meta->age >= 0)
        head_add(&h, "Age: %ld\r\n", meta->age);
    if (meta && meta->request_id && header_value_ok(meta->request_id))
        head_add(&h, "Twilio-Request-Id: %s\r\n", meta->request_id);
    if (meta && meta->retry_after >= 0)
        head_add(&h, "Retry-After: %ld\r\n", meta->retry_after);
    if (req->close_after)
        head_add(&h, "Connection: close\r\n");
    else if (req->msg.http_minor == 0)
        head_add(&h, "Connection: keep-alive\r\n");
    head_add(&h, "\r\n");
    evbuffer_add(req->out, h.buf, h.len);
    if (!bodyless && len > 0 && strcmp(req->msg.method, "HEAD") != 0)
        evbuffer_add(req->out, body, len);
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

/* stat: see stat.h. */
#include "stat.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- parsing */

/* The value of label `name` in a label block {a="x",b="y"}, copied to out
 * (escapes kept as-is: route templates and results have none). */
static bool label(const char *labels, size_t n, const char *name, char *out, size_t outlen)
{
    size_t k = strlen(name);
    for (size_t i = 0; i + k + 2 <= n; i++) {
        if ((i == 0 || labels[i - 1] == ',' || labels[i - 1] == '{') &&
            memcmp(labels + i, name, k) == 0 && labels[i + k] == '=' && labels[i + k + 1] == '"') {
            size_t j = i + k + 2, o = 0;
            while (j < n && labels[j] != '"' && o + 1 < outlen) {
                if (labels[j] == '\\' && j + 1 < n)
                    j++;
                out[o++] = labels[j++];
            }
            out[o] = '\0';
            return true;
        }
    }
    return false;
}

static struct stat_route *route_of(struct stat_sample *s, const char *name)
{
    for (int i = 0; i < s->n_routes; i++)
        if (strcmp(s->routes[i].name, name) == 0)
            return &s->routes[i];
    if (s->n_routes == STAT_MAX_ROUTES)
        return NULL;
    struct stat_route *r = &s->routes[s->n_routes++];
    snprintf(r->name, sizeof r->name, "%s", name);
    return r;
}

static void add_bucket(struct stat_sample *s, double le, double v)
{
    for (int i = 0; i < s->n_buckets; i++) {
        if (s->le[i] == le) {
            s->bucket[i] += v;
            return;
        }
    }
    if (s->n_buckets == STAT_MAX_BUCKETS)
        return;
    int i = s->n_buckets++;
    /* keep them sorted by le */
    while (i > 0 && s->le[i - 1] > le) {
        s->le[i] = s->le[i - 1];
        s->bucket[i] = s->bucket[i - 1];
        i--;
    }
    s->le[i] = le;
    s->bucket[i] = v;
}

static bool is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

static void sample_line(struct stat_sample *s, const char *line, size_t n)
{
    size_t i = 0;
    while (i < n && line[i] != '{' && line[i] != ' ')
        i++;
    const char *name = line;
    size_t name_len = i;
    const char *labels = "";
    size_t labels_len = 0;
    if (i < n && line[i] == '{') {
        /* the closing brace outside quotes: route templates hold braces */
        size_t j = i + 1;
        bool quoted = false;
        for (; j < n && (quoted || line[j] != '}'); j++) {
            if (line[j] == '\\' && quoted)
                j++;
            else if (line[j] == '"')
                quoted = !quoted;
        }
        if (j >= n)
            return;
        labels = line + i;
        labels_len = j - i + 1;
        i = j + 1;
    }
    char num[64];
    while (i < n && line[i] == ' ')
        i++;
    size_t j = 0;
    while (i < n && line[i] != ' ' && j + 1 < sizeof num)
        num[j++] = line[i++];
    num[j] = '\0';
    char *end;
    double v = strtod(num, &end);
    if (end == num)
        return;
    char a[96], b[32];
    if (is(name, name_len, "usergate_requests_total")) {
        s->requests += v;
        if (label(labels, labels_len, "code", b, sizeof b) && b[0] == '5')
            s->errors_5xx += v;
        struct stat_route *r =
            label(labels, labels_len, "route", a, sizeof a) ? route_of(s, a) : NULL;
        if (r)
            r->requests += v;
    } else if (is(name, name_len, "usergate_cache_lookups_total")) {
        struct stat_route *r =
            label(labels, labels_len, "route", a, sizeof a) ? route_of(s, a) : NULL;
        if (!r || !label(labels, labels_len, "result", b, sizeof b))
            return;
        if (strcmp(b, "hit") == 0 || strcmp(b, "negative_hit") == 0 || strcmp(b, "stale") == 0)
            r->hits += v;
        else if (strcmp(b, "miss") == 0)
            r->misses += v;
    } else if (is(name, name_len, "usergate_upstream_requests_total")) {
        s->upstream_requests += v;
        if (label(labels, labels_len, "code", b, sizeof b) && (b[0] == '5' || b[0] == 'e'))
            s->upstream_errors += v;
    } else if (is(name, name_len, "usergate_upstream_duration_seconds_bucket")) {
        if (label(labels, labels_len, "le", b, sizeof b))
            add_bucket(s, strcmp(b, "+Inf") == 0 ? INFINITY : strtod(b, NULL), v);
    } else if (is(name, name_len, "usergate_upstream_throttled_total")) {
        s->throttled_in += v;
    } else if (is(name, name_len, "usergate_client_throttled_total")) {
        s->throttled_out += v;
    } else if (is(name, name_len, "usergate_upstream_retries_total")) {
        s->retries += v;
    } else if (is(name, name_len, "usergate_upstream_pace_refused_total")) {
        s->paced_refused += v;
    } else if (is(name, name_len, "usergate_redis_up")) {
        s->redis_up = v;
        s->has_redis_up = true;
    } else if (is(name, name_len, "usergate_redis_breaker_open")) {
        s->breaker_open = v;
    } else if (is(name, name_len, "usergate_redis_errors_total")) {
        s->redis_errors += v;
    } else if (is(name, name_len, "usergate_upstream_inflight")) {
        s->inflight = v;
    } else if (is(name, name_len, "usergate_upstream_queue_depth")) {
        s->queue = v;
    } else if (is(name, name_len, "usergate_connections")) {
        s->connections = v;
    }
}

int stat_parse(const char *text, size_t len, struct stat_sample *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        if (n > 0 && text[i] != '#')
            sample_line(out, text + i, n);
        i += n + 1;
    }
    return out->has_redis_up ? 0 : -1;
}

/* ---- derived numbers */

double stat_quantile(const struct stat_sample *prev, const struct stat_sample *cur, double q)
{
    int n = cur->n_buckets;
    if (n == 0)
        return -1;
    double cum[STAT_MAX_BUCKETS] = {0};
    for (int i = 0; i < n; i++) {
        cum[i] = cur->bucket[i];
        for (int k = 0; prev && k < prev->n_buckets; k++)
            if (prev->le[k] == cur->le[i])
                cum[i] -= prev->bucket[k];
    }
    double total = cum[n - 1];
    if (total <= 0)
        return -1;
    double rank = q * total;
    for (int i = 0; i < n; i++) {
        if (cum[i] >= rank) {
            if (isinf(cur->le[i]))
                return i > 0 ? cur->le[i - 1] : 0; /* above the last bound */
            double lo = i > 0 ? cur->le[i - 1] : 0, below = i > 0 ? cum[i - 1] : 0;
            double in = cum[i] - below;
            return in > 0 ? lo + (cur->le[i] - lo) * (rank - below) / in : cur->le[i];
        }
    }
    return cur->le[n - 1];
}

static double rate(double prev, double cur, double seconds)
{
    return seconds > 0 && cur >= prev ? (cur - prev) / seconds : 0;
}

static void put_ms(struct buf *out, const char *label_text, double secs)
{
    if (secs < 0)
        buf_printf(out, "  %s     -", label_text);
    else
        buf_printf(out, "  %s %5.0f ms", label_text, secs * 1000);
}

void stat_render(struct buf *out, const char *source, const struct stat_sample *prev,
                 const struct stat_sample *cur, double seconds)
{
    static const struct stat_sample zero;
    const struct stat_sample *p = prev ? prev : &zero;
    double dt = prev ? seconds : 0;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
    buf_printf(out, "usergate  %s  %s  (rates over %.1f s)\n\n", source, when, seconds);
    buf_printf(out, "requests     %9.1f/s   5xx %7.1f/s   total %.0f\n",
               rate(p->requests, cur->requests, dt), rate(p->errors_5xx, cur->errors_5xx, dt),
               cur->requests);
    buf_printf(out, "upstream     %9.1f/s   errors %4.1f/s   retries %.1f/s",
               rate(p->upstream_requests, cur->upstream_requests, dt),
               rate(p->upstream_errors, cur->upstream_errors, dt),
               rate(p->retries, cur->retries, dt));
    /* no upstream requests in the interval: the picture since start */
    const struct stat_sample *base = stat_quantile(prev, cur, 0.5) >= 0 ? prev : NULL;
    buf_puts(out, base || !prev ? "\n  latency" : "\n  latency (since start)");
    put_ms(out, "p50", stat_quantile(base, cur, 0.5));
    put_ms(out, "p90", stat_quantile(base, cur, 0.9));
    put_ms(out, "p99", stat_quantile(base, cur, 0.99));
    buf_printf(out, "\n  in flight %.0f   queued %.0f\n", cur->inflight, cur->queue);
    buf_printf(out, "429s         from Twilio %.1f/s   to clients %.1f/s   paced away %.1f/s\n",
               rate(p->throttled_in, cur->throttled_in, dt),
               rate(p->throttled_out, cur->throttled_out, dt),
               rate(p->paced_refused, cur->paced_refused, dt));
    buf_printf(out, "redis        %s   breaker %s   errors %.1f/s\n",
               cur->redis_up >= 1 ? "up" : "DOWN", cur->breaker_open > 0 ? "OPEN" : "closed",
               rate(p->redis_errors, cur->redis_errors, dt));
    buf_printf(out, "connections  %.0f\n\n", cur->connections);
    buf_printf(out, "%-44s %10s %10s\n", "route", "req/s", "hit ratio");
    for (int i = 0; i < cur->n_routes; i++) {
        const struct stat_route *r = &cur->routes[i];
        const struct stat_route *pr = NULL;
        for (int k = 0; prev && k < prev->n_routes; k++)
            if (strcmp(prev->routes[k].name, r->name) == 0)
                pr = &prev->routes[k];
        double h = r->hits - (pr ? pr->hits : 0), m = r->misses - (pr ? pr->misses : 0);
        if (!prev || h + m <= 0) { /* nothing looked up lately: since start */
            h = r->hits;
            m = r->misses;
        }
        buf_printf(out, "%-44s %10.1f ", r->name, rate(pr ? pr->requests : 0, r->requests, dt));
        if (h + m > 0)
            buf_printf(out, "%9.1f%%\n", 100 * h / (h + m));
        else
            buf_puts(out, "         -\n");
    }
}

/* ---- I/O: scrape /metrics with libevent's HTTP client, on a timer */

struct view {
    struct event_base *base;
    struct evhttp_connection *conn;
    struct event *timer, *sig_int, *sig_term;
    const char *url, *host, *path;
    bool once, tty, have_prev;
    double seconds;
    struct stat_sample samples[2];
    int cur; /* samples[cur] is the latest */
    int rc;
};

static void stop(struct view *v, int rc)
{
    v->rc = rc;
    event_base_loopexit(v->base, NULL);
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct view *v = arg;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    int next = v->have_prev ? 1 - v->cur : v->cur;
    int ok = -1;
    if (status == 200) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t n = evbuffer_get_length(in);
        const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        ok = stat_parse(p ? p : "", n, &v->samples[next]);
    }
    if (ok < 0) {
        if (status == 0)
            fprintf(stderr, "usergate -s: no answer from %s%s\n", v->url, v->path);
        else
            fprintf(stderr, "usergate -s: %s%s: HTTP %d, or not usergate metrics\n", v->url,
                    v->path, status);
        stop(v, 1);
        return;
    }
    if (!v->have_prev) { /* the first scrape only sets the baseline */
        v->have_prev = true;
        return;
    }
    struct buf screen = {0};
    if (v->tty && !v->once)
        buf_puts(&screen, "\033[H\033[2J");
    stat_render(&screen, v->url, &v->samples[v->cur], &v->samples[next], v->seconds);
    fwrite(screen.data, 1, screen.len, stdout);
    fflush(stdout);
    buf_free(&screen);
    v->cur = next;
    if (v->once)
        stop(v, 0);
}

static void scrape(struct view *v)
{
    struct evhttp_request *req = evhttp_request_new(on_response, v);
    if (!req) {
        stop(v, 1);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", v->host);
    if (evhttp_make_request(v->conn, req, EVHTTP_REQ_GET, v->path) != 0)
        stop(v, 1); /* libevent freed req */
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    scrape(arg);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    stop(arg, 0);
}

int stat_run(const char *url, bool once, long interval_ms)
{
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    const char *host = uri ? evhttp_uri_get_host(uri) : NULL;
    const char *scheme = uri ? evhttp_uri_get_scheme(uri) : NULL;
    if (!host || !scheme || strcmp(scheme, "http") != 0) {
        fprintf(stderr, "usergate -s: %s: expected http://HOST:PORT of the admin listener\n", url);
        if (uri)
            evhttp_uri_free(uri);
        return 2;
    }
    const char *path = evhttp_uri_get_path(uri);
    int port = evhttp_uri_get_port(uri) > 0 ? evhttp_uri_get_port(uri) : 80;
    char base_url[300];
    snprintf(base_url, sizeof base_url, "http://%s:%d", host, port);
    struct view v = {.url = base_url,
                     .host = host,
                     .path = path && strlen(path) > 1 ? path : "/metrics",
                     .once = once,
                     .tty = isatty(STDOUT_FILENO),
                     .seconds = (double)interval_ms / 1000.0,
                     .rc = 1};
    v.base = event_base_new();
    if (v.base) {
        v.conn = evhttp_connection_base_new(v.base, NULL, host, (ev_uint16_t)port);
        v.timer = event_new(v.base, -1, EV_PERSIST, on_timer, &v);
        v.sig_int = evsignal_new(v.base, SIGINT, on_signal, &v);
        v.sig_term = evsignal_new(v.base, SIGTERM, on_signal, &v);
    }
    if (!v.conn || !v.timer || !v.sig_int || !v.sig_term) {
        fprintf(stderr, "usergate -s: cannot set up an HTTP client\n");
    } else {
        evhttp_connection_set_timeout(v.conn, 3);
        struct timeval tv = {interval_ms / 1000, (interval_ms % 1000) * 1000};
        event_add(v.timer, &tv);
        evsignal_add(v.sig_int, NULL);
        evsignal_add(v.sig_term, NULL);
        scrape(&v); /* the baseline; the timer takes the next ones */
        event_base_dispatch(v.base);
    }
    struct event *evs[] = {v.timer, v.sig_int, v.sig_term};
    for (size_t i = 0; i < UG_ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    if (v.conn)
        evhttp_connection_free(v.conn);
    if (v.base)
        event_base_free(v.base);
    evhttp_uri_free(uri);
    return v.rc;
}

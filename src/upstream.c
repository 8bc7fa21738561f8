/* upstream: libcurl glue for outgoing calls to Twilio, and the only file that
 * includes curl. Each worker owns one multi handle driven by its event base
 * (curl's hiperfifo.c pattern): curl tells us which sockets to watch and when
 * to wake it, libevent tells curl what happened. Completions are delivered from
 * loop callbacks only, so a caller never sees its callback run inside
 * upstream_start or upstream_cancel. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "config.h"
#include "upstream.h"
#include "util.h"

/* The autoconf header cannot be included by name here (src/config.h shadows
 * it), so the version arrives through DEFS or falls back. */
#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif

#define UPSTREAM_MAX_BODY (4u * 1024 * 1024) /* a user object is a few KB */
#define UPSTREAM_MAXCONNECTS 64L
#define UPSTREAM_FREE_EASIES 16 /* idle easy handles kept for reuse */
/* Retry back-off: full jitter over an exponential window (AWS's "Exponential
 * Backoff And Jitter"), so clients that failed together do not come back
 * together. An attempt is only started with at least RETRY_MIN_LEFT_MS of the
 * request's deadline left. */
#define RETRY_BASE_MS 100
#define RETRY_CAP_MS 2000
#define RETRY_MIN_LEFT_MS 100

/* One watched socket: curl owns the fd, we own the event (curl_multi_assign). */
struct usock {
    struct upstream *u;
    struct event *ev;
    curl_socket_t fd;
    struct usock *prev, *next;
};

enum call_state {
    CALL_QUEUED,    /* set up, waiting in u->queue for an in-flight slot */
    CALL_RUNNING,   /* attached to the multi */
    CALL_FINISHED,  /* off the multi, in check_multi_info's batch, callback not yet run */
    CALL_PENDING,   /* cancelled, waiting in u->pending for its deferred callback */
    CALL_DELIVERED, /* callback running or done: the handle is dead */
    CALL_WAITING    /* holding no slot: a pacing delay or a retry back-off on c->timer */
};

struct upstream_call {
    struct upstream *u;
    CURL *easy;
    struct curl_slist *headers;
    upstream_cb cb;
    void *arg;
    enum call_state state;
    bool sent;      /* curl got as far as sending the request */
    bool too_large; /* body cap hit: the write callback aborted the transfer */
    int64_t start_ms;
    int64_t queue_deadline_ms;
    int64_t deadline_ms; /* start + timeout_ms: no attempt starts past it */
    bool idempotent;     /* GET: may be retried after reaching Twilio */
    int max_retries;
    struct event *timer; /* CALL_WAITING; created on first use */
    struct upstream_response resp;
    char errbuf[CURL_ERROR_SIZE];
    struct upstream_call *prev, *next; /* u->calls, u->pending or a finished batch */
};

struct upstream {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;   /* curl's single timeout */
    struct event *deliver; /* runs deferred (cancelled) callbacks */
    struct upstream_call *calls;
    struct upstream_call *waiting; /* CALL_WAITING */
    struct upstream_call *pending, *pending_tail;
    struct usock *socks;
    size_t inflight;
    /* Calls waiting for a slot, oldest first; polled by queue_timer because a
     * slot may be freed by another worker. */
    struct upstream_call *queue, *queue_tail;
    size_t queued;
    struct event *queue_timer;
    struct upstream_limits own_limits, *limits;
    long max_inflight, queue_size, queue_timeout_ms;
    bool closing;
    CURL *free_easy[UPSTREAM_FREE_EASIES];
    size_t n_free_easy;
};

static void queue_pump(struct upstream *u);

/* ---- small lists ---- */

static void call_unlink(struct upstream_call **head, struct upstream_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_push(struct upstream_call **head, struct upstream_call *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

/* ---- easy handle pool ---- */

static CURL *easy_get(struct upstream *u)
{
    if (u->n_free_easy)
        return u->free_easy[--u->n_free_easy];
    return curl_easy_init();
}

/* Reset at once so the copied credentials do not linger in an idle handle. */
static void easy_put(struct upstream *u, CURL *e)
{
    if (!e)
        return;
    if (u->n_free_easy < UPSTREAM_FREE_EASIES && !u->closing) {
        curl_easy_reset(e);
        u->free_easy[u->n_free_easy++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void call_free(struct upstream_call *c)
{
    if (c->timer)
        event_free(c->timer);
    easy_put(c->u, c->easy);
    curl_slist_free_all(c->headers);
    buf_free(&c->resp.body);
    free(c);
}

/* Runs the callback exactly once, then frees: the callback may start or cancel
 * other calls, but this one is dead as soon as it returns. */
static void call_deliver(struct upstream_call *c)
{
    c->state = CALL_DELIVERED;
    if (c->resp.outcome != UPSTREAM_OK) {
        c->resp.status = 0;
        buf_free(&c->resp.body); /* a partial body means nothing */
    }
    if (c->resp.outcome == UPSTREAM_CANCELLED && !c->resp.error[0])
        snprintf(c->resp.error, sizeof c->resp.error, "cancelled");
    c->resp.duration_ms = util_now_ms() - c->start_ms;
    c->cb(c->arg, &c->resp);
    call_free(c);
}

/* Take a running call off the multi (and off the in-flight count). */
static void call_detach(struct upstream_call *c)
{
    struct upstream *u = c->u;
    call_unlink(&u->calls, c);
    curl_multi_remove_handle(u->multi, c->easy);
    u->inflight--;
    __atomic_fetch_sub(&u->limits->inflight, 1, __ATOMIC_ACQ_REL);
}

/* ---- outcome ---- */

static bool is_connect_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_OPERATION_TIMEDOUT:
        return true;
    default:
        return false;
    }
}

/* Only a call that provably never sent its request may be CONNECT_FAIL: the
 * router retries writes on that outcome, so erring towards TIMEOUT/ERROR is the
 * safe direction. */
static bool never_sent(struct upstream_call *c)
{
#if LIBCURL_VERSION_NUM >= 0x075000
    return !c->sent;
#else
    curl_off_t pre = 0;
    if (curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK)
        return false;
    return pre == 0;
#endif
}

static void classify(struct upstream_call *c, CURLcode rc)
{
    struct upstream_response *r = &c->resp;
    if (rc == CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
        r->outcome = UPSTREAM_OK;
        r->status = (int)code;
        r->error[0] = '\0';
        if (code == 429)
            r->throttled++;
        return;
    }
    if (is_connect_error(rc) && never_sent(c))
        r->outcome = UPSTREAM_CONNECT_FAIL;
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        r->outcome = UPSTREAM_TIMEOUT;
    else
        r->outcome = UPSTREAM_ERROR;
    if (c->too_large)
        snprintf(r->error, sizeof r->error, "response body larger than %u bytes",
                 UPSTREAM_MAX_BODY);
    else
        snprintf(r->error, sizeof r->error, "%s",
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
}

static void call_wait(struct upstream *u, struct upstream_call *c, int64_t ms);

/* Whether this outcome may be retried: a request that never left, always;
 * one that reached Twilio only if it is a GET and Twilio failed (5xx, 429)
 * or the connection broke. A timeout leaves no deadline to retry in. */
static bool retryable(const struct upstream_call *c)
{
    const struct upstream_response *r = &c->resp;
    if (r->outcome == UPSTREAM_CONNECT_FAIL)
        return true;
    if (!c->idempotent || c->too_large)
        return false;
    return r->outcome == UPSTREAM_ERROR ||
           (r->outcome == UPSTREAM_OK && (r->status >= 500 || r->status == 429));
}

/* Schedule another attempt if one is allowed and fits the deadline: Twilio's
 * Retry-After when it sent one, else full jitter. The call holds no slot
 * while it waits. */
static bool retry_later(struct upstream *u, struct upstream_call *c)
{
    if (u->closing || c->resp.retries >= c->max_retries || !retryable(c))
        return false;
    int64_t delay;
    if (c->resp.retry_after >= 0) {
        delay = (int64_t)c->resp.retry_after * 1000;
    } else {
        int shift = c->resp.retries < 10 ? c->resp.retries : 10;
        int64_t window = (int64_t)RETRY_BASE_MS << shift;
        delay = (int64_t)util_random_below(
            (uint64_t)(window < RETRY_CAP_MS ? window : RETRY_CAP_MS) + 1);
    }
    if (util_now_ms() + delay + RETRY_MIN_LEFT_MS > c->deadline_ms)
        return false;
    c->resp.retries++;
    /* Forget this attempt; the next one's answer replaces it. */
    struct upstream_response *r = &c->resp;
    r->status = 0;
    buf_reset(&r->body);
    r->content_type[0] = r->request_id[0] = r->error[0] = '\0';
    r->retry_after = -1;
    c->errbuf[0] = '\0';
    c->sent = false;
    call_wait(u, c, delay);
    return true;
}

/* Drain curl's finished transfers. All of them are taken off the multi before
 * any callback runs, so a callback that starts or cancels calls cannot meet a
 * stale message of a handle that was already recycled. Callbacks run here,
 * from a loop event, after curl returned. */
static void check_multi_info(struct upstream *u)
{
    struct upstream_call *done = NULL, **tail = &done;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        struct upstream_call *c = (struct upstream_call *)(void *)priv;
        if (!c || c->state != CALL_RUNNING)
            continue;
        classify(c, rc);
        call_detach(c);
        if (retry_later(u, c))
            continue;
        c->state = CALL_FINISHED;
        *tail = c;
        tail = &c->next;
    }
    struct upstream_call *c;
    while ((c = done)) {
        done = c->next;
        c->next = NULL;
        call_deliver(c);
    }
    queue_pump(u); /* slots were freed */
}

/* ---- libevent <-> curl ---- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(u->multi, fd, action, &running);
    check_multi_info(u);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(u);
}

static void usock_free(struct upstream *u, struct usock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        u->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct upstream *u = userp;
    struct usock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            usock_free(u, s); /* curl forgets the socketp itself */
        return 0;
    }
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!s) {
        s = util_calloc(1, sizeof *s);
        s->u = u;
        s->fd = fd;
        s->ev = event_new(u->base, fd, kind, on_socket_event, u);
        if (!s->ev) {
            free(s);
            return -1;
        }
        s->next = u->socks;
        if (u->socks)
            u->socks->prev = s;
        u->socks = s;
        curl_multi_assign(u->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, u->base, fd, kind, on_socket_event, u);
    }
    return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

/* timeout 0 still goes through the loop: curl forbids re-entering
 * socket_action from its own callback. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream *u = userp;
    if (timeout_ms < 0)
        return evtimer_del(u->timer) == 0 ? 0 : -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(u->timer, &tv) == 0 ? 0 : -1;
}

static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    struct upstream *u = arg;
    struct upstream_call *c;
    while ((c = u->pending)) {
        u->pending = c->next;
        if (u->pending)
            u->pending->prev = NULL;
        else
            u->pending_tail = NULL;
        c->next = c->prev = NULL;
        call_deliver(c);
    }
}

/* ---- curl data callbacks (they only touch the call's own response) ---- */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct upstream_call *c = userdata;
    size_t n = size * nmemb;
    if (c->resp.body.len + n > UPSTREAM_MAX_BODY) {
        c->too_large = true;
        return 0; /* CURLE_WRITE_ERROR */
    }
    buf_append(&c->resp.body, ptr, n);
    return n;
}

/* Copy a header value, trimmed; values with control characters are dropped
 * rather than passed on towards clients. */
static void copy_value(char *dst, size_t dstlen, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            dst[0] = '\0';
            return;
        }
    }
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static bool header_is(const char *line, size_t n, const char *name, size_t *vstart)
{
    size_t k = strlen(name);
    if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return false;
    *vstart = k + 1;
    return true;
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *userdata)
{
    struct upstream_call *c = userdata;
    struct upstream_response *r = &c->resp;
    size_t n = size * nitems, v;
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget the previous one's headers. */
        r->content_type[0] = r->request_id[0] = '\0';
        r->retry_after = -1;
    } else if (header_is(line, n, "Content-Type", &v)) {
        copy_value(r->content_type, sizeof r->content_type, line + v, n - v);
    } else if (header_is(line, n, "Twilio-Request-Id", &v)) {
        copy_value(r->request_id, sizeof r->request_id, line + v, n - v);
    } else if (header_is(line, n, "Retry-After", &v)) {
        char tmp[32];
        long secs;
        copy_value(tmp, sizeof tmp, line + v, n - v);
        /* delta-seconds only; an HTTP-date is left as "absent" */
        r->retry_after = util_parse_long(tmp, 0, 86400L * 365, &secs) ? secs : -1;
    }
    return n;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Called right before the request goes out on a (new or reused) connection. */
static int prereq_cb(void *clientp, char *primary_ip, char *local_ip, int primary_port,
                     int local_port)
{
    struct upstream_call *c = clientp;
    c->sent = true;
    return CURL_PREREQFUNC_OK;
}
#endif

/* ---- in-flight limit and queue ---- */

/* Take a process-wide slot if one is free. */
static bool slot_take(struct upstream *u)
{
    long cur = __atomic_load_n(&u->limits->inflight, __ATOMIC_ACQUIRE);
    while (cur < u->max_inflight)
        if (__atomic_compare_exchange_n(&u->limits->inflight, &cur, cur + 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return true;
    return false;
}

static void queue_remove(struct upstream *u, struct upstream_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        u->queue = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        u->queue_tail = c->prev;
    c->prev = c->next = NULL;
    u->queued--;
    __atomic_fetch_sub(&u->limits->queued, 1, __ATOMIC_ACQ_REL);
}

/* Deliver a call that never reached the multi from the loop (never inside
 * the API call that decided it). */
static void defer_delivery(struct upstream *u, struct upstream_call *c, enum upstream_outcome o)
{
    c->state = CALL_PENDING;
    c->resp.outcome = o;
    c->prev = u->pending_tail;
    c->next = NULL;
    if (u->pending_tail)
        u->pending_tail->next = c;
    else
        u->pending = c;
    u->pending_tail = c;
    event_active(u->deliver, EV_TIMEOUT, 0);
}

static int call_run(struct upstream *u, struct upstream_call *c)
{
    /* The first attempt has timeout_ms; a retry what is left of it. */
    if (c->resp.retries > 0) {
        int64_t left = c->deadline_ms - util_now_ms();
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
    }
    if (curl_multi_add_handle(u->multi, c->easy) != CURLM_OK) {
        __atomic_fetch_sub(&u->limits->inflight, 1, __ATOMIC_ACQ_REL);
        return -1;
    }
    c->state = CALL_RUNNING;
    call_push(&u->calls, c);
    u->inflight++;
    return 0;
}

/* Start queued calls while slots are free; expire those waited too long. */
static void queue_pump(struct upstream *u)
{
    int64_t now = util_now_ms();
    struct upstream_call *c;
    while ((c = u->queue)) {
        if (now >= c->queue_deadline_ms) {
            queue_remove(u, c);
            snprintf(c->resp.error, sizeof c->resp.error, "queued longer than %ld ms",
                     u->queue_timeout_ms);
            c->resp.retry_after = 1;
            defer_delivery(u, c, UPSTREAM_REJECTED);
            continue;
        }
        if (!slot_take(u))
            break;
        queue_remove(u, c);
        if (call_run(u, c) < 0)
            defer_delivery(u, c, UPSTREAM_ERROR);
    }
    if (u->queue) {
        struct timeval tv = {0, 5 * 1000};
        evtimer_add(u->queue_timer, &tv);
    }
}

static void on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    queue_pump(arg);
}

void upstream_set_limits(struct upstream *u, struct upstream_limits *limits)
{
    u->limits = limits ? limits : &u->own_limits;
}

size_t upstream_queued(const struct upstream *u)
{
    return u ? u->queued : 0;
}

/* ---- public ---- */

struct upstream *upstream_new(struct event_base *base)
{
    struct upstream *u = util_calloc(1, sizeof *u);
    u->base = base;
    u->multi = curl_multi_init();
    u->timer = evtimer_new(base, on_timer, u);
    u->deliver = event_new(base, -1, 0, on_deliver, u);
    u->queue_timer = evtimer_new(base, on_queue_timer, u);
    u->limits = &u->own_limits;
    if (!u->multi || !u->timer || !u->deliver || !u->queue_timer) {
        upstream_free(u);
        return NULL;
    }
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, UPSTREAM_MAXCONNECTS);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return u;
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    u->closing = true;
    struct upstream_call *c;
    while ((c = u->calls)) {
        call_detach(c);
        c->resp.outcome = UPSTREAM_CANCELLED;
        call_deliver(c);
    }
    while ((c = u->queue)) {
        queue_remove(u, c);
        c->resp.outcome = UPSTREAM_CANCELLED;
        call_deliver(c);
    }
    while ((c = u->waiting)) {
        event_del(c->timer);
        call_unlink(&u->waiting, c);
        c->resp.outcome = UPSTREAM_CANCELLED;
        call_deliver(c);
    }
    on_deliver(-1, 0, u);
    if (u->multi)
        curl_multi_cleanup(u->multi); /* may still report sockets as removed */
    while (u->socks)
        usock_free(u, u->socks);
    for (size_t i = 0; i < u->n_free_easy; i++)
        curl_easy_cleanup(u->free_easy[i]);
    if (u->timer)
        event_free(u->timer);
    if (u->deliver)
        event_free(u->deliver);
    if (u->queue_timer)
        event_free(u->queue_timer);
    free(u);
}

static bool header_value_ok(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return false;
    return true;
}

static int call_setup(struct upstream_call *c, const struct config *cfg,
                      const struct upstream_request *req)
{
    CURL *e = c->easy;
    bool post = strcmp(req->method, "POST") == 0;
    bool del = strcmp(req->method, "DELETE") == 0;
    if (!post && !del && strcmp(req->method, "GET") != 0)
        return -1;
    if (req->webhook_enabled && !header_value_ok(req->webhook_enabled))
        return -1;

    struct curl_slist *h = NULL, *t;
    /* "Expect:" drops curl's 100-continue wait before a POST body. */
    static const char *const fixed[] = {"Accept: application/json", "Expect:"};
    for (size_t i = 0; i < UG_ARRAY_LEN(fixed); i++) {
        if (!(t = curl_slist_append(h, fixed[i])))
            goto fail;
        h = t;
    }
    if (post) {
        if (!(t = curl_slist_append(h, "Content-Type: application/x-www-form-urlencoded")))
            goto fail;
        h = t;
    }
    if (req->webhook_enabled) {
        char line[128];
        snprintf(line, sizeof line, "X-Twilio-Webhook-Enabled: %s", req->webhook_enabled);
        if (!(t = curl_slist_append(h, line)))
            goto fail;
        h = t;
    }
    c->headers = h;

    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_PRIVATE, (void *)c);
    SET(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* The path was built from the route table and is sent byte for byte:
     * curl must never squash a dot segment into another resource. */
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* A burst shares one h2 connection instead of opening many. Only for
     * https: plain http never multiplexes, and waiting would only queue a
     * burst behind the first response. */
    if (strncasecmp(req->url, "https://", 8) == 0)
        SET(CURLOPT_PIPEWAIT, 1L);
    /* curl silently re-sends a request whose reused connection died before
     * any answer: right for a GET, wrong for a write that may have reached
     * Twilio. On a fresh connection that resend never happens, so a write
     * goes out exactly once unless it provably never left (CONNECT_FAIL). */
    if (!req->idempotent)
        SET(CURLOPT_FRESH_CONNECT, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, cfg->timeout_ms);
    if (cfg->ca_file && cfg->ca_file[0])
        SET(CURLOPT_CAINFO, cfg->ca_file);
    if (cfg->auth_user) {
        /* curl copies string options, so cfg may go away after this call */
        SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET(CURLOPT_USERNAME, cfg->auth_user);
        SET(CURLOPT_PASSWORD, cfg->auth_secret ? cfg->auth_secret : "");
    }
    SET(CURLOPT_USERAGENT, "usergate/" PACKAGE_VERSION);
    SET(CURLOPT_HTTPHEADER, c->headers);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, (void *)c);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, (void *)c);
#if LIBCURL_VERSION_NUM >= 0x075000
    SET(CURLOPT_PREREQFUNCTION, prereq_cb);
    SET(CURLOPT_PREREQDATA, (void *)c);
#endif
    if (post) {
        /* POSTFIELDS is the one string curl does not copy; COPYPOSTFIELDS does. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    } else if (del) {
        SET(CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    return rc == CURLE_OK ? 0 : -1;
fail:
    curl_slist_free_all(h);
    return -1;
}

/* Run the call now if a slot is free and nobody queues before it, else queue
 * it if the process-wide queue has room, else refuse it. -1 only when curl
 * refused the handle (nothing delivered). */
static int call_admit(struct upstream *u, struct upstream_call *c)
{
    if (!u->queue && slot_take(u)) {
        /* curl_multi_add_handle only arms the timer: nothing completes before
         * the loop runs again, so the callback cannot run inside this call. */
        return call_run(u, c);
    }
    if (__atomic_add_fetch(&u->limits->queued, 1, __ATOMIC_ACQ_REL) > u->queue_size) {
        __atomic_fetch_sub(&u->limits->queued, 1, __ATOMIC_ACQ_REL);
        snprintf(c->resp.error, sizeof c->resp.error, "upstream queue full");
        c->resp.retry_after = 1;
        defer_delivery(u, c, UPSTREAM_REJECTED);
        return 0;
    }
    c->state = CALL_QUEUED;
    c->queue_deadline_ms = util_now_ms() + u->queue_timeout_ms;
    c->prev = u->queue_tail;
    c->next = NULL;
    if (u->queue_tail)
        u->queue_tail->next = c;
    else
        u->queue = c;
    u->queue_tail = c;
    u->queued++;
    queue_pump(u);
    return 0;
}

static void on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_call *c = arg;
    struct upstream *u = c->u;
    (void)fd;
    (void)what;
    call_unlink(&u->waiting, c);
    if (call_admit(u, c) < 0) {
        snprintf(c->resp.error, sizeof c->resp.error, "cannot restart the transfer");
        defer_delivery(u, c, UPSTREAM_ERROR);
    }
}

/* Park a call (holding no slot) for ms, then admit it again. */
static void call_wait(struct upstream *u, struct upstream_call *c, int64_t ms)
{
    if (!c->timer)
        c->timer = evtimer_new(u->base, on_call_timer, c);
    c->state = CALL_WAITING;
    call_push(&u->waiting, c);
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (!c->timer || evtimer_add(c->timer, &tv) < 0) {
        call_unlink(&u->waiting, c);
        defer_delivery(u, c, UPSTREAM_ERROR);
    }
}

struct upstream_call *upstream_start(struct upstream *u, const struct config *cfg,
                                     const struct upstream_request *req, upstream_cb cb, void *arg)
{
    if (!u || u->closing || !cfg || !req || !req->method || !req->url || !cb)
        return NULL;
    struct upstream_call *c = util_calloc(1, sizeof *c);
    c->u = u;
    c->cb = cb;
    c->arg = arg;
    c->start_ms = util_now_ms();
    c->resp.retry_after = -1;
    c->easy = easy_get(u);
    if (!c->easy || call_setup(c, cfg, req) < 0) {
        call_free(c);
        return NULL;
    }
    u->max_inflight = cfg->max_inflight;
    u->queue_size = cfg->queue_size;
    u->queue_timeout_ms = cfg->queue_timeout_ms;
    c->deadline_ms = c->start_ms + cfg->timeout_ms;
    c->idempotent = req->idempotent;
    c->max_retries = (int)cfg->max_retries;
    if (req->pace_key) {
        /* A write waits its turn among its service's writes (all workers),
         * up to queue_timeout_ms; beyond that it is refused with the time to
         * come back, before it costs a slot. */
        long retry_s = 1;
        int64_t wait_us = pace_reserve(&u->limits->pace, req->pace_key, cfg->writes_per_second,
                                       util_now_ms() * 1000, u->queue_timeout_ms * 1000, &retry_s);
        if (wait_us < 0) {
            c->resp.retry_after = retry_s;
            c->resp.pace_rejected = true;
            snprintf(c->resp.error, sizeof c->resp.error, "write pacing: service over %ld/s",
                     cfg->writes_per_second);
            defer_delivery(u, c, UPSTREAM_REJECTED);
            return c;
        }
        if (wait_us > 0) {
            c->resp.paced_ms = (wait_us + 999) / 1000;
            call_wait(u, c, c->resp.paced_ms);
            return c;
        }
    }
    if (call_admit(u, c) < 0) {
        call_free(c);
        return NULL;
    }
    return c;
}

void upstream_cancel(struct upstream_call *c)
{
    if (c && c->state == CALL_FINISHED) {
        /* Finished in the batch being delivered right now: its callback is
         * already due from the loop, so only the outcome changes. */
        c->resp.outcome = UPSTREAM_CANCELLED;
        c->resp.error[0] = '\0';
        return;
    }
    if (c && c->state == CALL_QUEUED) {
        queue_remove(c->u, c);
        defer_delivery(c->u, c, UPSTREAM_CANCELLED);
        return;
    }
    if (c && c->state == CALL_WAITING) {
        event_del(c->timer);
        call_unlink(&c->u->waiting, c);
        defer_delivery(c->u, c, UPSTREAM_CANCELLED);
        return;
    }
    if (!c || c->state != CALL_RUNNING)
        return;
    call_detach(c);
    defer_delivery(c->u, c, UPSTREAM_CANCELLED);
    queue_pump(c->u);
}

size_t upstream_inflight(const struct upstream *u)
{
    return u ? u->inflight : 0;
}

const char *upstream_version(void)
{
    return curl_version();
}

int upstream_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void upstream_global_cleanup(void)
{
    curl_global_cleanup();
}

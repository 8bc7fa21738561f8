/* listener: the client-facing HTTP/1.1 server. One evconnlistener per bound
 * socket and one bufferevent per connection for its output; input is read
 * by our own persistent read event straight into the bufferevent's input
 * buffer (one readv per readable socket: a bufferevent would also ask the
 * kernel FIONREAD first, one more system call per request), and bytes go
 * from those chains into http1 (evbuffer_peek, no pullup), each
 * parsed message becomes a struct request handed to the router, and answers
 * leave strictly in arrival order through a per-connection FIFO.
 *
 * Ownership: the listener allocates every request and frees it, either when
 * its response is flushed or, once detached from a dead connection, when the
 * router finally answers it (listener_request_done). A connection is freed
 * only from its own event callbacks, listener_close_all, or at the end of the
 * read callback that asked for it, never while http1 is on the stack. The
 * router's on_abort runs only from those same places, never from inside a
 * response_* call, so the router never sees itself re-entered.
 *
 * Connection lifecycle: OPEN (reading, answering) -> WRITING (a response said
 * close, or shutdown: no more requests, the rest of the output drains) ->
 * LINGER (all written, write side shut; input is discarded until the client's
 * FIN so a reset cannot destroy the last answer in flight) -> freed. */
#include "listener.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "http1.h"
#include "admission.h"
#include "admit.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "response.h"
#include "router.h"
#include "twilio.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024
#define LINGER_MS 2000      /* longest wait for the client's FIN after our close */
#define ACCEPT_RETRY_MS 100 /* accepting pauses this long after accept() fails (EMFILE) */
/* Answers a client has not read yet, per connection: past this no further
 * request is parsed until the output drains, so a client that pipelines
 * without reading holds this much of our memory and no more. */
#define OUT_HIGH_WATER (256 * 1024)

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum conn_state { CONN_OPEN, CONN_WRITING, CONN_LINGER, CONN_FREEING };

struct lsock {
    struct listener *l;
    struct evconnlistener *evl;
    struct event *retry;
};

struct listener {
    struct worker *w;
    struct lsock **socks;
    size_t n_socks;
    struct conn *conns; /* every open connection, doubly linked */
    size_t n_conns;
    size_t n_writing;     /* connections in CONN_WRITING: answers not yet handed to the kernel */
    size_t inflight;      /* requests allocated and not yet freed (detached ones included) */
    struct pool requests; /* freed requests, kept with their output buffers */
    bool stopping;        /* listener_stop_accepting: no new connections or requests */
    bool closed;          /* listener_close_all: free this when the last request goes */
};

struct conn {
    struct listener *l;
    struct conn *prev, *next;
    struct bufferevent *bev; /* output (and its write timeout); its input buffer is ours */
    struct event *rev;       /* readable, or the read (idle/linger) timeout */
    struct http1_parser *parser;
    struct request *head, *tail; /* FIFO in arrival order */
    size_t n_unfinished;         /* FIFO entries still waiting for their response */
    enum conn_state state;
    int busy;          /* conn_parse is running: freeing is deferred to its end */
    bool free_pending; /* conn_free was asked for while busy */
    bool no_more;      /* parse no further requests */
    bool paused;       /* parser paused by the pipeline limit */
    struct auth_peer peer;
    struct auth_memo auth;        /* the credentials this connection last proved */
    unsigned long requests;       /* requests parsed on this connection */
    struct event *deadline;       /* head or body deadline of the message being received */
    enum http1_phase armed_phase; /* what the deadline is armed for */
    unsigned long armed_msg;      /* and for which message (http1_messages_begun) */
};

static void conn_flush(struct conn *c);
static void conn_free(struct conn *c);

/* Reading on, with a timeout (idle keep-alive and slow senders, or the
 * linger), restarted by every read; off; and a parse of what is already
 * buffered, from the loop (never from inside a response). */
static void conn_read_on(struct conn *c, long timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    event_add(c->rev, &tv);
}

static void conn_read_off(struct conn *c)
{
    event_del(c->rev);
}

static void conn_read_soon(struct conn *c)
{
    event_active(c->rev, EV_READ, 0);
}

static struct timeval ms_to_tv(long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static size_t pipeline_limit(const struct worker *w)
{
    return w->cfg->max_pipeline > 0 ? (size_t)w->cfg->max_pipeline : 1;
}

/* Too much is queued on c (unanswered requests, or answers not yet read):
 * parse nothing more for now. */
static bool conn_full(const struct conn *c)
{
    return c->n_unfinished >= pipeline_limit(c->l->w) ||
           evbuffer_get_length(bufferevent_get_output(c->bev)) >= OUT_HIGH_WATER;
}

static void set_conn_gauge(struct listener *l)
{
    if (l->w->metrics)
        metrics_gauge_set(l->w->metrics, MGAUGE_CONNECTIONS, (int64_t)l->n_conns);
}

/* ---- listener lifetime ---- */

static void close_socks(struct listener *l)
{
    for (size_t i = 0; i < l->n_socks; i++) {
        evconnlistener_free(l->socks[i]->evl); /* LEV_OPT_CLOSE_ON_FREE: closes the fd */
        event_free(l->socks[i]->retry);
        free(l->socks[i]);
    }
    free(l->socks);
    l->socks = NULL;
    l->n_socks = 0;
}

/* After listener_close_all, the last detached request to be answered frees
 * the listener (pgbouncer-style deferred free: nobody touches it after). */
static void listener_maybe_destroy(struct listener *l)
{
    if (!l->closed || l->conns || l->inflight > 0)
        return;
    close_socks(l);
    l->w->listener = NULL;
    pool_clear(&l->requests);
    free(l);
}

/* ---- requests ---- */

/* A pooled request keeps an output buffer of up to this much for the next
 * (a user or a short page): with POOL_KEEP requests, at most 2 MiB a worker. */
#define OUT_KEEP (16 * 1024)

static void request_drop(void *obj)
{
    struct request *req = obj;
    buf_free(&req->out);
    free(req);
}

static struct request *request_new(struct conn *c, struct http1_msg *msg)
{
    struct listener *l = c->l;
    struct worker *w = l->w;
    struct request *req = pool_take(&l->requests);
    struct buf out = req->out;
    *req = (struct request){.out = out};
    buf_reset(&req->out);
    req->w = w;
    req->conn = c;
    req->id = ++w->next_request_id;
    req->start_ms = util_now_ms();
    if (msg)
        req->msg = *msg; /* moved: http1 forgets it when we return */
    req->peer = c->peer;
    req->auth_memo = &c->auth;
    req->cfg = config_ref(w->cfg);
    req->route.id = ROUTE_NONE;
    if (c->tail)
        c->tail->next = req;
    else
        c->head = req;
    c->tail = req;
    c->n_unfinished++;
    l->inflight++;
    return req;
}

static void request_free(struct request *req)
{
    struct listener *l = req->w->listener;
    http1_msg_free(&req->msg);
    config_unref(req->cfg);
    if (req->out.cap > OUT_KEEP)
        buf_free(&req->out);
    pool_put(&l->requests, req);
    l->inflight--;
    listener_maybe_destroy(l);
}

/* Empty the FIFO: answered entries are freed, unanswered ones detached (the
 * router answers them later into nothing) and told once via on_abort. A
 * request answered during another's on_abort is still linked to c and only
 * marked done (c is no longer OPEN), so this loop frees it. */
static void conn_detach_all(struct conn *c)
{
    struct request *req;
    while ((req = c->head)) {
        c->head = req->next;
        if (!c->head)
            c->tail = NULL;
        req->next = NULL;
        req->conn = NULL;
        req->auth_memo = NULL;
        if (req->done) {
            request_free(req);
            continue;
        }
        c->n_unfinished--;
        void (*abort_cb)(struct request *) = req->on_abort;
        req->on_abort = NULL;
        if (abort_cb)
            abort_cb(req); /* may answer and so free req */
    }
}

bool listener_request_is_last(const struct request *req)
{
    return !req->conn || !req->next;
}

void listener_request_done(struct request *req)
{
    struct conn *c = req->conn;
    if (!c) {
        request_free(req);
        return;
    }
    c->n_unfinished--;
    if (c->state == CONN_OPEN)
        conn_flush(c);
    /* else: c is closing; conn_detach_all frees it */
}

/* ---- connection state changes ---- */

/* No more requests; write what is queued, then linger and close. The switch
 * to LINGER (which calls on_abort) always happens from the write callback,
 * so this is safe to call from inside a response. */
static void conn_close_soon(struct conn *c)
{
    if (c->state != CONN_OPEN)
        return;
    c->no_more = true;
    c->state = CONN_WRITING;
    c->l->n_writing++;
    conn_read_off(c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void conn_linger(struct conn *c)
{
    c->state = CONN_LINGER;
    c->l->n_writing--;
    conn_detach_all(c); /* their answers can no longer be sent */
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    conn_read_on(c, LINGER_MS);
}

/* Parse the bytes already buffered, later, from the event loop: this may be
 * called from inside a response, where parsing (and so router_handle) must
 * not run. */
static void conn_resume(struct conn *c)
{
    c->paused = false;
    conn_read_on(c, c->l->w->cfg->idle_timeout_ms);
    conn_read_soon(c);
}

/* Move every answered request at the FIFO head into the output, in order. */
static void conn_flush(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (c->state == CONN_OPEN && c->head && c->head->done) {
        struct request *req = c->head;
        c->head = req->next;
        if (!c->head)
            c->tail = NULL;
        /* An answer arriving from a later event (Redis, upstream) is written
         * at once when nothing is queued before it: that saves arming and
         * disarming the write event for every response. Answers produced
         * while parsing are left to the bufferevent, which sends a pipelined
         * batch in one writev. Whatever the socket does not take (or a
         * failed write, reported by the bufferevent) stays queued. */
        size_t sent = 0;
        if (!c->busy && evbuffer_get_length(out) == 0) {
            ssize_t n = write(bufferevent_getfd(c->bev), req->out.data, req->out.len);
            if (n > 0)
                sent = (size_t)n;
        }
        if (sent < req->out.len)
            evbuffer_add(out, req->out.data + sent, req->out.len - sent);
        bool close = req->close_after || !req->msg.keep_alive;
        request_free(req);
        if (close)
            conn_close_soon(c);
    }
    if (c->state != CONN_OPEN)
        return;
    if (!c->head && c->l->stopping)
        conn_close_soon(c);
    else if (c->paused && !c->no_more && !conn_full(c))
        conn_resume(c);
}

static void conn_free(struct conn *c)
{
    if (c->state == CONN_FREEING)
        return;
    if (c->busy) {
        c->free_pending = true;
        return;
    }
    struct listener *l = c->l;
    if (c->state == CONN_WRITING)
        l->n_writing--;
    c->state = CONN_FREEING;
    conn_detach_all(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->n_conns--;
    set_conn_gauge(l);
    if (c->rev)
        event_free(c->rev);
    bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE: closes the fd */
    http1_free(c->parser);
    if (c->deadline)
        event_free(c->deadline);
    admission_conn_close(l->w->srv->admission, &c->peer);
    auth_memo_clear(&c->auth);
    free(c);
    listener_maybe_destroy(l);
}

/* ---- http1 callbacks ---- */

static int conn_on_message(void *arg, struct http1_msg *msg)
{
    struct conn *c = arg;
    if (c->no_more) {
        http1_msg_free(msg);
        return -1;
    }
    struct request *req = request_new(c, msg);
    if (++c->requests >= (unsigned long)c->l->w->cfg->max_requests_per_connection)
        req->close_after = true;
    if (!req->msg.keep_alive || req->close_after) {
        /* Its answer closes the connection; nothing after it is read. */
        c->no_more = true;
        conn_read_off(c);
    }
    router_handle(req); /* may answer, and so free req, before returning */
    if (c->no_more)
        return -1;
    if (conn_full(c)) {
        c->paused = true;
        conn_read_off(c);
        return -1;
    }
    return 0;
}

/* Answer a request that will not be read to its end (a refusal before its
 * body, a deadline): its error goes out in turn and the connection closes. */
static struct request *conn_refuse(struct conn *c)
{
    c->no_more = true;
    conn_read_off(c);
    struct request *req = request_new(c, NULL);
    req->close_after = true;
    return req;
}

static void conn_on_headers(void *arg, const struct http1_msg *msg)
{
    struct conn *c = arg;
    if (c->no_more || msg->http_minor < 1)
        return;
    const char *e = http1_msg_header(msg, "Expect");
    if (!e || strcasecmp(e, "100-continue") != 0)
        return;
    /* The client waits for a go-ahead before sending its body: give it only
     * to a request that would be admitted (credentials, route, grant), so
     * nobody can make us read bodies we would refuse. Otherwise the final
     * error now, and the body is never read. */
    struct admit_refusal no;
    if (!admit_head(c->l->w, msg, &c->peer, &c->auth, &no)) {
        struct request *req = conn_refuse(c);
        snprintf(req->msg.method, sizeof req->msg.method, "%s", msg->method);
        admit_refuse(req, &no);
        return;
    }
    /* Only when this request is next to be answered: a 100 must not come
     * before the final responses of requests ahead of it. */
    if (!c->head)
        evbuffer_add(bufferevent_get_output(c->bev), continue_100, sizeof continue_100 - 1);
}

/* A request that cannot be parsed gets its error in turn, after the answers
 * of the requests before it, and then the connection closes. */
static void conn_parse_error(struct conn *c, enum http1_error err)
{
    struct request *req = conn_refuse(c);
    switch (err) {
    case HTTP1_HEADERS_TOO_BIG:
        response_error(req, 431, TWILIO_E_BAD_REQUEST, "Request headers too large");
        break;
    case HTTP1_BODY_TOO_BIG:
        response_error(req, 413, TWILIO_E_TOO_LARGE, "Request body too large");
        break;
    case HTTP1_UNSUPPORTED:
        response_error(req, 501, TWILIO_E_BAD_REQUEST, "Not implemented");
        break;
    default:
        response_error(req, 400, TWILIO_E_BAD_REQUEST, "Malformed HTTP request");
        break;
    }
}

/* A whole head must arrive within header_timeout_ms of its first byte, and
 * a whole body within body_timeout_ms of the head's end, however the bytes
 * trickle in (the idle timer restarts with every byte; this does not). */
static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state != CONN_OPEN || c->no_more)
        return;
    bool head = c->armed_phase == HTTP1_PHASE_HEAD;
    metrics_inc(c->l->w->metrics, head ? MCOUNT_HEADER_TIMEOUTS : MCOUNT_BODY_TIMEOUTS);
    response_error(conn_refuse(c), 408, TWILIO_E_BAD_REQUEST,
                   head ? "Request headers not received in time"
                        : "Request body not received in time");
}

static void conn_arm_deadline(struct conn *c)
{
    enum http1_phase ph = http1_phase(c->parser);
    unsigned long msg = http1_messages_begun(c->parser);
    if (c->state != CONN_OPEN || c->no_more || c->paused || ph == HTTP1_PHASE_IDLE) {
        if (c->deadline)
            event_del(c->deadline);
        c->armed_phase = HTTP1_PHASE_IDLE;
        return;
    }
    if (ph == c->armed_phase && msg == c->armed_msg)
        return;
    if (!c->deadline)
        c->deadline = evtimer_new(c->l->w->base, conn_deadline_cb, c);
    if (!c->deadline)
        return;
    const struct config *cfg = c->l->w->cfg;
    struct timeval tv =
        ms_to_tv(ph == HTTP1_PHASE_HEAD ? cfg->header_timeout_ms : cfg->body_timeout_ms);
    evtimer_add(c->deadline, &tv);
    c->armed_phase = ph;
    c->armed_msg = msg;
}

/* Feed the buffered input to http1 straight from the evbuffer's chains and
 * drain what it consumed. */
static void conn_parse(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->busy++;
    while (c->state == CONN_OPEN && !c->no_more && !c->paused && !c->l->stopping) {
        struct evbuffer_iovec v[8];
        /* Only as far as there are bytes: a read leaves room reserved in
         * empty chains at the end, which must not count as input. */
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        int n = evbuffer_peek(in, (ev_ssize_t)avail, NULL, v, 8);
        if (n <= 0)
            break;
        if (n > 8)
            n = 8;
        size_t used = 0;
        bool stop = false;
        for (int i = 0; i < n && !stop; i++) {
            if (v[i].iov_len == 0)
                continue;
            enum http1_error err;
            long r = http1_feed(c->parser, v[i].iov_base, v[i].iov_len, &err);
            if (r < 0) {
                conn_parse_error(c, err);
                stop = true;
            } else {
                used += (size_t)r;
                /* A pause can land exactly on a chain boundary, so check the
                 * connection's state too, not only the count. */
                stop = (size_t)r < v[i].iov_len || c->paused || c->no_more || c->state != CONN_OPEN;
            }
        }
        evbuffer_drain(in, used);
        if (stop)
            break;
    }
    conn_arm_deadline(c);
    c->busy--;
    if (c->free_pending)
        conn_free(c);
}

/* ---- bufferevent callbacks ---- */

#define READ_CHUNK 16384

static int conn_readv(struct evbuffer *in, evutil_socket_t fd);

/* One readv into the input buffer: 1 read, 0 nothing now, -1 end of input,
 * -2 an error. */
static int conn_fill(struct conn *c, evutil_socket_t fd)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    /* A bufferevent keeps the end of its input frozen except while it reads
     * itself; we read in its place. */
    evbuffer_unfreeze(in, 0);
    int r = conn_readv(in, fd);
    evbuffer_freeze(in, 0);
    return r;
}

static int conn_readv(struct evbuffer *in, evutil_socket_t fd)
{
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(in, READ_CHUNK, v, 2);
    if (n <= 0)
        return -2;
    struct iovec iov[2];
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t r = readv(fd, iov, n);
    if (r <= 0) {
        evbuffer_commit_space(in, v, 0);
        if (r == 0)
            return -1;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -2;
    }
    size_t left = (size_t)r;
    int used = 0;
    for (; used < n && left; used++) {
        if (v[used].iov_len > left)
            v[used].iov_len = left;
        left -= v[used].iov_len;
    }
    evbuffer_commit_space(in, v, used);
    return 1;
}

static void conn_on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (what & EV_TIMEOUT) {
        if (c->state == CONN_OPEN && c->n_unfinished > 0 && http1_idle(c->parser))
            return;   /* the client is waiting for us, not sending slowly: keep reading */
        conn_free(c); /* idle, too slow, or the end of lingering */
        return;
    }
    int r = conn_fill(c, fd);
    if (c->state == CONN_LINGER) {
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (r < 0)
            conn_free(c); /* the client's FIN (or a reset): all was delivered */
        return;
    }
    if (r < 0) {
        conn_read_off(c);
        if (c->state == CONN_OPEN && c->n_unfinished == 0 && r == -1 &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0) {
            /* End of input with nothing pending from us: send what is written. */
            conn_close_soon(c);
            return;
        }
        /* An error, or the end of input with requests in flight (they are
         * detached). */
        conn_free(c);
        return;
    }
    conn_parse(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_WRITING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_linger(c);
    else if (c->state == CONN_OPEN && c->paused && !c->no_more && !conn_full(c))
        conn_resume(c); /* the client read what it had queued */
}

/* The output side: a write error, or a client that stopped reading. */
static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    conn_free(arg);
}

/* ---- accepting ---- */

static void peer_from_sockaddr(const struct sockaddr *sa, struct auth_peer *p)
{
    memset(p, 0, sizeof *p);
    p->family = sa->sa_family;
    if (sa->sa_family == AF_INET) {
        memcpy(p->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) { /* ::ffff:a.b.c.d is an IPv4 client */
            p->family = AF_INET;
            memcpy(p->addr, a + 12, 4);
        } else {
            memcpy(p->addr, a, 16);
        }
    } else {
        p->family = AF_UNIX;
    }
}

/* A connection over a limit is told so (503, Twilio-shaped) and closed: a
 * client must be able to tell "full" from a network fault. Best effort and
 * non-blocking; what the client already sent is drained first so the close
 * does not turn into a reset that destroys the answer. */
static void refuse_connection(evutil_socket_t fd, const char *why)
{
    struct buf body = {0}, all = {0};
    twilio_error_json(&body, 503, TWILIO_E_UNAVAILABLE, why);
    buf_printf(&all,
               "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
               body.len, body.data);
    char sink[4096];
    while (recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
        ;
    if (send(fd, all.data, all.len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
        shutdown(fd, SHUT_WR);
    evutil_closesocket(fd);
    buf_free(&body);
    buf_free(&all);
}

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct lsock *ls = arg;
    struct listener *l = ls->l;
    struct worker *w = l->w;
    (void)evl;
    (void)socklen;
    if (l->stopping) {
        evutil_closesocket(fd);
        return;
    }
    struct auth_peer peer;
    peer_from_sockaddr(sa, &peer);
    enum admission_conn lc = admission_conn_open(w->srv->admission, &peer, w->cfg->max_connections,
                                                 w->cfg->max_connections_per_ip);
    if (lc != LIMIT_CONN_OK) {
        metrics_inc(w->metrics, lc == LIMIT_CONN_TOTAL ? MCOUNT_CONN_REFUSED_TOTAL
                                                       : MCOUNT_CONN_REFUSED_PER_IP);
        refuse_connection(fd, lc == LIMIT_CONN_TOTAL
                                  ? "Too many connections; retry shortly"
                                  : "Too many connections from this address; retry shortly");
        return;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct bufferevent *bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        admission_conn_close(w->srv->admission, &peer);
        evutil_closesocket(fd);
        return;
    }
    struct conn *c = util_calloc(1, sizeof *c);
    c->l = l;
    c->bev = bev;
    c->peer = peer;
    struct http1_limits lim = {(size_t)w->cfg->max_header_bytes, (size_t)w->cfg->max_body_bytes,
                               true};
    c->parser = http1_new(&lim, conn_on_message, conn_on_headers, c);
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
    set_conn_gauge(l);
    bufferevent_setcb(bev, NULL, conn_write_cb, conn_event_cb, c);
    /* The read timeout bounds idle keep-alive and slow senders alike; the
     * write timeout bounds clients that stop reading. */
    struct timeval tv = ms_to_tv(w->cfg->idle_timeout_ms);
    bufferevent_set_timeouts(bev, NULL, &tv);
    bufferevent_disable(bev, EV_READ);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, conn_on_readable, c);
    if (!c->rev) {
        conn_free(c);
        return;
    }
    conn_read_on(c, w->cfg->idle_timeout_ms);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct lsock *ls = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(ls->evl);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    struct lsock *ls = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* Out of descriptors: the socket stays readable, so back off instead of
     * spinning. */
    log_warn("accept failed: %s; pausing accepts for %d ms", evutil_socket_error_to_string(err),
             ACCEPT_RETRY_MS);
    evconnlistener_disable(evl);
    struct timeval tv = ms_to_tv(ACCEPT_RETRY_MS);
    evtimer_add(ls->retry, &tv);
}

int listener_start(struct worker *w, int fd)
{
    struct listener *l = w->listener;
    if (!l) {
        l = util_calloc(1, sizeof *l);
        l->w = w;
        l->requests = (struct pool){.size = sizeof(struct request), .drop = request_drop};
        w->listener = l;
    }
    if (l->stopping)
        return -1;
    struct lsock *ls = util_calloc(1, sizeof *ls);
    ls->l = l;
    ls->retry = evtimer_new(w->base, on_accept_retry, ls);
    /* backlog 0: the socket is already listening (listener_bind or systemd). */
    if (ls->retry)
        ls->evl = evconnlistener_new(w->base, on_accept, ls,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!ls->evl) {
        /* fd stays the caller's to close */
        if (ls->retry)
            event_free(ls->retry);
        free(ls);
        return -1;
    }
    evconnlistener_set_error_cb(ls->evl, on_accept_error);
    struct lsock **socks = realloc(l->socks, (l->n_socks + 1) * sizeof *socks);
    if (!socks) {
        log_err("out of memory");
        abort();
    }
    l->socks = socks;
    l->socks[l->n_socks++] = ls;
    return 0;
}

void listener_stop_accepting(struct worker *w)
{
    struct listener *l = w->listener;
    if (!l)
        return;
    l->stopping = true;
    close_socks(l);
    /* conn_close_soon never frees, so walking the list is safe. Connections
     * with requests in flight close after their last answer (conn_flush). */
    for (struct conn *c = l->conns; c; c = c->next) {
        if (c->state != CONN_OPEN)
            continue;
        c->no_more = true;
        conn_read_off(c);
        if (!c->head)
            conn_close_soon(c);
    }
}

void listener_close_all(struct worker *w)
{
    struct listener *l = w->listener;
    if (!l)
        return;
    l->stopping = true;
    close_socks(l);
    struct conn *next;
    for (struct conn *c = l->conns; c; c = next) {
        next = c->next;
        conn_free(c);
    }
    l->closed = true;
    listener_maybe_destroy(l);
}

size_t listener_connections(const struct worker *w)
{
    return w->listener ? w->listener->n_conns : 0;
}

size_t listener_inflight(const struct worker *w)
{
    return w->listener ? w->listener->inflight + w->listener->n_writing : 0;
}

/* ---- binding ---- */

static int bind_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* A stale socket from a previous run is replaced; anything else at that
     * path (a typo pointing at a real file) is left alone. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            errno = EEXIST;
            return -1;
        }
        if (unlink(path) < 0)
            return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* chmod before listen: nobody can connect in between. */
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0 || chmod(path, 0660) < 0 ||
        listen(fd, LISTEN_BACKLOG) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int bind_tcp(const char *host, int port)
{
    char hostbuf[256], portbuf[16];
    const char *h = NULL;
    if (host && host[0] && strcmp(host, "*") != 0) {
        size_t n = strlen(host);
        if (host[0] == '[' && n >= 2 && host[n - 1] == ']') /* "[::1]" */
            snprintf(hostbuf, sizeof hostbuf, "%.*s", (int)(n - 2), host + 1);
        else
            snprintf(hostbuf, sizeof hostbuf, "%s", host);
        h = hostbuf;
    }
    snprintf(portbuf, sizeof portbuf, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int rc = getaddrinfo(h, portbuf, &hints, &res);
    if (rc != 0) {
        if (rc != EAI_SYSTEM)
            errno = EADDRNOTAVAIL;
        return -1;
    }
    int fd = -1, saved = EADDRNOTAVAIL;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        errno = saved;
    return fd;
}

int listener_bind(const struct config_addr *addr)
{
    if (addr->is_unix)
        return bind_unix(addr->path);
    return bind_tcp(addr->host, addr->port);
}

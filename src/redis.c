/* redis: the glue between usergate and hiredis's async API (the only file
 * that includes hiredis). hiredis 0.14 has neither connect nor command
 * timeouts, so every command carries its own deadline timer and the
 * connection a connect deadline; whichever of reply and timer comes first
 * answers the caller, exactly once.
 *
 * hiredis lifetime rules this file is built around:
 *  - A context is never freed from inside one of its own callbacks (hiredis
 *    is still using it further up the stack): such drops are parked in
 *    `dying` and freed on the next loop turn.
 *  - redisAsyncFree (ours or hiredis's own, on error) first runs every queued
 *    reply callback with a NULL reply, then the disconnect callback (only if
 *    the connect had completed), then frees. A connect that fails calls the
 *    connect callback with an error and is then freed by hiredis.
 *  - ac->data points back to us while the context is ours; it is cleared
 *    before we free a context so its late callbacks know to ignore it. */
#include "redis.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "log.h"
#include "slots.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MIN_MS 1000
/* A server that lets this many commands in a row time out is treated as
 * gone: a fresh connection is cheaper than a queue of doomed commands. */
#define MAX_TIMEOUTS_IN_ROW 3
/* Circuit breaker: after this many failed commands in a row (timeouts or
 * error replies; counted across reconnects, so a server that answers the
 * handshake but not the commands cannot keep costing a deadline per request
 * through reconnect cycles), Redis is skipped for a while:
 * commands fail at once, so requests go upstream without waiting out a
 * deadline each. One probe command is let through when the interval ends;
 * its success closes the breaker, its failure reopens it for twice as long. A
 * breaker that stayed closed for BREAKER_MAX_MS starts again from the minimum. */
#define BREAKER_FAILS MAX_TIMEOUTS_IN_ROW
#define BREAKER_MIN_MS 1000
#define BREAKER_MAX_MS 30000

/* HOST:PORT list copied from the config (sentinels, cluster seeds). */
struct hostlist {
    char **hosts;
    int *ports;
    size_t n;
};

struct cluster;

struct pending {
    struct redis *r;
    redis_cb cb;
    void *arg;
    struct event timer;          /* command deadline, or 0 s for an early failure */
    unsigned gen;                /* connection it was sent on */
    bool in_hiredis;             /* hiredis will call on_reply with it exactly once */
    bool timed_out;              /* cb already had its ERROR; on_reply only frees */
    bool probe;                  /* the half-open breaker's test command */
    struct pending *prev, *next; /* in r->pending while cb is still owed */
};

struct redis {
    struct event_base *base;
    struct pool pendings; /* freed pendings */
    /* Copied from the config: snapshots may be freed on reload. */
    char *addr_text;
    bool is_unix;
    char *host;
    int port;
    char *path;
    char *username;
    char *password;
    long timeout_ms;

    redisAsyncContext *ac;    /* connecting or connected; NULL while down */
    redisAsyncContext *dying; /* dropped inside a hiredis callback, freed by reap_ev */
    unsigned gen;             /* bumped per connect attempt */
    bool up;
    bool freeing;
    bool quiet; /* this outage's first failure was logged */
    int depth;  /* nesting of hiredis callbacks we are inside */
    int timeouts_in_row;
    long backoff_ms;
    /* circuit breaker */
    int fails_in_row;
    bool breaker_open;
    bool probing; /* the probe is in flight */
    long breaker_ms;
    int64_t breaker_until_ms, breaker_closed_ms;

    struct event *connect_timer;
    struct event *reconnect_timer;
    struct event *reap_ev;
    struct pending *pending;

    void (*state_cb)(void *arg, bool up);
    void *state_arg;
    void (*error_cb)(void *arg, bool timeout);
    void *error_arg;
    void (*breaker_cb)(void *arg, bool open);
    void *breaker_arg;
    void (*primary_cb)(void *arg);
    void *primary_arg;
    void (*redirect_cb)(void *arg, bool ask);
    void *redirect_arg;
    /* Sentinel: the address above is the primary they last named */
    struct {
        struct hostlist at; /* at.n == 0: not in Sentinel mode */
        char *name, *username, *password;
        size_t next;              /* the sentinel to ask next */
        size_t tried;             /* asked in this round without an answer */
        redisAsyncContext *ac;    /* asking, then watching +switch-master */
        redisAsyncContext *dying; /* dropped inside a callback, freed by reap_ev */
        bool named;               /* the next on_reconnect connects to it without asking */
        struct event *deadline;
    } sen;
    /* Redis Cluster: seeds.n > 0; cl routes commands over node connections,
     * each a struct redis of its own (owner points back) */
    struct hostlist seeds;
    struct cluster *cl;
    struct cluster *cl_dying; /* replaced by a reload, freed by reap_ev */
    struct redis *owner;
    /* a subscriber (redis_subscribe) */
    char *sub_channel;
    void (*sub_message)(void *arg, const char *msg, size_t len);
    void (*sub_live)(void *arg, bool live);
    void *sub_arg;
    bool subscribed;
};

static bool sentinel_mode(const struct redis *r)
{
    return r->sen.at.n > 0;
}

static bool cluster_mode(const struct redis *r)
{
    return r->seeds.n > 0;
}

static void cluster_free(struct cluster *cl);
static void cluster_resubscribe(struct redis *r);

static struct timeval ms_tv(long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* How long a connect (or a sentinel's answer) may take. */
static long connect_timeout_ms(const struct redis *r)
{
    long ms = r->timeout_ms * 4;
    return ms < CONNECT_TIMEOUT_MIN_MS ? CONNECT_TIMEOUT_MIN_MS : ms;
}

/* AUTH [username] password into argv/lens (3 slots); returns argc. */
static int auth_argv(const char *username, const char *password, const char **argv, size_t *lens)
{
    int argc = 0;
    argv[argc] = "AUTH";
    lens[argc++] = 4;
    if (username) {
        argv[argc] = username;
        lens[argc++] = strlen(username);
    }
    argv[argc] = password;
    lens[argc++] = strlen(password);
    return argc;
}

static bool str_differs(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b) != 0;
}

/* The config says "" for unset optional strings in some paths and NULL in
 * others; both mean "none" here. */
static char *dup_opt(const char *s)
{
    return s && *s ? util_strdup(s) : NULL;
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void fail_log(struct redis *r, const char *why)
{
    if (r->freeing)
        return;
    if (!r->quiet)
        log_warn("redis %s: %s", r->addr_text, why);
    else
        log_debug("redis %s: %s", r->addr_text, why);
    r->quiet = true;
}

static void set_up(struct redis *r, bool up)
{
    if (r->up == up)
        return;
    r->up = up;
    /* A cluster's subscription has a connection of its own. */
    if (!up && r->subscribed && !cluster_mode(r)) {
        r->subscribed = false;
        if (r->sub_live && !r->freeing)
            r->sub_live(r->sub_arg, false);
    }
    if (r->state_cb && !r->freeing)
        r->state_cb(r->state_arg, up);
}

static void report_error(struct redis *r, bool timeout)
{
    if (r->error_cb && !r->freeing)
        r->error_cb(r->error_arg, timeout);
}

/* ---- circuit breaker */

static void breaker_set(struct redis *r, bool open)
{
    if (r->breaker_open == open)
        return;
    r->breaker_open = open;
    if (!open)
        r->breaker_closed_ms = util_now_ms();
    if (r->breaker_cb && !r->freeing)
        r->breaker_cb(r->breaker_arg, open);
}

static void breaker_trip(struct redis *r)
{
    int64_t now = util_now_ms();
    bool recent = r->breaker_ms > 0 && now - r->breaker_closed_ms < BREAKER_MAX_MS;
    long ms = recent || r->breaker_open ? r->breaker_ms * 2 : BREAKER_MIN_MS;
    r->breaker_ms = ms > BREAKER_MAX_MS ? BREAKER_MAX_MS : ms;
    r->breaker_until_ms = now + r->breaker_ms;
    r->fails_in_row = 0;
    r->probing = false;
    if (!r->freeing)
        log_warn("redis %s: %d commands in a row failed; skipping Redis for %ld ms", r->addr_text,
                 BREAKER_FAILS, r->breaker_ms);
    breaker_set(r, true);
}

/* The outcome of a command that reached the server (or timed out there). */
static void breaker_note(struct redis *r, const struct pending *p, bool ok)
{
    if (p->probe)
        r->probing = false;
    if (ok) {
        r->fails_in_row = 0;
        if (p->probe) {
            log_notice("redis %s: probe succeeded; using Redis again", r->addr_text);
            breaker_set(r, false);
        }
        return;
    }
    if (p->probe || (!r->breaker_open && ++r->fails_in_row >= BREAKER_FAILS))
        breaker_trip(r);
}

/* Whether a command may be sent now; marks it as the probe when the open
 * breaker's interval has passed. */
static bool breaker_admits(struct redis *r, struct pending *p)
{
    if (!r->breaker_open)
        return true;
    if (r->probing || util_now_ms() < r->breaker_until_ms)
        return false;
    p->probe = true;
    r->probing = true;
    return true;
}

/* ---- pending commands */

static void pending_link(struct redis *r, struct pending *p)
{
    p->next = r->pending;
    if (r->pending)
        r->pending->prev = p;
    r->pending = p;
}

static void pending_unlink(struct redis *r, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (r->pending == p)
        r->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void call_error(redis_cb cb, void *arg, const char *why)
{
    struct redis_reply rep = {.type = REDIS_R_ERROR, .str = why, .len = strlen(why)};
    cb(arg, &rep);
}

/* Copy a hiredis reply into our own type. Strings are not copied: they live
 * until hiredis frees the reply, after the callback returns. */
static void reply_convert(const redisReply *in, struct redis_reply *out)
{
    memset(out, 0, sizeof *out);
    switch (in->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        out->type = in->type == REDIS_REPLY_STRING   ? REDIS_R_STRING
                    : in->type == REDIS_REPLY_STATUS ? REDIS_R_STATUS
                                                     : REDIS_R_ERROR;
        out->str = in->str ? in->str : "";
        out->len = in->str ? (size_t)in->len : 0;
        break;
    case REDIS_REPLY_INTEGER:
        out->type = REDIS_R_INTEGER;
        out->integer = in->integer;
        break;
    case REDIS_REPLY_NIL:
        out->type = REDIS_R_NIL;
        break;
    case REDIS_REPLY_ARRAY:
        out->type = REDIS_R_ARRAY;
        out->n_elements = in->elements;
        if (in->elements) {
            out->elements = util_calloc(in->elements, sizeof *out->elements);
            for (size_t i = 0; i < in->elements; i++)
                reply_convert(in->element[i], &out->elements[i]);
        }
        break;
    default:
        out->type = REDIS_R_ERROR;
        out->str = "unexpected reply type";
        out->len = strlen(out->str);
        break;
    }
}

static void reply_release(struct redis_reply *rep)
{
    for (size_t i = 0; i < rep->n_elements; i++)
        reply_release(&rep->elements[i]);
    free(rep->elements);
}

static void conn_drop(struct redis *r);
static void schedule_reconnect(struct redis *r, long delay_ms);
static long next_backoff(struct redis *r);
static void sentinel_drop(struct redis *r);
static void sentinel_ask(struct redis *r);

static void pending_release(struct pending *p)
{
    pool_put(&p->r->pendings, p);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    struct redis *r = p->r;
    (void)ac;
    p->in_hiredis = false;
    if (p->timed_out) {
        pending_release(p);
        return;
    }
    event_del(&p->timer);
    pending_unlink(r, p);
    r->depth++;
    if (!reply) {
        /* The context is being freed with this command in flight: the
         * reconnect logic owns that; only a lost probe must be re-sent. */
        if (p->probe)
            r->probing = false;
        report_error(r, false);
        call_error(p->cb, p->arg, "connection lost");
    } else {
        if (p->gen == r->gen)
            r->timeouts_in_row = 0;
        struct redis_reply rep;
        reply_convert(reply, &rep);
        /* A cluster node's MOVED, ASK, CLUSTERDOWN come fast from a healthy
         * node: answers about the cluster, not failures of this node. */
        bool failed =
            rep.type == REDIS_R_ERROR && !(r->owner && slots_is_cluster_answer(rep.str, rep.len));
        if (failed)
            report_error(r, false);
        breaker_note(r, p, !failed);
        p->cb(p->arg, &rep);
        /* A primary demoted under us (a failover we did not hear of). */
        if (rep.type == REDIS_R_ERROR && sentinel_mode(r) && p->gen == r->gen && r->ac &&
            rep.len >= 8 && memcmp(rep.str, "READONLY", 8) == 0) {
            fail_log(r, "the node answers READONLY; asking the sentinels again");
            conn_drop(r);
            schedule_reconnect(r, 0);
        }
        reply_release(&rep);
    }
    r->depth--;
    pending_release(p);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct redis *r = p->r;
    (void)fd;
    (void)what;
    pending_unlink(r, p);
    if (!p->in_hiredis) {
        call_error(p->cb, p->arg, "redis not connected");
        pending_release(p);
        return;
    }
    /* hiredis still holds p and will hand it back (with the late reply or a
     * NULL on disconnect); from here on p must not be touched, since the
     * caller's callback may tear the connection down and free it. */
    p->timed_out = true;
    bool current = p->gen == r->gen;
    report_error(r, true);
    breaker_note(r, p, false);
    call_error(p->cb, p->arg, "redis command timed out");
    if (current && ++r->timeouts_in_row >= MAX_TIMEOUTS_IN_ROW && r->ac) {
        fail_log(r, "commands keep timing out; reconnecting");
        conn_drop(r);
        schedule_reconnect(r, next_backoff(r));
    }
}

/* ---- connection */

static long next_backoff(struct redis *r)
{
    long b = r->backoff_ms;
    r->backoff_ms = b * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b * 2;
    /* ±25 % so workers (and instances) that lost Redis together do not
     * come back in lock step. */
    return b - b / 4 + (long)util_random_below((uint64_t)(b / 2) + 1);
}

static void schedule_reconnect(struct redis *r, long delay_ms)
{
    if (r->freeing)
        return;
    struct timeval tv = ms_tv(delay_ms);
    evtimer_add(r->reconnect_timer, &tv);
}

/* Forget the current connection and free it, now or (inside a hiredis
 * callback) on the next loop turn. Commands in flight get their ERROR from
 * hiredis's NULL replies. The caller decides about reconnecting. */
static void conn_drop(struct redis *r)
{
    redisAsyncContext *ac = r->ac;
    if (!ac)
        return;
    r->ac = NULL;
    event_del(r->connect_timer);
    set_up(r, false);
    /* At most one context is ever parked: a new one is only created by
     * on_reconnect, which frees the parked one first. */
    if (r->depth > 0 && !r->dying) {
        r->dying = ac;
        event_active(r->reap_ev, EV_TIMEOUT, 0);
        return;
    }
    ac->data = NULL;
    redisAsyncFree(ac);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    (void)fd;
    (void)what;
    redisAsyncContext **slots[2] = {&r->dying, &r->sen.dying};
    for (size_t i = 0; i < 2; i++) {
        redisAsyncContext *ac = *slots[i];
        if (!ac)
            continue;
        *slots[i] = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    struct cluster *cl = r->cl_dying;
    r->cl_dying = NULL;
    cluster_free(cl);
}

/* The end of an outage: back-off and logging start over. For a subscriber
 * that is the confirmation of its subscription, not the handshake: a
 * refused SUBSCRIBE (an ACL's NOPERM) makes hiredis drop the connection
 * right after a good handshake, and resetting there would retry every
 * 100 ms with a warning each time. */
static void outage_over(struct redis *r)
{
    r->backoff_ms = BACKOFF_MIN_MS;
    r->quiet = false;
}

/* Every reply on a subscriber's connection: the confirmation, then one
 * per message. hiredis keeps this callback for the subscription's life. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    if (ac != r->ac || !rep || r->freeing)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    r->depth++;
    if (strcmp(kind, "subscribe") == 0 && !r->subscribed) {
        outage_over(r);
        r->subscribed = true;
        if (r->sub_live)
            r->sub_live(r->sub_arg, true);
    } else if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        if (r->sub_message)
            r->sub_message(r->sub_arg, rep->element[2]->str, rep->element[2]->len);
    }
    r->depth--;
}

static void became_up(struct redis *r)
{
    event_del(r->connect_timer);
    r->timeouts_in_row = 0;
    if (!r->sub_channel)
        outage_over(r);
    set_up(r, true);
    if (r->sub_channel) {
        const char *argv[2] = {"SUBSCRIBE", r->sub_channel};
        size_t lens[2] = {9, strlen(r->sub_channel)};
        if (redisAsyncCommandArgv(r->ac, on_sub_reply, r, 2, argv, lens) != REDIS_OK) {
            fail_log(r, "cannot subscribe");
            conn_drop(r);
            schedule_reconnect(r, next_backoff(r));
        }
    }
}

void redis_subscribe(struct redis *r, const char *channel,
                     void (*on_message)(void *arg, const char *msg, size_t len),
                     void (*on_live)(void *arg, bool live), void *arg)
{
    free(r->sub_channel);
    r->sub_channel = util_strdup(channel);
    r->sub_message = on_message;
    r->sub_live = on_live;
    r->sub_arg = arg;
    if (r->cl) { /* on a connection of its own */
        cluster_resubscribe(r);
        return;
    }
    if (r->up) { /* subscribe on a fresh connection */
        conn_drop(r);
        schedule_reconnect(r, 0);
    }
}

/* Sentinel mode's last handshake step: ROLE must say "master". */
static void on_role(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    if (ac != r->ac || !rep)
        return;
    r->depth++;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
        rep->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(rep->element[0]->str, "master") == 0) {
        became_up(r);
    } else {
        char why[160];
        snprintf(why, sizeof why, "ROLE says %s, not master; asking the sentinels again",
                 rep->type == REDIS_REPLY_ARRAY && rep->elements > 0 &&
                         rep->element[0]->type == REDIS_REPLY_STRING
                     ? rep->element[0]->str
                     : "something else");
        fail_log(r, why);
        conn_drop(r);
        schedule_reconnect(r, next_backoff(r));
    }
    r->depth--;
}

/* Reply to the handshake command (AUTH, or PING without a password). A
 * TCP connect alone proves little (a stopped server's kernel still accepts),
 * so "up" waits for the server itself to answer. */
static void on_hello(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    /* NULL: the connection died; on_disconnect or our own teardown handles it. */
    if (ac != r->ac || !rep)
        return;
    r->depth++;
    if (rep->type == REDIS_REPLY_STATUS) {
        const char *argv[1] = {"ROLE"};
        size_t lens[1] = {4};
        if (!sentinel_mode(r))
            became_up(r);
        else if (redisAsyncCommandArgv(ac, on_role, r, 1, argv, lens) != REDIS_OK) {
            fail_log(r, "cannot send ROLE");
            conn_drop(r);
            schedule_reconnect(r, next_backoff(r));
        }
    } else {
        /* The server's message names no secret ("WRONGPASS invalid
         * username-password pair"), so it can be logged. */
        char why[160];
        snprintf(why, sizeof why, "%s failed: %s", r->password ? "AUTH" : "PING",
                 rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str : "unexpected reply");
        fail_log(r, why);
        conn_drop(r);
        schedule_reconnect(r, next_backoff(r));
    }
    r->depth--;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    if (!r)
        return;
    if (cac == r->dying) {
        if (status != REDIS_OK)
            r->dying = NULL; /* hiredis frees it when we return */
        return;
    }
    if (cac != r->ac)
        return;
    redisAsyncContext *ac = r->ac;
    r->depth++;
    if (status != REDIS_OK) {
        /* hiredis frees the context once we return. */
        fail_log(r, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
        r->ac = NULL;
        event_del(r->connect_timer);
        schedule_reconnect(r, next_backoff(r));
    } else {
        const char *argv[3] = {"PING"};
        size_t lens[3] = {4};
        int argc = r->password ? auth_argv(r->username, r->password, argv, lens) : 1;
        if (redisAsyncCommandArgv(ac, on_hello, r, argc, argv, lens) != REDIS_OK) {
            fail_log(r, "cannot send the handshake");
            conn_drop(r);
            schedule_reconnect(r, next_backoff(r));
        }
    }
    r->depth--;
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    (void)status;
    if (!r)
        return;
    if (cac == r->dying) {
        r->dying = NULL; /* hiredis freed it before on_reap could */
        return;
    }
    if (cac != r->ac)
        return;
    r->depth++;
    r->ac = NULL;
    event_del(r->connect_timer);
    fail_log(r, cac->c.errstr[0] ? cac->c.errstr : "connection closed");
    set_up(r, false);
    schedule_reconnect(r, next_backoff(r));
    r->depth--;
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    (void)fd;
    (void)what;
    if (!r->ac || r->up)
        return;
    fail_log(r, "connect timed out");
    conn_drop(r);
    schedule_reconnect(r, next_backoff(r));
}

static void conn_start(struct redis *r)
{
    r->gen++;
    r->timeouts_in_row = 0;
    redisAsyncContext *ac =
        r->is_unix ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
    if (!ac || ac->err) {
        fail_log(r, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(r, next_backoff(r));
        return;
    }
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        fail_log(r, "cannot attach to the event loop");
        redisAsyncFree(ac);
        schedule_reconnect(r, next_backoff(r));
        return;
    }
    ac->data = r;
    r->ac = ac;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    struct timeval tv = ms_tv(connect_timeout_ms(r));
    evtimer_add(r->connect_timer, &tv);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    (void)fd;
    (void)what;
    on_reap(-1, 0, r);
    if (cluster_mode(r))
        return; /* its nodes connect */
    if (!sentinel_mode(r)) {
        if (!r->ac)
            conn_start(r);
    } else if (!r->ac && r->sen.named) { /* just named: go there */
        r->sen.named = false;
        conn_start(r);
    } else if (!r->ac || !r->sen.ac) { /* every reconnect asks again; so does a lost watch */
        sentinel_drop(r);
        sentinel_ask(r);
    }
}

/* ---- Sentinel: which node is the primary
 *
 * In Sentinel mode every (re)connect first asks a sentinel for the primary
 * of master_name, trying each sentinel in turn, and keeps that sentinel's
 * connection subscribed to +switch-master so a failover is followed at once
 * rather than at the next timeout. AUTH, the question and SUBSCRIBE are sent
 * together: a switch cannot slip between the answer and the subscription. A
 * node is used only once ROLE says it is the primary (a sentinel's answer
 * can be stale, and a demoted primary still answers reads), and a READONLY
 * error sends usergate back to the sentinels. */

static void sentinel_drop(struct redis *r)
{
    redisAsyncContext *ac = r->sen.ac;
    event_del(r->sen.deadline);
    if (!ac)
        return;
    r->sen.ac = NULL;
    if (r->depth > 0 && !r->sen.dying) { /* see conn_drop */
        r->sen.dying = ac;
        event_active(r->reap_ev, EV_TIMEOUT, 0);
        return;
    }
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* This sentinel did not answer: the next one at once, or after a whole
 * round, the next round after a backoff. */
static void sentinel_failed(struct redis *r, const char *why)
{
    char msg[320];
    snprintf(msg, sizeof msg, "sentinel %s:%d: %s", r->sen.at.hosts[r->sen.next],
             r->sen.at.ports[r->sen.next], why);
    fail_log(r, msg);
    sentinel_drop(r);
    r->sen.next = (r->sen.next + 1) % r->sen.at.n;
    if (++r->sen.tried < r->sen.at.n) {
        schedule_reconnect(r, 0);
    } else {
        r->sen.tried = 0;
        schedule_reconnect(r, next_backoff(r));
    }
}

static void set_primary(struct redis *r, const char *host, int port)
{
    free(r->host);
    free(r->addr_text);
    r->host = util_strdup(host);
    r->port = port;
    struct buf b = {0};
    buf_printf(&b, "%s:%d (primary of %s)", host, port, r->sen.name);
    r->addr_text = b.data;
}

/* The sentinels name host:port as the primary: keep the connection we have
 * if it already goes there, else move (on the next loop turn, through
 * on_reconnect, which connects without asking again). */
static void primary_named(struct redis *r, const char *host, int port)
{
    bool same = r->host && strcmp(r->host, host) == 0 && r->port == port;
    if (!same) {
        bool moved = r->host != NULL;
        if (moved)
            log_notice("redis: the sentinels name %s:%d as the primary of %s (was %s:%d)", host,
                       port, r->sen.name, r->host, r->port);
        set_primary(r, host, port);
        if (moved && r->primary_cb)
            r->primary_cb(r->primary_arg);
    }
    if (same && r->ac)
        return;
    conn_drop(r);
    r->sen.named = true;
    schedule_reconnect(r, 0);
}

static void on_sentinel_auth(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    if (ac != r->sen.ac || !rep || r->freeing || rep->type != REDIS_REPLY_ERROR)
        return;
    char why[200];
    snprintf(why, sizeof why, "AUTH failed: %s", rep->str ? rep->str : "error");
    r->depth++;
    sentinel_failed(r, why);
    r->depth--;
}

static void on_master_addr(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    if (ac != r->sen.ac || !rep || r->freeing)
        return;
    r->depth++;
    long port;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
        rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len > 0 &&
        rep->element[0]->len < 256 && rep->element[1]->type == REDIS_REPLY_STRING &&
        util_parse_long(rep->element[1]->str, 1, 65535, &port)) {
        event_del(r->sen.deadline);
        r->sen.tried = 0;
        primary_named(r, rep->element[0]->str, (int)port);
    } else {
        char why[200];
        if (rep->type == REDIS_REPLY_ERROR)
            snprintf(why, sizeof why, "%s", rep->str ? rep->str : "error");
        else if (rep->type == REDIS_REPLY_NIL)
            snprintf(why, sizeof why, "does not monitor a master named %s", r->sen.name);
        else
            snprintf(why, sizeof why, "unexpected answer to get-master-addr-by-name");
        sentinel_failed(r, why);
    }
    r->depth--;
}

/* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
static void on_switch_master(struct redis *r, const char *msg, size_t len)
{
    char text[512], *save = NULL, *f[5];
    if (len >= sizeof text)
        return;
    memcpy(text, msg, len);
    text[len] = '\0';
    int n = 0;
    for (char *s = strtok_r(text, " ", &save); s && n < 5; s = strtok_r(NULL, " ", &save))
        f[n++] = s;
    long port;
    if (n != 5 || strcmp(f[0], r->sen.name) != 0 || !util_parse_long(f[4], 1, 65535, &port))
        return;
    log_notice("redis: sentinel %s:%d announced +switch-master %s: %s:%s -> %s:%ld",
               r->sen.at.hosts[r->sen.next], r->sen.at.ports[r->sen.next], f[0], f[1], f[2], f[3],
               port);
    primary_named(r, f[3], (int)port);
}

static void on_sentinel_event(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    redisReply *rep = reply;
    if (ac != r->sen.ac || !rep || r->freeing || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    r->depth++;
    if (strcmp(rep->element[0]->str, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING)
        on_switch_master(r, rep->element[2]->str, rep->element[2]->len);
    r->depth--;
}

static void on_sentinel_connect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    if (!r)
        return;
    if (cac == r->sen.dying) {
        if (status != REDIS_OK)
            r->sen.dying = NULL; /* hiredis frees it when we return */
        return;
    }
    if (cac != r->sen.ac)
        return;
    redisAsyncContext *ac = r->sen.ac;
    r->depth++;
    if (status != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s", cac->c.errstr[0] ? cac->c.errstr : "connect failed");
        r->sen.ac = NULL; /* hiredis frees it when we return */
        sentinel_failed(r, why);
    } else {
        const char *argv[3];
        size_t lens[3];
        int argc = r->sen.password ? auth_argv(r->sen.username, r->sen.password, argv, lens) : 0;
        const char *q[3] = {"SENTINEL", "get-master-addr-by-name", r->sen.name};
        size_t ql[3] = {8, 23, strlen(r->sen.name)};
        const char *s[2] = {"SUBSCRIBE", "+switch-master"};
        size_t sl[2] = {9, 14};
        if ((r->sen.password &&
             redisAsyncCommandArgv(ac, on_sentinel_auth, r, argc, argv, lens) != REDIS_OK) ||
            redisAsyncCommandArgv(ac, on_master_addr, r, 3, q, ql) != REDIS_OK ||
            redisAsyncCommandArgv(ac, on_sentinel_event, r, 2, s, sl) != REDIS_OK)
            sentinel_failed(r, "cannot send the question");
    }
    r->depth--;
}

static void on_sentinel_disconnect(const redisAsyncContext *cac, int status)
{
    struct redis *r = cac->data;
    (void)status;
    if (!r)
        return;
    if (cac == r->sen.dying) {
        r->sen.dying = NULL;
        return;
    }
    if (cac != r->sen.ac)
        return;
    char why[160];
    snprintf(why, sizeof why, "%s", cac->c.errstr[0] ? cac->c.errstr : "connection closed");
    r->depth++;
    r->sen.ac = NULL; /* hiredis frees it when we return */
    sentinel_failed(r, why);
    r->depth--;
}

static void on_sentinel_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    (void)fd;
    (void)what;
    if (r->sen.ac)
        sentinel_failed(r, "no answer in time");
}

static void sentinel_ask(struct redis *r)
{
    size_t i = r->sen.next;
    redisAsyncContext *ac = redisAsyncConnect(r->sen.at.hosts[i], r->sen.at.ports[i]);
    if (!ac || ac->err || redisLibeventAttach(ac, r->base) != REDIS_OK) {
        char why[160];
        snprintf(why, sizeof why, "%s", ac && ac->err ? ac->errstr : "cannot connect");
        if (ac)
            redisAsyncFree(ac);
        sentinel_failed(r, why);
        return;
    }
    ac->data = r;
    r->sen.ac = ac;
    redisAsyncSetConnectCallback(ac, on_sentinel_connect);
    redisAsyncSetDisconnectCallback(ac, on_sentinel_disconnect);
    struct timeval tv = ms_tv(connect_timeout_ms(r));
    evtimer_add(r->sen.deadline, &tv);
}

/* ---- Redis Cluster: one connection per node, commands by hash slot
 *
 * The owner struct redis holds the slot map; every node is a struct redis of
 * its own (single address: deadlines, reconnects, breaker as above), created
 * when the map (or a redirection) first names it. A command goes to the
 * master of its key's slot (slots.c); MOVED updates that slot, asks for a
 * fresh map and follows; ASK sends ASKING and the command to the node named,
 * without touching the map. The map is asked for again on MOVED, when a node
 * is lost, and every CLUSTER_REFRESH_MS. "Up" means every slot has a master
 * and every master's connection is up. A subscriber takes one connection of
 * its own to one node (a cluster carries PUBLISH to every node) and moves to
 * the next node whenever that subscription is lost. */

#define CLUSTER_REFRESH_MS 5000
#define CLUSTER_MAX_HOPS 5
/* TRYAGAIN (a multi-key command on a slot half way through a migration):
 * sent again after this, up to CLUSTER_MAX_TRIES times, then it fails. */
#define CLUSTER_TRYAGAIN_MS 50
#define CLUSTER_MAX_TRIES 8
#define CLUSTER_SUB_WAIT_MS 3000

struct cnode {
    char *host;
    int port;
    struct redis *conn;
    bool master;
};

struct cluster {
    struct redis *owner;
    struct cnode *nodes;
    size_t n_nodes;
    uint16_t slots[SLOTS_COUNT]; /* node index + 1; 0: no master known */
    size_t *masters;             /* node indexes, for redis_command_shard */
    size_t n_masters;
    bool map_ok;          /* every slot has a master */
    size_t open_breakers; /* nodes whose circuit breaker is open */
    bool refreshing;
    size_t asked; /* the node the map was asked of */
    struct event *refresh_ev;
    struct ccmd *waiting; /* commands waiting out a TRYAGAIN */
    struct redis *sub;    /* the subscriber's own connection */
    size_t sub_next;      /* the node it goes to next */
    struct event *sub_move_ev;
};

/* A command on its way through the cluster: its own copy of argv, kept to be
 * sent again after a redirection. */
struct ccmd {
    struct redis *r;
    redis_cb cb;
    void *arg;
    int argc;
    char **argv;
    size_t *lens;
    int hops, tries;
    bool urgent;
    size_t node;
    struct event retry;         /* waiting out a TRYAGAIN */
    struct cluster *waiting_in; /* whose waiting list holds it */
    struct ccmd *wait_prev, *wait_next;
};

static struct redis *redis_alloc(struct event_base *base, long timeout_ms);
static void submit(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen, bool urgent);

static void cluster_update_up(struct redis *r)
{
    struct cluster *cl = r->cl;
    bool up = cl->map_ok && cl->n_masters > 0;
    for (size_t i = 0; up && i < cl->n_masters; i++)
        up = cl->nodes[cl->masters[i]].conn->up;
    set_up(r, up);
}

static void cluster_refresh_soon(struct redis *r, long ms)
{
    /* Sooner than the periodic refresh replaces it; the periodic one only
     * waits for nothing else to be pending. */
    struct timeval tv = ms_tv(ms);
    if (!r->freeing && (ms < CLUSTER_REFRESH_MS || !evtimer_pending(r->cl->refresh_ev, NULL)))
        evtimer_add(r->cl->refresh_ev, &tv);
}

static void on_node_state(void *arg, bool up)
{
    struct redis *n = arg, *r = n->owner;
    if (r->freeing || !r->cl)
        return;
    if (!up || !r->cl->map_ok)
        cluster_refresh_soon(r, up ? 0 : 100);
    cluster_update_up(r);
}

static void on_node_error(void *arg, bool timeout)
{
    struct redis *n = arg;
    report_error(n->owner, timeout);
}

/* The owner's breaker is open while any node's is. */
static void on_node_breaker(void *arg, bool open)
{
    struct redis *n = arg, *r = n->owner;
    if (!r->cl || r->freeing)
        return;
    size_t was = r->cl->open_breakers;
    r->cl->open_breakers = open ? was + 1 : (was ? was - 1 : 0);
    if ((was == 0) != (r->cl->open_breakers == 0))
        breaker_set(r, open);
}

/* A connection to host:port with r's credentials and deadline. */
static struct redis *node_conn(struct redis *r, const char *host, int port)
{
    struct redis *n = redis_alloc(r->base, r->timeout_ms);
    n->owner = r;
    n->host = util_strdup(host);
    n->port = port;
    struct buf b = {0};
    buf_printf(&b, "%s:%d (cluster node)", host, port);
    n->addr_text = b.data;
    n->username = r->username ? util_strdup(r->username) : NULL;
    n->password = r->password ? util_strdup(r->password) : NULL;
    conn_start(n);
    return n;
}

static size_t node_find_or_add(struct redis *r, const char *host, int port)
{
    struct cluster *cl = r->cl;
    for (size_t i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i].port == port && strcmp(cl->nodes[i].host, host) == 0)
            return i;
    cl->nodes = realloc(cl->nodes, (cl->n_nodes + 1) * sizeof *cl->nodes);
    if (!cl->nodes)
        abort();
    struct cnode *nd = &cl->nodes[cl->n_nodes];
    nd->host = util_strdup(host);
    nd->port = port;
    nd->master = false;
    nd->conn = node_conn(r, host, port);
    redis_set_state_cb(nd->conn, on_node_state, nd->conn);
    redis_set_error_cb(nd->conn, on_node_error, nd->conn);
    redis_set_breaker_cb(nd->conn, on_node_breaker, nd->conn);
    return cl->n_nodes++;
}

static void on_slots(void *arg, const struct redis_reply *rep)
{
    struct cluster *cl = arg;
    struct redis *r = cl->owner;
    if (r->freeing || r->cl != cl) /* freed with its nodes, or replaced by a reload */
        return;
    cl->refreshing = false;
    size_t max = rep->type == REDIS_R_ARRAY ? rep->n_elements : 0;
    struct slots_range *ranges = util_calloc(max ? max : 1, sizeof *ranges);
    int n = slots_parse_map(rep, ranges, max);
    if (n < 0) {
        fail_log(r, rep->type == REDIS_R_ERROR && rep->str ? rep->str
                                                           : "CLUSTER SLOTS: unexpected answer");
        free(ranges);
        cluster_refresh_soon(r, 1000);
        return;
    }
    bool had_map = cl->n_masters > 0, new_master = false;
    char asked_host[SLOTS_HOST_MAX + 1];
    snprintf(asked_host, sizeof asked_host, "%s", cl->nodes[cl->asked].host);
    memset(cl->slots, 0, sizeof cl->slots);
    bool *was_master = util_calloc(cl->n_nodes + 1, sizeof *was_master);
    size_t n_before = cl->n_nodes;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        was_master[i] = cl->nodes[i].master;
        cl->nodes[i].master = false;
    }
    cl->n_masters = 0;
    for (int i = 0; i < n; i++) {
        const char *host = ranges[i].host[0] ? ranges[i].host : asked_host;
        size_t idx = node_find_or_add(r, host, ranges[i].port);
        struct cnode *nd = &cl->nodes[idx];
        if (!nd->master) {
            nd->master = true;
            cl->masters = realloc(cl->masters, (cl->n_masters + 1) * sizeof *cl->masters);
            if (!cl->masters)
                abort();
            cl->masters[cl->n_masters++] = idx;
            new_master = new_master || idx >= n_before || !was_master[idx];
        }
        for (unsigned s = ranges[i].first; s <= ranges[i].last; s++)
            cl->slots[s] = (uint16_t)(idx + 1);
    }
    free(ranges);
    free(was_master);
    size_t covered = 0;
    for (size_t s = 0; s < SLOTS_COUNT; s++)
        covered += cl->slots[s] != 0;
    if (covered < SLOTS_COUNT && !r->quiet)
        log_warn("redis cluster: %zu of %d slots have no master", SLOTS_COUNT - covered,
                 SLOTS_COUNT);
    cl->map_ok = covered == SLOTS_COUNT;
    /* A node that was not a master before took over slots: a failover (or a
     * new master) may have lost writes its predecessor had not replicated. */
    if (had_map && new_master) {
        log_notice("redis cluster: a new master serves slots; %zu masters", cl->n_masters);
        if (r->primary_cb)
            r->primary_cb(r->primary_arg);
    }
    cluster_update_up(r);
    cluster_refresh_soon(r, CLUSTER_REFRESH_MS);
}

static void cluster_refresh(struct redis *r)
{
    struct cluster *cl = r->cl;
    if (cl->refreshing || r->freeing)
        return;
    for (size_t i = 0; i < cl->n_nodes; i++) {
        size_t idx = (cl->asked + 1 + i) % cl->n_nodes;
        if (!cl->nodes[idx].conn->up)
            continue;
        const char *argv[2] = {"CLUSTER", "SLOTS"};
        size_t lens[2] = {7, 5};
        cl->asked = idx;
        cl->refreshing = true;
        submit(cl->nodes[idx].conn, on_slots, cl, 2, argv, lens, true);
        return;
    }
    cluster_refresh_soon(r, 200); /* no node is up yet: their state changes call again too */
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cluster_refresh(arg);
}

static void ccmd_free(struct ccmd *c)
{
    free(c); /* argv, lens and the bytes live in the same block */
}

static void on_ignore(void *arg, const struct redis_reply *rep)
{
    (void)arg;
    (void)rep;
}

static void on_node_reply(void *arg, const struct redis_reply *rep);

/* Send c to node (SIZE_MAX: the master of its key's slot, or any master for
 * a command without a key), after ASKING when asking. */
static void cluster_route(struct ccmd *c, size_t node, bool asking)
{
    struct cluster *cl = c->r->cl;
    if (node == SIZE_MAX) {
        int k = slots_key_index(c->argc, (const char *const *)c->argv, c->lens);
        if (k >= 0) {
            node = (size_t)cl->slots[slots_of_key(c->argv[k], c->lens[k])] - 1;
        } else {
            for (size_t i = 0; i < cl->n_masters && node == SIZE_MAX; i++)
                if (cl->nodes[cl->masters[i]].conn->up)
                    node = cl->masters[i];
        }
    }
    if (node >= cl->n_nodes) { /* no master known: fails on the next turn */
        submit(c->r, on_node_reply, c, 0, NULL, NULL, false);
        return;
    }
    c->node = node;
    struct redis *n = cl->nodes[node].conn;
    if (asking) {
        const char *argv[1] = {"ASKING"};
        size_t lens[1] = {6};
        submit(n, on_ignore, NULL, 1, argv, lens, true);
    }
    submit(n, on_node_reply, c, c->argc, (const char **)c->argv, c->lens, c->urgent);
}

static void wait_unlink(struct cluster *cl, struct ccmd *c)
{
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        cl->waiting = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
}

static void on_tryagain(evutil_socket_t fd, short what, void *arg)
{
    struct ccmd *c = arg;
    (void)fd;
    (void)what;
    wait_unlink(c->waiting_in, c);
    if (c->r->cl)
        cluster_route(c, SIZE_MAX, false);
    else /* the cluster went with a reload */
        submit(c->r, on_node_reply, c, 0, NULL, NULL, false);
}

static void on_node_reply(void *arg, const struct redis_reply *rep)
{
    struct ccmd *c = arg;
    struct redis *r = c->r;
    struct slots_target t;
    enum slots_redirect kind = SLOTS_NONE;
    bool live = rep->type == REDIS_R_ERROR && rep->str && !r->freeing && r->cl;
    if (live && c->hops < CLUSTER_MAX_HOPS && c->node < r->cl->n_nodes)
        kind = slots_parse_redirect(rep->str, rep->len, &t);
    if (live && kind == SLOTS_NONE && ++c->tries < CLUSTER_MAX_TRIES && rep->len >= 8 &&
        memcmp(rep->str, "TRYAGAIN", 8) == 0) {
        struct cluster *cl = r->cl;
        struct timeval tv = ms_tv(CLUSTER_TRYAGAIN_MS);
        evtimer_assign(&c->retry, r->base, on_tryagain, c);
        evtimer_add(&c->retry, &tv);
        c->waiting_in = cl;
        c->wait_next = cl->waiting;
        if (cl->waiting)
            cl->waiting->wait_prev = c;
        cl->waiting = c;
        return;
    }
    if (kind == SLOTS_NONE) {
        c->cb(c->arg, rep);
        ccmd_free(c);
        return;
    }
    struct cluster *cl = r->cl;
    char host[SLOTS_HOST_MAX + 1];
    snprintf(host, sizeof host, "%s", t.host[0] ? t.host : cl->nodes[c->node].host);
    size_t idx = node_find_or_add(r, host, t.port);
    if (kind == SLOTS_MOVED) {
        cl->slots[t.slot] = (uint16_t)(idx + 1);
        cluster_refresh_soon(r, 0);
    }
    c->hops++;
    if (r->redirect_cb)
        r->redirect_cb(r->redirect_arg, kind == SLOTS_ASK);
    cluster_route(c, idx, kind == SLOTS_ASK);
}

static void cluster_submit(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                           const size_t *argvlen, bool urgent)
{
    /* One allocation per command: the struct, argv, lens, then the bytes. */
    size_t n = (size_t)argc, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += argvlen[i] + 1;
    struct ccmd *c = util_calloc(1, sizeof *c + n * (sizeof *c->argv + sizeof *c->lens) + bytes);
    c->r = r;
    c->cb = cb;
    c->arg = arg;
    c->argc = argc;
    c->argv = (char **)(c + 1);
    c->lens = (size_t *)(c->argv + n);
    char *at = (char *)(c->lens + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(at, argv[i], argvlen[i]);
        at[argvlen[i]] = '\0';
        c->argv[i] = at;
        c->lens[i] = argvlen[i];
        at += argvlen[i] + 1;
    }
    c->urgent = urgent;
    c->node = SIZE_MAX;
    cluster_route(c, SIZE_MAX, false);
}

/* ---- the subscriber's connection */

static void cluster_sub_start(struct redis *r);

static void on_cluster_sub_message(void *arg, const char *msg, size_t len)
{
    struct redis *r = arg;
    if (r->sub_message)
        r->sub_message(r->sub_arg, msg, len);
}

static void on_cluster_sub_live(void *arg, bool live)
{
    struct redis *r = arg;
    struct timeval now = {0, 0};
    if (live)
        evtimer_del(r->cl->sub_move_ev);
    else
        evtimer_add(r->cl->sub_move_ev, &now); /* to the next node */
    if (live != r->subscribed) {
        r->subscribed = live;
        if (r->sub_live)
            r->sub_live(r->sub_arg, live);
    }
}

static void on_sub_move(evutil_socket_t fd, short what, void *arg)
{
    struct redis *r = arg;
    (void)fd;
    (void)what;
    redis_free(r->cl->sub);
    r->cl->sub = NULL;
    cluster_sub_start(r);
}

static void cluster_sub_start(struct redis *r)
{
    struct cluster *cl = r->cl;
    size_t n = cl->n_nodes ? cl->n_nodes : 1;
    size_t i = cl->sub_next++ % n;
    const char *host = cl->n_nodes ? cl->nodes[i].host : r->seeds.hosts[0];
    int port = cl->n_nodes ? cl->nodes[i].port : r->seeds.ports[0];
    cl->sub = node_conn(r, host, port);
    redis_subscribe(cl->sub, r->sub_channel, on_cluster_sub_message, on_cluster_sub_live, r);
    /* A node that never confirms (down from the start) is left too. */
    struct timeval tv = ms_tv(CLUSTER_SUB_WAIT_MS);
    evtimer_add(cl->sub_move_ev, &tv);
}

static void cluster_resubscribe(struct redis *r)
{
    redis_free(r->cl->sub);
    r->cl->sub = NULL;
    cluster_sub_start(r);
}

static void cluster_start(struct redis *r)
{
    struct cluster *cl = util_calloc(1, sizeof *cl);
    cl->owner = r;
    r->cl = cl;
    cl->refresh_ev = evtimer_new(r->base, on_refresh, r);
    cl->sub_move_ev = evtimer_new(r->base, on_sub_move, r);
    if (!cl->refresh_ev || !cl->sub_move_ev)
        abort();
    for (size_t i = 0; i < r->seeds.n; i++)
        node_find_or_add(r, r->seeds.hosts[i], r->seeds.ports[i]);
    if (r->sub_channel)
        cluster_sub_start(r);
}

/* Node connections are freed here: their commands in flight get ERROR now
 * (on_node_reply hands it on, r->cl no longer being this cluster). */
static void cluster_free(struct cluster *cl)
{
    if (!cl)
        return;
    while (cl->waiting) {
        struct ccmd *c = cl->waiting;
        wait_unlink(cl, c);
        event_del(&c->retry);
        call_error(c->cb, c->arg, "redis client shutting down");
        ccmd_free(c);
    }
    if (cl->refresh_ev)
        event_free(cl->refresh_ev);
    if (cl->sub_move_ev)
        event_free(cl->sub_move_ev);
    redis_free(cl->sub);
    for (size_t i = 0; i < cl->n_nodes; i++) {
        redis_free(cl->nodes[i].conn);
        free(cl->nodes[i].host);
    }
    free(cl->nodes);
    free(cl->masters);
    free(cl);
}

/* ---- public */

static void hostlist_free(struct hostlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->hosts[i]);
    free(l->hosts);
    free(l->ports);
    memset(l, 0, sizeof *l);
}

static void hostlist_copy(struct hostlist *l, const struct config_addr *a, size_t n)
{
    hostlist_free(l);
    l->n = n;
    l->hosts = util_calloc(n ? n : 1, sizeof *l->hosts);
    l->ports = util_calloc(n ? n : 1, sizeof *l->ports);
    for (size_t i = 0; i < n; i++) {
        l->hosts[i] = util_strdup(a[i].host);
        l->ports[i] = a[i].port;
    }
}

static bool hostlist_differs(const struct hostlist *l, const struct config_addr *a, size_t n)
{
    if (l->n != n)
        return true;
    for (size_t i = 0; i < n; i++)
        if (strcmp(l->hosts[i], a[i].host) != 0 || l->ports[i] != a[i].port)
            return true;
    return false;
}

static void free_sentinels(struct redis *r)
{
    hostlist_free(&r->sen.at);
    free(r->sen.name);
    free(r->sen.username);
    free_secret(r->sen.password);
    r->sen.name = r->sen.username = r->sen.password = NULL;
}

/* Whether cfg names another server (other sentinels, another cluster) than
 * r uses. */
static bool target_differs(const struct redis *r, const struct config *cfg)
{
    if (hostlist_differs(&r->sen.at, cfg->redis_sentinels, cfg->n_redis_sentinels) ||
        hostlist_differs(&r->seeds, cfg->redis_cluster, cfg->n_redis_cluster))
        return true;
    if (r->seeds.n)
        return false;
    if (r->sen.at.n) {
        char *user = dup_opt(cfg->sentinel_username), *pass = dup_opt(cfg->sentinel_password);
        bool differs = str_differs(r->sen.name, cfg->redis_master_name) ||
                       str_differs(user, r->sen.username) || str_differs(pass, r->sen.password);
        free(user);
        free_secret(pass);
        return differs;
    }
    const struct config_addr *a = &cfg->redis_address;
    return a->is_unix != r->is_unix || str_differs(a->host, r->host) || a->port != r->port ||
           str_differs(a->path, r->path);
}

static void copy_target(struct redis *r, const struct config *cfg)
{
    const struct config_addr *a = &cfg->redis_address;
    free(r->addr_text);
    free(r->host);
    free(r->path);
    free(r->username);
    free_secret(r->password);
    free_sentinels(r);
    hostlist_free(&r->seeds);
    r->username = dup_opt(cfg->redis_username);
    r->password = dup_opt(cfg->redis_password);
    r->is_unix = false;
    r->host = r->path = NULL;
    r->port = 0;
    struct buf b = {0};
    if (cfg->n_redis_cluster) { /* the nodes are learnt from the seeds */
        hostlist_copy(&r->seeds, cfg->redis_cluster, cfg->n_redis_cluster);
        buf_printf(&b, "cluster (seed %s)", cfg->redis_cluster[0].text);
        r->addr_text = b.data;
        return;
    }
    if (cfg->n_redis_sentinels) { /* the primary is found by asking */
        hostlist_copy(&r->sen.at, cfg->redis_sentinels, cfg->n_redis_sentinels);
        r->sen.name = util_strdup(cfg->redis_master_name);
        r->sen.username = dup_opt(cfg->sentinel_username);
        r->sen.password = dup_opt(cfg->sentinel_password);
        r->sen.next = r->sen.tried = 0;
        buf_printf(&b, "primary of %s (from the sentinels)", r->sen.name);
        r->addr_text = b.data;
        return;
    }
    r->addr_text = util_strdup(a->text ? a->text : "(none)");
    r->is_unix = a->is_unix;
    r->host = util_strdup(a->host);
    r->port = a->port;
    r->path = util_strdup(a->path);
}

static struct redis *redis_alloc(struct event_base *base, long timeout_ms)
{
    struct redis *r = util_calloc(1, sizeof *r);
    r->pendings = (struct pool){.size = sizeof(struct pending), .drop = free};
    r->base = base;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->connect_timer = evtimer_new(base, on_connect_timeout, r);
    r->reconnect_timer = evtimer_new(base, on_reconnect, r);
    r->reap_ev = evtimer_new(base, on_reap, r);
    r->sen.deadline = evtimer_new(base, on_sentinel_deadline, r);
    if (!r->connect_timer || !r->reconnect_timer || !r->reap_ev || !r->sen.deadline)
        abort(); /* out of memory */
    return r;
}

static void start(struct redis *r)
{
    if (cluster_mode(r))
        cluster_start(r);
    else if (sentinel_mode(r))
        sentinel_ask(r);
    else
        conn_start(r);
}

static bool has_target(const struct config *cfg)
{
    const struct config_addr *a = &cfg->redis_address;
    return cfg->n_redis_cluster || cfg->n_redis_sentinels || (a->is_unix ? a->path : a->host);
}

struct redis *redis_new(struct event_base *base, const struct config *cfg)
{
    if (!has_target(cfg))
        return NULL;
    struct redis *r = redis_alloc(base, cfg->redis_timeout_ms);
    copy_target(r, cfg);
    start(r);
    return r;
}

void redis_free(struct redis *r)
{
    if (!r)
        return;
    r->freeing = true;
    /* Detached first: a callback run by a node's teardown that sends again
     * must fail at once, not reach a node being freed. */
    struct cluster *cl = r->cl, *cl_dying = r->cl_dying;
    r->cl = r->cl_dying = NULL;
    cluster_free(cl);
    cluster_free(cl_dying);
    redisAsyncContext *conns[4] = {r->ac, r->dying, r->sen.ac, r->sen.dying};
    r->ac = r->dying = r->sen.ac = r->sen.dying = NULL;
    for (size_t i = 0; i < UG_ARRAY_LEN(conns); i++) {
        if (conns[i]) {
            conns[i]->data = NULL;
            redisAsyncFree(conns[i]); /* in-flight callbacks get ERROR now */
        }
    }
    while (r->pending) {
        struct pending *p = r->pending;
        pending_unlink(r, p);
        event_del(&p->timer);
        call_error(p->cb, p->arg, "redis client shutting down");
        pending_release(p);
    }
    event_free(r->connect_timer);
    event_free(r->reconnect_timer);
    event_free(r->reap_ev);
    event_free(r->sen.deadline);
    free_sentinels(r);
    hostlist_free(&r->seeds);
    free(r->addr_text);
    free(r->host);
    free(r->path);
    free(r->username);
    free_secret(r->password);
    free(r->sub_channel);
    pool_clear(&r->pendings);
    free(r);
}

void redis_reconfigure(struct redis *r, const struct config *cfg)
{
    r->timeout_ms = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 1;
    if (r->cl) {
        for (size_t i = 0; i < r->cl->n_nodes; i++)
            r->cl->nodes[i].conn->timeout_ms = r->timeout_ms;
        if (r->cl->sub)
            r->cl->sub->timeout_ms = r->timeout_ms;
    }
    char *user = dup_opt(cfg->redis_username), *pass = dup_opt(cfg->redis_password);
    bool changed =
        target_differs(r, cfg) || str_differs(user, r->username) || str_differs(pass, r->password);
    free(user);
    free_secret(pass);
    if (!changed || !has_target(cfg))
        return;
    copy_target(r, cfg);
    sentinel_drop(r);
    r->sen.named = false;
    conn_drop(r);
    if (r->cl) { /* its nodes go on the next loop turn */
        cluster_free(r->cl_dying);
        r->cl_dying = r->cl;
        r->cl = NULL;
        event_active(r->reap_ev, EV_TIMEOUT, 0);
        breaker_set(r, false); /* it was its nodes' */
    }
    set_up(r, false);
    if (r->subscribed) { /* a cluster's subscriber went with it */
        r->subscribed = false;
        if (r->sub_live)
            r->sub_live(r->sub_arg, false);
    }
    r->backoff_ms = BACKOFF_MIN_MS;
    r->quiet = false;
    if (cluster_mode(r))
        cluster_start(r);
    else /* through the timer: a dropped context may still be parked in `dying` */
        schedule_reconnect(r, 0);
}

/* Queue cb for a reply. With argv NULL nothing is sent and cb gets ERROR on
 * the next loop turn; so does a command refused because the connection is
 * not up (or hiredis is tearing it down): never from inside the call. */
static void submit(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen, bool urgent)
{
    if (r->freeing) {
        call_error(cb, arg, "redis client shutting down");
        return;
    }
    struct pending *p = pool_take(&r->pendings);
    *p = (struct pending){0};
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->gen = r->gen;
    evtimer_assign(&p->timer, r->base, on_timer, p);
    pending_link(r, p);
    struct timeval tv = {0, 0};
    if (argv && r->up && r->ac && (urgent || breaker_admits(r, p))) {
        if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, argvlen) == REDIS_OK) {
            p->in_hiredis = true;
            tv = ms_tv(r->timeout_ms);
        } else if (p->probe) {
            p->probe = false;
            r->probing = false;
        }
    }
    evtimer_add(&p->timer, &tv);
}

void redis_command(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen)
{
    if (r->cl && argc > 0)
        cluster_submit(r, cb, arg, argc, argv, argvlen, false);
    else
        submit(r, cb, arg, argc, argc > 0 ? argv : NULL, argvlen, false);
}

void redis_command_urgent(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                          const size_t *argvlen)
{
    if (r->cl && argc > 0)
        cluster_submit(r, cb, arg, argc, argv, argvlen, true);
    else
        submit(r, cb, arg, argc, argc > 0 ? argv : NULL, argvlen, true);
}

size_t redis_shards(const struct redis *r)
{
    return r->cl ? r->cl->n_masters : 1;
}

void redis_command_shard(struct redis *r, size_t shard, redis_cb cb, void *arg, int argc,
                         const char **argv, const size_t *argvlen)
{
    if (!r->cl) {
        redis_command(r, cb, arg, argc, argv, argvlen);
        return;
    }
    struct cluster *cl = r->cl;
    /* The map may have shrunk since the caller counted: then it fails. */
    struct redis *n = shard < cl->n_masters ? cl->nodes[cl->masters[shard]].conn : r;
    submit(n, cb, arg, argc, n == r ? NULL : argv, argvlen, false);
}

void redis_call_soon(struct redis *r, redis_cb cb, void *arg)
{
    submit(r, cb, arg, 0, NULL, NULL, false);
}

bool redis_is_up(const struct redis *r)
{
    return r->up;
}

void redis_set_state_cb(struct redis *r, void (*cb)(void *arg, bool up), void *arg)
{
    r->state_cb = cb;
    r->state_arg = arg;
}

void redis_set_error_cb(struct redis *r, void (*cb)(void *arg, bool timeout), void *arg)
{
    r->error_cb = cb;
    r->error_arg = arg;
}

void redis_set_breaker_cb(struct redis *r, void (*cb)(void *arg, bool open), void *arg)
{
    r->breaker_cb = cb;
    r->breaker_arg = arg;
}

void redis_set_redirect_cb(struct redis *r, void (*cb)(void *arg, bool ask), void *arg)
{
    r->redirect_cb = cb;
    r->redirect_arg = arg;
}

void redis_set_primary_cb(struct redis *r, void (*cb)(void *arg), void *arg)
{
    r->primary_cb = cb;
    r->primary_arg = arg;
}

#define REDIS_STR2(x) #x
#define REDIS_STR(x) REDIS_STR2(x)
const char *redis_version(void)
{
    return "hiredis " REDIS_STR(HIREDIS_MAJOR) "." REDIS_STR(HIREDIS_MINOR) "." REDIS_STR(
        HIREDIS_PATCH);
}

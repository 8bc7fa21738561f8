/* worker: process-wide server state and per-worker state. Each worker is one
 * thread with its own event base, listeners, curl multi, Redis connection and
 * metric shard; nothing mutable is shared between workers except through
 * struct server's lock-protected fields and atomics. */
#ifndef USERGATE_WORKER_H
#define USERGATE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "twilio.h"
#include "upstream.h"
#include "util.h"

struct event_base;
struct event;
struct config;
struct metrics_shard;
struct upstream;
struct redis;
struct cache;
struct router;
struct listener;
struct worker;

struct server {
    pthread_mutex_t lock;                     /* guards cfg and default_service */
    struct config *cfg;                       /* current snapshot (a reference) */
    char default_service[TWILIO_SID_LEN + 1]; /* learned or configured; "" = unknown */
    struct worker **workers;
    size_t n_workers;
    int stopping;                  /* atomic: set once shutdown begins */
    struct upstream_limits limits; /* max_inflight / queue_size across all workers */
    struct admission *admission;   /* client rates, auth failures, connections (admission.h) */
    struct webhook_stats *webhook_stats; /* usergate_webhook_events_total (webhook.h) */
};

/* Current config snapshot with a new reference (caller unrefs). */
struct config *server_config(struct server *s);
/* Copy the default Conversation Service SID into out; false if unknown. */
bool server_default_service(struct server *s, char out[TWILIO_SID_LEN + 1]);
void server_set_default_service(struct server *s, const char *sid);

struct worker {
    struct server *srv;
    int index;
    pthread_t thread;
    struct event_base *base;
    struct config *cfg; /* this worker's snapshot (one reference) */
    struct metrics_shard *metrics;
    struct upstream *upstream;
    struct redis *redis;
    struct redis *redis_sub; /* the local tier's invalidation subscription, or NULL */
    bool redis_was_up;       /* a later "up" is a reconnect */
    struct cache *cache;
    struct router *router;
    struct listener *listener; /* owned by listener.c */
    int *listen_fds;           /* bound before the thread starts */
    size_t n_listen_fds;
    int *unix_fds;           /* worker 0: unix listeners shared with the others */
    struct event *notify_ev; /* cross-thread wake-up (config swap, shutdown) */
    int pending_flags;       /* atomic: WORKER_F_* set by main, read by the worker */
    unsigned ping, pong;     /* atomic: main's liveness probe; the loop copies ping to pong */
    uint64_t next_request_id;
    /* Access log lines of this loop turn (worker_log_lines). */
    struct buf log_batch;
    struct event *log_flush_ev;
    bool log_flush_armed;
    bool draining;         /* stop accepting; exit when no requests left */
    bool started;          /* thread running (main joins it) */
    int exited;            /* atomic: loop finished */
    struct event *exit_ev; /* main's event, activated when the loop finishes */
};

#define WORKER_F_RELOAD 1
#define WORKER_F_SHUTDOWN 2
#define WORKER_F_ABORT 4
#define WORKER_F_PING 8

/* Create a worker with its base, upstream, redis, cache, router and metric
 * shard, and bind its listeners. Returns NULL on failure (logged). */
struct worker *worker_new(struct server *srv, int index);
int worker_start(struct worker *w); /* spawn the thread */
/* Ask the worker (from any thread) to pick up the server's current config /
 * drain / abort. */
void worker_notify(struct worker *w, int flags);
void worker_join(struct worker *w);
void worker_free(struct worker *w);
/* Append whole lines ("...\n") to the returned buffer, then call
 * worker_log_commit: they are written with one write(2) as soon as the loop
 * has no other event ready (at once past 16 KiB), so a busy worker writes
 * its log in batches and an idle one without delay. */
struct buf *worker_log_lines(struct worker *w);
void worker_log_commit(struct worker *w);

#endif

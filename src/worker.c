/* worker: one event loop per thread with its own listeners, curl multi, Redis
 * connection and metric shard. The main thread talks to a worker only through
 * worker_notify (an event activated across threads) and the lock-protected
 * fields of struct server. */
#include "worker.h"

#include <event2/event.h>
#include <event2/util.h>
#include <fcntl.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "redis.h"
#include "router.h"
#include "upstream.h"

struct config *server_config(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    struct config *c = config_ref(s->cfg);
    pthread_mutex_unlock(&s->lock);
    return c;
}

bool server_default_service(struct server *s, char out[TWILIO_SID_LEN + 1])
{
    pthread_mutex_lock(&s->lock);
    memcpy(out, s->default_service, TWILIO_SID_LEN + 1);
    pthread_mutex_unlock(&s->lock);
    return out[0] != 0;
}

void server_set_default_service(struct server *s, const char *sid)
{
    pthread_mutex_lock(&s->lock);
    snprintf(s->default_service, sizeof s->default_service, "%s", sid);
    pthread_mutex_unlock(&s->lock);
}

static void redis_state(void *arg, bool up)
{
    struct worker *w = arg;
    metrics_gauge_set(w->metrics, MGAUGE_REDIS_UP, up ? 1 : 0);
    if (up && w->redis_was_up)
        metrics_inc(w->metrics, MCOUNT_REDIS_RECONNECTS);
    if (up) {
        w->redis_was_up = true;
        log_notice("worker %d: redis connected", w->index);
    } else {
        log_warn("worker %d: redis unavailable; serving from upstream", w->index);
    }
}

static void redis_error(void *arg, bool timeout)
{
    struct worker *w = arg;
    metrics_inc(w->metrics, timeout ? MCOUNT_REDIS_TIMEOUTS : MCOUNT_REDIS_ERRORS);
}

static void redis_redirect(void *arg, bool ask)
{
    struct worker *w = arg;
    metrics_inc(w->metrics, ask ? MCOUNT_REDIS_ASK : MCOUNT_REDIS_MOVED);
}

static void redis_breaker(void *arg, bool open)
{
    struct worker *w = arg;
    metrics_gauge_set(w->metrics, MGAUGE_REDIS_BREAKER, open ? 1 : 0);
    if (open)
        metrics_inc(w->metrics, MCOUNT_REDIS_BREAKER_TRIPS);
}

/* While draining, poll until the last in-flight request is answered. */
static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    if (listener_inflight(w) == 0) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = {0, 20 * 1000};
    event_base_once(w->base, -1, EV_TIMEOUT, drain_check, w, &tv);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    int flags = __atomic_exchange_n(&w->pending_flags, 0, __ATOMIC_ACQ_REL);
    if (flags & WORKER_F_PING)
        __atomic_store_n(&w->pong, __atomic_load_n(&w->ping, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    if (flags & WORKER_F_RELOAD) {
        struct config *nc = server_config(w->srv);
        struct config *old = w->cfg;
        w->cfg = nc;
        redis_reconfigure(w->redis, nc);
        if (w->redis_sub)
            redis_reconfigure(w->redis_sub, nc);
        config_unref(old); /* requests in flight keep their own reference */
    }
    if (flags & WORKER_F_ABORT) {
        listener_close_all(w);
        event_base_loopexit(w->base, NULL);
        return;
    }
    if ((flags & WORKER_F_SHUTDOWN) && !w->draining) {
        w->draining = true;
        listener_stop_accepting(w);
        drain_check(-1, 0, w);
    }
}

#define LOG_BATCH_MAX 16384
#define LOG_FLUSH_PRIORITY 2

static void log_flush(struct worker *w)
{
    if (w->log_batch.len)
        log_write(w->log_batch.data, w->log_batch.len);
    w->log_batch.len = 0;
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    (void)fd;
    (void)what;
    w->log_flush_armed = false;
    log_flush(w);
}

struct buf *worker_log_lines(struct worker *w)
{
    return &w->log_batch;
}

void worker_log_commit(struct worker *w)
{
    if (w->log_batch.len >= LOG_BATCH_MAX || !w->log_flush_ev) {
        log_flush(w);
    } else if (!w->log_flush_armed) {
        w->log_flush_armed = true;
        event_active(w->log_flush_ev, EV_TIMEOUT, 0);
    }
}

struct worker *worker_new(struct server *srv, int index)
{
    struct worker *w = util_calloc(1, sizeof *w);
    w->srv = srv;
    w->index = index;
    w->next_request_id = (uint64_t)index << 48; /* ids unique across workers */
    w->cfg = server_config(srv);
    w->base = event_base_new();
    /* Three priorities: every event gets the middle one, the log flush the last. */
    if (w->base && event_base_priority_init(w->base, LOG_FLUSH_PRIORITY + 1) < 0)
        log_warn("worker %d: no event priorities: access log lines are written per loop turn",
                 index);
    if (!w->base) {
        log_err("worker %d: cannot create event base", index);
        goto fail;
    }
    w->metrics = metrics_shard_new();
    w->upstream = upstream_new(w->base);
    w->redis = redis_new(w->base, w->cfg);
    if (!w->upstream || !w->redis) {
        log_err("worker %d: cannot create upstream or redis client", index);
        goto fail;
    }
    upstream_set_limits(w->upstream, &srv->limits);
    redis_set_state_cb(w->redis, redis_state, w);
    redis_set_error_cb(w->redis, redis_error, w);
    redis_set_breaker_cb(w->redis, redis_breaker, w);
    redis_set_redirect_cb(w->redis, redis_redirect, w);
    w->cache = cache_new(w->redis, w->base, w->metrics);
    if (w->cfg->local_entries > 0) {
        /* Each worker keeps its share of the tier and its own subscription. */
        size_t share = (size_t)w->cfg->local_entries / srv->n_workers;
        w->redis_sub = redis_new(w->base, w->cfg);
        if (!w->redis_sub) {
            log_err("worker %d: cannot create the local tier's redis client", index);
            goto fail;
        }
        cache_enable_local(w->cache, w->redis_sub, w->cfg, share ? share : 1);
    }
    w->router = router_new(w);
    w->notify_ev = event_new(w->base, -1, 0, on_notify, w);
    w->log_flush_ev = event_new(w->base, -1, 0, on_log_flush, w);
    /* The flush runs below every other event: only when the loop has nothing
     * else ready (so an idle worker logs at once and a busy one in batches). */
    event_priority_set(w->log_flush_ev, LOG_FLUSH_PRIORITY);

    /* Socket activation: systemd's sockets replace `listen` (each worker
     * accepts on its own duplicate of them). */
    int activated = notify_listen_fds();
    if (activated > 0) {
        w->listen_fds = util_calloc((size_t)activated, sizeof(int));
        for (int i = 0; i < activated; i++) {
            int fd = fcntl(3 + i, F_DUPFD_CLOEXEC, 3);
            if (fd < 0) {
                log_err("cannot use socket-activated fd %d: %m", 3 + i);
                goto fail;
            }
            evutil_make_socket_nonblocking(fd);
            w->listen_fds[w->n_listen_fds++] = fd;
        }
        return w;
    }
    w->listen_fds = util_calloc(w->cfg->n_listen, sizeof(int));
    for (size_t i = 0; i < w->cfg->n_listen; i++) {
        /* A unix socket is bound once (binding again would unlink it from
         * under the first worker); later workers accept on a duplicate. */
        int fd = -1;
        if (w->cfg->listen[i].is_unix && index > 0 && srv->workers[0])
            fd = fcntl(srv->workers[0]->unix_fds[i], F_DUPFD_CLOEXEC, 3);
        else
            fd = listener_bind(&w->cfg->listen[i]);
        if (w->cfg->listen[i].is_unix && index == 0 && fd >= 0) {
            if (!w->unix_fds)
                w->unix_fds = util_calloc(w->cfg->n_listen, sizeof(int));
            w->unix_fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        }
        if (fd < 0) {
            log_err("cannot listen on %s: %m", w->cfg->listen[i].text);
            goto fail;
        }
        w->listen_fds[w->n_listen_fds++] = fd;
    }
    return w;
fail:
    worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    for (size_t i = 0; i < w->n_listen_fds; i++) {
        if (listener_start(w, w->listen_fds[i]) < 0) {
            log_err("worker %d: cannot start listener", w->index);
            return NULL;
        }
        w->listen_fds[i] = -1; /* now owned by the listener */
    }
    if (w->index == 0)
        router_learn_default_service(w);
    event_base_dispatch(w->base);
    /* Loop over: detach anything still open so the teardown callbacks below
     * free detached requests instead of writing to dead connections. */
    listener_close_all(w);
    __atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
    if (w->exit_ev)
        event_active(w->exit_ev, EV_READ, 0);
    return NULL;
}

int worker_start(struct worker *w)
{
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        log_err("worker %d: cannot start thread", w->index);
        return -1;
    }
    w->started = true;
    return 0;
}

void worker_notify(struct worker *w, int flags)
{
    __atomic_fetch_or(&w->pending_flags, flags, __ATOMIC_ACQ_REL);
    event_active(w->notify_ev, EV_READ, 0);
}

void worker_join(struct worker *w)
{
    pthread_join(w->thread, NULL);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    /* Order matters: upstream and redis deliver their last callbacks (with
     * errors) into the router, which answers detached requests; the cache
     * answers its queued local hits into the router; the router goes last. */
    if (w->upstream)
        upstream_free(w->upstream);
    w->upstream = NULL; /* redis's last callbacks may try to go upstream: they fail */
    if (w->redis)
        redis_free(w->redis);
    if (w->redis_sub)
        redis_free(w->redis_sub);
    if (w->cache)
        cache_free(w->cache);
    if (w->router)
        router_free(w->router);
    if (w->notify_ev)
        event_free(w->notify_ev);
    log_flush(w); /* the answers of the teardown above */
    if (w->log_flush_ev)
        event_free(w->log_flush_ev);
    w->log_flush_ev = NULL;
    buf_free(&w->log_batch);
    for (size_t i = 0; i < w->n_listen_fds; i++)
        if (w->listen_fds[i] >= 0)
            close(w->listen_fds[i]);
    free(w->listen_fds);
    if (w->unix_fds)
        for (size_t i = 0; i < w->cfg->n_listen; i++)
            if (w->unix_fds[i] > 0)
                close(w->unix_fds[i]);
    free(w->unix_fds);
    if (w->metrics)
        metrics_shard_free(w->metrics);
    if (w->base)
        event_base_free(w->base);
    config_unref(w->cfg);
    free(w);
}

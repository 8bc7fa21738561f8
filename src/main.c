/* main: command line, process set-up, signals as loop events, reload and
 * shutdown. The main thread runs the control plane (signals, admin listener,
 * systemd notifications); workers run the data plane on their own threads. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "admission.h"
#include "webhook.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "redis.h"
#include "stat.h"
#include "upstream.h"
#include "worker.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "dev"
#endif
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

#define DEFAULT_CONFIG SYSCONFDIR "/usergate/usergate.conf"

struct control {
    struct server srv;
    struct event_base *base;
    struct admin *admin;
    struct event *sig_hup, *sig_term, *sig_int;
    struct event *worker_exit_ev; /* activated by workers as they finish */
    struct event *shutdown_timer;
    struct event *tick;  /* watchdog + STATUS */
    struct event *ready; /* READY=1 once Redis answered, or its first attempt ran out */
    int64_t ready_deadline_ms;
    size_t workers_running;
    bool shutting_down;
    struct metrics_summary last; /* for the request rate in STATUS= */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: usergate [-c FILE] [-t] [-V] [-h]\n"
            "       usergate -s [-1] [-i MS] [-c FILE] [ADMIN_URL]\n"
            "  -c FILE  configuration file (default %s)\n"
            "  -t       check the configuration, print every problem as FILE:LINE: message,\n"
            "           exit 0 if it is valid, 1 if not\n"
            "  -s       live view of a running usergate: requests/s, hit ratio per route,\n"
            "           upstream latency, limits, Redis; ADMIN_URL defaults to the config's\n"
            "           admin_listen, else http://127.0.0.1:9090\n"
            "  -1       with -s: print one screen (rates over one interval) and exit\n"
            "  -i MS    with -s: refresh interval in milliseconds (default 1000)\n"
            "  -V       print the version and library versions\n"
            "  -h       this help\n",
            DEFAULT_CONFIG);
}

/* usergate -s: the admin URL given, else the config's admin_listen (quietly:
 * an operator may not be able to read the secrets), else the default. */
static int stat_main(const char *path, const char *url, int n_args, bool once, long interval_ms)
{
    if (n_args > 1) {
        usage(stderr);
        return 2;
    }
    char def[300] = "http://127.0.0.1:9090";
    if (!url) {
        struct config_errors errs = {0};
        struct config *cfg = config_load(path, &errs);
        if (cfg && cfg->admin_listen.host)
            snprintf(def, sizeof def,
                     strchr(cfg->admin_listen.host, ':') ? "http://[%s]:%d" : "http://%s:%d",
                     cfg->admin_listen.host, cfg->admin_listen.port);
        config_unref(cfg);
        config_errors_free(&errs);
        url = def;
    }
    return stat_run(url, once, interval_ms);
}

static void print_version(void)
{
    printf("usergate %s\n", PACKAGE_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("%s\n", upstream_version());
    printf("%s\n", redis_version());
    printf("cJSON %s\n", cJSON_Version());
}

static void print_errors(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(stderr, "%s\n", errs->msgs[i]);
}

static void reload(struct control *ctl)
{
    notify_reloading();
    struct config *old = server_config(&ctl->srv);
    struct config_errors errs = {0};
    struct config *nc = config_load(old->path, &errs);
    struct metrics_shard *m0 = ctl->srv.workers[0]->metrics;
    if (!nc) {
        for (size_t i = 0; i < errs.n; i++)
            log_err("reload: %s", errs.msgs[i]);
        log_err("reload failed: keeping the running configuration");
        metrics_inc(m0, MCOUNT_CONFIG_RELOADS_FAILED);
    } else {
        struct config_errors restart = {0};
        config_restart_needed(old, nc, &restart);
        for (size_t i = 0; i < restart.n; i++)
            log_warn("reload: %s", restart.msgs[i]);
        config_errors_free(&restart);
        pthread_mutex_lock(&ctl->srv.lock);
        struct config *prev = ctl->srv.cfg;
        ctl->srv.cfg = nc;
        if (nc->default_service_sid)
            snprintf(ctl->srv.default_service, sizeof ctl->srv.default_service, "%s",
                     nc->default_service_sid);
        pthread_mutex_unlock(&ctl->srv.lock);
        config_unref(prev);
        log_set_level(nc->log_level);
        admin_reconfigure(ctl->admin, nc);
        for (size_t i = 0; i < ctl->srv.n_workers; i++)
            worker_notify(ctl->srv.workers[i], WORKER_F_RELOAD);
        metrics_inc(m0, MCOUNT_CONFIG_RELOADS_OK);
        log_notice("configuration reloaded from %s", nc->path);
    }
    config_errors_free(&errs);
    config_unref(old);
    notify_ready();
}

static void shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    log_warn("shutdown timeout: closing the remaining connections");
    for (size_t i = 0; i < ctl->srv.n_workers; i++)
        worker_notify(ctl->srv.workers[i], WORKER_F_ABORT);
}

static void begin_shutdown(struct control *ctl, const char *why)
{
    if (ctl->shutting_down) {
        log_notice("%s again: exiting now", why);
        for (size_t i = 0; i < ctl->srv.n_workers; i++)
            worker_notify(ctl->srv.workers[i], WORKER_F_ABORT);
        return;
    }
    ctl->shutting_down = true;
    __atomic_store_n(&ctl->srv.stopping, 1, __ATOMIC_RELEASE);
    notify_stopping();
    struct config *c = server_config(&ctl->srv);
    log_notice("%s: draining (up to %ld ms)", why, c->shutdown_timeout_ms);
    struct timeval tv = {c->shutdown_timeout_ms / 1000, (c->shutdown_timeout_ms % 1000) * 1000};
    config_unref(c);
    ctl->shutdown_timer = evtimer_new(ctl->base, shutdown_timeout, ctl);
    evtimer_add(ctl->shutdown_timer, &tv);
    for (size_t i = 0; i < ctl->srv.n_workers; i++)
        worker_notify(ctl->srv.workers[i], WORKER_F_SHUTDOWN);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct control *ctl = arg;
    (void)what;
    if (sig == SIGHUP) {
        if (!ctl->shutting_down)
            reload(ctl);
        return;
    }
    begin_shutdown(ctl, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* A worker thread finished its loop (activated from that thread). */
static void on_worker_exit(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    size_t alive = 0;
    for (size_t i = 0; i < ctl->srv.n_workers; i++)
        if (!__atomic_load_n(&ctl->srv.workers[i]->exited, __ATOMIC_ACQUIRE))
            alive++;
    if (alive == 0)
        event_base_loopexit(ctl->base, NULL);
}

/* READY=1 waits for the first Redis attempt (so a unit ordered after
 * usergate starts with a warm path), but never longer than that attempt's
 * connect timeout: Redis is an accelerator, not a dependency. */
static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    struct metrics_shard *shards[64];
    size_t n = ctl->srv.n_workers < 64 ? ctl->srv.n_workers : 64;
    for (size_t i = 0; i < n; i++)
        shards[i] = ctl->srv.workers[i]->metrics;
    bool up = metrics_gauge_value(shards, n, MGAUGE_REDIS_UP) == 1;
    if (!up && util_now_ms() < ctl->ready_deadline_ms)
        return;
    if (!up)
        log_warn("redis not reachable yet; serving from upstream meanwhile");
    event_del(ctl->ready);
    notify_ready();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct control *ctl = arg;
    (void)fd;
    (void)what;
    /* The watchdog vouches for every loop, not just this one: each worker
     * must have answered the previous tick's ping. */
    bool alive = true;
    for (size_t i = 0; i < ctl->srv.n_workers; i++) {
        struct worker *w = ctl->srv.workers[i];
        if (!__atomic_load_n(&w->exited, __ATOMIC_ACQUIRE) &&
            __atomic_load_n(&w->pong, __ATOMIC_ACQUIRE) != w->ping) {
            log_err("worker %d has not turned its event loop since the last tick; "
                    "withholding the watchdog ping",
                    w->index);
            alive = false;
        }
    }
    if (alive)
        notify_watchdog();
    for (size_t i = 0; i < ctl->srv.n_workers; i++) {
        struct worker *w = ctl->srv.workers[i];
        __atomic_store_n(&w->ping, w->ping + 1, __ATOMIC_RELEASE);
        worker_notify(w, WORKER_F_PING);
    }
    struct metrics_shard *shards[64];
    size_t n = ctl->srv.n_workers < 64 ? ctl->srv.n_workers : 64;
    for (size_t i = 0; i < n; i++)
        shards[i] = ctl->srv.workers[i]->metrics;
    struct metrics_summary s;
    metrics_summarize(shards, n, &s);
    uint64_t lookups = s.hits + s.misses;
    char status[160];
    snprintf(status, sizeof status, "%.1f req/s, hit ratio %.1f%% (%llu requests)",
             (double)(s.requests - ctl->last.requests) / 2.0,
             lookups ? 100.0 * (double)s.hits / (double)lookups : 0.0,
             (unsigned long long)s.requests);
    ctl->last = s;
    notify_status(status);
}

/* Every connection is a descriptor: take the hard limit, and say whether
 * max_connections fits in it (with room for Redis, upstream and admin). */
static void raise_nofile(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    unsigned long long need =
        (unsigned long long)cfg->max_connections + (unsigned long long)cfg->admin_max_connections +
        (unsigned long long)cfg->max_inflight + 64ULL * (unsigned)cfg->workers;
    log_notice("file descriptors: %llu (max_connections %ld)", (unsigned long long)rl.rlim_cur,
               cfg->max_connections);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_warn("file descriptor limit %llu is below max_connections + admin + upstream (%llu): "
                 "raise LimitNOFILE= (systemd) or ulimit -n, or lower max_connections",
                 (unsigned long long)rl.rlim_cur, need);
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    bool check_only = false;
    bool stat = false, once = false;
    long interval_ms = 1000;
    int opt;
    while ((opt = getopt(argc, argv, "c:tsi:1Vh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 's':
            stat = true;
            break;
        case '1':
            once = true;
            break;
        case 'i':
            if (!util_parse_long(optarg, 100, 3600000, &interval_ms)) {
                fprintf(stderr, "usergate: -i wants milliseconds (100..3600000)\n");
                return 2;
            }
            break;
        case 'V':
            print_version();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (stat)
        return stat_main(path, optind < argc ? argv[optind] : NULL, argc - optind, once,
                         interval_ms);
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    log_init();
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        print_errors(&errs);
        if (!check_only)
            fprintf(stderr, "usergate: refusing to start with an invalid configuration\n");
        config_errors_free(&errs);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK\n", path);
        config_unref(cfg);
        return 0;
    }
    log_set_level(cfg->log_level);

    signal(SIGPIPE, SIG_IGN);
    raise_nofile(cfg);
    if (evthread_use_pthreads() < 0 || upstream_global_init() < 0) {
        log_err("cannot initialise libevent threads or libcurl");
        return 1;
    }

    static struct control ctl;
    pthread_mutex_init(&ctl.srv.lock, NULL);
    ctl.srv.cfg = cfg;
    ctl.srv.admission = admission_new();
    ctl.srv.webhook_stats = webhook_stats_new();
    if (cfg->default_service_sid)
        snprintf(ctl.srv.default_service, sizeof ctl.srv.default_service, "%s",
                 cfg->default_service_sid);
    ctl.base = event_base_new();
    ctl.srv.n_workers = (size_t)cfg->workers;
    ctl.srv.workers = util_calloc(ctl.srv.n_workers, sizeof *ctl.srv.workers);
    ctl.worker_exit_ev = event_new(ctl.base, -1, EV_PERSIST, on_worker_exit, &ctl);
    int rc = 1;
    for (size_t i = 0; i < ctl.srv.n_workers; i++) {
        ctl.srv.workers[i] = worker_new(&ctl.srv, (int)i);
        if (!ctl.srv.workers[i])
            goto out;
        ctl.srv.workers[i]->exit_ev = ctl.worker_exit_ev;
    }
    if (cfg->admin_listen.text) {
        ctl.admin = admin_start(ctl.base, &ctl.srv);
        if (!ctl.admin)
            goto out;
    }
    ctl.sig_hup = evsignal_new(ctl.base, SIGHUP, on_signal, &ctl);
    ctl.sig_term = evsignal_new(ctl.base, SIGTERM, on_signal, &ctl);
    ctl.sig_int = evsignal_new(ctl.base, SIGINT, on_signal, &ctl);
    evsignal_add(ctl.sig_hup, NULL);
    evsignal_add(ctl.sig_term, NULL);
    evsignal_add(ctl.sig_int, NULL);
    for (size_t i = 0; i < ctl.srv.n_workers; i++)
        if (worker_start(ctl.srv.workers[i]) < 0)
            goto out; /* threads already started are aborted below */

    uint64_t wd = notify_watchdog_usec();
    struct timeval tick = {2, 0};
    if (wd && wd / 2 < 2000000) {
        tick.tv_sec = (time_t)(wd / 2 / 1000000);
        tick.tv_usec = (suseconds_t)(wd / 2 % 1000000);
    }
    ctl.tick = event_new(ctl.base, -1, EV_PERSIST, on_tick, &ctl);
    event_add(ctl.tick, &tick);

    for (size_t i = 0; i < cfg->n_listen; i++)
        log_notice("usergate %s listening on %s", PACKAGE_VERSION, cfg->listen[i].text);
    if (cfg->demo)
        log_warn("DEMO MODE: the upstream is the bundled mock Twilio at %s, not Twilio; answers "
                 "carry X-Usergate-Upstream: demo",
                 cfg->conversations_url);
    struct buf redis_text = {0};
    if (cfg->n_redis_cluster) {
        buf_puts(&redis_text, "cluster from seeds ");
        for (size_t i = 0; i < cfg->n_redis_cluster; i++)
            buf_printf(&redis_text, "%s%s", i ? ", " : "", cfg->redis_cluster[i].text);
    } else if (cfg->n_redis_sentinels) {
        buf_printf(&redis_text, "primary of %s from sentinels ", cfg->redis_master_name);
        for (size_t i = 0; i < cfg->n_redis_sentinels; i++)
            buf_printf(&redis_text, "%s%s", i ? ", " : "", cfg->redis_sentinels[i].text);
    } else {
        buf_puts(&redis_text, cfg->redis_address.text);
    }
    log_notice("configuration %s; redis %s; upstream %s and %s; %d worker%s%s", cfg->path,
               redis_text.data, cfg->conversations_url, cfg->chat_url, cfg->workers,
               cfg->workers == 1 ? "" : "s", cfg->local_entries > 0 ? "; local tier on" : "");
    buf_free(&redis_text);
    /* redis.c's connect timeout, twice with Sentinel (ask, then connect) or
     * Cluster (the map, then the masters) */
    long redis_ms =
        cfg->redis_timeout_ms * 4 * (cfg->n_redis_sentinels || cfg->n_redis_cluster ? 2 : 1);
    ctl.ready_deadline_ms = util_now_ms() + (redis_ms < 1000 ? 1000 : redis_ms);
    ctl.ready = event_new(ctl.base, -1, EV_PERSIST, on_ready_check, &ctl);
    struct timeval ready_tv = {0, 20 * 1000};
    event_add(ctl.ready, &ready_tv);
    event_base_dispatch(ctl.base);
    rc = 0;

out:
    for (size_t i = 0; i < ctl.srv.n_workers; i++) {
        struct worker *w = ctl.srv.workers[i];
        if (w && w->started) {
            worker_notify(w, WORKER_F_ABORT);
            worker_join(w);
        }
    }
    if (ctl.admin)
        admin_stop(ctl.admin);
    for (size_t i = 0; i < ctl.srv.n_workers; i++)
        worker_free(ctl.srv.workers[i]);
    free(ctl.srv.workers);
    admission_free(ctl.srv.admission);
    webhook_stats_free(ctl.srv.webhook_stats);
    struct event *evs[] = {ctl.sig_hup,        ctl.sig_term, ctl.sig_int, ctl.worker_exit_ev,
                           ctl.shutdown_timer, ctl.tick,     ctl.ready};
    for (size_t i = 0; i < UG_ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    event_base_free(ctl.base);
    config_unref(ctl.srv.cfg);
    upstream_global_cleanup();
    libevent_global_shutdown();
    if (rc == 0)
        log_notice("stopped");
    return rc;
}

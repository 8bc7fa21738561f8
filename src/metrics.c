/* metrics: every metric family declared once in the tables below with its
 * help text. Each worker owns a shard and is its only writer (relaxed atomic
 * adds); the admin thread sums the shards and renders Prometheus text. */
#include "metrics.h"

#include <stdlib.h>
#include <string.h>

#define CODES 600 /* HTTP status codes 0..599; 0 = transport failure */

static const double buckets_s[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS UG_ARRAY_LEN(buckets_s)

struct hist {
    uint64_t bucket[NBUCKETS]; /* non-cumulative; +Inf is count */
    uint64_t count;
    uint64_t sum_us;
};

struct metrics_shard {
    uint64_t requests[ROUTE_COUNT][CODES];
    struct hist request_duration[ROUTE_COUNT];
    uint64_t cache[ROUTE_COUNT][MC_COUNT];
    uint64_t upstream[API_COUNT][CODES];
    struct hist upstream_duration[API_COUNT];
    uint64_t counters[MCOUNT_COUNT];
    int64_t gauges[MGAUGE_COUNT];
};

static const char *const cache_results[MC_COUNT] = {"hit",    "miss",  "stale",    "negative_hit",
                                                    "bypass", "error", "coalesced"};
static const char *const api_names[API_COUNT] = {"conversations", "chat"};

#define LOCK_HELP                                                                                  \
    "Cross-instance fetch locks: acquired, served (another fetch filled the cache while we "       \
    "waited), timeout (waited too long, fetched anyway), overflow (too many waiting)."

/* Unlabelled counters: rows with the same family render under one HELP/TYPE. */
static const struct {
    const char *family, *labels, *help;
} counters[MCOUNT_COUNT] = {
    [MCOUNT_REDIS_ERRORS] = {"usergate_redis_errors_total", "kind=\"error\"",
                             "Redis commands that failed, by kind."},
    [MCOUNT_REDIS_TIMEOUTS] = {"usergate_redis_errors_total", "kind=\"timeout\"",
                               "Redis commands that failed, by kind."},
    [MCOUNT_REDIS_RECONNECTS] = {"usergate_redis_reconnects_total", NULL,
                                 "Redis connections re-established after a loss."},
    [MCOUNT_REDIS_MOVED] = {"usergate_redis_redirects_total", "kind=\"moved\"",
                            "Redis Cluster redirections followed, by kind."},
    [MCOUNT_REDIS_ASK] = {"usergate_redis_redirects_total", "kind=\"ask\"",
                          "Redis Cluster redirections followed, by kind."},
    [MCOUNT_REDIS_BREAKER_TRIPS] = {"usergate_redis_breaker_trips_total", NULL,
                                    "Times repeated Redis failures opened the circuit breaker."},
    [MCOUNT_INVALIDATIONS] = {"usergate_cache_invalidations_total", NULL,
                              "Users whose cache keys were invalidated after a write."},
    [MCOUNT_CACHE_STORES] = {"usergate_cache_stores_total", NULL,
                             "Upstream fetch results written to the cache."},
    [MCOUNT_LOCK_ACQUIRED] = {"usergate_cache_lock_total", "result=\"acquired\"", LOCK_HELP},
    [MCOUNT_LOCK_SERVED] = {"usergate_cache_lock_total", "result=\"served\"", LOCK_HELP},
    [MCOUNT_LOCK_TIMEOUT] = {"usergate_cache_lock_total", "result=\"timeout\"", LOCK_HELP},
    [MCOUNT_LOCK_OVERFLOW] = {"usergate_cache_lock_total", "result=\"overflow\"", LOCK_HELP},
    [MCOUNT_PURGES] = {"usergate_cache_purges_total", NULL,
                       "Admin purges (one user or a whole service) carried out."},
    [MCOUNT_UPSTREAM_RETRIES] = {"usergate_upstream_retries_total", NULL,
                                 "Upstream requests retried."},
    [MCOUNT_UPSTREAM_THROTTLED] = {"usergate_upstream_throttled_total", NULL,
                                   "429 answers received from Twilio."},
    [MCOUNT_UPSTREAM_PACED] = {"usergate_upstream_paced_total", NULL,
                               "Writes that waited for their service's write pacing."},
    [MCOUNT_UPSTREAM_PACE_REFUSED] = {"usergate_upstream_pace_refused_total", NULL,
                                      "Writes refused (429) because their service was over "
                                      "writes_per_second for longer than queue_timeout_ms."},
    [MCOUNT_CONN_REFUSED_TOTAL] = {"usergate_connections_refused_total", "reason=\"total\"",
                                   "Client connections refused (503) over max_connections or "
                                   "max_connections_per_ip."},
    [MCOUNT_CONN_REFUSED_PER_IP] = {"usergate_connections_refused_total", "reason=\"per_ip\"",
                                    "Client connections refused (503) over max_connections or "
                                    "max_connections_per_ip."},
    [MCOUNT_INVALIDATIONS_RETRIED] = {"usergate_invalidations_retried_total", NULL,
                                      "Queued invalidations sent again after Redis failed them."},
    [MCOUNT_INVALIDATIONS_REPLAYED] = {"usergate_invalidations_replayed_total", NULL,
                                       "Recent invalidations sent again to a new primary after a "
                                       "Sentinel failover (the old one may not have replicated "
                                       "them)."},
    [MCOUNT_REDIS_PRIMARY_CHANGES] = {"usergate_redis_primary_changes_total", NULL,
                                      "Failovers seen: the sentinels named another primary, or a "
                                      "node that was not a master took cluster slots (per "
                                      "worker)."},
    [MCOUNT_INVALIDATIONS_DROPPED] = {"usergate_invalidations_dropped_total", NULL,
                                      "Invalidations lost because the retry queue "
                                      "(invalidation_queue) was full."},
    [MCOUNT_DEFAULT_SERVICE_MISMATCH] = {"usergate_default_service_mismatch_total", NULL,
                                         "Writes through /v1/Users whose answer named another "
                                         "service than the default usergate resolved, and "
                                         "re-learnings that found the default changed."},
    [MCOUNT_HEADER_TIMEOUTS] = {"usergate_request_timeouts_total", "phase=\"header\"",
                                "Requests not received within header_timeout_ms or "
                                "body_timeout_ms (408), by phase."},
    [MCOUNT_BODY_TIMEOUTS] = {"usergate_request_timeouts_total", "phase=\"body\"",
                              "Requests not received within header_timeout_ms or "
                              "body_timeout_ms (408), by phase."},
    [MCOUNT_AUTH_FAILURES] = {"usergate_auth_failures_total", NULL,
                              "Client requests refused for missing or wrong credentials."},
    [MCOUNT_LOCAL_HITS] = {"usergate_local_hits_total", NULL,
                           "Fetches answered from the in-process local tier (also counted as "
                           "cache hits)."},
    [MCOUNT_LOCAL_INVALIDATIONS] = {"usergate_local_invalidations_total", NULL,
                                    "Invalidation messages received from Redis by the local "
                                    "tier (every instance's writes, purges and events)."},
    [MCOUNT_LOCAL_FLUSHES] = {"usergate_local_flushes_total", NULL,
                              "Times the local tier was emptied because its invalidation "
                              "subscription was lost or (re)confirmed."},
    [MCOUNT_WEBHOOK_SIGNATURE_FAILURES] = {"usergate_webhook_signature_failures_total", NULL,
                                           "Deliveries to the webhook path refused (403) for a "
                                           "missing or wrong X-Twilio-Signature."},
    [MCOUNT_CONFIG_RELOADS_OK] = {"usergate_config_reloads_total", "result=\"ok\"",
                                  "Configuration reloads, by result."},
    [MCOUNT_CONFIG_RELOADS_FAILED] = {"usergate_config_reloads_total", "result=\"failed\"",
                                      "Configuration reloads, by result."},
};

static const struct {
    const char *name, *help;
} gauges[MGAUGE_COUNT] = {
    [MGAUGE_REDIS_UP] = {"usergate_redis_up",
                         "1 when every worker's Redis connection is up, else 0."},
    [MGAUGE_REDIS_BREAKER] = {"usergate_redis_breaker_open",
                              "Workers whose Redis circuit breaker is open (Redis skipped)."},
    [MGAUGE_CONNECTIONS] = {"usergate_connections", "Open client connections."},
    [MGAUGE_UPSTREAM_INFLIGHT] = {"usergate_upstream_inflight", "Upstream requests in flight."},
    [MGAUGE_UPSTREAM_QUEUE] = {"usergate_upstream_queue_depth",
                               "Requests waiting for an upstream slot."},
    [MGAUGE_LOCAL_ENTRIES] = {"usergate_local_entries", "Items in the local tier."},
    [MGAUGE_LOCAL_UP] = {"usergate_local_up",
                         "Workers whose local tier is in use (subscribed to invalidations)."},
    [MGAUGE_INVALIDATIONS_PENDING] = {"usergate_invalidations_pending",
                                      "Invalidations Redis has not taken yet, queued for "
                                      "retry (and hold ends to re-invalidate)."},
};

/* The labelled families, in render order. */
enum family_id {
    F_REQUESTS,
    F_REQUEST_DURATION,
    F_CACHE_LOOKUPS,
    F_HIT_RATIO,
    F_UPSTREAM_REQUESTS,
    F_UPSTREAM_DURATION,
    F_BUILD_INFO,
    F_CLIENT_THROTTLED,
    F_WEBHOOK_EVENTS,
    F_COUNT
};
static const struct {
    const char *name, *type, *help;
} families[F_COUNT] = {
    [F_REQUESTS] = {"usergate_requests_total", "counter",
                    "Client requests answered, by route and status code."},
    [F_REQUEST_DURATION] = {"usergate_request_duration_seconds", "histogram",
                            "Time from request parsed to response queued, by route."},
    [F_CACHE_LOOKUPS] = {"usergate_cache_lookups_total", "counter",
                         "Cache lookups on fetch routes, by route and result."},
    [F_HIT_RATIO] = {"usergate_cache_hit_ratio", "gauge",
                     "(hit + negative_hit + stale) / (those + miss) since start, by route."},
    [F_UPSTREAM_REQUESTS] =
        {"usergate_upstream_requests_total", "counter",
         "Requests sent to Twilio, by API and status code (error = no HTTP answer)."},
    [F_UPSTREAM_DURATION] = {"usergate_upstream_duration_seconds", "histogram",
                             "Twilio request duration, by API."},
    [F_CLIENT_THROTTLED] = {"usergate_client_throttled_total", "counter",
                            "429 answers given to clients by usergate, by client and reason "
                            "(rate, auth, inflight, pacing); client=\"-\" before authentication."},
    [F_WEBHOOK_EVENTS] = {"usergate_webhook_events_total", "counter",
                          "Events received from Twilio (signature valid), by source "
                          "(conversations, chat, eventstreams), event type and result "
                          "(invalidated, queued, uncached, ignored, foreign_account, malformed, "
                          "failed)."},
    [F_BUILD_INFO] = {"usergate_build_info", "gauge",
                      "Always 1; the version label names the build, upstream is twilio or "
                      "demo (the bundled mock Twilio)."},
};

struct metrics_shard *metrics_shard_new(void)
{
    return util_calloc(1, sizeof(struct metrics_shard));
}

void metrics_shard_free(struct metrics_shard *s)
{
    free(s);
}

const char *metrics_cache_result_name(enum metric_cache_result r)
{
    return (unsigned)r < MC_COUNT ? cache_results[r] : "unknown";
}

static void add(uint64_t *cell, uint64_t v)
{
    __atomic_fetch_add(cell, v, __ATOMIC_RELAXED);
}

static uint64_t load(const uint64_t *cell)
{
    return __atomic_load_n(cell, __ATOMIC_RELAXED);
}

static void hist_observe(struct hist *h, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    double s = (double)ms / 1000.0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (s <= buckets_s[i]) {
            add(&h->bucket[i], 1);
            break;
        }
    }
    add(&h->count, 1);
    add(&h->sum_us, (uint64_t)ms * 1000);
}

static int clamp_code(int code)
{
    return code >= 0 && code < CODES ? code : 0;
}

void metrics_request(struct metrics_shard *s, enum route_id r, int code, int64_t duration_ms)
{
    if ((unsigned)r >= ROUTE_COUNT)
        r = ROUTE_NONE;
    add(&s->requests[r][clamp_code(code)], 1);
    hist_observe(&s->request_duration[r], duration_ms);
}

void metrics_cache(struct metrics_shard *s, enum route_id r, enum metric_cache_result res)
{
    if ((unsigned)r < ROUTE_COUNT && (unsigned)res < MC_COUNT)
        add(&s->cache[r][res], 1);
}

void metrics_upstream(struct metrics_shard *s, enum metric_api api, int code, int64_t duration_ms)
{
    if ((unsigned)api >= API_COUNT)
        return;
    add(&s->upstream[api][clamp_code(code)], 1);
    hist_observe(&s->upstream_duration[api], duration_ms);
}

void metrics_inc(struct metrics_shard *s, enum metric_counter c)
{
    if ((unsigned)c < MCOUNT_COUNT)
        add(&s->counters[c], 1);
}

void metrics_gauge_set(struct metrics_shard *s, enum metric_gauge g, int64_t v)
{
    if ((unsigned)g < MGAUGE_COUNT)
        __atomic_store_n(&s->gauges[g], v, __ATOMIC_RELAXED);
}

int64_t metrics_gauge_value(struct metrics_shard *const *shards, size_t n, enum metric_gauge g)
{
    if (g == MGAUGE_REDIS_UP) {
        if (n == 0)
            return 0;
        int64_t v = 1;
        for (size_t i = 0; i < n; i++)
            if (__atomic_load_n(&shards[i]->gauges[g], __ATOMIC_RELAXED) < v)
                v = __atomic_load_n(&shards[i]->gauges[g], __ATOMIC_RELAXED);
        return v;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v += __atomic_load_n(&shards[i]->gauges[g], __ATOMIC_RELAXED);
    return v;
}

/* Sum every counter cell of the shards into one plain struct. */
static void sum_cells(uint64_t *dst, const uint64_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += load(&src[i]);
}

static struct metrics_shard *aggregate(struct metrics_shard *const *shards, size_t n)
{
    struct metrics_shard *a = metrics_shard_new();
    for (size_t i = 0; i < n; i++) {
        const struct metrics_shard *s = shards[i];
        sum_cells(&a->requests[0][0], &s->requests[0][0], ROUTE_COUNT * CODES);
        sum_cells((uint64_t *)a->request_duration, (const uint64_t *)s->request_duration,
                  (sizeof(a->request_duration)) / (sizeof(uint64_t)));
        sum_cells(&a->cache[0][0], &s->cache[0][0], ROUTE_COUNT * MC_COUNT);
        sum_cells(&a->upstream[0][0], &s->upstream[0][0], API_COUNT * CODES);
        sum_cells((uint64_t *)a->upstream_duration, (const uint64_t *)s->upstream_duration,
                  (sizeof(a->upstream_duration)) / (sizeof(uint64_t)));
        sum_cells(a->counters, s->counters, MCOUNT_COUNT);
    }
    for (int g = 0; g < MGAUGE_COUNT; g++)
        a->gauges[g] = metrics_gauge_value(shards, n, (enum metric_gauge)g);
    return a;
}

/* Label values come from fixed tables, but escape anyway: the format demands it. */
void metrics_label_value(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, v, 1);
    }
}

static void header(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_hist(struct buf *out, const char *name, const char *label, const char *value,
                        const struct hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += h->bucket[i];
        buf_printf(out, "%s_bucket{%s=\"", name, label);
        metrics_label_value(out, value);
        buf_printf(out, "\",le=\"%g\"} %llu\n", buckets_s[i], (unsigned long long)cum);
    }
    buf_printf(out, "%s_bucket{%s=\"", name, label);
    metrics_label_value(out, value);
    buf_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
    buf_printf(out, "%s_sum{%s=\"", name, label);
    metrics_label_value(out, value);
    buf_printf(out, "\"} %.6f\n", (double)h->sum_us / 1e6);
    buf_printf(out, "%s_count{%s=\"", name, label);
    metrics_label_value(out, value);
    buf_printf(out, "\"} %llu\n", (unsigned long long)h->count);
}

static void render_codes(struct buf *out, const char *name, const char *label, const char *value,
                         const uint64_t *codes)
{
    for (int c = 0; c < CODES; c++) {
        if (!codes[c])
            continue;
        buf_printf(out, "%s{%s=\"", name, label);
        metrics_label_value(out, value);
        if (c == 0)
            buf_printf(out, "\",code=\"error\"} %llu\n", (unsigned long long)codes[c]);
        else
            buf_printf(out, "\",code=\"%d\"} %llu\n", c, (unsigned long long)codes[c]);
    }
}

static bool hits_misses(const struct metrics_shard *a, int r, uint64_t *hits, uint64_t *misses)
{
    *hits = a->cache[r][MC_HIT] + a->cache[r][MC_NEGATIVE_HIT] + a->cache[r][MC_STALE];
    *misses = a->cache[r][MC_MISS];
    return *hits + *misses > 0;
}

void metrics_render(struct buf *out, struct metrics_shard *const *shards, size_t n,
                    const char *version, const struct metrics_external *ext)
{
    struct metrics_shard *a = aggregate(shards, n);
    for (int f = 0; f < F_COUNT; f++) {
        const char *name = families[f].name;
        header(out, name, families[f].type, families[f].help);
        for (int r = 0; r < ROUTE_COUNT; r++) {
            const char *route = route_label((enum route_id)r);
            uint64_t hits, misses;
            switch (f) {
            case F_REQUESTS:
                render_codes(out, name, "route", route, a->requests[r]);
                break;
            case F_REQUEST_DURATION:
                if (a->request_duration[r].count)
                    render_hist(out, name, "route", route, &a->request_duration[r]);
                break;
            case F_CACHE_LOOKUPS:
                for (int res = 0; res < MC_COUNT; res++) {
                    if (!a->cache[r][res])
                        continue;
                    buf_printf(out, "%s{route=\"", name);
                    metrics_label_value(out, route);
                    buf_printf(out, "\",result=\"%s\"} %llu\n", cache_results[res],
                               (unsigned long long)a->cache[r][res]);
                }
                break;
            case F_HIT_RATIO:
                if (hits_misses(a, r, &hits, &misses)) {
                    buf_printf(out, "%s{route=\"", name);
                    metrics_label_value(out, route);
                    buf_printf(out, "\"} %.6f\n", (double)hits / (double)(hits + misses));
                }
                break;
            default:
                break;
            }
        }
        for (int api = 0; api < API_COUNT; api++) {
            if (f == F_UPSTREAM_REQUESTS)
                render_codes(out, name, "api", api_names[api], a->upstream[api]);
            else if (f == F_UPSTREAM_DURATION && a->upstream_duration[api].count)
                render_hist(out, name, "api", api_names[api], &a->upstream_duration[api]);
        }
        if (f == F_CLIENT_THROTTLED && ext && ext->throttled)
            buf_puts(out, ext->throttled);
        if (f == F_WEBHOOK_EVENTS && ext && ext->webhook_events)
            buf_puts(out, ext->webhook_events);
        if (f == F_BUILD_INFO) {
            buf_printf(out, "%s{version=\"", name);
            metrics_label_value(out, version);
            buf_puts(out, "\",upstream=\"");
            metrics_label_value(out, ext && ext->upstream ? ext->upstream : "twilio");
            buf_puts(out, "\"} 1\n");
        }
    }
    for (int c = 0; c < MCOUNT_COUNT; c++) {
        if (c == 0 || strcmp(counters[c].family, counters[c - 1].family) != 0)
            header(out, counters[c].family, "counter", counters[c].help);
        if (counters[c].labels)
            buf_printf(out, "%s{%s} %llu\n", counters[c].family, counters[c].labels,
                       (unsigned long long)a->counters[c]);
        else
            buf_printf(out, "%s %llu\n", counters[c].family, (unsigned long long)a->counters[c]);
    }
    for (int g = 0; g < MGAUGE_COUNT; g++) {
        header(out, gauges[g].name, "gauge", gauges[g].help);
        buf_printf(out, "%s %lld\n", gauges[g].name, (long long)a->gauges[g]);
    }
    free(a);
}

void metrics_summarize(struct metrics_shard *const *shards, size_t n, struct metrics_summary *out)
{
    struct metrics_shard *a = aggregate(shards, n);
    memset(out, 0, sizeof *out);
    for (int r = 0; r < ROUTE_COUNT; r++) {
        for (int c = 0; c < CODES; c++)
            out->requests += a->requests[r][c];
        uint64_t hits, misses;
        hits_misses(a, r, &hits, &misses);
        out->hits += hits;
        out->misses += misses;
    }
    free(a);
}

void metrics_names(struct buf *out)
{
    for (int f = 0; f < F_COUNT; f++)
        buf_printf(out, "%s\n", families[f].name);
    for (int c = 0; c < MCOUNT_COUNT; c++)
        if (c == 0 || strcmp(counters[c].family, counters[c - 1].family) != 0)
            buf_printf(out, "%s\n", counters[c].family);
    for (int g = 0; g < MGAUGE_COUNT; g++)
        buf_printf(out, "%s\n", gauges[g].name);
}

/* metrics: every metric declared once in a table (metrics.c) with its help
 * text; one shard per worker updated without locks (relaxed atomic adds; the
 * main thread also adds its few counters, reloads and purges, to shard 0),
 * summed when /metrics is rendered on the admin thread. Rendering is a pure function of the shards
 * (unit-tested). */
#ifndef USERGATE_METRICS_H
#define USERGATE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"
#include "util.h"

/* usergate_cache_lookups_total{result} */
enum metric_cache_result {
    MC_HIT = 0,
    MC_MISS,
    MC_STALE,
    MC_NEGATIVE_HIT,
    MC_BYPASS,
    MC_ERROR,
    MC_COALESCED,
    MC_COUNT
};
const char *metrics_cache_result_name(enum metric_cache_result r); /* "hit", "miss", … */

/* usergate_upstream_*{api} */
enum metric_api { API_CONVERSATIONS = 0, API_CHAT, API_COUNT };

/* Unlabelled (or fixed-label) counters. */
enum metric_counter {
    MCOUNT_REDIS_ERRORS = 0,      /* usergate_redis_errors_total{kind="error"} */
    MCOUNT_REDIS_TIMEOUTS,        /* usergate_redis_errors_total{kind="timeout"} */
    MCOUNT_REDIS_RECONNECTS,      /* usergate_redis_reconnects_total */
    MCOUNT_REDIS_BREAKER_TRIPS,   /* usergate_redis_breaker_trips_total */
    MCOUNT_REDIS_MOVED,           /* usergate_redis_redirects_total{kind="moved"} */
    MCOUNT_REDIS_ASK,             /* usergate_redis_redirects_total{kind="ask"} */
    MCOUNT_INVALIDATIONS,         /* usergate_cache_invalidations_total */
    MCOUNT_CACHE_STORES,          /* usergate_cache_stores_total */
    MCOUNT_LOCK_ACQUIRED,         /* usergate_cache_lock_total{result="acquired"} */
    MCOUNT_LOCK_SERVED,           /* usergate_cache_lock_total{result="served"} (another fetched) */
    MCOUNT_LOCK_TIMEOUT,          /* usergate_cache_lock_total{result="timeout"} */
    MCOUNT_LOCK_OVERFLOW,         /* usergate_cache_lock_total{result="overflow"} */
    MCOUNT_PURGES,                /* usergate_cache_purges_total */
    MCOUNT_UPSTREAM_RETRIES,      /* usergate_upstream_retries_total */
    MCOUNT_UPSTREAM_THROTTLED,    /* usergate_upstream_throttled_total (429 from Twilio) */
    MCOUNT_UPSTREAM_PACED,        /* usergate_upstream_paced_total (writes that waited) */
    MCOUNT_UPSTREAM_PACE_REFUSED, /* usergate_upstream_pace_refused_total */
    MCOUNT_CONN_REFUSED_TOTAL,    /* usergate_connections_refused_total{reason="total"} */
    MCOUNT_CONN_REFUSED_PER_IP,   /* usergate_connections_refused_total{reason="per_ip"} */
    MCOUNT_INVALIDATIONS_RETRIED, /* usergate_invalidations_retried_total */
    MCOUNT_INVALIDATIONS_DROPPED, /* usergate_invalidations_dropped_total */
    MCOUNT_INVALIDATIONS_REPLAYED,     /* usergate_invalidations_replayed_total */
    MCOUNT_REDIS_PRIMARY_CHANGES,      /* usergate_redis_primary_changes_total */
    MCOUNT_DEFAULT_SERVICE_MISMATCH,   /* usergate_default_service_mismatch_total */
    MCOUNT_HEADER_TIMEOUTS,            /* usergate_request_timeouts_total{phase="header"} */
    MCOUNT_BODY_TIMEOUTS,              /* usergate_request_timeouts_total{phase="body"} */
    MCOUNT_AUTH_FAILURES,              /* usergate_auth_failures_total */
    MCOUNT_WEBHOOK_SIGNATURE_FAILURES, /* usergate_webhook_signature_failures_total */
    MCOUNT_LOCAL_HITS,                 /* usergate_local_hits_total */
    MCOUNT_LOCAL_INVALIDATIONS,        /* usergate_local_invalidations_total (messages) */
    MCOUNT_LOCAL_FLUSHES,              /* usergate_local_flushes_total */
    MCOUNT_CONFIG_RELOADS_OK,          /* usergate_config_reloads_total{result="ok"} */
    MCOUNT_CONFIG_RELOADS_FAILED,      /* usergate_config_reloads_total{result="failed"} */
    MCOUNT_COUNT
};

/* Gauges set by a worker (summed across workers, except redis_up: min). */
enum metric_gauge {
    MGAUGE_REDIS_UP = 0,      /* usergate_redis_up (1 only if every worker's connection is up) */
    MGAUGE_REDIS_BREAKER,     /* usergate_redis_breaker_open (workers skipping Redis now) */
    MGAUGE_CONNECTIONS,       /* usergate_connections */
    MGAUGE_UPSTREAM_INFLIGHT, /* usergate_upstream_inflight */
    MGAUGE_UPSTREAM_QUEUE,    /* usergate_upstream_queue_depth */
    MGAUGE_INVALIDATIONS_PENDING, /* usergate_invalidations_pending */
    MGAUGE_LOCAL_ENTRIES,         /* usergate_local_entries */
    MGAUGE_LOCAL_UP,              /* usergate_local_up (workers whose local tier is on) */
    MGAUGE_COUNT
};

struct metrics_shard;
struct metrics_shard *metrics_shard_new(void);
void metrics_shard_free(struct metrics_shard *s);

/* usergate_requests_total{route,code} and usergate_request_duration_seconds{route} */
void metrics_request(struct metrics_shard *s, enum route_id r, int code, int64_t duration_ms);
/* usergate_cache_lookups_total{route,result} (and the hit ratio gauge) */
void metrics_cache(struct metrics_shard *s, enum route_id r, enum metric_cache_result res);
/* usergate_upstream_requests_total{api,code} and usergate_upstream_duration_seconds{api};
 * code 0 = transport failure (rendered code="error"). */
void metrics_upstream(struct metrics_shard *s, enum metric_api api, int code, int64_t duration_ms);
void metrics_inc(struct metrics_shard *s, enum metric_counter c);
void metrics_gauge_set(struct metrics_shard *s, enum metric_gauge g, int64_t v);
/* A gauge across shards: the sum, or for MGAUGE_REDIS_UP the minimum (0 with no shards). */
int64_t metrics_gauge_value(struct metrics_shard *const *shards, size_t n, enum metric_gauge g);

/* Samples of labelled families whose label values are only known at run
 * time, kept outside the shards and passed in rendered (one line each;
 * NULL = none yet). */
struct metrics_external {
    const char *throttled;      /* usergate_client_throttled_total{client,reason}: admission.c */
    const char *webhook_events; /* usergate_webhook_events_total{source,type,result}: webhook.c */
    const char *upstream; /* usergate_build_info's upstream label: "twilio" (NULL) or "demo" */
};
/* Prometheus text format 0.0.4 of the sum of shards[0..n), including the
 * external samples (ext may be NULL), and
 * usergate_build_info{version=...} 1 and usergate_cache_hit_ratio{route}
 * = (hit + negative_hit + stale) / (that + miss), omitted for routes with no
 * lookups. Every metric has # HELP and # TYPE lines. */
void metrics_render(struct buf *out, struct metrics_shard *const *shards, size_t n,
                    const char *version, const struct metrics_external *ext);

/* Aggregates for sd_notify STATUS= (usergate -s reads /metrics instead). */
struct metrics_summary {
    uint64_t requests;
    uint64_t hits; /* hit + negative_hit + stale */
    uint64_t misses;
};
void metrics_summarize(struct metrics_shard *const *shards, size_t n, struct metrics_summary *out);

/* Append v as a Prometheus label value (\\, \" and newlines escaped). */
void metrics_label_value(struct buf *out, const char *v);

/* The names of every metric family rendered (the unit test checks each has
 * HELP and TYPE lines). */
void metrics_names(struct buf *out); /* one per line */

#endif

/* stat: `usergate -s [ADMIN_URL]`, a live one-screen view of a running
 * daemon in the spirit of varnishstat: requests/s, hit ratio per route,
 * upstream rate and latency quantiles, limits, Redis state. It reads the
 * admin listener's /metrics like any Prometheus scraper would (libevent's
 * HTTP client on its own loop: this is a separate process mode, not the
 * daemon). Parsing and rendering are pure functions, unit-tested. */
#ifndef USERGATE_STAT_H
#define USERGATE_STAT_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define STAT_MAX_ROUTES 16
#define STAT_MAX_BUCKETS 40

struct stat_route {
    char name[96];
    double requests; /* usergate_requests_total, all codes */
    double hits;     /* cache lookups: hit + negative_hit + stale */
    double misses;   /* cache lookups: miss */
};

/* One scrape, summed over labels where the view does not show them. */
struct stat_sample {
    struct stat_route routes[STAT_MAX_ROUTES];
    int n_routes;
    double requests, errors_5xx;
    double upstream_requests, upstream_errors;
    double le[STAT_MAX_BUCKETS], bucket[STAT_MAX_BUCKETS]; /* upstream duration, all apis */
    int n_buckets;
    double throttled_in, throttled_out, retries, paced_refused;
    double redis_up, breaker_open, redis_errors;
    double inflight, queue, connections;
    bool has_redis_up; /* the text was usergate's */
};

/* Parse Prometheus text format; unknown metrics are ignored. Returns 0, or
 * -1 when the text holds no usergate metrics at all. */
int stat_parse(const char *text, size_t len, struct stat_sample *out);

/* The q-quantile (0..1) of upstream latency in seconds between two samples
 * (prev NULL: since start), interpolated within buckets like PromQL's
 * histogram_quantile; -1 when there were no upstream requests. */
double stat_quantile(const struct stat_sample *prev, const struct stat_sample *cur, double q);

/* The screen for cur, with rates over seconds since prev (prev NULL: totals
 * only). source names what was read (the URL). */
void stat_render(struct buf *out, const char *source, const struct stat_sample *prev,
                 const struct stat_sample *cur, double seconds);

/* Run the view: once (two scrapes interval_ms apart, one screen) or until
 * interrupted, redrawing every interval_ms. Returns the exit status. */
int stat_run(const char *url, bool once, long interval_ms);

#endif

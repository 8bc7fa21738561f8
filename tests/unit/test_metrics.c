/* Unit tests for metrics: shard updates summed and rendered as Prometheus
 * text, hit ratio, redis_up as a minimum, label escaping of routes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <regex.h>

#include "metrics.h"

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
            return true;
    return false;
}

struct op {
    int shard;
    enum { OP_REQ, OP_CACHE, OP_UP, OP_INC, OP_GAUGE } kind;
    int a, b;
    int64_t v;
};

static const struct op ops[] = {
    {0, OP_REQ, ROUTE_V1_USER, 200, 3},
    {1, OP_REQ, ROUTE_V1_USER, 200, 40},
    {1, OP_REQ, ROUTE_V1_USER, 404, 1},
    {0, OP_REQ, ROUTE_NONE, 401, 0},
    {0, OP_CACHE, ROUTE_V1_USER, MC_HIT, 0},
    {0, OP_CACHE, ROUTE_V1_USER, MC_HIT, 0},
    {1, OP_CACHE, ROUTE_V1_USER, MC_NEGATIVE_HIT, 0},
    {1, OP_CACHE, ROUTE_V1_USER, MC_MISS, 0},
    {0, OP_CACHE, ROUTE_V2_USER, MC_BYPASS, 0},
    {0, OP_UP, API_CONVERSATIONS, 200, 30},
    {1, OP_UP, API_CONVERSATIONS, 0, 5000},
    {1, OP_UP, API_CHAT, 429, 2},
    {0, OP_INC, MCOUNT_REDIS_TIMEOUTS, 0, 0},
    {1, OP_INC, MCOUNT_REDIS_TIMEOUTS, 0, 0},
    {0, OP_GAUGE, MGAUGE_REDIS_UP, 0, 1},
    {1, OP_GAUGE, MGAUGE_REDIS_UP, 0, 1},
    {0, OP_GAUGE, MGAUGE_CONNECTIONS, 0, 3},
    {1, OP_GAUGE, MGAUGE_CONNECTIONS, 0, 4},
};

static const char *const expected[] = {
    "usergate_requests_total{route=\"/v1/Users/{Sid}\",code=\"200\"} 2",
    "usergate_requests_total{route=\"/v1/Users/{Sid}\",code=\"404\"} 1",
    "usergate_requests_total{route=\"other\",code=\"401\"} 1",
    "usergate_cache_lookups_total{route=\"/v1/Users/{Sid}\",result=\"hit\"} 2",
    "usergate_cache_lookups_total{route=\"/v1/Users/{Sid}\",result=\"negative_hit\"} 1",
    "usergate_cache_lookups_total{route=\"/v1/Users/{Sid}\",result=\"miss\"} 1",
    "usergate_cache_hit_ratio{route=\"/v1/Users/{Sid}\"} 0.750000",
    "usergate_upstream_requests_total{api=\"conversations\",code=\"200\"} 1",
    "usergate_upstream_requests_total{api=\"conversations\",code=\"error\"} 1",
    "usergate_upstream_requests_total{api=\"chat\",code=\"429\"} 1",
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"0.025\"} 0",
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"0.05\"} 1",
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"5\"} 2",
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"+Inf\"} 2",
    "usergate_upstream_duration_seconds_sum{api=\"conversations\"} 5.030000",
    "usergate_upstream_duration_seconds_count{api=\"conversations\"} 2",
    "usergate_request_duration_seconds_count{route=\"/v1/Users/{Sid}\"} 3",
    "usergate_redis_errors_total{kind=\"timeout\"} 2",
    "usergate_redis_errors_total{kind=\"error\"} 0",
    "usergate_redis_up 1",
    "usergate_connections 7",
    "usergate_build_info{version=\"1.2.3\",upstream=\"twilio\"} 1",
    "# TYPE usergate_requests_total counter",
    "# TYPE usergate_upstream_duration_seconds histogram",
    "# TYPE usergate_cache_hit_ratio gauge",
};

/* Lines that must not appear: ratio for routes without lookups (bypass only). */
static const char *const absent[] = {
    "usergate_cache_hit_ratio{route=\"/v2/Services/{ServiceSid}/Users/{Sid}\"}",
};

static void apply(struct metrics_shard **sh)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const struct op *o = &ops[i];
        struct metrics_shard *s = sh[o->shard];
        switch (o->kind) {
        case OP_REQ:
            metrics_request(s, (enum route_id)o->a, o->b, o->v);
            break;
        case OP_CACHE:
            metrics_cache(s, (enum route_id)o->a, (enum metric_cache_result)o->b);
            break;
        case OP_UP:
            metrics_upstream(s, (enum metric_api)o->a, o->b, o->v);
            break;
        case OP_INC:
            metrics_inc(s, (enum metric_counter)o->a);
            break;
        case OP_GAUGE:
            metrics_gauge_set(s, (enum metric_gauge)o->a, o->v);
            break;
        }
    }
}

static void test_render_sums_shards(void **state)
{
    (void)state;
    struct metrics_shard *sh[2] = {metrics_shard_new(), metrics_shard_new()};
    apply(sh);
    struct buf out = {0};
    metrics_render(&out, sh, 2, "1.2.3", NULL);
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        if (!has_line(out.data, expected[i]))
            fail_msg("missing line: %s\n--- output ---\n%s", expected[i], out.data);
    }
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
        assert_null(strstr(out.data, absent[i]));

    /* One worker's Redis down makes the process gauge 0. */
    metrics_gauge_set(sh[1], MGAUGE_REDIS_UP, 0);
    buf_reset(&out);
    metrics_render(&out, sh, 2, "1.2.3", NULL);
    assert_true(has_line(out.data, "usergate_redis_up 0"));
    assert_int_equal(metrics_gauge_value(sh, 2, MGAUGE_REDIS_UP), 0);
    assert_int_equal(metrics_gauge_value(sh, 0, MGAUGE_REDIS_UP), 0);
    assert_int_equal(metrics_gauge_value(sh, 2, MGAUGE_CONNECTIONS), 7);

    struct metrics_summary sum;
    metrics_summarize(sh, 2, &sum);
    assert_int_equal(sum.requests, 4);
    assert_int_equal(sum.hits, 3);
    assert_int_equal(sum.misses, 1);
    buf_free(&out);
    metrics_shard_free(sh[0]);
    metrics_shard_free(sh[1]);
}

/* Every line is a comment of the two kinds, or `name{labels} value`; every
 * family named by metrics_names has HELP and TYPE. */
static void test_exposition_format(void **state)
{
    (void)state;
    struct metrics_shard *sh[1] = {metrics_shard_new()};
    metrics_request(sh[0], ROUTE_V2_USERS, 201, 12);
    metrics_cache(sh[0], ROUTE_V1S_USER, MC_STALE);
    struct buf out = {0};
    metrics_render(&out, sh, 1, "we\"ird\\v", NULL);
    assert_non_null(strstr(out.data, "version=\"we\\\"ird\\\\v\""));
    regex_t re;
    assert_int_equal(
        regcomp(&re,
                "^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\\{([a-z]+=\"([^\"\\\\]|\\\\.)*\",?)+\\})? "
                "[-+0-9.e]+|[a-z_]+\\{[^}]*le=\"\\+Inf\"\\} [0-9]+)$",
                REG_EXTENDED | REG_NOSUB),
        0);
    char *save = NULL;
    for (char *line = strtok_r(out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (regexec(&re, line, 0, NULL, 0) != 0)
            fail_msg("bad exposition line: %s", line);
    regfree(&re);

    struct buf names = {0}, again = {0};
    metrics_names(&names);
    metrics_render(&again, sh, 1, "x", NULL);
    int count = 0;
    save = NULL;
    for (char *n = strtok_r(names.data, "\n", &save); n; n = strtok_r(NULL, "\n", &save)) {
        char help[160], type[160];
        snprintf(help, sizeof help, "# HELP %s ", n);
        snprintf(type, sizeof type, "# TYPE %s ", n);
        if (!strstr(again.data, help) || !strstr(again.data, type))
            fail_msg("family %s has no HELP/TYPE", n);
        count++;
    }
    assert_true(count >= 15);
    buf_free(&names);
    buf_free(&again);
    buf_free(&out);
    metrics_shard_free(sh[0]);
}

/* Samples kept outside the shards land under their own family's HELP and
 * TYPE, and the build's upstream label says demo when told. */
static void test_external_samples(void **state)
{
    (void)state;
    struct metrics_shard *sh[1] = {metrics_shard_new()};
    struct metrics_external ext = {
        .throttled = "usergate_client_throttled_total{client=\"a\",reason=\"rate\"} 3\n",
        .webhook_events = "usergate_webhook_events_total{source=\"chat\",type=\"onUserUpdated\","
                          "result=\"invalidated\"} 2\n",
        .upstream = "demo",
    };
    struct buf out = {0};
    metrics_render(&out, sh, 1, "1.0", &ext);
    static const char *const follows[][2] = {
        {"# TYPE usergate_client_throttled_total counter\n",
         "usergate_client_throttled_total{client=\"a\",reason=\"rate\"} 3\n"},
        {"# TYPE usergate_webhook_events_total counter\n",
         "usergate_webhook_events_total{source=\"chat\",type=\"onUserUpdated\",result="
         "\"invalidated\"} 2\n"},
    };
    for (size_t i = 0; i < sizeof follows / sizeof follows[0]; i++) {
        const char *type = strstr(out.data, follows[i][0]);
        assert_non_null(type);
        assert_ptr_equal(strstr(out.data, follows[i][1]), type + strlen(follows[i][0]));
    }
    assert_non_null(strstr(out.data, "usergate_build_info{version=\"1.0\",upstream=\"demo\"} 1\n"));
    buf_free(&out);
    metrics_shard_free(sh[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_sums_shards),
        cmocka_unit_test(test_exposition_format),
        cmocka_unit_test(test_external_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

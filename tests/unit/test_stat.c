/* Unit tests for the `usergate -s` view: parsing metrics text, quantiles
 * from histogram buckets, and the rendered screen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stat.h"

#define R1 "/v1/Users/{Sid}"
#define R2 "/v2/Services/{ServiceSid}/Users/{Sid}"

static const char first[] =
    "# HELP usergate_requests_total Requests.\n"
    "# TYPE usergate_requests_total counter\n"
    "usergate_requests_total{route=\"" R1 "\",code=\"200\"} 90\n"
    "usergate_requests_total{route=\"" R1 "\",code=\"502\"} 10\n"
    "usergate_requests_total{route=\"" R2 "\",code=\"200\"} 50\n"
    "usergate_cache_lookups_total{route=\"" R1 "\",result=\"hit\"} 60\n"
    "usergate_cache_lookups_total{route=\"" R1 "\",result=\"stale\"} 10\n"
    "usergate_cache_lookups_total{route=\"" R1 "\",result=\"miss\"} 30\n"
    "usergate_cache_lookups_total{route=\"" R1 "\",result=\"coalesced\"} 99\n"
    "usergate_upstream_requests_total{api=\"conversations\",code=\"200\"} 30\n"
    "usergate_upstream_requests_total{api=\"chat\",code=\"error\"} 2\n"
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"0.01\"} 10\n"
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"0.1\"} 30\n"
    "usergate_upstream_duration_seconds_bucket{api=\"conversations\",le=\"+Inf\"} 30\n"
    "usergate_upstream_duration_seconds_bucket{api=\"chat\",le=\"0.01\"} 0\n"
    "usergate_upstream_duration_seconds_bucket{api=\"chat\",le=\"0.1\"} 2\n"
    "usergate_upstream_duration_seconds_bucket{api=\"chat\",le=\"+Inf\"} 2\n"
    "usergate_redis_up 1\n"
    "usergate_redis_breaker_open 0\n"
    "usergate_upstream_inflight 3\n"
    "usergate_client_throttled_total 4\n";

static void test_parse(void **state)
{
    (void)state;
    struct stat_sample s;
    assert_int_equal(stat_parse(first, strlen(first), &s), 0);
    assert_int_equal(s.n_routes, 2);
    assert_string_equal(s.routes[0].name, R1);
    assert_true(s.routes[0].requests == 100 && s.routes[0].hits == 70 && s.routes[0].misses == 30);
    assert_true(s.requests == 150 && s.errors_5xx == 10);
    assert_true(s.upstream_requests == 32 && s.upstream_errors == 2);
    assert_int_equal(s.n_buckets, 3); /* summed across apis, sorted */
    assert_true(s.le[0] == 0.01 && s.bucket[0] == 10 && s.bucket[1] == 32 && s.bucket[2] == 32);
    assert_true(s.redis_up == 1 && s.inflight == 3 && s.throttled_out == 4);
    /* not usergate's metrics */
    assert_int_equal(stat_parse("up 1\n", 5, &s), -1);
    assert_int_equal(stat_parse("", 0, &s), -1);
}

/* One row per shape of input the parser must take or refuse. */
static const struct {
    const char *text;
    int rc;
    double requests, errors_5xx;
    int n_routes;
    const char *route; /* routes[0] */
    double route_requests, hits, misses, redis_up;
} parse_cases[] = {
    /* a timestamp after the value */
    {"usergate_requests_total{route=\"r\",code=\"200\"} 7 1700000000000\nusergate_redis_up 1\n", 0,
     7, 0, 1, "r", 7, 0, 0, 1},
    /* CRLF line ends, no newline at the end */
    {"usergate_redis_up 1\r\nusergate_requests_total{route=\"r\",code=\"500\"} 3", 0, 3, 3, 1, "r",
     3, 0, 0, 1},
    /* an escaped quote and braces inside a label value */
    {"usergate_requests_total{route=\"/x/{a\\\"}b}\",code=\"200\"} 2\nusergate_redis_up 0\n", 0, 2,
     0, 1, "/x/{a\"}b}", 2, 0, 0, 0},
    /* labels in any order; negative hits count as hits, coalesced as neither */
    {"usergate_cache_lookups_total{result=\"negative_hit\",route=\"r\"} 4\n"
     "usergate_cache_lookups_total{result=\"coalesced\",route=\"r\"} 9\n"
     "usergate_cache_lookups_total{result=\"miss\",route=\"r\"} 1\nusergate_redis_up 1\n",
     0, 0, 0, 1, "r", 0, 4, 1, 1},
    /* a label whose name ends in another's is not that label */
    {"usergate_requests_total{xcode=\"500\",code=\"200\",route=\"r\"} 1\nusergate_redis_up 1\n", 0,
     1, 0, 1, "r", 1, 0, 0, 1},
    /* names that only start or end like ours are not ours */
    {"usergate_requests_total_extra 5\nxusergate_redis_up 1\nusergate_redis_up_x 1\n", -1, 0, 0, 0,
     NULL, 0, 0, 0, 0},
    /* comments, blank lines and a value that is not a number */
    {"# TYPE usergate_redis_up gauge\n\nusergate_redis_up abc\n", -1, 0, 0, 0, NULL, 0, 0, 0, 0},
    /* an unterminated label block is skipped, the rest still read */
    {"usergate_requests_total{route=\"r\" 5\nusergate_redis_up 1\n", 0, 0, 0, 0, NULL, 0, 0, 0, 1},
};

static void test_parse_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < UG_ARRAY_LEN(parse_cases); i++) {
        const char *text = parse_cases[i].text;
        struct stat_sample s;
        print_message("case %zu\n", i);
        assert_int_equal(stat_parse(text, strlen(text), &s), parse_cases[i].rc);
        assert_true(s.requests == parse_cases[i].requests);
        assert_true(s.errors_5xx == parse_cases[i].errors_5xx);
        assert_true(s.redis_up == parse_cases[i].redis_up);
        assert_int_equal(s.n_routes, parse_cases[i].n_routes);
        if (parse_cases[i].route) {
            assert_string_equal(s.routes[0].name, parse_cases[i].route);
            assert_true(s.routes[0].requests == parse_cases[i].route_requests);
            assert_true(s.routes[0].hits == parse_cases[i].hits);
            assert_true(s.routes[0].misses == parse_cases[i].misses);
        }
    }
}

static void test_quantiles(void **state)
{
    (void)state;
    struct stat_sample a, b;
    stat_parse(first, strlen(first), &a);
    /* since start: 32 requests, 10 under 10 ms, 22 in (10, 100] ms */
    assert_true(stat_quantile(NULL, &a, 0.25) > 0.0079 && stat_quantile(NULL, &a, 0.25) < 0.0081);
    double p50 = stat_quantile(NULL, &a, 0.5); /* rank 16: 6 of 22 into the second bucket */
    assert_true(p50 > 0.01 + 0.09 * 6 / 22 - 1e-9 && p50 < 0.01 + 0.09 * 6 / 22 + 1e-9);
    /* between two scrapes with no new requests: no answer */
    assert_true(stat_quantile(&a, &a, 0.5) < 0);
    /* all new requests above the last finite bound: that bound */
    b = a;
    b.bucket[2] += 5;
    assert_true(stat_quantile(&a, &b, 0.99) == 0.1);
}

static void test_render(void **state)
{
    (void)state;
    struct stat_sample a, b;
    stat_parse(first, strlen(first), &a);
    b = a;
    b.requests += 20;
    b.routes[0].requests += 20;
    b.routes[0].hits += 19;
    b.routes[0].misses += 1;
    b.redis_up = 0;
    b.breaker_open = 1;
    struct buf out = {0};
    stat_render(&out, "http://127.0.0.1:9090", &a, &b, 2.0);
    assert_non_null(strstr(out.data, "http://127.0.0.1:9090"));
    assert_non_null(strstr(out.data, "requests          10.0/s"));
    assert_non_null(strstr(out.data, "redis        DOWN   breaker OPEN"));
    /* the interval's hit ratio (19 of 20), not the one since start */
    const char *row = strstr(out.data, R1 " ");
    assert_non_null(row);
    assert_non_null(strstr(row, "95.0%"));
    /* a route with no lookups at all shows no ratio */
    row = strstr(out.data, R2 " ");
    assert_non_null(row);
    assert_non_null(strstr(row, "-\n"));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_cases),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for pace_reserve (GCRA): scripted arrivals and the waits or
 * refusals each must get. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "pace.h"

#define S 1000000LL /* one second in microseconds */

struct step {
    const char *key;
    int64_t at_us;
    int64_t want_wait_us; /* -1: refused */
    long want_retry_s;    /* when refused */
};

static void run(const struct step *steps, size_t n, long rate, int64_t max_wait_us)
{
    static struct pace_table t;
    memset(&t, 0, sizeof t);
    for (size_t i = 0; i < n; i++) {
        long retry = 0;
        int64_t got = pace_reserve(&t, steps[i].key, rate, steps[i].at_us, max_wait_us, &retry);
        if (got != steps[i].want_wait_us)
            fail_msg("step %zu: wait %lld, want %lld", i, (long long)got,
                     (long long)steps[i].want_wait_us);
        if (got < 0)
            assert_int_equal(retry, steps[i].want_retry_s);
    }
}

/* rate 2/s: one at once, then one every 500 ms, in reservation order. */
static void test_spacing(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {"IS1", 10 * S, 0, 0},
        {"IS1", 10 * S, S / 2, 0}, /* second in the same instant waits 500 ms */
        {"IS1", 10 * S, S, 0},     /* third 1 s */
        {"IS1", 10 * S, -1, 2},    /* fourth would wait 1.5 s > max 1.2 s: come back in 2 s */
        {"IS2", 10 * S, 0, 0},     /* another service has its own schedule */
        {"IS1", 20 * S, 0, 0},     /* idle: back to "now" */
        {"IS1", 20 * S, S / 2, 0},
        {"IS1", 20 * S + S / 4, 3 * S / 4, 0},
    };
    run(steps, sizeof steps / sizeof steps[0], 2, S + S / 5);
}

/* rate 25/s with no waiting allowed: a second write in the same instant is
 * refused for 1 s; one interval later one more fits. */
static void test_refusal_without_queueing(void **state)
{
    (void)state;
    static const struct step steps[] = {
        {"ISa", 5 * S, 0, 0},
        {"ISa", 5 * S, -1, 1},
        {"ISa", 5 * S + S / 25, 0, 0},
        {"ISa", 5 * S + S / 25, -1, 1},
        {"ISa", 5 * S + S / 25 + S / 50, -1, 1},
        {"ISa", 5 * S + 2 * S / 25, 0, 0},
    };
    run(steps, sizeof steps / sizeof steps[0], 25, 0);
}

/* No sliding one-second window ever sees more than rate + 1 sends. */
static void test_window_bound(void **state)
{
    (void)state;
    static struct pace_table t;
    memset(&t, 0, sizeof t);
    int64_t sends[200];
    long retry;
    for (int i = 0; i < 200; i++)
        sends[i] = S + pace_reserve(&t, "ISw", 30, S, 100 * S, &retry);
    for (int i = 0; i < 200; i++) {
        int n = 0;
        for (int j = i; j < 200 && sends[j] <= sends[i] + S; j++)
            n++;
        assert_true(n <= 31);
    }
}

/* More services than slots: the quietest is evicted, nobody is refused. */
static void test_many_keys(void **state)
{
    (void)state;
    static struct pace_table t;
    memset(&t, 0, sizeof t);
    char key[16];
    long retry;
    for (int i = 0; i < 3 * PACE_SLOTS; i++) {
        snprintf(key, sizeof key, "IS%d", i);
        assert_int_equal(pace_reserve(&t, key, 1, S + i, 0, &retry), 0);
    }
    /* a recent key is still tracked: its second write in the same second waits */
    snprintf(key, sizeof key, "IS%d", 3 * PACE_SLOTS - 1);
    assert_int_equal(pace_reserve(&t, key, 1, S + 3 * PACE_SLOTS, 0, &retry), -1);
    assert_int_equal(retry, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spacing),
        cmocka_unit_test(test_refusal_without_queueing),
        cmocka_unit_test(test_window_bound),
        cmocka_unit_test(test_many_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for local: the LRU bound, expiry, eviction by tag and prefix,
 * the epoch, and a randomized comparison against a plain model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "local.h"
#include "util.h"

static const char *get(struct local *l, const char *k, int64_t now)
{
    size_t n;
    const char *v = local_get(l, k, strlen(k), now, &n);
    static char buf[64];
    if (!v)
        return NULL;
    snprintf(buf, sizeof buf, "%.*s", (int)n, v);
    return buf;
}

static void put(struct local *l, const char *k, uint64_t tag, const char *v, int64_t exp)
{
    local_put(l, k, strlen(k), tag, v, strlen(v), exp);
}

static void test_basics(void **state)
{
    (void)state;
    struct local *l = local_new(3);
    put(l, "a", 1, "A", 100);
    put(l, "b", 1, "B", 100);
    put(l, "c", 2, "C", 100);
    assert_string_equal(get(l, "a", 0), "A"); /* a is now the most recent */
    put(l, "d", 0, "D", 100);                 /* full: b (least recent) goes */
    assert_null(get(l, "b", 0));
    assert_int_equal(local_count(l), 3);
    put(l, "a", 1, "A2", 100); /* replace */
    assert_string_equal(get(l, "a", 0), "A2");
    assert_int_equal(local_count(l), 3);
    assert_null(get(l, "c", 100)); /* expired at 100: removed */
    assert_int_equal(local_count(l), 2);
    uint64_t e = local_epoch(l);
    assert_int_equal(local_evict_tag(l, 1), 1); /* a */
    assert_true(local_epoch(l) > e);
    assert_null(get(l, "a", 0));
    assert_int_equal(local_evict_tag(l, 0), 0); /* tag 0 is never evicted by tag */
    assert_string_equal(get(l, "d", 0), "D");
    put(l, "x:1", 5, "1", 100);
    put(l, "x:2", 6, "2", 100);
    put(l, "y:1", 5, "3", 100);
    e = local_epoch(l);
    local_remove(l, "x:2", 3);
    assert_true(local_epoch(l) > e);
    assert_null(get(l, "x:2", 0));
    local_remove(l, "x:9", 3); /* absent: nothing happens but the epoch */
    assert_int_equal(local_evict_prefix(l, "x:", 2), 1);
    assert_string_equal(get(l, "y:1", 0), "3");
    e = local_epoch(l);
    local_flush(l);
    assert_true(local_epoch(l) > e);
    assert_int_equal(local_count(l), 0);
    /* empty values and binary keys */
    local_put(l, "k\0z", 3, 9, "", 0, 10);
    size_t n = 99;
    assert_non_null(local_get(l, "k\0z", 3, 0, &n));
    assert_int_equal(n, 0);
    assert_null(local_get(l, "k\0y", 3, 0, &n));
    local_free(l);
}

/* A model: arrays of at most MAXN live items with their last use. */
#define MAXN 8
#define KEYS 24
struct model {
    bool live[KEYS];
    uint64_t tag[KEYS];
    int val[KEYS];
    int64_t exp[KEYS], used[KEYS];
    int n;
};

static void model_remove(struct model *m, int k)
{
    if (m->live[k]) {
        m->live[k] = false;
        m->n--;
    }
}

static void test_randomized(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 200; seed++) {
        srand(seed);
        struct local *l = local_new(MAXN);
        struct model m = {0};
        int64_t clock = 0;
        for (int step = 0; step < 2000; step++) {
            int k = rand() % KEYS;
            char key[8];
            snprintf(key, sizeof key, "k%d", k);
            int op = rand() % 10;
            clock += rand() % 3;
            if (op < 4) { /* put */
                uint64_t tag = (uint64_t)(rand() % 5);
                int v = rand();
                int64_t exp = clock + 1 + rand() % 50;
                char val[16];
                snprintf(val, sizeof val, "%d", v);
                local_put(l, key, strlen(key), tag, val, strlen(val), exp);
                model_remove(&m, k);
                if (m.n >= MAXN) { /* evict the least recently used */
                    int lru = -1;
                    for (int j = 0; j < KEYS; j++)
                        if (m.live[j] && (lru < 0 || m.used[j] < m.used[lru]))
                            lru = j;
                    model_remove(&m, lru);
                }
                m.live[k] = true;
                m.n++;
                m.tag[k] = tag;
                m.val[k] = v;
                m.exp[k] = exp;
                m.used[k] = (int64_t)step;
            } else if (op < 8) { /* get */
                size_t n;
                const char *v = local_get(l, key, strlen(key), clock, &n);
                if (m.live[k] && clock >= m.exp[k])
                    model_remove(&m, k);
                if (!m.live[k]) {
                    assert_null(v);
                } else {
                    assert_non_null(v);
                    char want[16];
                    snprintf(want, sizeof want, "%d", m.val[k]);
                    assert_int_equal(n, strlen(want));
                    assert_memory_equal(v, want, n);
                    m.used[k] = (int64_t)step;
                }
            } else if (op < 9) { /* evict by tag */
                uint64_t tag = (uint64_t)(rand() % 5);
                size_t want = 0;
                for (int j = 0; j < KEYS; j++)
                    if (m.live[j] && tag && m.tag[j] == tag) {
                        model_remove(&m, j);
                        want++;
                    }
                assert_int_equal(local_evict_tag(l, tag), want);
            } else {
                assert_int_equal(local_count(l), (size_t)m.n);
            }
        }
        local_free(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

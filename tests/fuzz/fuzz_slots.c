/* libFuzzer: Redis Cluster's rules in slots.c on arbitrary bytes. A parsed
 * MOVED/ASK is in range and formats back to the same redirection; a key's
 * slot is in range and is its hash tag's slot whenever it has one; the
 * routing argument of a command is one of its arguments; a CLUSTER SLOTS
 * reply built from the input parses into ranges that are in bounds. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "slots.h"

/* A small reply tree from bytes: 'i' integer, 's' string, 'a' array. */
static size_t build(const uint8_t *d, size_t n, size_t *pos, struct redis_reply *out, int depth,
                    struct redis_reply *pool, size_t *used, size_t cap)
{
    memset(out, 0, sizeof *out);
    if (*pos >= n || depth > 4) {
        out->type = REDIS_R_NIL;
        return 0;
    }
    uint8_t kind = d[(*pos)++] % 3, len = *pos < n ? d[(*pos)++] % 16 : 0;
    if (kind == 0) {
        out->type = REDIS_R_INTEGER;
        out->integer = (long long)len * 1500 - 2000;
    } else if (kind == 1) {
        size_t take = len <= n - *pos ? len : n - *pos;
        out->type = REDIS_R_STRING;
        out->str = (const char *)d + *pos;
        out->len = take;
        *pos += take;
    } else {
        size_t k = len % 5;
        if (*used + k > cap)
            k = cap - *used;
        out->type = REDIS_R_ARRAY;
        out->elements = pool + *used;
        out->n_elements = k;
        *used += k;
        for (size_t i = 0; i < k; i++)
            build(d, n, pos, &out->elements[i], depth + 1, pool, used, cap);
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct slots_target t;
    enum slots_redirect k = slots_parse_redirect(in, size, &t);
    if (k != SLOTS_NONE) {
        FUZZ_CHECK(t.slot < SLOTS_COUNT && t.port >= 1 && t.port <= 65535);
        char again[SLOTS_HOST_MAX + 32];
        int n = snprintf(again, sizeof again, "%s %u %s:%d", k == SLOTS_MOVED ? "MOVED" : "ASK",
                         t.slot, t.host, t.port);
        struct slots_target t2;
        FUZZ_CHECK(slots_parse_redirect(again, (size_t)n, &t2) == k);
        FUZZ_CHECK(t2.slot == t.slot && t2.port == t.port && strcmp(t2.host, t.host) == 0);
        FUZZ_CHECK(slots_is_cluster_answer(in, size));
    }
    unsigned slot = slots_of_key(in, size);
    FUZZ_CHECK(slot < SLOTS_COUNT);
    const char *open = memchr(in, '{', size);
    const char *close = open ? memchr(open + 1, '}', size - (size_t)(open - in) - 1) : NULL;
    if (close && close > open + 1)
        FUZZ_CHECK(slot == slots_of_key(open + 1, (size_t)(close - open - 1)));

    /* Arguments split at NUL bytes. */
    const char *argv[16];
    size_t lens[16];
    int argc = 0;
    for (size_t s = 0; s <= size && argc < 16;) {
        const char *z = memchr(in + s, '\0', size - s);
        size_t e = z ? (size_t)(z - in) : size;
        argv[argc] = in + s;
        lens[argc++] = e - s;
        s = e + 1;
    }
    int ki = slots_key_index(argc, argv, lens);
    FUZZ_CHECK(ki == -1 || (ki >= 1 && ki < argc));

    struct redis_reply pool[64], root;
    size_t pos = 0, used = 0;
    build(data, size, &pos, &root, 0, pool, &used, 64);
    struct slots_range ranges[8];
    int got = slots_parse_map(&root, ranges, 8);
    FUZZ_CHECK(got >= -1 && got <= 8);
    for (int i = 0; i < got; i++)
        FUZZ_CHECK(ranges[i].first <= ranges[i].last && ranges[i].last < SLOTS_COUNT &&
                   ranges[i].port >= 1 && ranges[i].port <= 65535);
    return 0;
}

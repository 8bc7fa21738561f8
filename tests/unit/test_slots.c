/* slots.c: key slots against values redis-server's CLUSTER KEYSLOT printed,
 * which command argument routes, and the parsing of redirections and of
 * CLUSTER SLOTS, each as a table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "slots.h"
#include "util.h"

static void test_crc16_and_key_slots(void **state)
{
    (void)state;
    assert_int_equal(slots_crc16("123456789", 9), 0x31C3); /* the specification's vector */
    static const struct {
        const char *key;
        unsigned slot;
    } cases[] = {
        {"foo", 12182},
        {"bar", 5061},
        {"hello", 866},
        {"{user1000}.following", 3443},
        {"{user1000}.followers", 3443},
        {"foo{}{bar}", 8363},    /* empty tag: the whole key */
        {"foo{{bar}}zap", 4015}, /* the tag is "{bar" */
        {"foo{bar}{zap}", 5061}, /* the first tag only: "bar" */
        {"{}", 15257},
        {"a{b", 13340}, /* no closing brace */
        {"ugtest:u:{00ff00ff00ff00ff}:AC:IS:v1s:ada", 4775},
        {"", 0},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++)
        if (slots_of_key(cases[i].key, strlen(cases[i].key)) != cases[i].slot)
            fail_msg("slot of '%s': %u, want %u", cases[i].key,
                     slots_of_key(cases[i].key, strlen(cases[i].key)), cases[i].slot);
}

static void test_key_index(void **state)
{
    (void)state;
    static const struct {
        const char *argv[6];
        int want;
    } cases[] = {
        {{"MGET", "a", "b"}, 1},
        {{"get", "a"}, 1},
        {{"SET", "k", "v", "PX", "10"}, 1},
        {{"UNLINK", "k"}, 1},
        {{"EVAL", "return 1", "2", "k1", "k2"}, 3},
        {{"evalsha", "abc", "1", "k1", "arg"}, 3},
        {{"EVAL", "return 1", "0", "arg"}, -1},
        {{"EVAL", "return 1", "3", "k1"}, -1}, /* more keys than arguments */
        {{"EVAL", "return 1", "x", "k1"}, -1},
        {{"PUBLISH", "ch", "msg"}, -1},
        {{"SCAN", "0", "MATCH", "p*"}, -1},
        {{"PING"}, -1},
        {{"ASKING"}, -1},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        int argc = 0;
        size_t lens[6];
        while (argc < 6 && cases[i].argv[argc]) {
            lens[argc] = strlen(cases[i].argv[argc]);
            argc++;
        }
        int got = slots_key_index(argc, cases[i].argv, lens);
        if (got != cases[i].want)
            fail_msg("case %zu (%s): %d, want %d", i, cases[i].argv[0], got, cases[i].want);
    }
}

static void test_redirects(void **state)
{
    (void)state;
    static const struct {
        const char *err;
        enum slots_redirect kind;
        unsigned slot;
        const char *host;
        int port;
    } cases[] = {
        {"MOVED 3999 127.0.0.1:6381", SLOTS_MOVED, 3999, "127.0.0.1", 6381},
        {"ASK 0 10.0.0.2:7000", SLOTS_ASK, 0, "10.0.0.2", 7000},
        {"MOVED 16383 ::1:7001", SLOTS_MOVED, 16383, "::1", 7001},
        {"MOVED 12 :7002", SLOTS_MOVED, 12, "", 7002},
        {"MOVED 16384 127.0.0.1:1", SLOTS_NONE, 0, "", 0},
        {"MOVED -1 127.0.0.1:1", SLOTS_NONE, 0, "", 0},
        {"MOVED 1 127.0.0.1:0", SLOTS_NONE, 0, "", 0},
        {"MOVED 1 127.0.0.1:65536", SLOTS_NONE, 0, "", 0},
        {"MOVED 1 127.0.0.1", SLOTS_NONE, 0, "", 0},
        {"MOVED 1", SLOTS_NONE, 0, "", 0},
        {"MOVED ", SLOTS_NONE, 0, "", 0},
        {"ASKING", SLOTS_NONE, 0, "", 0},
        {"READONLY You can't write against a read only replica.", SLOTS_NONE, 0, "", 0},
        {"CLUSTERDOWN The cluster is down", SLOTS_NONE, 0, "", 0},
        {"TRYAGAIN Multiple keys request during rehashing of slot", SLOTS_NONE, 0, "", 0},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct slots_target t = {0};
        enum slots_redirect k = slots_parse_redirect(cases[i].err, strlen(cases[i].err), &t);
        if (k != cases[i].kind)
            fail_msg("'%s': kind %d, want %d", cases[i].err, k, cases[i].kind);
        if (k != SLOTS_NONE && (t.slot != cases[i].slot || strcmp(t.host, cases[i].host) != 0 ||
                                t.port != cases[i].port))
            fail_msg("'%s': %u %s:%d", cases[i].err, t.slot, t.host, t.port);
    }
}

static void test_cluster_answers(void **state)
{
    (void)state;
    static const struct {
        const char *err;
        bool cluster;
    } cases[] = {
        {"MOVED 1 h:1", true},
        {"ASK 1 h:1", true},
        {"CLUSTERDOWN The cluster is down", true},
        {"TRYAGAIN Multiple keys request during rehashing of slot", true},
        {"ERR unknown command", false},
        {"OOM command not allowed", false},
        {"NOSCRIPT No matching script", false},
        {"MOVE", false},
        {"", false},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++)
        if (slots_is_cluster_answer(cases[i].err, strlen(cases[i].err)) != cases[i].cluster)
            fail_msg("'%s'", cases[i].err);
}

/* Replies built from struct redis_reply, as redis.c hands them over. */
#define INT(v)                                                                                     \
    {                                                                                              \
        .type = REDIS_R_INTEGER, .integer = (v)                                                    \
    }
#define STR(s)                                                                                     \
    {                                                                                              \
        .type = REDIS_R_STRING, .str = (s), .len = sizeof(s) - 1                                   \
    }
#define ARR(a)                                                                                     \
    {                                                                                              \
        .type = REDIS_R_ARRAY, .elements = (a), .n_elements = UG_ARRAY_LEN(a)                      \
    }

static void test_cluster_slots_map(void **state)
{
    (void)state;
    struct redis_reply m0[] = {STR("127.0.0.1"), INT(7000), STR("id0")};
    struct redis_reply r0[] = {STR("127.0.0.1"), INT(7003), STR("id3")};
    struct redis_reply m1[] = {STR(""), INT(7001), STR("id1")};
    struct redis_reply e0[] = {INT(0), INT(5460), ARR(m0), ARR(r0)};
    struct redis_reply e1[] = {INT(5461), INT(16383), ARR(m1)};
    struct redis_reply all[] = {ARR(e0), ARR(e1)};
    struct redis_reply rep = ARR(all);
    struct slots_range out[4];
    assert_int_equal(slots_parse_map(&rep, out, 4), 2);
    assert_int_equal(out[0].first, 0);
    assert_int_equal(out[0].last, 5460);
    assert_string_equal(out[0].host, "127.0.0.1");
    assert_int_equal(out[0].port, 7000);
    assert_int_equal(out[1].first, 5461);
    assert_int_equal(out[1].last, 16383);
    assert_string_equal(out[1].host, "");
    assert_int_equal(out[1].port, 7001);
    assert_int_equal(slots_parse_map(&rep, out, 1), -1); /* too many ranges */

    /* Each broken form: refused as a whole. */
    struct redis_reply bad_port[] = {STR("h"), INT(70000)};
    struct redis_reply bad_host[] = {INT(1), INT(7000)};
    struct redis_reply e_port[] = {INT(0), INT(1), ARR(bad_port)};
    struct redis_reply e_host[] = {INT(0), INT(1), ARR(bad_host)};
    struct redis_reply e_order[] = {INT(9), INT(1), ARR(m0)};
    struct redis_reply e_range[] = {INT(0), INT(16384), ARR(m0)};
    struct redis_reply e_short[] = {INT(0), INT(1)};
    struct redis_reply *bad[] = {e_port, e_host, e_order, e_range, e_short};
    size_t bad_n[] = {3, 3, 3, 3, 2};
    for (size_t i = 0; i < UG_ARRAY_LEN(bad); i++) {
        struct redis_reply one = {
            .type = REDIS_R_ARRAY, .elements = bad[i], .n_elements = bad_n[i]};
        struct redis_reply outer = {.type = REDIS_R_ARRAY, .elements = &one, .n_elements = 1};
        if (slots_parse_map(&outer, out, 4) != -1)
            fail_msg("broken entry %zu accepted", i);
    }
    struct redis_reply notarray = STR("ERR This instance has cluster support disabled");
    assert_int_equal(slots_parse_map(&notarray, out, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_and_key_slots), cmocka_unit_test(test_key_index),
        cmocka_unit_test(test_redirects),           cmocka_unit_test(test_cluster_answers),
        cmocka_unit_test(test_cluster_slots_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

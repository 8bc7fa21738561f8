/* Unit tests for auth: Basic credentials, network grants and token buckets,
 * one table per rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "auth.h"
#include "util.h"

static void test_basic_parse(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        bool ok;
        const char *user, *pass;
    } cases[] = {
        {"Basic YXBwOmFwcC1zZWNyZXQtMQ==", true, "app", "app-secret-1"},
        {"basic YXBwOmFwcC1zZWNyZXQtMQ==", true, "app", "app-secret-1"},
        {"Basic   YXBwOmFwcC1zZWNyZXQtMQ==  ", true, "app", "app-secret-1"},
        {"Basic OnB3", true, "", "pw"},             /* ":pw" */
        {"Basic YTo=", true, "a", ""},              /* "a:" */
        {"Basic YTpiOmM=", true, "a", "b:c"},       /* the first ':' splits */
        {"Basic YWJj", false, NULL, NULL},          /* "abc": no ':' */
        {"Basic !!!!", false, NULL, NULL},          /* not base64 */
        {"Basic ", false, NULL, NULL},              /* nothing */
        {"Bearer YXBwOmFwcA==", false, NULL, NULL}, /* another scheme */
        {"BasicYXBwOmFwcA==", false, NULL, NULL},   /* no space */
        {NULL, false, NULL, NULL},                  /* no header */
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char out[AUTH_BASIC_MAX];
        const char *u = NULL, *p = NULL;
        size_t ul = 0, pl = 0;
        bool ok = auth_basic_parse(cases[i].header, out, &u, &ul, &p, &pl);
        if (ok != cases[i].ok)
            fail_msg("case %zu (%s): ok %d", i, cases[i].header ? cases[i].header : "NULL", ok);
        if (!ok)
            continue;
        assert_int_equal(ul, strlen(cases[i].user));
        assert_memory_equal(u, cases[i].user, ul);
        assert_int_equal(pl, strlen(cases[i].pass));
        assert_memory_equal(p, cases[i].pass, pl);
    }
    /* An over-long value is refused, not truncated. */
    struct buf big = {0};
    buf_puts(&big, "Basic ");
    for (int i = 0; i < AUTH_BASIC_MAX * 2; i++)
        buf_puts(&big, "QUFB");
    char out[AUTH_BASIC_MAX];
    const char *u, *p;
    size_t ul, pl;
    assert_false(auth_basic_parse(big.data, out, &u, &ul, &p, &pl));
    buf_free(&big);
}

static struct auth_peer peer(int family, const char *text)
{
    struct auth_peer p = {.family = family};
    if (family != AF_UNIX) {
        struct auth_net n;
        const char *why;
        assert_true(auth_net_parse(text, &n, &why));
        memcpy(p.addr, n.addr, sizeof p.addr);
    }
    return p;
}

static void test_networks(void **state)
{
    (void)state;
    static const struct {
        const char *nets; /* ';'-separated */
        int family;
        const char *addr;
        bool match;
    } cases[] = {
        {"10.0.0.0/8", AF_INET, "10.200.3.4", true},
        {"10.0.0.0/8", AF_INET, "11.0.0.1", false},
        {"127.0.0.1", AF_INET, "127.0.0.1", true},
        {"127.0.0.1", AF_INET, "127.0.0.2", false},
        {"127.0.0.1/32", AF_INET, "127.0.0.1", true},
        {"0.0.0.0/0", AF_INET, "203.0.113.9", true},
        {"0.0.0.0/0", AF_INET6, "::1", false}, /* families never cross */
        {"192.168.1.128/25", AF_INET, "192.168.1.127", false},
        {"192.168.1.128/25", AF_INET, "192.168.1.200", true},
        {"2001:db8::/32", AF_INET6, "2001:db8:1::5", true},
        {"2001:db8::/32", AF_INET6, "2001:db9::5", false},
        {"::1/128", AF_INET6, "::1", true},
        {"unix", AF_UNIX, "", true},
        {"unix", AF_INET, "127.0.0.1", false},
        {"10.0.0.0/8;unix", AF_UNIX, "", true},
        {"10.0.0.0/8;127.0.0.0/8", AF_INET, "127.9.9.9", true},
        {"", AF_INET, "127.0.0.1", false}, /* no networks: nothing */
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct auth_net nets[4];
        size_t n = 0;
        char list[128];
        snprintf(list, sizeof list, "%s", cases[i].nets);
        for (char *save, *tok = strtok_r(list, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
            const char *why = NULL;
            assert_true(auth_net_parse(tok, &nets[n++], &why));
        }
        struct auth_peer p = peer(cases[i].family, cases[i].addr);
        if (auth_nets_match(nets, n, &p) != cases[i].match)
            fail_msg("case %zu: %s vs %s", i, cases[i].nets, cases[i].addr);
    }
    static const char *const bad[] = {"10.0.0.0/33", "::/129",     "10.1.0.0/8", "host", "",
                                      "10.0.0.0/",   "10.0.0.0/x", "1.2.3.4.5",  "/8"};
    for (size_t i = 0; i < UG_ARRAY_LEN(bad); i++) {
        struct auth_net n;
        const char *why = NULL;
        if (auth_net_parse(bad[i], &n, &why))
            fail_msg("'%s' parsed", bad[i]);
        assert_non_null(why);
    }
    char text[48];
    struct auth_peer p4 = peer(AF_INET, "192.0.2.7"), pu = {.family = AF_UNIX};
    auth_peer_format(&p4, text, sizeof text);
    assert_string_equal(text, "192.0.2.7");
    auth_peer_format(&pu, text, sizeof text);
    assert_string_equal(text, "unix");
}

static void test_bucket(void **state)
{
    (void)state;
    /* rate 2/s, burst 3: three at once, then one every 500 ms. */
    static const struct {
        int64_t at_ms;
        bool ok;
        int64_t wait_ms; /* when refused */
    } steps[] = {
        {0, true, 0},      {0, true, 0},    {0, true, 0},       {0, false, 501},
        {250, false, 251}, {500, true, 0},  {500, false, 501},  {2000, true, 0},
        {2000, true, 0},   {2000, true, 0}, {2000, false, 501}, {100000, true, 0},
    };
    struct auth_bucket b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(steps); i++) {
        int64_t wait = -1;
        bool ok = auth_bucket_take(&b, 2.0, 3.0, steps[i].at_ms, &wait);
        if (ok != steps[i].ok)
            fail_msg("step %zu at %lld: ok %d", i, (long long)steps[i].at_ms, ok);
        if (!ok)
            assert_int_equal(wait, steps[i].wait_ms);
    }
    /* peek takes nothing */
    struct auth_bucket c = {0};
    for (int i = 0; i < 10; i++)
        assert_true(auth_bucket_peek(&c, 1.0, 1.0, 0, NULL));
    assert_true(auth_bucket_take(&c, 1.0, 1.0, 0, NULL));
    int64_t w = 0;
    assert_false(auth_bucket_peek(&c, 1.0, 1.0, 0, &w));
    assert_int_equal(w, 1001);
}

/* A memo answers only the exact value it kept, under the generation it
 * kept it for; a kept value too long for it is not kept at all. */
static void test_memo(void **state)
{
    (void)state;
    static int alice, bob;
    struct auth_memo m = {0};
    char longv[AUTH_MEMO_MAX + 2];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    static const struct {
        const char *keep; /* kept before the question, or NULL */
        uint64_t keep_gen;
        const void *keep_client;
        const char *ask;
        uint64_t ask_gen;
        const void *want;
    } cases[] = {
        {NULL, 0, NULL, "Basic YXBwOmFwcC1zZWNyZXQtMQ==", 1, NULL}, /* empty */
        {"Basic YXBwOmFwcC1zZWNyZXQtMQ==", 1, &alice, "Basic YXBwOmFwcC1zZWNyZXQtMQ==", 1, &alice},
        {NULL, 0, NULL, "Basic YXBwOmFwcC1zZWNyZXQtMQ==", 2, NULL},  /* a reload since */
        {NULL, 0, NULL, "Basic YXBwOmFwcC1zZWNyZXQtMQ=", 1, NULL},   /* a prefix */
        {NULL, 0, NULL, "Basic YXBwOmFwcC1zZWNyZXQtMQ==x", 1, NULL}, /* longer */
        {NULL, 0, NULL, "basic YXBwOmFwcC1zZWNyZXQtMQ==", 1, NULL},  /* not the same bytes */
        {NULL, 0, NULL, NULL, 1, NULL},                              /* no header */
        {"Basic Ym9iOmJvYi1zZWNyZXQ=", 1, &bob, "Basic YXBwOmFwcC1zZWNyZXQtMQ==", 1, NULL},
        {NULL, 0, NULL, "Basic Ym9iOmJvYi1zZWNyZXQ=", 1, &bob},
        {"Basic Ym9iOmJvYi1zZWNyZXQ=", 0, &bob, "Basic Ym9iOmJvYi1zZWNyZXQ=", 0, NULL}, /* gen 0 */
        {"", 3, &alice, "", 3, &alice}, /* an empty value is a value like any */
        {"LONG", 3, &alice, "LONG", 3, NULL},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        const char *keep =
            cases[i].keep && strcmp(cases[i].keep, "LONG") == 0 ? longv : cases[i].keep;
        const char *ask = cases[i].ask && strcmp(cases[i].ask, "LONG") == 0 ? longv : cases[i].ask;
        if (keep)
            auth_memo_keep(&m, cases[i].keep_gen, keep, cases[i].keep_client);
        if (auth_memo_find(&m, cases[i].ask_gen, ask) != cases[i].want)
            fail_msg("case %zu", i);
    }
    auth_memo_keep(&m, 5, "Basic Ym9iOmJvYi1zZWNyZXQ=", &bob);
    auth_memo_clear(&m);
    assert_null(auth_memo_find(&m, 5, "Basic Ym9iOmJvYi1zZWNyZXQ="));
    for (size_t i = 0; i < sizeof m.value; i++)
        assert_int_equal(m.value[i], 0); /* wiped */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_parse),
        cmocka_unit_test(test_networks),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_memo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

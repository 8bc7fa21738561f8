/* Unit tests for entry: exact key bytes (binary-safe identities), envelope
 * round trips and every malformed-envelope rejection, user field extraction
 * and glob escaping of service patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "entry.h"

#define AC "AC00000000000000000000000000000001"
#define IS "IS00000000000000000000000000000002"
#define US "US0123456789abcdef0123456789abcdef"

/* String literal with its exact length (NUL bytes inside count). */
#define BYTES(s) s, sizeof(s) - 1

static void test_user_key(void **state)
{
    static const struct {
        const char *prefix;
        enum api_family f;
        const char *ident;
        size_t ident_len;
        const char *want;
        size_t want_len;
    } cases[] = {
        {"usergate:", FAMILY_V1_DEFAULT, BYTES("alice"),
         BYTES("usergate:u:" AC ":v1:" IS ":alice")},
        {"usergate:", FAMILY_V1_SERVICE, BYTES("alice"),
         BYTES("usergate:u:" AC ":v1s:" IS ":alice")},
        {"usergate:", FAMILY_V2, BYTES("alice"), BYTES("usergate:u:" AC ":v2:" IS ":alice")},
        {"", FAMILY_V2, BYTES("a:b"), BYTES("u:" AC ":v2:" IS ":a:b")},
        {"p:", FAMILY_V2, BYTES("bob+1@example.com"),
         BYTES("p:u:" AC ":v2:" IS ":bob+1@example.com")},
        {"p:", FAMILY_V2, BYTES("carol smith"), BYTES("p:u:" AC ":v2:" IS ":carol smith")},
        {"p:", FAMILY_V2, BYTES("jos\xc3\xa9"), BYTES("p:u:" AC ":v2:" IS ":jos\xc3\xa9")},
        {"p:", FAMILY_V2, BYTES("a\0b"), BYTES("p:u:" AC ":v2:" IS ":a\0b")},
        {"p:", FAMILY_V2, BYTES(US), BYTES("p:u:" AC ":v2:" IS ":" US)},
        {"p:", FAMILY_V2, BYTES(""), BYTES("p:u:" AC ":v2:" IS ":")},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        entry_user_key(&b, cases[i].prefix, AC, cases[i].f, IS, cases[i].ident, cases[i].ident_len);
        assert_int_equal(b.len, cases[i].want_len);
        assert_memory_equal(b.data, cases[i].want, b.len);
    }
    buf_free(&b);
}

/* Identities that differ only in bytes a naive formatter would lose or
 * merge (':' '@' '+' spaces, UTF-8, NUL, trailing bytes) yield distinct keys. */
static void test_user_key_distinct(void **state)
{
    static const struct {
        const char *s;
        size_t n;
    } ids[] = {
        {BYTES("a")},   {BYTES("a:b")},  {BYTES("a:b:")},     {BYTES("a@b")},
        {BYTES("a+b")}, {BYTES("a b")},  {BYTES("a%20b")},    {BYTES("a\0b")},
        {BYTES("a\0")}, {BYTES("a\0c")}, {BYTES("\xc3\xa9")}, {BYTES("e\xcc\x81")},
        {BYTES("A")},   {BYTES("a ")},   {BYTES(":a")},       {BYTES("")},
    };
    struct buf keys[UG_ARRAY_LEN(ids)];
    memset(keys, 0, sizeof keys);
    for (size_t i = 0; i < UG_ARRAY_LEN(ids); i++)
        entry_user_key(&keys[i], "p:", AC, FAMILY_V2, IS, ids[i].s, ids[i].n);
    for (size_t i = 0; i < UG_ARRAY_LEN(ids); i++) {
        for (size_t j = 0; j < UG_ARRAY_LEN(ids); j++) {
            bool same =
                keys[i].len == keys[j].len && memcmp(keys[i].data, keys[j].data, keys[i].len) == 0;
            assert_int_equal(same, i == j);
        }
    }
    for (size_t i = 0; i < UG_ARRAY_LEN(ids); i++)
        buf_free(&keys[i]);
}

static void test_alias_key(void **state)
{
    static const struct {
        const char *prefix;
        const char *want;
    } cases[] = {
        {"usergate:", "usergate:a:" AC ":" IS ":" US},
        {"", "a:" AC ":" IS ":" US},
        {"x[1]:", "x[1]:a:" AC ":" IS ":" US},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        entry_alias_key(&b, cases[i].prefix, AC, IS, US);
        assert_int_equal(b.len, strlen(cases[i].want));
        assert_string_equal(b.data, cases[i].want);
    }
    /* The alias and user namespaces never overlap. */
    struct buf u = {0};
    entry_user_key(&u, "p:", AC, FAMILY_V1_DEFAULT, IS, BYTES(US));
    entry_alias_key(&b, "p:", AC, IS, US);
    assert_false(u.len == b.len && memcmp(u.data, b.data, u.len) == 0);
    buf_free(&u);
    buf_free(&b);
}

/* Every key kind of one user name lives in its own namespace. */
static void test_key_namespaces(void **state)
{
    (void)state;
    struct buf k[5] = {{0}};
    entry_user_key(&k[0], "p:", AC, FAMILY_V2, IS, BYTES("alice"));
    entry_lock_key(&k[1], "p:", AC, FAMILY_V2, IS, BYTES("alice"));
    entry_tomb_key(&k[2], "p:", AC, IS, BYTES("alice"));
    entry_lock_key(&k[3], "p:", AC, FAMILY_V1_SERVICE, IS, BYTES("alice"));
    entry_clock_key(&k[4], "p:", AC);
    assert_string_equal(k[1].data, "p:l:" AC ":v2:" IS ":alice");
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_false(k[i].len == k[j].len && memcmp(k[i].data, k[j].data, k[i].len) == 0);
    /* The identity is appended raw: a NUL or ':' cannot shift fields. */
    entry_lock_key(&k[0], "p:", AC, FAMILY_V2, IS, "a\0:b", 4);
    assert_int_equal(k[0].len, strlen("p:l:" AC ":v2:" IS ":") + 4);
    for (int i = 0; i < 5; i++)
        buf_free(&k[i]);
}

static void test_service_pattern(void **state)
{
    static const struct {
        const char *prefix;
        bool alias;
        const char *want;
    } cases[] = {
        {"usergate:", false, "usergate:u:" AC ":*:" IS ":*"},
        {"usergate:", true, "usergate:a:" AC ":" IS ":*"},
        {"a*b:", false, "a\\*b:u:" AC ":*:" IS ":*"},
        {"q?:", true, "q\\?:a:" AC ":" IS ":*"},
        {"x[1]:", false, "x\\[1\\]:u:" AC ":*:" IS ":*"},
        {"back\\slash:", true, "back\\\\slash:a:" AC ":" IS ":*"},
        {"", true, "a:" AC ":" IS ":*"},
        {"*?[]\\", false, "\\*\\?\\[\\]\\\\u:" AC ":*:" IS ":*"},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        entry_service_pattern(&b, cases[i].prefix, AC, IS, cases[i].alias);
        assert_string_equal(b.data, cases[i].want);
    }
    buf_free(&b);
}

static void test_round_trip(void **state)
{
    static const char body_nul[] = "{\"a\":1}\0tail";
    const struct entry cases[] = {
        {200, 1700000000000, 1700000300000, BYTES(US), BYTES("alice"),
         BYTES("{\"sid\":\"" US "\"}")},
        {404, 1, 2, BYTES(""), BYTES("ghost"), BYTES("{\"code\":20404}")},
        {404, 0, 0, BYTES(""), BYTES(""), BYTES("")},
        {200, 5, 4, BYTES(US), BYTES("a\0b:c d\xc3\xa9"), body_nul, sizeof body_nul - 1},
        {200, 999999999999999999, 999999999999999999, BYTES(US), BYTES("x"), BYTES("\n\n")},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        const struct entry *w = &cases[i];
        entry_encode(&b, w);
        struct entry e;
        memset(&e, 0xa5, sizeof e);
        assert_int_equal(entry_decode(b.data, b.len, &e), 0);
        assert_int_equal(e.status, w->status);
        assert_int_equal(e.stored_ms, w->stored_ms);
        assert_int_equal(e.fresh_until_ms, w->fresh_until_ms);
        assert_int_equal(e.sid_len, w->sid_len);
        assert_memory_equal(e.sid, w->sid, w->sid_len);
        assert_int_equal(e.identity_len, w->identity_len);
        assert_memory_equal(e.identity, w->identity, w->identity_len);
        assert_int_equal(e.body_len, w->body_len);
        assert_memory_equal(e.body, w->body, w->body_len);
        /* Pointers point into the encoded bytes, not copies. */
        assert_true(e.body >= b.data && e.body + e.body_len == b.data + b.len);
    }
    /* Exact header bytes (other implementations may read them). */
    const struct entry one = {404, 12, 34, BYTES(""), BYTES("id"), BYTES("B")};
    entry_encode(&b, &one);
    assert_int_equal(b.len, strlen("UG1 404 12 34 0 2 1\nidB"));
    assert_memory_equal(b.data, "UG1 404 12 34 0 2 1\nidB", b.len);
    buf_free(&b);
}

static void test_decode_rejects(void **state)
{
    static const struct {
        const char *data;
        size_t len;
        const char *why;
    } cases[] = {
        {BYTES(""), "empty"},
        {BYTES("U"), "short magic"},
        {BYTES("XX1 200 1 2 1 1 0\nab"), "bad magic"},
        {BYTES("ug1 200 1 2 1 1 0\nab"), "lower-case magic"},
        {BYTES("UG2 200 1 2 1 1 0\nab"), "other version"},
        {BYTES("UG0 200 1 2 1 1 0\nab"), "version zero"},
        {BYTES("UG01 200 1 2 1 1 0\nab"), "leading zero version"},
        {BYTES("UG 200 1 2 1 1 0\nab"), "missing version"},
        {BYTES("UG1 200 1 2 1 1 0\na"), "truncated payload"},
        {BYTES("UG1 200 1 2 1 1 0\nabc"), "extra byte"},
        {BYTES("UG1 200 1 2 1 1 0\n"), "payload missing"},
        {BYTES("UG1 200 1 2 1 1 0"), "no newline"},
        {BYTES("UG1 200 1 2 1 1"), "truncated header"},
        {BYTES("UG1 200 1 2 1 1 \nab"), "empty length"},
        {BYTES("UG1 200 1 2 -1 1 0\nab"), "negative length"},
        {BYTES("UG1 200 -1 2 1 1 0\nab"), "negative time"},
        {BYTES("UG1 200 1 2 +1 1 0\nab"), "plus sign"},
        {BYTES("UG1 200 1 2 1 1 0x\nab"), "non-digit"},
        {BYTES("UG1 200 1 2 1a 1 0\nab"), "non-digit inside"},
        {BYTES("UG1 200 1 2 01 1 0\nab"), "leading zero"},
        {BYTES("UG1  200 1 2 1 1 0\nab"), "double space"},
        {BYTES("UG1\t200 1 2 1 1 0\nab"), "tab separator"},
        {BYTES("UG1 200 1 2 1 1 0\r\nab"), "CRLF"},
        {BYTES("UG1 200 1 2 1 1 0 \nab"), "trailing space"},
        {BYTES("UG1 200 1 2 1 1 0 0\nab"), "extra field"},
        {BYTES("UG1 302 1 2 1 1 0\nab"), "unknown status"},
        {BYTES("UG1 20 1 2 1 1 0\nab"), "short status"},
        {BYTES("UG1 200 1 2 0 1 0\na"), "positive without sid"},
        {BYTES("UG1 200 1 2 1 0 0\na"), "positive without identity"},
        {BYTES("UG1 200 1 2 18446744073709551615 1 0\nab"), "huge length"},
        {BYTES("UG1 200 1 2 1 1 9999999999999999999\nab"), "19-digit length"},
        {BYTES("UG1 200 1 2 3 3 18446744073709551610\nab"), "wrapping sum"},
        {BYTES("UG1 200 99999999999999999999 2 1 1 0\nab"), "time overflow"},
        {BYTES("UG1 200 1 2 1 1 5\nab"), "body longer than data"},
        {BYTES("UG1\0200 1 2 1 1 0\nab"), "NUL separator"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct entry e;
        if (entry_decode(cases[i].data, cases[i].len, &e) != -1)
            fail_msg("accepted: %s", cases[i].why);
    }
    /* Every strict prefix of a valid envelope is rejected. */
    struct buf b = {0};
    const struct entry ok = {200, 1, 2, BYTES(US), BYTES("alice"), BYTES("{}")};
    entry_encode(&b, &ok);
    for (size_t n = 0; n < b.len; n++) {
        struct entry e;
        assert_int_equal(entry_decode(b.data, n, &e), -1);
    }
    struct entry e;
    assert_int_equal(entry_decode(b.data, b.len, &e), 0);
    buf_free(&b);
}

static void test_user_fields(void **state)
{
    static const struct {
        const char *json;
        size_t len;
        size_t sidlen, idlen;
        int want;
        const char *sid, *identity;
    } cases[] = {
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"alice\"}"), 35, 257, 0, US, "alice"},
        {BYTES("{\"identity\":\"a:b c+d@e\",\"sid\":\"" US "\",\"x\":[1,{}]}"), 35, 257, 0, US,
         "a:b c+d@e"},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"jos\\u00e9\"}"), 35, 257, 0, US, "jos\xc3\xa9"},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"abc\"}"), 35, 4, 0, US, "abc"},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"abcd\"}"), 35, 4, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"alice\"}"), 34, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"identity\":\"alice\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":null}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":42}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":42,\"identity\":\"alice\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"CH0123456789abcdef0123456789abcdef\",\"identity\":\"a\"}"), 35, 257, -1,
         NULL, NULL},
        {BYTES("{\"sid\":\"US123\",\"identity\":\"a\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"SID\":\"" US "\",\"Identity\":\"a\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"a\\u0000b\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"a\0b\"}"), 35, 257, -1, NULL, NULL},
        {BYTES("[\"" US "\",\"alice\"]"), 35, 257, -1, NULL, NULL},
        {BYTES("{\"sid\":\"" US "\",\"identity\":\"alice\""), 35, 257, -1, NULL, NULL},
        {BYTES("not json"), 35, 257, -1, NULL, NULL},
        {BYTES(""), 35, 257, -1, NULL, NULL},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char sid[64], id[300];
        memset(sid, 'Z', sizeof sid);
        memset(id, 'Z', sizeof id);
        int rc = entry_user_fields(cases[i].json, cases[i].len, sid, cases[i].sidlen, id,
                                   cases[i].idlen);
        if (rc != cases[i].want)
            fail_msg("case %zu: rc %d", i, rc);
        if (rc == 0) {
            assert_string_equal(sid, cases[i].sid);
            assert_string_equal(id, cases[i].identity);
        }
    }
    /* Only len bytes are read: a valid object followed by junk the caller
     * did not include still parses. */
    static const char tail[] = "{\"sid\":\"" US "\",\"identity\":\"bob\"}GARBAGE";
    char sid[35], id[16];
    assert_int_equal(entry_user_fields(tail, strlen(tail) - 7, sid, sizeof sid, id, sizeof id), 0);
    assert_string_equal(id, "bob");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_key),        cmocka_unit_test(test_user_key_distinct),
        cmocka_unit_test(test_alias_key),       cmocka_unit_test(test_key_namespaces),
        cmocka_unit_test(test_service_pattern), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_rejects),  cmocka_unit_test(test_user_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

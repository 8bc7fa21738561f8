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

/* The tag of (AC, IS, name), computed once by the code under test; the
 * layout around it is what these tests pin down. */
static const char *tag_of(const char *name, size_t n)
{
    static char tag[ENTRY_TAG_LEN + 1];
    entry_tag(tag, AC, IS, name, n);
    return tag;
}

static void test_key_layout(void **state)
{
    (void)state;
    static const struct {
        const char *prefix;
        enum entry_key_kind kind;
        int family;
        const char *name;
        size_t name_len;
        const char *want_fmt; /* %s = the name's tag */
    } cases[] = {
        {"usergate:", EK_ENTRY, FAMILY_V1_DEFAULT, BYTES("alice"),
         "usergate:u:{%s}:" AC ":" IS ":v1:alice"},
        {"usergate:", EK_ENTRY, FAMILY_V1_SERVICE, BYTES("alice"),
         "usergate:u:{%s}:" AC ":" IS ":v1s:alice"},
        {"p:", EK_ENTRY, FAMILY_V2, BYTES("a:b"), "p:u:{%s}:" AC ":" IS ":v2:a:b"},
        {"", EK_VERSION, -1, BYTES("alice"), "v:{%s}:" AC ":" IS ":alice"},
        {"p:", EK_HOLD, -1, BYTES("bob+1@example.com"), "p:h:{%s}:" AC ":" IS ":bob+1@example.com"},
        {"p:", EK_LOCK, FAMILY_V2, BYTES("carol smith"), "p:l:{%s}:" AC ":" IS ":v2:carol smith"},
        {"p:", EK_ALIAS, -1, BYTES(US), "p:a:{%s}:" AC ":" IS ":" US},
        {"x[1]:", EK_ENTRY, FAMILY_V2, BYTES(US), "x[1]:u:{%s}:" AC ":" IS ":v2:" US},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char want[512];
        snprintf(want, sizeof want, cases[i].want_fmt, tag_of(cases[i].name, cases[i].name_len));
        entry_key(&b, cases[i].prefix, cases[i].kind, AC, IS, cases[i].family, cases[i].name,
                  cases[i].name_len);
        assert_string_equal(b.data, want);
    }
    /* The name is appended raw: a NUL or ':' cannot shift fields. */
    entry_key(&b, "p:", EK_ENTRY, AC, IS, FAMILY_V2, "a\0:b", 4);
    char head[256];
    snprintf(head, sizeof head, "p:u:{%s}:" AC ":" IS ":v2:", tag_of("a\0:b", 4));
    assert_int_equal(b.len, strlen(head) + 4);
    assert_memory_equal(b.data, head, strlen(head));
    assert_memory_equal(b.data + strlen(head), "a\0:b", 4);
    buf_free(&b);
}

/* Tags are part of what is stored: an instance of another version (a rolling
 * upgrade) must compute the same ones, or its invalidations would miss. The
 * values were printed by the first implementation. */
static void test_tag_values(void **state)
{
    (void)state;
    static char big[600];
    memset(big, 'x', sizeof big);
    static const struct {
        const char *name;
        size_t len;
        const char *tag;
    } cases[] = {
        {BYTES("alice"), "37029e43cd39367d"},
        {BYTES("bob+1@example.com"), "a8fbb1d83a9e3959"},
        {BYTES(US), "38407582c8271cdf"},
        {BYTES("a\0:b"), "a403de19f348e94e"},
        {BYTES(""), "662c9a3b9b8ea9b6"},
        {big, sizeof big, "5d29d237fba15211"}, /* longer than the stack copy */
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char tag[ENTRY_TAG_LEN + 1];
        entry_tag(tag, AC, IS, cases[i].name, cases[i].len);
        assert_string_equal(tag, cases[i].tag);
    }
}

/* Every kind of key of one name shares the name's hash tag (one Redis
 * Cluster slot); different names (even a SID and its identity) and the same
 * name in another service or account get different tags. */
static void test_tags(void **state)
{
    (void)state;
    char a[ENTRY_TAG_LEN + 1], b2[ENTRY_TAG_LEN + 1];
    entry_tag(a, AC, IS, BYTES("alice"));
    assert_int_equal(strlen(a), ENTRY_TAG_LEN);
    assert_int_equal(strspn(a, "0123456789abcdef"), ENTRY_TAG_LEN);
    const enum entry_key_kind kinds[] = {EK_ENTRY, EK_VERSION, EK_HOLD, EK_LOCK};
    for (size_t i = 0; i < UG_ARRAY_LEN(kinds); i++) {
        struct buf k = {0};
        entry_key(&k, "usergate:", kinds[i], AC, IS, kinds[i] == EK_ENTRY ? FAMILY_V2 : -1,
                  BYTES("alice"));
        const char *open = strchr(k.data, '{'), *close = strchr(k.data, '}');
        assert_non_null(open);
        assert_non_null(close);
        assert_int_equal(close - open - 1, ENTRY_TAG_LEN);
        assert_memory_equal(open + 1, a, ENTRY_TAG_LEN);
        buf_free(&k);
    }
    entry_tag(b2, AC, IS, BYTES("alicf"));
    assert_string_not_equal(a, b2);
    entry_tag(b2, AC, "IS00000000000000000000000000000003", BYTES("alice"));
    assert_string_not_equal(a, b2);
    entry_tag(b2, "AC00000000000000000000000000000009", IS, BYTES("alice"));
    assert_string_not_equal(a, b2);
    entry_tag(b2, AC, IS, BYTES("alice"));
    assert_string_equal(a, b2);
}

/* Names that differ only in bytes a naive formatter would lose or merge
 * (':' '@' '+' spaces, UTF-8, NUL, trailing bytes) yield distinct keys. */
static void test_key_distinct(void **state)
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
        entry_key(&keys[i], "p:", EK_ENTRY, AC, IS, FAMILY_V2, ids[i].s, ids[i].n);
    for (size_t i = 0; i < UG_ARRAY_LEN(ids); i++) {
        for (size_t j = 0; j < UG_ARRAY_LEN(ids); j++) {
            bool same =
                keys[i].len == keys[j].len && memcmp(keys[i].data, keys[j].data, keys[i].len) == 0;
            assert_int_equal(same, i == j);
        }
    }
    for (size_t i = 0; i < UG_ARRAY_LEN(ids); i++)
        buf_free(&keys[i]);
    /* Kinds never overlap. */
    struct buf k[5] = {{0}};
    const enum entry_key_kind kinds[] = {EK_ENTRY, EK_VERSION, EK_HOLD, EK_LOCK, EK_ALIAS};
    for (int i = 0; i < 5; i++)
        entry_key(&k[i], "p:", kinds[i], AC, IS, FAMILY_V2, BYTES(US));
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_false(k[i].len == k[j].len && memcmp(k[i].data, k[j].data, k[i].len) == 0);
    for (int i = 0; i < 5; i++)
        buf_free(&k[i]);
}

static void test_service_pattern(void **state)
{
    static const struct {
        const char *prefix;
        const char *want;
    } cases[] = {
        {"usergate:", "usergate:?:{*}:" AC ":" IS ":*"},
        {"a*b:", "a\\*b:?:{*}:" AC ":" IS ":*"},
        {"q?:", "q\\?:?:{*}:" AC ":" IS ":*"},
        {"x[1]:", "x\\[1\\]:?:{*}:" AC ":" IS ":*"},
        {"back\\slash:", "back\\\\slash:?:{*}:" AC ":" IS ":*"},
        {"", "?:{*}:" AC ":" IS ":*"},
    };
    struct buf b = {0};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        entry_service_pattern(&b, cases[i].prefix, AC, IS);
        assert_string_equal(b.data, cases[i].want);
    }
    buf_free(&b);
}

static void test_round_trip(void **state)
{
    static const char body_nul[] = "{\"a\":1}\0tail";
    const struct entry cases[] = {
        {200, 1700000000000, 1700000300000, BYTES("4611686018427387904"), BYTES(US), BYTES("alice"),
         BYTES("{\"sid\":\"" US "\"}")},
        {404, 1, 2, BYTES("7"), BYTES(""), BYTES("ghost"), BYTES("{\"code\":20404}")},
        {404, 0, 0, BYTES(""), BYTES(""), BYTES(""), BYTES("")},
        {200, 5, 4, BYTES("1"), BYTES(US), BYTES("a\0b:c d\xc3\xa9"), body_nul,
         sizeof body_nul - 1},
        {200, 999999999999999999, 999999999999999999, BYTES("12"), BYTES(US), BYTES("x"),
         BYTES("\n\n")},
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
        assert_int_equal(e.ver_len, w->ver_len);
        assert_memory_equal(e.ver, w->ver, w->ver_len);
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
    const struct entry one = {404, 12, 34, BYTES("99"), BYTES(""), BYTES("id"), BYTES("B")};
    entry_encode(&b, &one);
    assert_int_equal(b.len, strlen("UG2 404 12 34 2 0 2 1\n99idB"));
    assert_memory_equal(b.data, "UG2 404 12 34 2 0 2 1\n99idB", b.len);
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
        {BYTES("XX2 200 1 2 0 1 1 0\nab"), "bad magic"},
        {BYTES("ug2 200 1 2 0 1 1 0\nab"), "lower-case magic"},
        {BYTES("UG1 200 1 2 1 1 0\nab"), "the previous version"},
        {BYTES("UG3 200 1 2 0 1 1 0\nab"), "a later version"},
        {BYTES("UG0 200 1 2 1 1 0\nab"), "version zero"},
        {BYTES("UG02 200 1 2 0 1 1 0\nab"), "leading zero version"},
        {BYTES("UG 200 1 2 0 1 1 0\nab"), "missing version"},
        {BYTES("UG2 200 1 2 0 1 1 0\na"), "truncated payload"},
        {BYTES("UG2 200 1 2 0 1 1 0\nabc"), "extra byte"},
        {BYTES("UG2 200 1 2 0 1 1 0\n"), "payload missing"},
        {BYTES("UG2 200 1 2 0 1 1 0"), "no newline"},
        {BYTES("UG2 200 1 2 0 1 1"), "truncated header"},
        {BYTES("UG2 200 1 2 0 1 1 \nab"), "empty length"},
        {BYTES("UG2 200 1 2 0 -1 1 0\nab"), "negative length"},
        {BYTES("UG2 200 -1 2 0 1 1 0\nab"), "negative time"},
        {BYTES("UG2 200 1 2 0 +1 1 0\nab"), "plus sign"},
        {BYTES("UG2 200 1 2 0 1 1 0x\nab"), "non-digit"},
        {BYTES("UG2 200 1 2 0 1a 1 0\nab"), "non-digit inside"},
        {BYTES("UG2 200 1 2 0 01 1 0\nab"), "leading zero"},
        {BYTES("UG2  200 1 2 0 1 1 0\nab"), "double space"},
        {BYTES("UG2\t200 1 2 0 1 1 0\nab"), "tab separator"},
        {BYTES("UG2 200 1 2 0 1 1 0\r\nab"), "CRLF"},
        {BYTES("UG2 200 1 2 0 1 1 0 \nab"), "trailing space"},
        {BYTES("UG2 200 1 2 0 1 1 0 0\nab"), "extra field"},
        {BYTES("UG2 302 1 2 0 1 1 0\nab"), "unknown status"},
        {BYTES("UG2 20 1 2 0 1 1 0\nab"), "short status"},
        {BYTES("UG2 200 1 2 0 0 1 0\na"), "positive without sid"},
        {BYTES("UG2 200 1 2 0 1 0 0\na"), "positive without identity"},
        {BYTES("UG2 200 1 2 0 18446744073709551615 1 0\nab"), "huge length"},
        {BYTES("UG2 200 1 2 0 1 1 9999999999999999999\nab"), "19-digit length"},
        {BYTES("UG2 200 1 2 0 3 3 18446744073709551610\nab"), "wrapping sum"},
        {BYTES("UG2 200 99999999999999999999 2 0 1 1 0\nab"), "time overflow"},
        {BYTES("UG2 200 1 2 0 1 1 5\nab"), "body longer than data"},
        {BYTES("UG2\0200 1 2 0 1 1 0\nab"), "NUL separator"},
        {BYTES("UG2 200 1 2 1 1 1 0\nab"), "version eats the sid"},
        {BYTES("UG2 200 1 2 33 1 1 0\n012345678901234567890123456789012ab"), "version too long"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct entry e;
        if (entry_decode(cases[i].data, cases[i].len, &e) != -1)
            fail_msg("accepted: %s", cases[i].why);
    }
    /* Every strict prefix of a valid envelope is rejected. */
    struct buf b = {0};
    const struct entry ok = {200, 1, 2, BYTES("5"), BYTES(US), BYTES("alice"), BYTES("{}")};
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
        cmocka_unit_test(test_key_layout),   cmocka_unit_test(test_tags),
        cmocka_unit_test(test_key_distinct), cmocka_unit_test(test_service_pattern),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_user_fields),  cmocka_unit_test(test_tag_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

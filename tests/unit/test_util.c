/* Unit tests for util: buffers, percent and base64 coding, constant-time
 * compare, number parsing, trimming, secret files and randomness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util.h"

static void test_buf(void **state)
{
    struct buf b = {0};
    buf_puts(&b, "abc");
    buf_append(&b, "de", 2);
    buf_printf(&b, "-%d-", 42);
    assert_int_equal(b.len, 9);
    assert_string_equal(b.data, "abcde-42-");
    /* Longer than the printf fast path. */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    buf_printf(&b, "%s", big);
    assert_int_equal(b.len, 9 + 999);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 9, big, 999);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
}

static void test_pct_decode(void **state)
{
    static const struct {
        const char *in;
        bool plus_space;
        long want_len; /* -1: error */
        const char *want;
    } cases[] = {
        {"bob+1@example.com", false, 17, "bob+1@example.com"},
        {"bob+1", true, 5, "bob 1"},
        {"%40", false, 1, "@"},
        {"%2B", true, 1, "+"},
        {"carol%20smith", false, 11, "carol smith"},
        {"jos%C3%A9", false, 5, "jos\xc3\xa9"},
        {"%2f%2F", false, 2, "//"},
        {"%252F", false, 3, "%2F"}, /* exactly once */
        {"50%off", false, -1, NULL},
        {"%", false, -1, NULL},
        {"a%4", false, -1, NULL},
        {"%G0", false, -1, NULL},
        {"", false, 0, ""},
        {"plain", false, 5, "plain"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char out[64];
        memset(out, 'Z', sizeof out);
        long n = util_pct_decode(cases[i].in, strlen(cases[i].in), out, cases[i].plus_space);
        assert_int_equal(n, cases[i].want_len);
        if (n >= 0) {
            assert_memory_equal(out, cases[i].want, (size_t)n);
            assert_int_equal(out[n], '\0');
        }
    }
    /* A NUL may be produced; the length tells. */
    char out[8];
    assert_int_equal(util_pct_decode("a%00b", 5, out, false), 3);
    assert_memory_equal(out, "a\0b", 3);
}

static void test_pct_encode(void **state)
{
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        {"AZaz09-._~", "AZaz09-._~"},     {"bob+1@example.com", "bob%2B1%40example.com"},
        {"carol smith", "carol%20smith"}, {"jos\xc3\xa9", "jos%C3%A9"},
        {"a/b?c#d%", "a%2Fb%3Fc%23d%25"}, {"", ""},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct buf b = {0};
        util_pct_encode(&b, cases[i].in, strlen(cases[i].in));
        assert_string_equal(b.data ? b.data : "", cases[i].want);
        /* Round trip through the decoder. */
        char out[64];
        long n = util_pct_decode(b.data ? b.data : "", b.len, out, false);
        assert_int_equal(n, (long)strlen(cases[i].in));
        assert_memory_equal(out, cases[i].in, (size_t)n);
        buf_free(&b);
    }
}

static void test_base64(void **state)
{
    static const struct {
        const char *plain;
        const char *enc;
    } cases[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
        {"user:p\xff\xfe", "dXNlcjpw//4="},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].plain);
        char enc[64], dec[64];
        size_t el = util_base64_encode(cases[i].plain, n, enc);
        assert_int_equal(el, strlen(cases[i].enc));
        assert_string_equal(enc, cases[i].enc);
        long dl = util_base64_decode(enc, el, dec);
        assert_int_equal(dl, (long)n);
        assert_memory_equal(dec, cases[i].plain, n);
        assert_int_equal(dec[dl], '\0');
    }
    static const char *const bad[] = {"Zg=", "Zg", "Z===", "Zm9v!A==", "Zg==Zg==", "=Zg=", "Zm=v"};
    for (size_t i = 0; i < UG_ARRAY_LEN(bad); i++) {
        char dec[64];
        assert_int_equal(util_base64_decode(bad[i], strlen(bad[i]), dec), -1);
    }
    /* Every byte value survives a round trip. */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    char enc[4 * ((256 + 2) / 3) + 1], dec[3 * (sizeof enc / 4) + 3];
    size_t el = util_base64_encode(all, sizeof all, enc);
    assert_int_equal(util_base64_decode(enc, el, dec), 256);
    assert_memory_equal(dec, all, 256);
}

static void test_ct_equal(void **state)
{
    static const struct {
        const char *a, *b;
        bool eq;
    } cases[] = {
        {"secret", "secret", true},
        {"secret", "secreT", false},
        {"secret", "secret2", false},
        {"", "", true},
        {"a", "", false},
        {"xecret", "secret", false},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++)
        assert_int_equal(
            util_ct_equal(cases[i].a, strlen(cases[i].a), cases[i].b, strlen(cases[i].b)),
            cases[i].eq);
}

static void test_parse_long(void **state)
{
    static const struct {
        const char *s;
        long min, max;
        bool ok;
        long want;
    } cases[] = {
        {"0", 0, 10, true, 0},
        {"10", 0, 10, true, 10},
        {"11", 0, 10, false, 0},
        {"-1", 0, 10, false, 0},
        {"-5", -10, 10, true, -5},
        {"", 0, 10, false, 0},
        {" 5", 0, 10, false, 0},
        {"+5", 0, 10, false, 0},
        {"5 ", 0, 10, false, 0},
        {"5x", 0, 10, false, 0},
        {"99999999999999999999999", 0, 10, false, 0},
        {"9223372036854775807", 0, 9223372036854775807L, true, 9223372036854775807L},
        {"-", -10, 10, false, 0},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        long v = 12345;
        bool ok = util_parse_long(cases[i].s, cases[i].min, cases[i].max, &v);
        assert_int_equal(ok, cases[i].ok);
        if (ok)
            assert_int_equal(v, cases[i].want);
        else
            assert_int_equal(v, 12345);
    }
    long v;
    assert_false(util_parse_long(NULL, 0, 1, &v));
}

static void test_trim_strdup(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"  a b \t\n", "a b"}, {"", ""}, {"   ", ""}, {"x", "x"}, {"\tx", "x"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char *s = util_strdup(cases[i].in);
        assert_string_equal(util_trim(s), cases[i].want);
        free(s);
    }
    assert_null(util_strdup(NULL));
    char *s = util_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = util_strndup("ab", 10);
    assert_string_equal(s, "ab");
    free(s);
    int *z = util_calloc(4, sizeof(int));
    assert_int_equal(z[0] | z[1] | z[2] | z[3], 0);
    free(z);
}

static void test_secret_file(void **state)
{
    static const struct {
        const char *content;
        size_t len;
        const char *want;
    } cases[] = {
        {"s3cret\n", 7, "s3cret"},
        {"s3cret\r\n", 8, "s3cret"},
        {"s3cret", 6, "s3cret"},
        {"s3cret\n\n", 8, "s3cret\n"}, /* only one newline stripped */
        {"", 0, ""},
        {"\n", 1, ""},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char path[] = "/tmp/ug_secretXXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, cases[i].content, cases[i].len), (ssize_t)cases[i].len);
        close(fd);
        char *s = util_read_secret_file(path);
        unlink(path);
        assert_non_null(s);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
    assert_null(util_read_secret_file("/nonexistent/ug/secret"));
}

/* The reference vectors of the SipHash paper: key 00..0f, message 00..n-1. */
static void test_siphash(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        uint64_t want;
    } cases[] = {
        {0, 0x726fdb47dd0e0e31ULL},
        {1, 0x74f839c593dc67fdULL},
        {15, 0xa129ca6149be45e5ULL},
    };
    unsigned char key_bytes[16], msg[64];
    for (int i = 0; i < 16; i++)
        key_bytes[i] = (unsigned char)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (unsigned char)i;
    uint64_t key[2] = {0, 0};
    for (int i = 7; i >= 0; i--) {
        key[0] = (key[0] << 8) | key_bytes[i];
        key[1] = (key[1] << 8) | key_bytes[8 + i];
    }
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++)
        assert_true(util_siphash(key, msg, cases[i].n) == cases[i].want);
    /* Another key, another hash. */
    uint64_t other[2] = {key[0] ^ 1, key[1]};
    assert_true(util_siphash(other, msg, 15) != cases[2].want);
}

static void test_clocks_random(void **state)
{
    int64_t a = util_now_ms(), b = util_now_ms();
    assert_true(b >= a);
    /* Later than 2020-01-01 in ms. */
    assert_true(util_wall_ms() > 1577836800000LL);
    unsigned char r1[32] = {0}, r2[32] = {0};
    util_random(r1, sizeof r1);
    util_random(r2, sizeof r2);
    assert_memory_not_equal(r1, r2, sizeof r1);
    static const uint64_t bounds[] = {1, 2, 3, 7, 1000, UINT64_MAX};
    for (size_t i = 0; i < UG_ARRAY_LEN(bounds); i++)
        for (int k = 0; k < 200; k++)
            assert_true(util_random_below(bounds[i]) < bounds[i]);
    /* Over many draws each residue of a small n appears. */
    int seen[3] = {0};
    for (int k = 0; k < 300; k++)
        seen[util_random_below(3)]++;
    for (int k = 0; k < 3; k++)
        assert_true(seen[k] > 0);
}

static size_t dropped;
static void count_drop(void *obj)
{
    dropped++;
    free(obj);
}

/* A pool hands back what it kept, as it was left, newest first; a new
 * object is zeroed; what does not fit and what is cleared is dropped. */
static void test_pool(void **state)
{
    (void)state;
    struct pool p = {.size = 64, .drop = count_drop};
    dropped = 0;
    unsigned char *a = pool_take(&p);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(a[i], 0);
    a[0] = 7;
    pool_put(&p, a);
    unsigned char *b = pool_take(&p);
    assert_ptr_equal(a, b);
    assert_int_equal(b[0], 7); /* as left: the caller resets */
    void *objs[POOL_KEEP + 3];
    objs[0] = b;
    for (size_t i = 1; i < UG_ARRAY_LEN(objs); i++)
        objs[i] = pool_take(&p);
    for (size_t i = 0; i < UG_ARRAY_LEN(objs); i++)
        pool_put(&p, objs[i]);
    assert_int_equal(dropped, 3);
    assert_int_equal(p.n, POOL_KEEP);
    assert_ptr_equal(pool_take(&p), objs[POOL_KEEP - 1]);
    pool_put(&p, objs[POOL_KEEP - 1]);
    pool_clear(&p);
    assert_int_equal(dropped, 3 + POOL_KEEP);
    assert_int_equal(p.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),           cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_pct_encode),    cmocka_unit_test(test_base64),
        cmocka_unit_test(test_ct_equal),      cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_trim_strdup),   cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_clocks_random), cmocka_unit_test(test_siphash),
        cmocka_unit_test(test_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for signature: Twilio's published example vectors, the string
 * Twilio signs, the port forms of a URL, and signature_check's verdict on
 * genuine, altered and unsigned requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "signature.h"
#include "twilio.h"
#include "util.h"

#define TOKEN "12345"

/* Twilio's documented example: token 12345, this URL and these parameters
 * sign to 0/KCTR6DLpKmkAf8muzZqo1nDgQ=. */
static const char example_url[] = "https://mycompany.com/myapp.php?foo=1&bar=2";
static const char example_form[] =
    "CallSid=CA1234567890ABCDE&Caller=%2B12349013030&Digits=1234&From=%2B12349013030&"
    "To=%2B18005551212";
static const char example_sig[] = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

static void parse(const char *body, struct form *f)
{
    char err[128];
    assert_int_equal(form_parse(body, strlen(body), f, err, sizeof err), 0);
}

static void test_published_vectors(void **state)
{
    (void)state;
    struct form f = {0};
    parse(example_form, &f);
    struct buf s = {0};
    signature_string(&s, example_url, strlen(example_url), &f);
    assert_string_equal(s.data, "https://mycompany.com/myapp.php?foo=1&bar=2"
                                "CallSidCA1234567890ABCDECaller+12349013030Digits1234"
                                "From+12349013030To+18005551212");
    char sig[SIGNATURE_LEN + 1];
    signature_hmac_sha1_b64(TOKEN, 5, s.data, s.len, sig);
    assert_string_equal(sig, example_sig);
    buf_free(&s);
    form_free(&f);
    /* twilio-python's body hash example */
    char hex[SIGNATURE_SHA256_HEX + 1];
    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    signature_sha256_hex(body, strlen(body), hex);
    assert_string_equal(hex, "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
}

static void test_sort_order(void **state)
{
    (void)state;
    /* Sorted by name in byte order (upper case first), then by value;
     * the order they arrived in does not matter. */
    static const struct {
        const char *form, *signed_string;
    } cases[] = {
        {"b=2&a=1", "Ua1b2"},
        {"a=1&B=2", "UB2a1"},
        {"x=2&x=1", "Ux1x2"},
        {"ab=1&a=2", "Ua2ab1"},
        {"", "U"},
        {"k=%C3%A9", "Uk\xc3\xa9"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct form f = {0};
        parse(cases[i].form, &f);
        struct buf s = {0};
        signature_string(&s, "U", 1, &f);
        assert_string_equal(s.data, cases[i].signed_string);
        buf_free(&s);
        form_free(&f);
    }
}

static void test_other_port(void **state)
{
    (void)state;
    static const struct {
        const char *url, *other; /* NULL: not an http(s) URL */
    } cases[] = {
        {"https://gw.example.com/twilio/events", "https://gw.example.com:443/twilio/events"},
        {"https://gw.example.com:443/twilio/events", "https://gw.example.com/twilio/events"},
        {"https://gw.example.com:8443/e?x=1", "https://gw.example.com/e?x=1"},
        {"http://gw.example.com/e", "http://gw.example.com:80/e"},
        {"http://[::1]:8080/e", "http://[::1]/e"},
        {"http://[::1]/e", "http://[::1]:80/e"},
        {"https://user:pw@gw.example.com/e", "https://user:pw@gw.example.com:443/e"},
        {"https://gw.example.com", "https://gw.example.com:443"},
        {"ftp://gw.example.com/e", NULL},
        {"https:///e", NULL},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct buf b = {0};
        bool ok = signature_url_other_port(cases[i].url, strlen(cases[i].url), &b);
        if (!cases[i].other) {
            assert_false(ok);
        } else {
            assert_true(ok);
            assert_string_equal(b.data, cases[i].other);
        }
        buf_free(&b);
    }
}

static void sign_url(const char *url, const struct form *f, char sig[SIGNATURE_LEN + 1])
{
    struct buf s = {0};
    signature_string(&s, url, strlen(url), f);
    signature_hmac_sha1_b64(TOKEN, 5, s.data, s.len, sig);
    buf_free(&s);
}

static void test_check(void **state)
{
    (void)state;
    struct form f = {0};
    parse(example_form, &f);
    const char *u = example_url;
    size_t ul = strlen(u);
    /* genuine, and under the other port form */
    assert_int_equal(signature_check(TOKEN, 5, u, ul, &f, example_form, strlen(example_form), false,
                                     example_sig),
                     SIGNATURE_OK);
    const char *u443 = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
    assert_int_equal(signature_check(TOKEN, 5, u443, strlen(u443), &f, NULL, 0, false, example_sig),
                     SIGNATURE_OK);
    /* missing, wrong token, other URL, altered parameter */
    assert_int_equal(signature_check(TOKEN, 5, u, ul, &f, NULL, 0, false, NULL), SIGNATURE_MISSING);
    assert_int_equal(signature_check(TOKEN, 5, u, ul, &f, NULL, 0, false, ""), SIGNATURE_MISSING);
    assert_int_equal(signature_check("12346", 5, u, ul, &f, NULL, 0, false, example_sig),
                     SIGNATURE_MISMATCH);
    const char *other = "https://mycompany.com/myapp.php?foo=1&bar=3";
    assert_int_equal(
        signature_check(TOKEN, 5, other, strlen(other), &f, NULL, 0, false, example_sig),
        SIGNATURE_MISMATCH);
    free(f.fields[2].value);
    f.fields[2].value = util_strdup("1235");
    assert_int_equal(signature_check(TOKEN, 5, u, ul, &f, NULL, 0, false, example_sig),
                     SIGNATURE_MISMATCH);
    /* a truncated or padded signature */
    assert_int_equal(signature_check(TOKEN, 5, u, ul, NULL, NULL, 0, false, "0/KCTR6DLpKmkAf8"),
                     SIGNATURE_MISMATCH);
    form_free(&f);

    /* JSON: the URL carries the body's hash and alone is signed */
    const char *body = "{\"property\": \"value\", \"boolean\": true}";
    const char *ju = "https://gw.example.com/e?bodySHA256="
                     "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    char sig[SIGNATURE_LEN + 1];
    sign_url(ju, NULL, sig);
    assert_int_equal(signature_check(TOKEN, 5, ju, strlen(ju), NULL, body, strlen(body), true, sig),
                     SIGNATURE_OK);
    /* the same signature and URL with another body */
    const char *body2 = "{\"property\": \"value\", \"boolean\": false}";
    assert_int_equal(
        signature_check(TOKEN, 5, ju, strlen(ju), NULL, body2, strlen(body2), true, sig),
        SIGNATURE_BODY_MISMATCH);
    /* a JSON body whose URL carries no hash is covered by nothing */
    const char *nu = "https://gw.example.com/e";
    sign_url(nu, NULL, sig);
    assert_int_equal(signature_check(TOKEN, 5, nu, strlen(nu), NULL, body, strlen(body), true, sig),
                     SIGNATURE_BODY_UNSIGNED);
    /* a form body under a bodySHA256 URL must hash to it too */
    struct form g = {0};
    parse("a=1", &g);
    sign_url(ju, NULL, sig);
    assert_int_equal(signature_check(TOKEN, 5, ju, strlen(ju), &g, "a=1", 3, false, sig),
                     SIGNATURE_BODY_MISMATCH);
    form_free(&g);
}

static void test_body_hash_param(void **state)
{
    (void)state;
    static const struct {
        const char *url, *value;
    } cases[] = {
        {"https://h/p?bodySHA256=abc", "abc"},
        {"https://h/p?x=1&bodySHA256=abc&y=2", "abc"},
        {"https://h/p?xbodySHA256=abc", NULL},
        {"https://h/p?bodysha256=abc", NULL},
        {"https://h/p#bodySHA256=abc", NULL},
        {"https://h/p?bodySHA256=", ""},
        {"https://h/p", NULL},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        size_t n = 0;
        const char *v = signature_body_hash_param(cases[i].url, strlen(cases[i].url), &n);
        if (!cases[i].value) {
            assert_null(v);
        } else {
            assert_non_null(v);
            assert_int_equal(n, strlen(cases[i].value));
            assert_memory_equal(v, cases[i].value, n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors), cmocka_unit_test(test_sort_order),
        cmocka_unit_test(test_other_port),        cmocka_unit_test(test_check),
        cmocka_unit_test(test_body_hash_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

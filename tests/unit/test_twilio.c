/* Unit tests for twilio: SID patterns, error JSON, form parsing/encoding,
 * user form validation, identity and list query validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twilio.h"

#define HEX32 "0123456789abcdef0123456789ABCDEF"

static void test_is_sid(void **state)
{
    static const struct {
        const char *s;
        const char *prefix;
        bool want;
    } cases[] = {
        {"US" HEX32, "US", true},
        {"IS" HEX32, "IS", true},
        {"RL" HEX32, "RL", true},
        {"BS" HEX32, "BS", true},
        {"us" HEX32, "US", false},
        {"US" HEX32, "IS", false},
        {"US" HEX32 "0", "US", false},
        {"US0123456789abcdef0123456789ABCDE", "US", false},
        {"US0123456789abcdef0123456789ABCDEg", "US", false},
        {"US0123456789abcdef 123456789ABCDEF", "US", false},
        {"", "US", false},
        {"US", "US", false},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++)
        assert_int_equal(twilio_is_sid(cases[i].s, strlen(cases[i].s), cases[i].prefix),
                         cases[i].want);
}

static void test_error_json(void **state)
{
    static const struct {
        int status, code;
        const char *msg;
        const char *want;
    } cases[] = {
        {404, 20404, "The requested resource was not found",
         "{\"code\":20404,\"message\":\"The requested resource was not found\",\"more_info\":"
         "\"https://www.twilio.com/docs/errors/20404\",\"status\":404}"},
        {400, 20001, "bad \"q\" \\ \n\t\x01",
         "{\"code\":20001,\"message\":\"bad \\\"q\\\" \\\\ \\u000a\\u0009\\u0001\",\"more_info\":"
         "\"https://www.twilio.com/docs/errors/20001\",\"status\":400}"},
        {400, 50206, "jos\xc3\xa9 \xff",
         "{\"code\":50206,\"message\":\"jos\xc3\xa9 \\ufffd\",\"more_info\":"
         "\"https://www.twilio.com/docs/errors/50206\",\"status\":400}"},
        {500, 20500, "",
         "{\"code\":20500,\"message\":\"\",\"more_info\":"
         "\"https://www.twilio.com/docs/errors/20500\",\"status\":500}"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct buf b = {0};
        twilio_error_json(&b, cases[i].status, cases[i].code, cases[i].msg);
        assert_string_equal(b.data, cases[i].want);
        buf_free(&b);
    }
}

struct kv {
    const char *name, *value;
    size_t value_len;
};

static void test_form_parse(void **state)
{
    static const struct {
        const char *body;
        int rc;
        size_t n;
        struct kv f[4];
    } cases[] = {
        {"", 0, 0, {{0}}},
        {"Identity=bob", 0, 1, {{"Identity", "bob", 3}}},
        {"Identity=carol+smith", 0, 1, {{"Identity", "carol smith", 11}}},
        {"Identity=carol%20smith", 0, 1, {{"Identity", "carol smith", 11}}},
        {"Identity=%2B15551234567%20x%26y%3Dz", 0, 1, {{"Identity", "+15551234567 x&y=z", 18}}},
        {"Identity=jos%C3%A9&FriendlyName=",
         0,
         2,
         {{"Identity", "jos\xc3\xa9", 5}, {"FriendlyName", "", 0}}},
        {"A=1&&B=2&", 0, 2, {{"A", "1", 1}, {"B", "2", 1}}},
        {"Flag", 0, 1, {{"Flag", "", 0}}},
        {"A=x=y", 0, 1, {{"A", "x=y", 3}}},
        {"Identity=50%off", -1, 0, {{0}}},
        {"Identity=%G1", -1, 0, {{0}}},
        {"Identity=a%00b", -1, 0, {{0}}},
        {"Ident%00ity=a", -1, 0, {{0}}},
        {"=value", -1, 0, {{0}}},
        {"A=1&=2", -1, 0, {{0}}},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct form f = {0};
        char err[128] = "";
        int rc = form_parse(cases[i].body, strlen(cases[i].body), &f, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        if (rc < 0) {
            assert_true(err[0] != '\0');
            assert_int_equal(f.n, 0);
            assert_null(f.fields);
            continue;
        }
        assert_int_equal(f.n, cases[i].n);
        for (size_t k = 0; k < f.n; k++) {
            assert_string_equal(f.fields[k].name, cases[i].f[k].name);
            assert_int_equal(f.fields[k].value_len, cases[i].f[k].value_len);
            assert_memory_equal(f.fields[k].value, cases[i].f[k].value, f.fields[k].value_len);
            assert_int_equal(f.fields[k].value[f.fields[k].value_len], '\0');
        }
        form_free(&f);
    }
}

static void test_form_get_encode(void **state)
{
    struct form f = {0};
    const char *body = "Identity=bob+1%2Bx&FriendlyName=B%C3%B6b&Identity=second";
    assert_int_equal(form_parse(body, strlen(body), &f, NULL, 0), 0);
    const struct form_field *id = form_get(&f, "Identity");
    assert_non_null(id);
    assert_string_equal(id->value, "bob 1+x");
    assert_null(form_get(&f, "identity"));
    struct buf out = {0};
    form_encode(&f, &out);
    assert_string_equal(out.data, "Identity=bob%201%2Bx&FriendlyName=B%C3%B6b&Identity=second");
    /* The re-encoded body parses back to the same fields. */
    struct form g = {0};
    assert_int_equal(form_parse(out.data, out.len, &g, NULL, 0), 0);
    assert_int_equal(g.n, f.n);
    for (size_t i = 0; i < f.n; i++) {
        assert_string_equal(g.fields[i].name, f.fields[i].name);
        assert_string_equal(g.fields[i].value, f.fields[i].value);
    }
    form_free(&g);
    form_free(&f);
    buf_free(&out);
    struct form empty = {0};
    form_encode(&empty, &out);
    assert_non_null(out.data);
    assert_string_equal(out.data, "");
    buf_free(&out);
}

struct nv {
    const char *name, *value;
};

static void test_validate_user_form(void **state)
{
    static char long_name[TWILIO_FRIENDLY_NAME_MAX + 2];
    static char long_ident[TWILIO_IDENTITY_MAX + 2];
    static char long_attrs[TWILIO_ATTRIBUTES_MAX + 16];
    memset(long_name, 'n', TWILIO_FRIENDLY_NAME_MAX + 1);
    memset(long_ident, 'i', TWILIO_IDENTITY_MAX + 1);
    memset(long_attrs, ' ', TWILIO_ATTRIBUTES_MAX + 8);
    long_attrs[0] = '{';
    long_attrs[TWILIO_ATTRIBUTES_MAX + 7] = '}';
    char max_name[TWILIO_FRIENDLY_NAME_MAX + 1] = {0};
    memset(max_name, 'n', TWILIO_FRIENDLY_NAME_MAX);
    char max_ident[TWILIO_IDENTITY_MAX + 1] = {0};
    memset(max_ident, 'i', TWILIO_IDENTITY_MAX);

    const struct {
        enum twilio_user_op op;
        size_t n;
        struct nv f[5];
        int rc, code;
        const char *msg; /* substring expected in err */
    } cases[] = {
        {TWILIO_USER_CREATE, 1, {{"Identity", "bob@example.com"}}, 0, 0, NULL},
        {TWILIO_USER_CREATE,
         4,
         {{"Identity", "+15551234567"},
          {"FriendlyName", "Bob"},
          {"Attributes", "{\"a\":[1,2]}"},
          {"RoleSid", "RL" HEX32}},
         0,
         0,
         NULL},
        {TWILIO_USER_CREATE, 1, {{"Identity", max_ident}}, 0, 0, NULL},
        {TWILIO_USER_CREATE, 0, {{0}}, -1, 20001, "Required parameter Identity missing."},
        {TWILIO_USER_CREATE, 1, {{"FriendlyName", "x"}}, -1, 20001, "Identity missing"},
        {TWILIO_USER_CREATE, 1, {{"Identity", ""}}, -1, 20001, "empty"},
        {TWILIO_USER_CREATE, 1, {{"Identity", long_ident}}, -1, 20001, "Identity"},
        {TWILIO_USER_CREATE, 1, {{"Identity", "a\tb"}}, -1, 20001, "control"},
        {TWILIO_USER_CREATE, 1, {{"Identity", "US" HEX32}}, -1, 50206, "SID pattern"},
        {TWILIO_USER_CREATE, 1, {{"Identity", "us" HEX32}}, 0, 0, NULL},
        {TWILIO_USER_CREATE, 1, {{"Identity", "US" HEX32 "x"}}, 0, 0, NULL},
        {TWILIO_USER_CREATE,
         2,
         {{"Identity", "a"}, {"Identity", "b"}},
         -1,
         20001,
         "Duplicate parameter Identity"},
        {TWILIO_USER_CREATE,
         2,
         {{"Identity", "a"}, {"Role", "x"}},
         -1,
         20001,
         "Unknown parameter Role"},
        {TWILIO_USER_CREATE,
         2,
         {{"Identity", "a"}, {"identity", "b"}},
         -1,
         20001,
         "Unknown parameter identity"},
        {TWILIO_USER_UPDATE, 0, {{0}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE, 1, {{"FriendlyName", ""}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE, 1, {{"FriendlyName", max_name}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE, 1, {{"FriendlyName", long_name}}, -1, 20001, "FriendlyName"},
        {TWILIO_USER_UPDATE, 1, {{"Identity", "bob"}}, -1, 20001, "Identity"},
        {TWILIO_USER_UPDATE, 1, {{"RoleSid", "RL" HEX32}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE,
         1,
         {{"RoleSid", "US" HEX32}},
         -1,
         20001,
         "Invalid RoleSid: must match ^RL[0-9a-fA-F]{32}$"},
        {TWILIO_USER_UPDATE, 1, {{"RoleSid", ""}}, -1, 20001, "RoleSid"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", "{}"}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", " {\"k\": {\"n\": null}} "}}, 0, 0, NULL},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", "[1]"}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", "\"str\""}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", "{\"a\":1} x"}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", "{\"secret\":"}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", ""}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"Attributes", long_attrs}}, -1, 20001, "Attributes"},
        {TWILIO_USER_UPDATE,
         2,
         {{"Attributes", "{}"}, {"Attributes", "{}"}},
         -1,
         20001,
         "Duplicate parameter Attributes"},
        {TWILIO_USER_UPDATE, 1, {{"X-Other", "1"}}, -1, 20001, "Unknown parameter X-Other"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct form_field fields[5];
        for (size_t k = 0; k < cases[i].n; k++) {
            fields[k].name = (char *)cases[i].f[k].name;
            fields[k].value = (char *)cases[i].f[k].value;
            fields[k].value_len = strlen(cases[i].f[k].value);
        }
        struct form f = {fields, cases[i].n};
        int code = 0;
        char err[256] = "";
        int rc = twilio_validate_user_form(&f, cases[i].op, &code, err, sizeof err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d err '%s'", i, rc, err);
        if (rc < 0) {
            assert_int_equal(code, cases[i].code);
            if (!strstr(err, cases[i].msg))
                fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].msg);
            /* Attribute values are sensitive: never echoed. */
            assert_null(strstr(err, "secret"));
        }
    }
}

static void test_validate_identity(void **state)
{
    char max[TWILIO_IDENTITY_MAX + 1];
    memset(max, 'a', sizeof max);
    static const struct {
        const char *s;
        size_t n; /* 0: strlen */
        int rc;
    } cases[] = {
        {"bob", 0, 0},
        {"bob+1@example.com", 0, 0},
        {"carol smith", 0, 0},
        {"jos\xc3\xa9", 0, 0},
        {"x:y;z it's 50%off", 0, 0},
        {"", 0, -1},
        {"a\nb", 0, -1},
        {"a\x7f", 0, -1},
        {"a\0b", 3, -1},
        {"\x1f", 0, -1},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char err[128] = "";
        size_t n = cases[i].n ? cases[i].n : strlen(cases[i].s);
        int rc = twilio_validate_identity(cases[i].s, n, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(err[0] != '\0', rc < 0);
    }
    char err[128];
    assert_int_equal(twilio_validate_identity(max, TWILIO_IDENTITY_MAX, err, sizeof err), 0);
    assert_int_equal(twilio_validate_identity(max, TWILIO_IDENTITY_MAX + 1, err, sizeof err), -1);
}

static void test_validate_list_query(void **state)
{
    static const struct {
        const char *q; /* NULL: no query */
        long max;
        bool binding;
        int rc;
    } cases[] = {
        {NULL, 50, false, 0},
        {"", 50, false, 0},
        {"PageSize=50", 50, false, 0},
        {"PageSize=100", 100, false, 0},
        {"PageSize=51", 50, false, -1},
        {"PageSize=0", 50, false, -1},
        {"PageSize=", 50, false, -1},
        {"PageSize=abc", 50, false, -1},
        {"PageSize=10&PageSize=20", 50, false, -1},
        {"Page=0", 50, false, 0},
        {"Page=7&PageSize=20&PageToken=PTabc%3D%3D", 50, false, 0},
        {"Page=-1", 50, false, -1},
        {"PageToken=", 50, false, 0},
        {"PageToken=%zz", 50, false, -1},
        {"pagesize=5", 50, false, -1},
        {"Foo=bar", 50, false, -1},
        {"BindingType=apn", 50, false, -1},
        {"BindingType=apn&BindingType=fcm&BindingType=gcm", 50, true, 0},
        {"BindingType=sms", 50, true, -1},
        {"PageSize=5&", 50, false, 0},
        {"Page%53ize=5", 50, false, 0},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char err[256] = "";
        int rc = twilio_validate_list_query(cases[i].q, cases[i].q ? strlen(cases[i].q) : 0,
                                            cases[i].max, cases[i].binding, NULL, err, sizeof err);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d err '%s'", i, cases[i].q ? cases[i].q : "NULL", rc, err);
        assert_int_equal(err[0] != '\0', rc < 0);
    }
    /* The query may be a slice of a longer buffer. */
    const char *whole = "PageSize=5&Foo=1";
    char err[128];
    assert_int_equal(twilio_validate_list_query(whole, 10, 50, false, NULL, err, sizeof err), 0);
    assert_int_equal(
        twilio_validate_list_query(whole, strlen(whole), 50, false, NULL, err, sizeof err), -1);
    assert_string_equal(err, "Unknown query parameter Foo");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_sid),
        cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_form_parse),
        cmocka_unit_test(test_form_get_encode),
        cmocka_unit_test(test_validate_user_form),
        cmocka_unit_test(test_validate_identity),
        cmocka_unit_test(test_validate_list_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

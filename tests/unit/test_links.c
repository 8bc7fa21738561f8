/* Unit tests for links_rewrite: table of bodies and their expected rewrite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "links.h"

static const char *const bases[] = {"https://conversations.twilio.com", "https://chat.twilio.com",
                                    NULL};

static const struct {
    const char *name, *in, *public_url, *out; /* out NULL: unchanged */
} cases[] = {
    {"no urls", "{\"sid\":\"US1\"}", "http://gw", NULL},
    {"url field", "{\"url\": \"https://conversations.twilio.com/v1/Users/US1\"}", "http://gw:8080",
     "{\"url\": \"http://gw:8080/v1/Users/US1\"}"},
    {"trailing slash in public_url", "{\"url\":\"https://chat.twilio.com/v2/Services/IS1\"}",
     "https://gw.example/", "{\"url\":\"https://gw.example/v2/Services/IS1\"}"},
    {"links and meta with query",
     "{\"links\":{\"a\":\"https://conversations.twilio.com/v1/Users/US1/Conversations\"},"
     "\"meta\":{\"next_page_url\":\"https://conversations.twilio.com/v1/Users?PageSize=1&Page=1&"
     "PageToken=PT1\",\"previous_page_url\":null}}",
     "http://gw",
     "{\"links\":{\"a\":\"http://gw/v1/Users/US1/Conversations\"},"
     "\"meta\":{\"next_page_url\":\"http://gw/v1/Users?PageSize=1&Page=1&PageToken=PT1\","
     "\"previous_page_url\":null}}"},
    {"escaped slashes", "{\"url\":\"https:\\/\\/conversations.twilio.com\\/v1\\/Users\"}",
     "http://gw", "{\"url\":\"http://gw\\/v1\\/Users\"}"},
    {"host is only a prefix", "{\"url\":\"https://conversations.twilio.com.evil.com/v1\"}",
     "http://gw", NULL},
    {"base inside, not at start",
     "{\"attributes\":\"{\\\"x\\\":\\\"https://chat.twilio.com/\\\"}\"}", "http://gw", NULL},
    {"bare base", "[\"https://chat.twilio.com\",1]", "http://gw", "[\"http://gw\",1]"},
    {"escaped quote before url", "{\"a\":\"x\\\"\",\"u\":\"https://chat.twilio.com/v2\"}",
     "http://gw", "{\"a\":\"x\\\"\",\"u\":\"http://gw/v2\"}"},
    {"not json", "https://chat.twilio.com/v2", "http://gw", NULL},
    {"unterminated string", "{\"u\":\"https://chat.twilio.com/v2", "http://gw", NULL},
    {"empty public_url", "{\"u\":\"https://chat.twilio.com/v2\"}", "", NULL},
};

static void test_rewrite_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf out = {0};
        bool changed =
            links_rewrite(cases[i].in, strlen(cases[i].in), bases, cases[i].public_url, &out);
        if (changed != (cases[i].out != NULL))
            fail_msg("%s: changed=%d", cases[i].name, changed);
        if (cases[i].out && strcmp(out.data, cases[i].out) != 0)
            fail_msg("%s:\n got %s\nwant %s", cases[i].name, out.data, cases[i].out);
        if (!cases[i].out)
            assert_int_equal(out.len, 0);
        buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_rewrite_table)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

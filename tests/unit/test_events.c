/* Unit tests for events: the three shapes Twilio delivers, table-driven, and
 * what each field turns into (kind, source, canonical SIDs, identity), with
 * the malformed and foreign cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "events.h"
#include "twilio.h"
#include "util.h"

#define AC "AC0123456789abcdef0123456789abcdef"
#define IS "IS0123456789abcdef0123456789abcdef"
#define US "US0123456789abcdef0123456789abcdef"
#define US_UPPER "US0123456789ABCDEF0123456789ABCDEF"

struct want {
    enum event_source source;
    enum event_kind kind;
    const char *type, *account, *service, *user_sid, *identity;
};

static void check(const struct event *e, const struct want *w, size_t i)
{
    if (e->source != w->source || e->kind != w->kind)
        fail_msg("case %zu: source %d kind %d, want %d %d", i, e->source, e->kind, w->source,
                 w->kind);
    assert_string_equal(e->type, w->type);
    assert_string_equal(e->account, w->account);
    assert_string_equal(e->service, w->service);
    assert_string_equal(e->user_sid, w->user_sid);
    assert_int_equal(e->identity_len, strlen(w->identity));
    assert_memory_equal(e->identity, w->identity, e->identity_len);
}

static void test_forms(void **state)
{
    (void)state;
    static const struct {
        const char *form;
        struct want want;
    } cases[] = {
        {"EventType=onUserUpdated&AccountSid=" AC "&ChatServiceSid=" IS "&UserSid=" US
         "&Identity=alice%40x.io&FriendlyName=A&Source=SDK",
         {EVENT_SRC_CONVERSATIONS, EVENT_USER_UPDATED, "onUserUpdated", AC, IS, US, "alice@x.io"}},
        {"EventType=onUserAdded&ChatServiceSid=" IS "&Identity=c%C3%A9cile",
         {EVENT_SRC_CONVERSATIONS, EVENT_USER_ADDED, "onUserAdded", "", IS, "",
          "c\xc3\xa9"
          "cile"}},
        /* Chat: the service is InstanceSid; SIDs canonical (lower-case hex) */
        {"EventType=onUserUpdated&InstanceSid=" IS "&UserSid=" US_UPPER,
         {EVENT_SRC_CHAT, EVENT_USER_UPDATED, "onUserUpdated", "", IS, US, ""}},
        {"EventType=onUserRemoved&ChatServiceSid=" IS "&Identity=bob",
         {EVENT_SRC_CONVERSATIONS, EVENT_USER_REMOVED, "onUserRemoved", "", IS, "", "bob"}},
        /* not about users: kept to be counted, fields not read */
        {"EventType=onMessageAdded&ChatServiceSid=" IS "&Identity=bob",
         {EVENT_SRC_CONVERSATIONS, EVENT_OTHER, "onMessageAdded", "", "", "", ""}},
        {"ChatServiceSid=" IS, {EVENT_SRC_CONVERSATIONS, EVENT_OTHER, "none", "", "", "", ""}},
        {"EventType=on%20User", {EVENT_SRC_CONVERSATIONS, EVENT_OTHER, "invalid", "", "", "", ""}},
        /* user events without a usable user, service or account */
        {"EventType=onUserUpdated&ChatServiceSid=" IS,
         {EVENT_SRC_CONVERSATIONS, EVENT_MALFORMED, "onUserUpdated", "", IS, "", ""}},
        {"EventType=onUserUpdated&ChatServiceSid=IS123&Identity=bob",
         {EVENT_SRC_CONVERSATIONS, EVENT_MALFORMED, "onUserUpdated", "", "", "", "bob"}},
        {"EventType=onUserUpdated&AccountSid=nope&Identity=bob",
         {EVENT_SRC_CONVERSATIONS, EVENT_MALFORMED, "onUserUpdated", "", "", "", "bob"}},
        {"EventType=onUserUpdated&UserSid=" US "&Identity=%FF",
         {EVENT_SRC_CONVERSATIONS, EVENT_MALFORMED, "onUserUpdated", "", "", US, ""}},
        {"EventType=onUserUpdated&Identity=a%0Ab",
         {EVENT_SRC_CONVERSATIONS, EVENT_MALFORMED, "onUserUpdated", "", "", "", ""}},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct form f = {0};
        char err[128];
        assert_int_equal(form_parse(cases[i].form, strlen(cases[i].form), &f, err, sizeof err), 0);
        struct events ev = {0};
        events_from_form(&f, &ev);
        assert_int_equal(ev.n, 1);
        check(&ev.v[0], &cases[i].want, i);
        events_free(&ev);
        form_free(&f);
    }
}

#define CE(type, data) "{\"specversion\":\"1.0\",\"type\":\"" type "\",\"data\":" data "}"

static void test_json(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        int rc;
        size_t n;
        struct want first, last;
    } cases[] = {
        {CE("com.twilio.conversations.user.updated",
            "{\"AccountSid\":\"" AC "\",\"UserSid\":\"" US "\",\"Identity\":\"ada\"}"),
         0,
         1,
         {EVENT_SRC_EVENTSTREAMS, EVENT_USER_UPDATED, "com.twilio.conversations.user.updated", AC,
          "", US, "ada"},
         {0}},
        {"[" CE("com.twilio.conversations.user.added",
                "{\"ChatServiceSid\":\"" IS
                "\",\"Identity\":\"b\\u00e9\"}") "," CE("com.twilio.messaging.message.delivered",
                                                        "{}") "]",
         0,
         2,
         {EVENT_SRC_EVENTSTREAMS, EVENT_USER_ADDED, "com.twilio.conversations.user.added", "", IS,
          "", "b\xc3\xa9"},
         {EVENT_SRC_EVENTSTREAMS, EVENT_OTHER, "com.twilio.messaging.message.delivered", "", "", "",
          ""}},
        /* a user event without data, or with a number for the identity */
        {CE("com.twilio.conversations.user.updated", "7"),
         0,
         1,
         {EVENT_SRC_EVENTSTREAMS, EVENT_MALFORMED, "com.twilio.conversations.user.updated", "", "",
          "", ""},
         {0}},
        {CE("com.twilio.conversations.user.updated", "{\"Identity\":7}"),
         0,
         1,
         {EVENT_SRC_EVENTSTREAMS, EVENT_MALFORMED, "com.twilio.conversations.user.updated", "", "",
          "", ""},
         {0}},
        {"[]", 0, 0, {0}, {0}},
        {"{", -1, 0, {0}, {0}},
        {"\"x\"", -1, 0, {0}, {0}},
        {"[1]", -1, 0, {0}, {0}},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct events ev = {0};
        char err[128] = "";
        int rc = events_from_json(cases[i].body, strlen(cases[i].body), &ev, err, sizeof err);
        assert_int_equal(rc, cases[i].rc);
        if (rc < 0) {
            assert_true(err[0] != '\0');
            assert_int_equal(ev.n, 0);
            continue;
        }
        assert_int_equal(ev.n, cases[i].n);
        if (ev.n) {
            check(&ev.v[0], &cases[i].first, i);
            if (ev.n > 1)
                check(&ev.v[ev.n - 1], &cases[i].last, i);
        }
        events_free(&ev);
    }
}

static void test_batch_limit(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_puts(&b, "[");
    for (int i = 0; i <= EVENTS_MAX; i++)
        buf_printf(&b, "%s{\"type\":\"x\"}", i ? "," : "");
    buf_puts(&b, "]");
    struct events ev = {0};
    char err[128];
    assert_int_equal(events_from_json(b.data, b.len, &ev, err, sizeof err), -1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_batch_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

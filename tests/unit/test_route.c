/* Unit tests for route: every route and method, SID and identity decoding,
 * rejections, query splitting, labels and the upstream path round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

#define IS "IS0123456789abcdef0123456789ABCDEF"
#define IS_CANON "IS0123456789abcdef0123456789abcdef" /* one case rule: hex in lower case */
#define US "US0123456789abcdef0123456789abcdef"
#define BS "BS0123456789abcdef0123456789abcdef"
#define CH "CH0123456789abcdef0123456789abcdef"

struct rcase {
    const char *method, *path;
    enum route_result res;
    enum route_id id;
    enum api_family fam;
    enum route_action act;
    const char *user; /* expected decoded user ("" for none) */
    bool is_sid;
    const char *sub;
    const char *query;    /* NULL: none */
    const char *upstream; /* expected route_upstream_path, NULL: same as path */
};

#define OK_(m, p, id, fam, act, user, sid, sub, q, up)                                             \
    {                                                                                              \
        m, p, ROUTE_OK, id, fam, act, user, sid, sub, q, up                                        \
    }
#define ERR_(m, p, res, id)                                                                        \
    {                                                                                              \
        m, p, res, id, 0, 0, "", false, "", NULL, NULL                                             \
    }

static const struct rcase route_cases[] = {
    /* v1 default service */
    OK_("GET", "/v1/Users", ROUTE_V1_USERS, FAMILY_V1_DEFAULT, ACTION_LIST, "", false, "", NULL,
        NULL),
    OK_("POST", "/v1/Users", ROUTE_V1_USERS, FAMILY_V1_DEFAULT, ACTION_CREATE, "", false, "", NULL,
        NULL),
    ERR_("DELETE", "/v1/Users", ROUTE_BAD_METHOD, ROUTE_V1_USERS),
    ERR_("PUT", "/v1/Users", ROUTE_BAD_METHOD, ROUTE_V1_USERS),
    OK_("GET", "/v1/Users/alice", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "alice", false,
        "", NULL, NULL),
    OK_("POST", "/v1/Users/alice", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_UPDATE, "alice", false,
        "", NULL, NULL),
    OK_("DELETE", "/v1/Users/" US, ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_DELETE, US, true, "",
        NULL, NULL),
    ERR_("PATCH", "/v1/Users/alice", ROUTE_BAD_METHOD, ROUTE_V1_USER),
    ERR_("get", "/v1/Users/alice", ROUTE_BAD_METHOD, ROUTE_V1_USER),
    OK_("GET", "/v1/Users/alice/Conversations", ROUTE_V1_USER_SUB, FAMILY_V1_DEFAULT, ACTION_SUB,
        "alice", false, "/Conversations", NULL, NULL),
    ERR_("POST", "/v1/Users/alice/Conversations", ROUTE_BAD_METHOD, ROUTE_V1_USER_SUB),
    ERR_("DELETE", "/v1/Users/alice/Conversations", ROUTE_BAD_METHOD, ROUTE_V1_USER_SUB),
    OK_("GET", "/v1/Users/alice/Conversations/" CH, ROUTE_V1_USER_SUB, FAMILY_V1_DEFAULT,
        ACTION_SUB, "alice", false, "/Conversations/" CH, NULL, NULL),
    OK_("POST", "/v1/Users/alice/Conversations/my-convo", ROUTE_V1_USER_SUB, FAMILY_V1_DEFAULT,
        ACTION_SUB, "alice", false, "/Conversations/my-convo", NULL, NULL),
    OK_("DELETE", "/v1/Users/alice/Conversations/" CH, ROUTE_V1_USER_SUB, FAMILY_V1_DEFAULT,
        ACTION_SUB, "alice", false, "/Conversations/" CH, NULL, NULL),
    ERR_("GET", "/v1/Users/alice/Channels", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Users/alice/Conversations/" CH "/x", ROUTE_NOT_FOUND, ROUTE_NONE),

    /* v1 with service */
    OK_("GET", "/v1/Services/" IS "/Users", ROUTE_V1S_USERS, FAMILY_V1_SERVICE, ACTION_LIST, "",
        false, "", NULL, NULL),
    OK_("POST", "/v1/Services/" IS "/Users", ROUTE_V1S_USERS, FAMILY_V1_SERVICE, ACTION_CREATE, "",
        false, "", NULL, NULL),
    ERR_("DELETE", "/v1/Services/" IS "/Users", ROUTE_BAD_METHOD, ROUTE_V1S_USERS),
    OK_("GET", "/v1/Services/" IS "/Users/bob", ROUTE_V1S_USER, FAMILY_V1_SERVICE, ACTION_FETCH,
        "bob", false, "", NULL, NULL),
    OK_("POST", "/v1/Services/" IS "/Users/bob", ROUTE_V1S_USER, FAMILY_V1_SERVICE, ACTION_UPDATE,
        "bob", false, "", NULL, NULL),
    OK_("DELETE", "/v1/Services/" IS "/Users/bob", ROUTE_V1S_USER, FAMILY_V1_SERVICE, ACTION_DELETE,
        "bob", false, "", NULL, NULL),
    OK_("GET", "/v1/Services/" IS "/Users/bob/Conversations", ROUTE_V1S_USER_SUB, FAMILY_V1_SERVICE,
        ACTION_SUB, "bob", false, "/Conversations", NULL, NULL),
    OK_("DELETE", "/v1/Services/" IS "/Users/bob/Conversations/" CH, ROUTE_V1S_USER_SUB,
        FAMILY_V1_SERVICE, ACTION_SUB, "bob", false, "/Conversations/" CH, NULL, NULL),
    ERR_("POST", "/v1/Services/" IS "/Users/bob/Conversations", ROUTE_BAD_METHOD,
         ROUTE_V1S_USER_SUB),
    ERR_("GET", "/v1/Services/" IS "/Users/bob/Bindings", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Services/" IS, ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Services/" IS "/Roles", ROUTE_NOT_FOUND, ROUTE_NONE),

    /* v2 */
    OK_("GET", "/v2/Services/" IS "/Users", ROUTE_V2_USERS, FAMILY_V2, ACTION_LIST, "", false, "",
        NULL, NULL),
    OK_("POST", "/v2/Services/" IS "/Users", ROUTE_V2_USERS, FAMILY_V2, ACTION_CREATE, "", false,
        "", NULL, NULL),
    OK_("GET", "/v2/Services/" IS "/Users/" US, ROUTE_V2_USER, FAMILY_V2, ACTION_FETCH, US, true,
        "", NULL, NULL),
    OK_("POST", "/v2/Services/" IS "/Users/carol", ROUTE_V2_USER, FAMILY_V2, ACTION_UPDATE, "carol",
        false, "", NULL, NULL),
    OK_("DELETE", "/v2/Services/" IS "/Users/carol", ROUTE_V2_USER, FAMILY_V2, ACTION_DELETE,
        "carol", false, "", NULL, NULL),
    OK_("GET", "/v2/Services/" IS "/Users/carol/Channels", ROUTE_V2_USER_SUB, FAMILY_V2, ACTION_SUB,
        "carol", false, "/Channels", NULL, NULL),
    ERR_("POST", "/v2/Services/" IS "/Users/carol/Channels", ROUTE_BAD_METHOD, ROUTE_V2_USER_SUB),
    OK_("GET", "/v2/Services/" IS "/Users/carol/Channels/" CH, ROUTE_V2_USER_SUB, FAMILY_V2,
        ACTION_SUB, "carol", false, "/Channels/" CH, NULL, NULL),
    OK_("POST", "/v2/Services/" IS "/Users/carol/Channels/general", ROUTE_V2_USER_SUB, FAMILY_V2,
        ACTION_SUB, "carol", false, "/Channels/general", NULL, NULL),
    OK_("DELETE", "/v2/Services/" IS "/Users/carol/Channels/" CH, ROUTE_V2_USER_SUB, FAMILY_V2,
        ACTION_SUB, "carol", false, "/Channels/" CH, NULL, NULL),
    OK_("GET", "/v2/Services/" IS "/Users/carol/Bindings?BindingType=apn", ROUTE_V2_USER_SUB,
        FAMILY_V2, ACTION_SUB, "carol", false, "/Bindings", "BindingType=apn", NULL),
    ERR_("DELETE", "/v2/Services/" IS "/Users/carol/Bindings", ROUTE_BAD_METHOD, ROUTE_V2_USER_SUB),
    OK_("GET", "/v2/Services/" IS "/Users/carol/Bindings/" BS, ROUTE_V2_USER_SUB, FAMILY_V2,
        ACTION_SUB, "carol", false, "/Bindings/" BS, NULL, NULL),
    OK_("DELETE", "/v2/Services/" IS "/Users/carol/Bindings/" BS, ROUTE_V2_USER_SUB, FAMILY_V2,
        ACTION_SUB, "carol", false, "/Bindings/" BS, NULL, NULL),
    ERR_("POST", "/v2/Services/" IS "/Users/carol/Bindings/" BS, ROUTE_BAD_METHOD,
         ROUTE_V2_USER_SUB),
    ERR_("GET", "/v2/Services/" IS "/Users/carol/Bindings/" CH, ROUTE_BAD_REQUEST,
         ROUTE_V2_USER_SUB),
    ERR_("GET", "/v2/Services/" IS "/Users/carol/Conversations", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v2/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v2/Users/alice", ROUTE_NOT_FOUND, ROUTE_NONE),

    /* Identities as clients really send them. */
    OK_("GET", "/v1/Users/bob+1@example.com", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH,
        "bob+1@example.com", false, "", NULL, "/v1/Users/bob%2B1%40example.com"),
    OK_("GET", "/v1/Users/bob%2B1%40example.com", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH,
        "bob+1@example.com", false, "", NULL, NULL),
    OK_("GET", "/v2/Services/" IS "/Users/carol%20smith", ROUTE_V2_USER, FAMILY_V2, ACTION_FETCH,
        "carol smith", false, "", NULL, NULL),
    OK_("GET", "/v1/Users/jos%C3%A9", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "jos\xc3\xa9",
        false, "", NULL, NULL),
    OK_("GET", "/v1/Users/jos\xc3\xa9", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH,
        "jos\xc3\xa9", false, "", NULL, "/v1/Users/jos%C3%A9"),
    OK_("GET", "/v1/Users/x:y;z", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "x:y;z", false,
        "", NULL, "/v1/Users/x%3Ay%3Bz"),
    OK_("GET", "/v1/Users/it's", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "it's", false, "",
        NULL, "/v1/Users/it%27s"),
    /* Route confinement: nothing that decodes to '/', a dot segment or an
     * empty segment, in any spelling, becomes a path. */
    ERR_("GET", "/v1/Users/a%2Fb", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/a%2fb", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/%2F", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/.", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/..", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("DELETE", "/v1/Users/%2e%2e", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("POST", "/v1/Users/%2E%2e", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/.%2E", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/%2e", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v2/Services/" IS "/Users/..", ROUTE_BAD_REQUEST, ROUTE_V2_USER),
    ERR_("GET", "/v1/Users/../Conversations", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("GET", "/v1/Users/alice/Conversations/..", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("DELETE", "/v1/Users/alice/Conversations/%2E%2E", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("GET", "/v2/Services/" IS "/Users/carol/Channels/.", ROUTE_BAD_REQUEST, ROUTE_V2_USER_SUB),
    ERR_("GET", "/v1/Users/alice/Conversations/", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("GET", "/v1/Users//Conversations", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("GET", "/v1/Users/%C3%28", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/%ED%A0%80", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/%C0%AF", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/\xff", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/alice/Conversations/%FF", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    OK_("GET", "/v1/Users/...", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "...", false, "",
        NULL, NULL),
    OK_("GET", "/v1/Users/.alice", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, ".alice", false,
        "", NULL, NULL),
    OK_("GET", "/v1/Users/%2525", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "%25", false, "",
        NULL, NULL),
    OK_("GET", "/v1/Users/Alice", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "Alice", false,
        "", NULL, NULL),
    OK_("GET", "/v1/Users/us0123456789abcdef0123456789abcdef", ROUTE_V1_USER, FAMILY_V1_DEFAULT,
        ACTION_FETCH, "us0123456789abcdef0123456789abcdef", false, "", NULL, NULL),
    OK_("GET", "/v1/Users/US0123456789ABCDEF0123456789ABCDEF", ROUTE_V1_USER, FAMILY_V1_DEFAULT,
        ACTION_FETCH, US, true, "", NULL, "/v1/Users/" US),
    OK_("GET", "/v1/Users/%55S0123456789abcdef0123456789abcdef", ROUTE_V1_USER, FAMILY_V1_DEFAULT,
        ACTION_FETCH, US, true, "", NULL, "/v1/Users/" US),
    ERR_("GET", "/v1/Users/50%off", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/a%", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/a%00b", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/a%0Ab", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/alice/Conversations/a%2Fb", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),
    ERR_("GET", "/v1/Users/alice/Conversations/bad%", ROUTE_BAD_REQUEST, ROUTE_V1_USER_SUB),

    /* Bad service SIDs. */
    ERR_("GET", "/v1/Services/IS123/Users", ROUTE_BAD_REQUEST, ROUTE_V1S_USERS),
    ERR_("GET", "/v2/Services/is0123456789abcdef0123456789ABCDEF/Users/bob", ROUTE_BAD_REQUEST,
         ROUTE_V2_USER),
    ERR_("GET", "/v2/Services/" US "/Users/bob", ROUTE_BAD_REQUEST, ROUTE_V2_USER),
    ERR_("POST", "/v1/Services/IS0123456789abcdef0123456789ABCDEZ/Users", ROUTE_BAD_REQUEST,
         ROUTE_V1S_USERS),

    /* Case sensitivity, slashes and junk. */
    ERR_("GET", "/v1/users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/V1/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Users/alice/conversations", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v2/services/" IS "/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Users/", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
    ERR_("GET", "/v1/Users/alice/", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1//Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "//v1/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Services//Users/bob", ROUTE_BAD_REQUEST, ROUTE_V1S_USER),
    ERR_("GET", "/", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "v1/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "http://x/v1/Users", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Configuration", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Users/a/b/c/d/e/f/g/h/i", ROUTE_NOT_FOUND, ROUTE_NONE),
    ERR_("GET", "/v1/Users%2Falice", ROUTE_NOT_FOUND, ROUTE_NONE),

    /* Query splitting. */
    OK_("GET", "/v1/Users?PageSize=5&Page=1", ROUTE_V1_USERS, FAMILY_V1_DEFAULT, ACTION_LIST, "",
        false, "", "PageSize=5&Page=1", NULL),
    OK_("GET", "/v1/Users?", ROUTE_V1_USERS, FAMILY_V1_DEFAULT, ACTION_LIST, "", false, "", NULL,
        NULL),
    OK_("GET", "/v1/Users/alice?x=/y?z", ROUTE_V1_USER, FAMILY_V1_DEFAULT, ACTION_FETCH, "alice",
        false, "", "x=/y?z", NULL),
    OK_("GET", "/v2/Services/" IS "/Users/carol/Channels?PageToken=PT%3D", ROUTE_V2_USER_SUB,
        FAMILY_V2, ACTION_SUB, "carol", false, "/Channels", "PageToken=PT%3D", NULL),
    ERR_("GET", "/v1/Users/?PageSize=5", ROUTE_BAD_REQUEST, ROUTE_V1_USER),
};

/* The sub-resource part of a match as a path: "" or "/Kind[/item]". */
static void sub_render(const struct route_match *m, char *out, size_t n)
{
    static const char *const kinds[] = {"", "/Conversations", "/Channels", "/Bindings"};
    snprintf(out, n, "%s%s%s", kinds[m->sub], m->item_len ? "/" : "", m->item);
}

/* What route_upstream_path builds when the case names none: the path with
 * its query dropped and the service SID in canonical case. */
static void default_upstream(const char *path, char *out, size_t n)
{
    snprintf(out, n, "%.*s", (int)strcspn(path, "?"), path);
    char *p = strstr(out, IS);
    if (p)
        memcpy(p, IS_CANON, strlen(IS_CANON));
}

static void test_route_table(void **state)
{
    for (size_t i = 0; i < UG_ARRAY_LEN(route_cases); i++) {
        const struct rcase *c = &route_cases[i];
        struct route_match m;
        memset(&m, 0xa5, sizeof m);
        int code = 0;
        char err[256] = "x";
        enum route_result r =
            route_match(c->method, c->path, strlen(c->path), &m, &code, err, sizeof err);
        if (r != c->res || m.id != c->id)
            fail_msg("case %zu %s %s: result %d id %d (want %d %d) err '%s'", i, c->method, c->path,
                     r, m.id, c->res, c->id, err);
        if (r == ROUTE_BAD_REQUEST) {
            assert_int_equal(code, TWILIO_E_BAD_REQUEST);
            assert_true(err[0] != '\0');
            continue;
        }
        if (r != ROUTE_OK)
            continue;
        assert_int_equal(m.family, c->fam);
        assert_int_equal(m.action, c->act);
        assert_int_equal(m.user_len, strlen(c->user));
        assert_memory_equal(m.user, c->user, m.user_len);
        assert_int_equal(m.user[m.user_len], '\0');
        assert_int_equal(m.user_is_sid, c->is_sid);
        char sub[600];
        sub_render(&m, sub, sizeof sub);
        assert_string_equal(sub, c->sub);
        if (c->fam == FAMILY_V1_DEFAULT)
            assert_string_equal(m.service, "");
        else
            assert_string_equal(m.service, IS_CANON);
        if (c->query) {
            assert_non_null(m.query);
            assert_int_equal(m.query_len, strlen(c->query));
            assert_memory_equal(m.query, c->query, m.query_len);
            /* Points into the caller's buffer. */
            assert_true(m.query > c->path && m.query < c->path + strlen(c->path));
        } else {
            assert_null(m.query);
        }
        struct buf up = {0};
        route_upstream_path(&m, NULL, &up);
        char want[1200];
        default_upstream(c->path, want, sizeof want);
        assert_string_equal(up.data, c->upstream ? c->upstream : want);
        /* The upstream path routes back to the same user and route. */
        struct route_match m2;
        assert_int_equal(route_match(c->method, up.data, up.len, &m2, &code, err, sizeof err),
                         ROUTE_OK);
        assert_int_equal(m2.id, m.id);
        assert_int_equal(m2.user_len, m.user_len);
        assert_memory_equal(m2.user, m.user, m.user_len);
        char sub2[600];
        sub_render(&m2, sub2, sizeof sub2);
        assert_string_equal(sub2, sub);
        buf_free(&up);
        /* A canonical query is appended as given, after '?'. */
        struct buf withq = {0};
        route_upstream_path(&m, "PageSize=5", &withq);
        char wantq[1300];
        snprintf(wantq, sizeof wantq, "%s?PageSize=5", c->upstream ? c->upstream : want);
        assert_string_equal(withq.data, wantq);
        buf_free(&withq);
    }
}

static void test_identity_limits(void **state)
{
    static const struct {
        size_t raw_len;
        bool escaped; /* "%41" per byte instead of "a" */
        enum route_result want;
    } cases[] = {
        {TWILIO_IDENTITY_MAX, false, ROUTE_OK}, {TWILIO_IDENTITY_MAX + 1, false, ROUTE_BAD_REQUEST},
        {TWILIO_IDENTITY_MAX, true, ROUTE_OK},  {TWILIO_IDENTITY_MAX + 1, true, ROUTE_BAD_REQUEST},
        {2000, false, ROUTE_BAD_REQUEST},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        struct buf p = {0};
        buf_puts(&p, "/v1/Users/");
        for (size_t k = 0; k < cases[i].raw_len; k++)
            buf_puts(&p, cases[i].escaped ? "%41" : "a");
        struct route_match m;
        int code = 0;
        char err[256] = "";
        enum route_result r = route_match("GET", p.data, p.len, &m, &code, err, sizeof err);
        assert_int_equal(r, cases[i].want);
        assert_int_equal(m.id, ROUTE_V1_USER);
        if (r == ROUTE_OK) {
            assert_int_equal(m.user_len, cases[i].raw_len);
            assert_int_equal(m.user[0], cases[i].escaped ? 'A' : 'a');
        } else {
            assert_int_equal(code, TWILIO_E_BAD_REQUEST);
            assert_non_null(strstr(err, "too long") ? err : strstr(err, "longer"));
        }
        buf_free(&p);
    }
}

static void test_bad_service_message(void **state)
{
    struct route_match m;
    int code = 0;
    char err[256] = "";
    const char *p = "/v2/Services/nope/Users/bob";
    assert_int_equal(route_match("GET", p, strlen(p), &m, &code, err, sizeof err),
                     ROUTE_BAD_REQUEST);
    assert_int_equal(code, 20001);
    assert_non_null(strstr(err, "^IS[0-9a-fA-F]{32}$"));
    /* path is not NUL-terminated at len: only len bytes are read. */
    const char *longer = "/v1/Users/alice/Conversations";
    assert_int_equal(route_match("GET", longer, 15, &m, &code, err, sizeof err), ROUTE_OK);
    assert_int_equal(m.id, ROUTE_V1_USER);
    assert_string_equal(m.user, "alice");
}

static void test_names(void **state)
{
    static const struct {
        enum route_id id;
        const char *label;
    } labels[] = {
        {ROUTE_V1_USERS, "/v1/Users"},
        {ROUTE_V1_USER, "/v1/Users/{Sid}"},
        {ROUTE_V1_USER_SUB, "/v1/Users/{Sid}/Conversations"},
        {ROUTE_V1S_USERS, "/v1/Services/{ServiceSid}/Users"},
        {ROUTE_V1S_USER, "/v1/Services/{ServiceSid}/Users/{Sid}"},
        {ROUTE_V1S_USER_SUB, "/v1/Services/{ServiceSid}/Users/{Sid}/Conversations"},
        {ROUTE_V2_USERS, "/v2/Services/{ServiceSid}/Users"},
        {ROUTE_V2_USER, "/v2/Services/{ServiceSid}/Users/{Sid}"},
        {ROUTE_V2_USER_SUB, "/v2/Services/{ServiceSid}/Users/{Sid}/sub"},
        {ROUTE_NONE, "other"},
        {ROUTE_COUNT, "other"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(labels); i++)
        assert_string_equal(route_label(labels[i].id), labels[i].label);
    static const char *const fams[] = {"v1", "v1s", "v2"};
    for (int f = 0; f < FAMILY_COUNT; f++)
        assert_string_equal(route_family_tag((enum api_family)f), fams[f]);
    static const char *const acts[] = {"fetch", "create", "update", "delete", "list", "sub"};
    for (int a = 0; a < ACTION_COUNT; a++)
        assert_string_equal(route_action_name((enum route_action)a), acts[a]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_identity_limits),
        cmocka_unit_test(test_bad_service_message),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

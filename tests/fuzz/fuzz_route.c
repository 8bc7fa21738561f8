/* libFuzzer: route matching and upstream-path building. The property is
 * route confinement: whatever the request-target, a matched route's
 * upstream path is its template with every variable segment re-encoded —
 * the literal segments are the template's, no variable segment decodes to
 * '/', '.', '..' or nothing, no raw '?', '#', '%'-escape of '/' or dot
 * segment appears, and matching the built path again gives the same route,
 * user and item. The list query, when valid, is rebuilt canonically and
 * re-validates to itself. */
#include <string.h>

#include "fuzz.h"
#include "route.h"
#include "twilio.h"
#include "util.h"

static const char *const methods[] = {"GET", "POST", "DELETE", "PUT"};

/* Split path on '/', compare literals with the template's. */
static void check_confined(const struct route_match *m, const char *path)
{
    FUZZ_CHECK(path[0] == '/');
    FUZZ_CHECK(!strchr(path, '?') && !strchr(path, '#'));
    const char *lit[8];
    size_t nlit = 0;
    char fam_prefix[64];
    if (m->family == FAMILY_V1_DEFAULT) {
        lit[nlit++] = "v1";
        lit[nlit++] = "Users";
    } else {
        lit[nlit++] = m->family == FAMILY_V2 ? "v2" : "v1";
        lit[nlit++] = "Services";
        lit[nlit++] = m->service; /* validated SID */
        lit[nlit++] = "Users";
    }
    (void)fam_prefix;
    char copy[4096];
    FUZZ_CHECK(strlen(path) < sizeof copy);
    strcpy(copy, path);
    char *segs[16];
    size_t n = 0;
    for (char *save, *t = strtok_r(copy + 1, "/", &save); t && n < 16;
         t = strtok_r(NULL, "/", &save))
        segs[n++] = t;
    FUZZ_CHECK(n >= nlit);
    for (size_t i = 0; i < nlit; i++)
        FUZZ_CHECK(strcmp(segs[i], lit[i]) == 0);
    size_t var = 0;
    for (size_t i = nlit; i < n; i++) {
        if (i == nlit + 1) { /* the sub-resource kind */
            FUZZ_CHECK(strcmp(segs[i], "Conversations") == 0 || strcmp(segs[i], "Channels") == 0 ||
                       strcmp(segs[i], "Bindings") == 0);
            continue;
        }
        char dec[1024];
        long dn = util_pct_decode(segs[i], strlen(segs[i]), dec, false);
        FUZZ_CHECK(dn > 0);
        FUZZ_CHECK(!memchr(dec, '/', (size_t)dn));
        FUZZ_CHECK(strcmp(dec, ".") != 0 && strcmp(dec, "..") != 0);
        FUZZ_CHECK(strcmp(segs[i], ".") != 0 && strcmp(segs[i], "..") != 0);
        const char *want = var == 0 ? m->user : m->item;
        size_t want_len = var == 0 ? m->user_len : m->item_len;
        FUZZ_CHECK((size_t)dn == want_len && memcmp(dec, want, want_len) == 0);
        var++;
    }
    FUZZ_CHECK(var == (m->user_len ? 1u : 0u) + (m->item_len ? 1u : 0u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 3000)
        return 0;
    const char *method = methods[data[0] % 4];
    const char *path = (const char *)data + 1;
    size_t len = size - 1;
    struct route_match m;
    int code;
    char err[256];
    if (route_match(method, path, len, &m, &code, err, sizeof err) != ROUTE_OK)
        return 0;
    struct buf up = {0};
    route_upstream_path(&m, NULL, &up);
    check_confined(&m, up.data);
    struct route_match m2;
    FUZZ_CHECK(route_match(method, up.data, up.len, &m2, &code, err, sizeof err) == ROUTE_OK);
    FUZZ_CHECK(m2.id == m.id && m2.action == m.action && m2.sub == m.sub);
    FUZZ_CHECK(m2.user_len == m.user_len && memcmp(m2.user, m.user, m.user_len) == 0);
    FUZZ_CHECK(m2.item_len == m.item_len && memcmp(m2.item, m.item, m.item_len) == 0);
    FUZZ_CHECK(strcmp(m2.service, m.service) == 0);

    struct buf canon = {0};
    if (m.query &&
        twilio_validate_list_query(m.query, m.query_len, 50, true, &canon, err, sizeof err) == 0 &&
        canon.len) {
        struct buf again = {0};
        FUZZ_CHECK(twilio_validate_list_query(canon.data, canon.len, 50, true, &again, err,
                                              sizeof err) == 0);
        FUZZ_CHECK(again.len == canon.len && memcmp(again.data, canon.data, canon.len) == 0);
        struct buf withq = {0};
        route_upstream_path(&m, canon.data, &withq);
        FUZZ_CHECK(withq.len == up.len + 1 + canon.len);
        FUZZ_CHECK(!strchr(canon.data, '#') && !strchr(canon.data, '?'));
        buf_free(&again);
        buf_free(&withq);
    }
    buf_free(&canon);
    buf_free(&up);
    return 0;
}

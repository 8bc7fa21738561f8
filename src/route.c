/* route: the client-facing route table as a pure function from (method,
 * request-target) to a route match. Knows Twilio's URL shapes, decodes and
 * validates path segments, and nothing else (no auth, no I/O). Anything it
 * does not recognise is a 404 so usergate never acts as an open proxy. */
#include "route.h"

#include <stdio.h>
#include <string.h>

#define ROUTE_MAX_SEGS 8

const char *route_family_tag(enum api_family f)
{
    static const char *const tags[FAMILY_COUNT] = {"v1", "v1s", "v2"};
    return (unsigned)f < FAMILY_COUNT ? tags[f] : "unknown";
}

const char *route_action_name(enum route_action a)
{
    static const char *const names[ACTION_COUNT] = {"fetch",  "create", "update",
                                                    "delete", "list",   "sub"};
    return (unsigned)a < ACTION_COUNT ? names[a] : "unknown";
}

const char *route_label(enum route_id r)
{
    static const char *const labels[ROUTE_COUNT] = {
        [ROUTE_V1_USERS] = "/v1/Users",
        [ROUTE_V1_USER] = "/v1/Users/{Sid}",
        [ROUTE_V1_USER_SUB] = "/v1/Users/{Sid}/Conversations",
        [ROUTE_V1S_USERS] = "/v1/Services/{ServiceSid}/Users",
        [ROUTE_V1S_USER] = "/v1/Services/{ServiceSid}/Users/{Sid}",
        [ROUTE_V1S_USER_SUB] = "/v1/Services/{ServiceSid}/Users/{Sid}/Conversations",
        [ROUTE_V2_USERS] = "/v2/Services/{ServiceSid}/Users",
        [ROUTE_V2_USER] = "/v2/Services/{ServiceSid}/Users/{Sid}",
        [ROUTE_V2_USER_SUB] = "/v2/Services/{ServiceSid}/Users/{Sid}/sub",
        [ROUTE_WEBHOOK] = "webhook",
        [ROUTE_NONE] = "other",
    };
    return (unsigned)r < ROUTE_COUNT ? labels[r] : "other";
}

struct seg {
    const char *p;
    size_t n;
};

static bool seg_is(const struct seg *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->n == n && memcmp(s->p, lit, n) == 0;
}

/* Allowed methods as a bit set: G(ET) P(OST) D(ELETE). */
enum { M_GET = 1, M_POST = 2, M_DELETE = 4 };

static unsigned method_bit(const char *method)
{
    if (!method)
        return 0;
    if (strcmp(method, "GET") == 0)
        return M_GET;
    if (strcmp(method, "POST") == 0)
        return M_POST;
    if (strcmp(method, "DELETE") == 0)
        return M_DELETE;
    return 0;
}

static enum route_result bad_request(int *code, char *err, size_t errlen, const char *msg)
{
    *code = TWILIO_E_BAD_REQUEST;
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return ROUTE_BAD_REQUEST;
}

/* A variable segment: percent-decoded exactly once into out (which holds
 * TWILIO_IDENTITY_MAX + 1 bytes), then validated as a path segment. Any
 * escape shrinks three bytes to one, so a longer raw segment cannot fit. */
static enum route_result decode_segment(const struct seg *s, char *out, size_t *out_len, int *code,
                                        char *err, size_t errlen)
{
    char tmp[3 * TWILIO_IDENTITY_MAX + 1];
    if (s->n > 3 * TWILIO_IDENTITY_MAX)
        return bad_request(code, err, errlen, "Invalid user Sid or Identity: too long");
    long dn = util_pct_decode(s->p, s->n, tmp, false);
    if (dn < 0)
        return bad_request(code, err, errlen, "Invalid path segment: invalid percent-encoding");
    char why[128];
    if (twilio_validate_path_segment(tmp, (size_t)dn, why, sizeof why) < 0)
        return bad_request(code, err, errlen, why);
    memcpy(out, tmp, (size_t)dn + 1);
    *out_len = (size_t)dn;
    return ROUTE_OK;
}

enum route_result route_match(const char *method, const char *path, size_t len,
                              struct route_match *m, int *code, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    m->id = ROUTE_NONE;
    if (err && errlen)
        err[0] = '\0';

    const char *q = memchr(path, '?', len);
    size_t plen = q ? (size_t)(q - path) : len;
    if (q && (size_t)(q - path) + 1 < len) {
        m->query = q + 1;
        m->query_len = len - plen - 1;
    }

    if (plen < 2 || path[0] != '/')
        return ROUTE_NOT_FOUND;
    struct seg segs[ROUTE_MAX_SEGS];
    size_t nseg = 0;
    const char *p = path + 1, *end = path + plen;
    for (;;) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        /* Empty segments are kept: a literal never matches one (404), a
         * variable one is refused as empty (400). */
        if (nseg == ROUTE_MAX_SEGS)
            return ROUTE_NOT_FOUND;
        segs[nseg++] = (struct seg){p, (size_t)(stop - p)};
        if (!slash)
            break;
        p = slash + 1;
    }

    /* Family prefix: how many segments it takes and where {IS} is. */
    enum api_family fam;
    size_t base;
    const struct seg *service = NULL;
    if (nseg >= 2 && seg_is(&segs[0], "v1") && seg_is(&segs[1], "Users")) {
        fam = FAMILY_V1_DEFAULT;
        base = 2;
    } else if (nseg >= 4 && (seg_is(&segs[0], "v1") || seg_is(&segs[0], "v2")) &&
               seg_is(&segs[1], "Services") && seg_is(&segs[3], "Users")) {
        fam = seg_is(&segs[0], "v1") ? FAMILY_V1_SERVICE : FAMILY_V2;
        base = 4;
        service = &segs[2];
    } else {
        return ROUTE_NOT_FOUND;
    }
    static const enum route_id ids[FAMILY_COUNT][3] = {
        [FAMILY_V1_DEFAULT] = {ROUTE_V1_USERS, ROUTE_V1_USER, ROUTE_V1_USER_SUB},
        [FAMILY_V1_SERVICE] = {ROUTE_V1S_USERS, ROUTE_V1S_USER, ROUTE_V1S_USER_SUB},
        [FAMILY_V2] = {ROUTE_V2_USERS, ROUTE_V2_USER, ROUTE_V2_USER_SUB},
    };

    size_t rest = nseg - base;
    unsigned allowed;
    int shape; /* 0 collection, 1 item, 2 sub */
    bool bindings = false;
    if (rest == 0) {
        shape = 0;
        allowed = M_GET | M_POST;
    } else if (rest == 1) {
        shape = 1;
        allowed = M_GET | M_POST | M_DELETE;
    } else if (rest <= 3) {
        const struct seg *kind = &segs[base + 1];
        if (fam == FAMILY_V2) {
            bindings = seg_is(kind, "Bindings");
            if (!bindings && !seg_is(kind, "Channels"))
                return ROUTE_NOT_FOUND;
        } else if (!seg_is(kind, "Conversations")) {
            return ROUTE_NOT_FOUND;
        }
        shape = 2;
        if (rest == 2)
            allowed = M_GET;
        else
            allowed = bindings ? (M_GET | M_DELETE) : (M_GET | M_POST | M_DELETE);
    } else {
        return ROUTE_NOT_FOUND;
    }
    m->family = fam;
    m->id = ids[fam][shape];

    unsigned mb = method_bit(method);
    if (!(mb & allowed))
        return ROUTE_BAD_METHOD;
    static const enum route_action collection_action[] = {
        [M_GET] = ACTION_LIST, [M_POST] = ACTION_CREATE};
    static const enum route_action item_action[] = {
        [M_GET] = ACTION_FETCH, [M_POST] = ACTION_UPDATE, [M_DELETE] = ACTION_DELETE};
    m->action = shape == 0 ? collection_action[mb] : shape == 1 ? item_action[mb] : ACTION_SUB;

    if (service) {
        if (!twilio_is_sid(service->p, service->n, "IS"))
            return bad_request(code, err, errlen,
                               "Invalid ServiceSid: must match ^IS[0-9a-fA-F]{32}$");
        memcpy(m->service, service->p, TWILIO_SID_LEN);
        m->service[TWILIO_SID_LEN] = '\0';
        twilio_sid_canon(m->service);
    }
    if (shape == 0)
        return ROUTE_OK;

    /* {Sid}: decoded exactly once, '+' literal (twilio-node sends identities
     * raw, so "bob+1@example.com" must stay a plus). */
    const struct seg *user = &segs[base];
    if (decode_segment(user, m->user, &m->user_len, code, err, errlen) != ROUTE_OK)
        return ROUTE_BAD_REQUEST;
    m->user_is_sid = twilio_is_sid(m->user, m->user_len, "US");
    if (m->user_is_sid)
        twilio_sid_canon(m->user);
    if (shape == 1)
        return ROUTE_OK;

    m->sub = fam == FAMILY_V2 ? (bindings ? ROUTE_SUB_BINDINGS : ROUTE_SUB_CHANNELS)
                              : ROUTE_SUB_CONVERSATIONS;
    if (rest == 3) {
        const struct seg *item = &segs[base + 2];
        if (bindings && !twilio_is_sid(item->p, item->n, "BS"))
            return bad_request(code, err, errlen, "Invalid Sid: must match ^BS[0-9a-fA-F]{32}$");
        if (decode_segment(item, m->item, &m->item_len, code, err, errlen) != ROUTE_OK)
            return ROUTE_BAD_REQUEST;
        if (bindings)
            twilio_sid_canon(m->item);
    }
    return ROUTE_OK;
}

static const char *sub_name(enum route_sub s)
{
    static const char *const names[] = {[ROUTE_SUB_CONVERSATIONS] = "Conversations",
                                        [ROUTE_SUB_CHANNELS] = "Channels",
                                        [ROUTE_SUB_BINDINGS] = "Bindings"};
    return s > ROUTE_SUB_NONE && s <= ROUTE_SUB_BINDINGS ? names[s] : NULL;
}

void route_upstream_path(const struct route_match *m, const char *canon_query, struct buf *out)
{
    switch (m->family) {
    case FAMILY_V1_SERVICE:
        buf_printf(out, "/v1/Services/%s/Users", m->service);
        break;
    case FAMILY_V2:
        buf_printf(out, "/v2/Services/%s/Users", m->service);
        break;
    default:
        buf_puts(out, "/v1/Users");
        break;
    }
    if (m->user_len) {
        buf_puts(out, "/");
        util_pct_encode(out, m->user, m->user_len);
        const char *sub = sub_name(m->sub);
        if (sub) {
            buf_puts(out, "/");
            buf_puts(out, sub);
            if (m->item_len) {
                buf_puts(out, "/");
                util_pct_encode(out, m->item, m->item_len);
            }
        }
    }
    if (canon_query && canon_query[0]) {
        buf_puts(out, "?");
        buf_puts(out, canon_query);
    }
}

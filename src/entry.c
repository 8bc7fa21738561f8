/* entry: cache keys and the envelope of a cached user, as pure functions.
 * Everything that reads bytes back from Redis is strict: a value another
 * version, a truncated write or a foreign writer produced must decode as
 * "malformed" (a miss), never as a partly trusted entry. */
#include "entry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "twilio.h"

/* Every key of one user name shares "{<tag>}": the 16 hex digits of a keyed
 * hash of (account, service, name), so Redis Cluster keeps a user's entries,
 * version, hold and lock in one slot (scripts may touch them together) and
 * spreads users over all slots. The name itself follows, raw and last. */
void entry_tag(char out[ENTRY_TAG_LEN + 1], const char *account, const char *service,
               const char *name, size_t name_len)
{
    static const uint64_t key[2] = {0x7573657267617465ULL, 0x736c6f742d746167ULL};
    /* account\0service\0name, on the stack when it fits (it always does for
     * SIDs and identities within Twilio's limits). */
    size_t alen = strlen(account), slen = strlen(service), n = alen + 1 + slen + 1 + name_len;
    char stack[2 * 64 + 512];
    struct buf heap = {0};
    char *b = stack;
    if (n > sizeof stack) {
        buf_reserve(&heap, n);
        b = heap.data;
    }
    memcpy(b, account, alen + 1);
    memcpy(b + alen + 1, service, slen + 1);
    if (name_len)
        memcpy(b + alen + 1 + slen + 1, name, name_len);
    uint64_t h = util_siphash(key, b, n);
    buf_free(&heap);
    for (int i = ENTRY_TAG_LEN - 1; i >= 0; i--, h >>= 4)
        out[i] = "0123456789abcdef"[h & 15];
    out[ENTRY_TAG_LEN] = '\0';
}

void entry_key(struct buf *out, const char *prefix, enum entry_key_kind kind, const char *account,
               const char *service, int family, const char *name, size_t name_len)
{
    char tag[ENTRY_TAG_LEN + 1];
    entry_tag(tag, account, service, name, name_len);
    buf_reset(out);
    entry_key_append(out, prefix, kind, tag, account, service, family, name, name_len);
}

void entry_key_append(struct buf *out, const char *prefix, enum entry_key_kind kind,
                      const char tag[ENTRY_TAG_LEN + 1], const char *account, const char *service,
                      int family, const char *name, size_t name_len)
{
    /* "<prefix><kind>:{<tag>}:<account>:<service>:[<family>:]<name>", sized
     * first and copied in once (this runs for every Redis lookup). */
    const char *fam = family >= 0 ? route_family_tag((enum api_family)family) : NULL;
    size_t plen = strlen(prefix), alen = strlen(account), slen = strlen(service);
    size_t flen = fam ? strlen(fam) + 1 : 0;
    size_t n = plen + 3 + ENTRY_TAG_LEN + 2 + alen + 1 + slen + 1 + flen + name_len;
    buf_reserve(out, n);
    char *p = out->data + out->len;
    memcpy(p, prefix, plen);
    p += plen;
    *p++ = (char)kind;
    *p++ = ':';
    *p++ = '{';
    memcpy(p, tag, ENTRY_TAG_LEN);
    p += ENTRY_TAG_LEN;
    *p++ = '}';
    *p++ = ':';
    memcpy(p, account, alen);
    p += alen;
    *p++ = ':';
    memcpy(p, service, slen);
    p += slen;
    *p++ = ':';
    if (fam) {
        memcpy(p, fam, flen - 1);
        p += flen - 1;
        *p++ = ':';
    }
    /* Appended raw, after the last separator, so any byte (':' or NUL
     * included) stays part of the name and cannot shift other fields. */
    if (name_len)
        memcpy(p, name, name_len);
    out->len += n;
    out->data[out->len] = '\0';
}

/* Redis glob metacharacters are backslash-escaped so a prefix such as
 * "app[1]:" matches itself only. */
static void glob_escape(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (strchr("*?[]\\", *s))
            buf_append(out, "\\", 1);
        buf_append(out, s, 1);
    }
}

void entry_service_pattern(struct buf *out, const char *prefix, const char *account,
                           const char *service)
{
    buf_reset(out);
    glob_escape(out, prefix);
    /* Any kind, any tag: "<prefix>?:{*}:<account>:<service>:*". '*' may also
     * match a key of another service whose name contains
     * ":<account>:<service>:"; over-matching only purges extra cache keys,
     * which is always safe. */
    buf_puts(out, "?:{*}:");
    glob_escape(out, account);
    buf_puts(out, ":");
    glob_escape(out, service);
    buf_puts(out, ":*");
}

void entry_encode(struct buf *out, const struct entry *e)
{
    buf_reset(out);
    buf_printf(out, "UG%d %d %" PRId64 " %" PRId64 " %zu %zu %zu %zu\n", ENTRY_VERSION, e->status,
               e->stored_ms, e->fresh_until_ms, e->ver_len, e->sid_len, e->identity_len,
               e->body_len);
    buf_append(out, e->ver, e->ver_len);
    buf_append(out, e->sid, e->sid_len);
    buf_append(out, e->identity, e->identity_len);
    buf_append(out, e->body, e->body_len);
}

/* One canonical unsigned decimal (no sign, no leading zero, at most 18
 * digits so it fits int64) followed by the byte term. Advances *p past it. */
static int parse_num(const char **p, const char *end, char term, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t n = 0;
    while (s + n < end && s[n] >= '0' && s[n] <= '9') {
        v = v * 10 + (uint64_t)(s[n] - '0');
        if (++n > 18)
            return -1;
    }
    if (n == 0 || (n > 1 && s[0] == '0') || s + n >= end || s[n] != term)
        return -1;
    *p = s + n + 1;
    *out = v;
    return 0;
}

int entry_decode(const char *data, size_t len, struct entry *e)
{
    const char *p = data, *end = data + len;
    uint64_t version, status, stored, fresh, ver_len, sid_len, id_len, body_len;
    if (len < 2 || memcmp(p, "UG", 2) != 0)
        return -1;
    p += 2;
    if (parse_num(&p, end, ' ', &version) < 0 || version != ENTRY_VERSION ||
        parse_num(&p, end, ' ', &status) < 0 || parse_num(&p, end, ' ', &stored) < 0 ||
        parse_num(&p, end, ' ', &fresh) < 0 || parse_num(&p, end, ' ', &ver_len) < 0 ||
        parse_num(&p, end, ' ', &sid_len) < 0 || parse_num(&p, end, ' ', &id_len) < 0 ||
        parse_num(&p, end, '\n', &body_len) < 0)
        return -1;
    if (status != 200 && status != 404)
        return -1;
    /* Each length is bounded by what is left before they are summed, so the
     * sum cannot overflow; it must then account for every remaining byte. */
    size_t left = (size_t)(end - p);
    if (ver_len > left || sid_len > left || id_len > left || body_len > left ||
        ver_len + sid_len + id_len + body_len != left || ver_len > ENTRY_VER_MAX)
        return -1;
    /* A positive entry without its SID or identity cannot be checked
     * against the request that found it. */
    if (status == 200 && (sid_len == 0 || id_len == 0))
        return -1;
    e->status = (int)status;
    e->stored_ms = (int64_t)stored;
    e->fresh_until_ms = (int64_t)fresh;
    e->ver = p;
    e->ver_len = (size_t)ver_len;
    p += ver_len;
    e->sid = p;
    e->sid_len = (size_t)sid_len;
    e->identity = p + sid_len;
    e->identity_len = (size_t)id_len;
    e->body = p + sid_len + id_len;
    e->body_len = (size_t)body_len;
    return 0;
}

static int copy_field(const cJSON *item, char *out, size_t outlen)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return -1;
    size_t n = strlen(item->valuestring);
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, item->valuestring, n + 1);
    return 0;
}

int entry_user_fields(const char *json, size_t len, char *sid, size_t sidlen, char *identity,
                      size_t idlen)
{
    /* cJSON hands strings back NUL-terminated, so an escaped NUL would
     * silently truncate the identity and file the user under another
     * user's key. Refuse such bodies (a false positive only skips caching). */
    if (memchr(json, '\0', len))
        return -1;
    for (size_t i = 0; i + 6 <= len; i++) {
        if (json[i] == '\\' && json[i + 1] == 'u' && memcmp(json + i + 2, "0000", 4) == 0)
            return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return -1;
    int rc = -1;
    if (cJSON_IsObject(root) &&
        copy_field(cJSON_GetObjectItemCaseSensitive(root, "sid"), sid, sidlen) == 0 &&
        twilio_is_sid(sid, strlen(sid), "US") &&
        copy_field(cJSON_GetObjectItemCaseSensitive(root, "identity"), identity, idlen) == 0) {
        twilio_sid_canon(sid);
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

int entry_json_string(const char *json, size_t len, const char *name, char *out, size_t outlen)
{
    if (!json || memchr(json, '\0', len))
        return -1;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return -1;
    int rc = cJSON_IsObject(root)
                 ? copy_field(cJSON_GetObjectItemCaseSensitive(root, name), out, outlen)
                 : -1;
    cJSON_Delete(root);
    return rc;
}

int entry_user_service(const char *json, size_t len, char *out, size_t outlen)
{
    static const char *const names[] = {"chat_service_sid", "service_sid"};
    for (size_t i = 0; i < UG_ARRAY_LEN(names); i++)
        if (entry_json_string(json, len, names[i], out, outlen) == 0 &&
            twilio_is_sid(out, strlen(out), "IS")) {
            twilio_sid_canon(out);
            return 0;
        }
    return -1;
}

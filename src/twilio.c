/* twilio: Twilio's rules as pure functions — SID formats, identity rules, the
 * form bodies of user create/update, list query parameters and Twilio-shaped
 * error JSON. No I/O. Attribute values are sensitive: no message built here
 * ever quotes a field value. */
#include "twilio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool twilio_is_sid(const char *s, size_t n, const char *prefix)
{
    if (!s || !prefix || n != TWILIO_SID_LEN || strlen(prefix) != 2)
        return false;
    if (s[0] != prefix[0] || s[1] != prefix[1])
        return false;
    for (size_t i = 2; i < n; i++)
        if (!is_hex((unsigned char)s[i]))
            return false;
    return true;
}

void twilio_error_json(struct buf *b, int status, int code, const char *message)
{
    buf_printf(b, "{\"code\":%d,\"message\":", code);
    util_json_string(b, message ? message : "");
    buf_printf(b, ",\"more_info\":\"https://www.twilio.com/docs/errors/%d\",\"status\":%d}", code,
               status);
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Decode one name or value of a form/query; NULL on a bad escape or NUL. */
static char *decode_part(const char *p, size_t n, size_t *out_len, const char **why)
{
    char *out = malloc(n + 1);
    if (!out)
        abort();
    long r = util_pct_decode(p, n, out, true);
    if (r < 0) {
        *why = "invalid percent-encoding";
        free(out);
        return NULL;
    }
    if (memchr(out, '\0', (size_t)r)) {
        *why = "NUL byte";
        free(out);
        return NULL;
    }
    *out_len = (size_t)r;
    return out;
}

int form_parse(const char *body, size_t len, struct form *f, char *err, size_t errlen)
{
    f->fields = NULL;
    f->n = 0;
    size_t cap = 0;
    const char *end = body + len;
    const char *p = body;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop == p) { /* "a=1&&b=2" or a trailing '&': nothing to add */
            p = stop + 1;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        if (name_end == p) {
            set_err(err, errlen, "Invalid form body: a field has an empty name");
            goto fail;
        }
        const char *why = NULL;
        size_t nlen, vlen = 0;
        char *name = decode_part(p, (size_t)(name_end - p), &nlen, &why);
        char *value = NULL;
        if (name && nlen == 0) {
            why = "empty name";
            free(name);
            name = NULL;
        }
        if (name)
            value =
                eq ? decode_part(eq + 1, (size_t)(stop - eq - 1), &vlen, &why) : util_strdup("");
        if (!name || !value) {
            free(name);
            char msg[128];
            snprintf(msg, sizeof msg, "Invalid form body: %s in a field", why);
            set_err(err, errlen, msg);
            goto fail;
        }
        if (f->n == cap) {
            cap = cap ? cap * 2 : 8;
            struct form_field *nf = realloc(f->fields, cap * sizeof(*nf));
            if (!nf)
                abort();
            f->fields = nf;
        }
        f->fields[f->n++] = (struct form_field){name, value, vlen};
        p = amp ? amp + 1 : end;
    }
    return 0;
fail:
    form_free(f);
    return -1;
}

const struct form_field *form_get(const struct form *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->fields[i].name, name) == 0)
            return &f->fields[i];
    return NULL;
}

void form_free(struct form *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->fields[i].name);
        free(f->fields[i].value);
    }
    free(f->fields);
    f->fields = NULL;
    f->n = 0;
}

void form_encode(const struct form *f, struct buf *out)
{
    /* Always leave a (possibly empty) C string, even for an empty form. */
    buf_reserve(out, 0);
    for (size_t i = 0; i < f->n; i++) {
        if (i)
            buf_puts(out, "&");
        util_pct_encode(out, f->fields[i].name, strlen(f->fields[i].name));
        buf_puts(out, "=");
        util_pct_encode(out, f->fields[i].value, f->fields[i].value_len);
    }
}

int twilio_validate_identity(const char *s, size_t n, char *err, size_t errlen)
{
    if (n == 0) {
        set_err(err, errlen, "Invalid Identity: must not be empty");
        return -1;
    }
    if (n > TWILIO_IDENTITY_MAX) {
        char msg[96];
        snprintf(msg, sizeof msg, "Invalid Identity: longer than %d bytes", TWILIO_IDENTITY_MAX);
        set_err(err, errlen, msg);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            set_err(err, errlen, "Invalid Identity: contains a control character");
            return -1;
        }
    }
    if (!util_utf8_valid(s, n)) {
        set_err(err, errlen, "Invalid Identity: not valid UTF-8");
        return -1;
    }
    return 0;
}

int twilio_validate_path_segment(const char *s, size_t n, char *err, size_t errlen)
{
    if (twilio_validate_identity(s, n, err, errlen) < 0)
        return -1;
    /* Dot segments and slashes would let a path address another resource
     * once anything on the way (curl, a proxy, Twilio's front end) normalises
     * it: /Users/.. is /v1, /Users/a%2Fb is two segments. */
    if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
        set_err(err, errlen, "Invalid path segment: '.' and '..' are not allowed");
        return -1;
    }
    if (memchr(s, '/', n)) {
        set_err(err, errlen, "Invalid path segment: must not contain '/'");
        return -1;
    }
    return 0;
}

void twilio_sid_canon(char *sid)
{
    for (size_t i = 2; sid[i]; i++)
        if (sid[i] >= 'A' && sid[i] <= 'F')
            sid[i] = (char)(sid[i] - 'A' + 'a');
}

enum user_field { UF_IDENTITY, UF_FRIENDLY_NAME, UF_ATTRIBUTES, UF_ROLE_SID, UF_COUNT };
static const char *const user_field_names[UF_COUNT] = {"Identity", "FriendlyName", "Attributes",
                                                       "RoleSid"};

static int user_field_check(enum user_field which, const struct form_field *fl, int *code,
                            char *err, size_t errlen)
{
    char msg[160];
    switch (which) {
    case UF_IDENTITY:
        if (twilio_validate_identity(fl->value, fl->value_len, err, errlen) < 0)
            return -1;
        if (twilio_is_sid(fl->value, fl->value_len, "US")) {
            *code = TWILIO_E_IDENTITY_IS_SID;
            set_err(err, errlen, "Identity should not match user SID pattern");
            return -1;
        }
        return 0;
    case UF_FRIENDLY_NAME:
        if (fl->value_len > TWILIO_FRIENDLY_NAME_MAX) {
            snprintf(msg, sizeof msg, "Invalid FriendlyName: longer than %d bytes",
                     TWILIO_FRIENDLY_NAME_MAX);
            set_err(err, errlen, msg);
            return -1;
        }
        return 0;
    case UF_ATTRIBUTES: {
        if (fl->value_len > TWILIO_ATTRIBUTES_MAX) {
            snprintf(msg, sizeof msg, "Invalid Attributes: longer than %d bytes",
                     TWILIO_ATTRIBUTES_MAX);
            set_err(err, errlen, msg);
            return -1;
        }
        /* len + 1 includes the terminator: cJSON 1.7's require_null_terminated
         * looks for it inside the given length. Trailing garbage fails. */
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(fl->value, fl->value_len + 1, &end, 1);
        bool ok = j && cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok) {
            set_err(err, errlen, "Invalid Attributes: must be a string containing a JSON object");
            return -1;
        }
        return 0;
    }
    case UF_ROLE_SID:
        if (!twilio_is_sid(fl->value, fl->value_len, "RL")) {
            set_err(err, errlen, "Invalid RoleSid: must match ^RL[0-9a-fA-F]{32}$");
            return -1;
        }
        return 0;
    default:
        return -1;
    }
}

int twilio_validate_user_form(const struct form *f, enum twilio_user_op op, int *code, char *err,
                              size_t errlen)
{
    char msg[160];
    bool seen[UF_COUNT] = {false};
    *code = TWILIO_E_BAD_REQUEST;
    for (size_t i = 0; i < f->n; i++) {
        const struct form_field *fl = &f->fields[i];
        int which = -1;
        for (int k = 0; k < UF_COUNT; k++)
            if (strcmp(fl->name, user_field_names[k]) == 0)
                which = k;
        if (which < 0) {
            /* Names are echoed (truncated) so the caller sees the typo;
             * values never are. */
            snprintf(msg, sizeof msg, "Unknown parameter %.64s", fl->name);
            set_err(err, errlen, msg);
            return -1;
        }
        if (which == UF_IDENTITY && op == TWILIO_USER_UPDATE) {
            set_err(err, errlen, "Unknown parameter Identity: a user's Identity cannot be updated");
            return -1;
        }
        if (seen[which]) {
            snprintf(msg, sizeof msg, "Duplicate parameter %s", user_field_names[which]);
            set_err(err, errlen, msg);
            return -1;
        }
        seen[which] = true;
        if (user_field_check((enum user_field)which, fl, code, err, errlen) < 0)
            return -1;
    }
    if (op == TWILIO_USER_CREATE && !seen[UF_IDENTITY]) {
        set_err(err, errlen, "Required parameter Identity missing.");
        return -1;
    }
    return 0;
}

/* One validated parameter of a canonical query: name=value re-encoded. */
static void canon_add(struct buf *canon, const char *name, const char *value, size_t vlen)
{
    if (!canon)
        return;
    buf_puts(canon, canon->len ? "&" : "");
    buf_puts(canon, name);
    buf_puts(canon, "=");
    util_pct_encode(canon, value, vlen);
}

int twilio_validate_list_query(const char *query, size_t len, long max_page_size,
                               bool allow_binding_type, struct buf *canon, char *err, size_t errlen)
{
    char msg[160];
    bool seen_size = false, seen_page = false, seen_token = false;
    if (!query)
        return 0;
    const char *end = query + len;
    const char *p = query;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *next = amp ? amp + 1 : end;
        if (stop == p) {
            p = next;
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq ? eq : stop;
        const char *why = NULL;
        size_t nlen, vlen = 0;
        char *name = decode_part(p, (size_t)(name_end - p), &nlen, &why);
        char *value = NULL;
        if (name)
            value =
                eq ? decode_part(eq + 1, (size_t)(stop - eq - 1), &vlen, &why) : util_strdup("");
        if (!name || !value) {
            free(name);
            snprintf(msg, sizeof msg, "Invalid query string: %s", why);
            set_err(err, errlen, msg);
            return -1;
        }
        int rc = 0;
        long v;
        if (strcmp(name, "PageSize") == 0) {
            if (seen_size || !util_parse_long(value, 1, max_page_size, &v)) {
                snprintf(msg, sizeof msg,
                         "Invalid PageSize: must be a single integer between 1 and %ld",
                         max_page_size);
                rc = -1;
            }
            seen_size = true;
        } else if (strcmp(name, "Page") == 0) {
            if (seen_page || !util_parse_long(value, 0, 0x7fffffffL, &v)) {
                snprintf(msg, sizeof msg, "Invalid Page: must be a single integer >= 0");
                rc = -1;
            }
            seen_page = true;
        } else if (strcmp(name, "PageToken") == 0) {
            if (seen_token || !util_utf8_valid(value, vlen)) {
                snprintf(msg, sizeof msg, "Invalid PageToken: must be a single UTF-8 string");
                rc = -1;
            }
            seen_token = true;
        } else if (allow_binding_type && strcmp(name, "BindingType") == 0) {
            /* Repeatable by design (one key per value). */
            if (strcmp(value, "gcm") != 0 && strcmp(value, "apn") != 0 &&
                strcmp(value, "fcm") != 0) {
                snprintf(msg, sizeof msg, "Invalid BindingType: must be one of gcm, apn, fcm");
                rc = -1;
            }
        } else {
            snprintf(msg, sizeof msg, "Unknown query parameter %.64s", name);
            rc = -1;
        }
        if (rc == 0)
            canon_add(canon, name, value, vlen);
        free(name);
        free(value);
        if (rc < 0) {
            set_err(err, errlen, msg);
            return -1;
        }
        p = next;
    }
    return 0;
}

/* ISO 8601 date-time as Twilio takes it: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM). */
static bool is_datetime(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != shape[i])
            return false;
    }
    const char *p = s + sizeof shape - 1;
    if (*p == '.') {
        const char *d = ++p;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p == d || p - d > 9)
            return false;
    }
    if (strcmp(p, "Z") == 0)
        return true;
    return (p[0] == '+' || p[0] == '-') && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
           p[2] <= '9' && p[3] == ':' && p[4] >= '0' && p[4] <= '9' && p[5] >= '0' && p[5] <= '9' &&
           p[6] == '\0';
}

/* The form fields of a sub-resource update, per Twilio's OpenAPI documents:
 * POST …/Users/{Sid}/Conversations/{ConversationSid} (Conversations v1) and
 * POST /v2/…/Users/{Sid}/Channels/{ChannelSid} (Chat v2). */
enum sub_field_type { SF_NOTIFICATION_LEVEL, SF_DATETIME, SF_INDEX };
static const struct {
    enum twilio_sub_kind kind;
    const char *name;
    enum sub_field_type type;
} sub_fields[] = {
    {TWILIO_SUB_CONVERSATIONS, "NotificationLevel", SF_NOTIFICATION_LEVEL},
    {TWILIO_SUB_CONVERSATIONS, "LastReadTimestamp", SF_DATETIME},
    {TWILIO_SUB_CONVERSATIONS, "LastReadMessageIndex", SF_INDEX},
    {TWILIO_SUB_CHANNELS, "NotificationLevel", SF_NOTIFICATION_LEVEL},
    {TWILIO_SUB_CHANNELS, "LastConsumedMessageIndex", SF_INDEX},
    {TWILIO_SUB_CHANNELS, "LastConsumptionTimestamp", SF_DATETIME},
};

int twilio_validate_sub_form(const struct form *f, enum twilio_sub_kind kind, char *err,
                             size_t errlen)
{
    char msg[160];
    for (size_t i = 0; i < f->n; i++) {
        const struct form_field *fl = &f->fields[i];
        size_t k;
        for (k = 0; k < UG_ARRAY_LEN(sub_fields); k++)
            if (sub_fields[k].kind == kind && strcmp(sub_fields[k].name, fl->name) == 0)
                break;
        if (k == UG_ARRAY_LEN(sub_fields) || kind == TWILIO_SUB_BINDINGS) {
            snprintf(msg, sizeof msg, "Unknown parameter %.64s", fl->name);
            set_err(err, errlen, msg);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(f->fields[j].name, fl->name) == 0) {
                snprintf(msg, sizeof msg, "Duplicate parameter %s", sub_fields[k].name);
                set_err(err, errlen, msg);
                return -1;
            }
        }
        long v;
        bool ok = true;
        switch (sub_fields[k].type) {
        case SF_NOTIFICATION_LEVEL:
            ok = strcmp(fl->value, "default") == 0 || strcmp(fl->value, "muted") == 0;
            break;
        case SF_DATETIME:
            ok = is_datetime(fl->value);
            break;
        case SF_INDEX:
            ok = util_parse_long(fl->value, 0, 0x7fffffffL, &v);
            break;
        }
        if (!ok) {
            snprintf(msg, sizeof msg, "Invalid %s: %s", sub_fields[k].name,
                     sub_fields[k].type == SF_NOTIFICATION_LEVEL ? "must be default or muted"
                     : sub_fields[k].type == SF_DATETIME         ? "must be an ISO 8601 date-time"
                                                                 : "must be an integer >= 0");
            set_err(err, errlen, msg);
            return -1;
        }
    }
    return 0;
}

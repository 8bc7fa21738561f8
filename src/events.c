/* events: Twilio's event deliveries read into struct event (see events.h).
 * Every field is validated here (SID formats with canonical case, the
 * identity by Twilio's rules), so the receiver acts only on clean values. */
#include "events.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *event_source_name(enum event_source s)
{
    static const char *const names[EVENT_SRC_COUNT] = {
        [EVENT_SRC_CONVERSATIONS] = "conversations",
        [EVENT_SRC_CHAT] = "chat",
        [EVENT_SRC_EVENTSTREAMS] = "eventstreams",
    };
    return (unsigned)s < EVENT_SRC_COUNT ? names[s] : "unknown";
}

static void set_type(struct event *e, const char *t, size_t n)
{
    if (!t) {
        strcpy(e->type, "none");
        return;
    }
    bool ok = n > 0 && n <= EVENT_TYPE_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        char c = t[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok) {
        strcpy(e->type, "invalid");
        return;
    }
    memcpy(e->type, t, n);
    e->type[n] = '\0';
}

/* Which user events there are, by the names each source gives them. */
static enum event_kind kind_of(const char *type)
{
    static const struct {
        const char *name;
        enum event_kind kind;
    } table[] = {
        /* Conversations post-action and Chat post-event webhooks. */
        {"onUserAdded", EVENT_USER_ADDED},
        {"onUserUpdated", EVENT_USER_UPDATED},
        {"onUserRemoved", EVENT_USER_REMOVED},
        {"onUserDeleted", EVENT_USER_REMOVED},
        /* Event Streams. */
        {"com.twilio.conversations.user.added", EVENT_USER_ADDED},
        {"com.twilio.conversations.user.updated", EVENT_USER_UPDATED},
        {"com.twilio.conversations.user.removed", EVENT_USER_REMOVED},
        {"com.twilio.conversations.user.deleted", EVENT_USER_REMOVED},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(table); i++)
        if (strcmp(type, table[i].name) == 0)
            return table[i].kind;
    return EVENT_OTHER;
}

/* A SID field: "" when absent; false when present but not prefix + 32 hex. */
static bool take_sid(char out[TWILIO_SID_LEN + 1], const char *v, size_t n, const char *prefix)
{
    out[0] = '\0';
    if (!v)
        return true;
    if (!twilio_is_sid(v, n, prefix))
        return false;
    memcpy(out, v, TWILIO_SID_LEN);
    out[TWILIO_SID_LEN] = '\0';
    twilio_sid_canon(out);
    return true;
}

/* The fields of one event, however they arrived: look one up by name. */
typedef const char *(*field_fn)(const void *src, const char *name, size_t *len);

static const char *first_field(field_fn get, const void *src, const char *const *names, size_t *len)
{
    for (; *names; names++) {
        const char *v = get(src, *names, len);
        if (v)
            return v;
    }
    return NULL;
}

static void fill_user(struct event *e, field_fn get, const void *src)
{
    static const char *const account[] = {"AccountSid", NULL};
    static const char *const service[] = {"ChatServiceSid", "ServiceSid", "InstanceSid", NULL};
    static const char *const user[] = {"UserSid", NULL};
    static const char *const ident[] = {"Identity", NULL};
    size_t n = 0;
    const char *v;
    bool ok = true;
    v = first_field(get, src, account, &n);
    ok = take_sid(e->account, v, n, "AC") && ok;
    v = first_field(get, src, service, &n);
    ok = take_sid(e->service, v, n, "IS") && ok;
    v = first_field(get, src, user, &n);
    ok = take_sid(e->user_sid, v, n, "US") && ok;
    v = first_field(get, src, ident, &n);
    if (v) {
        char err[96];
        if (twilio_validate_identity(v, n, err, sizeof err) < 0) {
            ok = false;
        } else {
            memcpy(e->identity, v, n);
            e->identity[n] = '\0';
            e->identity_len = n;
        }
    }
    if (!ok || (!e->identity_len && !e->user_sid[0]))
        e->kind = EVENT_MALFORMED;
}

static const char *form_field_fn(const void *src, const char *name, size_t *len)
{
    const struct form_field *f = form_get(src, name);
    if (!f)
        return NULL;
    *len = f->value_len;
    return f->value;
}

static struct event *push(struct events *out)
{
    out->v = realloc(out->v, (out->n + 1) * sizeof *out->v);
    if (!out->v)
        abort();
    struct event *e = &out->v[out->n++];
    memset(e, 0, sizeof *e);
    return e;
}

void events_from_form(const struct form *f, struct events *out)
{
    struct event *e = push(out);
    /* Chat names the service InstanceSid; Conversations, ChatServiceSid. */
    e->source =
        form_get(f, "ChatServiceSid") || !(form_get(f, "InstanceSid") || form_get(f, "ServiceSid"))
            ? EVENT_SRC_CONVERSATIONS
            : EVENT_SRC_CHAT;
    size_t n = 0;
    const char *t = form_field_fn(f, "EventType", &n);
    set_type(e, t, n);
    e->kind = t && strlen(t) == n ? kind_of(t) : EVENT_OTHER;
    if (e->kind != EVENT_OTHER)
        fill_user(e, form_field_fn, f);
}

static const char *json_field_fn(const void *src, const char *name, size_t *len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(src, name);
    if (!cJSON_IsString(v) || !v->valuestring)
        return NULL;
    *len = strlen(v->valuestring);
    return v->valuestring;
}

static void from_cloudevent(const cJSON *ce, struct events *out)
{
    struct event *e = push(out);
    e->source = EVENT_SRC_EVENTSTREAMS;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ce, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : NULL;
    set_type(e, t, t ? strlen(t) : 0);
    e->kind = t ? kind_of(t) : EVENT_OTHER;
    if (e->kind == EVENT_OTHER)
        return;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(ce, "data");
    if (!cJSON_IsObject(data)) {
        e->kind = EVENT_MALFORMED;
        return;
    }
    fill_user(e, json_field_fn, data);
}

int events_from_json(const char *body, size_t len, struct events *out, char *err, size_t errlen)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = -1;
    if (!root) {
        snprintf(err, errlen, "Event body is not JSON");
    } else if (cJSON_IsObject(root)) {
        from_cloudevent(root, out);
        rc = 0;
    } else if (cJSON_IsArray(root)) {
        int n = cJSON_GetArraySize(root);
        if (n > EVENTS_MAX) {
            snprintf(err, errlen, "More than %d events in one delivery", EVENTS_MAX);
        } else {
            rc = 0;
            const cJSON *ce;
            cJSON_ArrayForEach(ce, root)
            {
                if (!cJSON_IsObject(ce)) {
                    snprintf(err, errlen, "An event in the array is not an object");
                    rc = -1;
                    break;
                }
                from_cloudevent(ce, out);
            }
        }
    } else {
        snprintf(err, errlen, "Event body is neither a CloudEvent nor an array of them");
    }
    cJSON_Delete(root);
    if (rc < 0)
        events_free(out);
    return rc;
}

void events_free(struct events *e)
{
    free(e->v);
    e->v = NULL;
    e->n = 0;
}

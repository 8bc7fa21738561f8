/* twilio: Twilio's rules as pure functions — SID formats, identity rules, the
 * form bodies of user create/update, and Twilio-shaped error JSON. No I/O. */
#ifndef USERGATE_TWILIO_H
#define USERGATE_TWILIO_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define TWILIO_SID_LEN 34       /* two letters + 32 hex */
#define TWILIO_IDENTITY_MAX 256 /* bytes after percent-decoding; longer is 400 */
#define TWILIO_ATTRIBUTES_MAX 16384
#define TWILIO_FRIENDLY_NAME_MAX 256

/* True when s[0..n) is prefix (2 upper-case letters) + 32 hex digits (either case). */
bool twilio_is_sid(const char *s, size_t n, const char *prefix);

/* Twilio error codes usergate produces itself. */
enum {
    TWILIO_E_BAD_REQUEST = 20001, /* 400 generic invalid parameter */
    TWILIO_E_AUTH = 20003,        /* 401 */
    TWILIO_E_FORBIDDEN = 20403,   /* 403 */
    TWILIO_E_NOT_FOUND = 20404,   /* 404 */
    TWILIO_E_METHOD = 20004,      /* 405 */
    TWILIO_E_TOO_LARGE = 21617,   /* 413 */
    TWILIO_E_TOO_MANY = 20429,    /* 429 */
    TWILIO_E_INTERNAL = 20500,    /* 500 */
    TWILIO_E_UNAVAILABLE = 20503, /* 502/503: upstream unreachable */
    TWILIO_E_TIMEOUT = 20504,     /* 504: upstream timed out */
    TWILIO_E_IDENTITY_IS_SID = 50206,
};

/* Append {"code":C,"message":M,"more_info":"https://www.twilio.com/docs/errors/C","status":S}
 * to b (message JSON-escaped). */
void twilio_error_json(struct buf *b, int status, int code, const char *message);

/* One field of an application/x-www-form-urlencoded body, decoded ('+' is a
 * space, %XX decoded). name/value are NUL-terminated, owned by the form. */
struct form_field {
    char *name;
    char *value;
    size_t value_len;
};
struct form {
    struct form_field *fields;
    size_t n;
};
/* Parse body[0..len). Returns 0, or -1 with a human message in err (for the
 * 400 body) on invalid percent-encoding, a NUL byte, or an empty name.
 * An empty body is a valid empty form. */
int form_parse(const char *body, size_t len, struct form *f, char *err, size_t errlen);
/* First value of name, or NULL. */
const struct form_field *form_get(const struct form *f, const char *name);
void form_free(struct form *f);
/* Re-encode the form (every name and value percent-encoded) for upstream. */
void form_encode(const struct form *f, struct buf *out);

enum twilio_user_op { TWILIO_USER_CREATE, TWILIO_USER_UPDATE };
/* Validate a user create/update form per the spec: Identity required and
 * non-empty on create (<= TWILIO_IDENTITY_MAX bytes, must not match the US SID
 * pattern), not allowed on update; RoleSid ^RL[0-9a-fA-F]{32}$; Attributes a
 * JSON object string (cJSON); FriendlyName <= TWILIO_FRIENDLY_NAME_MAX; unknown
 * fields rejected; duplicate fields rejected. Returns 0, or -1 with *code
 * (Twilio error code, e.g. 20001/50206) and a message in err. */
int twilio_validate_user_form(const struct form *f, enum twilio_user_op op, int *code, char *err,
                              size_t errlen);

/* Validate an identity (already percent-decoded): non-empty, at most
 * TWILIO_IDENTITY_MAX bytes, no NUL / control bytes, valid UTF-8. Returns 0
 * or -1 + err. */
int twilio_validate_identity(const char *s, size_t n, char *err, size_t errlen);
/* A decoded variable path segment ({Sid}, {ConversationSid}, …): an
 * identity that is also not "." or ".." and holds no '/', so that no
 * normalisation anywhere can make it address another resource. */
int twilio_validate_path_segment(const char *s, size_t n, char *err, size_t errlen);

/* The one rule for SID letter case: the two-letter prefix is upper case and
 * the 32 hex digits are compared and used in lower case everywhere (grants,
 * cache keys, invalidation, upstream paths). Lower-cases the hex digits of a
 * NUL-terminated SID in place. */
void twilio_sid_canon(char *sid);

/* Sub-resource families with a form (update) body. */
enum twilio_sub_kind { TWILIO_SUB_CONVERSATIONS, TWILIO_SUB_CHANNELS, TWILIO_SUB_BINDINGS };
/* Validate a sub-resource update form against the fields Twilio's spec
 * defines for it (NotificationLevel, Last…Index, Last…Timestamp); anything
 * else, a repeat or a bad value is refused. Returns 0 or -1 + err. */
int twilio_validate_sub_form(const struct form *f, enum twilio_sub_kind kind, char *err,
                             size_t errlen);

/* Validate list query parameters (PageSize 1..max_page_size, Page >= 0,
 * PageToken UTF-8 text, nothing else except BindingType when
 * allow_binding_type). query is the raw query string without '?', may be
 * NULL. When canon is given, the validated parameters are appended to it
 * re-encoded: that, never the raw query, is what goes upstream. */
int twilio_validate_list_query(const char *query, size_t len, long max_page_size,
                               bool allow_binding_type, struct buf *canon, char *err,
                               size_t errlen);

#endif

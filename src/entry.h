/* entry: what a cached user is, as pure functions — key derivation and the
 * versioned envelope stored in Redis. No I/O.
 *
 * Keys (identity last, so it may hold any byte; other parts never hold ':'):
 *   user entry: <prefix>u:<account>:<family-tag>:<service>:<identity-or-SID>
 *   SID alias:  <prefix>a:<account>:<service>:<US-sid>  -> identity
 *   counter:    <prefix>c:<account>           (invalidation clock, cache.c)
 *   tombstone:  <prefix>g:<account>:<service>:<identity-or-SID>
 *   fetch lock: <prefix>l:<account>:<family-tag>:<service>:<identity-or-SID>
 * A 404 for a SID is stored as a user entry whose last part is the SID;
 * identities can never match the SID pattern (Twilio 50206), so the two never
 * collide. */
#ifndef USERGATE_ENTRY_H
#define USERGATE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"
#include "util.h"

/* Append the user entry key to out (out is reset first). */
void entry_user_key(struct buf *out, const char *prefix, const char *account, enum api_family f,
                    const char *service, const char *ident, size_t ident_len);
/* Append the SID alias key to out (out is reset first). */
void entry_alias_key(struct buf *out, const char *prefix, const char *account, const char *service,
                     const char *sid);
/* Coherence keys (see cache.c): the account's invalidation counter, and a
 * user name's tombstone holding the counter value of its last invalidation. */
void entry_clock_key(struct buf *out, const char *prefix, const char *account);
void entry_tomb_key(struct buf *out, const char *prefix, const char *account, const char *service,
                    const char *ident, size_t ident_len);
/* The cross-instance fetch lock of one user name in one family (cache.h). */
void entry_lock_key(struct buf *out, const char *prefix, const char *account, enum api_family f,
                    const char *service, const char *ident, size_t ident_len);
/* Pattern matching every key of one service (for SCAN MATCH in purges);
 * glob metacharacters in prefix are escaped. */
void entry_service_pattern(struct buf *out, const char *prefix, const char *account,
                           const char *service, bool alias);

#define ENTRY_VERSION 1

struct entry {
    int status;             /* 200 or 404 */
    int64_t stored_ms;      /* wall clock */
    int64_t fresh_until_ms; /* wall clock */
    const char *sid;        /* user SID ("" for negative entries) */
    size_t sid_len;
    const char *identity; /* identity ("" when unknown) */
    size_t identity_len;
    const char *body; /* upstream body bytes, as received */
    size_t body_len;
};

/* Encode e into out (reset first). Format:
 * "UG<version> <status> <stored_ms> <fresh_until_ms> <sid_len> <identity_len> <body_len>\n"
 * followed by sid, identity and body bytes. */
void entry_encode(struct buf *out, const struct entry *e);
/* Decode data[0..len) into e; pointers point into data. Returns 0, or -1 on
 * anything malformed or of another version (treated as a miss by callers). */
int entry_decode(const char *data, size_t len, struct entry *e);

/* Extract "sid" and "identity" string fields from a user JSON body (cJSON).
 * Returns 0 when sid is a US… SID and identity a non-empty string; outputs
 * are NUL-terminated copies. -1 when either is missing, empty or does not fit
 * its buffer (never truncated: a truncated identity is another user's key),
 * or when the body holds a NUL byte or a \u0000 escape. */
int entry_user_fields(const char *json, size_t len, char *sid, size_t sidlen, char *identity,
                      size_t idlen);

/* Copy the string field `name` of a JSON object body into out (NUL-terminated,
 * never truncated). Returns 0, or -1 if absent, not a string, or too long. */
int entry_json_string(const char *json, size_t len, const char *name, char *out, size_t outlen);
/* The service a user body belongs to: "chat_service_sid" (Conversations) or
 * "service_sid" (Chat), when it is an IS SID. Returns 0 or -1. */
int entry_user_service(const char *json, size_t len, char *out, size_t outlen);

#endif

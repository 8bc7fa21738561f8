/* entry: what a cached user is, as pure functions — key derivation and the
 * versioned envelope stored in Redis. No I/O.
 *
 * Keys: <prefix><kind>:{<tag>}:<account>:<service>:[<family>:]<name>, where
 * name is an identity or a user SID (raw, last, so it may hold any byte) and
 * tag is entry_tag(account, service, name). Kinds:
 *   u  user entry, per family (a 404 for a SID is an entry named by the SID)
 *   v  the name's version: a random value replaced by every invalidation;
 *      entries carry the version they were stored under and are valid only
 *      while it is current (cache.c)
 *   h  a hold: while it exists the name is uncacheable (unknown-outcome writes)
 *   l  the cross-instance fetch lock, per family
 *   a  SID alias (named by the SID): SID -> identity
 * All keys of one name share its tag, hence one Redis Cluster slot; a SID's
 * alias lives in the SID's slot. Identities can never match the SID pattern
 * (Twilio 50206), so the two kinds of names never collide. */
#ifndef USERGATE_ENTRY_H
#define USERGATE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"
#include "util.h"

enum entry_key_kind {
    EK_ENTRY = 'u',
    EK_VERSION = 'v',
    EK_HOLD = 'h',
    EK_LOCK = 'l',
    EK_ALIAS = 'a',
};
#define ENTRY_TAG_LEN 16
/* The hash tag of a name (16 hex digits). */
void entry_tag(char out[ENTRY_TAG_LEN + 1], const char *account, const char *service,
               const char *name, size_t name_len);
/* The key of kind for name (out is reset first); family -1 for kinds that
 * are not per family (v, h, a). */
void entry_key(struct buf *out, const char *prefix, enum entry_key_kind kind, const char *account,
               const char *service, int family, const char *name, size_t name_len);
/* The same appended to out, with the name's tag already computed (the keys
 * of one lookup share it). */
void entry_key_append(struct buf *out, const char *prefix, enum entry_key_kind kind,
                      const char tag[ENTRY_TAG_LEN + 1], const char *account, const char *service,
                      int family, const char *name, size_t name_len);
/* Pattern matching every key of one service, of every kind (for SCAN MATCH
 * in purges); glob metacharacters in prefix are escaped. */
void entry_service_pattern(struct buf *out, const char *prefix, const char *account,
                           const char *service);

/* Longest version value an envelope carries. */
#define ENTRY_VER_MAX 32

#define ENTRY_VERSION 2

struct entry {
    int status;             /* 200 or 404 */
    int64_t stored_ms;      /* wall clock */
    int64_t fresh_until_ms; /* wall clock */
    const char *ver;        /* the name's version when stored ("" for SID negatives) */
    size_t ver_len;
    const char *sid; /* user SID ("" for negative entries) */
    size_t sid_len;
    const char *identity; /* identity ("" when unknown) */
    size_t identity_len;
    const char *body; /* upstream body bytes, as received */
    size_t body_len;
};

/* Encode e into out (reset first). Format:
 * "UG<version> <status> <stored_ms> <fresh_until_ms> <ver_len> <sid_len> <identity_len>
 * <body_len>\n" followed by ver, sid, identity and body bytes. */
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

/* signature: Twilio's request signing (X-Twilio-Signature), as pure
 * functions. Twilio signs a webhook with HMAC-SHA1 keyed by the account's
 * auth token over the URL it called (scheme, host, port, path and query)
 * followed, for a form body, by every POST parameter as name then value with
 * no separator, sorted by name (byte order; equal names by value); the
 * base64 digest is the header. A body that is not a form (JSON: Event
 * Streams, newer webhooks) is not appended: Twilio puts its lower-hex
 * SHA-256 in the URL's bodySHA256 query parameter instead, and the receiver
 * checks both. Twilio's helper libraries accept the URL with and without
 * the scheme's default port, as Twilio has signed both ways; so does this. */
#ifndef USERGATE_SIGNATURE_H
#define USERGATE_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>

#include "twilio.h"
#include "util.h"

#define SIGNATURE_LEN 28 /* base64 of a 20-byte digest */
#define SIGNATURE_SHA256_HEX 64

/* base64(HMAC-SHA1(key, data)), NUL-terminated. */
void signature_hmac_sha1_b64(const char *key, size_t key_len, const char *data, size_t len,
                             char out[SIGNATURE_LEN + 1]);
/* Lower-hex SHA-256 of data, NUL-terminated. */
void signature_sha256_hex(const char *data, size_t len, char out[SIGNATURE_SHA256_HEX + 1]);

/* The string Twilio signs: url, then each field of params (may be NULL) as
 * name + value, sorted by name then value. */
void signature_string(struct buf *out, const char *url, size_t url_len, const struct form *params);

/* url with the scheme's default port (443 for https, 80 for http) added when
 * it names none, or with its port removed when it names one: the other way
 * Twilio may have signed it. false when url is not http(s)://host… */
bool signature_url_other_port(const char *url, size_t len, struct buf *out);

/* The value of bodySHA256 in url's query, or NULL (*len set when found). */
const char *signature_body_hash_param(const char *url, size_t url_len, size_t *len);

enum signature_result {
    SIGNATURE_OK = 0,
    SIGNATURE_MISSING,       /* no (or an empty) X-Twilio-Signature */
    SIGNATURE_MISMATCH,      /* computed under neither port form */
    SIGNATURE_BODY_MISMATCH, /* bodySHA256 is not the body's hash */
    SIGNATURE_BODY_UNSIGNED, /* a JSON body without bodySHA256: nothing covers it */
};
/* Check header against a request Twilio made to url. When url's query has
 * bodySHA256 the body must hash to it and the URL alone is signed; else a
 * JSON body (json true) is refused, and a form body's params are appended.
 * Every comparison takes constant time. */
enum signature_result signature_check(const char *token, size_t token_len, const char *url,
                                      size_t url_len, const struct form *params, const char *body,
                                      size_t body_len, bool json, const char *header);
const char *signature_result_name(enum signature_result r);

#endif

/* signature: Twilio's request signing, pure (see signature.h). OpenSSL's
 * libcrypto does the hashing; the rest is Twilio's published rules. */
#include "signature.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void signature_hmac_sha1_b64(const char *key, size_t key_len, const char *data, size_t len,
                             char out[SIGNATURE_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    static const char empty = '\0';
    if (!HMAC(EVP_sha1(), key_len ? key : &empty, (int)key_len,
              len ? (const unsigned char *)data : (const unsigned char *)&empty, len, md, &md_len))
        md_len = 0;
    if (md_len != 20) {
        out[0] = '\0';
        return;
    }
    EVP_EncodeBlock((unsigned char *)out, md, 20);
    out[SIGNATURE_LEN] = '\0';
}

void signature_sha256_hex(const char *data, size_t len, char out[SIGNATURE_SHA256_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    static const char hex[] = "0123456789abcdef";
    if (!EVP_Digest(len ? data : "", len, md, &md_len, EVP_sha256(), NULL) || md_len != 32) {
        out[0] = '\0';
        return;
    }
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SIGNATURE_SHA256_HEX] = '\0';
}

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_field(const void *x, const void *y)
{
    const struct form_field *a = *(const struct form_field *const *)x;
    const struct form_field *b = *(const struct form_field *const *)y;
    int c = strcmp(a->name, b->name);
    return c ? c : cmp_bytes(a->value, a->value_len, b->value, b->value_len);
}

void signature_string(struct buf *out, const char *url, size_t url_len, const struct form *params)
{
    buf_append(out, url, url_len);
    if (!params || !params->n)
        return;
    const struct form_field **sorted = util_calloc(params->n, sizeof *sorted);
    for (size_t i = 0; i < params->n; i++)
        sorted[i] = &params->fields[i];
    qsort(sorted, params->n, sizeof *sorted, cmp_field);
    for (size_t i = 0; i < params->n; i++) {
        buf_puts(out, sorted[i]->name);
        buf_append(out, sorted[i]->value, sorted[i]->value_len);
    }
    free(sorted);
}

bool signature_url_other_port(const char *url, size_t len, struct buf *out)
{
    const char *def;
    size_t skip;
    if (len >= 8 && strncasecmp(url, "https://", 8) == 0) {
        def = ":443";
        skip = 8;
    } else if (len >= 7 && strncasecmp(url, "http://", 7) == 0) {
        def = ":80";
        skip = 7;
    } else {
        return false;
    }
    /* The authority ends at the first '/', '?' or '#'. */
    size_t end = skip;
    while (end < len && url[end] != '/' && url[end] != '?' && url[end] != '#')
        end++;
    if (end == skip)
        return false;
    /* Its port: digits after the last ':' outside an IPv6 literal. */
    size_t host_end = end;
    for (size_t i = end; i > skip; i--) {
        char ch = url[i - 1];
        if (ch == ']' || ch == '@')
            break;
        if (ch == ':') {
            host_end = i - 1;
            break;
        }
    }
    buf_append(out, url, host_end);
    if (host_end == end)
        buf_puts(out, def);
    buf_append(out, url + end, len - end);
    return true;
}

const char *signature_body_hash_param(const char *url, size_t url_len, size_t *len)
{
    const char *q = memchr(url, '?', url_len);
    if (!q)
        return NULL;
    const char *p = q + 1, *end = url + url_len;
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash)
        end = hash;
    static const char name[] = "bodySHA256=";
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) >= sizeof name - 1 && memcmp(p, name, sizeof name - 1) == 0) {
            *len = (size_t)(stop - p) - (sizeof name - 1);
            return p + sizeof name - 1;
        }
        p = stop + 1;
    }
    return NULL;
}

static bool signed_as(const char *token, size_t token_len, const struct buf *s, const char *header,
                      size_t header_len)
{
    char sig[SIGNATURE_LEN + 1];
    signature_hmac_sha1_b64(token, token_len, s->data, s->len, sig);
    return sig[0] && util_ct_equal(sig, strlen(sig), header, header_len);
}

enum signature_result signature_check(const char *token, size_t token_len, const char *url,
                                      size_t url_len, const struct form *params, const char *body,
                                      size_t body_len, bool json, const char *header)
{
    if (!header || !header[0])
        return SIGNATURE_MISSING;
    size_t header_len = strlen(header);
    size_t hash_len = 0;
    const char *hash = signature_body_hash_param(url, url_len, &hash_len);
    if (hash) {
        char want[SIGNATURE_SHA256_HEX + 1];
        signature_sha256_hex(body, body_len, want);
        if (!util_ct_equal(want, strlen(want), hash, hash_len))
            return SIGNATURE_BODY_MISMATCH;
        params = NULL; /* the hash covers the body */
    } else if (json) {
        return SIGNATURE_BODY_UNSIGNED;
    }
    struct buf s = {0}, other_url = {0}, other = {0};
    signature_string(&s, url, url_len, params);
    bool ok = signed_as(token, token_len, &s, header, header_len);
    /* Always both forms, so the time taken says nothing of which matched. */
    if (signature_url_other_port(url, url_len, &other_url)) {
        signature_string(&other, other_url.data, other_url.len, params);
        ok = signed_as(token, token_len, &other, header, header_len) || ok;
    }
    buf_free(&s);
    buf_free(&other_url);
    buf_free(&other);
    return ok ? SIGNATURE_OK : SIGNATURE_MISMATCH;
}

const char *signature_result_name(enum signature_result r)
{
    switch (r) {
    case SIGNATURE_OK:
        return "ok";
    case SIGNATURE_MISSING:
        return "missing";
    case SIGNATURE_MISMATCH:
        return "mismatch";
    case SIGNATURE_BODY_MISMATCH:
        return "body_mismatch";
    case SIGNATURE_BODY_UNSIGNED:
        return "body_unsigned";
    }
    return "?";
}

/* libFuzzer: what the webhook receiver reads from a request, after and
 * before authentication. Input: a mode byte, then URL '\n' body.
 *   - events: a form or a JSON body becomes events whose user fields are
 *     clean (identity by Twilio's rules, canonical SIDs, a safe type label);
 *   - signatures: a request signed the way Twilio signs verifies, under
 *     either port form of its URL, and the same request with one byte of
 *     the signature, the body or the URL changed does not. */
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "fuzz.h"
#include "signature.h"
#include "twilio.h"

#define TOKEN "fuzz-token-0123456789"

static void check_events(const struct events *ev)
{
    for (size_t i = 0; i < ev->n; i++) {
        const struct event *e = &ev->v[i];
        FUZZ_CHECK(e->type[0] != '\0');
        for (const char *p = e->type; *p; p++)
            FUZZ_CHECK(
                strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", *p));
        if (e->kind != EVENT_USER_ADDED && e->kind != EVENT_USER_UPDATED &&
            e->kind != EVENT_USER_REMOVED)
            continue;
        FUZZ_CHECK(e->identity_len || e->user_sid[0]);
        char err[128];
        if (e->identity_len)
            FUZZ_CHECK(twilio_validate_identity(e->identity, e->identity_len, err, sizeof err) ==
                       0);
        const char *sids[] = {e->account, e->service, e->user_sid};
        const char *prefix[] = {"AC", "IS", "US"};
        for (int k = 0; k < 3; k++) {
            if (!sids[k][0])
                continue;
            FUZZ_CHECK(twilio_is_sid(sids[k], strlen(sids[k]), prefix[k]));
            for (const char *p = sids[k] + 2; *p; p++)
                FUZZ_CHECK(!(*p >= 'A' && *p <= 'F'));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool json = data[0] & 1;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(in, '\n', n);
    size_t url_len = nl ? (size_t)(nl - in) : n;
    const char *body = nl ? nl + 1 : in + n;
    size_t body_len = nl ? n - url_len - 1 : 0;
    struct buf url = {0};
    buf_append(&url, in, url_len);

    struct events ev = {0};
    struct form f = {0};
    char err[256];
    bool form_ok = false;
    if (json) {
        if (events_from_json(body, body_len, &ev, err, sizeof err) == 0)
            check_events(&ev);
        else
            FUZZ_CHECK(ev.n == 0 && err[0]);
    } else if (form_parse(body, body_len, &f, err, sizeof err) == 0) {
        form_ok = true;
        events_from_form(&f, &ev);
        FUZZ_CHECK(ev.n == 1);
        check_events(&ev);
    }
    events_free(&ev);

    /* Sign as Twilio does, then verify. */
    struct buf signed_url = {0};
    buf_append(&signed_url, url.data, url.len);
    size_t hl;
    bool has_hash = signature_body_hash_param(url.data, url.len, &hl) != NULL;
    if (json && !has_hash) {
        char hex[SIGNATURE_SHA256_HEX + 1];
        signature_sha256_hex(body, body_len, hex);
        buf_puts(&signed_url, memchr(url.data, '?', url.len) ? "&bodySHA256=" : "?bodySHA256=");
        buf_puts(&signed_url, hex);
    }
    if (!has_hash && (json || form_ok) && !memchr(signed_url.data, '#', signed_url.len)) {
        struct buf s = {0};
        signature_string(&s, signed_url.data, signed_url.len, json ? NULL : &f);
        char sig[SIGNATURE_LEN + 1];
        signature_hmac_sha1_b64(TOKEN, strlen(TOKEN), s.data, s.len, sig);
        FUZZ_CHECK(strlen(sig) == SIGNATURE_LEN);
        const struct form *params = json ? NULL : &f;
        FUZZ_CHECK(signature_check(TOKEN, strlen(TOKEN), signed_url.data, signed_url.len, params,
                                   body, body_len, json, sig) == SIGNATURE_OK);
        /* Twilio may have signed the other port form (no port, or the
         * scheme's default one): whichever usergate sees, it verifies. */
        struct buf other = {0}, back = {0};
        if (signature_url_other_port(signed_url.data, signed_url.len, &other) &&
            signature_url_other_port(other.data, other.len, &back) && back.len == signed_url.len &&
            memcmp(back.data, signed_url.data, back.len) == 0)
            FUZZ_CHECK(signature_check(TOKEN, strlen(TOKEN), other.data, other.len, params, body,
                                       body_len, json, sig) == SIGNATURE_OK);
        buf_free(&other);
        buf_free(&back);
        char bad[SIGNATURE_LEN + 1];
        memcpy(bad, sig, sizeof bad);
        bad[body_len % SIGNATURE_LEN] = bad[body_len % SIGNATURE_LEN] == 'A' ? 'B' : 'A';
        FUZZ_CHECK(signature_check(TOKEN, strlen(TOKEN), signed_url.data, signed_url.len, params,
                                   body, body_len, json, bad) != SIGNATURE_OK);
        if (json && body_len) {
            /* any change to the body breaks a JSON request */
            char *b2 = malloc(body_len);
            memcpy(b2, body, body_len);
            b2[0] ^= 1;
            FUZZ_CHECK(signature_check(TOKEN, strlen(TOKEN), signed_url.data, signed_url.len, NULL,
                                       b2, body_len, true, sig) == SIGNATURE_BODY_MISMATCH);
            free(b2);
        }
        buf_free(&s);
    }
    buf_free(&signed_url);
    buf_free(&url);
    form_free(&f);
    return 0;
}

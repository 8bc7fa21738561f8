/* links: rewrite absolute Twilio URLs in JSON bodies to the gateway's
 * public_url. A scanner, not a parser round trip: every byte outside the
 * rewritten prefixes stays as Twilio sent it (field order, spacing, escapes),
 * so cached bodies and passthrough bodies look the same to clients. */
#include "links.h"

#include <string.h>

/* Does the JSON string content s[0..n) start with base, allowing "\/" for '/'
 * (JSON's optional escape), followed by a path, a query or the string's end?
 * On a match *used is the number of content bytes the base took. */
static bool match_base(const char *s, size_t n, const char *base, size_t *used)
{
    size_t i = 0;
    for (const char *b = base; *b; b++) {
        if (*b == '/' && i + 1 < n && s[i] == '\\' && s[i + 1] == '/')
            i += 2;
        else if (i < n && s[i] == *b)
            i++;
        else
            return false;
    }
    /* "https://conversations.twilio.com.evil" is another host. */
    if (i < n && s[i] != '/' && s[i] != '?' && !(s[i] == '\\' && i + 1 < n && s[i + 1] == '/'))
        return false;
    *used = i;
    return true;
}

bool links_rewrite(const char *body, size_t len, const char *const *bases, const char *public_url,
                   struct buf *out)
{
    if (!body || !public_url || !*public_url || len == 0 || (body[0] != '{' && body[0] != '['))
        return false;
    size_t plen = strlen(public_url);
    while (plen && public_url[plen - 1] == '/')
        plen--;
    bool changed = false;
    size_t copied = 0; /* body[0..copied) is already in out (once changed) */
    for (size_t i = 0; i < len; i++) {
        if (body[i] != '"')
            continue;
        size_t start = ++i;
        while (i < len && body[i] != '"')
            i += body[i] == '\\' ? 2 : 1;
        if (i >= len)
            break; /* unterminated string: not JSON, leave it alone */
        for (const char *const *b = bases; *b; b++) {
            size_t used;
            if (!**b || !match_base(body + start, i - start, *b, &used))
                continue;
            if (!changed) {
                buf_reserve(out, len + 64);
                changed = true;
            }
            buf_append(out, body + copied, start - copied);
            for (size_t k = 0; k < plen; k++) {
                if (public_url[k] == '"' || public_url[k] == '\\')
                    buf_append(out, "\\", 1);
                buf_append(out, public_url + k, 1);
            }
            copied = start + used;
            break;
        }
    }
    if (changed)
        buf_append(out, body + copied, len - copied);
    return changed;
}

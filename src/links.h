/* links: rewriting the absolute Twilio URLs in response bodies (url, links.*,
 * meta.*_page_url) to the gateway's public_url, so clients following a link or
 * next_page_url stay behind usergate. Pure; no I/O. */
#ifndef USERGATE_LINKS_H
#define USERGATE_LINKS_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

/* Rewrite every JSON string value that starts with one of the upstream bases
 * (e.g. "https://conversations.twilio.com") so it starts with public_url
 * instead. bases is a NULL-terminated list. Appends the result to out and
 * returns true if anything changed; false (out untouched) if nothing matched
 * or the body is not JSON. */
bool links_rewrite(const char *body, size_t len, const char *const *bases, const char *public_url,
                   struct buf *out);

#endif

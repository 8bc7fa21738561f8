/* webhook: the receiver of Twilio's own events (post-action webhooks of
 * Conversations and Chat, Event Streams deliveries to a webhook sink). A
 * request to [webhooks] path on the client listener is authenticated by its
 * X-Twilio-Signature (signature.c) instead of Basic auth, read into events
 * (events.c), and every user event invalidates that user through the same
 * cache_invalidate a write uses. It answers 200 only once every invalidation
 * is in Redis or in the retry queue, else 503 so Twilio delivers again;
 * invalidation is idempotent, so duplicates and reordering are harmless. */
#ifndef USERGATE_WEBHOOK_H
#define USERGATE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

struct config;
struct request;

/* Whether a request-target (path, maybe "?query") is the webhook receiver's. */
bool webhook_match(const struct config *cfg, const char *target, size_t len);
/* Take over a request webhook_match accepted; it ends with exactly one
 * response_* call (possibly before this returns). */
void webhook_handle(struct request *req);

/* usergate_webhook_events_total{source,type,result}: shared by every worker,
 * behind a mutex (events are rare next to requests). The type label is the
 * event type as sent; past a fixed number of distinct rows, "other". */
struct webhook_stats;
struct webhook_stats *webhook_stats_new(void);
void webhook_stats_free(struct webhook_stats *s);
/* One sample line per row, for metrics_render. */
void webhook_stats_render(struct webhook_stats *s, struct buf *out, const char *metric);

#endif

/* local: the in-process tier in front of Redis, as a pure data structure: a
 * bounded map from byte keys to byte values with LRU eviction and a
 * monotonic expiry per item, plus an index by a 64-bit tag so every item of
 * one user can be evicted at once. One per worker, used from that worker's
 * thread only (no locks). cache.c decides what goes in and keeps it
 * coherent (Redis pub/sub); this file only stores. */
#ifndef USERGATE_LOCAL_H
#define USERGATE_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct local;

/* max_items >= 1. */
struct local *local_new(size_t max_items);
void local_free(struct local *l);

/* The value under key, or NULL (absent, or expired at now_ms: then removed).
 * A hit becomes the most recently used. The pointer is valid until the next
 * call that changes l. */
const char *local_get(struct local *l, const char *key, size_t key_len, int64_t now_ms,
                      size_t *val_len);
/* Insert or replace; evicts the least recently used item when full. tag 0:
 * not evictable by tag. */
void local_put(struct local *l, const char *key, size_t key_len, uint64_t tag, const char *val,
               size_t val_len, int64_t expires_ms);
/* Evict the item under key (if any). */
void local_remove(struct local *l, const char *key, size_t key_len);
/* Evict every item with this tag; returns how many. */
size_t local_evict_tag(struct local *l, uint64_t tag);
/* Evict every item whose key starts with prefix; returns how many. */
size_t local_evict_prefix(struct local *l, const char *prefix, size_t prefix_len);
void local_flush(struct local *l);
size_t local_count(const struct local *l);
/* Bumped by every eviction by tag or prefix and every flush: a lookup that
 * saw one value and finds another when its Redis answer comes back may have
 * read from before an invalidation, so it must not fill the tier. */
uint64_t local_epoch(const struct local *l);

#endif

/* local: a bounded LRU map with expiry and a tag index (see local.h). Items
 * are single allocations (header, key, value); two chained hash tables index
 * them by key and by tag; a doubly linked list keeps the use order. */
#include "local.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct item {
    struct item *key_next, *tag_next; /* hash chains */
    struct item *prev, *next;         /* use order: head = most recent */
    uint64_t hash, tag;
    int64_t expires_ms;
    size_t key_len, val_len;
    char data[]; /* key, then value */
};

struct local {
    size_t max, n, nbuckets; /* nbuckets: a power of two >= max */
    struct item **by_key, **by_tag;
    struct item *head, *tail;
    uint64_t epoch;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = util_fnv1a(p, n);
    return h ^ (h >> 29); /* low bits pick the bucket */
}

struct local *local_new(size_t max_items)
{
    struct local *l = util_calloc(1, sizeof *l);
    l->max = max_items ? max_items : 1;
    l->nbuckets = 16;
    while (l->nbuckets < l->max)
        l->nbuckets <<= 1;
    l->by_key = util_calloc(l->nbuckets, sizeof *l->by_key);
    l->by_tag = util_calloc(l->nbuckets, sizeof *l->by_tag);
    return l;
}

static void list_unlink(struct local *l, struct item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        l->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l->tail = it->prev;
    it->prev = it->next = NULL;
}

static void list_push_front(struct local *l, struct item *it)
{
    it->prev = NULL;
    it->next = l->head;
    if (l->head)
        l->head->prev = it;
    l->head = it;
    if (!l->tail)
        l->tail = it;
}

static void chain_remove(struct item **slot, struct item *it, bool tag_chain)
{
    for (struct item **pp = slot; *pp; pp = tag_chain ? &(*pp)->tag_next : &(*pp)->key_next)
        if (*pp == it) {
            *pp = tag_chain ? it->tag_next : it->key_next;
            return;
        }
}

static void item_remove(struct local *l, struct item *it)
{
    chain_remove(&l->by_key[it->hash & (l->nbuckets - 1)], it, false);
    if (it->tag)
        chain_remove(&l->by_tag[it->tag & (l->nbuckets - 1)], it, true);
    list_unlink(l, it);
    l->n--;
    free(it);
}

static struct item *find(struct local *l, const char *key, size_t key_len, uint64_t h)
{
    for (struct item *it = l->by_key[h & (l->nbuckets - 1)]; it; it = it->key_next)
        if (it->hash == h && it->key_len == key_len && memcmp(it->data, key, key_len) == 0)
            return it;
    return NULL;
}

const char *local_get(struct local *l, const char *key, size_t key_len, int64_t now_ms,
                      size_t *val_len)
{
    struct item *it = find(l, key, key_len, hash_bytes(key, key_len));
    if (!it)
        return NULL;
    if (now_ms >= it->expires_ms) {
        item_remove(l, it);
        return NULL;
    }
    if (l->head != it) {
        list_unlink(l, it);
        list_push_front(l, it);
    }
    *val_len = it->val_len;
    return it->data + it->key_len;
}

void local_put(struct local *l, const char *key, size_t key_len, uint64_t tag, const char *val,
               size_t val_len, int64_t expires_ms)
{
    uint64_t h = hash_bytes(key, key_len);
    struct item *old = find(l, key, key_len, h);
    if (old)
        item_remove(l, old);
    while (l->n >= l->max && l->tail)
        item_remove(l, l->tail);
    struct item *it = malloc(sizeof *it + key_len + val_len);
    if (!it)
        abort();
    memset(it, 0, sizeof *it);
    it->hash = h;
    it->tag = tag;
    it->expires_ms = expires_ms;
    it->key_len = key_len;
    it->val_len = val_len;
    memcpy(it->data, key, key_len);
    if (val_len)
        memcpy(it->data + key_len, val, val_len);
    struct item **ks = &l->by_key[h & (l->nbuckets - 1)];
    it->key_next = *ks;
    *ks = it;
    if (tag) {
        struct item **ts = &l->by_tag[tag & (l->nbuckets - 1)];
        it->tag_next = *ts;
        *ts = it;
    }
    list_push_front(l, it);
    l->n++;
}

void local_remove(struct local *l, const char *key, size_t key_len)
{
    l->epoch++;
    struct item *it = find(l, key, key_len, hash_bytes(key, key_len));
    if (it)
        item_remove(l, it);
}

size_t local_evict_tag(struct local *l, uint64_t tag)
{
    l->epoch++;
    size_t n = 0;
    if (!tag)
        return 0;
    struct item **pp = &l->by_tag[tag & (l->nbuckets - 1)];
    while (*pp) {
        struct item *it = *pp;
        if (it->tag != tag) {
            pp = &it->tag_next;
            continue;
        }
        *pp = it->tag_next; /* unlinked here; item_remove must not look for it */
        it->tag = 0;
        item_remove(l, it);
        n++;
    }
    return n;
}

size_t local_evict_prefix(struct local *l, const char *prefix, size_t prefix_len)
{
    l->epoch++;
    size_t n = 0;
    for (struct item *it = l->head, *next; it; it = next) {
        next = it->next;
        if (it->key_len >= prefix_len && memcmp(it->data, prefix, prefix_len) == 0) {
            item_remove(l, it);
            n++;
        }
    }
    return n;
}

void local_flush(struct local *l)
{
    l->epoch++;
    while (l->head)
        item_remove(l, l->head);
}

size_t local_count(const struct local *l)
{
    return l->n;
}

uint64_t local_epoch(const struct local *l)
{
    return l->epoch;
}

void local_free(struct local *l)
{
    if (!l)
        return;
    local_flush(l);
    free(l->by_key);
    free(l->by_tag);
    free(l);
}

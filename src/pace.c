/* pace: GCRA per key in a small fixed table; see pace.h. */
#include "pace.h"

#include <stdio.h>
#include <string.h>

static void lock(struct pace_table *t)
{
    while (__atomic_test_and_set(&t->busy, __ATOMIC_ACQUIRE))
        ;
}

static void unlock(struct pace_table *t)
{
    __atomic_clear(&t->busy, __ATOMIC_RELEASE);
}

/* The key's slot, or the one to take over: empty, else the quietest. */
static struct pace_slot *find(struct pace_table *t, const char *key)
{
    struct pace_slot *victim = &t->slots[0];
    for (int i = 0; i < PACE_SLOTS; i++) {
        struct pace_slot *s = &t->slots[i];
        if (strcmp(s->key, key) == 0 && s->key[0])
            return s;
        if (victim->key[0] && (!s->key[0] || s->tat_us < victim->tat_us))
            victim = s;
    }
    snprintf(victim->key, sizeof victim->key, "%s", key);
    victim->tat_us = 0;
    return victim;
}

int64_t pace_reserve(struct pace_table *t, const char *key, long per_second, int64_t now_us,
                     int64_t max_wait_us, long *retry_after_s)
{
    if (per_second < 1)
        per_second = 1;
    int64_t interval = 1000000 / per_second;
    lock(t);
    struct pace_slot *s = find(t, key);
    int64_t tat = s->tat_us > now_us ? s->tat_us : now_us;
    int64_t wait = tat - now_us;
    if (wait > max_wait_us) {
        unlock(t);
        long secs = (long)((wait + 999999) / 1000000);
        *retry_after_s = secs < 1 ? 1 : secs;
        return -1;
    }
    s->tat_us = tat + interval;
    unlock(t);
    return wait;
}

/* pace: per-key rate limiting as a pure, thread-safe function, for pacing
 * user writes per Twilio service (Twilio allows about 30 per second per
 * service). GCRA (the generic cell rate algorithm) without burst tolerance:
 * one "theoretical arrival time" per key, and callers that reserve a future
 * send time get distinct ones 1/rate apart, so waiting writes leave in order
 * and no one-second window ever holds more than rate (+1 at its edges). A
 * burst allowance would let 2 x rate through in the first second: exactly
 * what Twilio's per-service limit refuses. */
#ifndef USERGATE_PACE_H
#define USERGATE_PACE_H

#include <stdint.h>

#define PACE_SLOTS 128
#define PACE_KEY_MAX 40

struct pace_slot {
    char key[PACE_KEY_MAX];
    int64_t tat_us; /* when the next send would be on schedule */
};

/* Zero-initialised is an empty table. Keys beyond PACE_SLOTS busy ones
 * evict the one that went quiet first (its schedule is the oldest). */
struct pace_table {
    int busy; /* spinlock: the critical section is a few instructions */
    struct pace_slot slots[PACE_SLOTS];
};

/* Reserve the next send for key (at most PACE_KEY_MAX-1 bytes) at now_us,
 * paced at per_second. Returns the wait in
 * microseconds (0 = go now), or -1 when the wait would exceed max_wait_us:
 * nothing is reserved then, and *retry_after_s (>= 1) says when to come back. */
int64_t pace_reserve(struct pace_table *t, const char *key, long per_second, int64_t now_us,
                     int64_t max_wait_us, long *retry_after_s);

#endif

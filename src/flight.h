/* flight: the single-flight state machine as a pure function — one upstream
 * fetch of one user, shared by every request whose lookup saw the same
 * coherence stamp (cache.h), optionally coordinated with other instances by
 * a lock in Redis. No I/O here: router.c feeds events in and carries out
 * the action that comes back, so every transition can be read in one table
 * (flight.c) and unit-tested without a network.
 *
 * Who may join: a foreground request whose lookup saw an equal stamp, while
 * the flight is in the table (router.c keys the table by user and stamp and
 * never lets a request join a background refresh). A request that looked
 * up after a write saw a new version, so it never joins a fetch that began
 * before the write.
 * Who answers waiters: FA_ANSWER_CACHE (another fetch filled the cache) or
 * FA_ANSWER_FETCH (our fetch finished); each exactly once, then FA_FREE.
 * Who frees: whoever gets FA_FREE. While a Redis call (lock, poll) or the
 * fetch is outstanding, only its completion event can free the flight. */
#ifndef USERGATE_FLIGHT_H
#define USERGATE_FLIGHT_H

#include <stdbool.h>
#include <stdint.h>

enum flight_state {
    FS_NEW = 0,  /* created, nothing started */
    FS_LOCKING,  /* SET NX of the lock sent */
    FS_WAITING,  /* another holds the lock: polling the cache */
    FS_POLLING,  /* a poll (cache lookup) sent */
    FS_FETCHING, /* upstream request in flight */
    FS_DONE,     /* waiters answered or gone: free it */
    FS_COUNT
};

enum flight_event {
    FE_START = 0,
    FE_LOCK_ACQUIRED,
    FE_LOCK_HELD,
    FE_LOCK_ERROR,
    FE_POLL_TIMER, /* time to look at the cache again */
    FE_POLL_FOUND, /* the holder's answer is there */
    FE_POLL_ABSENT,
    FE_POLL_ERROR,
    FE_FETCH_DONE, /* with the upstream answer, or cancelled */
    FE_WAITER_LEFT,
    FE_COUNT
};

enum flight_action {
    FA_NONE = 0,
    FA_TRY_LOCK,     /* send SET NX PX */
    FA_FETCH,        /* start the upstream request */
    FA_ARM_POLL,     /* start the poll timer (poll_ms) */
    FA_POLL,         /* send a cache lookup */
    FA_ANSWER_CACHE, /* answer every waiter from the entry just found; then free */
    FA_ANSWER_FETCH, /* store and answer every waiter from the fetch; then free */
    FA_CANCEL_FETCH, /* nobody waits any more: cancel; FE_FETCH_DONE follows */
    FA_FREE,         /* release the lock if held, free */
};

/* The knobs a flight runs with. */
struct flight_policy {
    bool use_lock;        /* lock_timeout_ms > 0 and the answer will be stored */
    int64_t lock_wait_ms; /* how long to wait for another holder (lock_timeout_ms) */
    int max_waiting;      /* flights of this worker allowed in FS_WAITING/FS_POLLING */
    long poll_min_ms, poll_max_ms;
};

struct flight_sm {
    enum flight_state state;
    bool background; /* a stale-while-revalidate refresh: nobody waits */
    int waiters;     /* requests waiting for the answer */
    bool locked;     /* we hold the Redis lock (FA_FREE releases it) */
    int64_t wait_until_ms;
    long poll_ms;
    int *waiting; /* the worker's count of flights waiting on a lock */
};

/* Feed one event at now_ms; the state changes and the one action to carry
 * out comes back. Events that cannot happen in a state are ignored
 * (FA_NONE). */
enum flight_action flight_step(struct flight_sm *f, enum flight_event ev, int64_t now_ms,
                               const struct flight_policy *pol);

/* True when nobody can use the answer: a foreground flight whose waiters
 * all left. */
bool flight_abandoned(const struct flight_sm *f);

const char *flight_state_name(enum flight_state s);
const char *flight_event_name(enum flight_event e);
const char *flight_action_name(enum flight_action a);

#endif

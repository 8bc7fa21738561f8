/* flight: the single-flight state table (see flight.h). Each case below is
 * one row: the state an event is accepted in, the state it leads to and the
 * action it asks for. Anything else is ignored. */
#include "flight.h"

#include <stddef.h>

static bool waiting_state(enum flight_state s)
{
    return s == FS_WAITING || s == FS_POLLING;
}

/* Keeps the worker's count of flights waiting on another's lock. */
static void set_state(struct flight_sm *f, enum flight_state s)
{
    if (f->waiting && waiting_state(f->state) && !waiting_state(s))
        (*f->waiting)--;
    if (f->waiting && !waiting_state(f->state) && waiting_state(s))
        (*f->waiting)++;
    f->state = s;
}

static enum flight_action go(struct flight_sm *f, enum flight_state s, enum flight_action a)
{
    set_state(f, s);
    return a;
}

bool flight_abandoned(const struct flight_sm *f)
{
    return !f->background && f->waiters <= 0;
}

enum flight_action flight_step(struct flight_sm *f, enum flight_event ev, int64_t now_ms,
                               const struct flight_policy *pol)
{
    switch (ev) {
    case FE_START: /* NEW -> LOCKING (TRY_LOCK) | FETCHING (FETCH) */
        if (f->state != FS_NEW)
            return FA_NONE;
        return pol->use_lock ? go(f, FS_LOCKING, FA_TRY_LOCK) : go(f, FS_FETCHING, FA_FETCH);

    case FE_LOCK_ACQUIRED: /* LOCKING -> FETCHING (FETCH) | DONE (FREE: nobody waits) */
        if (f->state != FS_LOCKING)
            return FA_NONE;
        f->locked = true;
        return flight_abandoned(f) ? go(f, FS_DONE, FA_FREE) : go(f, FS_FETCHING, FA_FETCH);

    case FE_LOCK_ERROR: /* LOCKING -> FETCHING (fail open) | DONE */
        if (f->state != FS_LOCKING)
            return FA_NONE;
        return flight_abandoned(f) ? go(f, FS_DONE, FA_FREE) : go(f, FS_FETCHING, FA_FETCH);

    case FE_LOCK_HELD: /* LOCKING -> WAITING (ARM_POLL) | FETCHING (overflow, timeout) | DONE */
        if (f->state != FS_LOCKING)
            return FA_NONE;
        /* A background refresh that finds someone else at it has nothing
         * to do; it never has waiters, so it never leaves anyone hanging. */
        if (flight_abandoned(f) || f->background)
            return go(f, FS_DONE, FA_FREE);
        if (f->wait_until_ms == 0) {
            if (f->waiting && *f->waiting >= pol->max_waiting)
                return go(f, FS_FETCHING, FA_FETCH); /* too many already wait */
            f->wait_until_ms = now_ms + pol->lock_wait_ms;
            f->poll_ms = pol->poll_min_ms;
        } else {
            if (now_ms >= f->wait_until_ms)
                return go(f, FS_FETCHING, FA_FETCH); /* the holder is slow or stuck */
            long next = f->poll_ms * 3 / 2;
            f->poll_ms = next > pol->poll_max_ms ? pol->poll_max_ms : next;
        }
        return go(f, FS_WAITING, FA_ARM_POLL);

    case FE_POLL_TIMER: /* WAITING -> POLLING (POLL) | DONE */
        if (f->state != FS_WAITING)
            return FA_NONE;
        return flight_abandoned(f) ? go(f, FS_DONE, FA_FREE) : go(f, FS_POLLING, FA_POLL);

    case FE_POLL_FOUND: /* POLLING -> DONE (ANSWER_CACHE | FREE) */
        if (f->state != FS_POLLING)
            return FA_NONE;
        return go(f, FS_DONE, flight_abandoned(f) ? FA_FREE : FA_ANSWER_CACHE);

    case FE_POLL_ABSENT: /* POLLING -> LOCKING (TRY_LOCK: is the holder still at it?) | DONE */
        if (f->state != FS_POLLING)
            return FA_NONE;
        return flight_abandoned(f) ? go(f, FS_DONE, FA_FREE) : go(f, FS_LOCKING, FA_TRY_LOCK);

    case FE_POLL_ERROR: /* POLLING -> FETCHING (fail open) | DONE */
        if (f->state != FS_POLLING)
            return FA_NONE;
        return flight_abandoned(f) ? go(f, FS_DONE, FA_FREE) : go(f, FS_FETCHING, FA_FETCH);

    case FE_FETCH_DONE: /* FETCHING -> DONE (ANSWER_FETCH: store, answer whoever waits) */
        if (f->state != FS_FETCHING)
            return FA_NONE;
        return go(f, FS_DONE, FA_ANSWER_FETCH);

    case FE_WAITER_LEFT:
        if (f->waiters > 0)
            f->waiters--;
        if (!flight_abandoned(f))
            return FA_NONE;
        switch (f->state) {
        case FS_FETCHING:
            return FA_CANCEL_FETCH; /* FE_FETCH_DONE (cancelled) follows */
        case FS_NEW:
        case FS_WAITING: /* between polls: nothing is owed to us */
            return go(f, FS_DONE, FA_FREE);
        default: /* LOCKING, POLLING: the reply owed frees it */
            return FA_NONE;
        }

    case FE_COUNT:
        break;
    }
    return FA_NONE;
}

const char *flight_state_name(enum flight_state s)
{
    static const char *const n[FS_COUNT] = {"new",     "locking",  "waiting",
                                            "polling", "fetching", "done"};
    return (unsigned)s < FS_COUNT ? n[s] : "?";
}

const char *flight_event_name(enum flight_event e)
{
    static const char *const n[FE_COUNT] = {
        "start",      "lock_acquired", "lock_held",  "lock_error", "poll_timer",
        "poll_found", "poll_absent",   "poll_error", "fetch_done", "waiter_left"};
    return (unsigned)e < FE_COUNT ? n[e] : "?";
}

const char *flight_action_name(enum flight_action a)
{
    static const char *const n[] = {"none",         "try_lock",     "fetch",
                                    "arm_poll",     "poll",         "answer_cache",
                                    "answer_fetch", "cancel_fetch", "free"};
    return (unsigned)a < sizeof n / sizeof n[0] ? n[a] : "?";
}

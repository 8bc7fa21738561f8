/* Unit tests for flight: the single-flight state table, as scripts of
 * events with the state and action each must produce, plus an exhaustive
 * walk checking the invariants (a flight with waiters is always answered or
 * still working; nothing is freed while a reply is owed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "flight.h"
#include "util.h"

static const struct flight_policy LOCKED = {true, 1000, 2, 5, 100};
static const struct flight_policy UNLOCKED = {false, 1000, 2, 5, 100};

struct step {
    enum flight_event ev;
    int64_t now;
    int waiters_delta; /* applied before the event (a join) */
    enum flight_state state;
    enum flight_action action;
};

struct script {
    const char *name;
    const struct flight_policy *pol;
    bool background;
    int waiters;
    struct step steps[10];
};

#define S(ev, now, dw, st, act)                                                                    \
    {                                                                                              \
        ev, now, dw, st, act                                                                       \
    }
#define END                                                                                        \
    {                                                                                              \
        FE_COUNT, 0, 0, FS_COUNT, FA_NONE                                                          \
    }

static const struct script scripts[] = {
    {"no lock: fetch, answer",
     &UNLOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_FETCHING, FA_FETCH), S(FE_FETCH_DONE, 5, 0, FS_DONE, FA_ANSWER_FETCH),
      END}},
    {"lock acquired: fetch, answer",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_ACQUIRED, 1, 0, FS_FETCHING, FA_FETCH),
      S(FE_FETCH_DONE, 9, 0, FS_DONE, FA_ANSWER_FETCH), END}},
    {"lock error: fail open",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_ERROR, 1, 0, FS_FETCHING, FA_FETCH),
      END}},
    {"held: poll until the holder's answer lands",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_POLL_TIMER, 6, 0, FS_POLLING, FA_POLL), S(FE_POLL_ABSENT, 7, 0, FS_LOCKING, FA_TRY_LOCK),
      S(FE_LOCK_HELD, 8, 0, FS_WAITING, FA_ARM_POLL), S(FE_POLL_TIMER, 16, 0, FS_POLLING, FA_POLL),
      S(FE_POLL_FOUND, 17, 0, FS_DONE, FA_ANSWER_CACHE), END}},
    {"held: the holder gave up, take over",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_POLL_TIMER, 6, 0, FS_POLLING, FA_POLL), S(FE_POLL_ABSENT, 7, 0, FS_LOCKING, FA_TRY_LOCK),
      S(FE_LOCK_ACQUIRED, 8, 0, FS_FETCHING, FA_FETCH), END}},
    {"held too long: fetch anyway",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_POLL_TIMER, 990, 0, FS_POLLING, FA_POLL),
      S(FE_POLL_ABSENT, 995, 0, FS_LOCKING, FA_TRY_LOCK),
      S(FE_LOCK_HELD, 1001, 0, FS_FETCHING, FA_FETCH), END}},
    {"poll error: fail open",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_POLL_TIMER, 6, 0, FS_POLLING, FA_POLL), S(FE_POLL_ERROR, 7, 0, FS_FETCHING, FA_FETCH),
      END}},
    /* Defect 1 of issue 10: a background refresh that finds the lock held
     * must end, and never owes anyone an answer. */
    {"background refresh finds the lock held: done",
     &LOCKED,
     true,
     0,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_DONE, FA_FREE), END}},
    {"background refresh stores even with nobody waiting",
     &LOCKED,
     true,
     0,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_ACQUIRED, 1, 0, FS_FETCHING, FA_FETCH),
      S(FE_FETCH_DONE, 9, 0, FS_DONE, FA_ANSWER_FETCH), END}},
    {"last waiter leaves while fetching: cancel, then the cancelled answer frees",
     &UNLOCKED,
     false,
     2,
     {S(FE_START, 0, 0, FS_FETCHING, FA_FETCH), S(FE_WAITER_LEFT, 1, 0, FS_FETCHING, FA_NONE),
      S(FE_WAITER_LEFT, 2, 0, FS_FETCHING, FA_CANCEL_FETCH),
      S(FE_FETCH_DONE, 3, 0, FS_DONE, FA_ANSWER_FETCH), END}},
    {"last waiter leaves between polls: free at once",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_WAITER_LEFT, 2, 0, FS_DONE, FA_FREE), END}},
    /* Defect 1's use-after-free: leaving while a reply is owed must not
     * free; the reply does. */
    {"last waiter leaves while locking: the lock reply frees",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_WAITER_LEFT, 1, 0, FS_LOCKING, FA_NONE),
      S(FE_LOCK_HELD, 2, 0, FS_DONE, FA_FREE), END}},
    {"last waiter leaves while polling: the poll reply frees",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_LOCK_HELD, 1, 0, FS_WAITING, FA_ARM_POLL),
      S(FE_POLL_TIMER, 6, 0, FS_POLLING, FA_POLL), S(FE_WAITER_LEFT, 7, 0, FS_POLLING, FA_NONE),
      S(FE_POLL_FOUND, 8, 0, FS_DONE, FA_FREE), END}},
    {"acquired after everyone left: free (releases the lock)",
     &LOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK), S(FE_WAITER_LEFT, 1, 0, FS_LOCKING, FA_NONE),
      S(FE_LOCK_ACQUIRED, 2, 0, FS_DONE, FA_FREE), END}},
    {"a joiner keeps the flight alive",
     &UNLOCKED,
     false,
     1,
     {S(FE_START, 0, 0, FS_FETCHING, FA_FETCH), S(FE_WAITER_LEFT, 1, 1, FS_FETCHING, FA_NONE),
      S(FE_FETCH_DONE, 2, 0, FS_DONE, FA_ANSWER_FETCH), END}},
    {"events out of turn are ignored",
     &LOCKED,
     false,
     1,
     {S(FE_FETCH_DONE, 0, 0, FS_NEW, FA_NONE), S(FE_START, 0, 0, FS_LOCKING, FA_TRY_LOCK),
      S(FE_START, 0, 0, FS_LOCKING, FA_NONE), S(FE_POLL_FOUND, 0, 0, FS_LOCKING, FA_NONE),
      S(FE_POLL_TIMER, 0, 0, FS_LOCKING, FA_NONE), END}},
};

static void test_scripts(void **state)
{
    (void)state;
    for (size_t i = 0; i < UG_ARRAY_LEN(scripts); i++) {
        const struct script *s = &scripts[i];
        int waiting = 0;
        struct flight_sm f = {
            .background = s->background, .waiters = s->waiters, .waiting = &waiting};
        for (size_t k = 0; s->steps[k].ev != FE_COUNT; k++) {
            const struct step *st = &s->steps[k];
            f.waiters += st->waiters_delta;
            enum flight_action a = flight_step(&f, st->ev, st->now, s->pol);
            if (a != st->action || f.state != st->state)
                fail_msg("'%s' step %zu (%s): got %s/%s, want %s/%s", s->name, k,
                         flight_event_name(st->ev), flight_state_name(f.state),
                         flight_action_name(a), flight_state_name(st->state),
                         flight_action_name(st->action));
        }
        /* The worker's waiting count returns to 0 once the flight is done. */
        if (f.state == FS_DONE)
            assert_int_equal(waiting, 0);
    }
}

static void test_overflow_and_backoff(void **state)
{
    (void)state;
    int waiting = 2; /* == max_waiting: no more pollers */
    struct flight_sm f = {.waiters = 1, .waiting = &waiting};
    assert_int_equal(flight_step(&f, FE_START, 0, &LOCKED), FA_TRY_LOCK);
    assert_int_equal(flight_step(&f, FE_LOCK_HELD, 1, &LOCKED), FA_FETCH);
    assert_int_equal(f.state, FS_FETCHING);
    assert_int_equal(waiting, 2);

    waiting = 0;
    struct flight_sm g = {.waiters = 1, .waiting = &waiting};
    flight_step(&g, FE_START, 0, &LOCKED);
    long seen[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(flight_step(&g, FE_LOCK_HELD, 1 + i, &LOCKED), FA_ARM_POLL);
        assert_int_equal(waiting, 1);
        seen[i] = g.poll_ms;
        flight_step(&g, FE_POLL_TIMER, 1 + i, &LOCKED);
        flight_step(&g, FE_POLL_ABSENT, 1 + i, &LOCKED);
    }
    assert_int_equal(seen[0], 5);
    for (int i = 1; i < 8; i++)
        assert_true(seen[i] >= seen[i - 1] && seen[i] <= 100);
    assert_int_equal(seen[7], 100 > seen[6] * 3 / 2 ? seen[6] * 3 / 2 : 100);
}

/* Every sequence of up to 7 events from every start: a flight that still
 * has waiters is never freed unanswered, an action is only ever asked for
 * in a state that expects its completion, and once DONE nothing happens. */
static void walk(struct flight_sm f, int depth, const struct flight_policy *pol, int *count)
{
    if (depth == 0)
        return;
    for (int ev = 0; ev < FE_COUNT; ev++) {
        struct flight_sm g = f;
        int waiting = f.waiting ? *f.waiting : 0;
        g.waiting = &waiting;
        enum flight_state before = g.state;
        bool had_waiters = g.waiters > 0;
        enum flight_action a = flight_step(&g, (enum flight_event)ev, depth * 10, pol);
        (*count)++;
        if (before == FS_DONE)
            assert_int_equal(a, FA_NONE);
        if (a == FA_FREE && had_waiters && ev != FE_WAITER_LEFT)
            fail_msg("freed with waiters: %s --%s-->", flight_state_name(before),
                     flight_event_name((enum flight_event)ev));
        if (a == FA_FREE && ev == FE_WAITER_LEFT && g.waiters > 0)
            fail_msg("freed while %d still wait", g.waiters);
        if (a == FA_FETCH)
            assert_int_equal(g.state, FS_FETCHING);
        if (a == FA_TRY_LOCK)
            assert_int_equal(g.state, FS_LOCKING);
        if (a == FA_POLL)
            assert_int_equal(g.state, FS_POLLING);
        if (a == FA_ANSWER_CACHE || a == FA_ANSWER_FETCH || a == FA_FREE)
            assert_int_equal(g.state, FS_DONE);
        if (g.state == FS_DONE)
            assert_int_equal(waiting, 0);
        if (g.state != FS_DONE)
            walk(g, depth - 1, pol, count);
    }
}

static void test_exhaustive_walk(void **state)
{
    (void)state;
    int count = 0;
    const struct flight_policy *pols[] = {&LOCKED, &UNLOCKED};
    for (int p = 0; p < 2; p++) {
        for (int bg = 0; bg < 2; bg++) {
            int waiting = 0;
            struct flight_sm f = {.background = bg, .waiters = bg ? 0 : 2, .waiting = &waiting};
            walk(f, 7, pols[p], &count);
        }
    }
    assert_true(count > 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_overflow_and_backoff),
        cmocka_unit_test(test_exhaustive_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

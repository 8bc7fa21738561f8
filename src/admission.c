/* admission: shared admission state behind one mutex (see admission.h). Tables are
 * small and bounded: one entry per client name ever configured, a fixed
 * set-associative table of recent authentication failures (an address that
 * stops failing is the first to be forgotten), and one node per source
 * address with an open connection. */
#include "admission.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "metrics.h"

#define AUTH_SETS 1024
#define AUTH_WAYS 4
#define CONN_BUCKETS 4096

static const char *const reason_names[LIMIT_REASON_COUNT] = {"rate", "auth", "inflight", "pacing"};

struct client_state {
    char *name;
    struct auth_bucket all;
    struct auth_bucket action[ACTION_COUNT];
    uint64_t throttled[LIMIT_REASON_COUNT];
};

struct auth_slot {
    struct auth_peer peer;
    struct auth_bucket b;
    bool used;
};

struct conn_node {
    struct auth_peer peer;
    long count;
    struct conn_node *next;
};

struct admission {
    pthread_mutex_t lock;
    struct client_state *clients;
    size_t n_clients;
    uint64_t unknown_throttled[LIMIT_REASON_COUNT]; /* no client name (failed auth) */
    struct auth_slot auth[AUTH_SETS][AUTH_WAYS];
    struct conn_node *conns[CONN_BUCKETS];
    long n_conns;
    /* When any address last failed to authenticate (atomic, monotonic ms):
     * a bucket refills within a minute, so with no failure for that long
     * nobody is blocked and requests skip the lock. */
    int64_t last_auth_failure_ms;
};

struct admission *admission_new(void)
{
    struct admission *l = util_calloc(1, sizeof *l);
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void admission_free(struct admission *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_clients; i++)
        free(l->clients[i].name);
    free(l->clients);
    for (size_t b = 0; b < CONN_BUCKETS; b++) {
        while (l->conns[b]) {
            struct conn_node *n = l->conns[b];
            l->conns[b] = n->next;
            free(n);
        }
    }
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/* Under the lock. */
static struct client_state *client_state(struct admission *l, const char *name)
{
    for (size_t i = 0; i < l->n_clients; i++)
        if (strcmp(l->clients[i].name, name) == 0)
            return &l->clients[i];
    struct client_state *cs = realloc(l->clients, (l->n_clients + 1) * sizeof *cs);
    if (!cs)
        abort();
    l->clients = cs;
    cs = &l->clients[l->n_clients++];
    memset(cs, 0, sizeof *cs);
    cs->name = util_strdup(name);
    return cs;
}

static long to_seconds(int64_t ms)
{
    long s = (long)((ms + 999) / 1000);
    return s < 1 ? 1 : s;
}

bool admission_client_take(struct admission *l, const struct config_client *cl,
                           enum route_action action, int64_t now_ms, long *retry_after_s)
{
    const struct config_rate *all = &cl->rate;
    const struct config_rate *act = &cl->action_rate[action];
    if (all->rate <= 0 && act->rate <= 0)
        return true; /* no limit: no lock */
    pthread_mutex_lock(&l->lock);
    struct client_state *cs = client_state(l, cl->name);
    int64_t wait_all = 0, wait_act = 0;
    bool ok_all =
        all->rate <= 0 || auth_bucket_peek(&cs->all, all->rate, all->burst, now_ms, &wait_all);
    bool ok_act = act->rate <= 0 ||
                  auth_bucket_peek(&cs->action[action], act->rate, act->burst, now_ms, &wait_act);
    if (ok_all && ok_act) {
        if (all->rate > 0)
            auth_bucket_take(&cs->all, all->rate, all->burst, now_ms, NULL);
        if (act->rate > 0)
            auth_bucket_take(&cs->action[action], act->rate, act->burst, now_ms, NULL);
    } else {
        cs->throttled[LIMIT_RATE]++;
        *retry_after_s = to_seconds(wait_all > wait_act ? wait_all : wait_act);
    }
    pthread_mutex_unlock(&l->lock);
    return ok_all && ok_act;
}

void admission_count(struct admission *l, const char *client, enum admission_reason why)
{
    pthread_mutex_lock(&l->lock);
    if (client)
        client_state(l, client)->throttled[why]++;
    else
        l->unknown_throttled[why]++;
    pthread_mutex_unlock(&l->lock);
}

static uint64_t peer_hash(const struct auth_peer *p)
{
    static const uint64_t key[2] = {0x6c696d6974732d31ULL, 0x7065657268617368ULL};
    return util_siphash(key, p, sizeof *p);
}

static bool peer_eq(const struct auth_peer *a, const struct auth_peer *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* Under the lock: the slot of p, or (create) a free or the idlest one. */
static struct auth_slot *auth_slot(struct admission *l, const struct auth_peer *p, bool create,
                                   double rate, double burst, int64_t now_ms)
{
    struct auth_slot *set = l->auth[peer_hash(p) % AUTH_SETS];
    struct auth_slot *victim = NULL;
    for (int i = 0; i < AUTH_WAYS; i++) {
        if (set[i].used && peer_eq(&set[i].peer, p))
            return &set[i];
        if (!set[i].used)
            victim = victim ? victim : &set[i];
    }
    if (!create)
        return NULL;
    if (!victim) {
        /* Forget the address that has failed least lately (most tokens). */
        double best = -1;
        for (int i = 0; i < AUTH_WAYS; i++) {
            int64_t w = 0;
            struct auth_bucket probe = set[i].b;
            double t = auth_bucket_peek(&probe, rate, burst, now_ms, &w) ? burst : -(double)w;
            if (t > best) {
                best = t;
                victim = &set[i];
            }
        }
    }
    memset(victim, 0, sizeof *victim);
    victim->peer = *p;
    victim->used = true;
    return victim;
}

bool admission_auth_blocked(struct admission *l, const struct auth_peer *p, long per_minute,
                            int64_t now_ms, long *retry_after_s)
{
    int64_t last = __atomic_load_n(&l->last_auth_failure_ms, __ATOMIC_RELAXED);
    if (per_minute <= 0 || last == 0 || now_ms - last > 60000)
        return false;
    double rate = (double)per_minute / 60.0, burst = (double)per_minute;
    pthread_mutex_lock(&l->lock);
    struct auth_slot *s = auth_slot(l, p, false, rate, burst, now_ms);
    int64_t wait = 0;
    bool blocked = s && !auth_bucket_peek(&s->b, rate, burst, now_ms, &wait);
    if (blocked) {
        l->unknown_throttled[LIMIT_AUTH]++;
        *retry_after_s = to_seconds(wait);
    }
    pthread_mutex_unlock(&l->lock);
    return blocked;
}

void admission_auth_failed(struct admission *l, const struct auth_peer *p, long per_minute,
                           int64_t now_ms)
{
    if (per_minute <= 0)
        return;
    double rate = (double)per_minute / 60.0, burst = (double)per_minute;
    __atomic_store_n(&l->last_auth_failure_ms, now_ms > 0 ? now_ms : 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&l->lock);
    struct auth_slot *s = auth_slot(l, p, true, rate, burst, now_ms);
    auth_bucket_take(&s->b, rate, burst, now_ms, NULL);
    pthread_mutex_unlock(&l->lock);
}

enum admission_conn admission_conn_open(struct admission *l, const struct auth_peer *p,
                                        long max_total, long max_per_ip)
{
    enum admission_conn res = LIMIT_CONN_OK;
    pthread_mutex_lock(&l->lock);
    struct conn_node **pp = &l->conns[peer_hash(p) % CONN_BUCKETS];
    while (*pp && !peer_eq(&(*pp)->peer, p))
        pp = &(*pp)->next;
    if (max_total > 0 && l->n_conns >= max_total)
        res = LIMIT_CONN_TOTAL;
    else if (max_per_ip > 0 && p->family != AF_UNIX && *pp && (*pp)->count >= max_per_ip)
        res = LIMIT_CONN_PER_IP;
    if (res == LIMIT_CONN_OK) {
        if (!*pp) {
            *pp = util_calloc(1, sizeof **pp);
            (*pp)->peer = *p;
        }
        (*pp)->count++;
        l->n_conns++;
    }
    pthread_mutex_unlock(&l->lock);
    return res;
}

void admission_conn_close(struct admission *l, const struct auth_peer *p)
{
    pthread_mutex_lock(&l->lock);
    struct conn_node **pp = &l->conns[peer_hash(p) % CONN_BUCKETS];
    while (*pp && !peer_eq(&(*pp)->peer, p))
        pp = &(*pp)->next;
    if (*pp) {
        l->n_conns--;
        if (--(*pp)->count == 0) {
            struct conn_node *n = *pp;
            *pp = n->next;
            free(n);
        }
    }
    pthread_mutex_unlock(&l->lock);
}

void admission_render_throttled(struct admission *l, struct buf *out, const char *metric)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i <= l->n_clients; i++) {
        const uint64_t *counts = i < l->n_clients ? l->clients[i].throttled : l->unknown_throttled;
        for (int r = 0; r < LIMIT_REASON_COUNT; r++) {
            if (!counts[r])
                continue;
            buf_printf(out, "%s{client=\"", metric);
            metrics_label_value(out, i < l->n_clients ? l->clients[i].name : "-");
            buf_printf(out, "\",reason=\"%s\"} %llu\n", reason_names[r],
                       (unsigned long long)counts[r]);
        }
    }
    pthread_mutex_unlock(&l->lock);
}

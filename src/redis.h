/* redis: the only file that includes hiredis. One async connection per worker
 * on the worker's event base (hiredis's libevent adapter; with Redis Cluster
 * one per node, commands routed by hash slot), with usergate's own
 * deadline timer on every command (hiredis 0.14 has none), connect timeout,
 * reconnect with exponential backoff, and AUTH/ACL. Keys are passed as
 * separate binary-safe arguments (argv/argvlen), never formatted into strings. */
#ifndef USERGATE_REDIS_H
#define USERGATE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct config;
struct redis;

enum redis_reply_type {
    REDIS_R_ERROR = 0, /* transport error, timeout, disconnected, or server error */
    REDIS_R_NIL,
    REDIS_R_STRING, /* str/len */
    REDIS_R_INTEGER,
    REDIS_R_STATUS, /* str/len, e.g. "OK" */
    REDIS_R_ARRAY,  /* elements */
};

/* A reply, copied out of hiredis so callers never touch hiredis types. */
struct redis_reply {
    enum redis_reply_type type;
    const char *str;
    size_t len;
    long long integer;
    struct redis_reply *elements;
    size_t n_elements;
};

/* Called exactly once per command: with the reply, or with REDIS_R_ERROR on
 * timeout / disconnect / not connected / server error. Never called from
 * inside redis_command itself (errors are delivered on the next loop turn).
 * The reply is only valid during the callback. */
typedef void (*redis_cb)(void *arg, const struct redis_reply *reply);

/* Create the per-worker client and start connecting (non-blocking). The
 * config is copied (address, credentials, timeout); cfg need not outlive it.
 * A host name (not an IP literal) is resolved by hiredis with getaddrinfo,
 * which can block on DNS: prefer IP addresses or unix: sockets. */
struct redis *redis_new(struct event_base *base, const struct config *cfg);
/* Disconnect and free. Commands still pending get their REDIS_R_ERROR
 * callback synchronously from inside redis_free, and any command issued from
 * such a callback fails synchronously too. Must not be called from inside a
 * redis_cb (the connection is being read at that point). */
void redis_free(struct redis *r);
/* Swap in a new config (address/password/timeouts). Reconnects if the
 * address or credentials changed. */
void redis_reconfigure(struct redis *r, const struct config *cfg);

/* Send one command. argv/argvlen are copied before returning. */
void redis_command(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen);
/* The same, past an open circuit breaker (while the connection is up): for
 * the few commands that keep other instances correct (invalidations), whose
 * cost when Redis is sick is a deadline no client waits on. */
void redis_command_urgent(struct redis *r, redis_cb cb, void *arg, int argc, const char **argv,
                          const size_t *argvlen);
/* True while connected and the server has answered the handshake (AUTH,
 * or PING when there is no password). */
bool redis_is_up(const struct redis *r);
/* Called on every change of up/down (for metrics); may be NULL. Every "up"
 * after the first is a reconnect. Never called from redis_free. */
void redis_set_state_cb(struct redis *r, void (*cb)(void *arg, bool up), void *arg);
/* Called once per failed command (for metrics): timeout true when the
 * deadline passed, false for a server error reply or a connection lost with
 * the command in flight. Commands refused while down are not counted (the
 * up/down state says it). May be NULL. */
void redis_set_error_cb(struct redis *r, void (*cb)(void *arg, bool timeout), void *arg);

/* Called when the circuit breaker opens (repeated failures: Redis is skipped
 * for a growing interval, commands fail at once) and when a probe closes it.
 * May be NULL. */
void redis_set_breaker_cb(struct redis *r, void (*cb)(void *arg, bool open), void *arg);

/* Called for each Redis Cluster redirection followed (MOVED, or ASK when
 * ask is true). May be NULL. */
void redis_set_redirect_cb(struct redis *r, void (*cb)(void *arg, bool ask), void *arg);

/* Called when the sentinels name another node as the primary (a failover):
 * writes the old primary had not replicated yet may be lost. May be NULL. */
void redis_set_primary_cb(struct redis *r, void (*cb)(void *arg), void *arg);

/* Make r a subscriber of channel (a client that then takes no other
 * command): SUBSCRIBE is sent after every (re)connect; on_live(arg, true)
 * once Redis confirmed it, on_live(arg, false) whenever the connection is
 * lost (messages published meanwhile are lost to this client); on_message
 * for each message. Never called from redis_free. */
void redis_subscribe(struct redis *r, const char *channel,
                     void (*on_message)(void *arg, const char *msg, size_t len),
                     void (*on_live)(void *arg, bool live), void *arg);

/* How many shards a whole-keyspace command (SCAN) must visit: the masters of
 * a Redis Cluster, else 1. Changes when the cluster's map does. */
size_t redis_shards(const struct redis *r);
/* redis_command to shard i (0 <= i < redis_shards), for commands without a
 * key; outside a cluster the same as redis_command. */
void redis_command_shard(struct redis *r, size_t shard, redis_cb cb, void *arg, int argc,
                         const char **argv, const size_t *argvlen);

/* Call cb with a REDIS_R_ERROR reply on the next loop turn without sending
 * anything: lets layers above keep their own "never called back from inside
 * the call" promise when they fail before reaching Redis. */
void redis_call_soon(struct redis *r, redis_cb cb, void *arg);

/* "hiredis 0.14.1" for -V. */
const char *redis_version(void);

#endif

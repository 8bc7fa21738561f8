/* config: the configuration as one immutable, reference-counted snapshot.
 * Parsed with libinih from a main file plus `include = GLOB` files; every key is
 * declared once in a table (config.c) with type, default, bounds and whether a
 * reload may change it. A reload parses a whole new snapshot, validates it, and
 * only then swaps; requests keep the snapshot they started with (config_ref). */
#ifndef USERGATE_CONFIG_H
#define USERGATE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "route.h"
#include "twilio.h"

/* One address from `listen`/`admin_listen`: "HOST:PORT", "[v6]:PORT" or "unix:/path". */
struct config_addr {
    char *text; /* as written, for logs */
    bool is_unix;
    char *host; /* NULL for unix */
    int port;
    char *path; /* unix only */
};

/* Client secrets shorter than this are refused: guessable at any rate. */
#define CONFIG_CLIENT_SECRET_MIN 12

/* A token bucket's setting: rate per second (0 = no limit) and burst. */
struct config_rate {
    double rate;
    double burst; /* resolved: the configured burst, else max(1, rate) */
};

struct config_client {
    char *name;   /* section name: [client NAME] */
    char *key;    /* HTTP Basic username */
    char *secret; /* loaded from secret or secret_file; never logged */
    size_t secret_len;
    bool all_services;                    /* services = * */
    char (*services)[TWILIO_SID_LEN + 1]; /* when !all_services */
    size_t n_services;
    unsigned allow;    /* mask of ROUTE_ACTION_BIT(action) (route.h) */
    bool all_networks; /* networks = * (the default) */
    struct auth_net *networks;
    size_t n_networks;
    struct config_rate rate;                      /* rate, burst */
    struct config_rate action_rate[ACTION_COUNT]; /* rate.ACTION, burst.ACTION */
};

struct config {
    /* [server] */
    struct config_addr *listen;
    size_t n_listen;
    struct config_addr admin_listen;  /* text == NULL when admin_listen is empty (disabled) */
    int workers;                      /* resolved: "auto" = number of online CPUs */
    long max_header_bytes;            /* default 16384 */
    long max_body_bytes;              /* default 65536 */
    long idle_timeout_ms;             /* default 60000: keep-alive idle and slow-client bound */
    long max_pipeline;                /* default 32 queued requests per connection */
    long max_connections;             /* default 10000, all workers together */
    long max_connections_per_ip;      /* default 256; 0 = no limit */
    long max_requests_per_connection; /* default 10000 */
    long header_timeout_ms;           /* default 10000: whole request head */
    long body_timeout_ms;             /* default 30000: whole request body */
    long auth_failures_per_minute;    /* default 30 per source address; 0 = off */
    bool strict_permissions;          /* default on: readable secrets refuse to start */
    char *admin_token;                /* Bearer token for the admin listener; NULL = none */
    bool admin_token_for_metrics;     /* default off: /metrics also needs the token */
    long admin_max_connections;       /* default 64 */
    long shutdown_timeout_ms;         /* default 10000 */
    int log_level;                    /* enum log_level; default info */
    char *access_log;                 /* "off" | "logfmt" | "json"; default logfmt */
    bool log_identities;              /* default off: identities logged as keyed hash */
    uint64_t log_key[2];              /* SipHash key of that hash (config.c: finish_log_key) */

    /* [upstream] */
    char *conversations_url; /* no trailing slash */
    char *chat_url;
    char *account_sid;            /* AC…, required */
    char *auth_user;              /* resolved Basic username: api_key_sid or account_sid */
    char *auth_secret;            /* resolved Basic password: api_key_secret or auth_token */
    char *default_service_sid;    /* IS… or NULL (learned from /v1/Configuration) */
    long connect_timeout_ms;      /* 3000 */
    long timeout_ms;              /* 10000 */
    long max_inflight;            /* 100 */
    long queue_size;              /* 1000 */
    long queue_timeout_ms;        /* 2000 */
    long writes_per_second;       /* 25 per service */
    long max_retries;             /* 2 */
    char *ca_file;                /* NULL = system store */
    char *edge;                   /* NULL or e.g. "sydney" */
    char *region;                 /* NULL or e.g. "au1" */
    char *public_url;             /* NULL = no link rewriting */
    bool allow_insecure_upstream; /* default off: credentials over http:// to a non-loopback host */
    bool demo; /* default off: the upstream is the bundled mock Twilio (scripts/run-local.sh) */

    /* [redis] */
    struct config_addr redis_address;
    char *redis_username;
    char *redis_password;                /* from password or password_file; never logged */
    struct config_addr *redis_sentinels; /* Sentinel: where to ask for the primary */
    size_t n_redis_sentinels;
    char *redis_master_name;           /* the name the sentinels monitor; set iff sentinels are */
    struct config_addr *redis_cluster; /* Redis Cluster: seed nodes */
    size_t n_redis_cluster;
    char *sentinel_username;
    char *sentinel_password; /* never logged */
    long failover_replay;    /* seconds of invalidations re-sent to a new primary; 60 */
    char *key_prefix;        /* "usergate:" */
    long redis_timeout_ms;   /* 250 */

    /* [cache] */
    long ttl;                    /* seconds, 300 */
    long negative_ttl;           /* seconds, 30 */
    long stale_while_revalidate; /* seconds, 60 */
    long stale_if_error;         /* seconds, 3600 */
    long lock_timeout_ms;        /* cross-instance fetch lock; 0 = off; 3000 */
    long unknown_write_hold_ms; /* a write with unknown outcome holds the user uncacheable; 30000 */
    long invalidation_queue;    /* invalidations queued for retry per worker; 10000 */
    long local_entries;         /* in-process tier, items per instance; 0 = off (default) */
    long local_ttl;             /* seconds an item stays in it at most; 5 */

    /* [webhooks] */
    bool webhooks_enabled;    /* default off */
    char *webhook_path;       /* "/twilio/events" */
    char *webhook_public_url; /* the URL Twilio calls; NULL = http:// + Host + request-target */
    char *webhook_token;      /* signing key: webhook_auth_token, else the account's auth token */

    struct config_client *clients;
    size_t n_clients;

    /* internal */
    char *path;          /* main file, for reload */
    int refs;            /* atomic; starts at 1 */
    uint64_t generation; /* unique per load, from 1: what a memo of this config compares */
};

/* One problem found while loading: "FILE:LINE: message". */
struct config_errors {
    char **msgs;
    size_t n;
};
void config_errors_free(struct config_errors *e);

/* Load path (and its includes) into a new snapshot with refs = 1. Environment
 * fallbacks: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_API_KEY,
 * TWILIO_API_SECRET. Relative *_file paths resolve against
 * $CREDENTIALS_DIRECTORY when set, else against the including file's dir.
 * Every problem is appended to errs (unknown key or section, bad value, bad SID
 * format, unreadable secret file, missing credentials, duplicate client key);
 * returns NULL when there was any. */
struct config *config_load(const char *path, struct config_errors *errs);

struct config *config_ref(struct config *c);
void config_unref(struct config *c); /* frees at zero; NULL ok */

/* Find a client by Basic username; NULL if none. */
const struct config_client *config_find_client(const struct config *c, const char *key,
                                               size_t keylen);
/* True if the client may use service sid (IS…). */
bool config_client_allows_service(const struct config_client *cl, const char *service);

/* Names of keys whose change needs a restart (listen, admin_listen, workers);
 * appends one message per changed key to errs-like list. Returns count. */
size_t config_restart_needed(const struct config *old, const struct config *nw,
                             struct config_errors *msgs);

/* Write the table of keys with defaults (used to check conf/usergate.conf is
 * complete in tests): one "section.key=default" per line. */
void config_dump_defaults(struct buf *out);

#endif

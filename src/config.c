/* config: loads the INI files into one immutable snapshot. Every key is one
 * row of a table (section, name, type, default, bounds, restart-only), so
 * defaults, validation, the restart check and conf/usergate.conf's test all
 * come from the same place. libinih splits lines into name/value; a line
 * reader wrapped around it counts lines (Debian's libinih has no lineno
 * handler), sees section headers (even empty ones) and reports syntax errors
 * itself, so every problem is collected as "FILE:LINE: message", not just
 * inih's first. Secrets are read here and never echoed in a message. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "log.h"
#include "route.h"
#include "twilio.h"
#include "util.h"

#define INCLUDE_MAX_DEPTH 8
#define DEFAULTS_FILE "(built-in defaults)"

/* What the table writes: the snapshot plus credentials that only become
 * auth_user/auth_secret once every file and the environment have been seen. */
struct values {
    struct config c; /* first: restart rows are read through a struct config * */
    char *auth_token;
    char *api_key_sid;
    char *api_key_secret;
    char *log_hash_key;
    char *webhook_auth_token;
};
_Static_assert(offsetof(struct values, c) == 0, "struct config must start struct values");

enum ktype {
    K_STR,         /* text, "" allowed */
    K_OPTSTR,      /* text; "" = unset (NULL) */
    K_NAME,        /* optional host label (edge, region): [a-z0-9-] */
    K_PATH,        /* optional readable file; relative like *_file */
    K_SECRET,      /* inline secret; arg = the sibling *_file key */
    K_SECRET_FILE, /* secret read from a file into the same slot; arg = sibling */
    K_INT,         /* long in [min,max] */
    K_MS,          /* K_INT in milliseconds */
    K_SEC,         /* K_INT in seconds */
    K_BOOL,
    K_ENUM,      /* arg = "a|b|c"; stores the word */
    K_LOGLEVEL,  /* int enum log_level */
    K_WORKERS,   /* int in [min,max] or "auto" */
    K_SID,       /* optional SID, arg = prefix */
    K_URL,       /* http(s) URL, trailing '/' stripped; min = 1: required */
    K_ADDR,      /* one address; min = 0: empty disables */
    K_ADDR_LIST, /* comma list; off_n = count; min = 1: required */
    K_USERNAME,  /* client key: HTTP Basic username */
    K_SERVICES,  /* client: "*" or IS SIDs */
    K_ALLOW,     /* client: route action words */
    K_NETWORKS,  /* client: "*" or CIDRs and "unix" */
    K_RATE,      /* non-negative number, double; arg "burst" for a burst row */
    K_PREFIX,    /* Redis key prefix: no '{' or '}' (they would break hash tags) */
};

struct key {
    const char *section;
    const char *name;
    enum ktype type;
    const char *def; /* exactly as written in conf/usergate.conf; "" = unset */
    size_t off;
    size_t off_n;
    long min, max;
    const char *arg;
    bool restart; /* a reload cannot change it */
};

#define V(f) offsetof(struct values, f)
#define C(f) offsetof(struct values, c.f)
#define CL(f) offsetof(struct config_client, f)

static const struct key keys[] = {
    {"server", "listen", K_ADDR_LIST, "127.0.0.1:8080", .off = C(listen), .off_n = C(n_listen),
     .min = 1, .restart = true},
    {"server", "admin_listen", K_ADDR, "127.0.0.1:9090", .off = C(admin_listen), .restart = true},
    {"server", "workers", K_WORKERS, "1", .off = C(workers), .min = 1, .max = 64, .restart = true},
    {"server", "max_header_bytes", K_INT, "16384", .off = C(max_header_bytes), .min = 1024,
     .max = 1048576},
    {"server", "max_body_bytes", K_INT, "65536", .off = C(max_body_bytes), .min = 1024,
     .max = 67108864},
    {"server", "idle_timeout_ms", K_MS, "60000", .off = C(idle_timeout_ms), .min = 100,
     .max = 86400000},
    {"server", "max_pipeline", K_INT, "32", .off = C(max_pipeline), .min = 1, .max = 1024},
    {"server", "max_connections", K_INT, "10000", .off = C(max_connections), .min = 1,
     .max = 1000000},
    {"server", "max_connections_per_ip", K_INT, "256", .off = C(max_connections_per_ip), .min = 0,
     .max = 1000000},
    {"server", "max_requests_per_connection", K_INT, "10000", .off = C(max_requests_per_connection),
     .min = 1, .max = 100000000},
    {"server", "header_timeout_ms", K_MS, "10000", .off = C(header_timeout_ms), .min = 100,
     .max = 3600000},
    {"server", "body_timeout_ms", K_MS, "30000", .off = C(body_timeout_ms), .min = 100,
     .max = 3600000},
    {"server", "auth_failures_per_minute", K_INT, "30", .off = C(auth_failures_per_minute),
     .min = 0, .max = 1000000},
    {"server", "strict_permissions", K_BOOL, "on", .off = C(strict_permissions)},
    {"server", "admin_token", K_SECRET, "", .off = C(admin_token), .arg = "admin_token_file"},
    {"server", "admin_token_file", K_SECRET_FILE, "", .off = C(admin_token), .arg = "admin_token"},
    {"server", "admin_token_for_metrics", K_BOOL, "off", .off = C(admin_token_for_metrics)},
    {"server", "admin_max_connections", K_INT, "64", .off = C(admin_max_connections), .min = 1,
     .max = 100000},
    {"server", "shutdown_timeout_ms", K_MS, "10000", .off = C(shutdown_timeout_ms), .min = 0,
     .max = 3600000},
    {"server", "log_level", K_LOGLEVEL, "info", .off = C(log_level)},
    {"server", "access_log", K_ENUM, "logfmt", .off = C(access_log), .arg = "off|logfmt|json"},
    {"server", "log_identities", K_BOOL, "off", .off = C(log_identities)},
    {"server", "log_hash_key", K_SECRET, "", .off = V(log_hash_key), .arg = "log_hash_key_file"},
    {"server", "log_hash_key_file", K_SECRET_FILE, "", .off = V(log_hash_key),
     .arg = "log_hash_key"},

    {"upstream", "conversations_url", K_URL, "https://conversations.twilio.com",
     .off = C(conversations_url), .min = 1},
    {"upstream", "chat_url", K_URL, "https://chat.twilio.com", .off = C(chat_url), .min = 1},
    {"upstream", "account_sid", K_SID, "", .off = C(account_sid), .arg = "AC"},
    {"upstream", "auth_token", K_SECRET, "", .off = V(auth_token), .arg = "auth_token_file"},
    {"upstream", "auth_token_file", K_SECRET_FILE, "", .off = V(auth_token), .arg = "auth_token"},
    {"upstream", "api_key_sid", K_SID, "", .off = V(api_key_sid), .arg = "SK"},
    {"upstream", "api_key_secret", K_SECRET, "", .off = V(api_key_secret),
     .arg = "api_key_secret_file"},
    {"upstream", "api_key_secret_file", K_SECRET_FILE, "", .off = V(api_key_secret),
     .arg = "api_key_secret"},
    {"upstream", "default_service_sid", K_SID, "", .off = C(default_service_sid), .arg = "IS"},
    {"upstream", "connect_timeout_ms", K_MS, "3000", .off = C(connect_timeout_ms), .min = 1,
     .max = 600000},
    {"upstream", "timeout_ms", K_MS, "10000", .off = C(timeout_ms), .min = 1, .max = 600000},
    {"upstream", "max_inflight", K_INT, "100", .off = C(max_inflight), .min = 1, .max = 100000},
    {"upstream", "queue_size", K_INT, "1000", .off = C(queue_size), .min = 0, .max = 1000000},
    {"upstream", "queue_timeout_ms", K_MS, "2000", .off = C(queue_timeout_ms), .min = 0,
     .max = 600000},
    {"upstream", "writes_per_second", K_INT, "25", .off = C(writes_per_second), .min = 1,
     .max = 100000},
    {"upstream", "max_retries", K_INT, "2", .off = C(max_retries), .min = 0, .max = 10},
    {"upstream", "ca_file", K_PATH, "", .off = C(ca_file)},
    {"upstream", "edge", K_NAME, "", .off = C(edge)},
    {"upstream", "region", K_NAME, "", .off = C(region)},
    {"upstream", "public_url", K_URL, "", .off = C(public_url), .min = 0},
    {"upstream", "allow_insecure_upstream", K_BOOL, "off", .off = C(allow_insecure_upstream)},
    {"upstream", "demo", K_BOOL, "off", .off = C(demo)},

    {"redis", "address", K_ADDR, "127.0.0.1:6379", .off = C(redis_address), .min = 1},
    {"redis", "username", K_OPTSTR, "", .off = C(redis_username)},
    {"redis", "password", K_SECRET, "", .off = C(redis_password), .arg = "password_file"},
    {"redis", "password_file", K_SECRET_FILE, "", .off = C(redis_password), .arg = "password"},
    {"redis", "sentinels", K_ADDR_LIST, "", .off = C(redis_sentinels),
     .off_n = C(n_redis_sentinels)},
    {"redis", "master_name", K_OPTSTR, "", .off = C(redis_master_name)},
    {"redis", "cluster", K_ADDR_LIST, "", .off = C(redis_cluster), .off_n = C(n_redis_cluster)},
    {"redis", "sentinel_username", K_OPTSTR, "", .off = C(sentinel_username)},
    {"redis", "sentinel_password", K_SECRET, "", .off = C(sentinel_password),
     .arg = "sentinel_password_file"},
    {"redis", "sentinel_password_file", K_SECRET_FILE, "", .off = C(sentinel_password),
     .arg = "sentinel_password"},
    {"redis", "failover_replay", K_SEC, "60", .off = C(failover_replay), .min = 0, .max = 3600},
    {"redis", "key_prefix", K_PREFIX, "usergate:", .off = C(key_prefix)},
    {"redis", "timeout_ms", K_MS, "250", .off = C(redis_timeout_ms), .min = 1, .max = 60000},

    {"cache", "ttl", K_SEC, "300", .off = C(ttl), .min = 1, .max = 31536000},
    {"cache", "negative_ttl", K_SEC, "30", .off = C(negative_ttl), .min = 1, .max = 86400},
    {"cache", "stale_while_revalidate", K_SEC, "60", .off = C(stale_while_revalidate), .min = 0,
     .max = 86400},
    {"cache", "stale_if_error", K_SEC, "3600", .off = C(stale_if_error), .min = 0, .max = 604800},
    {"cache", "lock_timeout_ms", K_MS, "3000", .off = C(lock_timeout_ms), .min = 0, .max = 60000},
    {"cache", "unknown_write_hold_ms", K_MS, "30000", .off = C(unknown_write_hold_ms), .min = 0,
     .max = 3600000},
    {"cache", "invalidation_queue", K_INT, "10000", .off = C(invalidation_queue), .min = 0,
     .max = 10000000},
    {"cache", "local_entries", K_INT, "0", .off = C(local_entries), .min = 0, .max = 10000000,
     .restart = true},
    {"cache", "local_ttl", K_SEC, "5", .off = C(local_ttl), .min = 1, .max = 3600},

    {"webhooks", "enabled", K_BOOL, "off", .off = C(webhooks_enabled)},
    {"webhooks", "path", K_STR, "/twilio/events", .off = C(webhook_path)},
    {"webhooks", "public_url", K_OPTSTR, "", .off = C(webhook_public_url)},
    {"webhooks", "webhook_auth_token", K_SECRET, "", .off = V(webhook_auth_token),
     .arg = "webhook_auth_token_file"},
    {"webhooks", "webhook_auth_token_file", K_SECRET_FILE, "", .off = V(webhook_auth_token),
     .arg = "webhook_auth_token"},
};
#define N_KEYS UG_ARRAY_LEN(keys)

/* [client NAME]; `key` has no default text because it defaults to NAME. */
enum { CK_KEY, CK_SECRET, CK_SECRET_FILE, CK_SERVICES, CK_ALLOW, CK_NETWORKS };
#define RATE_ROWS(a)                                                                               \
    {"client", "rate." a, K_RATE, "0", .off = CL(action_rate), .arg = a},                          \
    {                                                                                              \
        "client", "burst." a, K_RATE, "", .off = CL(action_rate), .arg = a, .max = 1               \
    }
static const struct key client_keys[] = {
    [CK_KEY] = {"client", "key", K_USERNAME, "", .off = CL(key)},
    [CK_SECRET] = {"client", "secret", K_SECRET, "", .off = CL(secret), .arg = "secret_file"},
    [CK_SECRET_FILE] = {"client", "secret_file", K_SECRET_FILE, "", .off = CL(secret),
                        .arg = "secret"},
    [CK_SERVICES] = {"client", "services", K_SERVICES, "*"},
    [CK_ALLOW] = {"client", "allow", K_ALLOW, "fetch, create, update, delete, list",
                  .off = CL(allow)},
    [CK_NETWORKS] = {"client", "networks", K_NETWORKS, "*"},
    /* Rates: .max = 1 marks a burst row; .arg names the action ("" = overall). */
    {"client", "rate", K_RATE, "0", .off = CL(rate), .arg = ""},
    {"client", "burst", K_RATE, "", .off = CL(rate), .arg = "", .max = 1},
    RATE_ROWS("fetch"),
    RATE_ROWS("create"),
    RATE_ROWS("update"),
    RATE_ROWS("delete"),
    RATE_ROWS("list"),
    RATE_ROWS("sub"),
};
#define N_CLIENT_KEYS UG_ARRAY_LEN(client_keys)

struct loc {
    const char *file; /* interned in load.files */
    int line;
};

struct client_build {
    struct config_client cl;
    struct loc at; /* its section header */
    struct loc seen[N_CLIENT_KEYS];
};

struct load {
    struct values v;
    struct config_errors *errs;
    size_t n_errs; /* added by this load */
    char **files;
    size_t n_files;
    struct loc seen[N_KEYS];
    struct client_build *clients;
    size_t n_clients;
    const char *cred_dir;
    char *open[INCLUDE_MAX_DEPTH + 1]; /* realpaths being read: include loops */
    int depth;
    /* Secrets readable by group or others, reported once all files are read
     * (strict_permissions may be set after them): errors, or warnings. */
    struct {
        struct loc at;
        char *msg;
    } * perms;
    size_t n_perms;
};

enum sec_kind { SEC_TOP, SEC_GLOBAL, SEC_CLIENT, SEC_UNKNOWN };

struct file_ctx {
    struct load *ld;
    FILE *fp;
    const char *path;
    char *dir;
    int line;
    int read_errno;
    char *buf;
    size_t cap;
    enum sec_kind kind;
    const char *section;    /* SEC_GLOBAL: the table's section name */
    size_t client;          /* SEC_CLIENT: index into ld->clients */
    bool prev_name;         /* mirrors inih: an indented line continues the last key */
    bool continuation;      /* the current line is such a continuation */
    const struct key *last; /* key of the last name line, NULL if rejected */
    bool last_single;       /* last name line took one value (include) */
};

/* ---- errors */

static void errs_vadd(struct config_errors *e, const char *file, int line, const char *fmt,
                      va_list ap)
{
    struct buf b = {0};
    if (line > 0)
        buf_printf(&b, "%s:%d: ", file, line);
    else
        buf_printf(&b, "%s: ", file);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n > 0) {
        buf_reserve(&b, (size_t)n + 1);
        vsnprintf(b.data + b.len, (size_t)n + 1, fmt, ap);
        b.len += (size_t)n;
    }
    char **msgs = realloc(e->msgs, (e->n + 1) * sizeof *msgs);
    if (!msgs)
        abort();
    e->msgs = msgs;
    e->msgs[e->n++] = b.data;
}

static void errs_add(struct config_errors *e, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void errs_add(struct config_errors *e, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(e, file, line, fmt, ap);
    va_end(ap);
}

static void err_loc(struct load *ld, struct loc at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_loc(struct load *ld, struct loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    errs_vadd(ld->errs, at.file, at.line, fmt, ap);
    va_end(ap);
    ld->n_errs++;
}

static struct loc here(const struct file_ctx *fc)
{
    return (struct loc){fc->path, fc->line};
}

/* Where a key was set, or the file alone when only its default applied. */
static struct loc loc_or(struct loc seen, const char *file)
{
    return seen.file ? seen : (struct loc){file, 0};
}

#define err(fc, ...) err_loc((fc)->ld, here(fc), __VA_ARGS__)

void config_errors_free(struct config_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->msgs[i]);
    free(e->msgs);
    e->msgs = NULL;
    e->n = 0;
}

/* ---- freeing */

static void secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void addr_free(struct config_addr *a)
{
    free(a->text);
    free(a->host);
    free(a->path);
    memset(a, 0, sizeof *a);
}

static void addrs_free(struct config_addr **list, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        addr_free(&(*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

static void client_free(struct config_client *cl)
{
    free(cl->networks);
    free(cl->name);
    free(cl->key);
    secret_free(cl->secret);
    free(cl->services);
    memset(cl, 0, sizeof *cl);
}

static void config_free_fields(struct config *c)
{
    addrs_free(&c->listen, &c->n_listen);
    addr_free(&c->admin_listen);
    free(c->access_log);
    free(c->conversations_url);
    free(c->chat_url);
    free(c->account_sid);
    free(c->auth_user);
    secret_free(c->auth_secret);
    free(c->default_service_sid);
    free(c->ca_file);
    free(c->edge);
    free(c->region);
    free(c->public_url);
    secret_free(c->admin_token);
    addr_free(&c->redis_address);
    free(c->redis_username);
    secret_free(c->redis_password);
    addrs_free(&c->redis_sentinels, &c->n_redis_sentinels);
    addrs_free(&c->redis_cluster, &c->n_redis_cluster);
    free(c->redis_master_name);
    free(c->sentinel_username);
    secret_free(c->sentinel_password);
    free(c->key_prefix);
    free(c->webhook_path);
    free(c->webhook_public_url);
    secret_free(c->webhook_token);
    for (size_t i = 0; i < c->n_clients; i++)
        client_free(&c->clients[i]);
    free(c->clients);
    free(c->path);
}

/* ---- value parsers */

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < UG_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true;
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* "HOST:PORT", "[v6]:PORT" or "unix:/path". */
static bool addr_parse(const char *s, struct config_addr *a)
{
    memset(a, 0, sizeof *a);
    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/')
            return false;
        a->is_unix = true;
        a->path = util_strdup(s + 5);
        a->text = util_strdup(s);
        return true;
    }
    const char *colon;
    char *host;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return false;
        host = util_strndup(s + 1, (size_t)(close - s - 1));
        struct in6_addr in6;
        if (inet_pton(AF_INET6, host, &in6) != 1) {
            free(host);
            return false;
        }
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
            return false;
        host = util_strndup(s, (size_t)(colon - s));
        for (const char *p = host; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_') {
                free(host);
                return false;
            }
        }
    }
    long port;
    if (!util_parse_long(colon + 1, 1, 65535, &port)) {
        free(host);
        return false;
    }
    a->host = host;
    a->port = (int)port;
    a->text = util_strdup(s);
    return true;
}

/* Splits a comma list in place; empty items are skipped so a value may end
 * with a comma before an indented continuation line. */
static char *next_item(char **cursor)
{
    while (*cursor) {
        char *item = *cursor;
        char *comma = strchr(item, ',');
        if (comma) {
            *comma = '\0';
            *cursor = comma + 1;
        } else {
            *cursor = NULL;
        }
        util_trim(item);
        if (*item)
            return item;
    }
    return NULL;
}

static const char *sid_what(const char *prefix)
{
    if (strcmp(prefix, "AC") == 0)
        return "an account SID";
    if (strcmp(prefix, "SK") == 0)
        return "an API key SID";
    if (strcmp(prefix, "IS") == 0)
        return "a service SID";
    return "a SID";
}

/* Relative *_file paths: systemd's LoadCredential= directory wins, else the
 * directory of the file that names them. */
static char *resolve_path(const struct file_ctx *fc, const char *p)
{
    if (p[0] == '/')
        return util_strdup(p);
    struct buf b = {0};
    buf_printf(&b, "%s/%s", fc->ld->cred_dir ? fc->ld->cred_dir : fc->dir, p);
    return b.data;
}

static void set_str(char **slot, const char *val, bool empty_is_null)
{
    free(*slot);
    *slot = (empty_is_null && !*val) ? NULL : util_strdup(val);
}

/* A file that holds a secret must not be readable by group or others. */
static void check_secret_mode(struct file_ctx *fc, const char *label, const char *path,
                              bool inline_secret)
{
    struct stat st;
    if (stat(path, &st) != 0 || !(st.st_mode & (S_IRGRP | S_IROTH)))
        return;
    struct load *ld = fc->ld;
    ld->perms = realloc(ld->perms, (ld->n_perms + 1) * sizeof *ld->perms);
    if (!ld->perms)
        abort();
    struct buf m = {0};
    if (inline_secret)
        buf_printf(&m,
                   "%s: %s holds a secret but is readable by group or others (mode %03o); chmod "
                   "600 it, or move the secret to a *_file",
                   label, path, (unsigned)(st.st_mode & 0777));
    else
        buf_printf(&m,
                   "%s: secret file %s is readable by group or others (mode %03o); chmod 600 it",
                   label, path, (unsigned)(st.st_mode & 0777));
    ld->perms[ld->n_perms].at = here(fc);
    ld->perms[ld->n_perms++].msg = m.data;
}

static void set_secret(struct file_ctx *fc, const char *label, const struct key *k, char **slot,
                       const char *val)
{
    if (!*val)
        return;
    if (*slot) {
        /* The sibling key filled the slot: say which two, never the value. */
        const char *inline_key = k->type == K_SECRET ? k->name : k->arg;
        const char *file_key = k->type == K_SECRET ? k->arg : k->name;
        err(fc, "%s: set only one of %s and %s", label, inline_key, file_key);
        return;
    }
    if (k->type == K_SECRET) {
        *slot = util_strdup(val);
        if (strcmp(fc->path, DEFAULTS_FILE) != 0)
            check_secret_mode(fc, label, fc->path, true);
        return;
    }
    char *path = resolve_path(fc, val);
    check_secret_mode(fc, label, path, false);
    char *s = util_read_secret_file(path);
    if (!s)
        err(fc, "cannot read secret file %s: %s", path, strerror(errno));
    else if (!*s)
        err(fc, "secret file %s is empty", path);
    else
        *slot = s, s = NULL;
    secret_free(s);
    free(path);
}

static void set_services(struct file_ctx *fc, const char *label, struct config_client *cl,
                         char *val, bool cont)
{
    if (!cont) {
        free(cl->services);
        cl->services = NULL;
        cl->n_services = 0;
        cl->all_services = false;
    }
    size_t n = 0;
    for (char *cur = val, *item; (item = next_item(&cur));) {
        n++;
        if (strcmp(item, "*") == 0) {
            cl->all_services = true;
            continue;
        }
        if (!twilio_is_sid(item, strlen(item), "IS")) {
            err(fc, "%s: item %zu is not a service SID (IS followed by 32 hex digits)", label, n);
            continue;
        }
        twilio_sid_canon(item);
        bool dup = false;
        for (size_t i = 0; i < cl->n_services && !dup; i++)
            dup = strcmp(cl->services[i], item) == 0;
        if (dup)
            continue;
        cl->services = realloc(cl->services, (cl->n_services + 1) * sizeof *cl->services);
        if (!cl->services)
            abort();
        memcpy(cl->services[cl->n_services++], item, TWILIO_SID_LEN + 1);
    }
    if (cl->all_services && cl->n_services)
        err(fc, "%s: '*' cannot be combined with service SIDs", label);
}

static void set_allow(struct file_ctx *fc, const char *label, unsigned *mask, char *val, bool cont)
{
    if (!cont)
        *mask = 0;
    for (char *cur = val, *item; (item = next_item(&cur));) {
        int a;
        for (a = 0; a < ACTION_COUNT; a++)
            if (strcmp(item, route_action_name((enum route_action)a)) == 0)
                break;
        if (a == ACTION_COUNT)
            err(fc, "%s: unknown action '%s' (expected fetch, create, update, delete, list, sub)",
                label, item);
        else
            *mask |= ROUTE_ACTION_BIT(a);
    }
}

static void set_networks(struct file_ctx *fc, const char *label, struct config_client *cl,
                         char *val, bool cont)
{
    if (!cont) {
        free(cl->networks);
        cl->networks = NULL;
        cl->n_networks = 0;
        cl->all_networks = false;
    }
    for (char *cur = val, *item; (item = next_item(&cur));) {
        if (strcmp(item, "*") == 0) {
            cl->all_networks = true;
            continue;
        }
        struct auth_net net;
        const char *why = "";
        if (!auth_net_parse(item, &net, &why)) {
            err(fc, "%s: '%s': %s (expected CIDR like 10.0.0.0/8, an address, unix or *)", label,
                item, why);
            continue;
        }
        cl->networks = realloc(cl->networks, (cl->n_networks + 1) * sizeof *cl->networks);
        if (!cl->networks)
            abort();
        cl->networks[cl->n_networks++] = net;
    }
    if (cl->all_networks && cl->n_networks)
        err(fc, "%s: '*' cannot be combined with networks", label);
}

/* rate / burst (and their .ACTION forms) into a struct config_rate. */
static void set_rate(struct file_ctx *fc, const char *label, const struct key *k, char *base,
                     const char *val)
{
    struct config_rate *r = (struct config_rate *)(base + k->off);
    if (k->arg[0]) {
        int a;
        for (a = 0; a < ACTION_COUNT; a++)
            if (strcmp(k->arg, route_action_name((enum route_action)a)) == 0)
                break;
        r += a;
    }
    if (!*val) {
        if (k->max)
            r->burst = 0;
        return;
    }
    char *end;
    double v = strtod(val, &end);
    if (*end || end == val || !(v >= 0 && v <= 1e6)) {
        err(fc, "%s: '%s' is not a number from 0 to 1000000", label, val);
        return;
    }
    if (k->max)
        r->burst = v;
    else
        r->rate = v;
}

static void set_addr_list(struct file_ctx *fc, const char *label, const struct key *k, char *base,
                          char *val, bool cont)
{
    struct config_addr **list = (struct config_addr **)(base + k->off);
    size_t *n = (size_t *)(base + k->off_n);
    if (!cont)
        addrs_free(list, n);
    for (char *cur = val, *item; (item = next_item(&cur));) {
        struct config_addr a;
        if (!addr_parse(item, &a)) {
            err(fc, "%s: '%s' is not an address (HOST:PORT, [IPv6]:PORT or unix:/path)", label,
                item);
            continue;
        }
        *list = realloc(*list, (*n + 1) * sizeof **list);
        if (!*list)
            abort();
        (*list)[(*n)++] = a;
    }
}

static bool set_long(struct file_ctx *fc, const char *label, const struct key *k, const char *val,
                     long *out)
{
    long v;
    if (!util_parse_long(val, LONG_MIN, LONG_MAX, &v)) {
        err(fc, "%s: '%s' is not an integer%s", label, val, k->type == K_WORKERS ? " or auto" : "");
        return false;
    }
    if (v < k->min || v > k->max) {
        err(fc, "%s: %ld is out of range %ld..%ld%s", label, v, k->min, k->max,
            k->type == K_MS    ? " (milliseconds)"
            : k->type == K_SEC ? " (seconds)"
                               : "");
        return false;
    }
    *out = v;
    return true;
}

/* Apply one value (or, with cont, an indented continuation of a list) to
 * base, which is struct values or struct config_client. */
static void set_key(struct file_ctx *fc, const char *section, const struct key *k, void *vbase,
                    const char *value, bool cont)
{
    char *base = vbase;
    void *slot = base + k->off;
    char label[256];
    snprintf(label, sizeof label, "[%s] %s", section, k->name);
    char *val = util_strdup(value); /* list parsers split in place */

    switch (k->type) {
    case K_STR:
    case K_OPTSTR:
        set_str(slot, val, k->type == K_OPTSTR);
        break;
    case K_PREFIX:
        if (strpbrk(val, "{}"))
            err(fc, "%s: must not contain '{' or '}' (Redis Cluster hash tags)", label);
        else
            set_str(slot, val, false);
        break;
    case K_NAME: {
        const char *p = val;
        while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-')
            p++;
        if (*p)
            err(fc, "%s: '%s' must be lower-case letters, digits and '-'", label, val);
        else
            set_str(slot, val, true);
        break;
    }
    case K_PATH: {
        if (!*val) {
            set_str(slot, "", true);
            break;
        }
        char *path = resolve_path(fc, val);
        if (access(path, R_OK) != 0)
            err(fc, "%s: cannot read %s: %s", label, path, strerror(errno));
        free(*(char **)slot);
        *(char **)slot = path;
        break;
    }
    case K_SECRET:
    case K_SECRET_FILE:
        set_secret(fc, label, k, slot, val);
        break;
    case K_INT:
    case K_MS:
    case K_SEC:
        set_long(fc, label, k, val, slot);
        break;
    case K_WORKERS: {
        long v;
        if (strcmp(val, "auto") == 0) {
            v = sysconf(_SC_NPROCESSORS_ONLN);
            *(int *)slot = (int)(v < k->min ? k->min : v > k->max ? k->max : v);
        } else if (set_long(fc, label, k, val, &v)) {
            *(int *)slot = (int)v;
        }
        break;
    }
    case K_BOOL:
        if (!parse_bool(val, slot))
            err(fc, "%s: '%s' is not a boolean (on/off, yes/no, true/false, 1/0)", label, val);
        break;
    case K_ENUM: {
        size_t n = strlen(val);
        const char *w = k->arg;
        while (w && !(n && strncmp(w, val, n) == 0 && (w[n] == '|' || w[n] == '\0'))) {
            w = strchr(w, '|');
            w = w ? w + 1 : NULL;
        }
        if (w) {
            set_str(slot, val, false);
        } else {
            char words[128];
            snprintf(words, sizeof words, "%s", k->arg);
            for (char *p = words; (p = strchr(p, '|'));)
                *p = '/';
            err(fc, "%s: '%s' is not one of %s", label, val, words);
        }
        break;
    }
    case K_LOGLEVEL: {
        int lvl = log_level_parse(val);
        if (lvl < 0)
            err(fc, "%s: '%s' is not one of error, warning, notice, info, debug", label, val);
        else
            *(int *)slot = lvl;
        break;
    }
    case K_SID:
        if (!*val)
            set_str(slot, "", true);
        else if (!twilio_is_sid(val, strlen(val), k->arg))
            /* not echoed: a misplaced token is the likely mistake */
            err(fc, "%s: not %s (%s followed by 32 hex digits)", label, sid_what(k->arg), k->arg);
        else {
            set_str(slot, val, false);
            twilio_sid_canon(*(char **)slot);
        }
        break;
    case K_URL: {
        size_t n = strlen(val);
        while (n && val[n - 1] == '/')
            val[--n] = '\0';
        if (!*val && k->min == 0)
            set_str(slot, "", true);
        else if (!*val)
            err(fc, "%s: a URL is required", label);
        else if (!((strncmp(val, "http://", 7) == 0 && val[7]) ||
                   (strncmp(val, "https://", 8) == 0 && val[8])))
            err(fc, "%s: '%s' must start with http:// or https://", label, val);
        else
            set_str(slot, val, false);
        break;
    }
    case K_ADDR: {
        struct config_addr a;
        if (!*val && k->min == 0)
            addr_free(slot);
        else if (!*val)
            err(fc, "%s: an address is required", label);
        else if (!addr_parse(val, &a))
            err(fc, "%s: '%s' is not an address (HOST:PORT, [IPv6]:PORT or unix:/path)", label,
                val);
        else {
            addr_free(slot);
            *(struct config_addr *)slot = a;
        }
        break;
    }
    case K_ADDR_LIST:
        set_addr_list(fc, label, k, base, val, cont);
        break;
    case K_USERNAME:
        if (!*val || strchr(val, ':') || strpbrk(val, "\t\r\n"))
            err(fc, "%s: must be non-empty and contain no ':'", label);
        else
            set_str(slot, val, false);
        break;
    case K_SERVICES:
        set_services(fc, label, (struct config_client *)base, val, cont);
        break;
    case K_ALLOW:
        set_allow(fc, label, slot, val, cont);
        break;
    case K_NETWORKS:
        set_networks(fc, label, (struct config_client *)base, val, cont);
        break;
    case K_RATE:
        set_rate(fc, label, k, base, val);
        break;
    }
    secret_free(val); /* it may have been a secret */
}

static bool is_list(enum ktype t)
{
    return t == K_ADDR_LIST || t == K_SERVICES || t == K_ALLOW || t == K_NETWORKS;
}

static void apply_defaults(struct load *ld, const struct key *table, size_t n, const char *section,
                           void *base)
{
    struct file_ctx fc = {.ld = ld, .path = DEFAULTS_FILE, .dir = "."};
    for (size_t i = 0; i < n; i++)
        if (table[i].def[0])
            set_key(&fc, section ? section : table[i].section, &table[i], base, table[i].def,
                    false);
}

static const struct key *find_key(const struct key *table, size_t n, const char *section,
                                  const char *name)
{
    for (size_t i = 0; i < n; i++)
        if ((!section || strcmp(table[i].section, section) == 0) &&
            strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

/* ---- files */

static bool parse_file(struct load *ld, const char *path, struct file_ctx *from);

static void include(struct file_ctx *fc, const char *pattern)
{
    struct load *ld = fc->ld;
    if (!*pattern) {
        err(fc, "include needs a file name or pattern");
        return;
    }
    if (ld->depth > INCLUDE_MAX_DEPTH) {
        err(fc, "includes nested more than %d levels deep", INCLUDE_MAX_DEPTH);
        return;
    }
    struct buf full = {0};
    if (pattern[0] != '/')
        buf_printf(&full, "%s/", fc->dir);
    buf_puts(&full, pattern);
    glob_t g;
    int rc = glob(full.data, 0, NULL, &g);
    if (rc == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++)
            parse_file(ld, g.gl_pathv[i], fc);
    } else if (rc != GLOB_NOMATCH) {
        err(fc, "include: cannot expand '%s'", pattern);
    }
    if (rc == 0 || rc == GLOB_NOMATCH)
        globfree(&g);
    buf_free(&full);
}

static void section_begin(struct file_ctx *fc, char *name)
{
    struct load *ld = fc->ld;
    util_trim(name);
    fc->kind = SEC_UNKNOWN;
    if (strncmp(name, "client", 6) == 0 && (name[6] == '\0' || isspace((unsigned char)name[6]))) {
        char *cname = util_trim(name + 6);
        if (!*cname) {
            err(fc, "section [client] needs a name: [client NAME]");
            return;
        }
        for (const char *p = cname; *p; p++) {
            if (!isalnum((unsigned char)*p) && !strchr("-_.", *p)) {
                err(fc, "[client %s]: a client name is letters, digits, '-', '_' and '.'", cname);
                return;
            }
        }
        for (size_t i = 0; i < ld->n_clients; i++) {
            if (strcmp(ld->clients[i].cl.name, cname) == 0) {
                err(fc, "duplicate section [client %s] (first at %s:%d)", cname,
                    ld->clients[i].at.file, ld->clients[i].at.line);
                return;
            }
        }
        ld->clients = realloc(ld->clients, (ld->n_clients + 1) * sizeof *ld->clients);
        if (!ld->clients)
            abort();
        struct client_build *cb = &ld->clients[ld->n_clients];
        memset(cb, 0, sizeof *cb);
        cb->cl.name = util_strdup(cname);
        cb->at = here(fc);
        char section[300];
        snprintf(section, sizeof section, "client %s", cname);
        apply_defaults(ld, client_keys, N_CLIENT_KEYS, section, &cb->cl);
        fc->kind = SEC_CLIENT;
        fc->client = ld->n_clients++;
        return;
    }
    const struct key *k = NULL;
    for (size_t i = 0; i < N_KEYS && !k; i++)
        if (strcmp(keys[i].section, name) == 0)
            k = &keys[i];
    if (!k) {
        err(fc, "unknown section [%s]", name);
        return;
    }
    fc->kind = SEC_GLOBAL;
    fc->section = k->section;
}

/* inih's find_chars_or_comment: where a value or header ends, honouring
 * inline comments (a comment prefix preceded by whitespace). */
static char *find_chars_or_comment(char *s, const char *chars)
{
    bool was_space = false;
    while (*s && (!chars || !strchr(chars, *s)) &&
           !(was_space && strchr(INI_INLINE_COMMENT_PREFIXES, *s))) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/* inih calls this for one line at a time, and calls on_value for a line
 * before asking for the next, so fc->line is the line on_value sees. Lines
 * inih would reject (or split, when too long) are reported here and handed
 * over as blank lines so inih and this reader agree on the state. */
static char *reader(char *str, int num, void *stream)
{
    struct file_ctx *fc = stream;
    errno = 0;
    ssize_t n = getline(&fc->buf, &fc->cap, fc->fp);
    if (n < 0) {
        if (ferror(fc->fp))
            fc->read_errno = errno ? errno : EIO;
        return NULL;
    }
    fc->line++;
    fc->continuation = false;
    char *s = fc->buf;
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    if (fc->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    bool ok = true;
    if (memchr(s, '\0', (size_t)n)) {
        err(fc, "line contains a NUL byte");
        ok = false;
    } else if (n + 2 > num) {
        err(fc, "line is longer than %d characters", num - 2);
        ok = false;
    } else {
        char *p = s;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p || strchr(INI_START_COMMENT_PREFIXES, *p)) {
            /* blank or comment */
        } else if (fc->prev_name && p > s) {
            /* inih r55 keeps inline comments on continuation lines */
            n = find_chars_or_comment(s, NULL) - s;
            fc->continuation = true;
        } else if (*p == '[') {
            char *end = find_chars_or_comment(p + 1, "]");
            if (*end != ']') {
                err(fc, "section header without ']'");
                ok = false;
            } else {
                char *name = util_strndup(p + 1, (size_t)(end - p - 1));
                section_begin(fc, name);
                free(name);
                fc->prev_name = false;
            }
        } else {
            char *end = find_chars_or_comment(p, "=:");
            if (*end != '=' && *end != ':') {
                err(fc, "expected 'name = value' or '[section]'");
                ok = false;
            } else {
                fc->prev_name = end > p; /* inih keeps no name for "= value" */
            }
        }
    }
    if (!ok)
        n = 0;
    memcpy(str, s, (size_t)n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

static int on_value(void *user, const char *section, const char *name, const char *value)
{
    struct file_ctx *fc = user;
    struct load *ld = fc->ld;
    char csection[300];

    if (fc->continuation) {
        if (fc->last && is_list(fc->last->type)) {
            void *base = fc->kind == SEC_CLIENT ? (void *)&ld->clients[fc->client].cl : &ld->v;
            const char *sec = fc->section;
            if (fc->kind == SEC_CLIENT) {
                snprintf(csection, sizeof csection, "client %s", ld->clients[fc->client].cl.name);
                sec = csection;
            }
            set_key(fc, sec, fc->last, base, value, true);
        } else if (fc->last || fc->last_single) {
            err(fc, "indented line continues '%s', which takes a single value", name);
        }
        return 1;
    }
    fc->last = NULL;
    fc->last_single = false;
    switch (fc->kind) {
    case SEC_TOP:
        if (strcmp(name, "include") == 0) {
            fc->last_single = true;
            include(fc, value);
        } else {
            err(fc, "'%s' must be inside a section (only include may come before the first one)",
                name);
        }
        break;
    case SEC_GLOBAL: {
        const struct key *k = find_key(keys, N_KEYS, fc->section, name);
        if (!k) {
            if (strcmp(name, "include") == 0)
                err(fc, "include is only allowed before the first section");
            else
                err(fc, "unknown key '%s' in [%s]", name, fc->section);
            break;
        }
        struct loc *seen = &ld->seen[k - keys];
        if (seen->file) {
            err(fc, "duplicate key '%s' in [%s] (first set at %s:%d)", name, fc->section,
                seen->file, seen->line);
            break;
        }
        *seen = here(fc);
        set_key(fc, fc->section, k, &ld->v, value, false);
        fc->last = k;
        break;
    }
    case SEC_CLIENT: {
        struct client_build *cb = &ld->clients[fc->client];
        snprintf(csection, sizeof csection, "client %s", cb->cl.name);
        const struct key *k = find_key(client_keys, N_CLIENT_KEYS, NULL, name);
        if (!k) {
            if (strcmp(name, "include") == 0)
                err(fc, "include is only allowed before the first section");
            else
                err(fc, "unknown key '%s' in [%s]", name, csection);
            break;
        }
        struct loc *seen = &cb->seen[k - client_keys];
        if (seen->file) {
            err(fc, "duplicate key '%s' in [%s] (first set at %s:%d)", name, csection, seen->file,
                seen->line);
            break;
        }
        *seen = here(fc);
        set_key(fc, csection, k, &cb->cl, value, false);
        fc->last = k;
        break;
    }
    case SEC_UNKNOWN:
        break; /* the section header was reported */
    }
    (void)section; /* the reader tracks sections (inih would not report empty ones) */
    return 1;
}

static const char *intern_file(struct load *ld, const char *path)
{
    ld->files = realloc(ld->files, (ld->n_files + 1) * sizeof *ld->files);
    if (!ld->files)
        abort();
    return ld->files[ld->n_files++] = util_strdup(path);
}

static bool parse_file(struct load *ld, const char *path, struct file_ctx *from)
{
    char *real = realpath(path, NULL);
    FILE *fp = NULL;
    if (real) {
        for (int i = 0; i < ld->depth; i++) {
            if (strcmp(ld->open[i], real) == 0) {
                err(from, "include loop: %s is already being read", path);
                free(real);
                return false;
            }
        }
        fp = fopen(path, "re");
        struct stat st;
        if (fp && (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode))) {
            /* A device or FIFO would be read forever. */
            fclose(fp);
            fp = NULL;
            errno = EINVAL;
        }
    }
    if (!fp) {
        if (from)
            err(from, "cannot read included file %s: %s", path, strerror(errno));
        else
            err_loc(ld, (struct loc){path, 0}, "cannot read: %s", strerror(errno));
        free(real);
        return false;
    }
    struct file_ctx fc = {.ld = ld, .fp = fp, .path = intern_file(ld, path), .kind = SEC_TOP};
    const char *slash = strrchr(path, '/');
    fc.dir =
        !slash ? util_strdup(".") : util_strndup(path, slash == path ? 1 : (size_t)(slash - path));
    ld->open[ld->depth++] = real;
    ini_parse_stream(reader, &fc, on_value, &fc);
    ld->open[--ld->depth] = NULL;
    if (fc.read_errno)
        err_loc(ld, (struct loc){fc.path, 0}, "cannot read: %s", strerror(fc.read_errno));
    fclose(fp);
    if (fc.buf)
        explicit_bzero(fc.buf, fc.cap); /* it held secret lines */
    free(fc.buf);
    free(fc.dir);
    free(real);
    return true;
}

/* ---- whole-snapshot checks */

static void finish_clients(struct load *ld)
{
    for (size_t i = 0; i < ld->n_clients; i++) {
        struct client_build *cb = &ld->clients[i];
        struct config_client *cl = &cb->cl;
        if (!cl->key) /* key defaults to NAME */
            cl->key = util_strdup(cl->name);
        if (!cl->secret)
            err_loc(ld, cb->at, "[client %s] has no secret: set secret or secret_file", cl->name);
        else if ((cl->secret_len = strlen(cl->secret)) < CONFIG_CLIENT_SECRET_MIN)
            err_loc(
                ld,
                loc_or(cb->seen[CK_SECRET].file ? cb->seen[CK_SECRET] : cb->seen[CK_SECRET_FILE],
                       cb->at.file),
                "[client %s] secret is shorter than %d bytes", cl->name, CONFIG_CLIENT_SECRET_MIN);
        struct config_rate *rates[1 + ACTION_COUNT] = {&cl->rate};
        for (int a = 0; a < ACTION_COUNT; a++)
            rates[1 + a] = &cl->action_rate[a];
        for (size_t r = 0; r < UG_ARRAY_LEN(rates); r++)
            if (rates[r]->burst <= 0)
                rates[r]->burst = rates[r]->rate > 1 ? rates[r]->rate : 1;
        if (!cl->all_services && cl->n_services == 0)
            err_loc(ld, loc_or(cb->seen[CK_SERVICES], cb->at.file),
                    "[client %s] services: no service given (use * for all)", cl->name);
        if (!cl->allow)
            err_loc(ld, loc_or(cb->seen[CK_ALLOW], cb->at.file),
                    "[client %s] allow: no action given", cl->name);
        for (size_t j = 0; j < i; j++) {
            const struct client_build *o = &ld->clients[j];
            if (strcmp(o->cl.key, cl->key) == 0) {
                err_loc(ld, cb->seen[CK_KEY].file ? cb->seen[CK_KEY] : cb->at,
                        "[client %s] key '%s' is already used by [client %s] (%s:%d)", cl->name,
                        cl->key, o->cl.name, o->at.file, o->at.line);
                break;
            }
        }
    }
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Config values win over the environment; an api_key_sid (config, or env
 * when the config names no auth token) selects API-key authentication. */
static void finish_credentials(struct load *ld, const char *file)
{
    struct values *v = &ld->v;
    struct loc at = {file, 0};
    const char *e;
    if (!v->c.account_sid && (e = env("TWILIO_ACCOUNT_SID"))) {
        if (!twilio_is_sid(e, strlen(e), "AC")) {
            err_loc(ld, at,
                    "environment variable TWILIO_ACCOUNT_SID is not an account SID (AC "
                    "followed by 32 hex digits)");
            return;
        }
        v->c.account_sid = util_strdup(e);
        twilio_sid_canon(v->c.account_sid);
    }
    if (!v->api_key_sid && !v->auth_token && (e = env("TWILIO_API_KEY"))) {
        if (!twilio_is_sid(e, strlen(e), "SK")) {
            err_loc(ld, at,
                    "environment variable TWILIO_API_KEY is not an API key SID (SK "
                    "followed by 32 hex digits)");
            return;
        }
        v->api_key_sid = util_strdup(e);
    }
    const char *user, *secret;
    if (v->api_key_sid) {
        user = v->api_key_sid;
        secret = v->api_key_secret ? v->api_key_secret : env("TWILIO_API_SECRET");
        if (!v->c.account_sid || !secret) {
            err_loc(ld, at,
                    "incomplete Twilio API key credentials: set [upstream] account_sid and "
                    "api_key_secret (or api_key_secret_file), or the environment variables "
                    "TWILIO_ACCOUNT_SID and TWILIO_API_SECRET");
            return;
        }
    } else {
        user = v->c.account_sid;
        secret = v->auth_token ? v->auth_token : env("TWILIO_AUTH_TOKEN");
        if (!user || !secret) {
            err_loc(ld, at,
                    "no Twilio credentials: set [upstream] account_sid and auth_token (or "
                    "auth_token_file), or the environment variables TWILIO_ACCOUNT_SID and "
                    "TWILIO_AUTH_TOKEN (API keys: api_key_sid/api_key_secret, "
                    "TWILIO_API_KEY/TWILIO_API_SECRET)");
            return;
        }
    }
    v->c.auth_user = util_strdup(user);
    v->c.auth_secret = util_strdup(secret);
}

/* The webhook receiver: a path of its own, a URL Twilio can have signed,
 * and the key Twilio signs with (the account's auth token; with API-key
 * credentials usergate does not have it, so it must be given). */
static void finish_webhooks(struct load *ld, const char *file)
{
    struct values *v = &ld->v;
    struct config *c = &v->c;
    struct loc at = {file, 0};
    if (!c->webhooks_enabled)
        return;
    const char *p = c->webhook_path;
    if (!p || p[0] != '/' || strpbrk(p, "?# \t%"))
        err_loc(ld, at, "[webhooks] path must start with '/' and hold no '?', '#', '%%' or space");
    const char *u = c->webhook_public_url;
    if (u && ((strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0) ||
              strpbrk(u, "?# ") || !strchr(u + (u[4] == 's' ? 8 : 7), '/')))
        err_loc(ld, at,
                "[webhooks] public_url must be the full http(s) URL Twilio calls (scheme, host, "
                "optional port, path), without a query or fragment");
    const char *token = v->webhook_auth_token;
    if (!token && !v->api_key_sid)
        token = c->auth_secret;
    if (!token) {
        err_loc(ld, at,
                "[webhooks] with API-key credentials usergate does not know the auth token "
                "Twilio signs events with: set webhook_auth_token_file");
        return;
    }
    c->webhook_token = util_strdup(token);
}

/* Sentinel: the primary is found by name, so both go together; the address
 * key is then unused (as with cluster). */
static void finish_redis(struct load *ld, const char *file)
{
    struct config *c = &ld->v.c;
    struct loc at = {file, 0};
    if (c->n_redis_sentinels && !c->redis_master_name)
        err_loc(ld, at, "[redis] sentinels needs master_name (the name the sentinels monitor)");
    if (!c->n_redis_sentinels && c->redis_master_name)
        err_loc(ld, at, "[redis] master_name needs sentinels (their HOST:PORT list)");
    for (size_t i = 0; i < c->n_redis_sentinels; i++)
        if (c->redis_sentinels[i].is_unix)
            err_loc(ld, at, "[redis] sentinels: %s: sentinels are reached over TCP (HOST:PORT)",
                    c->redis_sentinels[i].text);
    if (c->n_redis_cluster && c->n_redis_sentinels)
        err_loc(ld, at,
                "[redis] cluster and sentinels exclude each other: a Redis Cluster fails "
                "over by itself");
    for (size_t i = 0; i < c->n_redis_cluster; i++)
        if (c->redis_cluster[i].is_unix)
            err_loc(ld, at, "[redis] cluster: %s: cluster nodes are reached over TCP (HOST:PORT)",
                    c->redis_cluster[i].text);
}

/* The access log's identity-hash key: from log_hash_key, else from the Twilio
 * secret, so every instance of an account hashes an identity alike (lines
 * correlate across instances and restarts) and whoever holds the secret can
 * compute the hash of a given identity to search the logs. */
static void finish_log_key(struct values *v)
{
    const char *material = v->log_hash_key ? v->log_hash_key : v->c.auth_secret;
    static const uint64_t salt[2][2] = {{0x7573657267617465ULL, 0x6c6f672d6b657930ULL},
                                        {0x7573657267617465ULL, 0x6c6f672d6b657931ULL}};
    for (int i = 0; i < 2; i++)
        v->c.log_key[i] = material ? util_siphash(salt[i], material, strlen(material)) : 0;
}

/* Twilio's edge/region routing, as its helper libraries do it: only URLs of
 * the plain https://PRODUCT.twilio.com shape are rewritten. */
static void apply_edge_region(struct values *v)
{
    const char *edge = v->c.edge, *region = v->c.region;
    if (!edge && !region)
        return;
    if (edge && !region)
        region = "us1";
    char **urls[] = {&v->c.conversations_url, &v->c.chat_url};
    for (size_t i = 0; i < UG_ARRAY_LEN(urls); i++) {
        const char *u = *urls[i];
        if (!u || strncmp(u, "https://", 8) != 0)
            continue;
        const char *prod = u + 8;
        size_t plen = strspn(prod, "abcdefghijklmnopqrstuvwxyz");
        if (!plen || strcmp(prod + plen, ".twilio.com") != 0)
            continue;
        struct buf b = {0};
        buf_printf(&b, "https://%.*s.", (int)plen, prod);
        if (edge)
            buf_printf(&b, "%s.", edge);
        buf_printf(&b, "%s.twilio.com", region);
        free(*urls[i]);
        *urls[i] = b.data;
    }
}

/* True for a host part that is a loopback name or address. */
static bool host_is_loopback(const char *host, size_t n)
{
    char h[64];
    if (n >= sizeof h)
        return false;
    memcpy(h, host, n);
    h[n] = '\0';
    if (strcasecmp(h, "localhost") == 0 || strcmp(h, "::1") == 0 || strcmp(h, "[::1]") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Rules that need the whole snapshot: credentials never cross a network in
 * clear text unless asked to, a reachable admin listener needs a token, and
 * readable secrets stop the start (or warn, with strict_permissions off). */
static void finish_security(struct load *ld, const char *file)
{
    struct config *c = &ld->v.c;
    const char *urls[] = {c->conversations_url, c->chat_url};
    const char *names[] = {"conversations_url", "chat_url"};
    for (size_t i = 0; i < UG_ARRAY_LEN(urls); i++) {
        if (!urls[i] || strncmp(urls[i], "http://", 7) != 0 || c->allow_insecure_upstream)
            continue;
        const char *h = urls[i] + 7;
        size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
        if (!host_is_loopback(h, n))
            err_loc(ld, (struct loc){file, 0},
                    "[upstream] %s: http:// to a non-loopback host would send the account's "
                    "credentials in clear text; use https:// (or set allow_insecure_upstream = on)",
                    names[i]);
    }
    const struct config_addr *adm = &c->admin_listen;
    if (adm->text && !c->admin_token &&
        (adm->is_unix ? false : !host_is_loopback(adm->host, strlen(adm->host))))
        err_loc(ld, (struct loc){file, 0},
                "[server] admin_listen %s is not a loopback address: set admin_token_file so "
                "purges need a token",
                adm->text);
    for (size_t i = 0; i < ld->n_perms; i++) {
        if (c->strict_permissions)
            err_loc(ld, ld->perms[i].at, "%s (or set strict_permissions = off)", ld->perms[i].msg);
        else
            log_warn("%s:%d: %s", ld->perms[i].at.file, ld->perms[i].at.line, ld->perms[i].msg);
    }
}

static void load_free(struct load *ld)
{
    for (size_t i = 0; i < ld->n_perms; i++)
        free(ld->perms[i].msg);
    free(ld->perms);
    config_free_fields(&ld->v.c);
    secret_free(ld->v.auth_token);
    free(ld->v.api_key_sid);
    secret_free(ld->v.api_key_secret);
    secret_free(ld->v.log_hash_key);
    secret_free(ld->v.webhook_auth_token);
    for (size_t i = 0; i < ld->n_clients; i++)
        client_free(&ld->clients[i].cl);
    free(ld->clients);
    for (size_t i = 0; i < ld->n_files; i++)
        free(ld->files[i]);
    free(ld->files);
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    struct config_errors local = {0};
    struct load ld = {.errs = errs ? errs : &local, .cred_dir = env("CREDENTIALS_DIRECTORY")};
    apply_defaults(&ld, keys, N_KEYS, NULL, &ld.v);
    if (parse_file(&ld, path, NULL)) {
        for (size_t i = 0; i < N_KEYS; i++) {
            const struct key *k = &keys[i];
            if (k->type == K_ADDR_LIST && k->min && *(size_t *)((char *)&ld.v + k->off_n) == 0)
                err_loc(&ld, loc_or(ld.seen[i], path), "[%s] %s: no address given", k->section,
                        k->name);
        }
        finish_clients(&ld);
        finish_credentials(&ld, path);
        finish_webhooks(&ld, path);
        finish_redis(&ld, path);
        finish_security(&ld, path);
        finish_log_key(&ld.v);
        apply_edge_region(&ld.v);
    }
    struct config *c = NULL;
    if (ld.n_errs == 0) {
        c = util_calloc(1, sizeof *c);
        *c = ld.v.c;
        memset(&ld.v.c, 0, sizeof ld.v.c);
        c->clients = util_calloc(ld.n_clients ? ld.n_clients : 1, sizeof *c->clients);
        for (size_t i = 0; i < ld.n_clients; i++) {
            c->clients[i] = ld.clients[i].cl;
            memset(&ld.clients[i].cl, 0, sizeof ld.clients[i].cl);
        }
        c->n_clients = ld.n_clients;
        c->path = util_strdup(path);
        c->refs = 1;
        static uint64_t generations;
        c->generation = __atomic_add_fetch(&generations, 1, __ATOMIC_RELAXED);
    }
    load_free(&ld);
    config_errors_free(&local);
    return c;
}

/* ---- snapshot use */

struct config *config_ref(struct config *c)
{
    if (c)
        __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void config_unref(struct config *c)
{
    if (!c || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    config_free_fields(c);
    free(c);
}

const struct config_client *config_find_client(const struct config *c, const char *key,
                                               size_t keylen)
{
    for (size_t i = 0; i < c->n_clients; i++) {
        const struct config_client *cl = &c->clients[i];
        if (strlen(cl->key) == keylen && memcmp(cl->key, key, keylen) == 0)
            return cl;
    }
    return NULL;
}

bool config_client_allows_service(const struct config_client *cl, const char *service)
{
    if (cl->all_services)
        return true;
    for (size_t i = 0; i < cl->n_services; i++)
        if (strcmp(cl->services[i], service) == 0) /* both canonical (twilio_sid_canon) */
            return true;
    return false;
}

static void render_restart_value(const struct key *k, const struct config *c, struct buf *out)
{
    const char *base = (const char *)c; /* struct values starts with struct config */
    switch (k->type) {
    case K_ADDR_LIST: {
        const struct config_addr *list = *(struct config_addr *const *)(base + k->off);
        size_t n = *(const size_t *)(base + k->off_n);
        for (size_t i = 0; i < n; i++)
            buf_printf(out, "%s%s", i ? ", " : "", list[i].text);
        break;
    }
    case K_ADDR: {
        const struct config_addr *a = (const struct config_addr *)(base + k->off);
        buf_puts(out, a->text ? a->text : "");
        break;
    }
    case K_WORKERS:
        buf_printf(out, "%d", *(const int *)(base + k->off));
        break;
    case K_INT:
        buf_printf(out, "%ld", *(const long *)(base + k->off));
        break;
    default:
        abort(); /* a restart row of a type nobody taught this function */
    }
}

size_t config_restart_needed(const struct config *old, const struct config *nw,
                             struct config_errors *msgs)
{
    size_t count = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        if (!k->restart)
            continue;
        struct buf a = {0}, b = {0};
        render_restart_value(k, old, &a);
        render_restart_value(k, nw, &b);
        buf_puts(&a, "");
        buf_puts(&b, "");
        if (strcmp(a.data, b.data) != 0) {
            count++;
            if (msgs)
                errs_add(msgs, nw->path ? nw->path : "config", 0,
                         "[%s] %s changed from '%s' to '%s': restart usergate to apply it",
                         k->section, k->name, a.data, b.data);
        }
        buf_free(&a);
        buf_free(&b);
    }
    return count;
}

void config_dump_defaults(struct buf *out)
{
    for (size_t i = 0; i < N_KEYS; i++)
        buf_printf(out, "%s.%s=%s\n", keys[i].section, keys[i].name, keys[i].def);
}

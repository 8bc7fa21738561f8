/* Unit tests for config: real files under a mkdtemp directory, one
 * subdirectory per case. Error cases compare the exact "FILE:LINE: message"
 * list; every message of every case is also checked for leaked secrets (all
 * secret values in these cases contain SECRET_MARK). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* Case tables name only the fields a case needs (file modes default to 0600). */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* By path: a generated config.h in the build directory would shadow it. */
#include "config.h"
#include "log.h"
#include "route.h"
#include "util.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif

#define AC "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define AC2 "ACbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define SK "SK0123456789abcdef0123456789abcdef"
#define IS1 "IS0123456789abcdef0123456789abcdef"
#define IS2 "ISfedcba9876543210fedcba9876543210"
#define SECRET_MARK "SeCrEt-0123456789"

#define DIR_MAX 256 /* case directories: short, so paths built on them fit */
static char root[64];
static unsigned case_no;

static const char *const env_names[] = {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY",
                                        "TWILIO_API_SECRET", "CREDENTIALS_DIRECTORY"};

struct file {
    const char *name; /* relative to the case directory */
    const char *text;
    mode_t mode; /* 0: 0600 */
};

/* A fresh directory per case so files of one case never leak into another. */
static void new_case_dir(char *dir, size_t len)
{
    snprintf(dir, len, "%s/case%u", root, ++case_no);
    assert_int_equal(mkdir(dir, 0700), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (char *p = path + strlen(dir) + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        assert_true(mkdir(path, 0700) == 0 || errno == EEXIST);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    /* Files that hold secrets must not be readable by others (config.c). */
    assert_int_equal(chmod(path, 0600), 0);
}

static void write_files(const char *dir, const struct file *files, size_t n)
{
    for (size_t i = 0; i < n && files[i].name; i++) {
        write_file(dir, files[i].name, files[i].text);
        if (files[i].mode) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
            assert_int_equal(chmod(path, files[i].mode), 0);
        }
    }
}

/* Clears every variable config reads, then sets "NAME=value" entries; "{D}"
 * in a value is the case directory. */
static void set_env(const char *const *env, size_t n, const char *dir)
{
    for (size_t i = 0; i < UG_ARRAY_LEN(env_names); i++)
        unsetenv(env_names[i]);
    for (size_t i = 0; i < n && env[i]; i++) {
        char name[64];
        const char *eq = strchr(env[i], '=');
        assert_non_null(eq);
        snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
        char value[PATH_MAX];
        if (strncmp(eq + 1, "{D}", 3) == 0)
            snprintf(value, sizeof value, "%s%s", dir, eq + 4);
        else
            snprintf(value, sizeof value, "%s", eq + 1);
        assert_int_equal(setenv(name, value, 1), 0);
    }
}

static void env_creds(void)
{
    static const char *const env[] = {"TWILIO_ACCOUNT_SID=" AC,
                                      "TWILIO_AUTH_TOKEN=env" SECRET_MARK};
    set_env(env, UG_ARRAY_LEN(env), NULL);
}

/* Replaces every "{D}" in pattern with dir. */
static char *expand(const char *pattern, const char *dir)
{
    struct buf b = {0};
    for (const char *p = pattern; *p;) {
        if (strncmp(p, "{D}", 3) == 0) {
            buf_puts(&b, dir);
            p += 3;
        } else {
            buf_append(&b, p++, 1);
        }
    }
    buf_puts(&b, "");
    return b.data;
}

static void assert_no_secret(const struct config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        if (strstr(errs->msgs[i], SECRET_MARK))
            fail_msg("secret leaked into: %s", errs->msgs[i]);
}

static struct config *load_case(const char *dir, struct config_errors *errs)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/main.conf", dir);
    return config_load(path, errs);
}

/* ---- error cases */

#define CLIENT_A "[client a]\nsecret = a" SECRET_MARK "\n"
#define NO_CREDS                                                                                   \
    "{D}/main.conf: no Twilio credentials: set [upstream] account_sid and auth_token (or "         \
    "auth_token_file), or the environment variables TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "     \
    "(API keys: api_key_sid/api_key_secret, TWILIO_API_KEY/TWILIO_API_SECRET)"

struct err_case {
    const char *what;
    struct file files[4]; /* files[0] is main.conf */
    const char *env[5];   /* NULL env[0]: valid credentials in the environment */
    bool no_env;          /* no environment at all */
    const char *want[8];
};

static const struct err_case err_cases[] = {
    {"unknown key",
     {{"main.conf", "[server]\nfoo = 1\n"}},
     .want = {"{D}/main.conf:2: unknown key 'foo' in [server]"}},
    {"unknown section, its keys ignored",
     {{"main.conf", "; comment\n[bogus]\nx = 1\n"}},
     .want = {"{D}/main.conf:2: unknown section [bogus]"}},
    {"bad int",
     {{"main.conf", "[server]\nmax_pipeline = many\n"}},
     .want = {"{D}/main.conf:2: [server] max_pipeline: 'many' is not an integer"}},
    {"out of range",
     {{"main.conf", "[server]\nworkers = 65\n[redis]\ntimeout_ms = 0\n"}},
     .want = {"{D}/main.conf:2: [server] workers: 65 is out of range 1..64",
              "{D}/main.conf:4: [redis] timeout_ms: 0 is out of range 1..60000 (milliseconds)"}},
    {"workers neither int nor auto",
     {{"main.conf", "[server]\nworkers = all\n"}},
     .want = {"{D}/main.conf:2: [server] workers: 'all' is not an integer or auto"}},
    {"bad bool",
     {{"main.conf", "[server]\nlog_identities = maybe\n"}},
     .want = {"{D}/main.conf:2: [server] log_identities: 'maybe' is not a boolean (on/off, "
              "yes/no, true/false, 1/0)"}},
    {"bad enum and log level",
     {{"main.conf", "[server]\naccess_log = xml\nlog_level = loud\n"}},
     .want = {"{D}/main.conf:2: [server] access_log: 'xml' is not one of off/logfmt/json",
              "{D}/main.conf:3: [server] log_level: 'loud' is not one of error, warning, "
              "notice, info, debug"}},
    {"bad account_sid, value not echoed",
     {{"main.conf", "[upstream]\naccount_sid = " SECRET_MARK "\n"}},
     .want = {"{D}/main.conf:2: [upstream] account_sid: not an account SID (AC followed by 32 "
              "hex digits)"}},
    {"bad default_service_sid",
     {{"main.conf", "[upstream]\ndefault_service_sid = " AC "\n"}},
     .want = {"{D}/main.conf:2: [upstream] default_service_sid: not a service SID (IS followed "
              "by 32 hex digits)"}},
    {"bad service in a client",
     {{"main.conf", CLIENT_A "services = " IS1 ", ISnope\n"}},
     .want = {"{D}/main.conf:3: [client a] services: item 2 is not a service SID (IS followed "
              "by 32 hex digits)"}},
    {"star mixed with SIDs",
     {{"main.conf", CLIENT_A "services = *, " IS1 "\n"}},
     .want = {"{D}/main.conf:3: [client a] services: '*' cannot be combined with service SIDs"}},
    {"unreadable secret file",
     {{"main.conf", "[upstream]\nauth_token_file = missing.txt\n"}},
     .want = {"{D}/main.conf:2: cannot read secret file {D}/missing.txt: No such file or "
              "directory"}},
    {"empty secret file",
     {{"main.conf", "[redis]\npassword_file = empty\n"}, {"empty", "\n"}},
     .want = {"{D}/main.conf:2: secret file {D}/empty is empty"}},
    {"missing credentials", {{"main.conf", "[server]\n"}}, .no_env = true, .want = {NO_CREDS}},
    {"account SID without token",
     {{"main.conf", "[upstream]\naccount_sid = " AC "\n"}},
     .no_env = true,
     .want = {NO_CREDS}},
    {"API key without secret",
     {{"main.conf", "[upstream]\naccount_sid = " AC "\napi_key_sid = " SK "\n"}},
     .no_env = true,
     .want = {"{D}/main.conf: incomplete Twilio API key credentials: set [upstream] account_sid "
              "and api_key_secret (or api_key_secret_file), or the environment variables "
              "TWILIO_ACCOUNT_SID and TWILIO_API_SECRET"}},
    {"bad TWILIO_ACCOUNT_SID",
     {{"main.conf", "[server]\n"}},
     .env = {"TWILIO_ACCOUNT_SID=" SECRET_MARK, "TWILIO_AUTH_TOKEN=x"},
     .want = {"{D}/main.conf: environment variable TWILIO_ACCOUNT_SID is not an account SID (AC "
              "followed by 32 hex digits)"}},
    {"duplicate client key",
     {{"main.conf", CLIENT_A "[client b]\nkey = a\nsecret = b" SECRET_MARK "\n"}},
     .want = {"{D}/main.conf:4: [client b] key 'a' is already used by [client a] "
              "({D}/main.conf:1)"}},
    {"duplicate client key by default name",
     {{"main.conf", "[client b]\nkey = a\nsecret = x-secret-12345\n" CLIENT_A}},
     .want = {"{D}/main.conf:4: [client a] key 'a' is already used by [client b] "
              "({D}/main.conf:1)"}},
    {"duplicate client section",
     {{"main.conf", CLIENT_A "[client a]\nsecret = y-secret-12345\n"}},
     .want = {"{D}/main.conf:3: duplicate section [client a] (first at {D}/main.conf:1)"}},
    {"client without secret",
     {{"main.conf", "[client a]\nallow = fetch\n[client b]\n"}},
     .want = {"{D}/main.conf:1: [client a] has no secret: set secret or secret_file",
              "{D}/main.conf:3: [client b] has no secret: set secret or secret_file"}},
    {"client with secret and secret_file",
     {{"main.conf", CLIENT_A "secret_file = s\n"}, {"s", "file" SECRET_MARK "\n"}},
     .want = {"{D}/main.conf:3: [client a] secret_file: set only one of secret and "
              "secret_file"}},
    {"client key with a colon, bad name, nameless client",
     {{"main.conf", CLIENT_A "key = a:b\n[client x/y]\nsecret = z-secret-12345\n[client]\n"}},
     .want = {"{D}/main.conf:3: [client a] key: must be non-empty and contain no ':'",
              "{D}/main.conf:4: [client x/y]: a client name is letters, digits, '-', '_' and "
              "'.'",
              "{D}/main.conf:6: section [client] needs a name: [client NAME]"}},
    {"bad allow",
     {{"main.conf", CLIENT_A "allow = fetch, bogus\n"}},
     .want = {"{D}/main.conf:3: [client a] allow: unknown action 'bogus' (expected fetch, "
              "create, update, delete, list, sub)"}},
    {"empty allow and services",
     {{"main.conf", CLIENT_A "allow =\nservices = ,\n"}},
     .want = {"{D}/main.conf:4: [client a] services: no service given (use * for all)",
              "{D}/main.conf:3: [client a] allow: no action given"}},
    {"duplicate key",
     {{"main.conf", "[server]\nworkers = 2\n[cache]\nttl = 1\n[server]\nworkers = 3\n"}},
     .want = {"{D}/main.conf:6: duplicate key 'workers' in [server] (first set at "
              "{D}/main.conf:2)"}},
    {"key before any section",
     {{"main.conf", "workers = 2\n"}},
     .want = {"{D}/main.conf:1: 'workers' must be inside a section (only include may come "
              "before the first one)"}},
    {"include inside a section",
     {{"main.conf", "[server]\ninclude = x.conf\n"}},
     .want = {"{D}/main.conf:2: include is only allowed before the first section"}},
    {"include loop",
     {{"main.conf", "include = main.conf\n"}},
     .want = {"{D}/main.conf:1: include loop: {D}/main.conf is already being read"}},
    {"errors inside included files name them",
     {{"main.conf", "include = conf.d/*.conf\ninclude = none/*.conf\n[server]\nbad = 1\n"},
      {"conf.d/b.conf", "[server]\nbogus = 1\n"},
      {"conf.d/a.conf", "include = ../main.conf\n[client a]\n"}},
     .want = {"{D}/conf.d/a.conf:1: include loop: {D}/conf.d/../main.conf is already being read",
              "{D}/conf.d/b.conf:2: unknown key 'bogus' in [server]",
              "{D}/main.conf:4: unknown key 'bad' in [server]",
              "{D}/conf.d/a.conf:2: [client a] has no secret: set secret or secret_file"}},
    {"scalar continued on an indented line",
     {{"main.conf", "[server]\nworkers = 2\n  3\n"}},
     .want = {"{D}/main.conf:3: indented line continues 'workers', which takes a single value"}},
    {"syntax errors, all reported",
     {{"main.conf", "[server\nworkers\n[server]\nmax_pipeline = 0\n" SECRET_MARK
                    " no equals\nlog_level = info\n"}},
     .want = {"{D}/main.conf:1: section header without ']'",
              "{D}/main.conf:2: expected 'name = value' or '[section]'",
              "{D}/main.conf:4: [server] max_pipeline: 0 is out of range 1..1024",
              "{D}/main.conf:5: expected 'name = value' or '[section]'"}},
    {"line too long",
     {{"main.conf",
       "[redis]\nkey_prefix = "
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nbogus = 1\n"}},
     .want = {"{D}/main.conf:2: line is longer than 198 characters",
              "{D}/main.conf:3: unknown key 'bogus' in [redis]"}},
    {"bad addresses and URLs",
     {{"main.conf", "[server]\nlisten = 127.0.0.1:8080, nope, [::1]:0\nadmin_listen = "
                    "[zz]:1\n[upstream]\nchat_url = ftp://x\n[redis]\naddress =\n"}},
     .want = {"{D}/main.conf:2: [server] listen: 'nope' is not an address (HOST:PORT, "
              "[IPv6]:PORT or unix:/path)",
              "{D}/main.conf:2: [server] listen: '[::1]:0' is not an address (HOST:PORT, "
              "[IPv6]:PORT or unix:/path)",
              "{D}/main.conf:3: [server] admin_listen: '[zz]:1' is not an address (HOST:PORT, "
              "[IPv6]:PORT or unix:/path)",
              "{D}/main.conf:5: [upstream] chat_url: 'ftp://x' must start with http:// or "
              "https://",
              "{D}/main.conf:7: [redis] address: an address is required"}},
    {"secrets in conflicts and unknown keys are not echoed",
     {{"main.conf", "[upstream]\nauth_token = t" SECRET_MARK "\nauth_token_file = "
                    "tok\nauth_tokn = " SECRET_MARK "\n[redis]\npassword = p" SECRET_MARK
                    " ; comment\npassword_file = nothere\n"},
      {"tok", "f" SECRET_MARK}},
     .want = {"{D}/main.conf:3: [upstream] auth_token_file: set only one of auth_token and "
              "auth_token_file",
              "{D}/main.conf:4: unknown key 'auth_tokn' in [upstream]",
              "{D}/main.conf:7: [redis] password_file: set only one of password and "
              "password_file"}},
    {"client secret too short",
     {{"main.conf", "[client a]\nsecret = short-pw\n"}},
     .want = {"{D}/main.conf:2: [client a] secret is shorter than 12 bytes"}},
    {"client secret file too short",
     {{"main.conf", "[client a]\nsecret_file = s\n"}, {"s", "short-pw\n"}},
     .want = {"{D}/main.conf:2: [client a] secret is shorter than 12 bytes"}},
    {"config file holding a secret readable by others",
     {{"main.conf", "[upstream]\nauth_token = t" SECRET_MARK "\n", 0644}},
     .want = {"{D}/main.conf:2: [upstream] auth_token: {D}/main.conf holds a secret but is "
              "readable by group or others (mode 644); chmod 600 it, or move the secret to a "
              "*_file (or set strict_permissions = off)"}},
    {"secret file readable by the group",
     {{"main.conf", "[client a]\nsecret_file = s\n"}, {"s", "a" SECRET_MARK "\n", 0640}},
     .want = {"{D}/main.conf:2: [client a] secret_file: secret file {D}/s is readable by group "
              "or others (mode 640); chmod 600 it (or set strict_permissions = off)"}},
    {"an included client file holding a secret, readable by others",
     {{"main.conf", "include = conf.d/*.conf\n"}, {"conf.d/a.conf", CLIENT_A, 0604}},
     .want = {"{D}/conf.d/a.conf:2: [client a] secret: {D}/conf.d/a.conf holds a secret but is "
              "readable by group or others (mode 604); chmod 600 it, or move the secret to a "
              "*_file (or set strict_permissions = off)"}},
    {"credentials in clear text to a remote upstream",
     {{"main.conf", "[upstream]\nconversations_url = http://twilio.example.com\n"
                    "chat_url = http://10.0.0.1:8080/\n"}},
     .want = {"{D}/main.conf: [upstream] conversations_url: http:// to a non-loopback host would "
              "send the account's credentials in clear text; use https:// (or set "
              "allow_insecure_upstream = on)",
              "{D}/main.conf: [upstream] chat_url: http:// to a non-loopback host would send "
              "the account's credentials in clear text; use https:// (or set "
              "allow_insecure_upstream = on)"}},
    {"admin listener reachable without a token",
     {{"main.conf", "[server]\nadmin_listen = 0.0.0.0:9090\n"}},
     .want = {"{D}/main.conf: [server] admin_listen 0.0.0.0:9090 is not a loopback address: set "
              "admin_token_file so purges need a token"}},
    {"bad networks",
     {{"main.conf", CLIENT_A "networks = 10.0.0.0/33, 10.1.0.0/8, nowhere, *\n"}},
     .want = {"{D}/main.conf:3: [client a] networks: '10.0.0.0/33': prefix length out of range "
              "(expected CIDR like 10.0.0.0/8, an address, unix or *)",
              "{D}/main.conf:3: [client a] networks: '10.1.0.0/8': address has bits set beyond "
              "the prefix length (expected CIDR like 10.0.0.0/8, an address, unix or *)",
              "{D}/main.conf:3: [client a] networks: 'nowhere': not an IPv4 or IPv6 address "
              "(expected CIDR like 10.0.0.0/8, an address, unix or *)"}},
    {"bad rates",
     {{"main.conf", CLIENT_A "rate = fast\nburst.create = -1\nrate.nope = 1\n"}},
     .want = {"{D}/main.conf:3: [client a] rate: 'fast' is not a number from 0 to 1000000",
              "{D}/main.conf:4: [client a] burst.create: '-1' is not a number from 0 to 1000000",
              "{D}/main.conf:5: unknown key 'rate.nope' in [client a]"}},
    {"webhooks with API keys need the signing token",
     {{"main.conf",
       "[upstream]\naccount_sid = " AC "\napi_key_sid = SK0123456789abcdef0123456789abcdef"
       "\napi_key_secret_file = k\n[webhooks]\nenabled = on\n"},
      {"k", "key-secret-0123\n"}},
     .want = {"{D}/main.conf: [webhooks] with API-key credentials usergate does not know the auth "
              "token Twilio signs events with: set webhook_auth_token_file"}},
    {"bad webhook path and public URL",
     {{"main.conf", "[webhooks]\nenabled = on\npath = twilio?x\npublic_url = "
                    "https://gw.example.com\n"}},
     .want = {"{D}/main.conf: [webhooks] path must start with '/' and hold no '?', '#', '%' or "
              "space",
              "{D}/main.conf: [webhooks] public_url must be the full http(s) URL Twilio calls "
              "(scheme, host, optional port, path), without a query or fragment"}},
    {"sentinels without master_name, and a unix sentinel",
     {{"main.conf", "[redis]\nsentinels = 127.0.0.1:26379, unix:/run/s.sock\n"}},
     .want = {"{D}/main.conf: [redis] sentinels needs master_name (the name the sentinels "
              "monitor)",
              "{D}/main.conf: [redis] sentinels: unix:/run/s.sock: sentinels are reached over TCP "
              "(HOST:PORT)"}},
    {"master_name without sentinels",
     {{"main.conf", "[redis]\nmaster_name = main\n"}},
     .want = {"{D}/main.conf: [redis] master_name needs sentinels (their HOST:PORT list)"}},
    {"an empty listen is still refused",
     {{"main.conf", "[server]\nlisten =\n"}},
     .want = {"{D}/main.conf:2: [server] listen: no address given"}},
    {"unreadable main file",
     {{NULL, NULL}},
     .want = {"{D}/main.conf: cannot read: No such file or directory"}},
};

static void test_error_cases(void **state)
{
    for (size_t i = 0; i < UG_ARRAY_LEN(err_cases); i++) {
        const struct err_case *c = &err_cases[i];
        char dir[DIR_MAX];
        new_case_dir(dir, sizeof dir);
        write_files(dir, c->files, UG_ARRAY_LEN(c->files));
        if (c->no_env || c->env[0])
            set_env(c->env, UG_ARRAY_LEN(c->env), dir);
        else
            env_creds();
        struct config_errors errs = {0};
        struct config *cfg = load_case(dir, &errs);
        size_t nwant = 0;
        while (nwant < UG_ARRAY_LEN(c->want) && c->want[nwant])
            nwant++;
        if (cfg || errs.n != nwant) {
            for (size_t j = 0; j < errs.n; j++)
                fprintf(stderr, "  got: %s\n", errs.msgs[j]);
            fail_msg("case '%s': %zu errors, want %zu", c->what, errs.n, nwant);
        }
        for (size_t j = 0; j < nwant; j++) {
            char *want = expand(c->want[j], dir);
            if (strcmp(errs.msgs[j], want) != 0)
                fail_msg("case '%s' error %zu:\n  got:  %s\n  want: %s", c->what, j, errs.msgs[j],
                         want);
            free(want);
        }
        assert_no_secret(&errs);
        config_errors_free(&errs);
    }
}

/* Include chains: eight levels deep load, a ninth is refused. */
static void test_include_depth(void **state)
{
    static const struct {
        int levels;
        size_t want_errors;
    } cases[] = {{8, 0}, {9, 1}};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char dir[DIR_MAX], name[32], text[64];
        new_case_dir(dir, sizeof dir);
        env_creds();
        write_file(dir, "main.conf", "include = l1.conf\n");
        for (int l = 1; l <= cases[i].levels; l++) {
            snprintf(name, sizeof name, "l%d.conf", l);
            if (l < cases[i].levels)
                snprintf(text, sizeof text, "include = l%d.conf\n", l + 1);
            else
                snprintf(text, sizeof text, "[client deep]\nsecret = x-secret-12345\n");
            write_file(dir, name, text);
        }
        struct config_errors errs = {0};
        struct config *cfg = load_case(dir, &errs);
        assert_int_equal(errs.n, cases[i].want_errors);
        if (cases[i].want_errors) {
            assert_null(cfg);
            char *want = expand("{D}/l8.conf:1: includes nested more than 8 levels deep", dir);
            assert_string_equal(errs.msgs[0], want);
            free(want);
        } else {
            assert_non_null(cfg);
            assert_int_equal(cfg->n_clients, 1);
            assert_string_equal(cfg->clients[0].name, "deep");
        }
        config_unref(cfg);
        config_errors_free(&errs);
    }
}

/* ---- good files */

static void test_good_file(void **state)
{
    char dir[DIR_MAX];
    new_case_dir(dir, sizeof dir);
    static const char *const env[] = {"TWILIO_ACCOUNT_SID=" AC2, "TWILIO_AUTH_TOKEN=envtok"};
    set_env(env, UG_ARRAY_LEN(env), dir);
    write_file(dir, "token", "filetok\n");
    write_file(dir, "clients/billing.secret", "billing-pw-0123456789\n");
    write_file(dir, "main.conf",
               "; usergate test\n"
               "include = conf.d/*.conf\n"
               "[server]\n"
               "listen = 127.0.0.1:8080, [::1]:8081,\n"
               "    unix:/run/usergate.sock ; comment\n"
               "admin_listen =\n"
               "workers = auto\n"
               "max_body_bytes = 2048\n"
               "log_level = debug\n"
               "access_log = json\n"
               "log_identities = yes\n"
               "[upstream]\n"
               "conversations_url = http://127.0.0.1:9999/\n"
               "chat_url = https://chat.example.com//\n"
               "account_sid = " AC "\n"
               "auth_token_file = token\n"
               "default_service_sid = " IS1 "\n"
               "max_retries = 0\n"
               "public_url = https://usergate.internal/\n"
               "[redis]\n"
               "address = unix:/run/redis/redis.sock\n"
               "username = ug\n"
               "password = pw;x\n"
               "key_prefix = t:\n"
               "[cache]\n"
               "ttl = 60\n"
               "[client billing]\n"
               "secret_file = clients/billing.secret\n"
               "services = " IS1 ",\n"
               "  " IS2 ", " IS1 "\n"
               "allow = fetch, sub\n");
    write_file(dir, "conf.d/20-b.conf",
               "[client b]\nkey = team-b\nsecret = b-pw-0123456789\nservices = *\n");
    write_file(dir, "conf.d/10-a.conf", "[client a]\nsecret = a-pw-0123456789\n");

    struct config_errors errs = {0};
    struct config *c = load_case(dir, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    assert_non_null(c);
    assert_int_equal(errs.n, 0);

    assert_int_equal(c->n_listen, 3);
    assert_string_equal(c->listen[0].text, "127.0.0.1:8080");
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_int_equal(c->listen[0].port, 8080);
    assert_string_equal(c->listen[1].host, "::1");
    assert_int_equal(c->listen[1].port, 8081);
    assert_true(c->listen[2].is_unix);
    assert_string_equal(c->listen[2].path, "/run/usergate.sock");
    assert_null(c->admin_listen.text);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cpus > 64 ? 64 : cpus < 1 ? 1 : cpus);
    assert_int_equal(c->max_body_bytes, 2048);
    assert_int_equal(c->log_level, LOG_DEBUG);
    assert_string_equal(c->access_log, "json");
    assert_true(c->log_identities);

    assert_string_equal(c->conversations_url, "http://127.0.0.1:9999");
    assert_string_equal(c->chat_url, "https://chat.example.com");
    assert_string_equal(c->account_sid, AC); /* config wins over the environment */
    assert_string_equal(c->auth_user, AC);
    assert_string_equal(c->auth_secret, "filetok");
    assert_string_equal(c->default_service_sid, IS1);
    assert_int_equal(c->max_retries, 0);
    assert_string_equal(c->public_url, "https://usergate.internal");
    assert_null(c->ca_file);

    assert_true(c->redis_address.is_unix);
    assert_string_equal(c->redis_address.path, "/run/redis/redis.sock");
    assert_string_equal(c->redis_username, "ug");
    assert_string_equal(c->redis_password, "pw;x"); /* ';' without space before is data */
    assert_string_equal(c->key_prefix, "t:");
    assert_int_equal(c->ttl, 60);

    /* defaults from the table */
    assert_int_equal(c->max_header_bytes, 16384);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->max_pipeline, 32);
    assert_int_equal(c->max_connections, 10000);
    assert_int_equal(c->shutdown_timeout_ms, 10000);
    assert_int_equal(c->connect_timeout_ms, 3000);
    assert_int_equal(c->timeout_ms, 10000);
    assert_int_equal(c->max_inflight, 100);
    assert_int_equal(c->queue_size, 1000);
    assert_int_equal(c->queue_timeout_ms, 2000);
    assert_int_equal(c->writes_per_second, 25);
    assert_int_equal(c->redis_timeout_ms, 250);
    assert_int_equal(c->negative_ttl, 30);
    assert_int_equal(c->stale_while_revalidate, 60);
    assert_int_equal(c->stale_if_error, 3600);

    /* includes first (sorted), then the main file's own clients */
    assert_int_equal(c->n_clients, 3);
    static const struct {
        const char *key, *name, *secret, *svc_ok, *svc_no;
        bool all;
        unsigned allow;
    } want[] = {
        {"a", "a", "a-pw-0123456789", IS2, NULL, true,
         ROUTE_ACTION_BIT(ACTION_FETCH) | ROUTE_ACTION_BIT(ACTION_CREATE) |
             ROUTE_ACTION_BIT(ACTION_UPDATE) | ROUTE_ACTION_BIT(ACTION_DELETE) |
             ROUTE_ACTION_BIT(ACTION_LIST)},
        {"team-b", "b", "b-pw-0123456789", IS1, NULL, true,
         ROUTE_ACTION_BIT(ACTION_FETCH) | ROUTE_ACTION_BIT(ACTION_CREATE) |
             ROUTE_ACTION_BIT(ACTION_UPDATE) | ROUTE_ACTION_BIT(ACTION_DELETE) |
             ROUTE_ACTION_BIT(ACTION_LIST)},
        {"billing", "billing", "billing-pw-0123456789", IS2, "IS00000000000000000000000000000000",
         false, ROUTE_ACTION_BIT(ACTION_FETCH) | ROUTE_ACTION_BIT(ACTION_SUB)},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(want); i++) {
        const struct config_client *cl = config_find_client(c, want[i].key, strlen(want[i].key));
        assert_non_null(cl);
        assert_ptr_equal(cl, &c->clients[i]);
        assert_string_equal(cl->name, want[i].name);
        assert_int_equal(cl->secret_len, strlen(want[i].secret));
        assert_memory_equal(cl->secret, want[i].secret, cl->secret_len);
        assert_int_equal(cl->all_services, want[i].all);
        assert_int_equal(cl->allow, want[i].allow);
        assert_true(config_client_allows_service(cl, want[i].svc_ok));
        if (want[i].svc_no)
            assert_false(config_client_allows_service(cl, want[i].svc_no));
    }
    assert_int_equal(c->clients[2].n_services, 2); /* the repeated SID counted once */
    assert_null(config_find_client(c, "b", 1));    /* b's key is team-b */
    assert_null(config_find_client(c, "billingX", 7 + 1));
    assert_non_null(config_find_client(c, "billingX", 7)); /* length, not NUL, bounds it */

    /* the snapshot outlives its first owner while referenced */
    assert_ptr_equal(config_ref(c), c);
    config_unref(c);
    assert_string_equal(c->clients[0].key, "a");
    config_unref(c);
    config_unref(NULL);
}

/* ---- credentials */

struct cred_case {
    const char *what;
    const char *text;
    const char *env[5];
    const char *account, *user, *secret;
};

static const struct cred_case cred_cases[] = {
    {"environment only",
     "[server]\n",
     {"TWILIO_ACCOUNT_SID=" AC, "TWILIO_AUTH_TOKEN=tok"},
     AC,
     AC,
     "tok"},
    {"config wins over the environment",
     "[upstream]\naccount_sid = " AC2 "\nauth_token = cfgtok\n",
     {"TWILIO_ACCOUNT_SID=" AC, "TWILIO_AUTH_TOKEN=tok", "TWILIO_API_KEY=" SK},
     AC2,
     AC2,
     "cfgtok"},
    {"API key from config",
     "[upstream]\napi_key_sid = " SK "\napi_key_secret = ks\n",
     {"TWILIO_ACCOUNT_SID=" AC, "TWILIO_AUTH_TOKEN=tok"},
     AC,
     SK,
     "ks"},
    {"API key from the environment",
     "[server]\n",
     {"TWILIO_ACCOUNT_SID=" AC, "TWILIO_API_KEY=" SK, "TWILIO_API_SECRET=eks",
      "TWILIO_AUTH_TOKEN=tok"},
     AC,
     SK,
     "eks"},
    {"API key secret file via CREDENTIALS_DIRECTORY",
     "[upstream]\naccount_sid = " AC "\napi_key_sid = " SK "\napi_key_secret_file = keysecret\n",
     {"CREDENTIALS_DIRECTORY={D}/creds"},
     AC,
     SK,
     "from-creds"},
    {"token file via CREDENTIALS_DIRECTORY",
     "[upstream]\nauth_token_file = token\n",
     {"CREDENTIALS_DIRECTORY={D}/creds", "TWILIO_ACCOUNT_SID=" AC},
     AC,
     AC,
     "creds-token"},
    {"absolute token file ignores CREDENTIALS_DIRECTORY",
     "[upstream]\naccount_sid = " AC "\nauth_token_file = {D}/token\n",
     {"CREDENTIALS_DIRECTORY={D}/creds"},
     AC,
     AC,
     "dir-token"},
};

static void test_credentials(void **state)
{
    for (size_t i = 0; i < UG_ARRAY_LEN(cred_cases); i++) {
        const struct cred_case *cc = &cred_cases[i];
        char dir[DIR_MAX];
        new_case_dir(dir, sizeof dir);
        set_env(cc->env, UG_ARRAY_LEN(cc->env), dir);
        write_file(dir, "creds/keysecret", "from-creds\n");
        write_file(dir, "creds/token", "creds-token");
        write_file(dir, "token", "dir-token\n");
        char *text = expand(cc->text, dir);
        write_file(dir, "main.conf", text);
        free(text);
        struct config_errors errs = {0};
        struct config *c = load_case(dir, &errs);
        if (!c)
            fail_msg("case '%s': %s", cc->what, errs.n ? errs.msgs[0] : "?");
        assert_string_equal(c->account_sid, cc->account);
        assert_string_equal(c->auth_user, cc->user);
        assert_string_equal(c->auth_secret, cc->secret);
        config_unref(c);
        config_errors_free(&errs);
    }
}

/* Client secret_file resolves against CREDENTIALS_DIRECTORY too, and a file
 * named by an included file resolves against that file's directory. */
static void test_secret_file_dirs(void **state)
{
    static const struct {
        const char *cred_dir;
        const char *want;
    } cases[] = {{NULL, "beside-include-0123"}, {"{D}/creds", "in-creds-01234567"}};
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char dir[DIR_MAX], env[DIR_MAX + 8];
        new_case_dir(dir, sizeof dir);
        env_creds();
        if (cases[i].cred_dir) {
            snprintf(env, sizeof env, "%s/creds", dir);
            setenv("CREDENTIALS_DIRECTORY", env, 1);
        }
        write_file(dir, "main.conf", "include = conf.d/*.conf\n");
        write_file(dir, "conf.d/x.conf", "[client x]\nsecret_file = x.secret\n");
        write_file(dir, "conf.d/x.secret", "beside-include-0123\n");
        write_file(dir, "creds/x.secret", "in-creds-01234567\n");
        struct config_errors errs = {0};
        struct config *c = load_case(dir, &errs);
        assert_non_null(c);
        assert_string_equal(c->clients[0].secret, cases[i].want);
        config_unref(c);
    }
}

/* Twilio edge/region routing rewrites only default-shaped URLs. */
static void test_edge_region(void **state)
{
    static const struct {
        const char *text, *conv, *chat;
    } cases[] = {
        {"edge = sydney\nregion = au1\n", "https://conversations.sydney.au1.twilio.com",
         "https://chat.sydney.au1.twilio.com"},
        {"edge = dublin\n", "https://conversations.dublin.us1.twilio.com",
         "https://chat.dublin.us1.twilio.com"},
        {"region = ie1\nchat_url = http://mock:1\nallow_insecure_upstream = on\n",
         "https://conversations.ie1.twilio.com", "http://mock:1"},
        {"", "https://conversations.twilio.com", "https://chat.twilio.com"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char dir[DIR_MAX];
        new_case_dir(dir, sizeof dir);
        env_creds();
        char text[256];
        snprintf(text, sizeof text, "[upstream]\n%s", cases[i].text);
        write_file(dir, "main.conf", text);
        struct config *c = load_case(dir, NULL);
        assert_non_null(c);
        assert_string_equal(c->conversations_url, cases[i].conv);
        assert_string_equal(c->chat_url, cases[i].chat);
        config_unref(c);
    }
}

static void test_restart_needed(void **state)
{
    static const struct {
        const char *before, *after;
        const char *want[3];
    } cases[] = {
        {"[server]\nlisten = 127.0.0.1:1\nworkers = 2\n",
         "[server]\nlisten = 127.0.0.1:1\nworkers = 2\nlog_level = debug\n[cache]\nttl = 5\n",
         {NULL}},
        {"[server]\nlisten = 127.0.0.1:1\n",
         "[server]\nlisten = 127.0.0.1:1, 127.0.0.1:2\nworkers = 3\n",
         {"[server] listen changed from '127.0.0.1:1' to '127.0.0.1:1, 127.0.0.1:2': restart "
          "usergate to apply it",
          "[server] workers changed from '1' to '3': restart usergate to apply it"}},
        {"[cache]\nlocal_entries = 10\n",
         "[cache]\nlocal_entries = 20\nlocal_ttl = 9\n",
         {"[cache] local_entries changed from '10' to '20': restart usergate to apply it"}},
        {"[server]\n",
         "[server]\nadmin_listen =\n",
         {"[server] admin_listen changed from '127.0.0.1:9090' to '': restart usergate to "
          "apply it"}},
    };
    env_creds();
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char dir[DIR_MAX];
        new_case_dir(dir, sizeof dir);
        write_file(dir, "main.conf", cases[i].before);
        struct config *a = load_case(dir, NULL);
        write_file(dir, "main.conf", cases[i].after);
        struct config *b = load_case(dir, NULL);
        assert_non_null(a);
        assert_non_null(b);
        struct config_errors msgs = {0};
        size_t n = config_restart_needed(a, b, &msgs);
        size_t nwant = 0;
        while (nwant < UG_ARRAY_LEN(cases[i].want) && cases[i].want[nwant])
            nwant++;
        assert_int_equal(n, nwant);
        assert_int_equal(msgs.n, nwant);
        for (size_t j = 0; j < nwant; j++) {
            struct buf want = {0};
            buf_printf(&want, "%s/main.conf: %s", dir, cases[i].want[j]);
            assert_string_equal(msgs.msgs[j], want.data);
            buf_free(&want);
        }
        assert_int_equal(config_restart_needed(b, b, NULL), 0);
        config_errors_free(&msgs);
        config_unref(a);
        config_unref(b);
    }
}

/* ---- shipped files */

/* Every row of the table is documented in conf/usergate.conf, commented out
 * with its default, in its section. */
static void test_usergate_conf_documents_every_key(void **state)
{
    struct buf dump = {0};
    config_dump_defaults(&dump);
    assert_non_null(dump.data);
    FILE *f = fopen(TEST_SRCDIR "/conf/usergate.conf", "r");
    assert_non_null(f);
    struct buf conf = {0};
    char line[512], section[64] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)strcspn(line + 1, "]"), line + 1);
        } else if (strncmp(line, "; ", 2) == 0 && strstr(line, " =")) {
            /* "; key = default" in [section] -> "section.key=default" */
            char *eq = strstr(line, " =");
            const char *val = eq[2] == ' ' ? eq + 3 : eq + 2;
            buf_printf(&conf, "%s.%.*s=%s\n", section, (int)(eq - line - 2), line + 2, val);
        }
    }
    fclose(f);
    struct buf hay = {0};
    buf_printf(&hay, "\n%s", conf.data);
    size_t rows = 0;
    for (char *p = dump.data, *nl; (nl = strchr(p, '\n')); p = nl + 1, rows++) {
        char row[512];
        snprintf(row, sizeof row, "\n%.*s\n", (int)(nl - p), p);
        if (!strstr(hay.data, row))
            fail_msg("conf/usergate.conf lacks '; key = default' for %.*s", (int)(nl - p), p);
    }
    buf_free(&hay);
    assert_true(rows >= 40);
    assert_non_null(strstr(conf.data, ".include=conf.d/*.conf\n"));
    buf_free(&dump);
    buf_free(&conf);
}

/* Copy a shipped file into dir with the given mode (a checkout's files are
 * as readable as the umask made them; deployments install them 0600). */
static void copy_with_mode(const char *src, const char *dir, const char *name, mode_t mode,
                           char *out, size_t outlen)
{
    FILE *in = fopen(src, "r");
    assert_non_null(in);
    struct buf text = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
        buf_append(&text, chunk, n);
    fclose(in);
    assert_non_null(text.data);
    write_file(dir, name, text.data);
    buf_free(&text);
    snprintf(out, outlen, "%s/%s", dir, name);
    assert_int_equal(chmod(out, mode), 0);
}

static void test_shipped_files_load(void **state)
{
    static const struct {
        const char *path;
        size_t n_clients;
    } cases[] = {
        {TEST_SRCDIR "/conf/usergate.conf", 0},
        {TEST_SRCDIR "/conf/minimal.conf", 1},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        char dir[DIR_MAX], path[PATH_MAX];
        new_case_dir(dir, sizeof dir);
        copy_with_mode(cases[i].path, dir, "shipped.conf", 0600, path, sizeof path);
        env_creds();
        struct config_errors errs = {0};
        struct config *c = config_load(path, &errs);
        for (size_t j = 0; j < errs.n; j++)
            fprintf(stderr, "%s\n", errs.msgs[j]);
        assert_non_null(c);
        assert_int_equal(c->n_clients, cases[i].n_clients);
        assert_string_equal(c->listen[0].text, "127.0.0.1:8080");
        assert_string_equal(c->admin_listen.text, "127.0.0.1:9090");
        assert_string_equal(c->redis_address.text, "127.0.0.1:6379");
        config_unref(c);

        /* A world-readable copy loads only if it holds no secret. */
        copy_with_mode(cases[i].path, dir, "readable.conf", 0644, path, sizeof path);
        c = config_load(path, &errs);
        assert_true((c != NULL) == (cases[i].n_clients == 0));
        config_unref(c);
        config_errors_free(&errs);

        /* without credentials they fail, naming what to set */
        copy_with_mode(cases[i].path, dir, "shipped.conf", 0600, path, sizeof path);
        set_env(NULL, 0, NULL);
        c = config_load(path, &errs);
        assert_null(c);
        assert_int_equal(errs.n, 1);
        assert_non_null(strstr(errs.msgs[0], "TWILIO_ACCOUNT_SID"));
        assert_non_null(strstr(errs.msgs[0], "TWILIO_AUTH_TOKEN"));
        config_errors_free(&errs);
    }
    env_creds();
    char dir[DIR_MAX], path[PATH_MAX];
    new_case_dir(dir, sizeof dir);
    copy_with_mode(TEST_SRCDIR "/conf/minimal.conf", dir, "minimal.conf", 0600, path, sizeof path);
    struct config *c = config_load(path, NULL);
    assert_non_null(c);
    const struct config_client *cl = config_find_client(c, "example", 7);
    assert_non_null(cl);
    assert_memory_equal(cl->secret, "example-secret", cl->secret_len);
    assert_true(cl->all_services);
    assert_int_equal(cl->allow, (1u << ACTION_COUNT) - 1);
    config_unref(c);
}

/* ---- fixture */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/test_config.XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_cases),
        cmocka_unit_test(test_include_depth),
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_secret_file_dirs),
        cmocka_unit_test(test_edge_region),
        cmocka_unit_test(test_restart_needed),
        cmocka_unit_test(test_usergate_conf_documents_every_key),
        cmocka_unit_test(test_shipped_files_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

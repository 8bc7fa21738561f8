/* auth: pure admission rules (Basic credentials, network grants, token
 * buckets). See auth.h. */
#include "auth.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "util.h"

bool auth_basic_parse(const char *header, char *out, const char **user, size_t *user_len,
                      const char **pass, size_t *pass_len)
{
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return false;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    while (n > 0 && b64[n - 1] == ' ')
        n--;
    /* 3 * (n / 4) + 3 decoded bytes must fit out. */
    if (n == 0 || 3 * (n / 4) + 3 > AUTH_BASIC_MAX)
        return false;
    long len = util_base64_decode(b64, n, out);
    if (len <= 0)
        return false;
    const char *colon = memchr(out, ':', (size_t)len);
    if (!colon)
        return false;
    *user = out;
    *user_len = (size_t)(colon - out);
    *pass = colon + 1;
    *pass_len = (size_t)len - *user_len - 1;
    return true;
}

const void *auth_memo_find(const struct auth_memo *m, uint64_t generation, const char *value)
{
    if (!value || m->generation == 0 || m->generation != generation)
        return NULL;
    return util_ct_equal(value, strlen(value), m->value, m->len) ? m->client : NULL;
}

void auth_memo_keep(struct auth_memo *m, uint64_t generation, const char *value, const void *client)
{
    size_t n = strlen(value);
    auth_memo_clear(m);
    if (generation == 0 || n > sizeof m->value)
        return;
    memcpy(m->value, value, n);
    m->len = n;
    m->client = client;
    m->generation = generation;
}

void auth_memo_clear(struct auth_memo *m)
{
    explicit_bzero(m, sizeof *m);
}

void auth_peer_format(const struct auth_peer *p, char *out, size_t outlen)
{
    char tmp[INET6_ADDRSTRLEN];
    if (p->family == AF_INET && inet_ntop(AF_INET, p->addr, tmp, sizeof tmp))
        snprintf(out, outlen, "%s", tmp);
    else if (p->family == AF_INET6 && inet_ntop(AF_INET6, p->addr, tmp, sizeof tmp))
        snprintf(out, outlen, "%s", tmp);
    else
        snprintf(out, outlen, "unix");
}

bool auth_net_parse(const char *s, struct auth_net *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (strcmp(s, "unix") == 0) {
        out->family = AF_UNIX;
        return true;
    }
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof host) {
        *why = "not an address";
        return false;
    }
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    unsigned max;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        *why = "not an IPv4 or IPv6 address";
        return false;
    }
    long prefix = max;
    if (slash && !util_parse_long(slash + 1, 0, (long)max, &prefix)) {
        *why = "prefix length out of range";
        return false;
    }
    out->prefix = (unsigned)prefix;
    for (unsigned bit = out->prefix; bit < max; bit++) {
        if (out->addr[bit / 8] & (0x80 >> (bit % 8))) {
            *why = "address has bits set beyond the prefix length";
            return false;
        }
    }
    return true;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool auth_nets_match(const struct auth_net *nets, size_t n, const struct auth_peer *p)
{
    for (size_t i = 0; i < n; i++) {
        const struct auth_net *net = &nets[i];
        if (net->family != p->family)
            continue;
        if (net->family == AF_UNIX || prefix_equal(net->addr, p->addr, net->prefix))
            return true;
    }
    return false;
}

static double refill(const struct auth_bucket *b, double rate, double burst, int64_t now_ms)
{
    if (!b->init)
        return burst;
    double t = b->tokens;
    if (now_ms > b->last_ms)
        t += rate * (double)(now_ms - b->last_ms) / 1000.0;
    return t > burst ? burst : t;
}

bool auth_bucket_peek(const struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                      int64_t *wait_ms)
{
    double t = refill(b, rate, burst, now_ms);
    if (t >= 1.0)
        return true;
    if (wait_ms) {
        double ms = rate > 0 ? (1.0 - t) * 1000.0 / rate : 1e9;
        *wait_ms = (int64_t)ms + 1;
    }
    return false;
}

bool auth_bucket_take(struct auth_bucket *b, double rate, double burst, int64_t now_ms,
                      int64_t *wait_ms)
{
    double t = refill(b, rate, burst, now_ms);
    b->init = true;
    if (now_ms > b->last_ms)
        b->last_ms = now_ms;
    b->tokens = t;
    if (!auth_bucket_peek(b, rate, burst, now_ms, wait_ms))
        return false;
    b->tokens -= 1.0;
    return true;
}

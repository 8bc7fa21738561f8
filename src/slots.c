/* slots: see slots.h. The CRC16 is the bitwise form of the polynomial
 * 0x1021 (XMODEM), which is what the Redis Cluster specification defines;
 * speed does not matter here next to a network round trip. */
#include "slots.h"

#include <string.h>
#include <strings.h>

#include "util.h"

uint16_t slots_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint8_t)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned slots_of_key(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return slots_crc16(open + 1, (size_t)(close - open - 1)) & (SLOTS_COUNT - 1);
    }
    return slots_crc16(key, len) & (SLOTS_COUNT - 1);
}

static bool word_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(s, word, len) == 0;
}

int slots_key_index(int argc, const char *const *argv, const size_t *lens)
{
    if (argc < 2)
        return -1;
    static const char *const keyless[] = {"PUBLISH", "PING",    "SCAN",      "ROLE",
                                          "ASKING",  "CLUSTER", "SUBSCRIBE", "SCRIPT"};
    for (size_t i = 0; i < UG_ARRAY_LEN(keyless); i++)
        if (word_is(argv[0], lens[0], keyless[i]))
            return -1;
    if (word_is(argv[0], lens[0], "EVAL") || word_is(argv[0], lens[0], "EVALSHA")) {
        long n;
        char num[16];
        if (argc < 4 || lens[2] == 0 || lens[2] >= sizeof num)
            return -1;
        memcpy(num, argv[2], lens[2]);
        num[lens[2]] = '\0';
        return util_parse_long(num, 1, argc - 3, &n) ? 3 : -1;
    }
    return 1;
}

/* "HOST:PORT" with the port after the last ':' (IPv6 hosts hold colons). */
static bool parse_host_port(const char *s, size_t len, char *host, int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (!colon)
        return false;
    size_t hlen = (size_t)(colon - s), plen = len - hlen - 1;
    char num[8];
    long p;
    if (hlen > SLOTS_HOST_MAX || plen == 0 || plen >= sizeof num)
        return false;
    memcpy(num, colon + 1, plen);
    num[plen] = '\0';
    if (!util_parse_long(num, 1, 65535, &p))
        return false;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return true;
}

enum slots_redirect slots_parse_redirect(const char *err, size_t len, struct slots_target *out)
{
    enum slots_redirect kind;
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = SLOTS_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = SLOTS_ASK;
        skip = 4;
    } else {
        return SLOTS_NONE;
    }
    const char *p = err + skip, *end = err + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    char num[8];
    long slot;
    if (!sp || sp == p || (size_t)(sp - p) >= sizeof num)
        return SLOTS_NONE;
    memcpy(num, p, (size_t)(sp - p));
    num[sp - p] = '\0';
    if (!util_parse_long(num, 0, SLOTS_COUNT - 1, &slot) ||
        !parse_host_port(sp + 1, (size_t)(end - sp - 1), out->host, &out->port))
        return SLOTS_NONE;
    out->slot = (unsigned)slot;
    return kind;
}

bool slots_is_cluster_answer(const char *err, size_t len)
{
    static const char *const words[] = {"MOVED ", "ASK ", "CLUSTERDOWN", "TRYAGAIN"};
    for (size_t i = 0; i < UG_ARRAY_LEN(words); i++) {
        size_t n = strlen(words[i]);
        if (len >= n && memcmp(err, words[i], n) == 0)
            return true;
    }
    return false;
}

int slots_parse_map(const struct redis_reply *rep, struct slots_range *out, size_t max)
{
    if (rep->type != REDIS_R_ARRAY)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < rep->n_elements; i++) {
        const struct redis_reply *e = &rep->elements[i];
        if (e->type != REDIS_R_ARRAY || e->n_elements < 3 ||
            e->elements[0].type != REDIS_R_INTEGER || e->elements[1].type != REDIS_R_INTEGER)
            return -1;
        long long first = e->elements[0].integer, last = e->elements[1].integer;
        const struct redis_reply *m = &e->elements[2];
        if (first < 0 || last < first || last >= SLOTS_COUNT || m->type != REDIS_R_ARRAY ||
            m->n_elements < 2 || m->elements[0].type != REDIS_R_STRING ||
            m->elements[0].len > SLOTS_HOST_MAX || m->elements[1].type != REDIS_R_INTEGER ||
            m->elements[1].integer < 1 || m->elements[1].integer > 65535)
            return -1;
        if (n == max)
            return -1;
        out[n].first = (unsigned)first;
        out[n].last = (unsigned)last;
        memcpy(out[n].host, m->elements[0].str, m->elements[0].len);
        out[n].host[m->elements[0].len] = '\0';
        out[n].port = (int)m->elements[1].integer;
        n++;
    }
    return (int)n;
}

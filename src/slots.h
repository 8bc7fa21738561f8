/* slots: Redis Cluster's key-to-slot rules and the parsing of what a cluster
 * answers (MOVED/ASK redirections, CLUSTER SLOTS), as pure functions: the
 * routing in redis.c builds on them, the unit tests and a fuzzer check them.
 * Nothing here touches a socket or hiredis. */
#ifndef USERGATE_SLOTS_H
#define USERGATE_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis.h"

#define SLOTS_COUNT 16384
#define SLOTS_HOST_MAX 255

/* CRC16-CCITT (XMODEM), as Redis Cluster uses it. */
uint16_t slots_crc16(const char *buf, size_t len);
/* The hash slot of a key: of the part between the first '{' and the next
 * '}' when that part is non-empty, else of the whole key. */
unsigned slots_of_key(const char *key, size_t len);
/* The argument that decides where a command goes: its first key, or -1 for
 * a command with no key (any node will do: PUBLISH, PING, SCAN ...). EVAL and
 * EVALSHA route by their first key (numkeys > 0). */
int slots_key_index(int argc, const char *const *argv, const size_t *lens);

enum slots_redirect { SLOTS_NONE = 0, SLOTS_MOVED, SLOTS_ASK };
/* "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381" (the host may be
 * an IPv6 address without brackets, or empty: the node that answered). */
struct slots_target {
    unsigned slot;
    char host[SLOTS_HOST_MAX + 1];
    int port;
};
enum slots_redirect slots_parse_redirect(const char *err, size_t len, struct slots_target *out);

/* Whether an error reply is the cluster speaking of itself (MOVED, ASK,
 * CLUSTERDOWN, TRYAGAIN) rather than a node failing: such answers come fast
 * from a healthy node and must not count against it. */
bool slots_is_cluster_answer(const char *err, size_t len);

/* One master's slot range from CLUSTER SLOTS. */
struct slots_range {
    unsigned first, last;
    char host[SLOTS_HOST_MAX + 1]; /* "" when the node did not say (the one asked) */
    int port;
};
/* Parse a CLUSTER SLOTS reply into out[0..max); returns how many ranges, or
 * -1 when the reply is not one (then nothing is to be trusted). */
int slots_parse_map(const struct redis_reply *rep, struct slots_range *out, size_t max);

#endif

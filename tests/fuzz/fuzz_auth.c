/* libFuzzer: Basic-auth header decoding and `networks` entries. The split
 * user:password always lies inside the decoded buffer; a parsed network
 * never has host bits past its prefix and always matches its own address. */
#include <string.h>
#include <sys/socket.h>

#include "auth.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char out[AUTH_BASIC_MAX];
    const char *u, *p;
    size_t ul, pl;
    if (auth_basic_parse(s, out, &u, &ul, &p, &pl)) {
        FUZZ_CHECK(u == out && p == out + ul + 1);
        FUZZ_CHECK(ul + 1 + pl < AUTH_BASIC_MAX);
    }
    struct auth_net n;
    const char *why = NULL;
    if (auth_net_parse(s, &n, &why)) {
        if (n.family != AF_UNIX) {
            struct auth_peer peer = {.family = n.family};
            memcpy(peer.addr, n.addr, sizeof peer.addr);
            FUZZ_CHECK(auth_nets_match(&n, 1, &peer));
            char text[48];
            auth_peer_format(&peer, text, sizeof text);
        }
    } else {
        FUZZ_CHECK(why != NULL);
    }
    free(s);
    return 0;
}

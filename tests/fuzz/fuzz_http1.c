/* libFuzzer: the HTTP/1.1 request parser, fed in random splits. The first
 * byte picks the limits, the next few the split points; whatever comes in,
 * the parser must not crash, leak, or hand out a message that breaks its
 * own invariants (NUL-terminated target and headers, a body within the
 * limit, a head phase that ends). */
#include <string.h>

#include "fuzz.h"
#include "http1.h"

struct seen {
    size_t max_body;
    int messages;
};

static int on_message(void *arg, struct http1_msg *m)
{
    struct seen *s = arg;
    FUZZ_CHECK(m->target && strlen(m->target) == m->target_len);
    FUZZ_CHECK(m->body.len <= s->max_body);
    FUZZ_CHECK(m->n_headers <= HTTP1_MAX_HEADERS);
    for (size_t i = 0; i < m->n_headers; i++)
        FUZZ_CHECK(m->headers[i].name && m->headers[i].value);
    (void)http1_msg_header(m, "Host");
    http1_msg_free(m);
    s->messages++;
    return (s->messages % 3 == 0) ? -1 : 0; /* exercise pausing too */
}

static void on_headers(void *arg, const struct http1_msg *m)
{
    (void)arg;
    (void)http1_msg_header(m, "Expect");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct http1_limits lim = {(size_t)256 << (data[0] & 7), (size_t)64 << ((data[0] >> 3) & 7),
                               (data[0] & 0x40) != 0};
    size_t splits[3] = {data[1], data[2], data[3]};
    data += 4;
    size -= 4;
    struct seen s = {lim.max_body_bytes, 0};
    struct http1_parser *p = http1_new(&lim, on_message, on_headers, &s);
    size_t off = 0;
    for (int k = 0; off < size; k = (k + 1) % 3) {
        size_t n = splits[k] ? splits[k] : 1;
        if (n > size - off)
            n = size - off;
        enum http1_error err;
        long r = http1_feed(p, (const char *)data + off, n, &err);
        if (r < 0)
            break;
        FUZZ_CHECK((size_t)r <= n);
        /* A pause consumes part of the piece: feed the rest next. */
        off += r == 0 ? n : (size_t)r;
        (void)http1_phase(p);
        (void)http1_messages_begun(p);
    }
    enum http1_error err;
    http1_feed(p, "", 0, &err); /* EOF */
    http1_free(p);
    return 0;
}

/* Unit tests for http1: every case is fed whole, byte by byte and in three
 * uneven pieces, and must give the same messages and the same error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http1.h"

#define MAX_MSGS 4

struct collected {
    struct http1_msg msgs[MAX_MSGS];
    size_t n;
    size_t n_headers_cb;
    char expect[32]; /* Expect header seen by the headers callback */
    size_t body_len_at_headers;
    int pause_every; /* on_message returns -1 when set */
};

static int on_message(void *arg, struct http1_msg *msg)
{
    struct collected *c = arg;
    assert_true(c->n < MAX_MSGS);
    c->msgs[c->n++] = *msg;
    return c->pause_every ? -1 : 0;
}

static void on_headers(void *arg, const struct http1_msg *msg)
{
    struct collected *c = arg;
    c->n_headers_cb++;
    const char *e = http1_msg_header(msg, "expect");
    snprintf(c->expect, sizeof c->expect, "%s", e ? e : "");
    c->body_len_at_headers = msg->body.len;
}

static void collected_free(struct collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        http1_msg_free(&c->msgs[i]);
    c->n = 0;
}

struct exp_msg {
    const char *method;
    const char *target;
    const char *body;
    bool keep_alive;
    int minor;
    size_t n_headers;
    const char *hname; /* one header to check (looked up as given) */
    const char *hvalue;
};

struct tcase {
    const char *name;
    const char *input;
    char *(*gen)(void);          /* builds input when input is NULL */
    size_t max_header, max_body; /* 0 = defaults below */
    bool eof;                    /* feed EOF after the input */
    enum http1_error err;
    size_t n_msgs;
    struct exp_msg msgs[3];
};

static char *gen_many_headers(size_t n)
{
    size_t cap = 64 + n * 32;
    char *s = malloc(cap);
    size_t len = (size_t)snprintf(s, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "X-H%zu: v\r\n", i);
    snprintf(s + len, cap - len, "\r\n");
    return s;
}
static char *gen_65_headers(void)
{
    return gen_many_headers(HTTP1_MAX_HEADERS + 1);
}
static char *gen_64_headers(void)
{
    return gen_many_headers(HTTP1_MAX_HEADERS);
}

#define GET_HDR(h, v) "GET", "/", "", true, 1, 1, h, v

static const struct tcase cases[] = {
    {"simple GET",
     "GET /v1/Users/alice?x=1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic YTpi\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/v1/Users/alice?x=1", "", true, 1, 2, "Authorization", "Basic YTpi"}}},
    {"POST with Content-Length",
     "POST /v1/Users HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\n"
     "Content-Length: 12\r\n\r\nIdentity=bob",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"POST", "/v1/Users", "Identity=bob", true, 1, 3, "content-length", "12"}}},
    {"chunked with extensions and trailer",
     "POST /v1/Users HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
     "5;ext=1\r\nIdent\r\n7;a;b=\"c\"\r\nity=bob\r\n0\r\nX-Trailer: t\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"POST", "/v1/Users", "Identity=bob", true, 1, 2, "Transfer-Encoding", "chunked"}}},
    {"chunked body exactly at the limit",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n",
     NULL,
     0,
     10,
     false,
     HTTP1_OK,
     1,
     {{"POST", "/", "abcdefghij", true, 1, 1, "X-Missing", NULL}}},
    {"three pipelined requests",
     "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n"
     "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
     "DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     3,
     {{"GET", "/a", "", true, 1, 1, "Host", "gw"},
      {"POST", "/b", "xyz", true, 1, 1, "Content-Length", "3"},
      {"DELETE", "/c", "", false, 1, 1, "connection", "close"}}},
    {"HTTP/1.0 closes by default",
     "GET / HTTP/1.0\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", false, 0, 0, "Connection", NULL}}},
    {"HTTP/1.0 keep-alive",
     "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 0, 1, "Connection", "keep-alive"}}},
    {"HTTP/1.1 keeps alive by default",
     "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{GET_HDR("host", "a")}}},
    {"HTTP/1.1 Connection: close",
     "GET / HTTP/1.1\r\nConnection: Close\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", false, 1, 1, "Connection", "Close"}}},
    {"bytes after Connection: close are ignored",
     "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGARBAGE / HTTP/9\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", false, 1, 1, "Connection", "close"}}},
    {"values trimmed, empty value kept",
     "GET / HTTP/1.1\r\nX-A:   spaced value \t\r\nX-E:\r\nX-F: f\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 1, 3, "x-a", "spaced value"}}},
    {"empty value does not merge names",
     "GET / HTTP/1.1\r\nX-E:\r\nX-F: f\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 1, 2, "X-F", "f"}}},
    {"64 headers are allowed",
     NULL,
     gen_64_headers,
     0,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 1, HTTP1_MAX_HEADERS, "X-H63", "v"}}},
    {"EOF between messages is clean",
     "GET / HTTP/1.1\r\n\r\n",
     NULL,
     0,
     0,
     true,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 1, 0, "Host", NULL}}},

    {"head exactly at max_header_bytes",
     "GET / HTTP/1.1\r\nA: b\r\n\r\n",
     NULL,
     24,
     0,
     false,
     HTTP1_OK,
     1,
     {{"GET", "/", "", true, 1, 1, "a", "b"}}},

    /* errors; messages before the error are still delivered */
    {"head one byte over max_header_bytes",
     "GET / HTTP/1.1\r\nA: b\r\n\r\n",
     NULL,
     23,
     0,
     false,
     HTTP1_HEADERS_TOO_BIG,
     0,
     {{0}}},
    {"header block too big",
     "GET / HTTP/1.1\r\nX-Long: 0123456789012345678901234567890123\r\n\r\n",
     NULL,
     48,
     0,
     false,
     HTTP1_HEADERS_TOO_BIG,
     0,
     {{0}}},
    {"target too big",
     "GET /0123456789012345678901234567890123456789 HTTP/1.1\r\n\r\n",
     NULL,
     32,
     0,
     false,
     HTTP1_HEADERS_TOO_BIG,
     0,
     {{0}}},
    {"too many headers", NULL, gen_65_headers, 0, 0, false, HTTP1_HEADERS_TOO_BIG, 0, {{0}}},
    {"body too big by Content-Length (before any body byte)",
     "GET /ok HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n",
     NULL,
     0,
     10,
     false,
     HTTP1_BODY_TOO_BIG,
     1,
     {{"GET", "/ok", "", true, 1, 0, "Host", NULL}}},
    {"body too big by chunks",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n",
     NULL,
     0,
     10,
     false,
     HTTP1_BODY_TOO_BIG,
     0,
     {{0}}},
    {"huge chunk refused from its size line",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffff\r\n",
     NULL,
     0,
     10,
     false,
     HTTP1_BODY_TOO_BIG,
     0,
     {{0}}},
    {"malformed request line", "GARBAGE\r\n\r\n", NULL, 0, 0, false, HTTP1_BAD_REQUEST, 0, {{0}}},
    {"space in target",
     "GET /a b HTTP/1.1\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"bad version", "GET / HTTP/x.1\r\n\r\n", NULL, 0, 0, false, HTTP1_BAD_REQUEST, 0, {{0}}},
    {"bad header name",
     "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"space before colon",
     "POST / HTTP/1.1\r\nContent-Length : 0\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"header line without colon",
     "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"control byte in value",
     "GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"invalid Content-Length",
     "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"Content-Length with chunked (smuggling)",
     "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"bad chunk size",
     "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"EOF inside a message",
     "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
     NULL,
     0,
     0,
     true,
     HTTP1_BAD_REQUEST,
     0,
     {{0}}},
    {"HTTP/2.0 request line",
     "GET / HTTP/2.0\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_UNSUPPORTED,
     0,
     {{0}}},
    {"HTTP/0.9 simple request", "GET /\r\n\r\n", NULL, 0, 0, false, HTTP1_UNSUPPORTED, 0, {{0}}},
    {"CONNECT",
     "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_UNSUPPORTED,
     0,
     {{0}}},
    {"Upgrade",
     "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_UNSUPPORTED,
     0,
     {{0}}},
    {"compressed transfer coding",
     "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     NULL,
     0,
     0,
     false,
     HTTP1_UNSUPPORTED,
     0,
     {{0}}},
};

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_THIRDS, FEED_MODES };
static const char *const mode_names[] = {"whole", "byte-by-byte", "thirds"};

/* Feeds input per mode; returns the first error (HTTP1_OK if none). Every
 * feed must consume everything it is given (nothing pauses here). */
static enum http1_error feed_all(struct http1_parser *p, const char *in, size_t len,
                                 enum feed_mode mode, bool eof)
{
    size_t step = mode == FEED_WHOLE ? len : mode == FEED_BYTES ? 1 : len / 3 + 1;
    enum http1_error err = HTTP1_OK;
    for (size_t off = 0; off < len;) {
        size_t n = len - off < step ? len - off : step;
        long r = http1_feed(p, in + off, n, &err);
        if (r < 0) {
            assert_int_not_equal(err, HTTP1_OK);
            return err;
        }
        assert_int_equal(r, (long)n);
        off += n;
    }
    if (eof) {
        long r = http1_feed(p, NULL, 0, &err);
        if (r < 0)
            return err;
        assert_int_equal(r, 0);
    }
    return err;
}

static void check_msg(const struct tcase *tc, const struct exp_msg *e, const struct http1_msg *m)
{
    assert_string_equal(m->method, e->method);
    assert_string_equal(m->target, e->target);
    assert_int_equal(m->target_len, strlen(e->target));
    assert_int_equal(m->body.len, strlen(e->body));
    if (m->body.len)
        assert_memory_equal(m->body.data, e->body, m->body.len);
    assert_int_equal(m->keep_alive, e->keep_alive);
    assert_int_equal(m->http_minor, e->minor);
    assert_int_equal(m->n_headers, e->n_headers);
    const char *v = http1_msg_header(m, e->hname);
    if (e->hvalue)
        assert_non_null(v), assert_string_equal(v, e->hvalue);
    else
        assert_null(v);
    (void)tc;
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < UG_ARRAY_LEN(cases); i++) {
        const struct tcase *tc = &cases[i];
        char *owned = tc->input ? NULL : tc->gen();
        const char *in = tc->input ? tc->input : owned;
        for (int mode = 0; mode < FEED_MODES; mode++) {
            print_message("case: %s (%s)\n", tc->name, mode_names[mode]);
            struct http1_limits lim = {tc->max_header ? tc->max_header : 8192,
                                       tc->max_body ? tc->max_body : 65536, false};
            struct collected c = {0};
            struct http1_parser *p = http1_new(&lim, on_message, on_headers, &c);
            enum http1_error err = feed_all(p, in, strlen(in), (enum feed_mode)mode, tc->eof);
            assert_int_equal(err, tc->err);
            assert_int_equal(c.n, tc->n_msgs);
            for (size_t k = 0; k < c.n; k++)
                check_msg(tc, &tc->msgs[k], &c.msgs[k]);
            if (tc->err != HTTP1_OK) {
                /* errors are sticky */
                enum http1_error again = HTTP1_OK;
                assert_int_equal(http1_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &again), -1);
                assert_int_equal(again, tc->err);
            }
            collected_free(&c);
            http1_free(p);
        }
        free(owned);
    }
}

static void test_header_lookup(void **state)
{
    (void)state;
    static const char in[] = "GET / HTTP/1.1\r\nContent-Type: a/b\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n";
    static const struct {
        const char *name;
        const char *value;
    } lookups[] = {
        {"Content-Type", "a/b"}, {"content-type", "a/b"}, {"CONTENT-TYPE", "a/b"},
        {"x-DUP", "1"}, /* first match */
        {"Content", NULL},       {"Content-Type2", NULL}, {"", NULL},
    };
    struct http1_limits lim = {8192, 1024, false};
    struct collected c = {0};
    struct http1_parser *p = http1_new(&lim, on_message, NULL, &c);
    enum http1_error err;
    assert_int_equal(http1_feed(p, in, sizeof in - 1, &err), (long)(sizeof in - 1));
    assert_int_equal(c.n, 1);
    for (size_t i = 0; i < UG_ARRAY_LEN(lookups); i++) {
        const char *v = http1_msg_header(&c.msgs[0], lookups[i].name);
        if (lookups[i].value)
            assert_non_null(v), assert_string_equal(v, lookups[i].value);
        else
            assert_null(v);
    }
    collected_free(&c);
    http1_free(p);
}

/* A paused parser returns exactly the bytes of the messages delivered so far;
 * feeding the rest resumes, in any feed mode. */
static void test_pause_resume(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        "GET /1 HTTP/1.1\r\n\r\n",
        "POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST /3 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    };
    char in[512] = "";
    for (size_t i = 0; i < UG_ARRAY_LEN(reqs); i++)
        strcat(in, reqs[i]);
    size_t len = strlen(in);
    static const size_t chunk_sizes[] = {512, 1, 7, 40};
    for (size_t cs = 0; cs < UG_ARRAY_LEN(chunk_sizes); cs++) {
        struct http1_limits lim = {8192, 1024, false};
        struct collected c = {.pause_every = 1};
        struct http1_parser *p = http1_new(&lim, on_message, NULL, &c);
        size_t off = 0, pauses = 0, want_end = 0;
        while (off < len) {
            size_t n = len - off < chunk_sizes[cs] ? len - off : chunk_sizes[cs];
            size_t before = c.n;
            enum http1_error err;
            long r = http1_feed(p, in + off, n, &err);
            assert_true(r >= 0);
            if (c.n > before) {
                /* paused right after the message that just completed */
                assert_int_equal(c.n, before + 1);
                want_end += strlen(reqs[before]);
                assert_int_equal(off + (size_t)r, want_end);
                pauses++;
            } else {
                assert_int_equal(r, (long)n);
            }
            off += (size_t)r;
        }
        assert_int_equal(pauses, 3);
        assert_int_equal(c.n, 3);
        assert_string_equal(c.msgs[0].target, "/1");
        assert_string_equal(c.msgs[1].body.data, "abc");
        assert_string_equal(c.msgs[2].body.data, "hi");
        collected_free(&c);
        http1_free(p);
    }
}

/* The headers callback fires once per message, before any body byte, with
 * the Expect header visible; the message itself only once the body is in. */
static void test_expect_callback(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        const char *body;
        const char *expect;
    } cases_e[] = {
        {"POST /v1/Users HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n", "abcd",
         "100-continue"},
        {"POST /v1/Users HTTP/1.1\r\nContent-Length: 4\r\n\r\n", "abcd", ""},
        {"POST / HTTP/1.1\r\nEXPECT:  100-Continue \r\nTransfer-Encoding: chunked\r\n\r\n",
         "2\r\nab\r\n0\r\n\r\n", "100-Continue"},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(cases_e); i++) {
        for (size_t step = 1; step <= 64; step *= 4) {
            struct http1_limits lim = {8192, 1024, false};
            struct collected c = {0};
            struct http1_parser *p = http1_new(&lim, on_message, on_headers, &c);
            const char *head = cases_e[i].head;
            size_t hl = strlen(head);
            enum http1_error err;
            for (size_t off = 0; off < hl; off += step) {
                size_t n = hl - off < step ? hl - off : step;
                assert_int_equal(http1_feed(p, head + off, n, &err), (long)n);
            }
            assert_int_equal(c.n_headers_cb, 1);
            assert_string_equal(c.expect, cases_e[i].expect);
            assert_int_equal(c.body_len_at_headers, 0);
            assert_int_equal(c.n, 0);
            assert_true(!http1_idle(p));
            const char *body = cases_e[i].body;
            assert_int_equal(http1_feed(p, body, strlen(body), &err), (long)strlen(body));
            assert_int_equal(c.n, 1);
            assert_int_equal(c.n_headers_cb, 1);
            assert_true(http1_idle(p));
            collected_free(&c);
            http1_free(p);
        }
    }
}

/* Freeing a parser in the middle of a message releases its partial state
 * (checked by ASan/LSan), and a zeroed message may be freed. */
static void test_free_midway(void **state)
{
    (void)state;
    static const char *const partial[] = {
        "GET /abc HTTP/1.1\r\nX-A: b",
        "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(partial); i++) {
        struct http1_limits lim = {8192, 1024, false};
        struct collected c = {0};
        struct http1_parser *p = http1_new(&lim, on_message, on_headers, &c);
        enum http1_error err;
        assert_int_equal(http1_feed(p, partial[i], strlen(partial[i]), &err),
                         (long)strlen(partial[i]));
        assert_int_equal(c.n, 0);
        assert_false(http1_idle(p));
        http1_free(p);
    }
    struct http1_msg m;
    memset(&m, 0, sizeof m);
    http1_msg_free(&m);
    assert_null(m.target);
}

/* RFC 9112 framing rules the listener relies on, one row each. */
static void test_framing_rules(void **state)
{
    (void)state;
    static const struct {
        const char *name, *in;
        size_t max_header;
        enum http1_error err;
        size_t n_msgs;
        bool keep_alive; /* of the last message */
    } rules[] = {
        {"1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 8192, HTTP1_BAD_REQUEST, 0, false},
        {"1.1 with one Host", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 8192, HTTP1_OK, 1, true},
        {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 8192, HTTP1_BAD_REQUEST, 0,
         false},
        {"two Hosts in 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 8192,
         HTTP1_BAD_REQUEST, 0, false},
        {"1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 8192, HTTP1_OK, 1, false},
        {"1.0 keep-alive stays open", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 8192,
         HTTP1_OK, 1, true},
        {"1.0 with Transfer-Encoding closes after its answer",
         "POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
         "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
         8192, HTTP1_OK, 1, false},
        {"trailers within the head limit",
         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
         "X-T: 1\r\n\r\n",
         100, HTTP1_OK, 1, true},
        {"trailers past the head limit",
         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
         "X-T: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n\r\n",
         100, HTTP1_HEADERS_TOO_BIG, 0, false},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(rules); i++) {
        for (int mode = 0; mode < FEED_MODES; mode++) {
            print_message("case: %s (%s)\n", rules[i].name, mode_names[mode]);
            struct http1_limits lim = {rules[i].max_header, 1024, true};
            struct collected c = {0};
            struct http1_parser *p = http1_new(&lim, on_message, NULL, &c);
            enum http1_error err =
                feed_all(p, rules[i].in, strlen(rules[i].in), (enum feed_mode)mode, false);
            assert_int_equal(err, rules[i].err);
            assert_int_equal(c.n, rules[i].n_msgs);
            if (c.n)
                assert_int_equal(c.msgs[c.n - 1].keep_alive, rules[i].keep_alive);
            collected_free(&c);
            http1_free(p);
        }
    }
}

/* The phase and message counter the listener arms its deadlines from. */
static void test_phases(void **state)
{
    (void)state;
    struct http1_limits lim = {8192, 1024, true};
    struct collected c = {0};
    struct http1_parser *p = http1_new(&lim, on_message, NULL, &c);
    enum http1_error err;
    assert_int_equal(http1_phase(p), HTTP1_PHASE_IDLE);
    static const struct {
        const char *bytes;
        enum http1_phase phase;
        unsigned long begun;
    } steps[] = {
        {"PO", HTTP1_PHASE_HEAD, 1},
        {"ST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n", HTTP1_PHASE_HEAD, 1},
        {"\r\nab", HTTP1_PHASE_BODY, 1},
        {"c", HTTP1_PHASE_IDLE, 1},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\nG", HTTP1_PHASE_HEAD, 3},
    };
    for (size_t i = 0; i < UG_ARRAY_LEN(steps); i++) {
        size_t n = strlen(steps[i].bytes);
        assert_int_equal(http1_feed(p, steps[i].bytes, n, &err), (long)n);
        assert_int_equal(http1_phase(p), steps[i].phase);
        assert_int_equal(http1_messages_begun(p), steps[i].begun);
    }
    assert_int_equal(c.n, 2);
    collected_free(&c);
    http1_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),        cmocka_unit_test(test_header_lookup),
        cmocka_unit_test(test_pause_resume), cmocka_unit_test(test_expect_callback),
        cmocka_unit_test(test_free_midway),  cmocka_unit_test(test_framing_rules),
        cmocka_unit_test(test_phases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

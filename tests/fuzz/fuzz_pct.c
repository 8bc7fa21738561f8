/* libFuzzer: percent-decoding and -encoding. Decoding never writes past
 * n + 1 bytes and never grows; encoding then decoding gives the input back;
 * an encoding holds only unreserved characters and %XX. */
#include <string.h>

#include "fuzz.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *out = malloc(size + 1);
    for (int plus = 0; plus < 2; plus++) {
        long n = util_pct_decode(in, size, out, plus);
        FUZZ_CHECK(n <= (long)size);
        if (n >= 0)
            FUZZ_CHECK(out[n] == '\0');
    }
    struct buf enc = {0};
    util_pct_encode(&enc, in, size);
    buf_reserve(&enc, 0);
    for (size_t i = 0; i < enc.len; i++) {
        char c = enc.data[i];
        FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '.' || c == '_' || c == '~' || c == '%');
    }
    char *back = malloc(enc.len + 1);
    long bn = util_pct_decode(enc.data ? enc.data : "", enc.len, back, false);
    FUZZ_CHECK(bn == (long)size && memcmp(back, in, size) == 0);
    (void)util_utf8_valid(in, size);
    free(back);
    buf_free(&enc);
    free(out);
    return 0;
}

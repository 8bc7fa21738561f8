/* libFuzzer: application/x-www-form-urlencoded bodies and the validators
 * behind them. A parsed form re-encodes to a body that parses to the same
 * fields; validation never crashes and, when it refuses, says why. */
#include <string.h>

#include "fuzz.h"
#include "twilio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct form f;
    char err[256];
    if (form_parse((const char *)data, size, &f, err, sizeof err) < 0) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    struct buf enc = {0};
    form_encode(&f, &enc);
    struct form g;
    FUZZ_CHECK(form_parse(enc.data, enc.len, &g, err, sizeof err) == 0);
    FUZZ_CHECK(g.n == f.n);
    for (size_t i = 0; i < f.n; i++) {
        FUZZ_CHECK(strcmp(f.fields[i].name, g.fields[i].name) == 0);
        FUZZ_CHECK(f.fields[i].value_len == g.fields[i].value_len &&
                   memcmp(f.fields[i].value, g.fields[i].value, f.fields[i].value_len) == 0);
    }
    int code;
    for (int op = 0; op < 2; op++) {
        err[0] = '\0';
        if (twilio_validate_user_form(&f, (enum twilio_user_op)op, &code, err, sizeof err) < 0)
            FUZZ_CHECK(err[0] != '\0');
    }
    for (int k = 0; k < 3; k++) {
        err[0] = '\0';
        if (twilio_validate_sub_form(&f, (enum twilio_sub_kind)k, err, sizeof err) < 0)
            FUZZ_CHECK(err[0] != '\0');
    }
    form_free(&g);
    form_free(&f);
    buf_free(&enc);
    return 0;
}

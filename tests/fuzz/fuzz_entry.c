/* libFuzzer: the cache envelope decoder (whatever Redis hands back, even a
 * key written by something else) and the user-body field extractor. A
 * decoded envelope re-encodes to the same bytes. */
#include <string.h>

#include "entry.h"
#include "fuzz.h"
#include "twilio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct entry e;
    if (entry_decode(in, size, &e) == 0) {
        FUZZ_CHECK(e.status == 200 || e.status == 404);
        FUZZ_CHECK(e.sid_len + e.identity_len + e.body_len <= size);
        struct buf out = {0};
        entry_encode(&out, &e);
        FUZZ_CHECK(out.len == size && memcmp(out.data, in, size) == 0);
        buf_free(&out);
    }
    char sid[TWILIO_SID_LEN + 1], ident[TWILIO_IDENTITY_MAX + 1];
    if (entry_user_fields(in, size, sid, sizeof sid, ident, sizeof ident) == 0) {
        FUZZ_CHECK(twilio_is_sid(sid, strlen(sid), "US"));
        FUZZ_CHECK(ident[0] != '\0');
    }
    char svc[TWILIO_SID_LEN + 1];
    if (entry_user_service(in, size, svc, sizeof svc) == 0)
        FUZZ_CHECK(twilio_is_sid(svc, strlen(svc), "IS"));
    return 0;
}

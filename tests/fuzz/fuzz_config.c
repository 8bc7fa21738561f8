/* libFuzzer: the configuration parser (libinih under our line reader and
 * key table). The input is written to a private file and loaded; either a
 * snapshot or errors come back, never a crash or a leak, and no error
 * message carries the token the environment supplies. */
#define _GNU_SOURCE /* memmem */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char path[256];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        char dir[] = "/tmp/ugfuzz-XXXXXX";
        FUZZ_CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof path, "%s/main.conf", dir);
        setenv("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef", 1);
        setenv("TWILIO_AUTH_TOKEN", "fuzz-token-0123456789", 1);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);
    struct config_errors errs = {0};
    struct config *c = config_load(path, &errs);
    FUZZ_CHECK((c != NULL) == (errs.n == 0));
    /* The environment's token never shows up in a message, unless the input
     * itself wrote those bytes somewhere a message may quote. */
    static const char token[] = "fuzz-token-0123456789";
    if (!memmem(data, size, token, sizeof token - 1))
        for (size_t i = 0; i < errs.n; i++)
            FUZZ_CHECK(strstr(errs.msgs[i], token) == NULL);
    config_errors_free(&errs);
    config_unref(c);
    return 0;
}

/* Shared by the libFuzzer harnesses: the entry point, and an assertion that
 * stays on in every build (a failed property is a crash libFuzzer reports
 * with the input that caused it). */
#ifndef USERGATE_FUZZ_H
#define USERGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif

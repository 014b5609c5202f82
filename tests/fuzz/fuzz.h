/* fuzz.h: what every libFuzzer target here shares: the entry point's prototype, and CHECK,
 * which aborts (a crash libFuzzer reports with its input) when an invariant does not hold. */
#ifndef RP_FUZZ_H
#define RP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* RP_FUZZ_H */

/* fuzz_logfmt.c: libFuzzer target for the access-log format compiler (engine/logfmt.c). The
 * input, cut at its first NUL, is compiled as a template; one that compiles must write a line
 * for hostile values (the input itself as every header, path and address) that is one line
 * (its only CR or LF the final '\n'), and a line that fits in n bytes must fail in n - 1. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "logfmt.h"

static char out[1 << 16];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *spec = malloc(size + 1), err[256];
    struct lf_span hv[LOGFMT_MAX_HEADERS];
    struct lf_try tries[2] = {{"a:1", 502, -1, 5}, {(const char *)spec, 200, 7, 9000}};
    struct logfmt *f = NULL;
    struct lf_line l;
    size_t n;
    int rc;

    CHECK(spec);
    memcpy(spec, data, size);
    spec[size] = 0;
    rc = logfmt_compile(spec, &f, err, sizeof(err));
    CHECK(rc == 0 || (rc == -EINVAL && err[0] && !f));
    if (rc) {
        free(spec);
        return 0;
    }
    for (uint32_t i = 0; i < LOGFMT_MAX_HEADERS; i++)
        hv[i] = (struct lf_span){(const char *)data, (uint32_t)size};
    l = (struct lf_line){
        .remote_addr = spec,
        .method = {(const char *)data, (uint32_t)size},
        .path = {(const char *)data, (uint32_t)size},
        .host = {(const char *)data, (uint32_t)size},
        .hdrs = hv,
        .status = 200,
        .tries = tries,
        .n_tries = 2,
        .request_id = spec,
    };
    n = logfmt_write(f, &l, out, sizeof(out));
    if (n) {
        CHECK(out[n - 1] == '\n');
        CHECK(!memchr(out, '\n', n - 1) && !memchr(out, '\r', n - 1));
        CHECK(logfmt_write(f, &l, out, n - 1) == 0);
    }
    logfmt_free(f);
    free(spec);
    return 0;
}

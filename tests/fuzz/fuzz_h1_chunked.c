/* fuzz_h1_chunked.c: libFuzzer target for h1_chunked_feed. The input is fed whole, split in two
 * at a point taken from the input, one byte at a time, and decoded in place; every way must give
 * the same verdict, consumed count and data, and the data is never longer than what was read. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "h1.h"

struct result {
    bool err;
    bool done;
    size_t consumed;
    size_t out_len;
};

/* Feeds buf in pieces of `step` bytes, each copied to an exact-size heap block, with data
 * written to out. */
static struct result feed(const char *buf, size_t len, size_t step, char *out)
{
    struct h1_chunked c = {0};
    struct result r = {0};
    size_t off = 0;

    do {
        size_t k = len - off < step ? len - off : step, ol = (size_t)-1;
        char *piece = malloc(k ? k : 1);
        ssize_t rc;

        CHECK(piece);
        memcpy(piece, buf + off, k);
        rc = h1_chunked_feed(&c, piece, k, out ? out + r.out_len : NULL, &ol, &r.done);
        free(piece);
        if (rc < 0) {
            CHECK(rc == -EBADMSG && !r.done);
            r.err = true;
            return r;
        }
        CHECK((size_t)rc <= k && ol <= (size_t)rc);
        /* Short of the end only when the body ended. */
        CHECK((size_t)rc == k || r.done);
        r.consumed += (size_t)rc;
        r.out_len += ol;
        off += k;
    } while (off < len && !r.done);
    return r;
}

static void same(const struct result *a, const char *a_out, const struct result *b,
                 const char *b_out)
{
    CHECK(a->err == b->err);
    if (a->err)
        return;
    CHECK(a->done == b->done && a->consumed == b->consumed && a->out_len == b->out_len);
    CHECK(!a_out || !b_out || memcmp(a_out, b_out, a->out_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *out_whole = malloc(size + 1), *out_split = malloc(size + 1);
    char *inplace = malloc(size + 1);
    struct result whole, r;
    size_t cut = size ? (size_t)data[0] * size / 256 : 0;

    CHECK(out_whole && out_split && inplace);
    whole = feed(in, size, size ? size : 1, out_whole);
    CHECK(whole.out_len <= whole.consumed && whole.consumed <= size);

    /* Split in two at `cut`. */
    if (cut > 0) {
        struct h1_chunked c = {0};
        size_t ol1 = 0, ol2 = 0;
        bool done = false;
        ssize_t r1 = h1_chunked_feed(&c, in, cut, out_split, &ol1, &done), r2 = 0;

        if (r1 >= 0 && !done)
            r2 = h1_chunked_feed(&c, in + cut, size - cut, out_split + ol1, &ol2, &done);
        r.err = r1 < 0 || r2 < 0;
        r.done = done;
        r.consumed = r.err ? 0 : (size_t)r1 + (size_t)r2;
        r.out_len = ol1 + ol2;
        same(&whole, out_whole, &r, out_split);
    }

    /* One byte at a time (bounded, to keep executions fast). */
    if (size <= 4096) {
        r = feed(in, size, 1, out_split);
        same(&whole, out_whole, &r, out_split);
    }

    /* Without an output buffer, and in place. */
    r = feed(in, size, size ? size : 1, NULL);
    same(&whole, NULL, &r, NULL);
    if (size) {
        struct h1_chunked c = {0};
        size_t ol = 0;
        bool done = false;
        ssize_t rc;

        memcpy(inplace, in, size);
        rc = h1_chunked_feed(&c, inplace, size, inplace, &ol, &done);
        CHECK((rc < 0) == whole.err);
        if (rc >= 0)
            CHECK((size_t)rc == whole.consumed && ol == whole.out_len &&
                  memcmp(inplace, out_whole, ol) == 0);
    }
    free(out_whole);
    free(out_split);
    free(inplace);
    return 0;
}

/* buf.c: the growable byte buffers of internal.h. Live bytes sit at p[off..len); space is
 * made by sliding them down before growing, and an emptied buffer starts again at 0. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char *buf_reserve(struct buf *b, uint32_t n)
{
    uint32_t need;

    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->cap - b->len >= n)
        return b->p + b->len;
    if (b->off) { /* slide live bytes down before growing */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n)
            return b->p + b->len;
    }
    need = b->cap ? b->cap : 256; /* most heads fit; keeps burst memory small */
    while (need - b->len < n)
        need *= 2;
    char *p = realloc(b->p, need);
    if (!p)
        return NULL;
    b->p = p;
    b->cap = need;
    return b->p + b->len;
}

int buf_append(struct buf *b, const void *data, uint32_t n)
{
    char *dst;

    if (!n) /* (data may then be NULL: an empty buffer's) */
        return 0;
    dst = buf_reserve(b, n);
    if (!dst)
        return -ENOMEM;
    memcpy(dst, data, n);
    b->len += n;
    return 0;
}

void buf_consume(struct buf *b, uint32_t n)
{
    b->off += n;
    if (b->off >= b->len)
        b->off = b->len = 0;
}

void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

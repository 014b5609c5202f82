/* buf.h: byte buffers (buf.c) and a socket's output queue. */
#ifndef RP_BUF_H
#define RP_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "h1.h"

struct buf {
    char *p;
    uint32_t off, len, cap; /* live bytes are p[off..len) */
};

static inline uint32_t buf_used(const struct buf *b)
{
    return b->len - b->off;
}

static inline char *buf_data(const struct buf *b)
{
    return b->p + b->off;
}

/* Appends; returns 0 or -ENOMEM. Never call on memory an in-flight SQE points at. */
int buf_append(struct buf *b, const void *data, uint32_t n);
/* Makes room for n more bytes and returns where they go (commit with b->len += n). */
char *buf_reserve(struct buf *b, uint32_t n);
void buf_consume(struct buf *b, uint32_t n);

/* Appends while *ok: a message is composed with a run of these and checked once at the end
 * (*ok turns false on the first failure, -ENOMEM, and later appends do nothing). */
static inline void buf_put(struct buf *b, bool *ok, const void *p, size_t n)
{
    /* the common case inline: room after the live bytes (buf_reserve's rewind of a fully
     * consumed buffer and its growth stay out of line) */
    if (!n) /* (p may then be NULL: an empty buffer's data) */
        return;
    if (*ok && b->cap - b->len >= n && !(b->off && b->off == b->len)) {
        memcpy(b->p + b->len, p, n);
        b->len += (uint32_t)n;
        return;
    }
    if (*ok && buf_append(b, p, (uint32_t)n))
        *ok = false;
}
void buf_free(struct buf *b);

static inline void buf_put_str(struct buf *b, bool *ok, const char *s)
{
    buf_put(b, ok, s, strlen(s));
}

/* v in decimal (no snprintf on the hot path). */
static inline void buf_put_u64(struct buf *b, bool *ok, uint64_t v)
{
    char tmp[24], *p = tmp + 24;

    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    buf_put(b, ok, p, (size_t)(tmp + 24 - p));
}

/* A status code as its three digits. */
static inline void buf_put_status(struct buf *b, bool *ok, unsigned status)
{
    char d[3] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                 (char)('0' + status % 10)};

    buf_put(b, ok, d, 3);
}

/* "Name: value\r\n" */
static inline void buf_put_header(struct buf *b, bool *ok, const struct h1_header *h)
{
    buf_put(b, ok, h->name, h->name_len);
    buf_put(b, ok, ": ", 2);
    buf_put(b, ok, h->value, h->value_len);
    buf_put(b, ok, "\r\n", 2);
}

/* Output: `sending` is what the kernel holds (one send in flight), `pending` takes appends. */
struct outq {
    struct buf sending;
    struct buf pending;
    bool busy;
};

static inline uint32_t outq_bytes(const struct outq *q)
{
    return buf_used(&q->sending) + buf_used(&q->pending);
}

#endif /* RP_BUF_H */

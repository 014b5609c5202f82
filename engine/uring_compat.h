/* uring_compat.h: what liburing 2.3 (Debian 12) lacks and the kernel has.
 *
 * The constants come from newer uapi headers; the buffer-ring helpers are written on
 * io_uring_register_buf_ring, which 2.3 has. Keep every such gap here, nowhere else.
 */
#ifndef RP_URING_COMPAT_H
#define RP_URING_COMPAT_H

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif

/* Allocates and registers a provided-buffer ring of `entries` (a power of two) for buffer
 * group `bgid`. Returns the ring, or NULL with *err set to a negative errno. Free it with
 * rp_free_buf_ring(). */
static inline struct io_uring_buf_ring *rp_setup_buf_ring(struct io_uring *ring,
                                                          unsigned entries, int bgid, int *err)
{
    struct io_uring_buf_reg reg;
    struct io_uring_buf_ring *br;
    size_t sz = (size_t)entries * sizeof(struct io_uring_buf);
    int ret;

    if (posix_memalign((void **)&br, 4096, sz)) {
        *err = -ENOMEM;
        return NULL;
    }
    memset(br, 0, sz);
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (unsigned long)br;
    reg.ring_entries = entries;
    reg.bgid = (unsigned short)bgid;
    ret = io_uring_register_buf_ring(ring, &reg, 0);
    if (ret) {
        free(br);
        *err = ret;
        return NULL;
    }
    io_uring_buf_ring_init(br);
    *err = 0;
    return br;
}

/* An SQE, submitting what is queued first when the submission queue is full. */
static inline struct io_uring_sqe *rp_get_sqe(struct io_uring *ring)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

    while (!sqe) {
        io_uring_submit(ring);
        sqe = io_uring_get_sqe(ring);
    }
    return sqe;
}

static inline void rp_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
                                    int bgid)
{
    if (!br)
        return;
    io_uring_unregister_buf_ring(ring, bgid);
    free(br);
}

#endif /* RP_URING_COMPAT_H */

/* bufring.c: provided-buffer rings with their buffers (bufring.h), on uring_compat.h's
 * rp_setup_buf_ring, since liburing 2.3 has no io_uring_setup_buf_ring.
 */
#include "bufring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uring_compat.h"

int bufring_setup(struct io_uring *ring, unsigned nbufs, unsigned bufsz, int bgid, bool prefault,
                  struct io_uring_buf_ring **br, char **bufs)
{
    size_t total = (size_t)nbufs * bufsz;
    int ret;

    *bufs = NULL;
    *br = rp_setup_buf_ring(ring, nbufs, bgid, &ret);
    if (!*br)
        return ret;
    if (posix_memalign((void **)bufs, 4096, total)) {
        rp_free_buf_ring(ring, *br, bgid);
        *br = NULL;
        *bufs = NULL;
        return -ENOMEM;
    }
    if (prefault)
        memset(*bufs, 0, total);
    for (unsigned i = 0; i < nbufs; i++)
        io_uring_buf_ring_add(*br, *bufs + (size_t)i * bufsz, bufsz, (unsigned short)i,
                              io_uring_buf_ring_mask(nbufs), (int)i);
    io_uring_buf_ring_advance(*br, (int)nbufs);
    return 0;
}

void bufring_free(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid, char *bufs)
{
    if (ring)
        rp_free_buf_ring(ring, br, bgid); /* skips a NULL br */
    else
        free(br);
    free(bufs);
}

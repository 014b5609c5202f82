/* bufring.h: a provided-buffer ring together with the memory of its buffers, set up in one call
 * (registered, every buffer handed to the kernel) and torn down in one. The engine's workers
 * and the tools (ringload, ringorigin) receive into these; giving a buffer back after use stays
 * with the caller, who batches the ring's tail updates its own way.
 */
#ifndef RP_BUFRING_H
#define RP_BUFRING_H

#include <liburing.h>
#include <stdbool.h>

/* Registers on `ring` a provided-buffer ring for buffer group `bgid` of `nbufs` buffers (a power
 * of two, at most 32768) of `bufsz` bytes each, in one page-aligned block; buffer i (its buffer
 * id) is at *bufs + i * bufsz, and all of them are given to the kernel before this returns.
 * prefault writes the whole block first, so its pages are in before the first receive. Call it
 * on the thread that submits to `ring`. Returns 0 with *br and *bufs set (the caller owns both,
 * until bufring_free), or a negative errno (-ENOMEM, or the kernel's refusal of the ring) with
 * *br and *bufs NULL and nothing left to free. */
int bufring_setup(struct io_uring *ring, unsigned nbufs, unsigned bufsz, int bgid, bool prefault,
                  struct io_uring_buf_ring **br, char **bufs);

/* Undoes bufring_setup: unregisters group `bgid` from `ring` and frees the ring and the buffers.
 * Pass ring NULL once io_uring_queue_exit has run (exiting unregistered the group): then it only
 * frees. A NULL br or bufs is skipped. No receive may still be using the buffers. */
void bufring_free(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid, char *bufs);

#endif /* RP_BUFRING_H */

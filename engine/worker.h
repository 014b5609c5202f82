/* worker.h: the worker's functions (worker.c): running one, its ring plumbing and the
 * socket operations every layer uses, and the slab allocator. */
#ifndef RP_WORKER_H
#define RP_WORKER_H

#include "worker-t.h"

/* Runs one worker on the calling thread until the server has drained. */
void worker_run(struct worker *w, struct start_gate *g);
/* The worker the calling thread runs, NULL on other threads. */
extern __thread struct worker *worker_self;

void slab_init(struct slab *sl, size_t objsz, uint32_t per_block);
void *slab_alloc(struct slab *sl); /* zeroed; NULL when out of memory */
void slab_free(struct slab *sl, void *p);
void slab_fini(struct slab *sl);

struct io_uring_sqe *w_sqe(struct worker *w);
/* user_data for an op on a sock */
static inline uint64_t ud_of(const void *p, enum op op)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)op;
}

void sock_init(struct sock *s, int fd, const struct sock_ops *ops);
void sock_recv_start(struct worker *w, struct sock *s);
void sock_recv_stop(struct worker *w, struct sock *s);
/* Queues bytes to send (copied); sock_flush starts a send if none is in flight. Queue what
 * one event produces, then flush once: a response head and its body leave in one segment.
 * Returns 0 or -ENOMEM. */
int sock_queue(struct sock *s, const void *p, uint32_t n);
void sock_flush(struct worker *w, struct sock *s);
/* Takes back the send in flight if its SQE has not been submitted yet: it becomes a no-op
 * and no byte of it reaches the kernel. Returns whether it did (false: no send in flight, or
 * the kernel has it). For a sock about to be killed: its output is lost either way. */
bool sock_unsend(struct worker *w, struct sock *s);
/* Shuts the write side (FIN after what was sent). Held like any op on the sock, so the fd is
 * closed only after it ran: io_uring may resolve the fd number late, in an io-wq worker. */
void sock_shutdown_write(struct worker *w, struct sock *s);
/* Makes the sock's socket: a socket SQE where the kernel has one (ops->on_socket runs on its
 * completion), else socket(2) (ops->on_socket runs before this returns). */
void sock_open(struct worker *w, struct sock *s, int family);
/* Submits a connect of the sock's fd; ops->on_connect runs on its completion. */
void sock_connect(struct worker *w, struct sock *s, const struct sockaddr_storage *sa,
                  socklen_t len);
/* Cancels the sock's operations; it is closed and released once they have completed. */
void sock_kill(struct worker *w, struct sock *s);
uint64_t w_now(struct worker *w);

#endif /* RP_WORKER_H */

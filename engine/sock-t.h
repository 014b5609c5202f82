/* sock-t.h: the types of the worker's sockets: what every connection embeds first, and
 * how completions find it. */
#ifndef RP_SOCK_T_H
#define RP_SOCK_T_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "timer.h"

enum op {
    OP_NONE = 0, /* completions nobody waits for: close, cancel, shutdown */
    OP_ACCEPT,
    OP_RECV,
    OP_SEND,
    OP_SOCKET,
    OP_CONNECT,
    OP_SHUTDOWN,
    OP_WAKE, /* a message from another worker's ring: a cache fill this request waited for */
    OP_FILE, /* a write to a file (struct file_op: the access log's) */
};
#define OP_BITS 4
#define OP_MASK ((uint64_t)((1u << OP_BITS) - 1))

struct sock;

/* What a kind of socket does with its events; the worker dispatches through it. Handlers
 * may kill the sock; it is freed only after the loop pass (release). */
struct sock_ops {
    void (*on_data)(struct sock *s, char *p, uint32_t n); /* p is a provided buffer */
    void (*on_eof)(struct sock *s, int err);              /* 0: orderly close */
    void (*on_sent)(struct sock *s);                      /* a send completed */
    void (*on_socket)(struct sock *s, int res);           /* OP_SOCKET result */
    void (*on_connect)(struct sock *s, int res);          /* OP_CONNECT result */
    void (*release)(struct sock *s);                      /* free the object */
    /* A sock without a socket of its own (an HTTP/2 stream to a backend, upstream_h2.c):
     * sock_flush calls flush instead of sending, sock_recv_start/stop call recv_ctl. NULL
     * for real sockets. */
    void (*flush)(struct sock *s);
    void (*recv_ctl)(struct sock *s, bool on);
};
enum recv_state { RECV_OFF = 0, RECV_ARMED, RECV_CANCELLING };

struct sock {
    int fd;
    const struct sock_ops *ops;
    uint8_t recv;      /* enum recv_state */
    bool want_recv;    /* re-arm the multishot receive when it ends */
    bool dead;         /* closing: waiting for in-flight completions */
    bool connecting;   /* a connect SQE is in flight */
    bool shutting;     /* a shutdown SQE is in flight */
    uint16_t inflight; /* SQEs naming this sock whose last CQE has not arrived */
    struct buf in;     /* received, not yet consumed */
    struct outq out;
    struct timer tm;
    struct sock *grave_next; /* dead, waiting to be freed at the end of the loop pass */
};

#define WINDOW_BYTES (256u * 1024) /* most a connection queues for a slow peer */
#define REPLAY_MAX (64u * 1024)    /* requests up to this size can be retried */
#define TLS_PLAIN_CAP (64u * 1024) /* the worker's buffer for decrypted bytes */

#endif /* RP_SOCK_T_H */

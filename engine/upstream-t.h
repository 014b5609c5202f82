/* upstream-t.h: the upstream HTTP client's types (upstream.c): a backend connection, what its
 * user is told, its pool. */
#ifndef RP_UPSTREAM_T_H
#define RP_UPSTREAM_T_H

#include <stdbool.h>
#include <stdint.h>

#include "h1.h"
#include "sock-t.h"
#include "util.h"

struct worker;
struct backend;
struct target;
struct tls_conn;

enum up_state { US_CONNECTING = 1, US_READY, US_IDLE };

struct upconn;

/* Body bytes of the response being read. `raw` are the bytes as the backend framed them
 * (chunk sizes and the trailer section included); `data` the body itself. They are the same
 * bytes unless the body is chunked; then `data` is given only as the user asked (up->decode):
 * UP_RAW gives none (data_len 0), UP_DECODE decodes in place (raw is then gone: raw_len 0),
 * UP_BOTH decodes into the worker's scratch. */
struct up_body {
    char *raw;
    const char *data;
    uint32_t raw_len, data_len;
    /* The response's trailer fields, with its last body bytes (a call may carry only them):
     * an HTTP/2 backend's, or an HTTP/1.1 backend's trailer section when it came whole in
     * one receive (it is in `raw`'s last chunk too); NULL and 0 otherwise. */
    const struct h1_header *trailers;
    uint32_t n_trailers;
};
enum up_decode { UP_RAW = 0, UP_DECODE, UP_BOTH };

/* What a user of the upstream client (an exchange, a health probe, a background refresh) is
 * told about its request. The client reads the response: heads, body framing, its end.
 * Every callback may close `up` (up_close), or release it, before it returns. */
struct up_ops {
    void (*ready)(struct upconn *up); /* TCP is up (a TLS handshake has begun); may be NULL */
    void (*sent)(struct upconn *up);  /* a send completed; may be NULL */
    /* A response head: interim ones (1xx) too, each before the final one. After a 101 the
     * user calls up_tunnel or the response fails (-EPROTO). A chunked body's first bytes, if
     * they came with the head, were checked: a response that breaks at once fails before
     * its head is handed over. */
    void (*head)(struct upconn *up, const struct h1_response *r);
    void (*body)(struct upconn *up, const struct up_body *b); /* may be NULL: discarded */
    /* The whole response arrived. `reusable`: the backend allows another request and no byte
     * is left over or in flight. The user releases (up_release_to_pool) or closes `up`. */
    void (*end)(struct upconn *up, bool reusable);
    /* The bytes of one receive were handed over (heads, body): what they made the user queue
     * can leave in one send. Not after `end`. May be NULL. */
    void (*flush)(struct upconn *up);
    /* After up_tunnel (so needed only by users that call it): the backend's bytes, decrypted
     * on TLS, and the orderly end of its side. */
    void (*data)(struct upconn *up, char *p, uint32_t n);
    void (*eof)(struct upconn *up);
    /* The request failed: err a negative errno (-ETIMEDOUT for timeouts, -EBADMSG for a
     * malformed response, -ECONNRESET for a close before its end), `what` says where; `up` is
     * still open and the callee closes it. */
    void (*failed)(struct upconn *up, int err, const char *what);
    void (*try_timeout)(struct upconn *up); /* try_timeout passed without a byte; may be NULL */
    /* No client waits for this user's requests (background refreshes): when the worker
     * starts draining, pools_close_all fails them at once (-ECANCELED) instead of waiting. */
    bool background;
};

/* The response reader's state of the current request (upstream.c). */
enum up_read { UR_HEAD = 0, UR_BODY, UR_TUNNEL };

struct upconn {
    struct sock sk;
    struct worker *w;
    struct backend *be;
    struct target *t;
    const struct up_ops *ops; /* its user's callbacks, NULL while pooled */
    void *user;               /* handed back through ops: the exchange's conn, a probe... */
    struct list_node link;    /* the backend's idle pool, or w->background while in use */
    uint32_t use;             /* counts up_get: a callback's user may change under it */
    uint8_t state;            /* enum up_state */
    uint8_t read;             /* enum up_read */
    uint8_t method;           /* enum h1_method of the request: HEAD answers have no body */
    uint8_t decode;           /* enum up_decode, set by the user (in its head callback) */
    uint8_t body;             /* enum h1_body_kind of the response being read */
    bool skip_body;           /* up_skip_body: the user is done after the head */
    bool ended;               /* the response ended in the receive being read */
    bool reused;              /* taken from the pool for the current request */
    bool got_bytes;           /* a response byte arrived for the current request */
    bool reuse_ok;            /* the backend allows another request on this connection */
    bool needs_socket;        /* new: up_start() makes its socket and connects */
    bool req_sent;            /* a send of the current request completed */
    bool req_whole;           /* all of the request is queued: read_timeout may run */
    bool h2;                  /* a stream on an HTTP/2 backend connection (upstream_h2.c) */
    bool fresh_h2;            /* up_get(fresh) of a stream: a connection of its own */
    bool busy;                /* counted in its pool's busy */
    uint64_t left;            /* Content-Length bytes of the body still to come */
    struct h1_chunked ck;     /* a chunked body's decoder */
    struct tls_conn *tls;     /* https:// backends: TLS state, from the connect on */
    struct buf tls_wait;      /* plaintext queued while the handshake runs */
    uint64_t connect_deadline_ms;
    uint64_t try_deadline_ms; /* try_timeout of the current attempt; 0: none, or it fired */
    uint64_t sent_ns;         /* when the attempt started (least_latency only) */
};

struct pool {
    struct list_node idle; /* struct upconn.link, most recently used first */
    uint32_t n;
    /* connections of this backend in use (busy), and the most in use lately (peak, since
     * peak_ms): a connection is pooled while idle + busy stays within the peak, so traffic
     * that keeps that many busy does not open and close connections past max_idle */
    uint32_t busy, peak;
    uint64_t peak_ms;
    struct list_node h2; /* HTTP/2 backends: the connections (struct h2u_sess.link) */
};

#endif /* RP_UPSTREAM_T_H */

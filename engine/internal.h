/* internal.h: the engine's shared types: server, worker, sockets, client connections and
 * upstream connections. Only engine/ and balance/ include it; front ends see ringproxy.h.
 *
 * Ownership in one paragraph: a worker owns its ring, its provided buffers, its timer wheel,
 * its client connections (struct conn), its upstream connections (struct upconn) and the
 * background cache refreshes that use some of them (refresh.c). A struct sock is embedded
 * first in both kinds of connection; every SQE that names a sock holds a reference
 * (sock.inflight) until its last CQE, and a dead sock is freed only when that count is 0.
 */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#include <liburing.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../balance/balance.h"
#include "../balance/health.h"
#include "h1.h"
#include "hooks.h"
#include "ringproxy.h"
#include "route.h"
#include "timer.h"
#include "util.h"

/* ---- byte buffers ---------------------------------------------------------------------- */

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
    if (*ok && buf_append(b, p, (uint32_t)n))
        *ok = false;
}
void buf_free(struct buf *b);

static inline void buf_put_str(struct buf *b, bool *ok, const char *s)
{
    buf_put(b, ok, s, strlen(s));
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

/* ---- sockets ----------------------------------------------------------------------------- */

enum op {
    OP_NONE = 0, /* completions nobody waits for: close, cancel, shutdown */
    OP_ACCEPT,
    OP_RECV,
    OP_SEND,
    OP_SOCKET,
    OP_CONNECT,
    OP_SHUTDOWN,
    OP_WAKE, /* a message from another worker's ring: a cache fill this request waited for */
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

/* ---- connections --------------------------------------------------------------------------- */

#define WINDOW_BYTES (256u * 1024) /* most a connection queues for a slow peer */
#define REPLAY_MAX (64u * 1024)    /* requests up to this size can be retried */
#define TLS_PLAIN_CAP (64u * 1024) /* the worker's buffer for decrypted bytes */

/* What only some exchanges need, allocated when they do: every in-flight request carries
 * a struct exchange, so it stays small. */
struct ex_more {
    const struct local_route *local; /* a local endpoint's request, reading its body */
    uint32_t local_head_len;
    uint32_t m_len, p_len; /* mp: "METHOD PATH", kept for response and error hooks */
    char mp[];
};

/* Where an exchange is in its life. The request's own direction (its body still arriving,
 * or whole) runs beside it: ex->req_done. Timers and events are decided by this state. */
enum ex_state {
    EX_IDLE = 0,   /* no request: the worker's no_ex, between requests */
    EX_LOCAL,      /* a local endpoint's request, reading its body before the handler runs */
    EX_CACHE_WAIT, /* parked behind another request filling the same cache entry */
    EX_UPSTREAM,   /* at a backend (connecting, sending, or waiting for its response head) */
    EX_RESPONSE,   /* a final response head went to the client: its body is relayed */
    EX_TUNNEL,     /* switched protocols (a 101 went to the client): bytes relayed both ways */
    EX_DONE,       /* the response is complete: the exchange is ending */
};

/* One request/response exchange on a client connection. */
struct exchange {
    uint8_t state;      /* enum ex_state */
    bool req_done;      /* whole request forwarded (head and body) */
    bool resp_dechunk;  /* chunked response to an HTTP/1.0 client */
    bool close_client;  /* close the client connection after this response */
    bool replayable;    /* `replay` holds the whole request so far */
    bool reuse_retried; /* already retried once after a stale pooled connection */
    bool idempotent;    /* may be sent again: an idempotent method, or an Idempotency-Key */
    bool upgrade;       /* the request asks to switch protocols and the domain tunnels */
    uint8_t tun;        /* tunnel.c's record of half-closes */
    uint8_t method_id;
    uint8_t client_minor;
    uint8_t req_body, resp_body; /* enum h1_body_kind */
    uint8_t attempts;            /* backends tried so far */
    uint64_t tried;              /* bit i: the target's backend i was tried */
    uint64_t req_left, req_bytes;
    struct h1_chunked req_ck;
    struct target *t;
    struct backend *be; /* the backend of `up`, the attempt whose response is relayed */
    struct upconn *up;
    struct upconn *up2;   /* hedge = true: a second attempt racing `up` (its backend up2->be) */
    struct buf replay;    /* upstream request head + body bytes, while replayable; for a local
                             endpoint: the client's head, then the decoded body */
    struct ex_more *more; /* what only some exchanges need, NULL for the others */
    struct pc_state *pc;  /* the cache's view of this request (pcache.c), NULL: not cached */
};

/* Whether an exchange holds a request (any state but EX_IDLE). */
static inline bool ex_active(const struct exchange *ex)
{
    return ex->state != EX_IDLE;
}

/* Whether the client has (part of) an answer from a backend: nothing can be retried. */
static inline bool ex_resp_started(const struct exchange *ex)
{
    return ex->state >= EX_RESPONSE;
}

struct conn {
    struct sock sk; /* first: CQE user_data points here */
    struct worker *w;
    struct list_node link; /* the worker's list of live connections */
    bool close_after;      /* close once the output has drained */
    bool linger;           /* closing: write side shut, discarding input until EOF */
    bool peer_eof;
    bool recv_paused;  /* input held back: the other side is slow */
    bool tls_notified; /* close_notify sent */
    bool admin;        /* accepted on the admin listener: only the admin API answers */
    uint32_t nreq;
    uint32_t head_scanned;    /* bytes of a partial head in sk.in known to hold no end */
    uint64_t head_start_ms;   /* when the first byte of the current head arrived */
    struct sockaddr_in6 peer; /* v4 clients are stored as AF_INET in the same space */
    struct tls_conn *tls;     /* TLS state on a TLS listener's connection, else NULL */
    struct exchange *ex;      /* the current request's, or the worker's no_ex between them */
};

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
};

/* CQE user_data carries the op in a pointer's low OP_BITS bits: everything an SQE names is
 * 16-byte aligned (malloc'ed, or aligned like this array element). */
/* Fixed-size objects (connections) carved from big blocks and recycled through a free list,
 * so long-lived connection structs do not interleave with short-lived buffers in the heap:
 * memory freed after a burst is reused instead of staying fragmented. Per worker. */
struct slab {
    void *free;    /* free list, linked through each object's first word */
    void **blocks; /* every block, for slab_fini */
    uint32_t n_blocks, objsz, per_block;
};

void slab_init(struct slab *sl, size_t objsz, uint32_t per_block);
void *slab_alloc(struct slab *sl); /* zeroed; NULL when out of memory */
void slab_free(struct slab *sl, void *p);
void slab_fini(struct slab *sl);

struct listener;
struct worker;

/* What a listener does with a connection it accepted (the session layer's). */
typedef void (*accept_fn)(struct worker *w, int fd, const struct listener *l);

struct listener {
    int fd;
    bool armed;
    bool tls;
    bool admin;
    accept_fn accepted;
} __attribute__((aligned(1 << OP_BITS)));

/* A message another worker's ring posts to this one (OP_WAKE, through IORING_OP_MSG_RING):
 * embedded first in whatever the message is about; the worker runs fn with it. */
struct wake {
    void (*fn)(struct worker *w, struct wake *k);
};

/* What the worker's loop runs of a layer above it, besides socket events (struct sock_ops):
 * each layer that keeps per-worker state has one, listed in the server (s->modules) in the
 * order they run. Every member may be NULL. Worker thread. */
struct worker_module {
    /* The worker's own state, before its ring: 0 or -errno, which stops the server's start. */
    int (*init)(struct worker *w);
    int (*start)(struct worker *w);  /* the ring is up, before the loop: 0 or -errno (logged) */
    void (*tick)(struct worker *w);  /* every loop pass, after the timers ran */
    void (*drain)(struct worker *w); /* the worker starts draining: finish, take nothing new */
    void (*force)(struct worker *w); /* the drain timed out: close what is left */
    void (*fini)(struct worker *w);  /* after the loop */
    const char *name;                /* for the log */
};
/* The layers' modules (session_h1.c, upstream.c, balance/health.c), in server.c's list. */
extern const struct worker_module session_module, upstream_module, health_module;

struct worker {
    struct rp_server *s;
    int id;
    pthread_t thread;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    uint32_t nbufs, bufsz;
    uint32_t br_added; /* buffers given back since the last advance */
    struct listener *ls;
    uint32_t n_ls;
    struct timer_wheel *tw;
    uint64_t now_ms;
    struct list_node conns; /* struct conn.link */
    uint32_t nconns;
    struct sock *graveyard;
    struct pool *pools;          /* one per backend */
    struct list_node background; /* upconns in use by background users (up_ops.background) */
    struct hcheck *hchecks;      /* active checks of the backends this worker owns */
    uint32_t n_hchecks;
    struct slab conn_slab; /* client connections (upstream ones churn: plain malloc) */
    struct slab ex_slab;   /* exchanges: one per request in flight */
    struct exchange no_ex; /* what an idle connection points at: inactive, never written */
    char *plain;           /* decrypted bytes of the receive being handled (TLS) */
    struct buf scratch;    /* a response head being composed for a TLS client */
    struct buf dechunk;    /* UP_BOTH: a chunked response body decoded beside its framing */
    uint64_t tls_failures; /* handshakes or records that failed */
    struct bal_worker bal;
    uint32_t ops; /* SQEs whose last CQE has not arrived */
    bool draining;
    bool has_socket_op; /* IORING_OP_SOCKET (Linux 5.19+) */
    uint64_t drain_deadline_ms;
    uint64_t last_busy_ms;     /* last loop pass that reaped a completion */
    uint32_t frees_since_trim; /* sockets freed since the last malloc_trim */
    int start_err;
    /* counters (worker-local, read at exit) */
    uint64_t accepted, requests, errors;
    uint64_t tunnels, tunnel_bytes_in, tunnel_bytes_out; /* in: client to backend */
};

struct cache;

struct listen_spec {
    char *addr;
    bool tls;
    bool admin; /* the cache admin API's listener */
};

struct rp_server {
    rp_server_config cfg;
    struct listen_spec *listen; /* plain and TLS listeners, copied from the config */
    size_t n_listen;
    char *tls_cert, *tls_key;
    struct tls_ctx *tls; /* server context while running, if any listener is TLS */
    bool upstream_tls;   /* some backend is https:// */
    struct route_table rt;
    struct hooks hooks;
    struct hooks admin;          /* the admin listener's endpoints (pcache.c) */
    char *admin_token;           /* NULL: none required */
    struct cache *cache;         /* the response cache, NULL when off (cache/cache.h) */
    int cache_threads;           /* compression threads to start with the server */
    uint32_t cache_lock_ms;      /* how long a miss waits for another request's fill */
    bool x_cache;                /* send X-Cache on responses that went through the cache */
    struct health_state *health; /* per backend, while running */
    struct h1_limits lim;
    struct worker *workers;
    int nworkers;
    const struct worker_module *const *modules; /* NULL-terminated, in the order they run */
    atomic_int running;
    atomic_int stopping;
};

/* Start-up handshake: each worker reports its set-up result, then waits for `go`, so a
 * failure in any worker stops all of them before one serves. */
struct start_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int reported;
    bool go;
};

/* Runs one worker on the calling thread until the server has drained. */
void worker_run(struct worker *w, struct start_gate *g);
/* The worker the calling thread runs, NULL on other threads. */
extern __thread struct worker *worker_self;

/* ---- worker.c: ring plumbing -------------------------------------------------------------- */

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

/* ---- session_h1.c: the HTTP/1.1 client-side session -------------------------------------- */

/* A new client connection on fd; `tls`: it came from a TLS listener. */
void conn_accepted(struct worker *w, int fd, bool tls, bool admin);
/* The listeners' accept_fn: a connection of listener l. */
void session_accept(struct worker *w, int fd, const struct listener *l);
void conn_on_data(struct conn *c, const char *p, uint32_t n);
void conn_on_eof(struct conn *c, int err);
void conn_on_sent(struct conn *c);
void conn_release(struct conn *c);
void conn_drain(struct conn *c);
/* Closes the connection and whatever backend connection its exchange holds. */
void conn_close(struct conn *c);
/* Re-arms the connection's timer for the state it is in. */
void conn_update_timer(struct conn *c);
/* Goes on with the input: the body of the exchange in progress, or the next request heads. */
void conn_process(struct conn *c);
/* Input held back (recv_paused) is read again, then processed. */
void conn_resume_input(struct conn *c);
/* The exchange ended (ex_end ran): `close` after this answer, `unread`: part of the request
 * body was never read (discarded until the client closes). Then the next request, if any. */
void conn_exchange_done(struct conn *c, bool close, bool unread);

/* The response writer, HTTP/1.1. A head is composed in conn_head_buf() and handed over with
 * conn_head_done() (which encrypts it on TLS, or closes the connection when !ok); bodies go
 * through conn_queue_bytes(); conn_flush_out() starts the send. */
struct buf *conn_head_buf(struct conn *c);
void conn_head_done(struct conn *c, bool ok);
void conn_queue_bytes(struct conn *c, const void *p, uint32_t n);
void conn_flush_out(struct conn *c);
/* The head of the exchange's final response r as the client gets it (its framing and
 * Connection per the exchange; X-Cache and storing per its cache state); `hk`: the response
 * hooks' context, or NULL. Sent with the body that follows. */
void conn_write_response_head(struct conn *c, const struct h1_response *r,
                              const struct rp_hook_ctx *hk);
/* An interim (1xx) response, passed on to an HTTP/1.1 client and flushed. */
void conn_write_interim(struct conn *c, const struct h1_response *r);
/* Asks an HTTP/1.1 client that sent Expect: 100-continue for its body (answered here, not
 * forwarded: an HTTP/1.0 backend would never send the 100). */
void conn_send_continue(struct conn *c, const struct h1_request *r);
/* The client's address as text ("" when unknown), for X-Forwarded-For and hooks. */
void conn_format_peer(const struct sockaddr_in6 *sa, char *out, size_t cap);

/* ---- exchange.c: one request's life ---------------------------------------------------------- */

#define H1_HEADERS_CAP 256 /* fields a parsed head may hold (the stack array's size) */

/* Starts the exchange of request r (its head is head[0..head_len), its body, if any, follows
 * in the connection's input): routing, hooks, the cache, a backend; or an answer made here. */
void ex_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len);
/* Moves request body bytes from the client's input to the backend (or a local endpoint). */
void ex_feed_body(struct conn *c);
/* Gives the connection an exchange for its current request (c->ex); NULL when out of
 * memory. ex_end releases it (and what it holds: backend count, replay, cache state, a
 * racing hedge) and points c->ex back at the worker's idle no_ex. */
struct exchange *ex_new(struct conn *c);
void ex_end(struct conn *c);
/* The client side gives up on the exchange: its attempt is closed and it ends. */
void ex_abort(struct conn *c);
/* A request parked behind a cache fill goes on: answered from the cache (`served`), or sent
 * to its backend. */
void conn_cache_resume(struct conn *c, bool served);

struct pc_state;

/* What shapes a request head on its way to a backend, besides the request itself. */
struct upstream_head {
    const struct target *t;
    const struct backend *be;        /* its authority is the Host unless t or a hook says */
    const struct sockaddr_in6 *peer; /* the client: the last X-Forwarded-For hop */
    bool tls;                        /* the client came over TLS: X-Forwarded-Proto: https */
    bool upgrade; /* in: the request asks to tunnel; out: its Upgrade fields were written */
    const struct pc_state *pc;     /* the cache's conditionals replace the client's; NULL: none */
    const struct rp_hook_ctx *ctx; /* a request hook's Host, or NULL */
};
/* Writes request r's head as the backend should see it: HTTP/1.1, the Host it expects,
 * hop-by-hop fields dropped, X-Forwarded-* set, one framing header of our own. Returns false
 * when out of memory. Used by exchanges and by background refreshes (refresh.c). */
bool conn_write_upstream_head(const struct h1_request *r, struct upstream_head *h, struct buf *b);

/* ---- respond.c: answers the proxy composes ---------------------------------------------- */

/* Sends an answer the proxy made; `close` ends the connection after it. */
void conn_send_answer(struct conn *c, const struct rp_response *a, bool head_only, bool close);

/* Writes an answer: status line, Server, the fields f[0..n), Content-Type text/plain unless
 * f names one, Content-Length, Connection: close when `close` (the connection then ends
 * after it), the body unless head_only; then flushes. */
void respond_answer(struct conn *c, int status, const struct h1_header *f, uint32_t n,
                    const char *body, uint32_t blen, bool head_only, bool close);
/* A text/plain answer; respond_error also closes after it, discarding unread input. */
void respond_text(struct conn *c, int status, const char *body, bool head_only, bool close);
void respond_error(struct conn *c, int status);
/* Answers request r before its body (if any) was read: that body is discarded with a close,
 * since it would otherwise be parsed as the next request. */
void respond_unread_fields(struct conn *c, const struct h1_request *r, int status,
                           const struct h1_header *f, uint32_t n, const char *body, uint32_t blen);
void respond_unread(struct conn *c, const struct h1_request *r, const struct rp_response *a);
void respond_unread_text(struct conn *c, const struct h1_request *r, int status, const char *body);

/* ---- local.c: rp_handle endpoints and the admin API -------------------------------------- */

/* Serves request r here when a local endpoint's pattern matches its path (true), reading a
 * body whole first (local_feed_body runs as its bytes arrive); false: proxy it. */
bool local_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len);
void local_feed_body(struct conn *c);
/* A request on the admin listener: the token first, then the admin endpoints, else 404. */
void local_admin_request(struct conn *c, const struct h1_request *r, const char *head,
                         uint32_t head_len);

/* ---- tunnel.c: Upgrade tunnels ------------------------------------------------------------ */

/* The Upgrade field of a request that asks for a protocol switch t tunnels, else NULL. */
const struct h1_header *tunnel_wanted(const struct h1_request *r, const struct target *t);
/* Writes Connection: upgrade and the Upgrade field to an upstream head; false (nothing
 * written) when r is not a tunnelled request. */
bool tunnel_put_request_fields(const struct h1_request *r, const struct target *t, struct buf *b,
                               bool *ok);
/* Whether a 101 may start a tunnel: it names the protocol (an Upgrade field). */
bool tunnel_response_ok(const struct h1_response *r);
/* The backend switched (101 head r on up): the 101 goes to the client and the exchange
 * relays bytes from now on. May close the connection. */
void tunnel_begin(struct conn *c, struct upconn *up, const struct h1_response *r);
/* Bytes one side sent; each queues them to the other, bounded by the window. */
void tunnel_client_data(struct conn *c, const char *p, uint32_t n);
void tunnel_backend_data(struct conn *c, struct upconn *up, const char *p, uint32_t n);
/* An orderly end of one side (err: a reset, which closes both). */
void tunnel_client_eof(struct conn *c, int err);
void tunnel_backend_eof(struct conn *c);
/* A send of either side completed: passes half-closes on, ends a tunnel done both ways. */
void tunnel_sent(struct conn *c);

/* ---- pcache.c: the request path's use of the cache ------------------------------------------ */

struct cache_entry;

enum pc_result { PC_BYPASS, PC_FORWARD, PC_SERVED, PC_WAIT };
/* After the request hooks, for a domain that uses the cache: answers a hit (PC_SERVED: the
 * caller ends the exchange; a stale-while-revalidate hit also starts a background refresh),
 * or sets c->ex->pc to revalidate, store or invalidate (PC_FORWARD), or parks the request
 * behind another one filling the same URL (PC_WAIT: the caller builds the upstream head and
 * waits for conn_cache_resume), or leaves the request alone (PC_BYPASS). */
enum pc_result pc_request(struct conn *c, const struct h1_request *r);
/* The response head arrived: true when the client was answered from the cache (a 304 that
 * refreshed the entry, or stale-if-error); the caller discards the upstream response. */
bool pc_intercept_response(struct conn *c, const struct h1_response *r);
/* The backend failed: serves the stale entry if stale-if-error allows; returns whether. */
bool pc_serve_stale_on_error(struct conn *c);
/* The final head (after response hooks, `hk` their context or NULL): writes X-Cache to
 * `head` and starts storing the response when it may be stored (pc_store_start). */
void pc_store_begin(struct conn *c, const struct h1_response *r, const struct rp_hook_ctx *hk,
                    struct buf *head, bool *ok);
void pc_free(struct exchange *ex);
/* A parked request: when it gives up waiting (0: not waiting), worker clock. */
uint64_t pc_wait_deadline(const struct exchange *ex);
/* The wait's deadline passed: the request goes upstream itself. */
void pc_wait_expired(struct conn *c);

/* The cache's state of one request (struct pc_state), without a client connection: what an
 * exchange and a background refresh both drive. Each takes a NULL p as "no cache state" and
 * then does nothing. Worker thread; p belongs to the exchange or refresh that holds it.
 *
 * Writing the upstream head: the client's conditionals are dropped when the cache answers
 * them itself; ours are added when revalidating. */
bool pc_skip_request_field(const struct pc_state *p, const struct h1_header *h);
void pc_put_conditionals(const struct pc_state *p, struct buf *b, bool *ok);
/* A 304 for the entry being revalidated: refreshes it in the store and ends the fill (done).
 * Returns whether it did; then *fresh (if not NULL) gets the refreshed entry, referenced for
 * the caller. False for any other answer, without an entry to revalidate, or when out of
 * memory. */
bool pc_revalidated(struct pc_state *p, const struct h1_response *r,
                    const struct cache_entry **fresh);
/* Whether r is a server error the stale entry may be served for (stale-if-error). */
bool pc_stale_if_error(const struct pc_state *p, const struct h1_response *r);
/* Starts storing response r (its final head: after response hooks, `hk` their context or
 * NULL) when the cache may keep it; `domain` is the target's label, for purges. */
void pc_store_start(struct pc_state *p, const char *domain, const struct h1_response *r,
                    const struct rp_hook_ctx *hk);
/* Whether a response is being stored: false once its body passed the entry's limit. */
bool pc_storing(const struct pc_state *p);
/* Body bytes of the response being stored (decoded: without a chunked framing). */
void pc_store_body(struct pc_state *p, const char *data, size_t n);
/* The whole response arrived: stores it and ends the fill. */
void pc_store_end(struct pc_state *p);
/* Frees p: a fill still held ends as abandoned, a wait is cancelled. */
void pc_state_free(struct pc_state *p);
/* Registers the admin API's endpoints in s->admin. 0 or -ENOMEM. */
int pc_admin_setup(rp_server *s);
/* Whether a request to the admin listener carries the token (always, without one). */
bool pc_admin_authorized(const rp_server *s, const struct h1_request *r);

/* ---- refresh.c: background cache refreshes --------------------------------------------------- */

/* Stale-while-revalidate: sends request r (a GET without a body, just answered from the
 * stale entry) to a backend of its target from no client, conditionally, and hands the answer
 * to p: a 304 refreshes the entry, a storable response replaces it. p (pc_request's state for
 * r, holding r's fill) is the refresh's from now on: the fill ends exactly once, whatever
 * happens, possibly before this returns. r and peer (the client's address, for ip_hash and
 * X-Forwarded-For) are borrowed for the call; `tls`: r came over TLS. Request and response
 * hooks do not run for it: no client waits for its answer. Worker thread. */
void refresh_start(struct worker *w, const struct h1_request *r, const struct sockaddr_in6 *peer,
                   bool tls, struct pc_state *p);

/* ---- upstream.c: backend side ------------------------------------------------------------ */

/* Returns a connection to `be` for t's request, pooled (unless `fresh`) or a new one that
 * up_start connects; its events go to ops with `user`. NULL on ENOMEM. Worker thread. */
struct upconn *up_get(struct worker *w, struct target *t, struct backend *be,
                      const struct up_ops *ops, void *user, bool fresh);
/* Queues request bytes for the backend (encrypted on https://; held while the handshake
 * runs). 0 or -ENOMEM. Flush with sock_flush. */
int up_queue(struct upconn *up, const void *p, uint32_t n);
/* Starts connecting a new connection from up_get (a no-op for a pooled one). Separate from
 * up_get so that a failure reported at once finds the exchange already holding `up`. */
void up_start(struct upconn *up);
/* The exchange is done with `up`: pool it if `reusable`, else close it. */
void up_release_to_pool(struct upconn *up, bool reusable);
void up_close(struct upconn *up);
void up_on_data(struct upconn *up, char *p, uint32_t n);
void up_on_eof(struct upconn *up, int err);
void up_on_sent(struct upconn *up);
void up_on_connect(struct upconn *up, int res);
void up_on_socket(struct upconn *up, int res);
void up_release(struct upconn *up);
void up_update_timer(struct upconn *up);
/* After a 101 head: the connection becomes a byte relay, its bytes and end going to
 * ops->data and ops->eof from now on. It is never pooled again. */
void up_tunnel(struct upconn *up);
/* From a head callback: the user needs nothing more of this response (it answered the client
 * another way). The response ends at once (ops->end), reusable only when it has no body. */
void up_skip_body(struct upconn *up);
/* The worker drains (or gives up draining): closes the idle pooled connections, and fails
 * every request of a background user (up_ops.background) with -ECANCELED. */
void pools_close_all(struct worker *w);

#endif /* RP_INTERNAL_H */

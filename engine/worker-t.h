/* worker-t.h: the types of the server and its workers: a worker's ring, listeners, its
 * layers' modules, and the server that holds them. */
#ifndef RP_WORKER_T_H
#define RP_WORKER_T_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../balance/balance.h"
#include "buf.h"
#include "exchange-t.h"
#include "h1.h"
#include "hooks.h"
#include "ringproxy.h"
#include "route.h"
#include "snapshot.h"
#include "sock-t.h"
#include "timer.h"
#include "util.h"

/* Fixed-size objects (connections) carved from big blocks and recycled through a free list,
 * so long-lived connection structs do not interleave with short-lived buffers in the heap:
 * memory freed after a burst is reused instead of staying fragmented. Per worker. */
struct slab {
    void *free;    /* free list, linked through each object's first word */
    void **blocks; /* every block, for slab_fini */
    uint32_t n_blocks, objsz, per_block;
};

struct listener;
struct listen_spec;
struct worker;
struct snapshot;
struct snap_hold;

/* What a listener does with a connection it accepted (the session layer's). */
typedef void (*accept_fn)(struct worker *w, int fd, const struct listener *l);

/* CQE user_data carries the op in a pointer's low OP_BITS bits: everything an SQE names is
 * 16-byte aligned (malloc'ed, or aligned like this array element). */
struct lsock;

struct listener {
    int fd;
    bool armed;
    bool tls;
    bool admin;
    bool closing; /* a reload removed it: freed at its accept's last completion */
    accept_fn accepted;
    const struct listen_spec *spec; /* what it was opened from (its PROXY protocol settings) */
    struct lsock *lsock;            /* the snapshots' record of it (snapshot.h) */
} __attribute__((aligned(1 << OP_BITS)));

/* A message another worker's ring posts to this one (OP_WAKE, through IORING_OP_MSG_RING):
 * embedded first in whatever the message is about; the worker runs fn with it. */
struct wake {
    void (*fn)(struct worker *w, struct wake *k);
};

/* An SQE of a layer's own on a file (OP_FILE: the access log's writes): embedded first in what
 * the write is about, which is 16-byte aligned; `done` runs with the CQE's result. */
struct file_op {
    void (*done)(struct worker *w, struct file_op *op, int res);
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
    /* The worker moved to a new snapshot (w->snap); `old` is the one it left, still held. */
    void (*adopt)(struct worker *w, struct snapshot *old);
    const char *name; /* for the log */
};
/* The layers' modules (session_h1.c, upstream.c, balance/health.c), in server.c's list. */
extern const struct worker_module session_module, upstream_module, health_module, metrics_module;

struct worker {
    struct rp_server *s;
    int id;
    pthread_t thread;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    uint32_t nbufs, bufsz;
    uint32_t br_added;    /* buffers given back since the last advance */
    struct listener **ls; /* each allocated alone: SQEs name them */
    uint32_t n_ls;
    struct snapshot *snap;  /* the configuration new work uses (snapshot.h) */
    uint32_t snap_users;    /* exchanges and refreshes that started on it */
    struct snap_hold *held; /* older snapshots with users still */
    uint32_t n_held;
    bool snap_armed; /* the loop runs: listeners added now are armed at once */
    struct timer_wheel *tw;
    uint64_t now_ms;
    struct list_node conns; /* struct conn.link */
    uint32_t nconns;
    struct sock *graveyard;
    struct pool *pools;          /* one per backend */
    struct list_node background; /* upconns in use by background users (up_ops.background) */
    struct hcheck *hchecks;      /* active checks of the backends this worker owns */
    uint32_t n_hchecks;
    struct slab conn_slab;     /* client connections (upstream ones churn: plain malloc) */
    struct slab ex_slab;       /* exchanges: one per request in flight */
    struct exchange no_ex;     /* what an idle connection points at: inactive, never written */
    char *plain;               /* decrypted bytes of the receive being handled (TLS) */
    struct buf scratch;        /* a response head being composed for a TLS client */
    struct buf dechunk;        /* UP_BOTH: a chunked response body decoded beside its framing */
    struct buf h2out;          /* HTTP/2 frames gathered into one TLS record (session_h2.c) */
    struct list_node h2_dirty; /* HTTP/2 sessions with output for the pass's end (h2_tick) */
    struct buf
        synth; /* a head made to be parsed: HTTP/2 fields, a trailer section (one at a time) */
    uint64_t tls_failures;   /* handshakes or records that failed */
    uint64_t tls_handshakes; /* client handshakes completed */
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
    /* PROXY protocol listeners' connections closed: from a peer not in proxy_protocol_from,
     * with a malformed header, without a whole header within header_timeout */
    uint64_t pp_denied, pp_malformed, pp_timeouts;
    /* HTTP/2: connections and streams taken; refused: connections told ENHANCE_YOUR_CALM
     * (glitch budget, floods), streams reset by the client before their answer, header lists
     * past the limits, protocol errors, streams whose client never took their answer */
    uint64_t h2_conns, h2_streams, h2_calm, h2_resets, h2_big_headers, h2_protocol_errors,
        h2_write_timeouts;
    struct wmetrics *m; /* the counters /metrics sums (metrics.h), from init to the run's end */
    struct alog_worker *alog; /* the access log's buffers (accesslog.h), NULL: no log */
};

struct cache;

struct pp_cidr;

struct listen_spec {
    char *addr;
    bool tls;
    bool admin;          /* the cache admin API's listener */
    bool proxy_protocol; /* its connections begin with a PROXY protocol header */
    uint32_t n_pp_from;
    struct pp_cidr *pp_from; /* the peers allowed to send one (n_pp_from 0: any) */
};

struct rp_server {
    rp_server_config cfg;
    struct listen_spec *listen; /* plain and TLS listeners, copied from the config */
    size_t n_listen;
    char *tls_cert, *tls_key;
    bool upstream_tls;     /* some backend is https:// */
    struct route_table rt; /* what the config calls build; the first snapshot takes it */
    struct snapshot *snap; /* the configuration in force, under snap_mu (snapshot.h) */
    pthread_mutex_t snap_mu;
    pthread_mutex_t reload_mu;
    atomic_uint_least64_t gen;      /* snap->gen, for workers to notice a reload without a lock */
    atomic_ulong reloads;           /* reloads that took effect */
    atomic_ulong reload_failures;   /* reloads refused (nothing changed) */
    atomic_bool last_reload_failed; /* the last reload asked for was refused */
    atomic_llong last_reload_ok_s;  /* wall clock of the last good one (or of the start) */
    struct slots be_slots, t_slots;
    rp_reload_fn reload_fn; /* POST /reload's handler (the daemon's: it knows the file) */
    void *reload_user;
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
    int nworkers; /* traffic workers: s->workers[0..nworkers) */
    int nthreads; /* and, with an admin listener, one more at s->workers[nworkers] that serves
                     only it, so a scrape never stalls traffic */
    const struct worker_module *const *modules; /* NULL-terminated, in the order they run */
    atomic_int running;
    atomic_int stopping;
    /* Listening sockets handed over by another process (rp_server_inherit_listener), for
     * the next run: s->listen[spec] is served on fd. Owned here until the run ends. */
    struct inherited {
        size_t spec;
        int fd;
    } * inherited;
    size_t n_inherited;
    /* Guards the workers' listener arrays (w->ls) for rp_server_listeners(), which reads
     * them from another thread: a worker takes it to add (at start, at a reload) or close
     * (at a reload, at its drain) its own; listeners_open says s->workers may be read. */
    pthread_mutex_t listen_mu;
    bool listeners_open;
    rp_ready_fn on_ready; /* rp_server_on_ready() */
    void *on_ready_user;
    struct alog_server *alog; /* access logs and request ids (accesslog.h), NULL: none */
};

/* Start-up handshake: each worker reports its set-up result, then waits for `go`, so a
 * failure in any worker stops all of them before one serves. */
struct start_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int reported;
    bool go;
};

#endif /* RP_WORKER_T_H */

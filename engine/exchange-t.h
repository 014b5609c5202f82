/* exchange-t.h: the types of one request's life (exchange.c): its state and what it holds. */
#ifndef RP_EXCHANGE_T_H
#define RP_EXCHANGE_T_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "h1.h"

#define REPLAY_MAX (64u * 1024) /* requests up to this size can be retried */
#define H1_HEADERS_CAP 256      /* fields a parsed head may hold (the stack array's size) */

struct target;
struct backend;
struct upconn;
struct pc_state;
struct local_route;
struct alog_rec;

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
    struct snapshot *snap; /* the configuration it started on: t and be are of it */
    struct target *t;
    struct backend *be; /* the backend of `up`, the attempt whose response is relayed */
    struct upconn *up;
    struct upconn *up2;   /* hedge = true: a second attempt racing `up` (its backend up2->be) */
    struct buf replay;    /* upstream request head + body bytes, while replayable; for a local
                             endpoint: the client's head, then the decoded body */
    struct ex_more *more; /* what only some exchanges need, NULL for the others */
    struct pc_state *pc;  /* the cache's view of this request (pcache.c), NULL: not cached */
    struct alog_rec *log; /* what its access-log line says (accesslog.c), NULL: no line */
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

#endif /* RP_EXCHANGE_T_H */

/* upstream.h: the upstream HTTP client's functions (upstream.c), for exchanges, health
 * probes and background refreshes. */
#ifndef RP_UPSTREAM_H
#define RP_UPSTREAM_H

#include "upstream-t.h"
#include "worker-t.h"

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
/* send_proxy_protocol (a no-op for other targets): queues the PROXY header naming `client`
 * (NULL: none, as for a health check: v1 UNKNOWN, v2 LOCAL) as the connection's first bytes,
 * in the clear even to an https:// backend. Call it right after up_get, before up_queue:
 * such connections are never pooled, so up_get's is always new and empty. 0 or -ENOMEM. */
int up_proxy_header(struct upconn *up, const struct sockaddr_in6 *client);
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

/* ---- upstream_h2.c: HTTP/2 backends (h2c://, h2://) ------------------------------------------
 * The same interface: up_get on an HTTP/2 backend gives a stream (up->h2) on one of the
 * worker's multiplexed connections to it; its user queues an HTTP/1.1 request (head and
 * framed body) as to any backend, and is told of the response as from any backend. */
struct upconn *h2u_get(struct worker *w, struct backend *be);
void h2u_start(struct upconn *up, bool fresh);
void h2u_close(struct upconn *up);
void h2u_release(struct upconn *up, bool reusable);
/* The worker's connections to backend index i: idle ones close now, busy ones once idle
 * (all: a drain, a removed backend). */
void h2u_pool_close(struct worker *w, uint32_t i);
/* A plain connection for an HTTP/2 connection to ride on: as up_get(fresh), never pooled. */
struct upconn *up_get_transport(struct worker *w, struct target *t, struct backend *be,
                                const struct up_ops *ops, void *user);
/* up_timeout, for a stream's timer. */
void up_timer_fired(struct timer *t, uint64_t now);

#endif /* RP_UPSTREAM_H */

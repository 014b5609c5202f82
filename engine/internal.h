/* internal.h: the whole engine at once: every layer's types (the -t.h headers, HAProxy's
 * habit: types apart from functions) and functions, for the engine's own files. A file that
 * needs one layer includes that layer's headers instead (balance/health.c: worker-t.h and
 * upstream.h). Only engine/ and balance/ include these; front ends see ringproxy.h.
 *
 * Ownership in one paragraph: a worker owns its ring, its provided buffers, its timer wheel,
 * its client connections (struct conn), its upstream connections (struct upconn) and the
 * background cache refreshes that use some of them (refresh.c). A struct sock is embedded
 * first in both kinds of connection; every SQE that names a sock holds a reference
 * (sock.inflight) until its last CQE, and a dead sock is freed only when that count is 0.
 */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "../balance/balance.h"
#include "../balance/health.h"
#include "accesslog.h"
#include "buf.h"
#include "exchange-t.h"
#include "h1.h"
#include "hooks.h"
#include "metrics.h"
#include "ringproxy.h"
#include "route.h"
#include "session-t.h"
#include "snapshot.h"
#include "sock-t.h"
#include "timer.h"
#include "upstream-t.h"
#include "upstream.h"
#include "util.h"
#include "worker-t.h"
#include "worker.h"

/* ---- server.c ----------------------------------------------------------------------------- */

/* A listening socket on "ip:port" or "[ip6]:port" (SO_REUSEPORT, TCP_NODELAY inherited by
 * accepted sockets): the fd, or -errno with the reason logged. */
int server_open_listener(const char *addr);
/* The listening sockets handed over for s->listen[spec] (rp_server_inherit_listener): how
 * many, and a duplicate of the m-th (m modulo that count): the fd or -errno. */
size_t server_inherited_count(const struct rp_server *s, size_t spec);
int server_inherited_dup(const struct rp_server *s, size_t spec, size_t m);
/* rp_server_config.log_level (0 info, 1 warnings, 2 debug) for the process's log. */
void server_apply_log_level(int level);

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

/* ---- session_h2.c: the HTTP/2 client-side session ------------------------------------------ */

/* Makes client connection c an HTTP/2 connection (ALPN h2, or the client preface on an h2c
 * listener) and feeds it p[0..n), its first bytes (the preface included). false when c was
 * closed (out of memory, or its first bytes were fatal). */
bool h2_session_start(struct conn *c, const char *p, uint32_t n);
/* The client connection's events, for a connection with c->h2. */
void h2_on_data(struct conn *c, const char *p, uint32_t n);
void h2_on_sent(struct conn *c);
void h2_drain(struct conn *c);
void h2_update_timer(struct conn *c);
/* Every stream's exchange ends: the connection closes. */
void h2_abort_streams(struct conn *c);
void h2_session_free(struct conn *c);
/* The end of a loop pass: the output its streams made goes out (session_module's tick). */
void h2_tick(struct worker *w);
/* h2c: 1 when p[0..n) begins with the client preface, 0 while it is a prefix of it, -1 no. */
int h2_preface_match(const char *p, uint32_t n);
/* A stream's side of the response writer and of the input (c->h2s): session_h1.c's
 * conn_head_done, conn_queue_bytes, conn_flush_out, conn_exchange_done, conn_close,
 * conn_process and conn_resume_input hand a stream to these. */
void h2s_head_done(struct conn *c, bool ok);
void h2s_queue(struct conn *c, const void *p, uint32_t n);
/* The response's trailer fields (copied): sent after its body, in place of END_STREAM on it. */
void h2s_trailers(struct conn *c, const struct h1_header *f, uint32_t n);
void h2s_flush(struct conn *c);
void h2s_exchange_done(struct conn *c);
void h2s_close(struct conn *c);
void h2s_process(struct conn *c);
void h2s_resume_input(struct conn *c);
/* How long a stream's answer may wait for its client's window after its exchange ended (its
 * domain's write_timeout). */
uint32_t h2s_write_timeout_ms(struct conn *c);

/* ---- exchange.c: one request's life ---------------------------------------------------------- */

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
/* The client took its output (below the window again): a backend held back is read again. */
void ex_backend_resume(struct conn *c);
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
    const char *request_id;        /* X-Request-Id, replacing the client's; NULL: as it came */
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
/* ---- admin.c: the admin API ------------------------------------------------------------------ */

/* Registers the admin API's endpoints in s->admin (the cache, the backends, /metrics). 0 or
 * -ENOMEM. */
int admin_setup(rp_server *s);
/* Whether a request to the admin listener carries the token (always, without one). */
bool admin_authorized(const rp_server *s, const struct h1_request *r);

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

#endif /* RP_INTERNAL_H */

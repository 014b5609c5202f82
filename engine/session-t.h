/* session-t.h: the client connection's type: an HTTP/1.1 connection (session_h1.c), an
 * HTTP/2 one (session_h2.c: c->h2 holds its session), or one HTTP/2 stream (c->h2s: a
 * struct conn without a socket of its own, so that an exchange runs on it as on an
 * HTTP/1.1 connection; the response writer's functions hand its output to the session). */
#ifndef RP_SESSION_T_H
#define RP_SESSION_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "sock-t.h"
#include "util.h"

struct worker;
struct exchange;
struct tls_conn;
struct h2_session;

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
    bool pp_pending;   /* a PROXY protocol listener's: its header has not arrived yet */
    bool h2c_ok;       /* a plain listener's with h2c: the client preface may come first */
    bool h2s;          /* an HTTP/2 stream (struct h2_stream), not a socket */
    uint32_t nreq;
    uint32_t head_scanned;    /* bytes of a partial head in sk.in known to hold no end */
    uint64_t head_start_ms;   /* when the first byte of the current head arrived */
    struct sockaddr_in6 peer; /* v4 clients are stored as AF_INET in the same space */
    struct tls_conn *tls;     /* TLS state on a TLS listener's connection, else NULL */
    struct exchange *ex;      /* the current request's, or the worker's no_ex between them */
    struct h2_session *h2;    /* an HTTP/2 connection's session, else NULL */
};

#endif /* RP_SESSION_T_H */

/* tls.h: TLS over the engine's own buffers, with wolfSSL.
 *
 * wolfSSL never touches a socket: the engine feeds it the ciphertext it received and takes
 * the ciphertext it produces through a sink callback, and both directions go through the
 * io_uring path like any other bytes. One tls_conn belongs to one worker thread; a tls_ctx
 * is shared read-only by all workers. wolfSSL's 1/0/WANT_READ conventions stay inside tls/:
 * everything here returns byte counts or negative errno values.
 */
#ifndef RP_TLS_H
#define RP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct tls_ctx;
struct tls_conn;
struct tls_session;

/* The most ciphertext a connection carries over between tls_recv calls: feed at most
 * TLS_FEED_MAX bytes per call and drain (n == 0 until 0) before feeding again, and the
 * carried tail never exceeds this. Memory for it is taken only while a tail exists. */
#define TLS_FEED_MAX (32 * 1024)
#define TLS_RECORD_MAX (16 * 1024 + 2048 + 5)
#define TLS_PENDING_MAX (TLS_FEED_MAX + TLS_RECORD_MAX)

/* Receives ciphertext to send (copy it: p is valid only during the call). Returns 0 or a
 * negative errno (the connection then fails). */
typedef int (*tls_sink_fn)(void *arg, const char *p, size_t n);

/* Process-wide initialisation; call once before any other tls_ function. 0 or -errno. */
int tls_global_init(void);

/* Frees what wolfSSL keeps per thread (its ECC point cache); call as a thread that used TLS
 * ends. */
void tls_thread_exit(void);

/* A server context: PEM certificate chain and key, TLS 1.2 and 1.3, a modern cipher list,
 * ALPN "http/1.1", session tickets (keys rotated every few hours). NULL on failure, with a
 * reason in err ("cert.pem: cannot read: ...", "key does not match certificate"). */
struct tls_ctx *tls_server_new(const char *cert_file, const char *key_file, char *err,
                               size_t errlen);

/* Adds a certificate chosen by SNI: `name` is "api.example.com" or "*.example.com"
 * (case-insensitive). Connections whose SNI matches none get the context's own. 0 or -errno
 * with a reason in err. Start-up only. */
int tls_server_add_sni(struct tls_ctx *ctx, const char *name, const char *cert_file,
                       const char *key_file, char *err, size_t errlen);

/* A client context for upstream HTTPS: verifies against ca_file, or the system CA store when
 * NULL; `verify` false accepts any certificate. NULL on failure with a reason in err. */
struct tls_ctx *tls_client_new(const char *ca_file, bool verify, char *err, size_t errlen);

/* Whether a server context's ALPN offers "h2" (HTTP/2), preferred over "http/1.1" when the
 * client offers both. Off until set. Start-up, or before the context is published. */
void tls_server_set_h2(struct tls_ctx *ctx, bool on);

/* Caps the protocol version of connections made afterwards: "TLSv1.2" or "TLSv1.3" (the
 * default). 0 or -EINVAL. Start-up only (tests use it to force TLS 1.2). */
int tls_ctx_set_max_version(struct tls_ctx *ctx, const char *version);

/* Drops the owner's reference: the context and its SNI certificates go with the last of
 * its connections (each holds one from tls_conn_new to tls_conn_free), so a reload can
 * replace a context while connections made on it live on. Any thread. */
void tls_ctx_free(struct tls_ctx *ctx);

/* A connection on ctx. Client connections send `sni` (may be NULL) and verify the peer's
 * name against it when the context verifies. Ciphertext goes out through sink(arg, ...).
 * NULL on out of memory. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *sni, tls_sink_fn sink, void *arg);
/* A client connection that offers ALPN "h2" instead of "http/1.1" (HTTP/2 backends). */
struct tls_conn *tls_conn_new_h2(struct tls_ctx *ctx, const char *sni, tls_sink_fn sink, void *arg);
void tls_conn_free(struct tls_conn *t);

/* Hands received ciphertext to the connection and advances it: the handshake while it runs
 * (its replies go to the sink), then decryption. Plaintext is written to out[0..cap) and its
 * length returned; call again with n == 0 until it returns 0 to drain what one feed held
 * (a receive may carry several records). Returns -EAGAIN never: 0 means "nothing more yet".
 * Errors: -EPROTO (bad handshake or record, an alert: the reason is in tls_error()),
 * -ECONNRESET (close_notify from the peer), -ENOBUFS (more than TLS_PENDING_MAX carried over:
 * the caller fed without draining), -ENOMEM. Errors are sticky: every later call returns the
 * same one. `p` is borrowed for the call only (the unconsumed tail is copied); it may be
 * NULL when n == 0. The sink may be called before this returns. */
ssize_t tls_recv(struct tls_conn *t, const char *p, size_t n, char *out, size_t cap);

/* Starts the handshake of a client connection (its ClientHello goes to the sink). 0 or a
 * negative errno (-EINVAL on a server connection). */
int tls_connect(struct tls_conn *t);

/* Encrypts plaintext p[0..n) into records that go to the sink. Returns n, or -EAGAIN while
 * the handshake is not finished (queue it and retry after tls_recv), or -EPROTO. */
ssize_t tls_send(struct tls_conn *t, const char *p, size_t n);

/* Sends close_notify to the sink (nothing before the handshake finished or after an error):
 * the peer's tls_recv then returns -ECONNRESET. */
void tls_shutdown(struct tls_conn *t);

bool tls_handshake_done(const struct tls_conn *t);
/* The negotiated protocol ("TLSv1.3"), ALPN ("h2", "http/1.1" or NULL), whether the session was
 * resumed, the SNI the client sent (server side, NULL if none), the last error's text. */
const char *tls_version(const struct tls_conn *t);
const char *tls_alpn(const struct tls_conn *t);
bool tls_resumed(const struct tls_conn *t);
const char *tls_sni(const struct tls_conn *t);
const char *tls_error(const struct tls_conn *t);

/* Client session resumption (upstream pools). tls_conn_get_session returns a copy of the
 * connection's session to resume a later connection with, or NULL (server side, handshake not
 * done, out of memory). With TLS 1.3 the ticket arrives after the handshake: take the session
 * once the first response bytes came back through tls_recv. The copy is owned by the caller
 * (tls_session_free) and may be handed to connections on any thread, one call at a time.
 * tls_conn_set_session goes between tls_conn_new and tls_connect: 0, or -EINVAL when the
 * session is expired or unusable (the handshake then simply runs in full). */
struct tls_session *tls_conn_get_session(struct tls_conn *t);
int tls_conn_set_session(struct tls_conn *t, const struct tls_session *s);
void tls_session_free(struct tls_session *s);

#endif /* RP_TLS_H */

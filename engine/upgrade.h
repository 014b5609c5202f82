/* upgrade.h: replacing the running daemon by a new binary without refusing a connection
 * (`ringproxy --upgrade`). Daemon only (engine/main.c); the library part is
 * rp_server_listeners() / rp_server_inherit_listener() / rp_server_on_ready().
 *
 * A daemon with a pid_file serves a Unix socket beside it, PID_FILE.sock (mode 0600; a peer
 * must have the daemon's uid, or be root: SO_PEERCRED), on a thread of its own, one request
 * at a time. The new process connects, asks for the listening sockets and receives every
 * one of them (all the workers' SO_REUSEPORT sockets of each address) with SCM_RIGHTS, each
 * with its address and kind; it serves on them instead of opening its own, and once its
 * workers serve it says "drain": the old process drains exactly as on SIGTERM, its workers
 * closing their copies of sockets the new process holds too. The accept queues and the
 * reuseport groups never change hands in the kernel, so no connection is refused or reset.
 * Until "drain" the old process is untouched: if the new one fails first, nothing changed.
 *
 * The wire format: SOCK_SEQPACKET, one message per record, each a 12-byte header (magic
 * "RPUG", version, type, payload length; little-endian) and its payload, whose length must
 * match exactly. Every wait on the peer is bounded (UPG_IO_TIMEOUT_MS, and
 * UPG_READY_TIMEOUT_MS for the new process's start), so a hung peer never hangs the other.
 *
 *   new -> old  GET_LISTENERS  u32 pid (the asker's, for the log)
 *   old -> new  LISTENERS      u32 total, u32 first, u16 n, u16 0, then n times u8 kind,
 *                              u8 len, len bytes of address; n (at most UPG_BATCH) fds
 *                              (repeated until first + n == total), or ERROR
 *   new -> old  DRAIN          (empty: its workers serve)
 *   old -> new  DRAIN_OK       (empty: it drains now), or ERROR
 *   ERROR                      a reason, printable ASCII
 */
#ifndef RP_UPGRADE_H
#define RP_UPGRADE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ringproxy.h"

#define UPG_MAGIC 0x47555052u /* "RPUG" as little-endian bytes */
#define UPG_VERSION 1
#define UPG_HDR_LEN 12
#define UPG_BATCH 8             /* listeners (and fds) in one LISTENERS message */
#define UPG_MAX_LISTENERS 65536 /* in all: 1024 workers times 64 addresses */
#define UPG_ADDR_MAX 63         /* "[ipv6]:port" is at most 53 */
#define UPG_TEXT_MAX 200        /* an ERROR's reason */
#define UPG_MSG_MAX (UPG_HDR_LEN + 12 + UPG_BATCH * (2 + UPG_ADDR_MAX))
#define UPG_IO_TIMEOUT_MS 10000    /* any one message */
#define UPG_READY_TIMEOUT_MS 30000 /* from the last socket sent to DRAIN: the new one starts */

enum upg_type {
    UPG_GET_LISTENERS = 1,
    UPG_LISTENERS,
    UPG_DRAIN,
    UPG_DRAIN_OK,
    UPG_ERROR,
};

struct upg_entry {
    uint8_t kind; /* rp_listener_kind */
    char addr[UPG_ADDR_MAX + 1];
};

/* One message, decoded; only the fields of its type are meaningful. */
struct upg_msg {
    enum upg_type type;
    uint32_t pid;          /* GET_LISTENERS */
    uint32_t total, first; /* LISTENERS: of all, and the index of e[0] */
    uint16_t n;            /* LISTENERS: e[0..n) */
    struct upg_entry e[UPG_BATCH];
    char text[UPG_TEXT_MAX + 1]; /* ERROR */
};

/* Encodes *m into out[0..cap). Returns the length, -EINVAL for a field out of range (an
 * unknown type or kind, n past UPG_BATCH, first + n past total or total past
 * UPG_MAX_LISTENERS, an address or text empty, too long or not printable ASCII), -ENOSPC. */
int upg_encode(const struct upg_msg *m, uint8_t *out, size_t cap);

/* Decodes p[0..n) (one whole record) into *m. Returns 0; -EPROTONOSUPPORT for a header of
 * another version; -EBADMSG for anything else that upg_encode() would not have written
 * (decode then encode gives back the same bytes). Reads nothing past p + n. */
int upg_decode(const uint8_t *p, size_t n, struct upg_msg *m);

/* "PID_FILE.sock" into buf[0..cap); -ENAMETOOLONG if it does not fit a Unix socket path. */
int upg_sock_path(const char *pid_file, char *buf, size_t cap);

/* ---- the running daemon's side -------------------------------------------------------- */

struct upg_server {
    rp_server *s;
    char path[108];
    int lfd;
    int stop[2]; /* a pipe: upg_server_stop() wakes the thread through it */
    pthread_t thread;
    bool running; /* the thread was started */
    dev_t dev;    /* the socket file it bound, so it unlinks only its own */
    ino_t ino;
    atomic_bool handed_over; /* a new process took the listeners over: it owns the paths */
};

/* Binds `path` (under PATH.PID first, then renamed there, so it always names a live socket)
 * and starts the thread that serves it for `s`, which must stay valid until
 * upg_server_stop(). Call once s serves (from its ready callback). Returns 0 or -errno
 * (logged). */
int upg_server_start(struct upg_server *u, const char *path, rp_server *s);

/* Whether a new process has taken the listeners over (and s drains for it): the pid file
 * and the socket path are the new process's then. Any thread. */
bool upg_server_handed_over(struct upg_server *u);

/* Stops the thread (a request in progress is abandoned), closes the socket and unlinks the
 * path if it is still the one this process bound and not handed over. Main thread; a
 * no-op for a server that never started. */
void upg_server_stop(struct upg_server *u);

/* ---- the new process's side ----------------------------------------------------------- */

struct upg_client {
    int fd;
    pid_t peer;          /* the old process */
    unsigned inherited;  /* sockets the server took */
    unsigned dropped;    /* sockets of addresses the new configuration no longer has: closed */
    uint64_t started_ms; /* CLOCK_MONOTONIC, when it connected */
};

/* Connects to `path`, takes every listening socket of the daemon there and hands each to
 * s with rp_server_inherit_listener() (before rp_listen_and_serve()). Returns 0, or -errno
 * with the reason in err[0..errlen): then the old process goes on untouched, and what s took
 * is closed with s. The connection stays open for upg_client_drain(). Main thread. */
int upg_client_take(struct upg_client *c, const char *path, rp_server *s, char *err, size_t errlen);

/* Once s serves: tells the old process to drain and waits for its answer. Returns 0 when it
 * drains (or has already exited: this process is the daemon now); -errno with the reason in
 * err when it goes on serving instead (it timed out waiting for us, say): this process must
 * then shut down. */
int upg_client_drain(struct upg_client *c, char *err, size_t errlen);

void upg_client_close(struct upg_client *c);

#endif /* RP_UPGRADE_H */

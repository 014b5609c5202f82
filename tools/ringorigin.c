/* ringorigin: a small, fast HTTP/1.1 origin server on io_uring for demos, integration tests and
 * benchmarks of ringproxy. One ring, one SO_REUSEPORT listener and one provided-buffer ring per
 * thread; responses are shaped per request through query parameters (?status= ?size= ?delay= ...).
 * With --ws it is also a WebSocket echo server (RFC 6455), frames streamed through as they arrive.
 * Self-contained on purpose: it shares nothing with the proxy engine but small helpers
 * (uring_compat.h, bufring.c, util.c), and takes only SHA-1 from wolfSSL (Sec-WebSocket-Accept).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../engine/bufring.h"
#include "../engine/uring_compat.h"
#include "../engine/util.h"
#include "ws.h"

#define RING_ENTRIES 2048
#define CQ_ENTRIES 16384
#define BGID 1
#define NBUFS 512
#define BUF_SIZE 16384
#define HEAD_MAX (64 * 1024)         /* request head limit */
#define ECHO_MAX (64u * 1024 * 1024) /* largest request echoed back */
#define IN_PAUSE (1024 * 1024)       /* stop receiving when this much input waits */
#define OQ_HIGH (4 * 1024 * 1024)    /* stop parsing when this much output is queued */
#define OQ_SEGS 64
#define PERIOD 64           /* the body pattern repeats every PERIOD bytes */
#define SLICE (1024 * 1024) /* largest slice of the pattern sent in one iovec */
#define PAT_LEN (SLICE + PERIOD)
#define CHUNK 16384     /* chunk size of chunked bodies */
#define SMALL_BODY 8192 /* pattern bodies up to this are copied, else sliced */
#define MAX_IOV 64
#define SEND_MAX (2 * 1024 * 1024)
#define SPARE_MAX (256 * 1024)
#define MAX_XHDR 8192                    /* total bytes of ?header= response headers */
#define WS_FRAME_MAX (16u * 1024 * 1024) /* --ws: larger frames close the connection (1009) */
#define WS_KEY_MAX 64                    /* Sec-WebSocket-Key: 24 characters when well formed */

enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TIMER, OP_CLOSE, OP_EVENT };
#define OP_MASK 7ULL
#define UD(p, op) ((uint64_t)(uintptr_t)(p) | (uint64_t)(op))

enum { ST_HEAD, ST_BODY_CL, ST_BODY_CHUNKED, ST_DONE, ST_WS };
enum {
    CK_SIZE,
    CK_EXT,
    CK_SIZE_LF,
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRL,
    CK_TRL_LINE,
    CK_END_LF,
    CK_DONE
};
enum { KIND_HELLO, KIND_HEALTH, KIND_STATS };
enum { SEG_BYTES, SEG_PATTERN };

struct config {
    char addr_str[80];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *name;
    size_t name_len;
    uint64_t size;
    bool has_size, chunked, echo, close, quiet, ws;
    int status;
    unsigned delay_ms;
    int threads;
    char hello[300];
    size_t hello_len;
};

/* State shared by all workers: the config and pattern are immutable after start-up. */
struct shared {
    const struct config *cfg;
    char *pat;
    atomic_ulong requests;
    atomic_ulong connections;
    atomic_ulong messages; /* --ws: data frames with FIN echoed */
};

/* One queued piece of output: owned bytes, or a slice of the shared pattern (maybe chunked). */
struct seg {
    struct seg *next;
    int kind;
    bool chunked;
    uint64_t len, off; /* framed bytes in total, bytes already sent */
    char *data;        /* SEG_BYTES */
    size_t cap;
    uint64_t body; /* SEG_PATTERN: body bytes, before chunk framing */
    char lhdr[24]; /* SEG_PATTERN: header of the last, partial chunk */
    size_t lhdr_len;
};

/* What the current request asks for; header values are copied out of the input buffer. */
struct req {
    int kind, status;
    bool head, http10, keepalive, chunked, close, echo, reset, hang, expect, has_size, te;
    bool get, up_ws, conn_upgrade; /* --ws: GET, Upgrade: websocket, Connection: upgrade */
    uint64_t size, cl;
    int64_t cl_lie;
    bool has_cl;
    unsigned delay_ms;
    size_t ws_key_len; /* 0: no Sec-WebSocket-Key; over WS_KEY_MAX: one too long to keep */
    char ws_key[WS_KEY_MAX];
};

/* --ws: the client frame being received. Its header is gathered byte by byte (it may be split
 * across receives); a data frame's payload is unmasked straight into the output queue as it
 * arrives, behind an unmasked header written first; a control frame's payload (at most 125
 * bytes) is kept in `ctl` until the frame ends. */
struct wsrx {
    unsigned char hdr[14], mask[4];
    uint8_t hlen, need; /* header bytes seen; header length, once the second byte is in */
    uint8_t op, ctl_len;
    bool fin, in_payload, frag; /* frag: a fragmented message awaits its continuations */
    uint64_t left, off;         /* payload bytes left, and seen (the masking key's phase) */
    char ctl[125];
};

struct worker;

struct conn {
    struct list_node link; /* in worker.conns */
    struct worker *w;
    int fd;
    bool recv_armed, recv_cancel, send_inflight, timer_armed;
    bool closing, close_submitted, reset_on_close, peer_eof, close_after, reset_after;
    bool wait_timer, delay_done, hung;
    /* input: bytes [rstart, in_len) are the current request and what follows it */
    char *in;
    size_t in_len, in_cap, rstart, pos, scan;
    int st, ck_state, ck_ndig;
    uint64_t body_left;
    struct req req;
    struct wsrx *ws; /* --ws: allocated by the upgrade */
    char *xhdr;
    size_t xhdr_len;
    /* output */
    struct seg *oq_head, *oq_tail, *spare;
    size_t oq_bytes;
    unsigned oq_nseg;
    struct iovec iov[MAX_IOV];
    struct msghdr msg;
    struct __kernel_timespec ts;
};

struct worker {
    struct io_uring ring;
    bool ring_ok;
    struct io_uring_buf_ring *br;
    char *bufs;
    struct shared *sh;
    const struct config *cfg;
    int lfd, efd;
    uint64_t evval;
    struct list_node conns; /* every open connection */
    bool stop;
    int err;
    pthread_barrier_t *ready;
    pthread_t tid;
};

static void conn_process(struct conn *c);

/* ---------------------------------------------------------------- small helpers */

static struct io_uring_sqe *get_sqe(struct worker *w)
{
    return rp_get_sqe(&w->ring);
}

static void logmsg(const struct config *cfg, const char *what, int err)
{
    if (!cfg->quiet)
        fprintf(stderr, "ringorigin %s: %s: %s\n", cfg->name, what, strerror(-err));
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, uint64_t v)
{
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static size_t fmt_hex(char *p, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[20];
    size_t n = 0, i;

    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v);
    for (i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0 || n > 19)
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static const char *reason(int status)
{
    static const struct {
        int code;
        const char *text;
    } tab[] = {
        /* clang-format off */
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"},
        {206, "Partial Content"}, {301, "Moved Permanently"}, {302, "Found"},
        {303, "See Other"}, {304, "Not Modified"}, {307, "Temporary Redirect"},
        {308, "Permanent Redirect"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
        {408, "Request Timeout"}, {413, "Content Too Large"}, {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
        {501, "Not Implemented"}, {502, "Bad Gateway"}, {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        /* clang-format on */
    };

    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].code == status)
            return tab[i].text;
    return "Status";
}

/* ---------------------------------------------------------------- output queue */

static void seg_free(struct seg *s)
{
    free(s->data);
    free(s);
}

static struct seg *seg_new_bytes(struct conn *c, size_t n)
{
    struct seg *s = c->spare;

    if (s && s->cap >= n) {
        c->spare = NULL;
    } else {
        size_t cap = n < 16384 ? 16384 : n;

        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        s->data = malloc(cap);
        if (!s->data) {
            free(s);
            return NULL;
        }
        s->cap = cap;
    }
    s->next = NULL;
    s->kind = SEG_BYTES;
    s->len = s->off = 0;
    return s;
}

static void oq_link(struct conn *c, struct seg *s)
{
    if (c->oq_tail)
        c->oq_tail->next = s;
    else
        c->oq_head = s;
    c->oq_tail = s;
    c->oq_nseg++;
}

/* Returns room for n bytes at the end of the queue, or NULL when out of memory. Bytes an
 * in-flight send points at never move: a full tail then gets a new segment. */
static char *oq_reserve(struct conn *c, size_t n)
{
    struct seg *t = c->oq_tail;

    if (t && t->kind == SEG_BYTES && t->cap - t->len < n && !c->send_inflight) {
        size_t cap = t->cap * 2 > t->len + n ? t->cap * 2 : t->len + n;
        char *d = realloc(t->data, cap);

        if (d) {
            t->data = d;
            t->cap = cap;
        }
    }
    if (!t || t->kind != SEG_BYTES || t->cap - t->len < n) {
        t = seg_new_bytes(c, n);
        if (!t)
            return NULL;
        oq_link(c, t);
    }
    return t->data + t->len;
}

static void oq_commit(struct conn *c, size_t n)
{
    c->oq_tail->len += n;
    c->oq_bytes += n;
}

static bool oq_append(struct conn *c, const char *p, size_t n)
{
    char *d = oq_reserve(c, n);

    if (!d)
        return false;
    memcpy(d, p, n);
    oq_commit(c, n);
    return true;
}

static void oq_pop(struct conn *c)
{
    struct seg *s = c->oq_head;

    c->oq_head = s->next;
    if (!c->oq_head)
        c->oq_tail = NULL;
    c->oq_nseg--;
    if (s->kind == SEG_BYTES && !c->spare && s->cap <= SPARE_MAX)
        c->spare = s;
    else
        seg_free(s);
}

static void oq_consume(struct conn *c, uint64_t n)
{
    while (c->oq_head) {
        struct seg *s = c->oq_head;
        uint64_t take = s->len - s->off < n ? s->len - s->off : n;

        s->off += take;
        n -= take;
        if (s->kind == SEG_BYTES)
            c->oq_bytes -= take;
        if (s->off < s->len)
            break;
        oq_pop(c);
    }
}

static void oq_free(struct conn *c)
{
    while (c->oq_head) {
        struct seg *s = c->oq_head;

        c->oq_head = s->next;
        seg_free(s);
    }
    if (c->spare)
        seg_free(c->spare);
    c->oq_tail = c->spare = NULL;
}

/* One piece of a chunk frame (header, data, CRLF) at offset r inside it. */
static size_t frame_piece(const char *pat, const char *hdr, size_t hlen, uint64_t dlen,
                          uint64_t base, uint64_t r, const char **p)
{
    if (r < hlen) {
        *p = hdr + r;
        return hlen - r;
    }
    r -= hlen;
    if (r < dlen) {
        *p = pat + (base + r) % PERIOD;
        return dlen - r < SLICE ? (size_t)(dlen - r) : SLICE;
    }
    r -= dlen;
    *p = "\r\n" + r;
    return (size_t)(2 - r);
}

/* Maps offset `off` of a pattern segment to a contiguous run of bytes. */
static size_t pattern_piece(const char *pat, const struct seg *s, uint64_t off, const char **p)
{
    const uint64_t full = 6 + CHUNK + 2, nfull = s->body / CHUNK, rem = s->body % CHUNK;
    uint64_t last = rem ? s->lhdr_len + rem + 2 : 0;

    if (!s->chunked)
        return frame_piece(pat, "", 0, s->len, 0, off, p);
    if (off < nfull * full)
        return frame_piece(pat, "4000\r\n", 6, CHUNK, off / full * CHUNK, off % full, p);
    off -= nfull * full;
    if (off < last)
        return frame_piece(pat, s->lhdr, s->lhdr_len, rem, nfull * CHUNK, off, p);
    off -= last;
    *p = "0\r\n\r\n" + off;
    return (size_t)(5 - off);
}

static bool oq_add_pattern(struct conn *c, uint64_t body, bool chunked)
{
    struct seg *s = calloc(1, sizeof(*s));
    uint64_t rem = body % CHUNK;

    if (!s)
        return false;
    s->kind = SEG_PATTERN;
    s->body = body;
    s->chunked = chunked;
    s->len = body;
    if (chunked) {
        if (rem) {
            s->lhdr_len = fmt_hex(s->lhdr, rem);
            memcpy(s->lhdr + s->lhdr_len, "\r\n", 2);
            s->lhdr_len += 2;
        }
        s->len = body / CHUNK * (6 + CHUNK + 2) + (rem ? s->lhdr_len + rem + 2 : 0) + 5;
    }
    oq_link(c, s);
    return true;
}

/* ---------------------------------------------------------------- sending and closing */

static void flush(struct conn *c)
{
    const char *pat = c->w->sh->pat;
    struct io_uring_sqe *sqe;
    size_t total = 0;
    int n = 0;

    if (c->send_inflight || c->closing || !c->oq_head)
        return;
    for (struct seg *s = c->oq_head; s && n < MAX_IOV && total < SEND_MAX; s = s->next) {
        for (uint64_t o = s->off; o < s->len && n < MAX_IOV && total < SEND_MAX;) {
            const char *p = NULL;
            size_t len;

            if (s->kind == SEG_BYTES)
                p = s->data + o, len = (size_t)(s->len - o);
            else
                len = pattern_piece(pat, s, o, &p);
            c->iov[n].iov_base = (void *)p;
            c->iov[n++].iov_len = len;
            o += len;
            total += len;
        }
    }
    sqe = get_sqe(c->w);
    if (n == 1) {
        io_uring_prep_send(sqe, c->fd, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        memset(&c->msg, 0, sizeof(c->msg));
        c->msg.msg_iov = c->iov;
        c->msg.msg_iovlen = (size_t)n;
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
    c->send_inflight = true;
}

static void conn_try_finish(struct conn *c)
{
    struct io_uring_sqe *sqe;

    if (!c->closing || c->close_submitted || c->recv_armed || c->send_inflight || c->timer_armed)
        return;
    c->close_submitted = true;
    if (c->reset_on_close) {
        /* Linger {1,0}: close() then sends a RST instead of a FIN. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    sqe = get_sqe(c->w);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, UD(c, OP_CLOSE));
}

/* Starts closing: cancels what is in flight; the fd is closed once the last CQE is in. */
static void conn_close(struct conn *c, bool reset)
{
    struct io_uring_sqe *sqe;

    if (c->closing)
        return;
    c->closing = true;
    c->reset_on_close = reset;
    if (c->recv_armed || c->send_inflight) {
        sqe = get_sqe(c->w);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, 0);
    }
    if (c->timer_armed) {
        sqe = get_sqe(c->w);
        io_uring_prep_timeout_remove(sqe, UD(c, OP_TIMER), 0);
        io_uring_sqe_set_data64(sqe, 0);
    }
    conn_try_finish(c);
}

static void conn_free(struct conn *c)
{
    list_del(&c->link);
    oq_free(c);
    free(c->in);
    free(c->xhdr);
    free(c->ws);
    free(c);
}

/* ---------------------------------------------------------------- responses */

static bool output_blocked(const struct conn *c)
{
    return c->oq_bytes > OQ_HIGH || c->oq_nseg > OQ_SEGS;
}

static bool blocked(const struct conn *c)
{
    return c->wait_timer || c->hung || c->close_after || output_blocked(c);
}

static void respond_error(struct conn *c, int status)
{
    const struct config *cfg = c->w->cfg;
    const char *rs = reason(status);
    char *p = oq_reserve(c, 200 + cfg->name_len);
    char *s = p;

    c->close_after = true;
    if (!p) {
        conn_close(c, false);
        return;
    }
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)status);
    *p++ = ' ';
    p = put(p, rs, strlen(rs));
    p = PUTS(p, "\r\nX-Origin: ");
    p = put(p, cfg->name, cfg->name_len);
    p = PUTS(p, "\r\nContent-Type: text/plain\r\nContent-Length: ");
    p = put_u64(p, strlen(rs) + 1);
    p = PUTS(p, "\r\nConnection: close\r\n\r\n");
    p = put(p, rs, strlen(rs));
    *p++ = '\n';
    oq_commit(c, (size_t)(p - s));
    atomic_fetch_add_explicit(&c->w->sh->requests, 1, memory_order_relaxed);
}

static size_t put_chunked(char *d, const char *src, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i += CHUNK) {
        size_t len = n - i < CHUNK ? n - i : CHUNK;

        o += fmt_hex(d + o, len);
        memcpy(d + o, "\r\n", 2);
        memcpy(d + o + 2, src + i, len);
        memcpy(d + o + 2 + len, "\r\n", 2);
        o += len + 4;
    }
    memcpy(d + o, "0\r\n\r\n", 5);
    return o + 5;
}

/* Appends the response body; pattern bodies larger than SMALL_BODY are sliced, not copied. */
static bool put_body(struct conn *c, const char *bp, uint64_t blen, bool pattern, bool chunked)
{
    size_t need;
    char *d;

    if (pattern && blen > SMALL_BODY)
        return oq_add_pattern(c, blen, chunked);
    if (pattern)
        bp = c->w->sh->pat;
    need = chunked ? (size_t)blen + ((size_t)blen / CHUNK + 1) * 24 + 5 : (size_t)blen;
    if (need == 0)
        return true;
    d = oq_reserve(c, need);
    if (!d)
        return false;
    if (chunked)
        need = put_chunked(d, bp, (size_t)blen);
    else
        memcpy(d, bp, need);
    oq_commit(c, need);
    return true;
}

static char *put_head(struct conn *c, char *p, uint64_t blen, bool chunked, bool close, bool pat)
{
    const struct config *cfg = c->w->cfg;
    const struct req *q = &c->req;
    const char *rs = reason(q->status);
    bool nobody = q->status == 204 || q->status == 304;

    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)q->status);
    *p++ = ' ';
    p = put(p, rs, strlen(rs));
    p = PUTS(p, "\r\nX-Origin: ");
    p = put(p, cfg->name, cfg->name_len);
    if (q->kind == KIND_STATS && !q->echo && !q->has_size)
        p = PUTS(p, "\r\nContent-Type: application/json");
    else if (pat)
        p = PUTS(p, "\r\nContent-Type: application/octet-stream");
    else
        p = PUTS(p, "\r\nContent-Type: text/plain");
    if (chunked) {
        p = PUTS(p, "\r\nTransfer-Encoding: chunked");
    } else if (!nobody) {
        p = PUTS(p, "\r\nContent-Length: ");
        p = put_u64(p, q->cl_lie >= 0 ? (uint64_t)q->cl_lie : blen);
    }
    if (close)
        p = PUTS(p, "\r\nConnection: close");
    else if (q->http10)
        p = PUTS(p, "\r\nConnection: keep-alive");
    p = PUTS(p, "\r\n");
    if (c->xhdr_len)
        p = put(p, c->xhdr, c->xhdr_len);
    return PUTS(p, "\r\n");
}

static void respond(struct conn *c)
{
    const struct config *cfg = c->w->cfg;
    struct shared *sh = c->w->sh;
    const struct req *q = &c->req;
    char stats[128];
    const char *bp = cfg->hello;
    uint64_t blen = cfg->hello_len;
    bool pat = false, close, chunked, nobody = q->status == 204 || q->status == 304;
    char *p, *s;

    if (q->echo) {
        bp = c->in + c->rstart;
        blen = c->pos - c->rstart;
    } else if (q->has_size) {
        blen = q->size;
        pat = true;
    } else if (q->kind == KIND_HEALTH) {
        bp = "ok\n";
        blen = 3;
    } else if (q->kind == KIND_STATS) {
        blen = (uint64_t)snprintf(stats, sizeof(stats), "{\"requests\":%lu,\"connections\":%lu%s",
                                  atomic_load(&sh->requests), atomic_load(&sh->connections),
                                  cfg->ws ? "" : "}");
        if (cfg->ws)
            blen += (uint64_t)snprintf(stats + blen, sizeof(stats) - blen, ",\"messages\":%lu}",
                                       atomic_load(&sh->messages));
        bp = stats;
    }
    chunked = q->chunked && !q->http10 && q->cl_lie < 0 && !q->head && !nobody;
    close = q->close || !q->keepalive || (q->cl_lie >= 0 && (uint64_t)q->cl_lie != blen);
    p = s = oq_reserve(c, 400 + cfg->name_len + c->xhdr_len);
    if (!p) {
        conn_close(c, false);
        return;
    }
    p = put_head(c, p, blen, chunked, close, pat);
    oq_commit(c, (size_t)(p - s));
    if (!q->head && !nobody && !put_body(c, bp, blen, pat, chunked)) {
        conn_close(c, false);
        return;
    }
    if (q->kind != KIND_STATS)
        atomic_fetch_add_explicit(&sh->requests, 1, memory_order_relaxed);
    c->close_after = close;
}

/* ---------------------------------------------------------------- request parsing */

static void add_header_param(struct conn *c, const char *v, size_t n)
{
    char dec[MAX_XHDR];
    size_t len, i, name_len;
    const char *colon;

    if (n >= sizeof(dec))
        return;
    len = pct_decode(v, n, dec, sizeof(dec), true); /* all of it: n < sizeof(dec) */
    colon = memchr(dec, ':', len);
    if (!colon || colon == dec)
        return;
    name_len = (size_t)(colon - dec);
    for (i = 0; i < len; i++) {
        if (dec[i] == '\r' || dec[i] == '\n' || dec[i] == '\0')
            return;
        if (i < name_len && !http_is_tchar((unsigned char)dec[i]))
            return;
    }
    i = name_len + 1;
    while (i < len && (dec[i] == ' ' || dec[i] == '\t'))
        i++;
    if (c->xhdr_len + len + 4 > MAX_XHDR)
        return;
    if (!c->xhdr && !(c->xhdr = malloc(MAX_XHDR)))
        return;
    memcpy(c->xhdr + c->xhdr_len, dec, name_len);
    memcpy(c->xhdr + c->xhdr_len + name_len, ": ", 2);
    memcpy(c->xhdr + c->xhdr_len + name_len + 2, dec + i, len - i);
    c->xhdr_len += name_len + 2 + (len - i);
    memcpy(c->xhdr + c->xhdr_len, "\r\n", 2);
    c->xhdr_len += 2;
}

static void apply_param(struct conn *c, const char *k, size_t kn, const char *v, size_t vn)
{
    struct req *q = &c->req;
    uint64_t n = 0;
    bool num = parse_u64(v, vn, &n);

    if (span_ieq(k, kn, "header"))
        add_header_param(c, v, vn);
    else if (!num)
        return;
    else if (span_ieq(k, kn, "status") && n >= 200 && n <= 999)
        q->status = (int)n;
    else if (span_ieq(k, kn, "size"))
        q->size = n, q->has_size = true;
    else if (span_ieq(k, kn, "delay") && n <= 3600000)
        q->delay_ms = (unsigned)n;
    else if (span_ieq(k, kn, "chunked"))
        q->chunked = n != 0;
    else if (span_ieq(k, kn, "close"))
        q->close = q->close || n != 0;
    else if (span_ieq(k, kn, "echo"))
        q->echo = n != 0;
    else if (span_ieq(k, kn, "reset"))
        q->reset = n != 0;
    else if (span_ieq(k, kn, "hang"))
        q->hang = n != 0;
    else if (span_ieq(k, kn, "cl") && n <= INT64_MAX)
        q->cl_lie = (int64_t)n;
}

static void parse_target(struct conn *c, const char *t, size_t n)
{
    const char *q = memchr(t, '?', n), *end = t + n, *hash = memchr(t, '#', n);
    size_t plen = (size_t)((q ? q : end) - t);

    if (span_ieq(t, plen, "/health"))
        c->req.kind = KIND_HEALTH;
    else if (span_ieq(t, plen, "/__stats"))
        c->req.kind = KIND_STATS;
    if (c->req.kind != KIND_HELLO) /* --echo and -s shape only the default body */
        c->req.echo = c->req.has_size = false;
    if (!q)
        return;
    if (hash && hash > q)
        end = hash;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));

        if (eq)
            apply_param(c, p, (size_t)(eq - p), eq + 1, (size_t)(e - eq - 1));
        p = e + 1;
    }
}

/* The next member of the comma-separated list v[*i..n): false at its end. */
static bool list_next(const char *v, size_t n, size_t *i, const char **tok, size_t *tn)
{
    size_t s, e;

    while (*i < n && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ','))
        (*i)++;
    if (*i == n)
        return false;
    s = *i;
    while (*i < n && v[*i] != ',')
        (*i)++;
    e = *i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
        e--;
    *tok = v + s;
    *tn = e - s;
    return true;
}

static void parse_connection(struct req *q, const char *v, size_t n)
{
    const char *t;
    size_t i = 0, tn;

    while (list_next(v, n, &i, &t, &tn)) {
        if (span_ieq(t, tn, "close"))
            q->keepalive = false;
        else if (span_ieq(t, tn, "keep-alive") && q->http10)
            q->keepalive = true;
        else if (span_ieq(t, tn, "upgrade"))
            q->conn_upgrade = true;
    }
}

static void parse_upgrade(struct req *q, const char *v, size_t n)
{
    const char *t;
    size_t i = 0, tn;

    while (list_next(v, n, &i, &t, &tn))
        if (span_ieq(t, tn, "websocket"))
            q->up_ws = true;
}

/* Handles one header field; returns 0 or the HTTP status to answer with. */
static int parse_field(struct req *q, const char *name, size_t nn, const char *v, size_t vn)
{
    if (span_ieq(name, nn, "content-length")) {
        uint64_t n;

        if (!parse_u64(v, vn, &n) || (q->has_cl && n != q->cl))
            return 400;
        q->cl = n;
        q->has_cl = true;
    } else if (span_ieq(name, nn, "transfer-encoding")) {
        size_t s = vn;

        while (s > 0 && v[s - 1] != ',' && v[s - 1] != ' ')
            s--;
        if (!span_ieq(v + s, vn - s, "chunked"))
            return 501;
        q->te = true;
    } else if (span_ieq(name, nn, "connection")) {
        parse_connection(q, v, vn);
    } else if (span_ieq(name, nn, "expect") && span_ieq(v, vn, "100-continue")) {
        q->expect = true;
    } else if (span_ieq(name, nn, "upgrade")) {
        parse_upgrade(q, v, vn);
    } else if (span_ieq(name, nn, "sec-websocket-key")) {
        if (vn <= WS_KEY_MAX)
            memcpy(q->ws_key, v, vn);
        q->ws_key_len = vn;
    }
    return 0;
}

static int parse_request_line(struct conn *c, const char *l, size_t n)
{
    const char *sp1 = memchr(l, ' ', n), *sp2;
    size_t i;

    if (!sp1 || sp1 == l)
        return 400;
    for (i = 0; l + i < sp1; i++)
        if (!http_is_tchar((unsigned char)l[i]))
            return 400;
    sp2 = memchr(sp1 + 1, ' ', (size_t)(l + n - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1 || l + n - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7))
        return 400;
    for (const char *p = sp1 + 1; p < sp2; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 400;
    if (sp2[8] == '0')
        c->req.http10 = true;
    else if (sp2[8] != '1')
        return 400;
    c->req.keepalive = !c->req.http10;
    c->req.head = span_ieq(l, (size_t)(sp1 - l), "head");
    c->req.get = span_ieq(l, (size_t)(sp1 - l), "get");
    parse_target(c, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    return 0;
}

static void req_init(struct conn *c)
{
    const struct config *cfg = c->w->cfg;
    struct req *q = &c->req;

    memset(q, 0, sizeof(*q));
    q->status = cfg->status;
    q->chunked = cfg->chunked;
    q->echo = cfg->echo;
    q->close = cfg->close;
    q->delay_ms = cfg->delay_ms;
    q->size = cfg->size;
    q->has_size = cfg->has_size;
    q->cl_lie = -1;
    c->xhdr_len = 0;
}

/* --ws: whether the request asks for a WebSocket (RFC 6455 4.1: an HTTP/1.1 GET with
 * Connection: upgrade and Upgrade: websocket). Without --ws such a request is an ordinary one. */
static bool ws_wanted(const struct conn *c)
{
    const struct req *q = &c->req;

    return c->w->cfg->ws && q->get && !q->http10 && q->up_ws && q->conn_upgrade;
}

/* Parses the head in [start, end); returns 0 or the HTTP status to answer with. */
static int parse_head(struct conn *c, const char *b, size_t start, size_t end)
{
    const char *p = b + start, *e = b + end;
    bool first = true;
    int err;

    req_init(c);
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p)), *le = nl, *colon, *v, *ve;

        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            break;
        if (first) {
            if ((err = parse_request_line(c, p, (size_t)(le - p))))
                return err;
            first = false;
            p = nl + 1;
            continue;
        }
        colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p)
            return 400;
        for (const char *q = p; q < colon; q++)
            if (!http_is_tchar((unsigned char)*q))
                return 400;
        for (v = colon + 1; v < le && (*v == ' ' || *v == '\t'); v++)
            ;
        for (ve = le; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
            ;
        if ((err = parse_field(&c->req, p, (size_t)(colon - p), v, (size_t)(ve - v))))
            return err;
        p = nl + 1;
    }
    if (c->req.te && c->req.has_cl)
        return 400;
    if (ws_wanted(c) && (!c->req.ws_key_len || c->req.ws_key_len > WS_KEY_MAX))
        return 400;
    return 0;
}

/* Returns the offset just past the empty line ending the head, or 0 if it has not arrived. */
static size_t find_head_end(struct conn *c)
{
    const char *b = c->in;
    size_t i = c->scan < c->rstart ? c->rstart : c->scan, start = c->rstart;

    while (i < c->in_len) {
        const char *nl = memchr(b + i, '\n', c->in_len - i);
        size_t k;

        if (!nl)
            break;
        k = (size_t)(nl - b);
        if (k > start &&
            (b[k - 1] == '\n' || (b[k - 1] == '\r' && k - 1 > start && b[k - 2] == '\n')))
            return k + 1;
        i = k + 1;
    }
    c->scan = c->in_len;
    return 0;
}

/* Chunked body decoder; returns 1 when the body is complete, 0 for more input, -1 if bad. */
static int chunk_step(struct conn *c)
{
    while (c->pos < c->in_len) {
        int ch = (unsigned char)c->in[c->pos], hv;

        switch (c->ck_state) {
        case CK_SIZE:
            if ((hv = hex_value(ch)) >= 0) {
                if (c->body_left >> 58)
                    return -1;
                c->body_left = c->body_left * 16 + (uint64_t)hv;
                c->ck_ndig++;
            } else if (c->ck_ndig == 0) {
                return -1;
            } else if (ch == ';' || ch == ' ' || ch == '\t') {
                c->ck_state = CK_EXT;
            } else if (ch == '\r') {
                c->ck_state = CK_SIZE_LF;
            } else if (ch == '\n') {
                c->ck_state = c->body_left ? CK_DATA : CK_TRL;
            } else {
                return -1;
            }
            break;
        case CK_EXT:
            if (ch == '\n')
                c->ck_state = c->body_left ? CK_DATA : CK_TRL;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return -1;
            c->ck_state = c->body_left ? CK_DATA : CK_TRL;
            break;
        case CK_DATA: {
            uint64_t avail = c->in_len - c->pos, take = avail < c->body_left ? avail : c->body_left;
            c->pos += take;
            c->body_left -= take;
            if (!c->body_left)
                c->ck_state = CK_DATA_CR;
            continue;
        }
        case CK_DATA_CR:
            if (ch != '\r' && ch != '\n')
                return -1;
            c->ck_state = ch == '\r' ? CK_DATA_LF : CK_SIZE;
            c->ck_ndig = 0;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return -1;
            c->ck_state = CK_SIZE;
            break;
        case CK_TRL:
            c->ck_state = ch == '\r' ? CK_END_LF : ch == '\n' ? CK_DONE : CK_TRL_LINE;
            break;
        case CK_TRL_LINE:
            if (ch == '\n')
                c->ck_state = CK_TRL;
            break;
        case CK_END_LF:
            if (ch != '\n')
                return -1;
            c->ck_state = CK_DONE;
            break;
        }
        c->pos++;
        if (c->ck_state == CK_DONE)
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- WebSocket (--ws) */

/* Answers the upgrade with 101; the connection then carries frames (ST_WS). */
static void ws_upgrade(struct conn *c)
{
    const struct config *cfg = c->w->cfg;
    char acc[28], *p, *s;

    c->ws = calloc(1, sizeof(*c->ws));
    p = s = oq_reserve(c, 200 + cfg->name_len + c->xhdr_len);
    if (!c->ws || !p || ws_accept(c->req.ws_key, c->req.ws_key_len, acc)) {
        conn_close(c, false);
        return;
    }
    p = PUTS(p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: ");
    p = put(p, acc, sizeof(acc));
    p = PUTS(p, "\r\nX-Origin: ");
    p = put(p, cfg->name, cfg->name_len);
    p = PUTS(p, "\r\n");
    if (c->xhdr_len)
        p = put(p, c->xhdr, c->xhdr_len);
    p = PUTS(p, "\r\n");
    oq_commit(c, (size_t)(p - s));
    atomic_fetch_add_explicit(&c->w->sh->requests, 1, memory_order_relaxed);
}

/* Queues a server frame's header: unmasked, b0 carrying FIN and the opcode, the length in
 * its shortest form. Returns false when out of memory. */
static bool ws_put_head(struct conn *c, unsigned b0, uint64_t len)
{
    char *p = oq_reserve(c, 10);
    size_t n = 2;

    if (!p)
        return false;
    p[0] = (char)b0;
    if (len < 126) {
        p[1] = (char)len;
    } else if (len < 65536) {
        p[1] = 126;
        p[2] = (char)(len >> 8);
        p[3] = (char)len;
        n = 4;
    } else {
        p[1] = 127;
        for (int i = 0; i < 8; i++)
            p[2 + i] = (char)(len >> (56 - 8 * i));
        n = 10;
    }
    oq_commit(c, n);
    return true;
}

/* Fails the WebSocket connection (RFC 6455 7.1.7): a close frame with the code (1002 protocol
 * error, 1009 too big), then the close; nothing more is read. Returns 0 for parse_step. */
static int ws_fail(struct conn *c, unsigned code)
{
    char *p;

    c->close_after = true;
    if (!ws_put_head(c, 0x88, 2) || !(p = oq_reserve(c, 2))) {
        conn_close(c, false);
        return 0;
    }
    p[0] = (char)(code >> 8);
    p[1] = (char)code;
    oq_commit(c, 2);
    return 0;
}

/* dst = src XOR the masking key, whose phase at src[0] is off & 3; eight bytes at a time. */
static void ws_unmask(char *dst, const char *src, size_t n, const unsigned char key[4],
                      uint64_t off)
{
    size_t i = 0;

    for (; i < n && ((off + i) & 3); i++)
        dst[i] = (char)(src[i] ^ key[(off + i) & 3]);
    if (n - i >= 8) {
        const unsigned char k8[8] = {key[0], key[1], key[2], key[3],
                                     key[0], key[1], key[2], key[3]};
        uint64_t k, v;

        memcpy(&k, k8, 8);
        for (; n - i >= 8; i += 8) {
            memcpy(&v, src + i, 8);
            v ^= k;
            memcpy(dst + i, &v, 8);
        }
    }
    for (; i < n; i++)
        dst[i] = (char)(src[i] ^ key[(off + i) & 3]);
}

/* Checks a complete client frame header; returns 0 or the close code to fail with. */
static unsigned ws_check_head(struct wsrx *x)
{
    unsigned b0 = x->hdr[0];

    x->fin = b0 & 0x80;
    x->op = b0 & 15;
    if (b0 & 0x70 || !(x->hdr[1] & 0x80)) /* no extension was agreed; clients must mask */
        return 1002;
    if ((x->left = ws_payload_len(x->hdr)) == UINT64_MAX)
        return 1002;
    memcpy(x->mask, x->hdr + x->need - 4, 4);
    if (x->op >= 8)
        return x->op > 10 || !x->fin || x->left > 125 ? 1002 : 0;
    if (x->op > 2 || (x->op == 0) != x->frag)
        return 1002; /* a reserved opcode, or a continuation out of place */
    return x->left > WS_FRAME_MAX ? 1009 : 0;
}

/* Gathers a frame header (it may arrive a byte at a time). Returns 1 once it is in and valid
 * (a data frame's header is then queued), 0 for more input, or 0 after failing. */
static int ws_head(struct conn *c, struct wsrx *x)
{
    unsigned code;

    while (c->pos < c->in_len && (x->hlen < 2 || x->hlen < x->need)) {
        x->hdr[x->hlen++] = (unsigned char)c->in[c->pos++];
        if (x->hlen == 2) {
            unsigned l7 = x->hdr[1] & 127;

            x->need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (x->hdr[1] >> 7) * 4);
        }
    }
    c->rstart = c->pos;
    if (x->hlen < 2 || x->hlen < x->need)
        return 0;
    if ((code = ws_check_head(x)))
        return ws_fail(c, code);
    x->in_payload = true;
    x->off = x->ctl_len = 0;
    if (x->op < 8) {
        x->frag = !x->fin;
        if (!ws_put_head(c, x->hdr[0], x->left)) {
            conn_close(c, false);
            return 0;
        }
    }
    return 1;
}

/* The frame's payload has been read: messages were echoed as they came; control frames are
 * answered now. Returns 1 to go on, 0 once the connection is closing. */
static int ws_frame_end(struct conn *c, struct wsrx *x)
{
    x->in_payload = false;
    x->hlen = x->need = 0;
    switch (x->op) {
    case 8: /* close: answered with its status code (none if it had none), then closed */
        if (x->ctl_len == 1)
            return ws_fail(c, 1002);
        c->close_after = true;
        if (!ws_put_head(c, 0x88, x->ctl_len ? 2 : 0) || !oq_append(c, x->ctl, x->ctl_len ? 2 : 0))
            conn_close(c, false);
        return 0;
    case 9: /* ping: a pong with the same payload */
        if (!ws_put_head(c, 0x8a, x->ctl_len) || !oq_append(c, x->ctl, x->ctl_len)) {
            conn_close(c, false);
            return 0;
        }
        return 1;
    case 10: /* an unsolicited pong: ignored */
        return 1;
    default:
        if (x->fin)
            atomic_fetch_add_explicit(&c->w->sh->messages, 1, memory_order_relaxed);
        return 1;
    }
}

/* One step of an upgraded connection: a frame header, or as much payload as has arrived.
 * Payload is unmasked straight into the output queue, so a frame needs no buffer of its size. */
static int step_ws(struct conn *c)
{
    struct wsrx *x = c->ws;
    size_t take;

    if (!x->in_payload && ws_head(c, x) <= 0)
        return 0;
    take = c->in_len - c->pos < x->left ? c->in_len - c->pos : (size_t)x->left;
    if (take) {
        const char *src = c->in + c->pos;

        if (x->op < 8) {
            char *d = oq_reserve(c, take);

            if (!d) {
                conn_close(c, false);
                return 0;
            }
            ws_unmask(d, src, take, x->mask, x->off);
            oq_commit(c, take);
        } else {
            ws_unmask(x->ctl + x->ctl_len, src, take, x->mask, x->off);
            x->ctl_len = (uint8_t)(x->ctl_len + take);
        }
        c->pos += take;
        c->rstart = c->pos;
        x->left -= take;
        x->off += take;
    }
    return x->left ? 0 : ws_frame_end(c, x);
}

static void arm_timer(struct conn *c, unsigned ms)
{
    struct io_uring_sqe *sqe = get_sqe(c->w);

    c->ts.tv_sec = ms / 1000;
    c->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &c->ts, 0, 0);
    io_uring_sqe_set_data64(sqe, UD(c, OP_TIMER));
    c->timer_armed = c->wait_timer = true;
}

static int step_head(struct conn *c)
{
    size_t end, avail;
    int err;

    while (c->rstart < c->in_len && (c->in[c->rstart] == '\r' || c->in[c->rstart] == '\n'))
        c->rstart++;
    c->pos = c->rstart;
    end = find_head_end(c);
    if (!end || end - c->rstart > HEAD_MAX) {
        if ((end ? end : c->in_len) - c->rstart > HEAD_MAX)
            respond_error(c, 431);
        return 0;
    }
    if ((err = parse_head(c, c->in, c->rstart, end))) {
        respond_error(c, err);
        return 0;
    }
    c->pos = end;
    c->body_left = c->req.has_cl ? c->req.cl : 0;
    c->ck_state = CK_SIZE;
    c->ck_ndig = 0;
    c->st = c->req.te ? ST_BODY_CHUNKED : c->body_left ? ST_BODY_CL : ST_DONE;
    avail = c->in_len - end;
    if (c->req.expect && !c->req.http10 && c->st != ST_DONE && avail == 0 &&
        !oq_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25))
        conn_close(c, false);
    return 1;
}

/* Reads (or skips) request body bytes; non-echo bodies are dropped as they arrive. */
static int step_body(struct conn *c)
{
    int r = 1;

    if (c->st == ST_BODY_CL) {
        uint64_t avail = c->in_len - c->pos;
        uint64_t take = avail < c->body_left ? avail : c->body_left;

        c->pos += take;
        c->body_left -= take;
        if (c->body_left)
            r = 0;
    } else if ((r = chunk_step(c)) < 0) {
        respond_error(c, 400);
        return 0;
    }
    if (c->req.echo && c->pos - c->rstart > ECHO_MAX) {
        respond_error(c, 413);
        return 0;
    }
    if (!r) {
        if (!c->req.echo)
            c->rstart = c->pos;
        return 0;
    }
    c->st = ST_DONE;
    return 1;
}

static int step_done(struct conn *c)
{
    if (c->req.delay_ms && !c->delay_done) {
        arm_timer(c, c->req.delay_ms);
        return 0;
    }
    c->delay_done = false;
    if (c->req.hang) {
        c->hung = true;
        return 0;
    }
    if (c->req.reset) {
        c->close_after = c->reset_after = true;
        return 0;
    }
    if (ws_wanted(c)) {
        ws_upgrade(c);
        c->st = ST_WS;
        c->rstart = c->scan = c->pos;
        return !c->closing;
    }
    respond(c);
    c->st = ST_HEAD;
    c->rstart = c->scan = c->pos;
    return 1;
}

static int parse_step(struct conn *c)
{
    switch (c->st) {
    case ST_HEAD:
        return step_head(c);
    case ST_BODY_CL:
    case ST_BODY_CHUNKED:
        return step_body(c);
    case ST_WS:
        return step_ws(c);
    default:
        return step_done(c);
    }
}

/* ---------------------------------------------------------------- receiving */

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(c->w);

    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, UD(c, OP_RECV));
    c->recv_armed = true;
}

/* Keeps a multishot receive armed unless the peer is done or input piles up behind a stall. */
static void recv_update(struct conn *c)
{
    bool want;

    if (c->closing || c->peer_eof)
        return;
    want = !(blocked(c) && c->in_len - c->rstart > IN_PAUSE);
    if (want && !c->recv_armed) {
        arm_recv(c);
    } else if (!want && c->recv_armed && !c->recv_cancel) {
        struct io_uring_sqe *sqe = get_sqe(c->w);

        io_uring_prep_cancel64(sqe, UD(c, OP_RECV), 0);
        io_uring_sqe_set_data64(sqe, 0);
        c->recv_cancel = true;
    }
}

static bool in_append(struct conn *c, const char *p, size_t n)
{
    if (c->rstart && (c->rstart == c->in_len || c->in_len + n > c->in_cap)) {
        memmove(c->in, c->in + c->rstart, c->in_len - c->rstart);
        c->in_len -= c->rstart;
        c->pos -= c->rstart;
        c->scan = c->scan > c->rstart ? c->scan - c->rstart : 0;
        c->rstart = 0;
    }
    if (c->in_len + n > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
        char *d;

        while (cap < c->in_len + n)
            cap *= 2;
        if (!(d = realloc(c->in, cap)))
            return false;
        c->in = d;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
    return true;
}

static void in_release(struct conn *c)
{
    if (c->hung)
        c->in_len = c->rstart = c->pos = c->scan = 0;
    if (c->in_len == c->rstart && c->in_cap > SPARE_MAX) {
        free(c->in);
        c->in = NULL;
        c->in_len = c->in_cap = c->rstart = c->pos = c->scan = 0;
    }
}

/* Runs requests as far as input and output allow, then sends, closes or re-arms. */
static void conn_process(struct conn *c)
{
    while (!c->closing && !blocked(c) && parse_step(c) > 0)
        ;
    if (c->closing)
        return;
    in_release(c);
    if (c->peer_eof && !c->wait_timer && !output_blocked(c))
        c->close_after = true;
    flush(c);
    if (c->close_after && !c->oq_head && !c->send_inflight) {
        conn_close(c, c->reset_after);
        return;
    }
    recv_update(c);
}

/* ---------------------------------------------------------------- completions */

static void buf_return(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), 0);
    io_uring_buf_ring_advance(w->br, 1);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;

    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = c->recv_cancel = false;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        bool ok = res <= 0 || c->closing || c->hung ||
                  in_append(c, c->w->bufs + (size_t)bid * BUF_SIZE, (size_t)res);

        buf_return(c->w, bid);
        if (!ok)
            conn_close(c, false);
    }
    if (res == 0)
        c->peer_eof = true;
    else if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
        conn_close(c, false);
    if (!c->closing && res >= 0)
        conn_process(c);
    recv_update(c);
    conn_try_finish(c);
}

static void on_send(struct conn *c, int res)
{
    c->send_inflight = false;
    if (c->closing) {
        conn_try_finish(c);
        return;
    }
    if (res <= 0) {
        conn_close(c, false);
        return;
    }
    oq_consume(c, (uint64_t)res);
    conn_process(c);
}

static void on_timer(struct conn *c)
{
    c->timer_armed = false;
    if (c->closing) {
        conn_try_finish(c);
        return;
    }
    c->wait_timer = false;
    c->delay_done = true;
    conn_process(c);
}

static void arm_accept(struct worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_prep_multishot_accept(sqe, w->lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, UD(w, OP_ACCEPT));
}

static void arm_event(struct worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_prep_read(sqe, w->efd, &w->evval, sizeof(w->evval), 0);
    io_uring_sqe_set_data64(sqe, UD(w, OP_EVENT));
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe)
{
    struct conn *c;
    int one = 1;

    if (!(cqe->flags & IORING_CQE_F_MORE) && !w->stop)
        arm_accept(w);
    if (cqe->res < 0) {
        logmsg(w->cfg, "accept", cqe->res);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        close(cqe->res);
        return;
    }
    c->w = w;
    c->fd = cqe->res;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    list_add(&w->conns, &c->link);
    atomic_fetch_add_explicit(&w->sh->connections, 1, memory_order_relaxed);
    arm_recv(c);
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    void *ptr = (void *)(uintptr_t)(ud & ~OP_MASK);

    switch (ud & OP_MASK) {
    case OP_ACCEPT:
        on_accept(w, cqe);
        break;
    case OP_RECV:
        on_recv(ptr, cqe);
        break;
    case OP_SEND:
        on_send(ptr, cqe->res);
        break;
    case OP_TIMER:
        on_timer(ptr);
        break;
    case OP_CLOSE:
        conn_free(ptr);
        break;
    case OP_EVENT:
        w->stop = true;
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- workers */

static int worker_init(struct worker *w)
{
    struct io_uring_params p;
    int ret;

    list_init(&w->conns); /* first: worker_fini walks it whatever fails below */
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = CQ_ENTRIES;
    ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
    if (ret < 0) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = CQ_ENTRIES;
        ret = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
    }
    if (ret < 0)
        return ret;
    w->ring_ok = true;
    ret = bufring_setup(&w->ring, NBUFS, BUF_SIZE, BGID, false, &w->br, &w->bufs);
    if (ret)
        return ret;
    arm_accept(w);
    arm_event(w);
    return 0;
}

static void worker_fini(struct worker *w)
{
    if (w->ring_ok)
        io_uring_queue_exit(&w->ring);
    while (!list_empty(&w->conns)) {
        struct conn *c = container_of(w->conns.next, struct conn, link);

        if (!c->close_submitted)
            close(c->fd);
        conn_free(c);
    }
    bufring_free(NULL, w->br, BGID, w->bufs); /* the ring's exit unregistered it */
    w->br = NULL;
    w->bufs = NULL;
}

static void worker_loop(struct worker *w)
{
    while (!w->stop) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = io_uring_submit_and_wait(&w->ring, 1);

        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            logmsg(w->cfg, "io_uring_submit_and_wait", ret);
            break;
        }
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            handle_cqe(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    w->err = worker_init(w);
    pthread_barrier_wait(w->ready);
    if (!w->err)
        worker_loop(w);
    worker_fini(w);
    return NULL;
}

/* ---------------------------------------------------------------- start-up */

static int parse_addr(struct config *cfg, const char *s)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&cfg->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&cfg->addr;
    const char *colon = strrchr(s, ':');
    char host[64];
    size_t hl;
    uint64_t port;

    if (!colon || !parse_u64(colon + 1, strlen(colon + 1), &port) || port > 65535)
        return -1;
    hl = (size_t)(colon - s);
    if (hl >= sizeof(host))
        return -1;
    memcpy(host, s, hl);
    host[hl] = 0;
    memset(&cfg->addr, 0, sizeof(cfg->addr));
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
            return -1;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        cfg->addrlen = sizeof(*a6);
    } else {
        if (inet_pton(AF_INET, hl ? host : "0.0.0.0", &a4->sin_addr) != 1)
            return -1;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        cfg->addrlen = sizeof(*a4);
    }
    snprintf(cfg->addr_str, sizeof(cfg->addr_str), "%s", s);
    return 0;
}

static int open_listener(const struct config *cfg)
{
    int one = 1, fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
        bind(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen) || listen(fd, 4096)) {
        int err = -errno;

        close(fd);
        return err;
    }
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ringorigin [options]\n"
               "  -l, --listen ADDR   ip:port or [ip6]:port (default 127.0.0.1:9000)\n"
               "  -n, --name NAME     sent as X-Origin (default origin)\n"
               "  -s, --size BYTES    default body: BYTES of a printable pattern\n"
               "      --status CODE   default status (default 200)\n"
               "      --delay MS      delay before each answer (default 0)\n"
               "      --chunked       send bodies chunked\n"
               "      --echo          answer with the request as received\n"
               "      --close         answer with Connection: close\n"
               "      --ws            answer WebSocket upgrades (an HTTP/1.1 GET with Connection:\n"
               "                      upgrade, Upgrade: websocket) with 101, then echo messages,\n"
               "                      answer pings, and answer a close and close; frames over\n"
               "                      16 MiB or malformed ones fail the connection\n"
               "  -t, --threads N     worker threads (default 1)\n"
               "  -q, --quiet         no diagnostics\n"
               "  -h, --help          this text\n"
               "per request: ?status= ?size= ?delay= ?chunked=1 ?close=1 ?echo=1 ?reset=1\n"
               "             ?header=Name:Value ?cl=N ?hang=1; GET /health, GET /__stats\n"
               "             (with --ws it also counts \"messages\")\n");
}

static bool opt_num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return parse_u64(s, strlen(s), out) && *out >= lo && *out <= hi;
}

static int bad_opt(const char *opt, const char *val)
{
    fprintf(stderr, "ringorigin: invalid %s '%s' (try --help)\n", opt, val ? val : "");
    return 2;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(struct config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"status", required_argument, NULL, 'S'},
        {"delay", required_argument, NULL, 'D'},
        {"chunked", no_argument, NULL, 'C'},
        {"echo", no_argument, NULL, 'E'},
        {"close", no_argument, NULL, 'X'},
        {"threads", required_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"ws", no_argument, NULL, 'W'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = "127.0.0.1:9000";
    uint64_t v;
    int ch;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":l:n:s:t:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen = optarg;
            break;
        case 'n':
            cfg->name = optarg;
            break;
        case 's':
            if (!opt_num(optarg, 0, 1ULL << 40, &cfg->size))
                return bad_opt("--size", optarg);
            cfg->has_size = true;
            break;
        case 'S':
            if (!opt_num(optarg, 200, 999, &v))
                return bad_opt("--status", optarg);
            cfg->status = (int)v;
            break;
        case 'D':
            if (!opt_num(optarg, 0, 3600000, &v))
                return bad_opt("--delay", optarg);
            cfg->delay_ms = (unsigned)v;
            break;
        case 'C':
            cfg->chunked = true;
            break;
        case 'E':
            cfg->echo = true;
            break;
        case 'X':
            cfg->close = true;
            break;
        case 'W':
            cfg->ws = true;
            break;
        case 't':
            if (!opt_num(optarg, 1, 256, &v))
                return bad_opt("--threads", optarg);
            cfg->threads = (int)v;
            break;
        case 'q':
            cfg->quiet = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            fprintf(stderr, "ringorigin: option %s needs a value\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "ringorigin: unknown option %s (try --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringorigin: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (parse_addr(cfg, listen))
        return bad_opt("--listen", listen);
    cfg->name_len = strlen(cfg->name);
    if (!cfg->name_len || cfg->name_len > 200 || strpbrk(cfg->name, "\r\n"))
        return bad_opt("--name", cfg->name);
    cfg->hello_len = (size_t)snprintf(cfg->hello, sizeof(cfg->hello), "hello from %s\n", cfg->name);
    return -1;
}

static char *make_pattern(void)
{
    static const char alpha[PERIOD + 1] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-\n";
    char *p = malloc(PAT_LEN);

    if (p)
        for (size_t i = 0; i < PAT_LEN; i++)
            p[i] = alpha[i % PERIOD];
    return p;
}

static void wake_workers(struct worker *ws, int n)
{
    uint64_t one = 1;

    for (int i = 0; i < n; i++)
        if (write(ws[i].efd, &one, sizeof(one)) < 0)
            perror("ringorigin: eventfd");
}

/* Opens every listener and eventfd before any thread starts, so errors are reported at once. */
static int open_workers(struct worker *ws, struct shared *sh, const struct config *cfg)
{
    for (int i = 0; i < cfg->threads; i++) {
        ws[i].sh = sh;
        ws[i].cfg = cfg;
        ws[i].lfd = open_listener(cfg);
        if (ws[i].lfd < 0) {
            fprintf(stderr, "ringorigin: listen on %s: %s\n", cfg->addr_str, strerror(-ws[i].lfd));
            return -1;
        }
        ws[i].efd = eventfd(0, EFD_CLOEXEC);
        if (ws[i].efd < 0) {
            perror("ringorigin: eventfd");
            return -1;
        }
    }
    return 0;
}

static int run(struct worker *ws, const struct config *cfg)
{
    pthread_barrier_t ready;
    sigset_t set;
    int started = 0, failed = 0, sig;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_barrier_init(&ready, NULL, (unsigned)cfg->threads + 1);
    for (; started < cfg->threads; started++) {
        ws[started].ready = &ready;
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]))
            break;
    }
    if (started < cfg->threads) {
        /* The barrier can never be reached: give up at once. */
        fprintf(stderr, "ringorigin: cannot start threads\n");
        exit(1);
    }
    pthread_barrier_wait(&ready);
    for (int i = 0; i < cfg->threads; i++) {
        if (ws[i].err) {
            fprintf(stderr, "ringorigin: io_uring setup: %s\n", strerror(-ws[i].err));
            failed = 1;
        }
    }
    if (!failed) {
        fprintf(stderr, "ringorigin %s listening on %s\n", cfg->name, cfg->addr_str);
        sigwait(&set, &sig);
    }
    wake_workers(ws, cfg->threads);
    for (int i = 0; i < cfg->threads; i++)
        pthread_join(ws[i].tid, NULL);
    pthread_barrier_destroy(&ready);
    return failed;
}

int main(int argc, char **argv)
{
    struct config cfg = {.name = "origin", .status = 200, .threads = 1};
    struct shared sh = {.cfg = &cfg};
    struct worker *ws;
    int ret = parse_args(&cfg, argc, argv);

    if (ret >= 0)
        return ret;
    signal(SIGPIPE, SIG_IGN);
    sh.pat = make_pattern();
    ws = calloc((size_t)cfg.threads, sizeof(*ws));
    if (!sh.pat || !ws) {
        fprintf(stderr, "ringorigin: out of memory\n");
        return 1;
    }
    for (int i = 0; i < cfg.threads; i++)
        ws[i].lfd = ws[i].efd = -1;
    ret = open_workers(ws, &sh, &cfg) ? 1 : run(ws, &cfg);
    for (int i = 0; i < cfg.threads; i++) {
        if (ws[i].lfd >= 0)
            close(ws[i].lfd);
        if (ws[i].efd >= 0)
            close(ws[i].efd);
    }
    if (!cfg.quiet && !ret && cfg.ws)
        fprintf(stderr, "ringorigin %s: %lu requests, %lu connections, %lu messages\n", cfg.name,
                atomic_load(&sh.requests), atomic_load(&sh.connections), atomic_load(&sh.messages));
    else if (!cfg.quiet && !ret)
        fprintf(stderr, "ringorigin %s: %lu requests, %lu connections\n", cfg.name,
                atomic_load(&sh.requests), atomic_load(&sh.connections));
    free(ws);
    free(sh.pat);
    return ret;
}

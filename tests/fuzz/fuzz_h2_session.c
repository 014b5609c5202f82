/* fuzz_h2_session.c: libFuzzer target for the HTTP/2 session (session_h2.c) on libnghttp2,
 * with the rest of the engine stubbed as its unit tests stub it (tests/unit/h2_stubs.h: a
 * worker, a client connection, a fake exchange answering through the real writer path).
 *
 * Input: 8 control bytes, then what the client sends after its preface (the harness puts the
 * preface and an empty SETTINGS frame first, so mutations land on frames):
 *   [0]     piece size: the bytes reach the session in pieces of this many (0: all at once)
 *   [1]     bits 0-1: the client's reads (0 all after each piece, 1 one piece's worth, 2 only
 *           at the end, 3 never); bits 2-3: time passing per piece (0, 100 ms, 11 s, 31 s);
 *           bit 4: a drain (GOAWAY) after the first piece; bit 5: backends step after each
 *           piece (else only at the end); bit 6: a TLS connection (frames are gathered into
 *           records; the stub's conn_queue_bytes takes them as a tls_send would)
 *   [2..7]  the plans of requests 0..5, 6..11, ...: bits 0-1 when (enum plan_when), bits
 *           2-4 the response, bit 5 a backend failing mid-body, bit 6 a backend backed up,
 *           bit 7 a cache wait (or, answering after the body, a 100-byte body limit)
 * Between pieces the timers run and dead socks are freed, as a worker's loop pass does. At the
 * end the client reads, the connection closes, the backends still at work finish, and
 * world_fini checks that every exchange ended, every stream was freed without a live exchange
 * and no timer is left; ASan and LSan see the rest. What the client connection queues must be
 * whole frames a server may send: a SETTINGS first, no push, stream ids where they belong. A
 * request body as the session frames it for the exchange (chunked, trailers in the last
 * chunk) must always decode.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define STUB_CHECK(x) CHECK(x)

/* the engine files the session needs besides those the fuzz rule compiles (h1.c, util.c) */
#include "../../engine/buf.c"
#include "../../engine/log.c"
#include "../../engine/session_h2.c"
#include "../../engine/timer.c"
#include "../unit/h2_stubs.h"

#define CTL 8

static uint8_t ctl[CTL];
static char fake_tls;

/* Undefined behaviour stops the run, as in the SAN=1 build (-fno-sanitize-recover), rather
 * than scrolling past in the log. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

static const char *const heads[] = {
    /* 0: a head with its body after it, in the head buffer */
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    /* 1: its body queued apart (body_len 5) */
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
    /* 2 */
    "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    /* 3: a chunked response as the exchange writes it for a stream (decoded, no length) */
    "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
    /* 4: past the windows */
    "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n",
    /* 5: after a 100 */
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    /* 6: connection-specific fields and upper case names */
    ("HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
     "Transfer-Encoding: chunked\r\nX-UPPER: A\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    /* 7: garbage (or, with bit 5, a head the writer failed to compose) */
    "HTTP/1.1 abc\r\n\r\n",
};

static const uint32_t body_lens[] = {0, 5, 0, 3000, 300000, 0, 0, 0};

static struct plan plan_for(uint32_t k, const struct h1_request *r)
{
    uint8_t b = ctl[2 + k % (CTL - 2)];
    uint32_t kind = (b >> 2) & 7;
    struct plan p = {
        .when = b & 3,
        .head = heads[kind],
        .body_len = body_lens[kind],
        .piece = kind == 3 ? 1000 : 16384,
        .interim = kind == 5 ? "HTTP/1.1 100 Continue\r\n\r\n" : NULL,
        .bad_head = kind == 7 && (b & 0x20),
        .fail_mid_body = kind != 7 && (b & 0x20),
        .backed_up = b & 0x40,
    };

    (void)r;
    if (b & 0x80) {
        if (p.when == ANSWER_AFTER_BODY)
            p.max_body = 100;
        else
            p.cache_wait = 5000;
    }
    return p;
}

/* ---- what the client connection sends: whole frames a server may send -------------------- */

static struct {
    uint8_t hd[9];
    uint32_t have, left;
    uint64_t frames;
} fw;

static void check_frame(const uint8_t *hd)
{
    uint32_t len = (uint32_t)hd[0] << 16 | (uint32_t)hd[1] << 8 | hd[2];
    uint8_t type = hd[3], flags = hd[4];
    uint32_t id = ((uint32_t)hd[5] << 24 | (uint32_t)hd[6] << 16 | (uint32_t)hd[7] << 8 | hd[8]) &
                  0x7fffffffu;

    if (fw.frames++ == 0) /* the server's connection preface */
        CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK) && id == 0);
    CHECK(len <= 16384); /* nghttp2 sends no frame past the default SETTINGS_MAX_FRAME_SIZE */
    switch (type) {
    case NGHTTP2_DATA:
    case NGHTTP2_HEADERS:
    case NGHTTP2_RST_STREAM:
    case NGHTTP2_CONTINUATION:
        CHECK(id & 1); /* a stream the client opened */
        break;
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
    case NGHTTP2_GOAWAY:
        CHECK(id == 0);
        break;
    case NGHTTP2_WINDOW_UPDATE:
        CHECK(id == 0 || (id & 1));
        break;
    default: /* PUSH_PROMISE (push is off), PRIORITY, anything else */
        CHECK(false);
    }
    fw.left = len;
}

static void walk(const char *s, uint32_t n)
{
    const uint8_t *p = (const uint8_t *)s;

    while (n) {
        uint32_t k;

        if (fw.left) {
            k = n < fw.left ? n : fw.left;
            fw.left -= k;
        } else {
            k = 9 - fw.have < n ? 9 - fw.have : n;
            memcpy(fw.hd + fw.have, p, k);
            fw.have += k;
            if (fw.have == 9) {
                fw.have = 0;
                check_frame(fw.hd);
            }
        }
        p += k;
        n -= k;
    }
}

/* ---- one input ---------------------------------------------------------------------------- */

static void reads(uint32_t piece, bool at_end)
{
    uint32_t mode = ctl[1] & 3;

    if (mode == 3 || (mode == 2 && !at_end))
        return;
    if (mode == 1 && !at_end) {
        client_took(piece);
        return;
    }
    while (client_took(UINT32_MAX))
        ;
}

/* The rest of a loop pass after the client's bytes were handled. */
static void pass_end(uint32_t i, uint32_t piece)
{
    static const uint32_t tick[] = {0, 100, 11000, 31000};

    reads(piece, false);
    wrk.now_ms += tick[(ctl[1] >> 2) & 3];
    timer_run(&wtw, wrk.now_ms);
    if (ctl[1] & 0x20)
        fakes_progress();
    if (i == 0 && (ctl[1] & 0x10) && !cl.sk.dead)
        h2_drain(&cl);
    graveyard_run();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char start[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                "\0\0\0\4\0\0\0\0\0"; /* the preface, SETTINGS (empty) */
    size_t ctl_n = size < CTL ? size : CTL, total = sizeof(start) - 1 + size - ctl_n;
    char *buf = malloc(total); /* exact size: ASan sees a read past the end */
    uint32_t piece, off, i;

    if (!buf || total > 1u << 20) {
        free(buf);
        return 0;
    }
    memset(ctl, 0, sizeof(ctl));
    memcpy(ctl, data, ctl_n);
    memcpy(buf, start, sizeof(start) - 1);
    memcpy(buf + sizeof(start) - 1, data + ctl_n, size - ctl_n);
    memset(&fw, 0, sizeof(fw));
    world_init();
    queue_sink = walk;
    cl.tls = ctl[1] & 0x40 ? (struct tls_conn *)&fake_tls : NULL; /* (only tested, never read) */
    piece = ctl[0] ? ctl[0] : (uint32_t)total;
    /* session_h1.c starts the session once the whole preface is in, or on TLS (ALPN h2) when
     * the handshake is done, before any byte */
    off = piece > PREFACE_LEN ? piece : (uint32_t)PREFACE_LEN;
    off = cl.tls ? 0 : off < total ? off : (uint32_t)total;
    h2_session_start(&cl, off ? buf : NULL, off);
    for (i = 0;; i++) {
        pass_end(i, piece);
        if (off >= total || cl.sk.dead)
            break;
        uint32_t n = total - off < piece ? (uint32_t)(total - off) : piece;
        h2_on_data(&cl, buf + off, n);
        off += n;
    }
    for (i = 0; i < 4 && !cl.sk.dead; i++) { /* the backends go on; the client reads */
        fakes_progress();
        reads(piece, true);
        graveyard_run();
    }
    world_fini();
    CHECK(fw.have == 0 && fw.left == 0); /* what was queued is whole frames */
    CHECK(S.bad_bodies == 0);            /* a body framed here always decodes */
    free(buf);
    return 0;
}

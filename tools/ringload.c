/* ringload: an HTTP/1.1 load generator on io_uring, wrk's habits with honest latency. One ring
 * per thread drives its share of the connections through direct descriptors (socket, connect and
 * send linked in one submission), multishot receives into a provided-buffer ring, and one
 * io_uring_enter per batch. Responses are parsed by engine/h1.c; latencies go to tools/hist.c.
 * With --ws it drives WebSocket connections instead: one upgrade each, then echoed messages.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../engine/bufring.h"
#include "../engine/h1.h"
#include "../engine/uring_compat.h"
#include "../engine/util.h"
#include "../tls/tls.h"
#include "hist.h"
#include "ws.h"

#define HEAD_MAX 8192    /* largest response head kept across receives */
#define RESP_HDRS 128    /* response header lines parsed */
#define MAX_USER_HDRS 64 /* -H options */
#define BUF_SIZE 16384   /* provided receive buffers */
#define BGID 7
#define TICK_NS 100000000ULL /* timeout scan and progress publication */
#define MAX_CONNS (1u << 20)
#define MAX_PIPELINE 1024
#define PTEXT_SIZE (64 * 1024)     /* per-thread plaintext buffer (https://) */
#define WS_MAX (16u * 1024 * 1024) /* --ws: largest message */
#define WS_KEY_LEN 24              /* a Sec-WebSocket-Key: base64 of 16 bytes */
#define WS_FRAMES_BYTES (4u << 20) /* --ws: memory for the pre-masked copies of the message */

enum { OP_SOCKET = 1, OP_CONNECT, OP_SEND, OP_RECV, OP_TSEND };
/* ERR_UPGRADE (--ws only): the upgrade was answered with anything but a good 101 */
enum { ERR_CONNECT, ERR_READ, ERR_WRITE, ERR_TIMEOUT, ERR_UPGRADE, ERR_KINDS };
enum { RS_HEAD, RS_LENGTH, RS_CHUNKED, RS_UNTIL_CLOSE };
enum { WS_OFF, WS_HS, WS_OPEN };                                /* a connection's --ws phase */
enum { WS_EV_NONE, WS_EV_MESSAGE, WS_EV_CLOSE, WS_EV_CONTROL }; /* what ws_feed saw end */

/* user_data: op in bits 0-3, connection generation in 4-31, connection index in 32-63 */
#define UD(op, gen, idx)                                                                           \
    ((uint64_t)(op) | ((uint64_t)((gen)&0xfffffffu) << 4) | ((uint64_t)(idx) << 32))
#define UD_OP(ud) ((unsigned)((ud)&15))
#define UD_GEN(ud) ((uint32_t)(((ud) >> 4) & 0xfffffffu))
#define UD_IDX(ud) ((uint32_t)((ud) >> 32))

struct url {
    char host[256]; /* without brackets */
    char port[8];
    char authority[300]; /* as written: the Host header */
    char path[4096];     /* origin-form, "/" when empty */
    bool tls;            /* https:// */
};

struct opts {
    uint32_t conns, threads, pipeline;
    uint64_t duration_ns; /* 0: none (only with -n) */
    uint64_t count;       /* -n, 0: unbounded */
    uint64_t timeout_ns;
    double rate; /* -R requests/s in total, 0: closed loop */
    const char *method;
    enum h1_method method_id; /* for the response parser: HEAD answers have no body */
    const char *headers[MAX_USER_HDRS];
    unsigned nheaders;
    const char *body_file;
    bool latency, close, json, insecure, has_duration, ws;
    uint64_t ws_size; /* --ws: bytes per message */
    const char *url_text;
    struct url url;
};

/* Per-connection response framing; `hbuf` (HEAD_MAX bytes) holds a head split across receives. */
struct resp {
    uint8_t phase;
    bool keep_alive;
    uint16_t status;
    uint32_t hlen;
    uint64_t left;
    struct h1_chunked ck;
    char *hbuf;
    const char *ws_key; /* --ws: the key the upgrade sent (WS_KEY_LEN characters), or NULL */
    bool ws_ok;         /* --ws: the final response was a 101 that accepted ws_key */
};

/* --ws: receive state for server frames. A header may arrive split, so it is gathered byte by
 * byte; payload bytes are compared with the message sent as they arrive. */
struct ws_rx {
    unsigned char hdr[14];
    uint8_t hlen, need, op; /* header bytes seen, its length (once 2 are in), the opcode */
    bool fin, in_payload, in_msg;
    uint64_t left; /* payload bytes left in this frame */
    uint64_t got;  /* bytes of the current message so far */
};

struct stats {
    uint64_t responses, bytes; /* --ws: responses are echoed messages */
    uint64_t upgrades;         /* --ws: handshakes completed */
    uint64_t cls[6];           /* by status / 100; [0] counts anything outside 100..599 */
    uint64_t err[ERR_KINDS];
};

/* A connection's TLS state (https:// only): ciphertext the sink produced waits in `q` while
 * `f` is being sent; one send in flight at a time, its CQE hands the next batch over. */
struct tconn {
    struct tls_conn *tls;
    char *q, *f;
    size_t qlen, qcap, flen, fcap, foff;
    uint32_t pending; /* requests queued until the handshake finishes (when `queued`) */
    bool sending, queued;
};

struct conn {
    struct resp rs;
    struct ws_rx wr;  /* --ws, once upgraded */
    struct tconn *t;  /* NULL for http:// */
    uint64_t sent_ns; /* latency origin: when the batch was queued, or intended (-R) */
    uint64_t io_ns;   /* when the connect or send started: for --timeout */
    uint64_t due_ns;  /* -R: intended send time of the next request */
    uint32_t idx, gen, inflight, heap_pos; /* heap_pos: 1-based, 0 when not waiting */
    uint32_t nmsg;                         /* --ws: messages sent, to rotate the masks */
    uint8_t ws;                            /* WS_OFF, or the --ws phase */
    bool open, connected, recv_armed;
};

struct shared {
    const struct opts *o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *req;           /* `pipeline` copies of the request; --ws: the upgrade request */
    struct tls_ctx *tls; /* https://: shared read-only by the workers */
    size_t req_len;
    size_t key_off; /* --ws: where the Sec-WebSocket-Key's value starts in the request */
    char *payload;  /* --ws: the message (ws_size bytes, unmasked: what the echo must be) */
    char *frames;   /* --ws: nframes copies of its frame, each under another masking key */
    size_t frame_len;
    unsigned nframes;
    uint64_t start_ns;
    atomic_bool stop;
    atomic_uint running;
    pthread_barrier_t ready;
};

struct worker {
    struct io_uring ring;
    bool ring_ok;
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned nbufs, buf_added;
    struct shared *sh;
    const struct opts *o;
    struct conn *conns;
    uint32_t nconns, first; /* `first`: global index of conns[0], to stagger -R schedules */
    char *hslab;
    char *wsreq; /* --ws: each connection's copy of the upgrade request, with its own key */
    uint64_t rng;
    char *ptext; /* https://: PTEXT_SIZE bytes of decrypted input */
    struct tconn *tslab;
    struct conn **heap;
    uint32_t heap_len;
    uint64_t quota, issued, finished; /* -n share */
    uint64_t interval_ns;             /* -R: per connection */
    uint64_t now, end_ns, stop_ns, next_tick, next_pub;
    struct stats st;
    struct hist lat;
    atomic_uint_fast64_t pub_responses, pub_errors, pub_p99;
    int err;
    const char *err_what;
    pthread_t tid;
};

static uint64_t clock_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- option parsing */

/* Parses "10s", "1m", "500ms", "2h", "250us" or a bare number of seconds ("1.5"). */
static int parse_duration(const char *s, uint64_t *ns)
{
    static const struct {
        const char *unit;
        double mult;
    } units[] = {{"", 1e9}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    char *end;
    double v;

    if (!*s || isspace((unsigned char)*s) || *s == '-' || *s == '+')
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v <= 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            double r = v * units[i].mult;

            if (r < 1 || r > 1e18)
                return -EINVAL;
            *ns = (uint64_t)r;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s)
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Parses http:// and https:// URLs. Returns 0 or -EINVAL. */
static int parse_url(const char *s, struct url *u)
{
    const char *a, *end;
    struct hostport hp;
    size_t n;

    bool h2;

    memset(u, 0, sizeof(*u));
    n = url_scheme_len(s, &u->tls, &h2);
    if (!n || h2) /* ringload speaks HTTP/1.1 */
        return -EINVAL;
    a = s + n;
    end = a + strcspn(a, "/?#");
    if (end == a || memchr(a, '@', (size_t)(end - a)))
        return -EINVAL;
    if (hostport_split(a, (size_t)(end - a), &hp) || hp.host_len == 0)
        return -EINVAL;
    if (hp.port) {
        uint64_t port;
        char tmp[8];

        n = hp.port_len;
        if (n == 0 || n >= sizeof(tmp))
            return -EINVAL;
        memcpy(tmp, hp.port, n);
        tmp[n] = 0;
        if (parse_uint(tmp, 1, 65535, &port))
            return -EINVAL;
        snprintf(u->port, sizeof(u->port), "%u", (unsigned)port);
    } else {
        strcpy(u->port, u->tls ? "443" : "80");
    }
    n = hp.host_len;
    if (n >= sizeof(u->host))
        return -EINVAL;
    memcpy(u->host, hp.host, n);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)hp.host[i]) && !strchr("-._:%", hp.host[i]))
            return -EINVAL;
    if (hp.bracketed && !strchr(u->host, ':'))
        return -EINVAL;
    n = (size_t)(end - a);
    if (n >= sizeof(u->authority))
        return -EINVAL;
    memcpy(u->authority, a, n);
    /* the path runs to the fragment; a bare query gets its "/" */
    n = strcspn(end, "#");
    if (n + 2 > sizeof(u->path))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)end[i] <= ' ' || end[i] == 0x7f)
            return -EINVAL;
    snprintf(u->path, sizeof(u->path), "%s%.*s", *end == '/' ? "" : "/", (int)n, end);
    return 0;
}

static enum h1_method method_id(const char *m)
{
    if (strcmp(m, "HEAD") == 0)
        return H1_M_HEAD;
    if (strcmp(m, "GET") == 0)
        return H1_M_GET;
    return H1_M_OTHER;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ringload [options] URL\n"
            "  -c, --connections N   connections to keep open, in total (default 10)\n"
            "  -t, --threads N       threads, one io_uring each (default 2)\n"
            "  -d, --duration T      run time: 10s, 1m, 500ms, 1h (default 10s)\n"
            "  -n, --requests N      stop after N requests (with -d: whichever comes first)\n"
            "  -H, --header 'N: V'   add a request header (repeatable)\n"
            "  -m, --method M        request method (default GET)\n"
            "      --body FILE       send FILE as the request body (adds Content-Length)\n"
            "      --timeout T       a request or connect unanswered this long is a timeout\n"
            "                        error; its connection is reopened (default 2s)\n"
            "      --latency         print the latency distribution\n"
            "  -R, --rate N          open loop: N requests/s in total; latency counts from\n"
            "                        each request's intended send time (no coordinated omission)\n"
            "      --close           a new connection per request (Connection: close)\n"
            "      --pipeline N      N requests in flight per connection (default 1)\n"
            "      --json            one JSON summary on stdout, nothing else\n"
            "  -k, --insecure        https://: skip certificate verification (by default the\n"
            "                        system CA store is used)\n"
            "      --ws N            WebSocket (RFC 6455): each connection sends an upgrade (GET,\n"
            "                        a fresh Sec-WebSocket-Key; the Accept is checked), then one\n"
            "                        masked binary message of N bytes (0 to 16777216) at a time,\n"
            "                        and waits for its echo, which is checked. Requests are then\n"
            "                        messages: -n, -R, the latency (per message, the handshake\n"
            "                        not included) and the rate count them; --json says\n"
            "                        \"messages\". Any answer to the upgrade but a good 101 is an\n"
            "                        upgrade error. Not with --close, --pipeline, --body, -m\n"
            "  -h, --help            this text\n"
            "URL: http[s]://host[:port][/path]; IPv6 as http://[::1]:8080/. https:// (port 443\n"
            "by default) sends the host as SNI unless it is an IP address, offers ALPN\n"
            "http/1.1, and counts a failed handshake as a connect error. Progress goes to\n"
            "stderr once a second when it is a terminal. Exit status: 0, 1 when the run saw\n"
            "socket errors (connect, read, write, timeout, --ws upgrade; malformed responses\n"
            "and wrong echoes count as read), 2 for bad options. Non-2xx/3xx responses are\n"
            "reported, not errors.\n");
}

static int bad_opt(const char *opt, const char *val)
{
    fprintf(stderr, "ringload: invalid %s '%s' (try -h)\n", opt, val);
    return 2;
}

static int check_header(const char *h)
{
    const char *colon = strchr(h, ':');

    if (!colon || colon == h || strpbrk(h, "\r\n"))
        return -EINVAL;
    for (const char *p = h; p < colon; p++)
        if (!http_is_tchar((unsigned char)*p))
            return -EINVAL;
    return 0;
}

/* Fills o from argv. Returns -1 to go on, or the exit status (0 after -h, 2 for bad options);
 * errors are one line on stderr. */
static int parse_args(struct opts *o, int argc, char **argv)
{
    enum { O_BODY = 256, O_TIMEOUT, O_LATENCY, O_CLOSE, O_PIPELINE, O_JSON, O_WS };
    static const struct option lopts[] = {
        {"connections", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'},
        {"duration", required_argument, NULL, 'd'},
        {"requests", required_argument, NULL, 'n'},
        {"header", required_argument, NULL, 'H'},
        {"method", required_argument, NULL, 'm'},
        {"rate", required_argument, NULL, 'R'},
        {"insecure", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {"body", required_argument, NULL, O_BODY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"latency", no_argument, NULL, O_LATENCY},
        {"close", no_argument, NULL, O_CLOSE},
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"json", no_argument, NULL, O_JSON},
        {"ws", required_argument, NULL, O_WS},
        {NULL, 0, NULL, 0},
    };
    uint64_t v;
    int ch, ret;
    char *end;

    memset(o, 0, sizeof(*o));
    o->conns = 10;
    o->threads = 2;
    o->pipeline = 1;
    o->duration_ns = 10000000000ULL;
    o->timeout_ns = 2000000000ULL;
    o->method = "GET";
    opterr = 0;
    optind = 0; /* full re-initialisation, so tests can parse many times */
    while ((ch = getopt_long(argc, argv, ":c:t:d:n:H:m:R:kh", lopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (parse_uint(optarg, 1, MAX_CONNS, &v))
                return bad_opt("-c", optarg);
            o->conns = (uint32_t)v;
            break;
        case 't':
            if (parse_uint(optarg, 1, 256, &v))
                return bad_opt("-t", optarg);
            o->threads = (uint32_t)v;
            break;
        case 'd':
            if (parse_duration(optarg, &o->duration_ns))
                return bad_opt("-d", optarg);
            o->has_duration = true;
            break;
        case 'n':
            if (parse_uint(optarg, 1, UINT64_MAX / 2, &o->count))
                return bad_opt("-n", optarg);
            break;
        case 'H':
            if (check_header(optarg))
                return bad_opt("-H", optarg);
            if (o->nheaders == MAX_USER_HDRS) {
                fprintf(stderr, "ringload: at most %d -H options\n", MAX_USER_HDRS);
                return 2;
            }
            o->headers[o->nheaders++] = optarg;
            break;
        case 'm':
            for (const char *p = optarg; *p; p++)
                if (!http_is_tchar((unsigned char)*p))
                    return bad_opt("-m", optarg);
            if (!*optarg)
                return bad_opt("-m", optarg);
            o->method = optarg;
            break;
        case 'R':
            errno = 0;
            o->rate = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(o->rate > 0) || o->rate > 1e9)
                return bad_opt("-R", optarg);
            break;
        case 'k':
            o->insecure = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case O_BODY:
            o->body_file = optarg;
            break;
        case O_TIMEOUT:
            if (parse_duration(optarg, &o->timeout_ns))
                return bad_opt("--timeout", optarg);
            break;
        case O_LATENCY:
            o->latency = true;
            break;
        case O_CLOSE:
            o->close = true;
            break;
        case O_PIPELINE:
            if (parse_uint(optarg, 1, MAX_PIPELINE, &v))
                return bad_opt("--pipeline", optarg);
            o->pipeline = (uint32_t)v;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_WS:
            if (parse_uint(optarg, 0, WS_MAX, &o->ws_size))
                return bad_opt("--ws", optarg);
            o->ws = true;
            break;
        case ':':
            fprintf(stderr, "ringload: option %s needs a value (try -h)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "ringload: unknown option %s (try -h)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, optind < argc ? "ringload: one URL expected (try -h)\n"
                                      : "ringload: no URL given (try -h)\n");
        return 2;
    }
    o->url_text = argv[optind];
    o->method_id = method_id(o->method);
    if (o->count && !o->has_duration)
        o->duration_ns = 0;
    if (o->conns < o->threads) {
        fprintf(stderr, "ringload: -c (%u) must be at least -t (%u)\n", o->conns, o->threads);
        return 2;
    }
    if (o->pipeline > 1 && (o->close || o->rate > 0)) {
        fprintf(stderr, "ringload: --pipeline cannot be combined with %s\n",
                o->close ? "--close" : "-R");
        return 2;
    }
    if (o->ws && (o->close || o->pipeline > 1 || o->body_file || strcmp(o->method, "GET"))) {
        fprintf(stderr, "ringload: --ws cannot be combined with %s\n",
                o->close          ? "--close"
                : o->pipeline > 1 ? "--pipeline"
                : o->body_file    ? "--body"
                                  : "-m");
        return 2;
    }
    ret = parse_url(o->url_text, &o->url);
    if (ret)
        return bad_opt("URL", o->url_text);
    return -1;
}

/* ---------------------------------------------------------------- the request */

static bool has_header(const struct opts *o, const char *lower)
{
    size_t n = strlen(lower);

    for (unsigned i = 0; i < o->nheaders; i++)
        if (str_istarts(o->headers[i], lower) && o->headers[i][n] == ':')
            return true;
    return false;
}

/* Writes one request into out (NULL: only measures). Returns its length. With --ws it is the
 * upgrade request, its Sec-WebSocket-Key a placeholder that each handshake overwrites. */
static size_t build_request(const struct opts *o, const char *body, size_t body_len, char *out)
{
    char cl[48] = "";
    size_t n = 0;

#define ADD(s, len)                                                                                \
    do {                                                                                           \
        if (out)                                                                                   \
            memcpy(out + n, (s), (len));                                                           \
        n += (len);                                                                                \
    } while (0)
#define ADDS(s) ADD((s), strlen(s))
    ADDS(o->method);
    ADDS(" ");
    ADDS(o->url.path);
    ADDS(" HTTP/1.1\r\n");
    if (!has_header(o, "host")) {
        ADDS("Host: ");
        ADDS(o->url.authority);
        ADDS("\r\n");
    }
    for (unsigned i = 0; i < o->nheaders; i++) {
        ADDS(o->headers[i]);
        ADDS("\r\n");
    }
    if (body && !has_header(o, "content-length") && !has_header(o, "transfer-encoding")) {
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", body_len);
        ADDS(cl);
    }
    if (o->close && !has_header(o, "connection"))
        ADDS("Connection: close\r\n");
    if (o->ws) {
        /* the key comes last: make_request finds it right before the final CRLF CRLF */
        ADDS("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
    }
    ADDS("\r\n");
    if (body)
        ADD(body, body_len);
#undef ADDS
#undef ADD
    return n;
}

/* ---------------------------------------------------------------- WebSocket frames (--ws) */

/* xorshift64*: masking keys, Sec-WebSocket-Keys and the message need unpredictability, not
 * cryptographic strength (RFC 6455 10.3 asks masks not to be guessable by page scripts). */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static uint64_t rng_seed(uint64_t salt)
{
    uint64_t v = 0;

    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
        v = clock_ns();
    v ^= salt * 0x9e3779b97f4a7c15ULL;
    return v ? v : 1;
}

/* Writes a fresh Sec-WebSocket-Key (base64 of 16 random bytes, WS_KEY_LEN characters). */
static void ws_new_key(uint64_t *rng, char *out)
{
    uint64_t r[2] = {rng_next(rng), rng_next(rng)};

    ws_base64(out, (const unsigned char *)r, 16);
}

/* Whether a 101's fields accept the upgrade that sent `key`: Upgrade: websocket and the right
 * Sec-WebSocket-Accept. */
static bool ws_head_ok(const struct h1_response *res, const char *key)
{
    bool up = false, acc = false;
    char want[28];

    if (ws_accept(key, WS_KEY_LEN, want))
        return false;
    for (uint32_t i = 0; i < res->n_headers; i++) {
        const struct h1_header *h = &res->headers[i];

        if (h->kind == H1_H_UPGRADE)
            up = span_ieq(h->value, h->value_len, "websocket");
        else if (span_ieq(h->name, h->name_len, "sec-websocket-accept"))
            acc = h->value_len == 28 && memcmp(h->value, want, 28) == 0;
    }
    return up && acc;
}

/* Writes a frame header: FIN, the opcode, the payload length in its shortest form (7, 16 or
 * 64 bits) and, when `mask` is given, the masking key. Returns its length, 2 to 14 bytes. */
static size_t ws_frame_head(unsigned char *out, unsigned op, uint64_t len,
                            const unsigned char *mask)
{
    size_t n = 2;

    out[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else if (len < 65536) {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        n = 4;
    } else {
        out[1] = 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        out[1] |= 0x80;
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* dst = src XOR the masking key, whose phase at src[0] is off & 3. dst may be src. */
static void ws_mask(char *dst, const char *src, size_t n, const unsigned char key[4], uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)(src[i] ^ key[(off + i) & 3]);
}

/* Checks a complete server frame header against what the connection expects: an unmasked
 * frame without extension bits; control frames whole and short; a binary message, maybe
 * fragmented, of at most elen bytes. */
static bool ws_check_head(struct ws_rx *x, uint64_t elen)
{
    x->fin = x->hdr[0] & 0x80;
    x->op = x->hdr[0] & 15;
    if (x->hdr[0] & 0x70 || x->hdr[1] & 0x80)
        return false;
    if ((x->left = ws_payload_len(x->hdr)) == UINT64_MAX)
        return false;
    if (x->op >= 8)
        return x->op <= 10 && x->fin && x->left <= 125;
    if (x->op != (x->in_msg ? 0 : 2)) /* text, a reserved opcode, a continuation out of place */
        return false;
    return x->left <= elen - x->got;
}

/* Feeds received bytes of server frames (RFC 6455 5.2) to x. Returns the bytes consumed (at most
 * to the end of one frame: call again with the rest), or -EBADMSG for a malformed frame or a
 * message that is not the elen bytes at `expect`. *ev says what ended: WS_EV_MESSAGE (a whole
 * message, found equal), WS_EV_CLOSE (a close frame), WS_EV_CONTROL (a ping or a pong, skipped),
 * or WS_EV_NONE. */
static ssize_t ws_feed(struct ws_rx *x, const char *p, size_t n, const char *expect, uint64_t elen,
                       int *ev)
{
    size_t used = 0, take;

    *ev = WS_EV_NONE;
    if (!x->in_payload) {
        while (used < n && (x->hlen < 2 || x->hlen < x->need)) {
            x->hdr[x->hlen++] = (unsigned char)p[used++];
            if (x->hlen == 2) {
                unsigned l7 = x->hdr[1] & 127;

                x->need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (x->hdr[1] >> 7) * 4);
            }
        }
        if (x->hlen < 2 || x->hlen < x->need)
            return (ssize_t)used;
        if (!ws_check_head(x, elen))
            return -EBADMSG;
        x->in_payload = true;
    }
    take = n - used < x->left ? n - used : (size_t)x->left;
    if (x->op < 8 && take) {
        if (memcmp(p + used, expect + x->got, take))
            return -EBADMSG;
        x->got += take;
    }
    used += take;
    x->left -= take;
    if (x->left)
        return (ssize_t)used;
    x->in_payload = false;
    x->hlen = x->need = 0;
    if (x->op >= 8) {
        *ev = x->op == 8 ? WS_EV_CLOSE : WS_EV_CONTROL;
    } else if (!x->fin) {
        x->in_msg = true;
    } else {
        if (x->got != elen)
            return -EBADMSG;
        x->in_msg = false;
        x->got = 0;
        *ev = WS_EV_MESSAGE;
    }
    return (ssize_t)used;
}

/* ---------------------------------------------------------------- response accounting */

static void resp_reset(struct resp *r)
{
    char *hbuf = r->hbuf;

    memset(r, 0, sizeof(*r));
    r->hbuf = hbuf;
}

/* A head is complete: set up its body. Returns true when the response is complete already. */
static bool resp_head_done(struct resp *r, const struct h1_response *res)
{
    r->status = res->status;
    r->keep_alive = res->keep_alive;
    r->hlen = 0;
    switch (res->body) {
    case H1_BODY_LENGTH:
        r->left = res->content_length;
        r->phase = RS_LENGTH;
        return r->left == 0;
    case H1_BODY_CHUNKED:
        memset(&r->ck, 0, sizeof(r->ck));
        r->phase = RS_CHUNKED;
        return false;
    case H1_BODY_UNTIL_CLOSE:
        r->keep_alive = false;
        r->phase = RS_UNTIL_CLOSE;
        return false;
    default:
        return true;
    }
}

static ssize_t resp_feed_head(struct resp *r, const char *p, size_t n, enum h1_method m, bool *done)
{
    static const struct h1_limits lim = {.max_head_bytes = HEAD_MAX, .max_headers = RESP_HDRS};
    struct h1_header hdrs[RESP_HDRS];
    struct h1_response res = {.headers = hdrs, .headers_cap = RESP_HDRS};
    size_t used, take;
    int ret;

    if (r->hlen == 0) {
        /* the usual case: the whole head sits in this receive */
        ret = h1_parse_response(p, n, &res, &lim, m);
        if (ret == -EAGAIN) {
            memcpy(r->hbuf, p, n); /* n < HEAD_MAX, else -EBADMSG */
            r->hlen = (uint32_t)n;
            return (ssize_t)n;
        }
        if (ret < 0)
            return -EBADMSG;
        used = (size_t)ret;
    } else {
        take = n < HEAD_MAX - r->hlen ? n : HEAD_MAX - r->hlen;
        memcpy(r->hbuf + r->hlen, p, take);
        ret = h1_parse_response(r->hbuf, r->hlen + take, &res, &lim, m);
        if (ret == -EAGAIN) {
            r->hlen += (uint32_t)take;
            return (ssize_t)take;
        }
        if (ret < 0)
            return -EBADMSG;
        used = (size_t)ret - r->hlen;
    }
    if (res.status >= 100 && res.status < 200 && res.status != 101) {
        r->hlen = 0; /* interim: the final response follows */
        return (ssize_t)used;
    }
    if (r->ws_key)
        r->ws_ok = res.status == 101 && ws_head_ok(&res, r->ws_key);
    *done = resp_head_done(r, &res);
    return (ssize_t)used;
}

/* Feeds received bytes to a connection's response state. Returns the bytes consumed (at most
 * one response's worth; call again with the rest), or -EBADMSG for a malformed response.
 * *done becomes true when a response ended: r->status and r->keep_alive describe it and the
 * state is ready for the next one. `m` is the request method (HEAD responses have no body). */
static ssize_t resp_feed(struct resp *r, const char *p, size_t n, enum h1_method m, bool *done)
{
    ssize_t ret;
    bool fin = false;

    *done = false;
    switch (r->phase) {
    case RS_HEAD:
        ret = resp_feed_head(r, p, n, m, done);
        break;
    case RS_LENGTH:
        ret = (ssize_t)(n < r->left ? n : r->left);
        r->left -= (uint64_t)ret;
        *done = r->left == 0;
        break;
    case RS_CHUNKED:
        ret = h1_chunked_feed(&r->ck, p, n, NULL, NULL, &fin);
        if (ret < 0)
            return -EBADMSG;
        *done = fin;
        break;
    default: /* until close */
        return (ssize_t)n;
    }
    if (*done)
        r->phase = RS_HEAD;
    return ret;
}

/* The peer closed. Returns true when that ended a response (body delimited by the close). */
static bool resp_eof(struct resp *r)
{
    if (r->phase != RS_UNTIL_CLOSE)
        return false;
    r->phase = RS_HEAD;
    return true;
}

/* Whether the state sits between responses (a close there is not an error). */
static bool resp_idle(const struct resp *r)
{
    return r->phase == RS_HEAD && r->hlen == 0;
}

/* ---------------------------------------------------------------- the rate schedule (-R) */

static bool heap_less(const struct conn *a, const struct conn *b)
{
    return a->due_ns < b->due_ns;
}

static void heap_set(struct worker *w, uint32_t i, struct conn *c)
{
    w->heap[i] = c;
    c->heap_pos = i + 1;
}

static void heap_sift_up(struct worker *w, uint32_t i)
{
    struct conn *c = w->heap[i];

    while (i > 0 && heap_less(c, w->heap[(i - 1) / 2])) {
        heap_set(w, i, w->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(w, i, c);
}

static void heap_sift_down(struct worker *w, uint32_t i)
{
    struct conn *c = w->heap[i];

    for (;;) {
        uint32_t k = 2 * i + 1;

        if (k >= w->heap_len)
            break;
        if (k + 1 < w->heap_len && heap_less(w->heap[k + 1], w->heap[k]))
            k++;
        if (!heap_less(w->heap[k], c))
            break;
        heap_set(w, i, w->heap[k]);
        i = k;
    }
    heap_set(w, i, c);
}

static void heap_push(struct worker *w, struct conn *c)
{
    w->heap[w->heap_len] = c;
    heap_sift_up(w, w->heap_len++);
}

static void heap_remove(struct worker *w, struct conn *c)
{
    uint32_t i = c->heap_pos - 1;

    if (!c->heap_pos)
        return;
    c->heap_pos = 0;
    if (i == --w->heap_len)
        return;
    w->heap[i] = w->heap[w->heap_len];
    heap_sift_down(w, i);
    heap_sift_up(w, w->heap[i]->heap_pos - 1);
}

/* ---------------------------------------------------------------- connections */

static struct io_uring_sqe *get_sqe(struct worker *w)
{
    return rp_get_sqe(&w->ring);
}

/* Requests the next batch may carry: the pipeline depth, capped by what -n leaves. */
static uint32_t take_batch(struct worker *w)
{
    uint64_t k = w->o->rate > 0 ? 1 : w->o->pipeline;

    if (w->quota) {
        if (w->issued + k > w->quota)
            k = w->quota - w->issued;
    }
    w->issued += k;
    return (uint32_t)k;
}

static bool stopping(const struct worker *w)
{
    return w->stop_ns != 0;
}

static void tls_prep_send(struct worker *w, struct conn *c, uint32_t k);

/* The bytes of a batch of k requests on this connection: k copies of the request, or with
 * --ws the connection's upgrade request during the handshake, one masked message after it
 * (the masking keys rotate over the copies made at start-up). Read-only until the next call. */
static const char *batch(struct worker *w, struct conn *c, uint32_t k, size_t *len)
{
    const struct shared *sh = w->sh;

    if (c->ws == WS_HS) {
        *len = sh->req_len;
        return w->wsreq + (size_t)c->idx * sh->req_len;
    }
    if (c->ws == WS_OPEN) {
        *len = sh->frame_len;
        return sh->frames + (size_t)((c->idx + c->nmsg++) % sh->nframes) * sh->frame_len;
    }
    *len = k * sh->req_len;
    return sh->req;
}

static void prep_send(struct worker *w, struct conn *c, uint32_t k, unsigned link)
{
    struct io_uring_sqe *sqe;
    const char *p;
    size_t len;

    if (c->t) {
        tls_prep_send(w, c, k);
        return;
    }
    sqe = get_sqe(w);
    p = batch(w, c, k, &len);
    /* MSG_WAITALL: the kernel finishes short sends itself, so success needs no CQE */
    io_uring_prep_send(sqe, (int)c->idx, p, len, MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_CQE_SKIP_SUCCESS | link;
    io_uring_sqe_set_data64(sqe, UD(OP_SEND, c->gen, c->idx));
    c->inflight = k;
    c->io_ns = w->now;
    c->sent_ns = w->o->rate > 0 ? c->due_ns : w->now;
}

static void arm_recv(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_prep_recv_multishot(sqe, (int)c->idx, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, UD(OP_RECV, c->gen, c->idx));
    c->recv_armed = true;
}

/* ---------------------------------------------------------------- https:// */

static void conn_fail(struct worker *w, struct conn *c, int kind);
static bool conn_input(struct worker *w, struct conn *c, const char *p, size_t n);
static void on_eof(struct worker *w, struct conn *c);

static bool tls_done(const struct conn *c)
{
    return c->t->tls && tls_handshake_done(c->t->tls);
}

/* The sink: ciphertext queues in t->q until the send in flight (if any) completes. */
static int tls_sink(void *arg, const char *p, size_t n)
{
    struct tconn *t = arg;

    if (t->qlen + n > t->qcap) {
        size_t cap = t->qcap ? t->qcap : 4096;
        char *q;

        while (cap < t->qlen + n)
            cap *= 2;
        q = realloc(t->q, cap);
        if (!q)
            return -ENOMEM;
        t->q = q;
        t->qcap = cap;
    }
    memcpy(t->q + t->qlen, p, n);
    t->qlen += n;
    return 0;
}

static void tls_submit(struct worker *w, struct conn *c)
{
    struct tconn *t = c->t;
    struct io_uring_sqe *sqe = get_sqe(w);

    io_uring_prep_send(sqe, (int)c->idx, t->f + t->foff, t->flen - t->foff,
                       MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, UD(OP_TSEND, c->gen, c->idx));
    t->sending = true;
}

/* Starts sending what the sink queued, unless a send is in flight (its completion does). */
static void tls_flush(struct worker *w, struct conn *c)
{
    struct tconn *t = c->t;
    char *f = t->f;
    size_t cap = t->fcap;

    if (t->sending || !t->qlen)
        return;
    t->f = t->q;
    t->fcap = t->qcap;
    t->flen = t->qlen;
    t->foff = 0;
    t->q = f;
    t->qcap = cap;
    t->qlen = 0;
    tls_submit(w, c);
}

/* Drops the connection's TLS session and queued ciphertext (the slot is being cancelled). */
static void tls_drop(struct conn *c)
{
    struct tconn *t = c->t;

    if (t->tls)
        tls_conn_free(t->tls);
    t->tls = NULL;
    t->qlen = t->flen = t->foff = 0;
    t->pending = 0;
    t->sending = t->queued = false;
}

/* Queues k requests: encrypted now, or when the handshake finishes. */
static void tls_prep_send(struct worker *w, struct conn *c, uint32_t k)
{
    struct tconn *t = c->t;
    const char *p;
    size_t len;

    c->inflight = k;
    c->io_ns = w->now;
    c->sent_ns = w->o->rate > 0 ? c->due_ns : w->now;
    if (!tls_done(c)) {
        t->pending = k;
        t->queued = true;
        return;
    }
    p = batch(w, c, k, &len);
    if (tls_send(t->tls, p, len) < 0) {
        conn_fail(w, c, ERR_WRITE);
        return;
    }
    tls_flush(w, c);
}

/* conn_open's TLS part, after the linked socket and connect: a new session whose ClientHello
 * is sent linked to the connect; the k requests (--ws: the upgrade) wait for the handshake. */
static void tls_open(struct worker *w, struct conn *c, uint32_t k)
{
    struct tconn *t = c->t;

    t->tls = tls_conn_new(w->sh->tls, w->o->url.host, tls_sink, t);
    if (!t->tls || tls_connect(t->tls) < 0) {
        /* out of memory: end the run rather than spin */
        w->err = -ENOMEM;
        w->err_what = "TLS connection";
        atomic_store(&w->sh->stop, true);
        return;
    }
    tls_flush(w, c);
    c->inflight = k;
    c->sent_ns = w->o->rate > 0 ? c->due_ns : w->now;
    t->pending = k;
    t->queued = k || c->ws == WS_HS;
}

/* Ciphertext received: decrypt and parse. Returns false when the connection was failed or
 * reopened (c->t->tls is then another session, or none). */
static bool tls_input(struct worker *w, struct conn *c, const char *p, size_t n)
{
    struct tconn *t = c->t;
    bool was_done;

    if (!t->tls)
        return false; /* tls_open failed: the run is ending */
    was_done = tls_handshake_done(t->tls);
    for (;;) {
        ssize_t r = tls_recv(t->tls, p, n, w->ptext, PTEXT_SIZE);

        p = NULL;
        n = 0;
        if (r < 0) {
            if (!tls_handshake_done(t->tls)) {
                conn_fail(w, c, ERR_CONNECT);
            } else if (r == -ECONNRESET) {
                on_eof(w, c); /* close_notify: as a TCP close */
            } else {
                conn_fail(w, c, ERR_READ);
            }
            return false;
        }
        if (r == 0)
            break;
        if (!conn_input(w, c, w->ptext, (size_t)r))
            return false;
    }
    if (!was_done && t->queued && tls_handshake_done(t->tls)) {
        size_t len;
        const char *q = batch(w, c, t->pending, &len);

        t->pending = 0;
        t->queued = false;
        if (tls_send(t->tls, q, len) < 0) {
            conn_fail(w, c, ERR_WRITE);
            return false;
        }
    }
    tls_flush(w, c);
    return true;
}

/* A TLS send completed. */
static void on_tls_send(struct worker *w, struct conn *c, int res)
{
    struct tconn *t = c->t;

    t->sending = false;
    if (res <= 0) {
        conn_fail(w, c, tls_done(c) ? ERR_WRITE : ERR_CONNECT);
        return;
    }
    t->foff += (size_t)res;
    if (t->foff < t->flen) {
        tls_submit(w, c); /* a short send: the rest */
        return;
    }
    t->flen = t->foff = 0;
    tls_flush(w, c);
}

/* Cancels whatever is in flight on the connection's slot; its CQEs then carry a stale
 * generation and are dropped. */
static void conn_cancel(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *sqe;

    if (!c->open)
        return;
    sqe = get_sqe(w);
    io_uring_prep_cancel_fd(sqe, (int)c->idx, IORING_ASYNC_CANCEL_ALL);
    sqe->cancel_flags |= IORING_ASYNC_CANCEL_FD_FIXED;
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
    heap_remove(w, c);
    c->gen++;
    c->open = c->connected = c->recv_armed = false;
    c->inflight = 0;
    if (c->t)
        tls_drop(c);
}

static void conn_shut(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *sqe;

    if (!c->open)
        return;
    conn_cancel(w, c);
    sqe = get_sqe(w);
    io_uring_prep_close_direct(sqe, c->idx);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, 0);
}

/* --ws: a new handshake for the connection, with a fresh key in its copy of the request. */
static void ws_begin(struct worker *w, struct conn *c)
{
    char *key = w->wsreq + (size_t)c->idx * w->sh->req_len + w->sh->key_off;

    ws_new_key(&w->rng, key);
    c->rs.ws_key = key;
    c->ws = WS_HS;
    memset(&c->wr, 0, sizeof(c->wr));
}

/* (Re)opens the connection: socket, connect and, with k > 0 (or --ws: the upgrade), the first
 * send, linked. */
static void conn_open(struct worker *w, struct conn *c, uint32_t k)
{
    const struct shared *sh = w->sh;
    struct io_uring_sqe *sqe;
    bool send;

    conn_cancel(w, c); /* the new socket replaces the old one in the slot */
    c->open = true;
    resp_reset(&c->rs);
    if (w->o->ws)
        ws_begin(w, c);
    send = k || c->ws == WS_HS;
    c->io_ns = w->now;
    sqe = get_sqe(w);
    io_uring_prep_socket_direct(sqe, sh->addr.ss_family, SOCK_STREAM, 0, c->idx, 0);
    sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, UD(OP_SOCKET, c->gen, c->idx));
    sqe = get_sqe(w);
    io_uring_prep_connect(sqe, (int)c->idx, (const struct sockaddr *)&sh->addr, sh->addrlen);
    sqe->flags |= IOSQE_FIXED_FILE | (send || c->t ? IOSQE_IO_LINK : 0);
    io_uring_sqe_set_data64(sqe, UD(OP_CONNECT, c->gen, c->idx));
    if (c->t)
        tls_open(w, c, k);
    else if (send)
        prep_send(w, c, k, 0);
}

/* -R: sends now if the intended time has come, else waits for it in the heap. */
static void rate_next(struct worker *w, struct conn *c)
{
    uint32_t k;

    if (c->due_ns > w->now) {
        if (!c->heap_pos)
            heap_push(w, c);
        return;
    }
    k = take_batch(w);
    if (k)
        prep_send(w, c, k, 0);
}

/* The connection has nothing in flight: give it its next batch (reopening it if asked). */
static void conn_next(struct worker *w, struct conn *c, bool reopen)
{
    uint32_t k;

    if (stopping(w) || (w->quota && w->issued >= w->quota)) {
        if (reopen)
            conn_shut(w, c);
        return;
    }
    if (reopen && (w->o->rate > 0 || w->o->ws)) {
        conn_open(w, c, 0); /* the connect's completion (--ws: the 101) schedules the first */
        return;
    }
    if (w->o->rate > 0) {
        rate_next(w, c);
        return;
    }
    k = take_batch(w);
    if (reopen)
        conn_open(w, c, k);
    else
        prep_send(w, c, k, 0);
}

/* A socket error: count it, give up the requests in flight, reopen. */
static void conn_fail(struct worker *w, struct conn *c, int kind)
{
    w->st.err[kind]++;
    if (w->quota && c->inflight == 0 && w->issued < w->quota) {
        /* -R connects and --ws handshakes carry no request: charge the failed attempt as a
         * request issued and finished, or with every attempt failing -n never ends */
        w->issued++;
        w->finished++;
    }
    w->finished += c->inflight;
    c->inflight = 0;
    if (w->quota && w->finished > w->issued)
        w->finished = w->issued;
    heap_remove(w, c);
    conn_next(w, c, true);
}

static void on_response(struct worker *w, struct conn *c)
{
    uint64_t lat = w->now > c->sent_ns ? w->now - c->sent_ns : 0;
    unsigned cls = c->rs.status / 100;

    hist_record(&w->lat, (lat + 500) / 1000);
    w->st.responses++;
    if (!w->o->ws)
        w->st.cls[cls < 6 ? cls : 0]++;
    w->finished++;
    c->inflight--;
    if (w->o->rate > 0)
        c->due_ns += w->interval_ns;
}

/* The 101 is in: messages may go. Returns false when the upgrade was refused. */
static bool ws_upgraded(struct worker *w, struct conn *c)
{
    if (!c->rs.ws_ok) {
        conn_fail(w, c, ERR_UPGRADE);
        return false;
    }
    c->ws = WS_OPEN;
    w->st.upgrades++;
    conn_next(w, c, false);
    return true;
}

/* --ws: bytes of one receive; returns false when the connection was failed or reopened. */
static bool ws_input(struct worker *w, struct conn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t used;
        bool done;
        int ev;

        if (c->ws == WS_HS) {
            used = resp_feed(&c->rs, p, n, H1_M_GET, &done);
            if (used < 0) {
                conn_fail(w, c, ERR_UPGRADE);
                return false;
            }
            p += used;
            n -= (size_t)used;
            if (done && !ws_upgraded(w, c))
                return false;
            continue;
        }
        if (c->inflight == 0) {
            conn_fail(w, c, ERR_READ); /* bytes nobody asked for */
            return false;
        }
        used = ws_feed(&c->wr, p, n, w->sh->payload, w->o->ws_size, &ev);
        if (used < 0 || ev == WS_EV_CLOSE) {
            conn_fail(w, c, ERR_READ); /* a bad echo, or closed with a message in flight */
            return false;
        }
        p += used;
        n -= (size_t)used;
        if (ev != WS_EV_MESSAGE)
            continue;
        on_response(w, c);
        if (c->inflight == 0)
            conn_next(w, c, false);
    }
    return true;
}

/* Bytes of one receive; returns false when the connection was failed or reopened. */
static bool conn_input(struct worker *w, struct conn *c, const char *p, size_t n)
{
    enum h1_method m = w->o->method_id;

    if (w->o->ws)
        return ws_input(w, c, p, n);
    while (n) {
        bool done;
        ssize_t used;

        if (c->inflight == 0) {
            conn_fail(w, c, ERR_READ); /* bytes nobody asked for */
            return false;
        }
        used = resp_feed(&c->rs, p, n, m, &done);
        if (used < 0) {
            conn_fail(w, c, ERR_READ);
            return false;
        }
        p += used;
        n -= (size_t)used;
        if (!done)
            continue;
        on_response(w, c);
        if (!c->rs.keep_alive || w->o->close) {
            if (c->inflight) {
                conn_fail(w, c, ERR_READ); /* closing with pipelined requests unanswered */
                return false;
            }
            conn_next(w, c, true);
            return false;
        }
        if (c->inflight == 0)
            conn_next(w, c, false);
    }
    return true;
}

static void on_eof(struct worker *w, struct conn *c)
{
    if (c->ws) {
        if (c->ws == WS_HS || c->inflight || c->wr.hlen) {
            conn_fail(w, c, c->ws == WS_HS ? ERR_UPGRADE : ERR_READ);
            return;
        }
        heap_remove(w, c); /* closed between messages: reopen quietly */
        conn_next(w, c, true);
        return;
    }
    if (resp_eof(&c->rs)) {
        on_response(w, c);
        if (c->inflight) {
            conn_fail(w, c, ERR_READ);
            return;
        }
        conn_next(w, c, true);
        return;
    }
    if (c->inflight || !resp_idle(&c->rs)) {
        conn_fail(w, c, ERR_READ);
        return;
    }
    heap_remove(w, c); /* an idle keep-alive connection closed: reopen quietly */
    conn_next(w, c, true);
}

static void buf_return(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(w->nbufs), (int)w->buf_added++);
}

static void on_recv(struct worker *w, struct conn *c, const struct io_uring_cqe *cqe, bool live)
{
    int res = cqe->res;
    uint32_t gen = c->gen;

    if (live && !(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

        if (live && res > 0) {
            w->st.bytes += (uint64_t)res;
            if (!c->t)
                conn_input(w, c, w->bufs + (size_t)bid * BUF_SIZE, (size_t)res);
            else
                tls_input(w, c, w->bufs + (size_t)bid * BUF_SIZE, (size_t)res);
        }
        buf_return(w, bid);
    }
    if (!live)
        return;
    if (res == 0 || (res < 0 && res != -ENOBUFS && res != -ECANCELED)) {
        if (c->t && !tls_done(c))
            conn_fail(w, c, ERR_CONNECT); /* the peer gave up on the handshake */
        else if (res == 0)
            on_eof(w, c);
        else
            conn_fail(w, c, ERR_READ);
    }
    if (c->gen == gen && c->open && c->connected && !c->recv_armed)
        arm_recv(w, c);
}

static void handle_cqe(struct worker *w, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    struct conn *c;
    bool live;

    if (!ud) {
        return;
    }
    c = &w->conns[UD_IDX(ud)];
    live = c->open && UD_GEN(ud) == (c->gen & 0xfffffffu);
    switch (UD_OP(ud)) {
    case OP_SOCKET:
        if (live)
            conn_fail(w, c, ERR_CONNECT);
        break;
    case OP_CONNECT:
        if (!live || cqe->res == -ECANCELED)
            break;
        if (cqe->res < 0) {
            conn_fail(w, c, ERR_CONNECT);
            break;
        }
        c->connected = true;
        arm_recv(w, c);
        if (w->o->rate > 0 && c->inflight == 0 && c->ws != WS_HS)
            conn_next(w, c, false);
        break;
    case OP_SEND:
        if (live && cqe->res != -ECANCELED)
            conn_fail(w, c, ERR_WRITE);
        break;
    case OP_RECV:
        on_recv(w, c, cqe, live);
        break;
    case OP_TSEND:
        if (live && cqe->res != -ECANCELED)
            on_tls_send(w, c, cqe->res);
        break;
    default:
        break;
    }
}

/* ---------------------------------------------------------------- the worker loop */

static void check_timeouts(struct worker *w)
{
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];

        if (c->open && (c->inflight || !c->connected || (c->t && !tls_done(c)) || c->ws == WS_HS) &&
            w->now - c->io_ns > w->o->timeout_ns)
            conn_fail(w, c, ERR_TIMEOUT);
    }
}

static void publish(struct worker *w)
{
    uint64_t errs = 0;

    for (int k = 0; k < ERR_KINDS; k++)
        errs += w->st.err[k];
    atomic_store_explicit(&w->pub_responses, w->st.responses, memory_order_relaxed);
    atomic_store_explicit(&w->pub_errors, errs, memory_order_relaxed);
    if (w->now >= w->next_pub) {
        atomic_store_explicit(&w->pub_p99, hist_percentile(&w->lat, 99), memory_order_relaxed);
        w->next_pub = w->now + 1000000000ULL;
    }
}

static bool run_done(struct worker *w)
{
    if (atomic_load_explicit(&w->sh->stop, memory_order_relaxed))
        return true;
    if (w->end_ns && w->now >= w->end_ns)
        return true;
    return w->quota && w->finished >= w->quota;
}

static void start_conns(struct worker *w)
{
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];

        if (w->o->rate > 0) {
            /* stagger the connections' schedules evenly over one interval */
            c->due_ns = w->sh->start_ns + (uint64_t)((double)(w->first + i) * 1e9 / w->o->rate);
        }
        conn_next(w, c, true);
    }
}

static void worker_loop(struct worker *w)
{
    w->now = clock_ns();
    w->next_tick = w->now + TICK_NS;
    start_conns(w);
    while (!run_done(w)) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts;
        unsigned head, n = 0;
        uint64_t wake = w->next_tick;
        int ret;

        if (w->end_ns && w->end_ns < wake)
            wake = w->end_ns;
        if (w->heap_len && w->heap[0]->due_ns < wake)
            wake = w->heap[0]->due_ns;
        wake = wake > w->now ? wake - w->now : 0;
        ts.tv_sec = (long long)(wake / 1000000000ULL);
        ts.tv_nsec = (long long)(wake % 1000000000ULL);
        ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            w->err = ret;
            w->err_what = "io_uring_submit_and_wait";
            break;
        }
        /* one clock read per batch: the time these completions were reaped */
        w->now = clock_ns();
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            handle_cqe(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        if (w->buf_added) {
            io_uring_buf_ring_advance(w->br, (int)w->buf_added);
            w->buf_added = 0;
        }
        while (w->heap_len && w->heap[0]->due_ns <= w->now) {
            struct conn *c = w->heap[0];

            heap_remove(w, c);
            rate_next(w, c);
        }
        if (w->now >= w->next_tick) {
            check_timeouts(w);
            publish(w);
            w->next_tick = w->now + TICK_NS;
        }
    }
    w->stop_ns = w->now;
    publish(w);
}

static unsigned pow2_at_least(unsigned v)
{
    unsigned p = 1;

    while (p < v)
        p <<= 1;
    return p;
}

static int worker_init(struct worker *w)
{
    struct io_uring_params p;
    unsigned entries = pow2_at_least(w->nconns * 4 < 256 ? 256 : w->nconns * 4);
    int ret;

    if (entries > 32768)
        entries = 32768;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = entries * 4;
    ret = io_uring_queue_init_params(entries, &w->ring, &p);
    if (ret < 0) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
        p.cq_entries = entries * 4;
        ret = io_uring_queue_init_params(entries, &w->ring, &p);
    }
    if (ret < 0) {
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        ret = io_uring_queue_init_params(entries, &w->ring, &p);
    }
    if (ret < 0)
        return w->err_what = "io_uring_queue_init", ret;
    w->ring_ok = true;
    if (w->sh->tls && !(w->ptext = malloc(PTEXT_SIZE)))
        return w->err_what = "TLS buffer", -ENOMEM;
    io_uring_register_ring_fd(&w->ring); /* optional: saves a file lookup per enter */
    ret = io_uring_register_files_sparse(&w->ring, w->nconns);
    if (ret < 0)
        return w->err_what = "io_uring_register_files_sparse", ret;
    w->nbufs = pow2_at_least(w->nconns * 2 < 256 ? 256 : w->nconns * 2);
    if (w->nbufs > 4096)
        w->nbufs = 4096;
    ret = bufring_setup(&w->ring, w->nbufs, BUF_SIZE, BGID, false, &w->br, &w->bufs);
    if (ret)
        return w->err_what = "provided buffer ring", ret;
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;

    w->err = worker_init(w);
    pthread_barrier_wait(&sh->ready);
    /* with fewer requests (-n) than threads, a thread may have nothing to do */
    if (!w->err && !atomic_load(&sh->stop) && !(sh->o->count && !w->quota)) {
        if (sh->o->duration_ns)
            w->end_ns = sh->start_ns + sh->o->duration_ns;
        worker_loop(w);
    }
    if (!w->stop_ns)
        w->stop_ns = clock_ns();
    if (w->ring_ok)
        io_uring_queue_exit(&w->ring); /* cancels what is in flight, closes the slots */
    w->ring_ok = false;
    if (sh->tls) {
        for (uint32_t i = 0; i < w->nconns; i++)
            if (w->conns[i].t)
                tls_drop(&w->conns[i]);
        tls_thread_exit();
    }
    atomic_fetch_sub(&sh->running, 1);
    return NULL;
}

/* ---------------------------------------------------------------- reporting */

static void fmt_us(char *out, size_t cap, double us)
{
    if (us < 1000)
        snprintf(out, cap, "%.2fus", us);
    else if (us < 1e6)
        snprintf(out, cap, "%.2fms", us / 1e3);
    else
        snprintf(out, cap, "%.2fs", us / 1e6);
}

static void fmt_duration(char *out, size_t cap, uint64_t ns)
{
    if (ns % 60000000000ULL == 0)
        snprintf(out, cap, "%llum", (unsigned long long)(ns / 60000000000ULL));
    else if (ns % 1000000000ULL == 0)
        snprintf(out, cap, "%llus", (unsigned long long)(ns / 1000000000ULL));
    else
        fmt_us(out, cap, (double)ns / 1e3);
}

static void fmt_bytes(char *out, size_t cap, double b)
{
    static const char *units[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;

    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, cap, "%.2f%s", b, units[i]);
}

static const double pcts[] = {50, 75, 90, 99, 99.9, 99.99};
static const char *const pct_names[] = {"50%", "75%", "90%", "99%", "99.9%", "99.99%"};
static const char *const pct_keys[] = {"p50", "p75", "p90", "p99", "p999", "p9999"};

static uint64_t total_errors(const struct stats *st)
{
    uint64_t n = 0;

    for (int k = 0; k < ERR_KINDS; k++)
        n += st->err[k];
    return n;
}

static void report_text(const struct opts *o, const struct stats *st, const struct hist *h,
                        double secs)
{
    char a[32], b[32], c[32];
    uint64_t non = st->cls[0] + st->cls[1] + st->cls[4] + st->cls[5];
    uint64_t errs = total_errors(st);

    fmt_us(a, sizeof(a), hist_mean(h));
    fmt_us(b, sizeof(b), hist_stdev(h));
    fmt_us(c, sizeof(c), (double)hist_max(h));
    printf("  %-12s%10s%10s%10s\n", "", "Avg", "Stdev", "Max");
    printf("  %-12s%10s%10s%10s\n", o->rate > 0 ? "Latency (CO)" : "Latency", a, b, c);
    if (o->latency) {
        printf("  Latency Distribution\n");
        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
            fmt_us(a, sizeof(a), (double)hist_percentile(h, pcts[i]));
            printf("  %7s %10s\n", pct_names[i], a);
        }
    }
    fmt_bytes(a, sizeof(a), (double)st->bytes);
    if (o->ws)
        printf("  %llu messages of %llu bytes in %.2fs over %llu upgrades, %s read\n",
               (unsigned long long)st->responses, (unsigned long long)o->ws_size, secs,
               (unsigned long long)st->upgrades, a);
    else
        printf("  %llu requests in %.2fs, %s read\n", (unsigned long long)st->responses, secs, a);
    if (non)
        printf("  Non-2xx or 3xx responses: %llu (1xx/other %llu, 4xx %llu, 5xx %llu)\n",
               (unsigned long long)non, (unsigned long long)(st->cls[0] + st->cls[1]),
               (unsigned long long)st->cls[4], (unsigned long long)st->cls[5]);
    if (errs) {
        printf("  Socket errors: connect %llu, read %llu, write %llu, timeout %llu",
               (unsigned long long)st->err[ERR_CONNECT], (unsigned long long)st->err[ERR_READ],
               (unsigned long long)st->err[ERR_WRITE], (unsigned long long)st->err[ERR_TIMEOUT]);
        if (o->ws)
            printf(", upgrade %llu", (unsigned long long)st->err[ERR_UPGRADE]);
        printf("\n");
    }
    printf("%s %10.2f\n", o->ws ? "Messages/sec:" : "Requests/sec:",
           secs > 0 ? (double)st->responses / secs : 0.0);
    fmt_bytes(a, sizeof(a), secs > 0 ? (double)st->bytes / secs : 0.0);
    printf("Transfer/sec: %10s\n", a);
    if (errs)
        printf("ringload: the run saw %llu socket errors\n", (unsigned long long)errs);
}

static void report_json_latency(const struct hist *h)
{
    printf("\"latency_us\":{\"mean\":%.1f,\"stdev\":%.1f", hist_mean(h), hist_stdev(h));
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
        printf(",\"%s\":%llu", pct_keys[i], (unsigned long long)hist_percentile(h, pcts[i]));
    printf(",\"max\":%llu}", (unsigned long long)hist_max(h));
}

static void report_json_errors(const struct stats *st, bool ws)
{
    printf("\"errors\":{\"connect\":%llu,\"read\":%llu,\"write\":%llu,\"timeout\":%llu",
           (unsigned long long)st->err[ERR_CONNECT], (unsigned long long)st->err[ERR_READ],
           (unsigned long long)st->err[ERR_WRITE], (unsigned long long)st->err[ERR_TIMEOUT]);
    if (ws)
        printf(",\"upgrade\":%llu", (unsigned long long)st->err[ERR_UPGRADE]);
    printf("}");
}

/* One JSON object. With --ws "messages" (and "mps") replace "requests" (and "rps"), and there
 * are no statuses: an upgrade not answered by a good 101 is an "upgrade" error. */
static void report_json(const struct opts *o, const struct stats *st, const struct hist *h,
                        double secs)
{
    double rate = secs > 0 ? (double)st->responses / secs : 0.0;

    if (o->ws)
        printf("{\"mode\":\"websocket\",\"message_bytes\":%llu,\"messages\":%llu,\"upgrades\":%llu,"
               "\"duration_s\":%.3f,\"mps\":%.2f,\"bytes\":%llu,",
               (unsigned long long)o->ws_size, (unsigned long long)st->responses,
               (unsigned long long)st->upgrades, secs, rate, (unsigned long long)st->bytes);
    else
        printf("{\"requests\":%llu,\"duration_s\":%.3f,\"rps\":%.2f,\"bytes\":%llu,",
               (unsigned long long)st->responses, secs, rate, (unsigned long long)st->bytes);
    report_json_latency(h);
    if (!o->ws)
        printf(",\"status\":{\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu,\"other\":%llu}",
               (unsigned long long)st->cls[2], (unsigned long long)st->cls[3],
               (unsigned long long)st->cls[4], (unsigned long long)st->cls[5],
               (unsigned long long)(st->cls[0] + st->cls[1]));
    printf(",");
    report_json_errors(st, o->ws);
    printf("}\n");
}

/* ---------------------------------------------------------------- start-up */

static int resolve(struct shared *sh, const struct url *u)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int ret = getaddrinfo(u->host, u->port, &hints, &res);

    if (ret) {
        fprintf(stderr, "ringload: cannot resolve %s: %s\n", u->host, gai_strerror(ret));
        return -1;
    }
    memcpy(&sh->addr, res->ai_addr, res->ai_addrlen);
    sh->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* --ws: the message (random bytes) and its frames, each masked with another random key. A few
 * copies are enough for the masks to vary from message to message on a connection. */
static int make_frames(struct shared *sh, const struct opts *o)
{
    uint64_t rng = rng_seed(0), v;
    size_t head = o->ws_size < 126 ? 6 : o->ws_size < 65536 ? 8 : 14;

    sh->key_off = sh->req_len - 4 - WS_KEY_LEN;
    sh->frame_len = head + (size_t)o->ws_size;
    sh->nframes = (unsigned)(WS_FRAMES_BYTES / sh->frame_len);
    sh->nframes = sh->nframes < 1 ? 1 : sh->nframes > 16 ? 16 : sh->nframes;
    sh->payload = malloc(o->ws_size ? (size_t)o->ws_size : 1);
    sh->frames = malloc(sh->frame_len * sh->nframes);
    if (!sh->payload || !sh->frames)
        return -1;
    for (size_t i = 0; i < o->ws_size; i += sizeof(v)) {
        v = rng_next(&rng);
        memcpy(sh->payload + i, &v, o->ws_size - i < sizeof(v) ? o->ws_size - i : sizeof(v));
    }
    for (unsigned f = 0; f < sh->nframes; f++) {
        unsigned char *fr = (unsigned char *)sh->frames + f * sh->frame_len, mask[4];

        v = rng_next(&rng);
        memcpy(mask, &v, 4);
        ws_frame_head(fr, 2, o->ws_size, mask);
        ws_mask((char *)fr + head, sh->payload, (size_t)o->ws_size, mask, 0);
    }
    return 0;
}

/* Builds `pipeline` copies of the request, once, shared read-only by every connection. */
static int make_request(struct shared *sh, const struct opts *o)
{
    char *body = NULL;
    size_t body_len = 0, one;

    if (o->body_file) {
        body = read_file(o->body_file, &body_len);
        if (!body) {
            fprintf(stderr, "ringload: cannot read --body %s: %s\n", o->body_file,
                    strerror(errno ? errno : EIO));
            return -1;
        }
    }
    one = build_request(o, body, body_len, NULL);
    sh->req = malloc(one * o->pipeline);
    if (!sh->req) {
        free(body);
        return -1;
    }
    for (uint32_t i = 0; i < o->pipeline; i++)
        build_request(o, body, body_len, sh->req + i * one);
    sh->req_len = one;
    free(body);
    return o->ws ? make_frames(sh, o) : 0;
}

/* --ws: each connection's copy of the upgrade request (ws_begin writes its key). */
static int ws_setup(struct worker *w, uint32_t salt)
{
    const struct shared *sh = w->sh;

    w->rng = rng_seed(salt + 1);
    w->wsreq = malloc((size_t)w->nconns * sh->req_len);
    if (!w->wsreq)
        return -1;
    for (uint32_t k = 0; k < w->nconns; k++)
        memcpy(w->wsreq + (size_t)k * sh->req_len, sh->req, sh->req_len);
    return 0;
}

static int setup_workers(struct worker *ws, struct shared *sh, const struct opts *o)
{
    uint32_t first = 0;

    for (uint32_t i = 0; i < o->threads; i++) {
        struct worker *w = &ws[i];

        w->sh = sh;
        w->o = o;
        w->nconns = o->conns / o->threads + (i < o->conns % o->threads);
        w->first = first;
        first += w->nconns;
        if (o->count)
            w->quota = o->count / o->threads + (i < o->count % o->threads);
        if (o->rate > 0)
            w->interval_ns = (uint64_t)((double)o->conns * 1e9 / o->rate);
        w->conns = calloc(w->nconns, sizeof(*w->conns));
        w->heap = calloc(w->nconns, sizeof(*w->heap));
        w->hslab = malloc((size_t)w->nconns * HEAD_MAX);
        if (!w->conns || !w->heap || !w->hslab)
            return -1;
        if (o->ws && ws_setup(w, i))
            return -1;
        if (sh->tls && !(w->tslab = calloc(w->nconns, sizeof(*w->tslab))))
            return -1;
        for (uint32_t k = 0; k < w->nconns; k++) {
            w->conns[k].idx = k;
            w->conns[k].rs.hbuf = w->hslab + (size_t)k * HEAD_MAX;
            if (w->tslab)
                w->conns[k].t = &w->tslab[k];
        }
        hist_init(&w->lat);
    }
    return 0;
}

static void progress(struct worker *ws, const struct opts *o, uint64_t *last, uint64_t t0,
                     uint64_t now)
{
    uint64_t resp = 0, errs = 0, p99 = 0;
    char a[32];

    for (uint32_t i = 0; i < o->threads; i++) {
        uint64_t p = atomic_load_explicit(&ws[i].pub_p99, memory_order_relaxed);

        resp += atomic_load_explicit(&ws[i].pub_responses, memory_order_relaxed);
        errs += atomic_load_explicit(&ws[i].pub_errors, memory_order_relaxed);
        p99 = p > p99 ? p : p99;
    }
    fmt_us(a, sizeof(a), (double)p99);
    fprintf(stderr, "  %5.0fs  %10llu %s  errors %llu  p99 %s\n", (double)(now - t0) / 1e9,
            (unsigned long long)(resp - *last), o->ws ? "msg/s" : "req/s", (unsigned long long)errs,
            a);
    *last = resp;
}

/* Waits for the workers, printing progress once a second when asked; SIGINT/SIGTERM stop the
 * run early (the results so far are reported). */
static void supervise(struct worker *ws, struct shared *sh, const struct opts *o, bool show)
{
    sigset_t set;
    struct timespec tick = {0, 50000000};
    uint64_t last = 0, next = sh->start_ns + 1000000000ULL;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (atomic_load(&sh->running)) {
        uint64_t now;

        if (sigtimedwait(&set, NULL, &tick) > 0)
            atomic_store(&sh->stop, true);
        now = clock_ns();
        if (show && now >= next && atomic_load(&sh->running)) {
            progress(ws, o, &last, sh->start_ns, now);
            next += 1000000000ULL;
        }
    }
}

static int run(const struct opts *o)
{
    struct shared sh = {.o = o};
    struct worker *ws = calloc(o->threads, sizeof(*ws));
    struct stats st = {0};
    struct hist *lat = malloc(sizeof(*lat));
    uint64_t stop = 0;
    uint32_t started = 0;
    sigset_t set;
    int ret = 1, failed = 0;

    if (o->url.tls) {
        char err[256] = "";

        if (tls_global_init() < 0 ||
            !(sh.tls = tls_client_new(NULL, !o->insecure, err, sizeof(err)))) {
            fprintf(stderr, "ringload: TLS: %s\n", *err ? err : "cannot initialise wolfSSL");
            goto out;
        }
    }
    if (!ws || !lat || resolve(&sh, &o->url) || make_request(&sh, o) || setup_workers(ws, &sh, o)) {
        if (ws && lat)
            fprintf(stderr, "ringload: start-up failed\n");
        goto out;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_barrier_init(&sh.ready, NULL, o->threads + 1);
    atomic_store(&sh.running, o->threads);
    for (; started < o->threads; started++)
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]))
            break;
    if (started < o->threads) {
        fprintf(stderr, "ringload: cannot start threads\n");
        exit(1); /* the barrier can never be reached */
    }
    if (!o->json) {
        char d[32];

        fmt_duration(d, sizeof(d), o->duration_ns);
        printf("Running %s test @ %s\n  %u threads and %u connections", o->duration_ns ? d : "-n",
               o->url_text, o->threads, o->conns);
        if (o->ws)
            printf(", WebSocket messages of %llu bytes", (unsigned long long)o->ws_size);
        if (o->count)
            printf(", %llu %s", (unsigned long long)o->count, o->ws ? "messages" : "requests");
        if (o->rate > 0)
            printf(", %.0f %s/s", o->rate, o->ws ? "messages" : "requests");
        printf("\n");
        fflush(stdout);
    }
    sh.start_ns = clock_ns();
    pthread_barrier_wait(&sh.ready);
    for (uint32_t i = 0; i < o->threads; i++) {
        if (ws[i].err) {
            fprintf(stderr, "ringload: %s: %s\n", ws[i].err_what, strerror(-ws[i].err));
            failed = 1;
        }
    }
    if (failed)
        atomic_store(&sh.stop, true);
    supervise(ws, &sh, o, !failed && !o->json && isatty(2));
    hist_init(lat);
    for (uint32_t i = 0; i < o->threads; i++) {
        struct worker *w = &ws[i];

        pthread_join(w->tid, NULL);
        if (w->err && !failed) {
            fprintf(stderr, "ringload: %s: %s\n", w->err_what, strerror(-w->err));
            failed = 1;
        }
        hist_merge(lat, &w->lat);
        st.responses += w->st.responses;
        st.bytes += w->st.bytes;
        st.upgrades += w->st.upgrades;
        for (int k = 0; k < 6; k++)
            st.cls[k] += w->st.cls[k];
        for (int k = 0; k < ERR_KINDS; k++)
            st.err[k] += w->st.err[k];
        stop = w->stop_ns > stop ? w->stop_ns : stop;
    }
    pthread_barrier_destroy(&sh.ready);
    if (!failed) {
        double secs = stop > sh.start_ns ? (double)(stop - sh.start_ns) / 1e9 : 0.0;

        if (o->json)
            report_json(o, &st, lat, secs);
        else
            report_text(o, &st, lat, secs);
        if (o->json && total_errors(&st))
            fprintf(stderr, "ringload: the run saw socket errors\n");
        ret = total_errors(&st) != 0;
    }
out:
    for (uint32_t i = 0; ws && i < o->threads; i++) {
        bufring_free(NULL, ws[i].br, BGID, ws[i].bufs); /* the ring's exit unregistered it */
        free(ws[i].conns);
        free(ws[i].heap);
        free(ws[i].hslab);
        free(ws[i].wsreq);
        free(ws[i].ptext);
        for (uint32_t k = 0; ws[i].tslab && k < ws[i].nconns; k++) {
            free(ws[i].tslab[k].q);
            free(ws[i].tslab[k].f);
        }
        free(ws[i].tslab);
    }
    free(ws);
    free(lat);
    free(sh.req);
    free(sh.payload);
    free(sh.frames);
    if (sh.tls)
        tls_ctx_free(sh.tls);
    return ret;
}

#ifndef RINGLOAD_NO_MAIN
int main(int argc, char **argv)
{
    struct opts *o = malloc(sizeof(*o));
    struct rlimit rl;
    int ret;

    if (!o) {
        fprintf(stderr, "ringload: out of memory\n");
        return 1;
    }
    ret = parse_args(o, argc, argv);
    if (ret >= 0) {
        free(o);
        return ret;
    }
    signal(SIGPIPE, SIG_IGN);
    /* the fixed-file table of each ring is bounded by RLIMIT_NOFILE */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ret = run(o);
    free(o);
    return ret;
}
#endif

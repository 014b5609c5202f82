/* h1.c: the HTTP/1.1 wire parsers of h1.h: request heads (strict: every ambiguity a backend
 * could read differently is refused), response heads (tolerant where it costs nothing), and the
 * incremental chunked-body decoder. Parsers are stateless over the buffered bytes and re-run
 * from the start when more arrive; only the chunked decoder keeps state, in the caller's struct.
 */
#include "h1.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "util.h"

/* Character classes, one table lookup per byte on the hot path. */
enum {
    C_TCHAR = 1 << 0,  /* token: RFC 9110 tchar */
    C_VALUE = 1 << 1,  /* field-value byte: VCHAR, SP, HTAB, obs-text */
    C_TARGET = 1 << 2, /* request-target byte: VCHAR only */
    C_HOST = 1 << 3,   /* reg-name byte: unreserved, sub-delims, '%' */
    C_HEX = 1 << 4,
    C_DIGIT = 1 << 5,
};

#define IS_ALPHA(c) (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_HOSTSPECIAL(c)                                                                          \
    ((c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '!' || (c) == '$' ||           \
     (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' || (c) == '+' ||          \
     (c) == ',' || (c) == ';' || (c) == '=' || (c) == '%')
#define CLS(c)                                                                                     \
    ((HTTP_TCHAR(c) ? C_TCHAR : 0) |                                                               \
     (((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f)) ? C_VALUE : 0) |                               \
     (((c) > 0x20 && (c) < 0x7f) ? C_TARGET : 0) |                                                 \
     ((IS_ALPHA(c) || IS_DIGIT(c) || IS_HOSTSPECIAL(c)) ? C_HOST : 0) |                            \
     ((IS_DIGIT(c) || (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'f')) ? C_HEX : 0) |                 \
     (IS_DIGIT(c) ? C_DIGIT : 0))

#define R4(f, c) f(c), f((c) + 1), f((c) + 2), f((c) + 3)
#define R16(f, c) R4(f, c), R4(f, (c) + 4), R4(f, (c) + 8), R4(f, (c) + 12)
#define R64(f, c) R16(f, c), R16(f, (c) + 16), R16(f, (c) + 32), R16(f, (c) + 48)
#define R256(f) R64(f, 0), R64(f, 64), R64(f, 128), R64(f, 192)

static const uint8_t cls[256] = {R256(CLS)};

/* Leading empty lines skipped before a request-line (RFC 9112 2.2 asks for at least one). */
#define MAX_LEADING_EMPTY 4
#define CHUNK_LINE_MAX 4096
#define TRAILER_MAX 16384

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

bool h1_span_ieq(const char *s, size_t n, const char *lower)
{
    return span_ieq(s, n, lower);
}

static uint8_t hdr_kind(const char *n, size_t len)
{
    switch (len) {
    case 2:
        return mem_ieq(n, "te", 2) ? H1_H_TE : H1_H_OTHER;
    case 4:
        return mem_ieq(n, "host", 4) ? H1_H_HOST : H1_H_OTHER;
    case 6:
        return mem_ieq(n, "expect", 6) ? H1_H_EXPECT : H1_H_OTHER;
    case 7:
        if (mem_ieq(n, "trailer", 7))
            return H1_H_TRAILER;
        return mem_ieq(n, "upgrade", 7) ? H1_H_UPGRADE : H1_H_OTHER;
    case 10:
        if (mem_ieq(n, "connection", 10))
            return H1_H_CONNECTION;
        return mem_ieq(n, "keep-alive", 10) ? H1_H_KEEP_ALIVE : H1_H_OTHER;
    case 14:
        return mem_ieq(n, "content-length", 14) ? H1_H_CONTENT_LENGTH : H1_H_OTHER;
    case 15:
        return mem_ieq(n, "x-forwarded-for", 15) ? H1_H_X_FORWARDED_FOR : H1_H_OTHER;
    case 16:
        if (mem_ieq(n, "proxy-connection", 16))
            return H1_H_PROXY_CONNECTION;
        return mem_ieq(n, "x-forwarded-host", 16) ? H1_H_X_FORWARDED_HOST : H1_H_OTHER;
    case 17:
        if (mem_ieq(n, "transfer-encoding", 17))
            return H1_H_TRANSFER_ENCODING;
        return mem_ieq(n, "x-forwarded-proto", 17) ? H1_H_X_FORWARDED_PROTO : H1_H_OTHER;
    default:
        return H1_H_OTHER;
    }
}

uint8_t h1_header_kind(const char *name, size_t len)
{
    return hdr_kind(name, len);
}

static bool kind_is_hop(uint8_t kind)
{
    switch (kind) {
    case H1_H_CONNECTION:
    case H1_H_KEEP_ALIVE:
    case H1_H_PROXY_CONNECTION:
    case H1_H_TE:
    case H1_H_TRAILER:
    case H1_H_TRANSFER_ENCODING:
    case H1_H_UPGRADE:
        return true;
    default:
        return false;
    }
}

static uint8_t method_id(const char *m, size_t n)
{
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
    switch (n) {
    case 3:
        if (!memcmp(m, "GET", 3))
            return H1_M_GET;
        return !memcmp(m, "PUT", 3) ? H1_M_PUT : H1_M_OTHER;
    case 4:
        if (!memcmp(m, "POST", 4))
            return H1_M_POST;
        return !memcmp(m, "HEAD", 4) ? H1_M_HEAD : H1_M_OTHER;
    case 5:
        if (!memcmp(m, "PATCH", 5))
            return H1_M_PATCH;
        return !memcmp(m, "TRACE", 5) ? H1_M_TRACE : H1_M_OTHER;
    case 6:
        return !memcmp(m, "DELETE", 6) ? H1_M_DELETE : H1_M_OTHER;
    case 7:
        if (!memcmp(m, "OPTIONS", 7))
            return H1_M_OPTIONS;
        return !memcmp(m, "CONNECT", 7) ? H1_M_CONNECT : H1_M_OTHER;
    default:
        return H1_M_OTHER;
    }
}

/* Skips bytes in [lo, 0x7e] eight at a time while it can: header values and targets are most
 * of a head's bytes. A byte below lo, DEL and bytes >= 0x80 set a high bit in the mask (a borrow
 * or carry only arises next to such a byte), so the fast path never passes a byte it should
 * not; the caller's table loop decides about HTAB and obs-text. */
static size_t skip_printable(const unsigned char *b, size_t p, size_t end, uint64_t lo)
{
    const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;

    while (end - p >= 8) {
        uint64_t x;

        memcpy(&x, b + p, 8);
        if (((x - lo * ones) | (x + ones) | x) & high)
            break;
        p += 8;
    }
    return p;
}

static size_t scan_value(const unsigned char *b, size_t p, size_t end)
{
    p = skip_printable(b, p, end, 0x20);
    while (p < end && (cls[b[p]] & C_VALUE))
        p++;
    return p;
}

/* Result of a line-end check at b[p]: length of the terminator (CRLF 2, bare LF 1), 0 if more
 * input is needed, -1 if malformed (a bare CR or any other byte). */
static int line_end(const unsigned char *b, size_t p, size_t end)
{
    if (b[p] == '\n')
        return 1;
    if (b[p] != '\r')
        return -1;
    if (p + 1 == end)
        return 0;
    return b[p + 1] == '\n' ? 2 : -1;
}

/* Parses field lines from b[p..end) through the empty line ending the head. Returns the offset
 * just past that line, -EAGAIN if `end` came first, or -EBADMSG with *status 400 or 431.
 * Errors are found in the order the bytes arrive, so a prefix of the input never reports an
 * error the whole input would not. */
static long parse_fields(const unsigned char *b, size_t p, size_t end, struct h1_header *h,
                         uint32_t max, uint32_t *n_out, int *status)
{
    uint32_t n = 0;

    *n_out = 0;
    for (;;) {
        size_t name, vs, ve;
        int t;

        if (p == end)
            return -EAGAIN;
        if (b[p] == '\r' || b[p] == '\n') {
            t = line_end(b, p, end);
            if (t == 0)
                return -EAGAIN;
            if (t < 0)
                goto bad;
            return (long)(p + (size_t)t);
        }
        if (n == max) {
            *status = 431;
            return -EBADMSG;
        }
        /* A line starting with SP/HTAB (obs-fold), a space before the colon or an empty name
         * all stop here: the name must be 1*tchar followed directly by ':'. */
        name = p;
        while (p < end && (cls[b[p]] & C_TCHAR))
            p++;
        if (p == end)
            return -EAGAIN;
        if (b[p] != ':' || p == name)
            goto bad;
        h[n].name = (const char *)b + name;
        h[n].name_len = (uint32_t)(p - name);
        p++;
        while (p < end && is_ows(b[p]))
            p++;
        vs = p;
        p = scan_value(b, p, end);
        if (p == end)
            return -EAGAIN;
        ve = p;
        t = line_end(b, p, end);
        if (t == 0)
            return -EAGAIN;
        if (t < 0)
            goto bad;
        p += (size_t)t;
        while (ve > vs && is_ows(b[ve - 1]))
            ve--;
        h[n].value = (const char *)b + vs;
        h[n].value_len = (uint32_t)(ve - vs);
        h[n].kind = hdr_kind(h[n].name, h[n].name_len);
        h[n].hop = kind_is_hop(h[n].kind);
        *n_out = ++n;
    }
bad:
    *status = 400;
    return -EBADMSG;
}

/* Next element of a comma-separated list in v[*i..n), OWS trimmed; false at the end. Empty
 * elements are returned too (as length 0) so callers can decide whether to tolerate them. */
static bool list_next(const char *v, size_t n, size_t *i, const char **el, size_t *el_len)
{
    size_t s, e;
    const char *comma;

    if (*i > n)
        return false;
    s = *i;
    comma = memchr(v + s, ',', n - s);
    e = comma ? (size_t)(comma - v) : n;
    *i = e + 1;
    while (s < e && is_ows((unsigned char)v[s]))
        s++;
    while (e > s && is_ows((unsigned char)v[e - 1]))
        e--;
    *el = v + s;
    *el_len = e - s;
    return true;
}

bool h1_list_has(const char *v, size_t n, const char *lower)
{
    size_t i = 0, len;
    const char *el;

    while (list_next(v, n, &i, &el, &len)) {
        const char *slash = memchr(el, '/', len); /* "websocket/13": the protocol's name */
        if (span_ieq(el, slash ? (size_t)(slash - el) : len, lower))
            return true;
    }
    return false;
}

/* Content-Length: a list of 1*DIGIT values, all equal (RFC 9110 8.6), below 2^63. Several
 * fields chain through have and val. Returns false if malformed or differing. */
static bool cl_merge(const char *v, size_t n, bool *have, uint64_t *val)
{
    size_t i = 0, len;
    const char *el;

    while (list_next(v, n, &i, &el, &len)) {
        uint64_t x = 0;

        if (!len)
            return false;
        for (size_t k = 0; k < len; k++) {
            unsigned d = (unsigned char)el[k] - '0';

            if (d > 9 || x > ((uint64_t)INT64_MAX - d) / 10)
                return false;
            x = x * 10 + d;
        }
        if (*have && x != *val)
            return false;
        *have = true;
        *val = x;
    }
    return true;
}

struct te_info {
    bool present;
    bool last_chunked; /* the final coding is chunked */
    bool other;        /* some coding other than chunked */
    uint32_t chunked;  /* times chunked appears */
};

static void te_merge(const char *v, size_t n, struct te_info *te)
{
    size_t i = 0, len;
    const char *el;

    te->present = true;
    while (list_next(v, n, &i, &el, &len)) {
        if (!len)
            continue;
        /* Only the bare token counts: "chunked;x=y" is some other coding to us. */
        te->last_chunked = span_ieq(el, len, "chunked");
        if (te->last_chunked)
            te->chunked++;
        else
            te->other = true;
    }
}

/* Connection tokens: sets *close / *ka and marks the fields the tokens name as hop-by-hop. */
static void connection_tokens(struct h1_header *h, uint32_t n, bool *close, bool *ka)
{
    for (uint32_t k = 0; k < n; k++) {
        size_t i = 0, len;
        const char *el;

        if (h[k].kind != H1_H_CONNECTION)
            continue;
        while (list_next(h[k].value, h[k].value_len, &i, &el, &len)) {
            if (!len)
                continue;
            if (span_ieq(el, len, "close"))
                *close = true;
            else if (span_ieq(el, len, "keep-alive"))
                *ka = true;
            for (uint32_t j = 0; j < n; j++)
                if (!h[j].hop && h[j].name_len == len && mem_ieq(h[j].name, el, len))
                    h[j].hop = true;
        }
    }
}

/* uri-host [ ":" port ] (RFC 3986 / RFC 9110 7.2), checked for plausibility rather than full
 * grammar: a bracketed IPv6 literal or reg-name bytes, then an optional port of 0-5 digits. */
static bool valid_host(const char *hs, size_t n, bool allow_empty, bool need_port)
{
    const unsigned char *s = (const unsigned char *)hs;
    size_t i = 0, digits;

    if (n == 0)
        return allow_empty;
    if (s[0] == '[') {
        for (i = 1; i < n && ((cls[s[i]] & C_HEX) || s[i] == ':' || s[i] == '.'); i++)
            ;
        if (i == 1 || i == n || s[i] != ']')
            return false;
        i++;
    } else {
        for (; i < n && (cls[s[i]] & C_HOST); i++)
            if (s[i] == '%' && (n - i < 3 || !(cls[s[i + 1]] & C_HEX) || !(cls[s[i + 2]] & C_HEX)))
                return false;
        if (i == 0)
            return false;
    }
    if (i == n)
        return !need_port;
    if (s[i++] != ':')
        return false;
    digits = n - i;
    if (digits > 5 || (need_port && digits == 0))
        return false;
    for (; i < n; i++)
        if (!(cls[s[i]] & C_DIGIT))
            return false;
    return true;
}

/* Parses "HTTP/" DIGIT "." DIGIT at b[*p]. Returns the major digit ('0'..'9') and stores the
 * minor (HTTP/1.2+ counts as 1), 0 if more input is needed, -1 if malformed. */
static int parse_version(const unsigned char *b, size_t *p, size_t end, uint8_t *minor)
{
    static const char proto[] = "HTTP/";
    size_t i = *p;
    int major;

    for (size_t k = 0; k < sizeof(proto) - 1; k++, i++) {
        if (i == end)
            return 0;
        if (b[i] != (unsigned char)proto[k])
            return -1;
    }
    if (i == end)
        return 0;
    if (!IS_DIGIT(b[i]))
        return -1;
    major = b[i++];
    if (i == end)
        return 0;
    if (b[i++] != '.')
        return -1;
    if (i == end)
        return 0;
    if (!IS_DIGIT(b[i]))
        return -1;
    *minor = b[i++] != '0';
    *p = i;
    return major;
}

/* Splits the request-target into path and host according to its form (RFC 9112 3.2).
 * Returns 0 or an HTTP status. */
static int target_form(struct h1_request *req)
{
    const char *t = req->target;
    uint32_t n = req->target_len;
    size_t skip = 0;

    if (t[0] == '/') {
        if (req->method_id == H1_M_CONNECT)
            return 400;
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (req->method_id != H1_M_OPTIONS)
            return 400;
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (req->method_id == H1_M_CONNECT) {
        /* authority-form has no path; `path` repeats it so that it is never NULL. */
        if (!valid_host(t, n, false, true))
            return 400;
        req->host = t;
        req->host_len = n;
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (n > 7 && mem_ieq(t, "http://", 7))
        skip = 7;
    else if (n > 8 && mem_ieq(t, "https://", 8))
        skip = 8;
    else
        return 400;
    {
        const char *auth = t + skip;
        const char *slash = memchr(auth, '/', n - skip);
        size_t alen = slash ? (size_t)(slash - auth) : n - skip;

        /* userinfo ('@') is refused by valid_host (RFC 9110 4.2.4); so is a query with no
         * path ("http://h?q"), which has no contiguous path span to hand back. */
        if (!valid_host(auth, alen, false, false))
            return 400;
        req->host = auth;
        req->host_len = (uint32_t)alen;
        if (slash) {
            req->path = slash;
            req->path_len = (uint32_t)(n - skip - alen);
        } else {
            req->path = "/";
            req->path_len = 1;
        }
    }
    return 0;
}

/* Header-level rules of DESIGN.md "HTTP/1.1 rules"; returns 0 or the status to answer. */
static int request_semantics(struct h1_request *req)
{
    struct h1_header *h = req->headers;
    struct te_info te = {0};
    const struct h1_header *host = NULL;
    bool have_cl = false, close = false, ka = false, expect_bad = false;
    uint64_t cl = 0;

    for (uint32_t k = 0; k < req->n_headers; k++) {
        switch (h[k].kind) {
        case H1_H_HOST:
            if (host || !valid_host(h[k].value, h[k].value_len, true, false))
                return 400;
            host = &h[k];
            break;
        case H1_H_CONTENT_LENGTH:
            if (!cl_merge(h[k].value, h[k].value_len, &have_cl, &cl))
                return 400;
            break;
        case H1_H_TRANSFER_ENCODING:
            te_merge(h[k].value, h[k].value_len, &te);
            break;
        case H1_H_EXPECT:
            /* RFC 9110 10.1.1: a 100-continue from an HTTP/1.0 client is ignored. */
            if (span_ieq(h[k].value, h[k].value_len, "100-continue"))
                req->expect_continue = req->minor == 1;
            else
                expect_bad = true;
            break;
        default:
            break;
        }
    }
    if (!host && req->minor == 1)
        return 400;
    if (host && !req->host) {
        req->host = host->value;
        req->host_len = host->value_len;
    }
    /* Framing errors (400) outrank 501 and 417, which are answers to well-framed requests. */
    if (te.present) {
        /* RFC 9112 6.1: TE in 1.0 or beside CL is how requests get smuggled. */
        if (req->minor == 0 || have_cl || !te.last_chunked || te.chunked > 1)
            return 400;
        if (te.other)
            return 501;
        req->body = H1_BODY_CHUNKED;
    } else if (have_cl) {
        req->content_length = cl;
        req->body = cl ? H1_BODY_LENGTH : H1_BODY_NONE;
    }
    /* A 417 request is well framed: keep_alive and body stay usable for skipping it. */
    connection_tokens(h, req->n_headers, &close, &ka);
    req->keep_alive = !close && (req->minor == 1 || ka);
    return expect_bad ? 417 : 0;
}

static void request_reset(struct h1_request *req)
{
    struct h1_header *h = req->headers;
    uint32_t cap = req->headers_cap;

    memset(req, 0, sizeof(*req));
    req->headers = h;
    req->headers_cap = cap;
}

int h1_parse_request(const char *buf, size_t len, struct h1_request *req,
                     const struct h1_limits *lim, int *status)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t limit = lim->max_head_bytes < INT_MAX ? lim->max_head_bytes : INT_MAX;
    size_t end = len < limit ? len : limit;
    size_t p = 0, line = 0, ms, ts;
    uint32_t max = lim->max_headers < req->headers_cap ? lim->max_headers : req->headers_cap;
    bool in_line = false;
    int st = 400, major, t;
    long r;

    request_reset(req);
    for (int empty = 0; p < end && (b[p] == '\r' || b[p] == '\n'); empty++) {
        if (empty == MAX_LEADING_EMPTY)
            goto bad;
        t = line_end(b, p, end);
        if (t == 0)
            goto more;
        if (t < 0)
            goto bad;
        p += (size_t)t;
    }

    /* request-line = method SP request-target SP HTTP-version CRLF */
    in_line = true;
    line = ms = p;
    while (p < end && (cls[b[p]] & C_TCHAR))
        p++;
    if (p == end)
        goto more;
    if (p == ms || b[p] != ' ')
        goto bad;
    req->method = (const char *)b + ms;
    req->method_len = (uint32_t)(p - ms);
    req->method_id = method_id(req->method, req->method_len);

    ts = ++p;
    p = skip_printable(b, p, end, 0x21);
    while (p < end && (cls[b[p]] & C_TARGET))
        p++;
    if (p - ts > lim->max_target_len) {
        st = 414;
        goto bad;
    }
    if (p == end)
        goto more;
    if (p == ts || b[p] != ' ')
        goto bad;
    req->target = (const char *)b + ts;
    req->target_len = (uint32_t)(p - ts);

    p++;
    major = parse_version(b, &p, end, &req->minor);
    if (major < 0)
        goto bad;
    if (major == 0 || p == end)
        goto more;
    t = line_end(b, p, end);
    if (t == 0)
        goto more;
    if (t < 0)
        goto bad;
    p += (size_t)t;
    in_line = false;
    if (major != '1') {
        st = 505;
        goto bad;
    }
    st = target_form(req);
    if (st)
        goto bad;

    r = parse_fields(b, p, end, req->headers, max, &req->n_headers, &st);
    if (r == -EAGAIN)
        goto more;
    if (r < 0)
        goto bad;
    req->head_len = (uint32_t)r;
    st = request_semantics(req);
    if (st)
        goto bad;
    return (int)r;

more:
    if (len < limit)
        return -EAGAIN;
    st = in_line && end - line > lim->max_target_len ? 414 : 431;
bad:
    if (status)
        *status = st;
    return -EBADMSG;
}

static int parse_status_line(const unsigned char *b, size_t end, struct h1_response *res,
                             size_t *pp)
{
    size_t p = 0;
    int major, t;

    major = parse_version(b, &p, end, &res->minor);
    if (major <= 0)
        return major;
    if (major != '1')
        return -1;
    if (p == end)
        return 0;
    if (b[p++] != ' ')
        return -1;
    res->status = 0;
    for (int k = 0; k < 3; k++, p++) {
        if (p == end)
            return 0;
        if (!IS_DIGIT(b[p]))
            return -1;
        res->status = (uint16_t)(res->status * 10 + (b[p] - '0'));
    }
    if (res->status < 100 || res->status > 599)
        return -1;
    if (p == end)
        return 0;
    /* The reason phrase and the SP before it are often missing; both are tolerated. */
    if (b[p] == ' ')
        p++;
    else if (b[p] != '\r' && b[p] != '\n')
        return -1;
    res->reason = (const char *)b + p;
    p = scan_value(b, p, end);
    if (p == end)
        return 0;
    res->reason_len = (uint32_t)(p - (size_t)(res->reason - (const char *)b));
    t = line_end(b, p, end);
    if (t <= 0)
        return t;
    *pp = p + (size_t)t;
    return 1;
}

static int response_semantics(struct h1_response *res, enum h1_method req_method)
{
    struct h1_header *h = res->headers;
    struct te_info te = {0};
    bool have_cl = false, cl_ok = true, close = false, ka = false, bodyless;
    uint64_t cl = 0;

    for (uint32_t k = 0; k < res->n_headers; k++) {
        if (h[k].kind == H1_H_CONTENT_LENGTH && cl_ok)
            cl_ok = cl_merge(h[k].value, h[k].value_len, &have_cl, &cl);
        else if (h[k].kind == H1_H_TRANSFER_ENCODING)
            te_merge(h[k].value, h[k].value_len, &te);
    }
    connection_tokens(h, res->n_headers, &close, &ka);
    res->keep_alive = !close && (res->minor == 1 || ka);
    /* RFC 9112 6.3: these never have a body, whatever the framing fields say; a 2xx to
     * CONNECT turns the connection into a tunnel. */
    bodyless = req_method == H1_M_HEAD || res->status < 200 || res->status == 204 ||
               res->status == 304 || (req_method == H1_M_CONNECT && res->status < 300);
    if (te.present) {
        /* TE overrides CL (RFC 9112 6.3 rule 3), so a bad CL beside it is not fatal, but the
         * connection is not reused after a message framed two ways or TE in HTTP/1.0. */
        if (have_cl || !cl_ok || res->minor == 0)
            res->keep_alive = false;
        if (bodyless)
            res->body = H1_BODY_NONE;
        else if (te.last_chunked)
            res->body = H1_BODY_CHUNKED;
        else {
            res->body = H1_BODY_UNTIL_CLOSE;
            res->keep_alive = false;
        }
        return 0;
    }
    if (!cl_ok)
        return -1;
    res->content_length = cl;
    res->has_length = have_cl;
    if (bodyless || (have_cl && cl == 0))
        res->body = H1_BODY_NONE;
    else if (have_cl)
        res->body = H1_BODY_LENGTH;
    else {
        res->body = H1_BODY_UNTIL_CLOSE;
        res->keep_alive = false;
    }
    return 0;
}

int h1_parse_response(const char *buf, size_t len, struct h1_response *res,
                      const struct h1_limits *lim, enum h1_method req_method)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t limit = lim->max_head_bytes < INT_MAX ? lim->max_head_bytes : INT_MAX;
    size_t end = len < limit ? len : limit;
    size_t p = 0;
    struct h1_header *h = res->headers;
    uint32_t cap = res->headers_cap;
    uint32_t max = lim->max_headers < cap ? lim->max_headers : cap;
    int st, t;
    long r;

    memset(res, 0, sizeof(*res));
    res->headers = h;
    res->headers_cap = cap;
    t = parse_status_line(b, end, res, &p);
    if (t == 0)
        goto more;
    if (t < 0)
        return -EBADMSG;
    r = parse_fields(b, p, end, h, max, &res->n_headers, &st);
    if (r == -EAGAIN)
        goto more;
    if (r < 0)
        return -EBADMSG;
    res->head_len = (uint32_t)r;
    if (response_semantics(res, req_method))
        return -EBADMSG;
    return (int)r;
more:
    return len < limit ? -EAGAIN : -EBADMSG;
}

enum {
    CK_SIZE = 0, /* hex digits; line_len counts them */
    CK_SIZE_WS,  /* BWS after the size, only before a chunk-ext */
    CK_EXT,      /* chunk-ext, skipped */
    CK_SIZE_LF,  /* CR of the size line seen */
    CK_DATA,
    CK_DATA_CR,
    CK_DATA_LF,
    CK_TRAILER, /* start of a trailer field line, or of the final empty line */
    CK_TNAME,
    CK_TVALUE,
    CK_TLINE_LF,
    CK_END_LF,
    CK_DONE,
    CK_ERROR,
};

/* One framing byte. Returns false on a framing error. */
static bool chunk_byte(struct h1_chunked *c, unsigned char ch)
{
    switch (c->state) {
    case CK_SIZE:
        if (cls[ch] & C_HEX) {
            if (++c->line_len > 16)
                return false;
            c->remaining = c->remaining << 4 | (unsigned)hex_value(ch);
            return true;
        }
        if (!c->line_len)
            return false;
        if (ch == '\r') {
            c->state = CK_SIZE_LF;
            return true;
        }
        if (ch == ';')
            c->state = CK_EXT;
        else if (is_ows(ch))
            c->state = CK_SIZE_WS;
        else
            return false;
        return ++c->line_len <= CHUNK_LINE_MAX;
    case CK_SIZE_WS:
        if (ch == ';')
            c->state = CK_EXT;
        else if (!is_ows(ch))
            return false;
        return ++c->line_len <= CHUNK_LINE_MAX;
    case CK_EXT:
        if (ch == '\r') {
            c->state = CK_SIZE_LF;
            return true;
        }
        return (cls[ch] & C_VALUE) && ++c->line_len <= CHUNK_LINE_MAX;
    case CK_SIZE_LF:
        if (ch != '\n')
            return false;
        c->line_len = 0;
        c->state = c->remaining ? CK_DATA : CK_TRAILER;
        return true;
    case CK_DATA_CR:
        c->state = CK_DATA_LF;
        return ch == '\r';
    case CK_DATA_LF:
        c->state = CK_SIZE;
        return ch == '\n';
    default:
        break;
    }
    /* Trailer section: counted as a whole, fields checked loosely (name ':' value). */
    if (++c->trailer_bytes > TRAILER_MAX)
        return false;
    switch (c->state) {
    case CK_TRAILER:
        if (ch == '\r')
            c->state = CK_END_LF;
        else if (cls[ch] & C_TCHAR)
            c->state = CK_TNAME;
        else
            return false;
        return true;
    case CK_TNAME:
        if (ch == ':')
            c->state = CK_TVALUE;
        else if (!(cls[ch] & C_TCHAR))
            return false;
        return true;
    case CK_TVALUE:
        if (ch == '\r')
            c->state = CK_TLINE_LF;
        else if (!(cls[ch] & C_VALUE))
            return false;
        return true;
    case CK_TLINE_LF:
        c->state = CK_TRAILER;
        return ch == '\n';
    case CK_END_LF:
        c->state = CK_DONE;
        return ch == '\n';
    default:
        return false;
    }
}

/* *out_len receives the number of data bytes decoded, whether or not `out` was given. */
ssize_t h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len, char *out,
                        size_t *out_len, bool *done)
{
    size_t i = 0, o = 0;
    ssize_t ret;

    while (i < len && c->state != CK_DONE) {
        if (c->state == CK_DATA) {
            size_t n = len - i;

            if (n > c->remaining)
                n = (size_t)c->remaining;
            /* memmove: with out == buf the output trails the input within one buffer. */
            if (out && out + o != buf + i)
                memmove(out + o, buf + i, n);
            o += n;
            i += n;
            c->remaining -= n;
            if (!c->remaining)
                c->state = CK_DATA_CR;
            continue;
        }
        if (c->state == CK_ERROR || !chunk_byte(c, (unsigned char)buf[i])) {
            c->state = CK_ERROR;
            ret = -EBADMSG;
            goto out;
        }
        i++;
    }
    ret = (ssize_t)i;
out:
    if (out_len)
        *out_len = o;
    if (done)
        *done = c->state == CK_DONE;
    return ret;
}

/* Reason phrases by class, indexed by the last two digits (RFC 9110 15). */
static const char *const reason_1xx[] = {"Continue", "Switching Protocols"};
static const char *const reason_2xx[] = {
    "OK",         "Created",       "Accepted",       "Non-Authoritative Information",
    "No Content", "Reset Content", "Partial Content"};
static const char *const reason_3xx[] = {
    [0] = "Multiple Choices",   [1] = "Moved Permanently", [2] = "Found",
    [3] = "See Other",          [4] = "Not Modified",      [5] = "Use Proxy",
    [7] = "Temporary Redirect", [8] = "Permanent Redirect"};
static const char *const reason_4xx[] = {
    [0] = "Bad Request",
    [1] = "Unauthorized",
    [2] = "Payment Required",
    [3] = "Forbidden",
    [4] = "Not Found",
    [5] = "Method Not Allowed",
    [6] = "Not Acceptable",
    [7] = "Proxy Authentication Required",
    [8] = "Request Timeout",
    [9] = "Conflict",
    [10] = "Gone",
    [11] = "Length Required",
    [12] = "Precondition Failed",
    [13] = "Content Too Large",
    [14] = "URI Too Long",
    [15] = "Unsupported Media Type",
    [16] = "Range Not Satisfiable",
    [17] = "Expectation Failed",
    [21] = "Misdirected Request",
    [22] = "Unprocessable Content",
    [26] = "Upgrade Required",
    [28] = "Precondition Required",
    [29] = "Too Many Requests",
    [31] = "Request Header Fields Too Large",
};
static const char *const reason_5xx[] = {
    "Internal Server Error", "Not Implemented", "Bad Gateway",
    "Service Unavailable",   "Gateway Timeout", "HTTP Version Not Supported",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *h1_reason(int status)
{
    static const struct {
        const char *const *names;
        size_t n;
    } classes[] = {
        {reason_1xx, NELEM(reason_1xx)}, {reason_2xx, NELEM(reason_2xx)},
        {reason_3xx, NELEM(reason_3xx)}, {reason_4xx, NELEM(reason_4xx)},
        {reason_5xx, NELEM(reason_5xx)},
    };
    const char *r = NULL;

    if (status >= 100 && status < 600) {
        unsigned cl = (unsigned)status / 100 - 1, i = (unsigned)status % 100;

        if (i < classes[cl].n)
            r = classes[cl].names[i];
    }
    return r ? r : "Unknown";
}

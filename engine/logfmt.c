/* logfmt.c: access-log formats. A format is compiled once, at load, into ops (a literal run, or
 * one variable); writing a line walks them with no parsing. Values are escaped as nginx's
 * escape=default does in text formats (bytes < 0x20, 0x7f and above, '"' and '\' as \xHH), and
 * per RFC 8259 in JSON (invalid UTF-8 bytes as \u00HH of the byte), so no value, whatever the
 * client sent, can end a line or close a field early.
 */
#include "logfmt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum lf_var {
    LV_LIT = 0,
    LV_REMOTE_ADDR,
    LV_REMOTE_USER,
    LV_TIME_LOCAL,
    LV_TIME_ISO8601,
    LV_REQUEST,
    LV_STATUS,
    LV_BODY_BYTES_SENT,
    LV_REQUEST_TIME,
    LV_HOST,
    LV_UPSTREAM_ADDR,
    LV_UPSTREAM_STATUS,
    LV_UPSTREAM_CONNECT_TIME,
    LV_UPSTREAM_RESPONSE_TIME,
    LV_UPSTREAM_CACHE_STATUS,
    LV_SSL_PROTOCOL,
    LV_REQUEST_ID,
    LV_SERVER_PROTOCOL,
    LV_HTTP, /* $http_<name>: a request header */
};

static const char *const var_names[] = {
    [LV_REMOTE_ADDR] = "remote_addr",
    [LV_REMOTE_USER] = "remote_user",
    [LV_TIME_LOCAL] = "time_local",
    [LV_TIME_ISO8601] = "time_iso8601",
    [LV_REQUEST] = "request",
    [LV_STATUS] = "status",
    [LV_BODY_BYTES_SENT] = "body_bytes_sent",
    [LV_REQUEST_TIME] = "request_time",
    [LV_HOST] = "host",
    [LV_UPSTREAM_ADDR] = "upstream_addr",
    [LV_UPSTREAM_STATUS] = "upstream_status",
    [LV_UPSTREAM_CONNECT_TIME] = "upstream_connect_time",
    [LV_UPSTREAM_RESPONSE_TIME] = "upstream_response_time",
    [LV_UPSTREAM_CACHE_STATUS] = "upstream_cache_status",
    [LV_SSL_PROTOCOL] = "ssl_protocol",
    [LV_REQUEST_ID] = "request_id",
    [LV_SERVER_PROTOCOL] = "server_protocol",
};
#define N_NAMED (sizeof(var_names) / sizeof(var_names[0]))

static const char combined[] = "$remote_addr - $remote_user [$time_local] \"$request\" $status "
                               "$body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
/* The "json" format's keys, in order: every variable but $remote_user and the generic
 * $http_<name>, with the two headers combined logs carry. */
static const char *const json_keys[] = {
    "time_iso8601",
    "time_local",
    "remote_addr",
    "request",
    "status",
    "body_bytes_sent",
    "request_time",
    "http_referer",
    "http_user_agent",
    "host",
    "upstream_addr",
    "upstream_status",
    "upstream_connect_time",
    "upstream_response_time",
    "upstream_cache_status",
    "ssl_protocol",
    "request_id",
    "server_protocol",
};

struct lf_op {
    uint8_t var;  /* enum lf_var */
    bool json;    /* written as a JSON value */
    uint16_t hdr; /* LV_HTTP: index in hdrs */
    uint32_t off, len;
};

struct logfmt {
    struct lf_op *ops;
    uint32_t n_ops, cap_ops;
    char *text; /* the literals */
    uint32_t text_len, text_cap;
    char **hdrs;
    uint32_t n_hdrs;
    bool uses_rid;
};

/* ---- compiling --------------------------------------------------------------------------- */

static int add_op(struct logfmt *f, struct lf_op op)
{
    if (f->n_ops == f->cap_ops) {
        uint32_t cap = f->cap_ops ? f->cap_ops * 2 : 16;
        struct lf_op *ops = realloc(f->ops, cap * sizeof(*ops));
        if (!ops)
            return -ENOMEM;
        f->ops = ops;
        f->cap_ops = cap;
    }
    f->ops[f->n_ops++] = op;
    return 0;
}

static int add_lit(struct logfmt *f, const char *p, size_t n)
{
    if (!n)
        return 0;
    if (n > UINT32_MAX / 4 || f->text_len + n > UINT32_MAX / 2)
        return -ENOMEM;
    if (f->text_len + n > f->text_cap) {
        uint32_t cap = (uint32_t)(f->text_len + n) * 2;
        char *t = realloc(f->text, cap);
        if (!t)
            return -ENOMEM;
        f->text = t;
        f->text_cap = cap;
    }
    memcpy(f->text + f->text_len, p, n);
    /* two literal runs in a row (JSON's) are one op */
    if (f->n_ops && f->ops[f->n_ops - 1].var == LV_LIT &&
        f->ops[f->n_ops - 1].off + f->ops[f->n_ops - 1].len == f->text_len) {
        f->ops[f->n_ops - 1].len += (uint32_t)n;
        f->text_len += (uint32_t)n;
        return 0;
    }
    f->text_len += (uint32_t)n;
    return add_op(
        f, (struct lf_op){.var = LV_LIT, .off = f->text_len - (uint32_t)n, .len = (uint32_t)n});
}

/* The index of header `name` (nginx's spelling) among the format's, added if new. */
static int header_index(struct logfmt *f, const char *name)
{
    char **h;

    for (uint32_t i = 0; i < f->n_hdrs; i++)
        if (!strcmp(f->hdrs[i], name))
            return (int)i;
    if (f->n_hdrs >= LOGFMT_MAX_HEADERS)
        return -E2BIG;
    h = realloc(f->hdrs, (f->n_hdrs + 1) * sizeof(*h));
    if (!h)
        return -ENOMEM;
    f->hdrs = h;
    if (!(h[f->n_hdrs] = strdup(name)))
        return -ENOMEM;
    return (int)f->n_hdrs++;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Adds the op for variable name[0..n) (any case); -EINVAL when there is no such variable. */
static int add_var(struct logfmt *f, const char *name, size_t n, bool json)
{
    char lower[128];
    int hdr;

    if (n >= sizeof(lower))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        lower[i] = name[i] >= 'A' && name[i] <= 'Z' ? (char)(name[i] + 32) : name[i];
    lower[n] = 0;
    for (size_t v = 1; v < N_NAMED; v++)
        if (!strcmp(lower, var_names[v])) {
            f->uses_rid |= v == LV_REQUEST_ID;
            return add_op(f, (struct lf_op){.var = (uint8_t)v, .json = json});
        }
    if (n <= 5 || memcmp(lower, "http_", 5))
        return -EINVAL;
    if ((hdr = header_index(f, lower + 5)) < 0)
        return hdr;
    return add_op(f, (struct lf_op){.var = LV_HTTP, .json = json, .hdr = (uint16_t)hdr});
}

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* The end of the variable name at p ([A-Za-z0-9_]*). */
static const char *name_end(const char *p)
{
    while (name_char(*p))
        p++;
    return p;
}

static int compile_template(struct logfmt *f, const char *spec, char *err, size_t errlen)
{
    const char *p = spec, *lit = spec;
    int rc;

    while (*p) {
        const char *name, *end;
        if ((unsigned char)*p < 0x20 && *p != '\t') /* one request, one line */
            return failf(err, errlen, "a control character at offset %zu (only tabs may be)",
                         (size_t)(p - spec));
        if (*p != '$') {
            p++;
            continue;
        }
        if ((rc = add_lit(f, lit, (size_t)(p - lit))))
            return rc;
        name = p + (p[1] == '{' ? 2 : 1);
        end = name_end(name);
        if (end == name || (p[1] == '{' && *end != '}'))
            return failf(err, errlen, "'$' without a variable name at offset %zu%s",
                         (size_t)(p - spec), p[1] == '{' ? " (want ${name})" : "");
        lit = p[1] == '{' ? end + 1 : end;
        rc = add_var(f, name, (size_t)(end - name), false);
        if (rc == -E2BIG)
            return failf(err, errlen, "more than %d different $http_ variables",
                         LOGFMT_MAX_HEADERS);
        if (rc == -EINVAL)
            return failf(err, errlen, "unknown variable $%.*s",
                         (int)((size_t)(end - name) > 64 ? 64 : (size_t)(end - name)), name);
        if (rc)
            return rc;
        p = lit;
    }
    return add_lit(f, lit, (size_t)(p - lit));
}

static int compile_json(struct logfmt *f)
{
    int rc = 0;

    for (size_t i = 0; !rc && i < sizeof(json_keys) / sizeof(json_keys[0]); i++) {
        rc = add_lit(f, i ? ",\"" : "{\"", 2);
        if (!rc)
            rc = add_lit(f, json_keys[i], strlen(json_keys[i]));
        if (!rc)
            rc = add_lit(f, "\":", 2);
        if (!rc)
            rc = add_var(f, json_keys[i], strlen(json_keys[i]), true);
    }
    return rc ? rc : add_lit(f, "}", 1);
}

int logfmt_compile(const char *spec, struct logfmt **out, char *err, size_t errlen)
{
    struct logfmt *f = calloc(1, sizeof(*f));
    int rc;

    *out = NULL;
    if (err && errlen)
        err[0] = 0;
    if (!f)
        return -ENOMEM;
    if (!spec || !strcmp(spec, "combined"))
        rc = compile_template(f, combined, err, errlen);
    else if (!strcmp(spec, "json"))
        rc = compile_json(f);
    else
        rc = compile_template(f, spec, err, errlen);
    if (!rc && !f->n_ops)
        rc = failf(err, errlen, "an empty format");
    if (rc == -ENOMEM && err && errlen)
        snprintf(err, errlen, "out of memory");
    if (rc) {
        logfmt_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void logfmt_free(struct logfmt *f)
{
    if (!f)
        return;
    for (uint32_t i = 0; i < f->n_hdrs; i++)
        free(f->hdrs[i]);
    free(f->hdrs);
    free(f->ops);
    free(f->text);
    free(f);
}

uint32_t logfmt_n_headers(const struct logfmt *f)
{
    return f->n_hdrs;
}

const char *logfmt_header_name(const struct logfmt *f, uint32_t i)
{
    return i < f->n_hdrs ? f->hdrs[i] : NULL;
}

bool logfmt_header_is(const struct logfmt *f, uint32_t i, const char *name, size_t n)
{
    const char *want = f->hdrs[i];
    size_t k;

    for (k = 0; k < n && want[k]; k++) {
        char c = name[k] >= 'A' && name[k] <= 'Z' ? (char)(name[k] + 32) : name[k];
        if ((c == '-' ? '_' : c) != want[k])
            return false;
    }
    return k == n && !want[k];
}

bool logfmt_uses_request_id(const struct logfmt *f)
{
    return f->uses_rid;
}

/* ---- writing a line ---------------------------------------------------------------------- */

struct wr {
    char *p, *end;
    bool over;
};

static void put(struct wr *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->over = true;
        w->p = w->end;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

static void put_str(struct wr *w, const char *s)
{
    put(w, s, strlen(s));
}

static const char hexd[] = "0123456789abcdef";

/* Bytes a text format writes as \xHH: controls, DEL and above, '"', '\'. */
static bool needs_x(unsigned char c)
{
    return c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

static void put_esc(struct wr *w, const char *s, size_t n, bool lower)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t run = i;
        while (run < n && !needs_x((unsigned char)s[run]) &&
               !(lower && s[run] >= 'A' && s[run] <= 'Z'))
            run++;
        if (run > i) {
            put(w, s + i, run - i);
            i = run - 1;
            continue;
        }
        if (lower && c >= 'A' && c <= 'Z') {
            char l = (char)(c + 32);
            put(w, &l, 1);
            continue;
        }
        char x[4] = {'\\', 'x', hexd[c >> 4], hexd[c & 15]};
        put(w, x, 4);
    }
}

/* The length of the valid UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), 0 if the bytes there are not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t k;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf)
        k = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        k = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return k;
}

static void put_json_esc(struct wr *w, const char *s, size_t n, bool lower)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = u[i];
        size_t k;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            char ch = lower && c >= 'A' && c <= 'Z' ? (char)(c + 32) : (char)c;
            put(w, &ch, 1);
        } else if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(w, e, 2);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            char e[2] = {'\\', c == '\n' ? 'n' : c == '\r' ? 'r' : 't'};
            put(w, e, 2);
        } else if (c >= 0x80 && (k = utf8_len(u + i, n - i))) {
            put(w, s + i, k);
            i += k - 1;
        } else { /* other controls, DEL, and bytes that are not UTF-8: the byte as U+00HH */
            char e[6] = {'\\', 'u', '0', '0', hexd[c >> 4], hexd[c & 15]};
            put(w, e, 6);
        }
    }
}

static void put_u64(struct wr *w, uint64_t v)
{
    char tmp[24], *p = u64_dec(tmp, v);

    put(w, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* Seconds with milliseconds, as nginx: "0.012". */
static void put_secs(struct wr *w, uint64_t us)
{
    uint64_t ms = us / 1000;
    char frac[4] = {'.', (char)('0' + ms / 100 % 10), (char)('0' + ms / 10 % 10),
                    (char)('0' + ms % 10)};

    put_u64(w, ms / 1000);
    put(w, frac, 4);
}

/* One string value: escaped, "-" (text) or null (JSON) when missing. */
static void put_value(struct wr *w, bool json, const char *s, size_t n, bool lower)
{
    if (!s) {
        put_str(w, json ? "null" : "-");
        return;
    }
    if (!json) {
        put_esc(w, s, n, lower);
        return;
    }
    put(w, "\"", 1);
    put_json_esc(w, s, n, lower);
    put(w, "\"", 1);
}

static void put_cstr(struct wr *w, bool json, const char *s)
{
    put_value(w, json, s && *s ? s : NULL, s ? strlen(s) : 0, false);
}

/* "HTTP/1.1", "HTTP/2.0": the request's protocol as nginx's $server_protocol names it. */
static void version_of(const struct lf_line *l, char ver[9])
{
    memcpy(ver, "HTTP/1.0", 9);
    ver[5] = l->h2 ? '2' : '1';
    ver[7] = l->h2 ? '0' : (char)('0' + (l->minor > 9 ? 9 : l->minor));
}

static void put_request(struct wr *w, bool json, const struct lf_line *l)
{
    void (*esc)(struct wr *, const char *, size_t, bool) = json ? put_json_esc : put_esc;
    char ver[9];

    if (!l->method.p) {
        put_value(w, json, NULL, 0, false);
        return;
    }
    version_of(l, ver);
    if (json)
        put(w, "\"", 1);
    esc(w, l->method.p, l->method.len, false);
    put(w, " ", 1);
    esc(w, l->path.p, l->path.len, false);
    put(w, " ", 1);
    put(w, ver, 8);
    if (json)
        put(w, "\"", 1);
}

/* $host: the request's Host, lowercase, without a port ("[::1]:80" keeps its brackets). */
static void put_host(struct wr *w, bool json, struct lf_span h)
{
    uint32_t n = h.len;

    if (h.p) {
        const char *colon = memrchr(h.p, ':', n);
        if (colon && !memchr(colon, ']', (size_t)(h.p + n - colon)))
            n = (uint32_t)(colon - h.p);
    }
    put_value(w, json, h.p, n, true);
}

/* The $upstream_* lists: one item per attempt, ", " between them. */
static void put_tries(struct wr *w, bool json, const struct lf_line *l, enum lf_var v)
{
    if (!l->n_tries) {
        put_value(w, json, NULL, 0, false);
        return;
    }
    if (json)
        put(w, "\"", 1);
    for (uint32_t i = 0; i < l->n_tries; i++) {
        const struct lf_try *t = &l->tries[i];
        if (i)
            put(w, ", ", 2);
        if (v == LV_UPSTREAM_ADDR)
            (json ? put_json_esc : put_esc)(w, t->addr, strlen(t->addr), false);
        else if (v == LV_UPSTREAM_STATUS && t->status)
            put_u64(w, t->status);
        else if (v == LV_UPSTREAM_CONNECT_TIME && t->connect_us >= 0)
            put_secs(w, (uint64_t)t->connect_us);
        else if (v == LV_UPSTREAM_RESPONSE_TIME && t->resp_us >= 0)
            put_secs(w, (uint64_t)t->resp_us);
        else
            put(w, "-", 1);
    }
    if (json)
        put(w, "\"", 1);
}

static void put_var(struct wr *w, const struct lf_op *op, const struct lf_line *l)
{
    bool j = op->json;

    switch ((enum lf_var)op->var) {
    case LV_LIT:
        break;
    case LV_REMOTE_ADDR:
        put_cstr(w, j, l->remote_addr);
        break;
    case LV_REMOTE_USER:
        put_value(w, j, NULL, 0, false);
        break;
    case LV_TIME_LOCAL:
        put_cstr(w, j, l->time_local);
        break;
    case LV_TIME_ISO8601:
        put_cstr(w, j, l->time_iso8601);
        break;
    case LV_REQUEST:
        put_request(w, j, l);
        break;
    case LV_STATUS:
        put_u64(w, l->status > 0 ? (uint64_t)l->status : 0);
        break;
    case LV_BODY_BYTES_SENT:
        put_u64(w, l->body_bytes);
        break;
    case LV_REQUEST_TIME:
        put_secs(w, l->request_us);
        break;
    case LV_HOST:
        put_host(w, j, l->host);
        break;
    case LV_UPSTREAM_ADDR:
    case LV_UPSTREAM_STATUS:
    case LV_UPSTREAM_CONNECT_TIME:
    case LV_UPSTREAM_RESPONSE_TIME:
        put_tries(w, j, l, (enum lf_var)op->var);
        break;
    case LV_UPSTREAM_CACHE_STATUS:
        put_cstr(w, j, l->cache_status);
        break;
    case LV_SSL_PROTOCOL:
        put_cstr(w, j, l->ssl_protocol);
        break;
    case LV_REQUEST_ID:
        put_cstr(w, j, l->request_id);
        break;
    case LV_SERVER_PROTOCOL: {
        char ver[9];
        version_of(l, ver);
        put_value(w, j, l->method.p ? ver : NULL, 8, false);
        break;
    }
    case LV_HTTP: {
        struct lf_span v = l->hdrs ? l->hdrs[op->hdr] : (struct lf_span){0};
        put_value(w, j, v.p, v.len, false);
        break;
    }
    }
}

size_t logfmt_write(const struct logfmt *f, const struct lf_line *l, char *out, size_t cap)
{
    struct wr w = {out, out + cap, false};

    for (uint32_t i = 0; i < f->n_ops && !w.over; i++) {
        const struct lf_op *op = &f->ops[i];
        if (op->var == LV_LIT)
            put(&w, f->text + op->off, op->len);
        else
            put_var(&w, op, l);
    }
    put(&w, "\n", 1);
    return w.over ? 0 : (size_t)(w.p - out);
}

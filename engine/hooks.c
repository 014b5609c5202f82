/* hooks.c: registering hooks and local endpoints, the header-list edits hooks make, the
 * answers the proxy builds itself, and matching paths against local endpoint patterns.
 * Everything here runs before the server starts (registration) or inside one worker's hook
 * call (edits), so nothing is shared between threads while it changes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "internal.h"
#include "util.h"

/* ---- registration ------------------------------------------------------------------------ */

static int hook_add(rp_server *s, struct hook_list *l, struct hook h)
{
    struct hook *v;

    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    v = realloc(l->v, (l->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    v[l->n++] = h;
    l->v = v;
    return 0;
}

int rp_on_proxy_request(rp_server *s, rp_proxy_request_fn fn, void *user)
{
    return fn ? hook_add(s, s ? &s->hooks.req : NULL, (struct hook){.fn.req = fn, .user = user})
              : -EINVAL;
}

int rp_on_proxy_response(rp_server *s, rp_proxy_response_fn fn, void *user)
{
    return fn ? hook_add(s, s ? &s->hooks.resp : NULL, (struct hook){.fn.resp = fn, .user = user})
              : -EINVAL;
}

int rp_on_proxy_error(rp_server *s, rp_proxy_error_fn fn, void *user)
{
    return fn ? hook_add(s, s ? &s->hooks.err : NULL, (struct hook){.fn.err = fn, .user = user})
              : -EINVAL;
}

int rp_server_workers(const rp_server *s)
{
    return s ? s->cfg.workers : 0;
}

static void route_free(struct local_route *r)
{
    for (uint32_t i = 0; i < r->n_segs; i++)
        free(r->segs[i].text);
    free(r->segs);
    free(r->method);
    free(r->pattern);
}

void hooks_fini(struct hooks *hk)
{
    free(hk->req.v);
    free(hk->resp.v);
    free(hk->err.v);
    for (uint32_t i = 0; i < hk->n_local; i++)
        route_free(&hk->local[i]);
    free(hk->local);
    memset(hk, 0, sizeof(*hk));
}

/* ---- header lists ------------------------------------------------------------------------ */

static bool valid_name(const char *n)
{
    size_t i = 0;

    for (; n[i]; i++)
        if (!http_is_tchar((unsigned char)n[i]))
            return false;
    return i > 0 && i < 256;
}

static bool valid_value(const char *v)
{
    for (; *v; v++)
        if (*v == '\r' || *v == '\n')
            return false;
    return true;
}

/* Fields the proxy owns: it frames messages and sets these itself. */
static bool protected_name(const struct rp_headers *h, const char *name)
{
    switch (h1_header_kind(name, strlen(name))) {
    case H1_H_OTHER:
        return false;
    case H1_H_HOST:
    case H1_H_EXPECT:
    case H1_H_X_FORWARDED_FOR:
    case H1_H_X_FORWARDED_PROTO:
    case H1_H_X_FORWARDED_HOST:
        return h->role == HDRS_REQUEST;
    default:
        return true; /* framing and hop-by-hop */
    }
}

void hdrs_init(struct rp_headers *h, const struct h1_header *fields, uint32_t n,
               enum hdrs_role role)
{
    memset(h, 0, sizeof(*h));
    h->orig = fields;
    h->n_orig = n;
    h->role = (uint8_t)role;
}

void hdrs_fini(struct rp_headers *h)
{
    free(h->v);
    free(h->arena);
    h->v = NULL;
    h->arena = NULL;
}

/* Makes the editable copy on the first edit. */
static int hdrs_own(struct rp_headers *h)
{
    if (h->v)
        return 0;
    h->cap = h->n_orig + HDRS_MAX_ADDED;
    h->v = malloc(h->cap * sizeof(*h->v));
    h->arena = malloc(HDRS_ARENA);
    if (!h->v || !h->arena) {
        hdrs_fini(h);
        return -ENOMEM;
    }
    if (h->n_orig)
        memcpy(h->v, h->orig, h->n_orig * sizeof(*h->v));
    h->n = h->n_orig;
    return 0;
}

static const char *arena_copy(struct rp_headers *h, const char *s, size_t n)
{
    char *p = h->arena + h->arena_used;

    memcpy(p, s, n);
    h->arena_used += (uint32_t)n;
    return p;
}

size_t rp_headers_count(const rp_headers *h)
{
    uint32_t n, k = 0;
    const struct h1_header *f = hdrs_fields(h, &n);

    for (uint32_t i = 0; i < n; i++)
        k += !f[i].hop;
    return k;
}

bool rp_headers_at(const rp_headers *h, size_t i, rp_str *name, rp_str *value)
{
    uint32_t n;
    const struct h1_header *f = hdrs_fields(h, &n);

    for (uint32_t j = 0; j < n; j++) {
        if (f[j].hop || i--)
            continue;
        if (name)
            *name = (rp_str){f[j].name, f[j].name_len};
        if (value)
            *value = (rp_str){f[j].value, f[j].value_len};
        return true;
    }
    return false;
}

static bool name_eq(const struct h1_header *f, const char *name, size_t len)
{
    return span_ieq_span(f->name, f->name_len, name, len);
}

bool rp_headers_get(const rp_headers *h, const char *name, rp_str *value)
{
    uint32_t n;
    const struct h1_header *f = hdrs_fields(h, &n);
    size_t len = strlen(name);

    for (uint32_t j = 0; j < n; j++) {
        if (!f[j].hop && name_eq(&f[j], name, len)) {
            if (value)
                *value = (rp_str){f[j].value, f[j].value_len};
            return true;
        }
    }
    return false;
}

static int check_edit(rp_headers *h, const char *name, const char *value)
{
    if (!h || !name || h->role == HDRS_READONLY || !valid_name(name) ||
        (value && !valid_value(value)))
        return -EINVAL;
    return protected_name(h, name) ? -EPERM : 0;
}

int rp_headers_remove(rp_headers *h, const char *name)
{
    size_t len;
    uint32_t k = 0;
    int rc = check_edit(h, name, NULL);

    if (rc || (rc = hdrs_own(h)))
        return rc;
    len = strlen(name);
    for (uint32_t j = 0; j < h->n; j++)
        if (h->v[j].hop || !name_eq(&h->v[j], name, len))
            h->v[k++] = h->v[j];
    rc = (int)(h->n - k);
    h->n = k;
    return rc;
}

int rp_headers_add(rp_headers *h, const char *name, const char *value)
{
    size_t nl, vl;
    struct h1_header *f;
    int rc = check_edit(h, name, value ? value : "");

    if (rc || (rc = hdrs_own(h)))
        return rc;
    if (!value)
        value = "";
    while (*value == ' ' || *value == '\t') /* a field value carries no outer whitespace */
        value++;
    nl = strlen(name);
    vl = strlen(value);
    while (vl && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
        vl--;
    if (h->added >= HDRS_MAX_ADDED || h->n >= h->cap || h->arena_used + nl + vl > HDRS_ARENA)
        return -E2BIG;
    f = &h->v[h->n++];
    f->name = arena_copy(h, name, nl);
    f->name_len = (uint32_t)nl;
    f->value = arena_copy(h, value, vl);
    f->value_len = (uint32_t)vl;
    f->kind = H1_H_OTHER;
    f->hop = false;
    h->added++;
    return 0;
}

int rp_headers_set(rp_headers *h, const char *name, const char *value)
{
    int rc = check_edit(h, name, value ? value : "");

    if (rc)
        return rc;
    rc = rp_headers_remove(h, name);
    return rc < 0 ? rc : rp_headers_add(h, name, value);
}

/* ---- answers made by the proxy ------------------------------------------------------------ */

void resp_init(struct rp_response *r, int status)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    hdrs_init(&r->h, NULL, 0, HDRS_LOCAL);
}

void resp_fini(struct rp_response *r)
{
    hdrs_fini(&r->h);
    free(r->body);
    r->body = NULL;
}

int rp_response_set_status(rp_response *r, int status)
{
    if (!r || status < 200 || status > 599)
        return -EINVAL;
    r->status = status;
    return 0;
}

rp_headers *rp_response_headers(rp_response *r)
{
    return r ? &r->h : NULL;
}

static int resp_room(rp_response *r, size_t n)
{
    size_t cap = r->body_cap ? r->body_cap : 256;
    char *p;

    if (r->body_len + n > RESP_MAX_BODY)
        return -E2BIG;
    if (r->body_len + n <= r->body_cap)
        return 0;
    while (cap < r->body_len + n)
        cap *= 2;
    p = realloc(r->body, cap);
    if (!p)
        return -ENOMEM;
    r->body = p;
    r->body_cap = (uint32_t)cap;
    return 0;
}

int rp_response_write(rp_response *r, const void *p, size_t n)
{
    int rc;

    if (!r || (n && !p))
        return -EINVAL;
    if ((rc = resp_room(r, n)))
        return rc;
    if (n)
        memcpy(r->body + r->body_len, p, n);
    r->body_len += (uint32_t)n;
    return 0;
}

int rp_response_printf(rp_response *r, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    if (!r || !fmt)
        return -EINVAL;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    if ((rc = resp_room(r, (size_t)n + 1)))
        return rc;
    va_start(ap, fmt);
    vsnprintf(r->body + r->body_len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->body_len += (uint32_t)n;
    return 0;
}

/* ---- request hooks' calls ----------------------------------------------------------------- */

int rp_proxy_request_set_host(rp_proxy_request *pr, const char *host)
{
    size_t n;

    if (!pr || !host)
        return -EINVAL;
    n = strlen(host);
    if (!n || n >= sizeof(pr->ctx_->host) || strpbrk(host, "\r\n \t"))
        return -EINVAL;
    memcpy(pr->ctx_->host, host, n);
    pr->ctx_->host_len = (uint32_t)n;
    pr->ctx_->host_set = true;
    return 0;
}

rp_response *rp_proxy_request_respond(rp_proxy_request *pr, int status)
{
    struct rp_hook_ctx *ctx;

    if (!pr || status < 200 || status > 599)
        return NULL;
    ctx = pr->ctx_;
    if (!ctx->answer) {
        ctx->answer = malloc(sizeof(*ctx->answer));
        if (!ctx->answer)
            return NULL;
    } else {
        resp_fini(ctx->answer); /* a later call starts over */
    }
    resp_init(ctx->answer, status);
    return ctx->answer;
}

/* ---- local endpoints ---------------------------------------------------------------------- */

static bool valid_method(const char *m)
{
    return valid_name(m) && strlen(m) <= 32;
}

/* Splits "/a/:b" (and a last "*c" segment) into segments; -EINVAL for anything else. */
static int parse_pattern(struct local_route *r, const char *pat)
{
    const char *p = pat;

    if (*p != '/' || strlen(pat) > 1024)
        return -EINVAL;
    while (*p == '/' && p[1]) {
        const char *e = strchr(p + 1, '/');
        size_t len = e ? (size_t)(e - p - 1) : strlen(p + 1);
        struct local_seg seg = {SEG_LIT, NULL, 0};
        struct local_seg *v;

        p++;
        if (!len || (r->n_segs && r->segs[r->n_segs - 1].kind == SEG_REST))
            return -EINVAL;
        if (*p == ':' || *p == '*') {
            seg.kind = *p == ':' ? SEG_PARAM : SEG_REST;
            p++;
            len--;
            if (!len)
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
            if (p[i] == '?' || p[i] == '#' || p[i] == ':' || p[i] == '*' || p[i] <= ' ')
                return -EINVAL;
        seg.text = strndup(p, len);
        seg.len = (uint32_t)len;
        v = realloc(r->segs, (r->n_segs + 1) * sizeof(*v));
        if (!seg.text || !v) {
            free(seg.text);
            if (v)
                r->segs = v;
            return -ENOMEM;
        }
        r->segs = v;
        r->segs[r->n_segs++] = seg;
        r->n_lit += seg.kind == SEG_LIT;
        if (seg.kind != SEG_LIT) {
            uint32_t params = 0;
            for (uint32_t i = 0; i < r->n_segs; i++)
                params += r->segs[i].kind != SEG_LIT;
            if (params > LOCAL_MAX_PARAMS)
                return -EINVAL;
        }
        p += len;
    }
    return *p == '/' && p[1] == 0 && r->n_segs ? -EINVAL /* trailing slash */ : 0;
}

int rp_handle(rp_server *s, const char *method, const char *pattern, rp_handler_fn fn, void *user)
{
    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    return local_add(&s->hooks, method, pattern, fn, user);
}

int local_add(struct hooks *hk, const char *method, const char *pattern, rp_handler_fn fn,
              void *user)
{
    struct local_route r = {0}, *v;
    int rc;

    if (!method || !pattern || !fn || !valid_method(method))
        return -EINVAL;
    for (uint32_t i = 0; i < hk->n_local; i++)
        if (!strcmp(hk->local[i].method, method) && !strcmp(hk->local[i].pattern, pattern))
            return -EEXIST;
    rc = parse_pattern(&r, pattern);
    if (!rc && (!(r.method = strdup(method)) || !(r.pattern = strdup(pattern))))
        rc = -ENOMEM;
    if (!rc && !(v = realloc(hk->local, (hk->n_local + 1) * sizeof(*v))))
        rc = -ENOMEM;
    if (rc) {
        route_free(&r);
        return rc;
    }
    r.fn = fn;
    r.user = user;
    v[hk->n_local++] = r;
    hk->local = v;
    return 0;
}

/* Does `r` match path[0..len)? Fills params in pattern order. */
static bool route_matches(const struct local_route *r, const char *path, uint32_t len,
                          rp_str *params)
{
    uint32_t off = 0, np = 0;

    if (!r->n_segs)
        return len == 1 && path[0] == '/';
    for (uint32_t i = 0; i < r->n_segs; i++) {
        const struct local_seg *sg = &r->segs[i];
        uint32_t start, end;
        if (off >= len || path[off] != '/')
            return sg->kind == SEG_REST && off == len &&
                   (params[np++] = (rp_str){path + off, 0}, true);
        start = ++off;
        if (sg->kind == SEG_REST) {
            params[np++] = (rp_str){path + start, len - start};
            return true;
        }
        while (off < len && path[off] != '/')
            off++;
        end = off;
        if (end == start)
            return false;
        if (sg->kind == SEG_LIT) {
            if (end - start != sg->len || memcmp(path + start, sg->text, sg->len))
                return false;
        } else {
            params[np++] = (rp_str){path + start, end - start};
        }
    }
    return off == len;
}

static bool method_is(const struct local_route *r, const char *m, uint32_t n)
{
    return strlen(r->method) == n && !memcmp(r->method, m, n);
}

enum local_match local_match(const struct hooks *hk, const char *method, uint32_t method_len,
                             const char *path, uint32_t len, const struct local_route **out,
                             struct rp_hook_ctx *ctx, char *allow, size_t cap)
{
    const struct local_route *best = NULL;
    bool path_known = false;
    bool head = method_len == 4 && !memcmp(method, "HEAD", 4);
    size_t used = 0;
    rp_str params[LOCAL_MAX_PARAMS];

    for (uint32_t i = 0; i < hk->n_local; i++) {
        const struct local_route *r = &hk->local[i];
        if (!route_matches(r, path, len, params))
            continue;
        path_known = true;
        if (method_is(r, method, method_len) || (head && method_is(r, "GET", 3))) {
            /* an exact method beats HEAD-via-GET; then more literal segments win */
            bool exact = method_is(r, method, method_len);
            bool best_exact = best && method_is(best, method, method_len);
            if (!best || (exact && !best_exact) ||
                (exact == best_exact && r->n_lit > best->n_lit)) {
                best = r;
                memcpy(ctx->params, params, sizeof(params));
            }
        }
    }
    if (best) {
        ctx->route = best;
        *out = best;
        return LOCAL_FOUND;
    }
    if (!path_known)
        return LOCAL_NONE;
    allow[0] = 0;
    for (uint32_t i = 0; i < hk->n_local; i++) {
        const struct local_route *r = &hk->local[i];
        size_t ml = strlen(r->method);
        if (!route_matches(r, path, len, params) || strstr(allow, r->method))
            continue;
        if (used + ml + 2 + 6 >= cap)
            break;
        used += (size_t)snprintf(allow + used, cap - used, "%s%s", used ? ", " : "", r->method);
        if (!strcmp(r->method, "GET"))
            used += (size_t)snprintf(allow + used, cap - used, ", HEAD");
    }
    return LOCAL_WRONG_METHOD;
}

bool rp_request_param(const rp_request *req, const char *name, rp_str *value)
{
    struct rp_hook_ctx *ctx;
    const struct local_route *r;
    uint32_t np = 0;

    if (!req || !name || !(ctx = req->ctx_) || !(r = ctx->route))
        return false;
    for (uint32_t i = 0; i < r->n_segs; i++) {
        const struct local_seg *sg = &r->segs[i];
        rp_str raw;
        char *d;
        size_t k = 0;
        if (sg->kind == SEG_LIT)
            continue;
        raw = ctx->params[np++];
        if (strcmp(sg->text, name))
            continue;
        if (!memchr(raw.p, '%', raw.len)) {
            if (value)
                *value = raw;
            return true;
        }
        /* decoded copies are kept until the handler returns (freed with the context) */
        d = malloc(raw.len + 1 + sizeof(char *));
        if (!d)
            return false;
        *(char **)(void *)d = ctx->decoded;
        ctx->decoded = d;
        d += sizeof(char *);
        k = pct_decode(raw.p, raw.len, d, raw.len + 1, false);
        if (value)
            *value = (rp_str){d, k};
        return true;
    }
    return false;
}

void hook_ctx_fini(struct rp_hook_ctx *ctx)
{
    while (ctx->decoded) {
        char *next = *(char **)(void *)ctx->decoded;
        free(ctx->decoded);
        ctx->decoded = next;
    }
    if (ctx->answer) {
        resp_fini(ctx->answer);
        free(ctx->answer);
        ctx->answer = NULL;
    }
}

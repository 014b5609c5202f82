/* local.c: requests answered in the proxy: rp_handle endpoints (their patterns matched by
 * hooks.c, their bodies read whole within max_local_body_bytes) and the admin listener's
 * API behind its token (the endpoints pcache.c registers). Answers go through respond.c.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static rp_str query_of(const struct h1_request *r, uint32_t *path_len)
{
    const char *q = memchr(r->path, '?', r->path_len);

    *path_len = q ? (uint32_t)(q - r->path) : r->path_len;
    return q ? (rp_str){q + 1, (size_t)(r->path + r->path_len - q - 1)} : (rp_str){"", 0};
}
/* Runs a local endpoint's handler and sends its answer. */
static void local_run(struct conn *c, const struct h1_request *r, const struct local_route *lr,
                      struct rp_hook_ctx *ctx, const char *body, uint32_t blen)
{
    struct rp_headers h;
    struct rp_response a;
    char peer[INET6_ADDRSTRLEN];
    uint32_t plen;
    rp_request req = {.query = query_of(r, &plen)};

    hdrs_init(&h, r->headers, r->n_headers, HDRS_READONLY);
    conn_format_peer(&c->peer, peer, sizeof(peer));
    req.method = (rp_str){r->method, r->method_len};
    req.path = (rp_str){r->path, plen};
    req.host = (rp_str){r->host ? r->host : "", r->host ? r->host_len : 0};
    req.headers = &h;
    req.body = (rp_str){body ? body : "", blen};
    req.client_addr = peer;
    req.worker = c->w->id;
    req.ctx_ = ctx;
    resp_init(&a, 200);
    lr->fn(&req, &a, lr->user);
    conn_send_answer(c, &a, r->method_id == H1_M_HEAD, !r->keep_alive || c->w->draining);
    resp_fini(&a);
    hdrs_fini(&h);
    hook_ctx_fini(ctx);
}
/* The local endpoints a connection's requests are matched against. */
static const struct hooks *local_table(const struct conn *c)
{
    return c->admin ? &c->w->s->admin : &c->w->s->hooks;
}
/* Serves the request here if a local endpoint's pattern matches its path; returns false to
 * proxy it. A request with a body is read whole first (local_feed_body). */
bool local_start(struct conn *c, const struct h1_request *r, const char *head, uint32_t head_len)
{
    const struct local_route *lr = NULL;
    struct rp_hook_ctx ctx;
    struct exchange *ex;
    char allow[160];
    uint32_t plen;
    enum local_match m;

    hook_ctx_init(&ctx);
    query_of(r, &plen);
    m = local_match(local_table(c), r->method, r->method_len, r->path, plen, &lr, &ctx, allow,
                    sizeof(allow));
    if (m == LOCAL_NONE)
        return false;
    if (m == LOCAL_WRONG_METHOD) {
        struct rp_response a;
        resp_init(&a, 405);
        rp_headers_add(&a.h, "Allow", allow);
        rp_response_printf(&a, "405 Method Not Allowed\n");
        respond_unread(c, r, &a);
        resp_fini(&a);
        return true;
    }
    if (r->body == H1_BODY_NONE) {
        local_run(c, r, lr, &ctx, NULL, 0);
        return true;
    }
    if (r->body == H1_BODY_LENGTH && r->content_length > c->w->snap->cfg.max_local_body_bytes) {
        respond_error(c, 413);
        return true;
    }
    if (!(ex = ex_new(c)) || buf_append(&ex->replay, head, head_len) ||
        !(ex->more = calloc(1, sizeof(*ex->more)))) {
        conn_close(c);
        return true;
    }
    ex->state = EX_LOCAL;
    ex->more->local = lr;
    ex->more->local_head_len = head_len;
    ex->method_id = r->method_id;
    ex->client_minor = r->minor;
    ex->req_body = r->body;
    ex->req_left = r->content_length;
    conn_send_continue(c, r);
    local_feed_body(c);
    return true;
}
/* Reads a local endpoint's request body into ex->replay (after the head), decoded; runs the
 * handler when it is whole. */
void local_feed_body(struct conn *c)
{
    struct exchange *ex = c->ex;
    struct buf *in = &c->sk.in;
    struct h1_header hdrs[H1_HEADERS_CAP];
    struct h1_request r = {.headers = hdrs, .headers_cap = H1_HEADERS_CAP};
    struct rp_hook_ctx ctx;
    const struct local_route *lr = NULL;
    uint32_t n = buf_used(in), plen, head_len = ex->more->local_head_len;
    size_t out = 0;
    bool done = false;
    char allow[8];
    int status;

    if (ex->req_body == H1_BODY_LENGTH) {
        if (n > ex->req_left)
            n = (uint32_t)ex->req_left;
        ex->req_left -= n;
        out = n;
        done = !ex->req_left;
    } else if (n) {
        ssize_t k = h1_chunked_feed(&ex->req_ck, buf_data(in), n, buf_data(in), &out, &done);
        if (k < 0) {
            ex_end(c);
            respond_error(c, 400);
            return;
        }
        n = (uint32_t)k;
    }
    if (buf_used(&ex->replay) - head_len + out > c->w->snap->cfg.max_local_body_bytes) {
        ex_end(c);
        respond_error(c, 413);
        return;
    }
    if (out && buf_append(&ex->replay, buf_data(in), (uint32_t)out)) {
        conn_close(c);
        return;
    }
    buf_consume(in, n);
    if (!done)
        return;
    /* the head was parsed and matched before; its copy parses and matches the same way */
    if (h1_parse_request(buf_data(&ex->replay), head_len, &r, &c->w->snap->lim, &status) <= 0) {
        conn_close(c);
        return;
    }
    hook_ctx_init(&ctx);
    query_of(&r, &plen);
    local_match(local_table(c), r.method, r.method_len, r.path, plen, &lr, &ctx, allow,
                sizeof(allow));
    r.body = H1_BODY_NONE; /* read: the connection can stay open */
    if (lr)
        local_run(c, &r, lr, &ctx, buf_data(&ex->replay) + head_len,
                  buf_used(&ex->replay) - head_len);
    ex_end(c);
}
/* A request on the admin listener: the token first, then the admin endpoints, else 404. */
void local_admin_request(struct conn *c, const struct h1_request *r, const char *head,
                         uint32_t head_len)
{
    struct rp_response a;

    if (!admin_authorized(c->w->s, r)) {
        resp_init(&a, 401);
        rp_headers_add(&a.h, "WWW-Authenticate", "Bearer realm=\"ringproxy admin\"");
        rp_headers_add(&a.h, "Content-Type", "application/json");
        rp_response_printf(&a, "{\"error\":\"a valid bearer token is required\"}\n");
    } else if (local_start(c, r, head, head_len)) {
        return;
    } else {
        resp_init(&a, 404);
        rp_headers_add(&a.h, "Content-Type", "application/json");
        rp_response_printf(&a, "{\"error\":\"no such admin endpoint\"}\n");
    }
    respond_unread(c, r, &a);
    resp_fini(&a);
}

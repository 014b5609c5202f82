/* respond.c: every answer the proxy composes itself (errors, local endpoints, rejections,
 * answers to requests whose body was not read): one writer of the status line, Server, the
 * fields, Content-Type, Content-Length and Connection: close, through the client session's
 * head buffer (conn_head_buf), so TLS clients get it encrypted like any response head.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Every answer the proxy makes itself (errors, local endpoints, rejections): status line,
 * Server, the fields `f`, Content-Type text/plain unless `f` names one, Content-Length,
 * Connection: close when `close`; then the body unless head_only. */
void respond_answer(struct conn *c, int status, const struct h1_header *f, uint32_t n,
                    const char *body, uint32_t blen, bool head_only, bool close)
{
    struct buf *b = conn_head_buf(c);
    bool empty = status == 204 || status == 304, typed = false;
    char line[96];
    bool ok = true;

    /* the request's domain while its exchange lives: answer before ex_end to be counted in it */
    metrics_request(c->w, ex_active(c->ex) ? c->ex->t : NULL, status);
    alog_answer(c, status, head_only || empty ? 0 : blen);
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\nServer: ringproxy\r\n", status,
             h1_reason(status));
    buf_put_str(b, &ok, line);
    for (uint32_t i = 0; i < n; i++) {
        buf_put_header(b, &ok, &f[i]);
        typed |= h1_span_ieq(f[i].name, f[i].name_len, "content-type");
    }
    if (!empty) {
        if (!typed)
            buf_put_str(b, &ok, "Content-Type: text/plain; charset=utf-8\r\n");
        snprintf(line, sizeof(line), "Content-Length: %u\r\n", blen);
        buf_put_str(b, &ok, line);
    }
    if (close)
        buf_put_str(b, &ok, "Connection: close\r\n");
    buf_put(b, &ok, "\r\n", 2);
    if (!head_only && !empty && blen)
        buf_put(b, &ok, body, blen);
    if (close)
        c->close_after = true;
    conn_head_done(c, ok);
    conn_flush_out(c);
}
void respond_text(struct conn *c, int status, const char *body, bool head_only, bool close)
{
    respond_answer(c, status, NULL, 0, body, body ? (uint32_t)strlen(body) : 0, head_only, close);
}
void respond_error(struct conn *c, int status)
{
    char body[64];

    snprintf(body, sizeof(body), "%d %s\n", status, h1_reason(status));
    respond_text(c, status, body, false, true);
    /* the rest of the input is unread: shut our side and discard it rather than reset */
    c->linger = true;
}
void conn_send_answer(struct conn *c, const struct rp_response *a, bool head_only, bool close)
{
    uint32_t n;
    const struct h1_header *f = hdrs_fields(&a->h, &n);

    respond_answer(c, a->status, f, n, a->body, a->body_len, head_only, close);
}
/* Answers request r here, before its body (if any) was read: the body is discarded with a
 * close, since it would otherwise be parsed as the next request. */
void respond_unread_fields(struct conn *c, const struct h1_request *r, int status,
                           const struct h1_header *f, uint32_t n, const char *body, uint32_t blen)
{
    bool close = !r->keep_alive || r->body != H1_BODY_NONE || c->w->draining;

    respond_answer(c, status, f, n, body, blen, r->method_id == H1_M_HEAD, close);
    if (r->body != H1_BODY_NONE)
        c->linger = true;
}
void respond_unread(struct conn *c, const struct h1_request *r, const struct rp_response *a)
{
    uint32_t n;
    const struct h1_header *f = hdrs_fields(&a->h, &n);

    respond_unread_fields(c, r, a->status, f, n, a->body, a->body_len);
}
void respond_unread_text(struct conn *c, const struct h1_request *r, int status, const char *body)
{
    respond_unread_fields(c, r, status, NULL, 0, body, (uint32_t)strlen(body));
}

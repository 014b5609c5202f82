/* upstream_head.c: the request head as a backend sees it, written for exchanges and
 * background refreshes alike: HTTP/1.1, the Host the backend expects, the client's
 * end-to-end fields (hop-by-hop ones dropped, the cache's conditionals instead of the
 * client's when it answers those itself), X-Forwarded-*, and one framing field of our own.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Dotted quad without inet_ntop's generality: this runs for every proxied request. */
static void format_ipv4(const unsigned char *a, char *out)
{
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            *out++ = (char)('0' + v / 100);
        if (v >= 10)
            *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : 0;
    }
}
void conn_format_peer(const struct sockaddr_in6 *sa, char *out, size_t cap)
{
    out[0] = 0;
    if (sa->sin6_family == AF_INET)
        format_ipv4(
            (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
    else if (sa->sin6_family == AF_INET6)
        inet_ntop(AF_INET6, &sa->sin6_addr, out, (socklen_t)cap);
}
/* X-Forwarded-For: the list the client sent (several fields are one list, in order), then
 * the client's address. */
static void put_forwarded_for(const struct sockaddr_in6 *client, const struct h1_request *r,
                              struct buf *b, bool *ok)
{
    char peer[INET6_ADDRSTRLEN];

    buf_put_str(b, ok, "X-Forwarded-For: ");
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        if (h->kind == H1_H_X_FORWARDED_FOR && !h->hop && h->value_len) {
            buf_put(b, ok, h->value, h->value_len);
            buf_put(b, ok, ", ", 2);
        }
    }
    conn_format_peer(client, peer, sizeof(peer));
    buf_put_str(b, ok, peer);
    buf_put(b, ok, "\r\n", 2);
}
static void put_upstream_host(const struct h1_request *r, const struct upstream_head *h,
                              struct buf *b, bool *ok)
{
    const struct target *t = h->t;

    buf_put_str(b, ok, "Host: ");
    if (h->ctx && h->ctx->host_set) /* a request hook's */
        buf_put(b, ok, h->ctx->host, h->ctx->host_len);
    else if (t->host_header)
        buf_put(b, ok, t->host_header, t->host_header_len);
    else if (t->preserve_host && r->host)
        buf_put(b, ok, r->host, r->host_len);
    else
        buf_put(b, ok, h->be->authority, h->be->authority_len);
    buf_put(b, ok, "\r\n", 2);
}
/* The client's end-to-end fields, less those written here and, when the cache answers the
 * client's conditionals itself, those. */
static void put_client_fields(const struct h1_request *r, const struct upstream_head *h,
                              struct buf *b, bool *ok)
{
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *f = &r->headers[i];
        switch (f->kind) {
        case H1_H_HOST:           /* ours */
        case H1_H_CONTENT_LENGTH: /* ours, normalised */
        case H1_H_EXPECT:         /* answered here (send_continue) */
        case H1_H_X_FORWARDED_FOR:
        case H1_H_X_FORWARDED_PROTO:
        case H1_H_X_FORWARDED_HOST:
            continue;
        default:
            if (h->request_id && h1_span_ieq(f->name, f->name_len, "x-request-id"))
                continue; /* ours goes instead (the client's value when it was kept) */
            if (!f->hop && (!h->pc || !pc_skip_request_field(h->pc, f)))
                buf_put_header(b, ok, f);
        }
    }
}
static void put_forwarded(const struct h1_request *r, const struct upstream_head *h, struct buf *b,
                          bool *ok)
{
    put_forwarded_for(h->peer, r, b, ok);
    buf_put_str(b, ok, h->tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    if (r->host) {
        buf_put_str(b, ok, "X-Forwarded-Host: ");
        buf_put(b, ok, r->host, r->host_len);
        buf_put(b, ok, "\r\n", 2);
    }
}
static void put_framing(const struct h1_request *r, struct buf *b, bool *ok)
{
    if (r->body == H1_BODY_CHUNKED) {
        buf_put_str(b, ok, "Transfer-Encoding: chunked\r\n");
    } else if (r->body == H1_BODY_LENGTH || r->method_id == H1_M_POST || r->method_id == H1_M_PUT ||
               r->method_id == H1_M_PATCH) {
        buf_put(b, ok, "Content-Length: ", 16);
        buf_put_u64(b, ok, r->content_length);
        buf_put(b, ok, "\r\n", 2);
    }
}
bool conn_write_upstream_head(const struct h1_request *r, struct upstream_head *h, struct buf *b)
{
    bool ok = true;

    buf_put(b, &ok, r->method, r->method_len);
    buf_put(b, &ok, " ", 1);
    buf_put(b, &ok, r->path, r->path_len);
    buf_put_str(b, &ok, " HTTP/1.1\r\n");
    put_upstream_host(r, h, b, &ok);
    put_client_fields(r, h, b, &ok);
    if (h->pc)
        pc_put_conditionals(h->pc, b, &ok);
    if (h->upgrade) /* a hook may have taken the Upgrade field away */
        h->upgrade = tunnel_put_request_fields(r, h->t, b, &ok);
    put_forwarded(r, h, b, &ok);
    if (h->request_id) {
        buf_put_str(b, &ok, "X-Request-Id: ");
        buf_put_str(b, &ok, h->request_id);
        buf_put(b, &ok, "\r\n", 2);
    }
    put_framing(r, b, &ok);
    buf_put(b, &ok, "\r\n", 2);
    return ok;
}

/* h1.h: HTTP/1.1 message parsing (RFC 9110/9112) for the engine.
 *
 * Pure functions over caller-owned buffers: no allocation, no I/O, no globals. Parsed spans
 * point into the caller's buffer and stay valid as long as it does. The request parser is
 * strict where leniency lets requests be smuggled past a backend (DESIGN.md "HTTP/1.1 rules");
 * the response parser is tolerant where that costs nothing.
 */
#ifndef RP_H1_H
#define RP_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Headers the engine treats specially. */
enum h1_hdr_kind {
    H1_H_OTHER = 0,
    H1_H_HOST,
    H1_H_CONTENT_LENGTH,
    H1_H_TRANSFER_ENCODING,
    H1_H_CONNECTION,
    H1_H_KEEP_ALIVE,
    H1_H_PROXY_CONNECTION,
    H1_H_TE,
    H1_H_TRAILER,
    H1_H_UPGRADE,
    H1_H_EXPECT,
    H1_H_X_FORWARDED_FOR,
    H1_H_X_FORWARDED_PROTO,
    H1_H_X_FORWARDED_HOST,
};

struct h1_header {
    const char *name;
    const char *value; /* leading and trailing OWS removed */
    uint32_t name_len;
    uint32_t value_len;
    uint8_t kind; /* enum h1_hdr_kind */
    bool hop;     /* hop-by-hop: a fixed hop-by-hop name, or named in Connection */
};

enum h1_body_kind {
    H1_BODY_NONE = 0,    /* no body (or Content-Length: 0) */
    H1_BODY_LENGTH,      /* content_length bytes */
    H1_BODY_CHUNKED,     /* chunked transfer coding */
    H1_BODY_UNTIL_CLOSE, /* responses only: body runs until the connection closes */
};

enum h1_method {
    H1_M_OTHER = 0,
    H1_M_GET,
    H1_M_HEAD,
    H1_M_POST,
    H1_M_PUT,
    H1_M_DELETE,
    H1_M_OPTIONS,
    H1_M_TRACE,
    H1_M_CONNECT,
    H1_M_PATCH,
};

struct h1_limits {
    uint32_t max_head_bytes; /* whole head incl. the blank line; over it: 431 */
    uint32_t max_headers;    /* field lines; over it: 431 (also capped by headers_cap) */
    uint32_t max_target_len; /* request-target; over it: 414 */
};

struct h1_request {
    const char *method;
    const char *target; /* as sent */
    const char *path;   /* origin-form path and query (for absolute-form: the part after the
                           authority, "/" if empty); equals target for origin-form */
    const char *host;   /* Host value, or the authority of an absolute-form target; NULL if none */
    uint32_t method_len, target_len, path_len, host_len;
    uint8_t method_id; /* enum h1_method */
    uint8_t minor;     /* 0 or 1 (HTTP/1.2+ is treated as 1.1) */
    uint8_t body;      /* enum h1_body_kind: NONE, LENGTH or CHUNKED */
    bool keep_alive;   /* per version and Connection tokens */
    bool expect_continue;
    uint64_t content_length;
    struct h1_header *headers; /* caller's array of headers_cap entries */
    uint32_t headers_cap;
    uint32_t n_headers;
    uint32_t head_len; /* bytes of the head, incl. the final CRLF CRLF */
};

struct h1_response {
    const char *reason;
    uint32_t reason_len;
    uint16_t status;
    uint8_t minor;
    uint8_t body;    /* enum h1_body_kind */
    bool keep_alive; /* the backend lets the connection be reused after this response */
    bool has_length; /* framed by Content-Length (no Transfer-Encoding): content_length is
                        its value, however many equal fields or list members carried it */
    uint64_t content_length;
    struct h1_header *headers;
    uint32_t headers_cap;
    uint32_t n_headers;
    uint32_t head_len;
};

/* Parses a request head from buf[0..len). The caller sets req->headers and req->headers_cap
 * first. Returns the head length (> 0) when a whole head was parsed, -EAGAIN when more input
 * is needed and the limits still allow it, or -EBADMSG with *status set to the answer: 400
 * (malformed, smuggling defences), 414 (target too long), 431 (head too large / too many
 * fields), 417 (unknown Expect), 501 (unknown transfer coding, e.g. "gzip, chunked"),
 * 505 (HTTP major version other than 1). Reads nothing past buf[len-1]. */
int h1_parse_request(const char *buf, size_t len, struct h1_request *req,
                     const struct h1_limits *lim, int *status);

/* Parses a response head. `req_method` is the method of the request it answers (HEAD
 * responses and 1xx/204/304 have no body). Returns as h1_parse_request; -EBADMSG means the
 * backend sent garbage (the engine answers 502). A 1xx response parses with body NONE; the
 * caller forwards it and parses the final response that follows. Both Content-Length and
 * Transfer-Encoding: chunked is accepted as chunked with keep_alive false. A response with
 * neither (and a status that has a body) is H1_BODY_UNTIL_CLOSE. */
int h1_parse_response(const char *buf, size_t len, struct h1_response *res,
                      const struct h1_limits *lim, enum h1_method req_method);

/* Incremental chunked-body decoder, both directions. Zero-initialise to start. */
struct h1_chunked {
    uint64_t remaining; /* bytes left in the current chunk's data */
    uint32_t line_len;  /* bytes of the current size line / trailer line seen so far */
    uint32_t trailer_bytes;
    uint8_t state;
};

/* Feeds buf[0..len) to the decoder. Returns the number of bytes of buf that belong to the
 * chunked body (framing included); bytes after it belong to the next message. When `out`
 * is not NULL the chunk data (framing removed) is written there and its size stored in
 * *out_len; `out` may equal `buf` (the output never overtakes the input). *done becomes true
 * once the last chunk and the trailer section have been consumed. Returns -EBADMSG on bad
 * framing: a size that is not hex, over 16 hex digits, a missing CRLF after data, bare LF or
 * CR, a chunk-ext line over 4096 bytes, a trailer section over 16 KiB. Chunk extensions are
 * skipped. Trailer fields are passed through as framing (not interpreted). */
ssize_t h1_chunked_feed(struct h1_chunked *c, const char *buf, size_t len, char *out,
                        size_t *out_len, bool *done);

/* The kind of a field name (H1_H_OTHER for any name the engine does not treat specially). */
uint8_t h1_header_kind(const char *name, size_t len);

/* Whether the comma-separated field value v[0..n) lists `lower` (a lowercase token),
 * ignoring case, whitespace and a "/version" after the token (Upgrade's protocol form). */
bool h1_list_has(const char *v, size_t n, const char *lower);

/* Case-insensitive comparison of a span with a NUL-terminated lowercase literal: util.h's
 * span_ieq, under the name the engine's callers use. */
bool h1_span_ieq(const char *s, size_t n, const char *lower);

/* The canonical reason phrase for a status code ("Not Found"), "Unknown" if none. */
const char *h1_reason(int status);

#endif /* RP_H1_H */

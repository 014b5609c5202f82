/* logfmt.h: access-log line formats (logfmt.c): "combined", "json" or a template of nginx-named
 * $variables, compiled once into a list of ops (literal text, variable), and the writer that
 * turns one request's values into one line with them, escaped so that no value can end the
 * line or forge a field. Pure: no I/O, no globals, any thread; a compiled format is immutable
 * and may be shared by every worker.
 */
#ifndef RP_LOGFMT_H
#define RP_LOGFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct logfmt;

#define LOGFMT_MAX_HEADERS 64 /* $http_* names in one format */

/* A span of bytes; p NULL: the value is missing ("-" in text, null in JSON). */
struct lf_span {
    const char *p;
    uint32_t len;
};

/* One attempt at a backend, for the $upstream_* lists ("addr1, addr2", as nginx). */
struct lf_try {
    const char *addr;   /* "127.0.0.1:8080" */
    uint16_t status;    /* its response's status, 502/504 when it failed; 0: none */
    int64_t connect_us; /* -1: not connected */
    int64_t resp_us;    /* from its start to its end; -1: unknown */
};

/* Everything a line can say about one request. Strings are borrowed for the call. */
struct lf_line {
    const char *remote_addr;           /* "" or NULL: missing */
    const char *time_local;            /* "10/Oct/2000:13:55:36 +0000" */
    const char *time_iso8601;          /* "2000-10-10T13:55:36+00:00" */
    struct lf_span method, path, host; /* method.p NULL: no request line was parsed */
    uint8_t minor;                     /* HTTP/1.minor */
    bool h2;                           /* HTTP/2.0 (minor is then not used) */
    const struct lf_span *hdrs;        /* [logfmt_n_headers(f)]: the values of the format's
                                          $http_* names, in logfmt_header_name() order */
    int status;
    uint64_t body_bytes;
    uint64_t request_us;
    const struct lf_try *tries;
    uint32_t n_tries;
    const char *cache_status; /* "HIT", ... or NULL */
    const char *ssl_protocol; /* "TLSv1.3" or NULL */
    const char *request_id;   /* NULL: none */
};

/* Compiles `spec`: "combined", "json", or a template ("$remote_addr [$time_local] ${status}").
 * Returns 0 and *out (free with logfmt_free), -EINVAL with a message in err ("unknown variable
 * $foo", "'$' without a variable name at offset 3", a control character but tab), or -ENOMEM. */
int logfmt_compile(const char *spec, struct logfmt **out, char *err, size_t errlen);
void logfmt_free(struct logfmt *f);

/* The request headers the format reads ($http_referer, $http_x_forwarded_for...): how many,
 * and the i-th as nginx names it (lowercase, '_' for '-': "x_forwarded_for"). */
uint32_t logfmt_n_headers(const struct logfmt *f);
const char *logfmt_header_name(const struct logfmt *f, uint32_t i);
/* Whether the field name[0..n) is the i-th one (case ignored, '-' matching '_'). */
bool logfmt_header_is(const struct logfmt *f, uint32_t i, const char *name, size_t n);
/* Whether the format prints $request_id. */
bool logfmt_uses_request_id(const struct logfmt *f);

/* Writes the line for l, '\n' included, to out[0..cap). Returns its length, or 0 when it does
 * not fit (out then holds garbage). A line holds no CR or LF but its final '\n', and no other
 * byte < 0x20 than the template's own tabs. */
size_t logfmt_write(const struct logfmt *f, const struct lf_line *l, char *out, size_t cap);

#endif /* RP_LOGFMT_H */

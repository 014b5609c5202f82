/* cache.h: the HTTP cache module (DESIGN.md "Cache"): RFC 9111 shared-cache policy (policy.c),
 * the sharded, SIEVE-evicted, reference-counted store with request collapsing (store.c), and
 * the gzip thread pool that attaches compressed or identity copies to stored entries
 * (compress.c). The engine parses HTTP heads itself and hands this module split values.
 *
 * Times: every time here is wall-clock Unix epoch milliseconds (CLOCK_REALTIME), the clock
 * that Date and Expires speak; HTTP seconds are converted at the edges. Ages and lifetimes are
 * milliseconds. Delta-seconds over 2^31 are clamped to 2^31 (RFC 9111 §1.2.2).
 */
#ifndef RP_CACHE_H
#define RP_CACHE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../engine/util.h" /* case folding and comparison (ascii_lower, span_ieq_span, ...) */

struct cache;
struct cache_entry;

/* ---- shared small helpers and types ------------------------------------------------------- */

static inline bool cache_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* One header field line: borrowed spans, not NUL-terminated. */
struct cache_field {
    const char *name;
    const char *value; /* OWS trimmed by the caller (h1.c does) */
    uint32_t name_len;
    uint32_t value_len;
};

/* Request methods as bits, for rules. */
enum {
    CACHE_M_GET = 1u << 0,
    CACHE_M_HEAD = 1u << 1,
    CACHE_M_POST = 1u << 2,
    CACHE_M_PUT = 1u << 3,
    CACHE_M_DELETE = 1u << 4,
    CACHE_M_PATCH = 1u << 5,
    CACHE_M_OPTIONS = 1u << 6,
    CACHE_M_OTHER = 1u << 7,
};
#define CACHE_M_DEFAULT (CACHE_M_GET | CACHE_M_HEAD)

#define CACHE_DELTA_MAX 2147483648LL /* 2^31 seconds: the clamp of RFC 9111 §1.2.2 */

/* ---- configuration ------------------------------------------------------------------------ */

struct cache_rule {
    const char *path_prefix;     /* NUL-terminated; the longest matching prefix wins */
    uint64_t max_age_ms;         /* TTL when the origin gives no explicit freshness; 0: default */
    uint32_t methods;            /* CACHE_M_* bits that use the cache here; 0: GET|HEAD */
    const uint16_t *status_only; /* statuses stored here; none: the default cacheable ones */
    uint32_t n_status_only;
    uint64_t max_bytes;    /* largest body stored here (replaces max_entry_size); 0: that */
    bool store_set_cookie; /* store responses carrying Set-Cookie (off: never) */
};

/* A zero field means the documented default, so `struct cache_config c = {0}` is valid. */
struct cache_config {
    uint64_t default_max_age_ms;        /* 5 min: TTL of admitted responses without one */
    uint64_t max_total_bytes;           /* 256 MiB: everything an entry costs, gzip copy too */
    uint32_t max_entries;               /* 10000 */
    uint64_t max_entry_size;            /* 4 MiB: body bytes of one response */
    bool pre_compress;                  /* gzip compressible entries in the background */
    int compress_level;                 /* 6 (1..12; 0 means 6) */
    uint32_t compress_min_len;          /* 256: smaller bodies are not compressed */
    uint64_t stale_while_revalidate_ms; /* 0: only the response's own directive */
    const struct cache_rule *rules;     /* copied by cache_new (strings and arrays too) */
    uint32_t n_rules;
};

/* Fills c with every default (no rules). Any thread. */
void cache_config_defaults(struct cache_config *c);

/* ---- policy.c: RFC 9111 pure functions ------------------------------------------------------ */

enum {
    CACHE_CC_NO_CACHE = 1u << 0, /* also with a field list: treated as plain no-cache */
    CACHE_CC_NO_STORE = 1u << 1,
    CACHE_CC_PRIVATE = 1u << 2, /* also with a field list: private for a shared cache */
    CACHE_CC_MUST_REVALIDATE = 1u << 3,
    CACHE_CC_PROXY_REVALIDATE = 1u << 4,
    CACHE_CC_PUBLIC = 1u << 5,
    CACHE_CC_ONLY_IF_CACHED = 1u << 6,
    CACHE_CC_MAX_STALE_ANY = 1u << 7, /* max-stale without a value */
    CACHE_CC_NO_TRANSFORM = 1u << 8,
    CACHE_CC_IMMUTABLE = 1u << 9,
};

/* Parsed Cache-Control. Delta-seconds fields are -1 when absent, else 0..2^31.
 * Invalid values (not digits after optional quotes): max-age and s-maxage become 0 (stale, as
 * RFC 9111 §4.2.1 encourages); max-stale, min-fresh, stale-while-revalidate and
 * stale-if-error are ignored (a window nobody validly granted is not granted).
 * Duplicates: the smaller value wins (the most restrictive, §4.2.1). */
struct cache_cc {
    uint32_t flags;
    int64_t max_age, s_maxage, max_stale, min_fresh, swr, sie;
};

/* Sets every field to absent. Any thread. */
void cache_cc_init(struct cache_cc *cc);
/* Adds the directives of one Cache-Control field line to cc (call once per line: lines
 * combine as if joined by commas). Unknown directives are skipped. Any thread, no allocation. */
void cache_cc_parse(struct cache_cc *cc, const char *v, size_t n);

/* Parses an HTTP-date (IMF-fixdate, RFC 850 with a two-digit year taken as 1970..2069, or
 * asctime) into Unix seconds. Returns 0 or -EINVAL. Any thread. */
int cache_parse_http_date(const char *s, size_t n, int64_t *out);

/* What the cache needs of a response head. Spans are borrowed from the fields. */
struct cache_resp_meta {
    uint16_t status;
    struct cache_cc cc;
    bool has_date, has_expires, expires_valid, has_age, has_lm, has_etag;
    bool set_cookie, vary_star, has_vary;
    bool gzip_encoded;  /* Content-Encoding: gzip (or x-gzip) alone */
    bool other_encoded; /* any other content coding: never transformed */
    bool compressible;  /* Content-Type is one cache_compressible_type accepts */
    int64_t date_s, expires_s, age_s, lm_s;
    int64_t content_length; /* -1: absent */
    const char *etag;
    uint32_t etag_len;
};

/* Scans response fields into m. Returns 0. Any thread. */
int cache_resp_meta_parse(struct cache_resp_meta *m, uint16_t status, const struct cache_field *f,
                          uint32_t n);

/* What the cache needs of a request head. `fields` stays borrowed (conditionals, Vary). */
struct cache_req_meta {
    uint32_t method; /* one CACHE_M_* bit */
    struct cache_cc cc;
    bool no_cache;      /* Cache-Control: no-cache, or Pragma: no-cache without Cache-Control */
    bool authorization; /* Authorization present */
    bool accepts_gzip;  /* Accept-Encoding allows gzip (absent header: no) */
    bool has_inm, has_ims;
    int64_t ims_s; /* valid If-Modified-Since, Unix seconds */
    const struct cache_field *fields;
    uint32_t n_fields;
};

/* Scans request fields into m. method_bit: a CACHE_M_* bit. Returns 0. Any thread. */
int cache_req_meta_parse(struct cache_req_meta *m, uint32_t method_bit, const struct cache_field *f,
                         uint32_t n);

/* The CACHE_M_* bit of a method token ("GET" -> CACHE_M_GET). Case-sensitive. */
uint32_t cache_method_bit(const char *m, size_t n);

/* Freshness lifetime for a shared cache (§4.2.1): s-maxage, else max-age, else Expires minus
 * Date (Date absent: minus response_ms; Expires invalid: 0). Returns true and sets
 * *lifetime_ms when the response has explicit freshness, false when it has none. */
bool cache_freshness_lifetime(const struct cache_resp_meta *m, int64_t response_ms,
                              int64_t *lifetime_ms);

/* Everything freshness decisions need; stored in each entry. */
enum {
    CACHE_F_NO_CACHE = 1u << 0,        /* response no-cache: always revalidate */
    CACHE_F_NO_STALE = 1u << 1,        /* must-revalidate, proxy-revalidate or s-maxage */
    CACHE_F_MUST_REVALIDATE = 1u << 2, /* must-revalidate itself: 504 rather than stale */
};
struct cache_fresh {
    int64_t request_ms, response_ms; /* when the request went out / the response head came */
    int64_t date_ms;                 /* Date, or response_ms when absent */
    int64_t age_s;                   /* Age header, -1 if absent */
    int64_t lifetime_ms;
    int64_t swr_ms, sie_ms; /* stale-while-revalidate / stale-if-error windows, 0: none */
    uint32_t flags;         /* CACHE_F_* */
};

/* Current age (§4.2.3) in ms: max(apparent_age, Age + response_delay) + resident_time, with
 * apparent_age = max(0, response_ms - date_ms) (a Date from the future counts as 0) and
 * negative delays and resident times (clock steps) counted as 0. Any thread. */
int64_t cache_current_age(const struct cache_fresh *f, int64_t now_ms);

/* Why a response is stored or not; cache_store_reason_str names it for logs and tests. */
enum cache_store_reason {
    CACHE_STORE_OK = 0,
    CACHE_NS_METHOD,        /* not GET (HEAD responses are not stored), or a rule's methods */
    CACHE_NS_HOOK,          /* a hook forbade it */
    CACHE_NS_PARTIAL,       /* 206: no range support */
    CACHE_NS_STATUS,        /* status not understood, or not in the rule's status_only */
    CACHE_NS_NO_STORE_REQ,  /* request Cache-Control: no-store */
    CACHE_NS_NO_STORE,      /* response Cache-Control: no-store */
    CACHE_NS_PRIVATE,       /* response Cache-Control: private */
    CACHE_NS_AUTHORIZATION, /* Authorization without public, s-maxage or must-revalidate */
    CACHE_NS_SET_COOKIE,    /* Set-Cookie, and neither a hook nor the rule allows it */
    CACHE_NS_VARY_STAR,     /* Vary: * */
    CACHE_NS_NO_FRESHNESS,  /* no explicit freshness and no rule or hook admits it */
    CACHE_NS_STALE,         /* lifetime 0, no validator, no stale window: useless */
    CACHE_NS_TOO_LARGE,     /* Content-Length over the entry limit */
    CACHE_NS_ENCODING,      /* a content coding other than gzip */
};
const char *cache_store_reason_str(enum cache_store_reason r);

/* What an operator rule or a hook says about one exchange. */
struct cache_admit {
    const struct cache_rule *rule; /* cache_rule_match's answer, or NULL */
    int8_t hook;                   /* +1: a hook asks to store, -1: forbids, 0: no opinion */
    uint64_t hook_ttl_ms;          /* with hook +1: TTL without explicit freshness; 0: rule's */
};

/* cache_storable's answer beside the reason. */
struct cache_verdict {
    int64_t lifetime_ms; /* freshness lifetime to store */
    bool explicit_fresh; /* lifetime came from the response */
    uint64_t max_bytes;  /* body limit for this entry */
};

/* Decides whether a shared cache may store this response (§3, §3.5) and with which lifetime.
 * Set-Cookie: not stored unless hook +1 or the rule's store_set_cookie (public/s-maxage alone
 * do not admit it: a session cookie would be handed to every client). Without explicit
 * freshness a response is stored only when a rule or a hook (+1) admits it and its status is
 * heuristically cacheable (200 203 204 300 301 308 404 405 410 414 501; 206 never: no ranges)
 * or listed in the rule's status_only; the TTL is hook_ttl_ms, else the rule's max_age_ms,
 * else cfg->default_max_age_ms. No Last-Modified heuristic. Fills *out when the answer is
 * CACHE_STORE_OK. response_ms: when the response head arrived (Expires without Date counts
 * from it). Any thread. */
enum cache_store_reason cache_storable(const struct cache_config *cfg,
                                       const struct cache_req_meta *rq,
                                       const struct cache_resp_meta *rs,
                                       const struct cache_admit *ad, int64_t response_ms,
                                       struct cache_verdict *out);

/* Fills the freshness record of a response about to be stored. cfg_swr_ms applies when the
 * response has no stale-while-revalidate of its own. Any thread. */
void cache_fresh_init(struct cache_fresh *f, const struct cache_resp_meta *rs,
                      const struct cache_verdict *v, int64_t request_ms, int64_t response_ms,
                      uint64_t cfg_swr_ms);

enum cache_serve {
    CACHE_FRESH = 0,       /* serve it (fresh, or stale the client accepts: max-stale) */
    CACHE_STALE_SWR,       /* serve it and revalidate in the background (one request) */
    CACHE_MUST_REVALIDATE, /* ask the origin (conditionally) before using it */
};

struct cache_decision {
    uint8_t serve;  /* enum cache_serve */
    bool stale;     /* the entry is past its lifetime */
    bool sie_ok;    /* if revalidation fails (5xx, unreachable), serving it is allowed */
    int64_t age_ms; /* current age, for the Age header (seconds = age_ms / 1000) */
};

/* Whether a stored response satisfies a request now (§4, §4.2.4, RFC 5861). Request no-cache
 * or an age not below max-age (max-age=0 always) force revalidation, as does response
 * no-cache; min-fresh needs that much lifetime left; a stale entry is served when max-stale
 * allows, else within the SWR window (as CACHE_STALE_SWR), unless must-revalidate,
 * proxy-revalidate or s-maxage forbid serving stale. sie_ok: fresh, or stale within the
 * response's or the request's stale-if-error and not forbidden. With only-if-cached the engine
 * answers 504 instead of contacting the origin. Any thread. */
void cache_satisfy(const struct cache_fresh *f, const struct cache_req_meta *rq, int64_t now_ms,
                   struct cache_decision *out);

/* Whether the answer to a GET/HEAD whose request is rq is 304 Not Modified given the stored
 * ETag (may be NULL) and Last-Modified (has_lm, lm_s). If-None-Match (weak comparison,
 * lists, `*`) wins over If-Modified-Since (§13.2.2). Any thread. */
bool cache_not_modified(const struct cache_req_meta *rq, const char *etag, size_t etag_len,
                        bool has_lm, int64_t lm_s);

/* Writes the weak form of etag to out (`"a"` -> `W/"a"`; weak ones unchanged). Returns the
 * length, or -ENOSPC when cap is too small (etag_len + 2 always suffices). Any thread. */
int cache_etag_weaken(const char *etag, size_t etag_len, char *out, size_t cap);

/* Whether one Accept-Encoding value allows gzip: gzip or x-gzip with q > 0, or `*` with
 * q > 0 and gzip not named; `gzip;q=0` refuses even with `*`. Any thread. */
bool cache_accepts_gzip(const char *v, size_t n);

/* Whether a Content-Type is worth compressing: text/x, application/json, +json,
 * application/javascript, application/x-javascript, application/xml, +xml, image/svg+xml.
 * Parameters are ignored; case-insensitive. Any thread. */
bool cache_compressible_type(const char *v, size_t n);

/* Deep-copies src (NULL: defaults) into dst, zero fields replaced by their defaults. Returns 0
 * or -ENOMEM (dst untouched). Release with cache_config_release. Any thread. */
int cache_config_copy(struct cache_config *dst, const struct cache_config *src);
void cache_config_release(struct cache_config *c);

/* The rule whose path_prefix is the longest prefix of path, or NULL. The rule belongs to cfg.
 * Any thread. */
const struct cache_rule *cache_rule_match(const struct cache_config *cfg, const char *path,
                                          size_t path_len);
/* Whether method_bit uses the cache under rule (NULL rule: GET and HEAD). */
bool cache_rule_allows(const struct cache_rule *rule, uint32_t method_bit);

/* ---- store.c: keys, entries, lookup, insert, purge, collapsing ---------------------------- */

/* Builds the key: "G" (GET; HEAD maps to GET) + lowercase host + " " + path-with-query.
 * Returns its length, -ENOSPC if cap is too small, -EINVAL for methods never cached. The
 * caller removes a default port from host first. Any thread. */
int cache_key_build(char *out, size_t cap, uint32_t method_bit, const char *host, size_t host_len,
                    const char *path, size_t path_len);

/* A borrowed span; n -1 means "absent" where that matters. */
struct cache_span {
    const char *p;
    int64_t n;
};

/* The normalised value of request header `name` for Vary matching: every line's list elements
 * trimmed, inner whitespace runs collapsed to one space, empty elements dropped, joined by ",".
 * Writes to out when not NULL. Returns the length, or -1 when no line has that name (absent
 * and empty differ). Any thread. */
int64_t cache_vary_norm(const struct cache_field *f, uint32_t n, const char *name, size_t nlen,
                        char *out);
/* The field names a response varies on (every Vary line; accept-encoding dropped when
 * skip_ae), sorted case-insensitively and deduplicated, in a malloc'ed array (*out, caller
 * frees; NULL when none). Returns the count or -ENOMEM. Spans point into f. Any thread. */
int cache_vary_names(const struct cache_field *f, uint32_t n, bool skip_ae,
                     struct cache_span **out);

/* A refcounted byte buffer: bodies are shared between an entry and its refreshed successor. */
struct cache_body {
    atomic_uint refs;
    uint32_t pad;
    size_t len;
    char data[];
};

/* Background copy states (struct cache_entry.copy_state). */
enum cache_copy_state {
    CACHE_COPY_NONE = 0,  /* not queued: not eligible, or the queue was full */
    CACHE_COPY_QUEUED,    /* a compression thread will look at it */
    CACHE_COPY_READY,     /* gzip or identity copy attached */
    CACHE_COPY_NOT_WORTH, /* gzip was not smaller than identity */
    CACHE_COPY_TOO_BIG,   /* identity copy over max_entry_size, or no room in the budget */
    CACHE_COPY_FAILED,    /* corrupt gzip from the origin, or out of memory */
};

/* One stored response variant. Immutable once published, except the atomics. Lifetime: the
 * store holds one reference while it is linked; cache_lookup and cache_refresh hand out more.
 * All pointers point into the entry's own block or its refcounted bodies and stay valid until
 * the caller's last cache_entry_unref. */
struct cache_entry {
    atomic_uint refs;
    atomic_uint hits;
    atomic_bool visited;               /* SIEVE: set by hits without the lock's help */
    atomic_uchar copy_state;           /* enum cache_copy_state */
    _Atomic(struct cache_body *) copy; /* gzip copy (identity body) or identity copy
                                          (gzip body); load with cache_entry_copy() */
    uint32_t max_hits;                 /* 0: unlimited */
    uint32_t min_len;                  /* compress_min_len for this entry, 0: cfg's */
    uint16_t status;
    bool gzip_body;    /* body is gzip from the origin (Content-Encoding: gzip in fields) */
    bool compressible; /* content type worth gzip */
    bool want_gzip;    /* queue for compression */
    bool linked;       /* in the store (shard lock) */
    uint64_t hash;
    const char *key;
    uint32_t key_len;
    const char *domain;               /* NUL-terminated, "" if none */
    const struct cache_field *fields; /* stored response fields, hop-by-hop already removed */
    uint32_t n_fields;
    uint32_t n_vary;
    const char *const *vary_names; /* lowercase, sorted, deduplicated */
    const uint32_t *vary_name_lens;
    const char *const *vary_values; /* normalised request values, NULL: header absent */
    const uint32_t *vary_value_lens;
    const char *etag; /* NULL if none */
    uint32_t etag_len;
    bool has_lm;
    int64_t lm_s;
    struct cache_fresh fresh;
    struct cache_body *body;
    size_t charge;      /* bytes counted in the budget (shard lock once linked) */
    size_t copy_charge; /* part of charge that is the background copy */
    /* store-private links (shard lock) */
    struct cache_entry *hnext, *lprev, *lnext, *gc_next;
    struct cache *owner;
};

/* Takes one more reference. Any thread. */
void cache_entry_ref(const struct cache_entry *e);
/* Drops a reference; the last one frees the entry (its bodies when they are unshared).
 * Any thread; NULL is ignored. */
void cache_entry_unref(const struct cache_entry *e);
/* The background copy (gzip of an identity body, or identity of a gzip body) when READY, else
 * NULL; *len gets its size. Borrowed for as long as the caller holds its reference to e.
 * Any thread (acquire load pairs with compress.c's release store). */
const char *cache_entry_copy(const struct cache_entry *e, size_t *len);
/* The stored value of the first field named `name` (lowercase literal), or NULL. */
const char *cache_entry_field(const struct cache_entry *e, const char *name, uint32_t *len);

struct cache_builder;

/* Everything cache_entry_new copies (nothing stays borrowed after it returns). */
struct cache_entry_params {
    uint32_t method_bit; /* of the request: GET (HEAD responses are not stored) */
    const char *host;    /* without default port */
    uint32_t host_len;
    const char *path; /* path and query */
    uint32_t path_len;
    const char *domain; /* configured domain name for purge-by-domain; NULL: none */
    uint16_t status;
    const struct cache_field *resp_fields; /* end-to-end fields only (no hop-by-hop) */
    uint32_t n_resp_fields;
    const struct cache_field *req_fields; /* request fields: Vary values come from here */
    uint32_t n_req_fields;
    const struct cache_resp_meta *meta;  /* cache_resp_meta_parse of resp_fields */
    const struct cache_verdict *verdict; /* cache_storable's */
    int64_t request_ms, response_ms;
    uint32_t max_hits;              /* 0: unlimited */
    int8_t compress;                /* +1: gzip copy wanted, -1: never, 0: cfg pre_compress */
    uint32_t compress_min_len;      /* smallest body worth a gzip copy; 0: cfg compress_min_len */
    bool vary_skip_accept_encoding; /* the cache picks gzip itself: drop it from Vary */
};

/* Starts building an entry. Returns the builder or NULL (out of memory, or a method that is
 * never stored). The caller owns it until cache_insert or cache_entry_abort. Any thread. */
struct cache_builder *cache_entry_new(struct cache *c, const struct cache_entry_params *p);
/* Appends body bytes. Returns 0, or -EFBIG when the body would pass verdict->max_bytes (or
 * max_total_bytes), -ENOMEM; after an error the only valid call is cache_entry_abort. */
int cache_entry_append(struct cache_builder *b, const void *data, size_t n);
/* Frees a builder without storing it. NULL is ignored. */
void cache_entry_abort(struct cache_builder *b);
/* Publishes the entry, replacing the variant with the same key and Vary values. Consumes b in
 * every case. Reserves its bytes and an entry slot first, evicting (SIEVE, own shard first,
 * then the others, one lock at a time) until it fits. Queues it for compression when it
 * qualifies. Returns 0, -EFBIG (cannot fit even in an empty cache), -ENOSPC (nothing left to
 * evict), -EINVAL (an append had failed). If out is not NULL and the insert succeeded, *out gets a
 * reference for the caller. Any thread. */
int cache_insert(struct cache *c, struct cache_builder *b, const struct cache_entry **out);

/* Creates the cache (copies cfg, NULL: defaults). Returns NULL when out of memory. Start-up. */
struct cache *cache_new(const struct cache_config *cfg);
/* Stops the compression threads, drops every entry and frees the cache; entries still
 * referenced stay valid until their last unref. No fill may be in flight. Shutdown. */
void cache_free(struct cache *c);
/* The cache's own copy of its configuration (defaults filled). */
const struct cache_config *cache_config_of(const struct cache *c);
/* Publishes new settings (copied): rules, limits and compression for what starts after it;
 * the entries stay (a lower byte or entry budget evicts as the next ones are stored). One
 * caller at a time (the server's reload); any thread. Returns 0 or -ENOMEM (nothing
 * changed). */
int cache_reconfigure(struct cache *c, const struct cache_config *cfg);

/* A request as the lookup sees it; borrowed for the call. */
struct cache_req {
    uint32_t method_bit; /* GET or HEAD; others always miss */
    const char *host;
    uint32_t host_len;
    const char *path;
    uint32_t path_len;
    const struct cache_req_meta *meta; /* parsed request fields (Vary, freshness); NULL: none */
};

/* Finds the variant matching the request's Vary values and decides with cache_satisfy. Returns
 * a referenced entry (caller unrefs) or NULL; *d gets the decision. A FRESH or STALE_SWR answer
 * counts as a hit (and toward max_hits: the hit that reaches it removes the entry); NULL or
 * MUST_REVALIDATE counts as a miss. The shard lock is held only while searching. Any thread. */
const struct cache_entry *cache_lookup(struct cache *c, const struct cache_req *rq, int64_t now_ms,
                                       struct cache_decision *d);

/* Replaces entry `old` after a 304 (§4.3.4): a new entry sharing old's bodies, with old's
 * fields updated by the 304's (same-name lines replaced, Content-Length kept), freshness
 * recomputed from the merged fields with the new times (old lifetime when still not explicit).
 * Returns 0 and a referenced *out (even when old was purged meanwhile: then *out is not
 * stored), or -ENOMEM / -ENOSPC. Any thread. */
int cache_refresh(struct cache *c, const struct cache_entry *old, const struct cache_field *fields,
                  uint32_t n, int64_t request_ms, int64_t response_ms,
                  const struct cache_entry **out);

/* Removes every variant of one URL; method "GET" or "HEAD" (others: nothing). Returns whether
 * something was removed. Referenced entries live on until unref. Any thread. */
bool cache_purge_key(struct cache *c, const char *method, const char *host, size_t host_len,
                     const char *path, size_t path_len);
/* Removes every entry stored for `domain` (the name given in cache_entry_params). Returns the
 * count. Any thread. */
uint64_t cache_purge_domain(struct cache *c, const char *domain);
/* Removes everything. Returns the count. Any thread. */
uint64_t cache_purge_all(struct cache *c);
/* After a successful unsafe request (POST, PUT, DELETE, PATCH) to host+path: removes the URL's
 * entries (§4.4). Returns the count. Any thread. */
uint64_t cache_invalidate(struct cache *c, const char *host, size_t host_len, const char *path,
                          size_t path_len);

struct cache_stats {
    uint64_t entries, bytes, hits, misses, stores, evictions, purges, invalidations;
    uint64_t refused;    /* inserts that could not fit */
    uint64_t gzip_bytes; /* bytes of attached background copies (part of bytes) */
};
/* A snapshot (each counter exact, the set not atomic together). Any thread. */
void cache_get_stats(struct cache *c, struct cache_stats *out);

/* ---- request collapsing ---------------------------------------------------------------------
 * The first miss on a key becomes the filler and asks the origin; later misses register a
 * waiter and get called back once when the filler finishes or gives up. Callbacks run on the
 * filler's thread, after the shard lock is released; the engine posts from them to its own
 * worker (fn must not block or call cache_fill_* for the same key). Bounded wait: the engine
 * arms its own timer; on expiry it calls cache_fill_cancel_wait and, if that returns true,
 * goes to the origin itself. Fill records are keyed by URL (not Vary): a woken waiter looks
 * up again and, on a miss, goes to the origin (or tries to become the filler). */

enum cache_fill_result { CACHE_FILL_DONE = 1, CACHE_FILL_ABANDONED = 2 };
typedef void (*cache_wake_fn)(void *arg, unsigned worker, int result);

/* Caller-owned waiter (embed it in the exchange); set fn, arg, worker before cache_fill_begin.
 * Must stay allocated until its callback ran or cancel returned true. */
struct cache_waiter {
    cache_wake_fn fn;
    void *arg;
    unsigned worker;
    struct cache_waiter *next, *prev; /* private */
    struct cache_fill *fill;          /* private: non-NULL while registered */
    unsigned shard;                   /* private */
};

enum cache_fill_begin_result { CACHE_FILLER = 0, CACHE_WAIT = 1, CACHE_BUSY = 2 };

/* Claims the fill of a URL. Returns CACHE_FILLER with *fill set (the caller must end it with
 * cache_fill_end), CACHE_WAIT when another fill is in flight and w was registered, CACHE_BUSY
 * when one is in flight and w is NULL (for SWR: someone is already revalidating), or -ENOMEM /
 * -EINVAL. Any thread. */
int cache_fill_begin(struct cache *c, uint32_t method_bit, const char *host, size_t host_len,
                     const char *path, size_t path_len, struct cache_waiter *w,
                     struct cache_fill **fill);
/* Ends a fill: frees the record and calls every waiter's fn once with result (DONE after a
 * store, ABANDONED otherwise) before returning. Filler's thread. */
void cache_fill_end(struct cache *c, struct cache_fill *fill, enum cache_fill_result result);
/* Unregisters a waiter. Returns true if it was still waiting (fn will never be called), false
 * if its callback already ran or is running now (keep w until it has). Any thread. */
bool cache_fill_cancel_wait(struct cache *c, struct cache_waiter *w);

/* ---- compress.c: the compression pool ------------------------------------------------------ */

/* Starts n compression threads (0: none; calling again adds none). Returns 0 or -errno.
 * Start-up thread. Entries inserted while no thread runs are not queued. Identity copies of
 * origin-gzipped bodies are made whatever pre_compress says (non-gzip clients need them),
 * bounded by max_entry_size; past it the state is TOO_BIG and the engine must not serve the
 * entry to clients that refuse gzip (it goes to the origin instead). */
int cache_compress_start(struct cache *c, unsigned nthreads);
/* Stops and joins the threads, dropping queued work. Called by cache_free. */
void cache_compress_stop(struct cache *c);
/* Whether the queue is empty and no thread is working. Any thread. */
bool cache_compress_idle(struct cache *c);
/* Blocks until cache_compress_idle (tests, admin). Not for I/O threads. */
void cache_compress_wait_idle(struct cache *c);

/* store.c <-> compress.c (not for the engine). The pool lives inside struct cache. */
struct cache_cpool {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, idle_cv;
    struct cache_entry **q; /* ring of referenced entries */
    uint32_t cap, head, n;
    unsigned busy; /* threads holding a batch */
    bool stop;
    unsigned nthreads;
    pthread_t *threads;
};
struct cache_cpool *cache_cpool_of(struct cache *c);
int cache_cpool_init(struct cache_cpool *p);
void cache_cpool_fini(struct cache_cpool *p);
/* Queues e for a compression thread (taking a reference); false when no thread runs. A
 * full queue drops its oldest job (that entry's copy state goes back to NONE). */
bool cache_compress_enqueue(struct cache *c, struct cache_entry *e);
int cache_attach_copy(struct cache *c, struct cache_entry *e, struct cache_body *copy);
struct cache_body *cache_body_new(size_t len);
void cache_body_unref(struct cache_body *b);
void cache_set_copy_state(struct cache_entry *e, enum cache_copy_state s);

#endif /* RP_CACHE_H */

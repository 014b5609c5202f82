/* hooks.h: the engine's side of interception hooks and local endpoints: the registered hook
 * lists, editable header lists (rp_headers), answers the proxy builds itself (rp_response)
 * and the local endpoint table. exchange.c calls into it only when something is registered.
 */
#ifndef RP_HOOKS_H
#define RP_HOOKS_H

#include <stdbool.h>
#include <stdint.h>

#include "h1.h"
#include "ringproxy.h"

#define HDRS_MAX_ADDED 64
#define HDRS_ARENA (8u * 1024)
#define RESP_MAX_BODY (8u * 1024 * 1024)
#define LOCAL_MAX_PARAMS 8

enum hdrs_role {
    HDRS_REQUEST,  /* a request going upstream */
    HDRS_RESPONSE, /* a backend's response going to the client */
    HDRS_LOCAL,    /* an answer the proxy makes */
    HDRS_READONLY, /* a local endpoint's request */
};

/* A head's fields as parsed, copied into an editable array on the first edit. Added names
 * and values live in `arena` (fixed size, so pointers into it stay valid). */
struct rp_headers {
    const struct h1_header *orig;
    uint32_t n_orig;
    struct h1_header *v; /* NULL until the first edit; then every field, hop-by-hop too */
    uint32_t n, cap;
    char *arena;
    uint32_t arena_used;
    uint32_t added;
    uint8_t role; /* enum hdrs_role */
};

void hdrs_init(struct rp_headers *h, const struct h1_header *fields, uint32_t n,
               enum hdrs_role role);
void hdrs_fini(struct rp_headers *h);

/* The fields as they now are (the parsed array while unedited). */
static inline const struct h1_header *hdrs_fields(const struct rp_headers *h, uint32_t *n)
{
    *n = h->v ? h->n : h->n_orig;
    return h->v ? h->v : h->orig;
}

struct rp_response {
    int status;
    struct rp_headers h;
    char *body;
    uint32_t body_len, body_cap;
};

void resp_init(struct rp_response *r, int status);
void resp_fini(struct rp_response *r);

/* Per-call state behind a hook's or handler's argument (its ctx_ field). */
struct rp_hook_ctx {
    /* request hooks */
    char host[256];
    uint32_t host_len;
    bool host_set;
    struct rp_response *answer; /* made by rp_proxy_request_respond */
    /* local endpoints: the matched route's parameters */
    const struct local_route *route;
    rp_str params[LOCAL_MAX_PARAMS];
    char *decoded; /* percent-decoded parameter values, malloc'ed on demand */
    /* response hooks: rp_cache_this / rp_dont_cache */
    int8_t cache_hook; /* +1 store, -1 never, 0 no opinion */
    int8_t cache_compress;
    uint32_t cache_max_hits;
    uint32_t cache_min_len;
    uint64_t cache_ttl_ms;
};

static inline void hook_ctx_init(struct rp_hook_ctx *ctx)
{
    ctx->host_len = 0;
    ctx->host_set = false;
    ctx->answer = NULL;
    ctx->route = NULL;
    ctx->decoded = NULL;
    ctx->cache_hook = 0;
    ctx->cache_compress = 0;
    ctx->cache_max_hits = 0;
    ctx->cache_min_len = 0;
    ctx->cache_ttl_ms = 0;
}

/* Frees what a context holds (decoded parameters, a rejection's answer). */
void hook_ctx_fini(struct rp_hook_ctx *ctx);

struct hook {
    union {
        rp_proxy_request_fn req;
        rp_proxy_response_fn resp;
        rp_proxy_error_fn err;
    } fn;
    void *user;
};

struct hook_list {
    struct hook *v;
    uint32_t n;
};

enum seg_kind { SEG_LIT, SEG_PARAM, SEG_REST };

struct local_seg {
    uint8_t kind; /* enum seg_kind */
    char *text;   /* the literal, or the parameter's name */
    uint32_t len;
};

struct local_route {
    char *method;
    char *pattern;
    struct local_seg *segs;
    uint32_t n_segs;
    uint32_t n_lit; /* literal segments: more wins a tie between matches */
    rp_handler_fn fn;
    void *user;
};

struct hooks {
    struct hook_list req, resp, err;
    struct local_route *local;
    uint32_t n_local;
};

void hooks_fini(struct hooks *hk);

/* Adds a local endpoint to a table (rp_handle's work, also for the admin listener's). */
int local_add(struct hooks *hk, const char *method, const char *pattern, rp_handler_fn fn,
              void *user);

enum local_match { LOCAL_NONE, LOCAL_FOUND, LOCAL_WRONG_METHOD };

/* Matches path[0..len) (no query) and a method against the local endpoints. LOCAL_FOUND sets
 * *out and fills ctx->params; LOCAL_WRONG_METHOD writes the allowed methods, comma-separated,
 * to allow[0..cap). HEAD matches a GET route. */
enum local_match local_match(const struct hooks *hk, const char *method, uint32_t method_len,
                             const char *path, uint32_t len, const struct local_route **out,
                             struct rp_hook_ctx *ctx, char *allow, size_t cap);

#endif /* RP_HOOKS_H */

/* test_cache.c: the cache module against what cache.h promises: Cache-Control, HTTP-date,
 * freshness and age arithmetic, storability reasons, serve/revalidate decisions, 304s,
 * Accept-Encoding and content types (policy.c); keys, Vary variants, SIEVE under a scan,
 * budgets, max_hits, purges and refcounts, collapsing, 304 refresh (store.c); gzip and
 * identity copies (compress.c); and a 4-thread stress run. Build it with ASan+UBSan too.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libdeflate.h>

#include "cache.h"

#define T0 784111777000LL /* Sun, 06 Nov 1994 08:49:37 GMT, in ms */

/* ---- helpers ------------------------------------------------------------------------------ */

/* A copy of s that ends right before a PROT_NONE page: reading past it crashes. */
struct guard {
    char *map;
    size_t len;
};

static const char *guarded(struct guard *g, const char *s)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = strlen(s);
    size_t pages = (n + pg - 1) / pg + 1;
    g->len = (pages + 1) * pg;
    g->map = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->map != MAP_FAILED);
    assert_int_equal(mprotect(g->map + pages * pg, pg, PROT_NONE), 0);
    char *p = g->map + pages * pg - n;
    memcpy(p, s, n);
    return p;
}

static void unguard(struct guard *g)
{
    munmap(g->map, g->len);
}

static void cc_of(struct cache_cc *cc, const char *s)
{
    struct guard g;
    const char *p = guarded(&g, s);
    cache_cc_init(cc);
    cache_cc_parse(cc, p, strlen(s));
    unguard(&g);
}

static int date_of(const char *s, int64_t *t)
{
    struct guard g;
    const char *p = guarded(&g, s);
    int rc = cache_parse_http_date(p, strlen(s), t);
    unguard(&g);
    return rc;
}

struct hdrs {
    struct cache_field f[32];
    uint32_t n;
};

/* "Name: value" lines, NULL-terminated. The strings must outlive h. */
static void mk(struct hdrs *h, const char *const *lines)
{
    h->n = 0;
    for (; lines && *lines; lines++) {
        const char *c = strchr(*lines, ':');
        const char *v = c + 1;
        while (*v == ' ')
            v++;
        h->f[h->n++] = (struct cache_field){*lines, v, (uint32_t)(c - *lines), (uint32_t)strlen(v)};
    }
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const *)NULL)

static struct cache_resp_meta resp(uint16_t st, const char *const *lines)
{
    struct hdrs h;
    struct cache_resp_meta m;
    mk(&h, lines);
    cache_resp_meta_parse(&m, st, h.f, h.n);
    m.etag = NULL; /* spans point into h: gone */
    return m;
}

/* Request meta whose fields live in *h (caller's). */
static struct cache_req_meta req(struct hdrs *h, uint32_t method, const char *const *lines)
{
    struct cache_req_meta m;
    mk(h, lines);
    cache_req_meta_parse(&m, method, h->f, h->n);
    return m;
}

/* Stores a GET response for host+path. Returns the cache_insert result; *out gets a ref. */
static int put_full(struct cache *c, const char *host, const char *path, const char *const *rlines,
                    const char *const *qlines, const void *body, size_t len, int64_t now,
                    const char *domain, uint32_t max_hits, const struct cache_entry **out)
{
    struct hdrs rh, qh;
    struct cache_resp_meta rm;
    struct cache_req_meta qm = req(&qh, CACHE_M_GET, qlines);
    struct cache_verdict v;
    struct cache_admit ad = {0};
    mk(&rh, rlines);
    cache_resp_meta_parse(&rm, 200, rh.f, rh.n);
    enum cache_store_reason r = cache_storable(cache_config_of(c), &qm, &rm, &ad, now, &v);
    if (r != CACHE_STORE_OK)
        return -1000 - (int)r;
    struct cache_entry_params p = {.method_bit = CACHE_M_GET,
                                   .host = host,
                                   .host_len = (uint32_t)strlen(host),
                                   .path = path,
                                   .path_len = (uint32_t)strlen(path),
                                   .domain = domain,
                                   .status = 200,
                                   .resp_fields = rh.f,
                                   .n_resp_fields = rh.n,
                                   .req_fields = qh.f,
                                   .n_req_fields = qh.n,
                                   .meta = &rm,
                                   .verdict = &v,
                                   .request_ms = now,
                                   .response_ms = now,
                                   .max_hits = max_hits};
    struct cache_builder *b = cache_entry_new(c, &p);
    if (!b)
        return -ENOMEM;
    /* in pieces, as a response streams */
    for (size_t off = 0; off < len;) {
        size_t k = len - off < 1000 ? len - off : 1000;
        int rc = cache_entry_append(b, (const char *)body + off, k);
        if (rc) {
            cache_entry_abort(b);
            return rc;
        }
        off += k;
    }
    return cache_insert(c, b, out);
}

static int put(struct cache *c, const char *host, const char *path, size_t len, int64_t now)
{
    static char zeros[1 << 16];
    return put_full(c, host, path, L("Cache-Control: max-age=60"), NONE, zeros, len, now, "d.test",
                    0, NULL);
}

static const struct cache_entry *get(struct cache *c, const char *method, const char *host,
                                     const char *path, const char *const *qlines, int64_t now,
                                     struct cache_decision *d)
{
    struct hdrs qh;
    struct cache_decision dd;
    uint32_t mb = cache_method_bit(method, strlen(method));
    struct cache_req_meta qm = req(&qh, mb, qlines);
    struct cache_req r = {mb, host, (uint32_t)strlen(host), path, (uint32_t)strlen(path), &qm};
    return cache_lookup(c, &r, now, d ? d : &dd);
}

static bool has(struct cache *c, const char *host, const char *path, int64_t now)
{
    const struct cache_entry *e = get(c, "GET", host, path, NONE, now, NULL);
    cache_entry_unref(e);
    return e != NULL;
}

static struct cache *mkcache(uint64_t bytes, uint32_t entries)
{
    struct cache_config cfg = {.max_total_bytes = bytes, .max_entries = entries};
    struct cache *c = cache_new(&cfg);
    assert_non_null(c);
    return c;
}

static void check_budget(struct cache *c)
{
    struct cache_stats s;
    const struct cache_config *cfg = cache_config_of(c);
    cache_get_stats(c, &s);
    assert_true(s.bytes <= cfg->max_total_bytes);
    assert_true(s.entries <= cfg->max_entries);
}

/* ---- policy: parsing ------------------------------------------------------------------------ */

static void test_cc_basic(void **st)
{
    struct cache_cc cc;
    (void)st;
    cc_of(&cc, "max-age=60, s-maxage=30, public, must-revalidate");
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 30);
    assert_int_equal(cc.flags, CACHE_CC_PUBLIC | CACHE_CC_MUST_REVALIDATE);
    assert_int_equal(cc.max_stale, -1);
    cc_of(&cc, "  MAX-AGE=5 ,\tNo-Store,,, PRIVATE ,proxy-revalidate,no-transform,immutable");
    assert_int_equal(cc.max_age, 5);
    assert_int_equal(cc.flags, CACHE_CC_NO_STORE | CACHE_CC_PRIVATE | CACHE_CC_PROXY_REVALIDATE |
                                   CACHE_CC_NO_TRANSFORM | CACHE_CC_IMMUTABLE);
    cc_of(&cc, "max-age=\"7\", stale-while-revalidate=30, stale-if-error=\"600\"");
    assert_int_equal(cc.max_age, 7);
    assert_int_equal(cc.swr, 30);
    assert_int_equal(cc.sie, 600);
    cc_of(&cc, "only-if-cached, max-stale, min-fresh=10");
    assert_int_equal(cc.flags, CACHE_CC_ONLY_IF_CACHED | CACHE_CC_MAX_STALE_ANY);
    assert_int_equal(cc.min_fresh, 10);
    cc_of(&cc, "max-stale = 20");
    assert_int_equal(cc.max_stale, 20);
    cc_of(&cc, "");
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.max_age, -1);
    cc_of(&cc, "x-unknown=\"a,b\", foo, max-age=3");
    assert_int_equal(cc.max_age, 3);
    assert_int_equal(cc.flags, 0);
}

static void test_cc_field_lists_and_quotes(void **st)
{
    struct cache_cc cc;
    (void)st;
    /* commas inside the quoted list do not start directives */
    cc_of(&cc, "no-cache=\"Set-Cookie, max-age=5, public\", private=\"X-A\"");
    assert_int_equal(cc.flags, CACHE_CC_NO_CACHE | CACHE_CC_PRIVATE);
    assert_int_equal(cc.max_age, -1);
    cc_of(&cc, "no-cache=\"a\\\"b, public\", s-maxage=4");
    assert_int_equal(cc.flags, CACHE_CC_NO_CACHE);
    assert_int_equal(cc.s_maxage, 4);
    cc_of(&cc, "max-age=\"12"); /* unterminated quote: value runs to the end */
    assert_int_equal(cc.max_age, 12);
}

static void test_cc_invalid_dup_overflow(void **st)
{
    struct cache_cc cc;
    (void)st;
    cc_of(&cc, "max-age=abc, s-maxage=-1");
    assert_int_equal(cc.max_age, 0); /* invalid freshness: stale */
    assert_int_equal(cc.s_maxage, 0);
    cc_of(&cc, "max-age");
    assert_int_equal(cc.max_age, 0);
    cc_of(&cc, "max-stale=x, min-fresh=1.5, stale-while-revalidate=, stale-if-error=-3");
    assert_int_equal(cc.max_stale, -1);
    assert_int_equal(cc.flags, 0);
    assert_int_equal(cc.min_fresh, -1);
    assert_int_equal(cc.swr, -1);
    assert_int_equal(cc.sie, -1);
    cc_of(&cc, "max-age=100, max-age=10, min-fresh=5, min-fresh=9, max-age=50");
    assert_int_equal(cc.max_age, 10);
    assert_int_equal(cc.min_fresh, 9);
    cc_of(&cc, "max-age=99999999999999999999999999, s-maxage=2147483649");
    assert_int_equal(cc.max_age, CACHE_DELTA_MAX);
    assert_int_equal(cc.s_maxage, CACHE_DELTA_MAX);
    cc_of(&cc, "max-age=2147483647");
    assert_int_equal(cc.max_age, 2147483647);
    /* several lines combine */
    cache_cc_init(&cc);
    cache_cc_parse(&cc, "public", 6);
    cache_cc_parse(&cc, "max-age=9", 9);
    assert_int_equal(cc.flags, CACHE_CC_PUBLIC);
    assert_int_equal(cc.max_age, 9);
}

static void test_http_date(void **st)
{
    int64_t t;
    (void)st;
    assert_int_equal(date_of("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, T0 / 1000);
    assert_int_equal(date_of("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, T0 / 1000);
    assert_int_equal(date_of("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, T0 / 1000);
    assert_int_equal(date_of("  Thu, 01 Jan 1970 00:00:00 GMT ", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(date_of("Tue, 29 Feb 2000 12:00:00 GMT", &t), 0);
    assert_int_equal(t, 951825600);
    assert_int_equal(date_of("Thursday, 01-Jan-69 00:00:00 GMT", &t), 0); /* 2069 */
    assert_int_equal(t, 3124224000LL);
    assert_int_equal(date_of("Sun Nov 16 08:49:37 1994", &t), 0);
    assert_int_equal(t, T0 / 1000 + 10 * 86400);
    static const char *bad[] = {"",
                                "0",
                                "-1",
                                "Sun, 06 Nov 1994 08:49:37",
                                "Sun, 06 Nov 1994 08:49:37 UTC",
                                "Sun, 06 Foo 1994 08:49:37 GMT",
                                "Sun, 30 Feb 1994 08:49:37 GMT",
                                "Mon, 29 Feb 1900 08:49:37 GMT",
                                "Sun, 06 Nov 1994 24:49:37 GMT",
                                "Sun, 6 Nov 1994 08:49:37 GMT",
                                "Sun, 06 Nov 94 08:49:37 GMT",
                                "Sun, 06 Nov 1994 08:49:37 GMTX",
                                "Sun Nov  6 08:49:37 1994 x",
                                "Sun Nov 6 08:49:37 1994",
                                "Sunday, 06-Nov-1994 08:49:37 GMT",
                                "06 Nov 1994 08:49:37 GMT"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(date_of(bad[i], &t), -EINVAL);
}

static void test_accept_encoding(void **st)
{
    static const struct {
        const char *v;
        bool gz;
    } t[] = {{"gzip", true},
             {"GZIP", true},
             {"deflate, gzip;q=0.5", true},
             {"br", false},
             {"", false},
             {"*", true},
             {"*;q=0", false},
             {"gzip;q=0", false},
             {"gzip;q=0, *", false},
             {"gzip;q=0.000, *;q=1", false},
             {"x-gzip", true},
             {"identity, *;q=0.1", true},
             {"gzip ; q = 0.001", true},
             {"gzip;q=bogus", false},
             {"gzip;level=1", true},
             {" , ,gzip", true}};
    (void)st;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct guard g;
        const char *p = guarded(&g, t[i].v);
        if (cache_accepts_gzip(p, strlen(t[i].v)) != t[i].gz)
            fail_msg("Accept-Encoding \"%s\"", t[i].v);
        unguard(&g);
    }
    /* several lines: absent means no gzip */
    struct hdrs h;
    struct cache_req_meta m =
        req(&h, CACHE_M_GET, L("Accept-Encoding: br", "accept-encoding: gzip"));
    assert_true(m.accepts_gzip);
    m = req(&h, CACHE_M_GET, NONE);
    assert_false(m.accepts_gzip);
}

static void test_compressible(void **st)
{
    static const char *yes[] = {"text/html",
                                "text/plain; charset=utf-8",
                                "TEXT/CSS",
                                "application/json",
                                "application/problem+json",
                                "application/javascript",
                                "application/x-javascript",
                                "application/xml",
                                "application/atom+xml; charset=x",
                                "image/svg+xml",
                                " Application/JSON "};
    static const char *no[] = {
        "image/png", "application/octet-stream", "text/",     "",
        "+json",     "application/jsonx",        "video/mp4", "application/gzip"};
    (void)st;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!cache_compressible_type(yes[i], strlen(yes[i])))
            fail_msg("%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (cache_compressible_type(no[i], strlen(no[i])))
            fail_msg("%s", no[i]);
}

static void test_etag_weaken(void **st)
{
    char out[32];
    (void)st;
    assert_int_equal(cache_etag_weaken("\"abc\"", 5, out, sizeof(out)), 7);
    assert_memory_equal(out, "W/\"abc\"", 7);
    assert_int_equal(cache_etag_weaken("W/\"abc\"", 7, out, sizeof(out)), 7);
    assert_memory_equal(out, "W/\"abc\"", 7);
    assert_int_equal(cache_etag_weaken("\"abc\"", 5, out, 6), -ENOSPC);
}

/* ---- policy: freshness ------------------------------------------------------------------- */

static void test_lifetime(void **st)
{
    struct cache_resp_meta m;
    int64_t lt;
    (void)st;
    m = resp(200,
             L("Cache-Control: max-age=60, s-maxage=10", "Expires: Sun, 06 Nov 1994 09:49:37 GMT",
               "Date: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, T0, &lt));
    assert_int_equal(lt, 10000);
    m = resp(200, L("Cache-Control: max-age=60", "Expires: Sun, 06 Nov 1994 09:49:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, T0, &lt));
    assert_int_equal(lt, 60000);
    m = resp(200,
             L("Expires: Sun, 06 Nov 1994 09:49:37 GMT", "Date: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, 0, &lt));
    assert_int_equal(lt, 3600000);
    /* no Date: counted from the response time */
    m = resp(200, L("Expires: Sun, 06 Nov 1994 08:50:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, T0 + 20000, &lt));
    assert_int_equal(lt, 40000);
    /* Expires before Date, Expires invalid ("0"): already expired */
    m = resp(200,
             L("Expires: Sun, 06 Nov 1994 08:00:00 GMT", "Date: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, T0, &lt));
    assert_int_equal(lt, 0);
    m = resp(200, L("Expires: 0", "Date: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_true(cache_freshness_lifetime(&m, T0, &lt));
    assert_int_equal(lt, 0);
    m = resp(200, L("Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_false(cache_freshness_lifetime(&m, T0, &lt));
    m = resp(200, L("Cache-Control: max-age=oops"));
    assert_true(cache_freshness_lifetime(&m, T0, &lt));
    assert_int_equal(lt, 0);
}

static struct cache_fresh fresh(int64_t req_ms, int64_t resp_ms, int64_t date_ms, int64_t age_s,
                                int64_t lifetime_ms)
{
    return (struct cache_fresh){req_ms, resp_ms, date_ms, age_s, lifetime_ms, 0, 0, 0};
}

static void test_age(void **st)
{
    struct cache_fresh f;
    (void)st;
    f = fresh(T0, T0, T0, -1, 0);
    assert_int_equal(cache_current_age(&f, T0), 0);
    assert_int_equal(cache_current_age(&f, T0 + 1500), 1500); /* resident time */
    f = fresh(T0 - 2000, T0, T0, -1, 0); /* response_delay counts even without Age */
    assert_int_equal(cache_current_age(&f, T0), 2000);
    f = fresh(T0 - 2000, T0, T0, 30, 0); /* Age + delay */
    assert_int_equal(cache_current_age(&f, T0 + 1000), 33000);
    f = fresh(T0, T0, T0 - 10000, -1, 0); /* apparent age from an old Date */
    assert_int_equal(cache_current_age(&f, T0), 10000);
    f = fresh(T0, T0, T0 - 10000, 4, 0); /* larger of apparent and corrected */
    assert_int_equal(cache_current_age(&f, T0), 10000);
    f = fresh(T0, T0, T0 + 60000, -1, 0); /* origin clock ahead: apparent 0 */
    assert_int_equal(cache_current_age(&f, T0 + 5), 5);
    f = fresh(T0 + 100, T0, T0, -1, 0); /* request after response (clock step): delay 0 */
    assert_int_equal(cache_current_age(&f, T0 - 50), 0);
    f = fresh(T0, T0, T0, CACHE_DELTA_MAX, 0);
    assert_int_equal(cache_current_age(&f, T0), CACHE_DELTA_MAX * 1000);
}

/* ---- policy: storability ---------------------------------------------------------------- */

static enum cache_store_reason storable(uint32_t method, uint16_t status, const char *const *q,
                                        const char *const *r, const struct cache_admit *ad,
                                        struct cache_verdict *v)
{
    struct cache_config cfg;
    struct hdrs qh;
    struct cache_verdict dummy;
    cache_config_defaults(&cfg);
    struct cache_req_meta qm = req(&qh, method, q);
    struct cache_resp_meta rm = resp(status, r);
    return cache_storable(&cfg, &qm, &rm, ad, T0, v ? v : &dummy);
}

static void test_storable_reasons(void **st)
{
    const char *const *ok = L("Cache-Control: max-age=60");
    struct cache_verdict v;
    struct cache_rule rule = {.path_prefix = "/s/", .max_age_ms = 7000};
    struct cache_admit by_rule = {.rule = &rule}, by_hook = {.hook = 1, .hook_ttl_ms = 9000},
                       forbid = {.hook = -1};
    uint16_t only[] = {200, 418};
    struct cache_rule rule_st = {.path_prefix = "/", .status_only = only, .n_status_only = 2};
    struct cache_admit by_rule_st = {.rule = &rule_st};
    struct cache_rule get_only = {.path_prefix = "/", .methods = CACHE_M_HEAD};
    struct cache_admit by_head_rule = {.rule = &get_only};
    (void)st;

    assert_int_equal(storable(CACHE_M_GET, 200, NONE, ok, NULL, &v), CACHE_STORE_OK);
    assert_int_equal(v.lifetime_ms, 60000);
    assert_true(v.explicit_fresh);
    assert_int_equal(v.max_bytes, 4u << 20);
    assert_int_equal(storable(CACHE_M_HEAD, 200, NONE, ok, NULL, NULL), CACHE_NS_METHOD);
    assert_int_equal(storable(CACHE_M_POST, 200, NONE, ok, NULL, NULL), CACHE_NS_METHOD);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, ok, &by_head_rule, NULL), CACHE_NS_METHOD);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, ok, &forbid, NULL), CACHE_NS_HOOK);
    assert_int_equal(storable(CACHE_M_GET, 206, NONE, ok, NULL, NULL), CACHE_NS_PARTIAL);
    assert_int_equal(storable(CACHE_M_GET, 304, NONE, ok, NULL, NULL), CACHE_NS_STATUS);
    assert_int_equal(storable(CACHE_M_GET, 299, NONE, ok, NULL, NULL), CACHE_NS_STATUS);
    assert_int_equal(storable(CACHE_M_GET, 503, NONE, ok, NULL, NULL), CACHE_STORE_OK);
    assert_int_equal(storable(CACHE_M_GET, 404, NONE, ok, &by_rule_st, NULL), CACHE_NS_STATUS);
    assert_int_equal(storable(CACHE_M_GET, 418, NONE, NONE, &by_rule_st, &v), CACHE_STORE_OK);
    assert_int_equal(v.lifetime_ms, 5 * 60 * 1000); /* default_max_age */
    assert_int_equal(storable(CACHE_M_GET, 200, L("Cache-Control: no-store"), ok, NULL, NULL),
                     CACHE_NS_NO_STORE_REQ);
    assert_int_equal(
        storable(CACHE_M_GET, 200, NONE, L("Cache-Control: max-age=5, no-store"), NULL, NULL),
        CACHE_NS_NO_STORE);
    assert_int_equal(
        storable(CACHE_M_GET, 200, NONE, L("Cache-Control: private=\"x\", max-age=5"), NULL, NULL),
        CACHE_NS_PRIVATE);
    /* Authorization: only public, s-maxage or must-revalidate */
    const char *const *auth = L("Authorization: Basic eA==");
    assert_int_equal(storable(CACHE_M_GET, 200, auth, ok, NULL, NULL), CACHE_NS_AUTHORIZATION);
    assert_int_equal(
        storable(CACHE_M_GET, 200, auth, L("Cache-Control: max-age=5, public"), NULL, NULL),
        CACHE_STORE_OK);
    assert_int_equal(storable(CACHE_M_GET, 200, auth, L("Cache-Control: s-maxage=5"), NULL, NULL),
                     CACHE_STORE_OK);
    assert_int_equal(storable(CACHE_M_GET, 200, auth,
                              L("Cache-Control: max-age=5, must-revalidate"), NULL, NULL),
                     CACHE_STORE_OK);
    /* Set-Cookie: only when a hook or the rule says so */
    const char *const *cookie = L("Cache-Control: public, max-age=5", "Set-Cookie: a=b");
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, cookie, NULL, NULL), CACHE_NS_SET_COOKIE);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, cookie, &by_rule, NULL), CACHE_NS_SET_COOKIE);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, cookie, &by_hook, NULL), CACHE_STORE_OK);
    rule.store_set_cookie = true;
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, cookie, &by_rule, NULL), CACHE_STORE_OK);
    rule.store_set_cookie = false;
    assert_int_equal(
        storable(CACHE_M_GET, 200, NONE, L("Cache-Control: max-age=5", "Vary: a, *"), NULL, NULL),
        CACHE_NS_VARY_STAR);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE,
                              L("Cache-Control: max-age=5", "Content-Encoding: br"), NULL, NULL),
                     CACHE_NS_ENCODING);
    /* no explicit freshness */
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, NONE, NULL, NULL), CACHE_NS_NO_FRESHNESS);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, L("Cache-Control: public"), NULL, NULL),
                     CACHE_NS_NO_FRESHNESS);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, NONE, &by_rule, &v), CACHE_STORE_OK);
    assert_int_equal(v.lifetime_ms, 7000);
    assert_false(v.explicit_fresh);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, NONE, &by_hook, &v), CACHE_STORE_OK);
    assert_int_equal(v.lifetime_ms, 9000);
    assert_int_equal(storable(CACHE_M_GET, 302, NONE, NONE, &by_rule, NULL), CACHE_NS_NO_FRESHNESS);
    assert_int_equal(storable(CACHE_M_GET, 302, NONE, ok, NULL, NULL), CACHE_STORE_OK);
    /* explicit freshness wins over the rule's TTL */
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, ok, &by_rule, &v), CACHE_STORE_OK);
    assert_int_equal(v.lifetime_ms, 60000);
    /* already stale and nothing to revalidate with */
    assert_int_equal(storable(CACHE_M_GET, 200, NONE, L("Cache-Control: max-age=0"), NULL, NULL),
                     CACHE_NS_STALE);
    assert_int_equal(
        storable(CACHE_M_GET, 200, NONE, L("Cache-Control: max-age=0", "ETag: \"x\""), NULL, NULL),
        CACHE_STORE_OK);
    assert_int_equal(storable(CACHE_M_GET, 200, NONE,
                              L("Cache-Control: max-age=5", "Content-Length: 5000000"), NULL, NULL),
                     CACHE_NS_TOO_LARGE);
    rule.max_bytes = 10u << 20;
    assert_int_equal(storable(CACHE_M_GET, 200, NONE,
                              L("Cache-Control: max-age=5", "Content-Length: 5000000"), &by_rule,
                              &v),
                     CACHE_STORE_OK);
    assert_int_equal(v.max_bytes, 10u << 20);
    assert_string_equal(cache_store_reason_str(CACHE_NS_SET_COOKIE), "set-cookie");
    assert_string_equal(cache_store_reason_str((enum cache_store_reason)99), "unknown");
}

static void test_rules(void **st)
{
    struct cache_rule r[] = {{.path_prefix = "/"},
                             {.path_prefix = "/static/"},
                             {.path_prefix = "/static/img/", .methods = CACHE_M_GET}};
    struct cache_config cfg = {.rules = r, .n_rules = 3};
    (void)st;
    assert_ptr_equal(cache_rule_match(&cfg, "/static/img/a.png", 17), &r[2]);
    assert_ptr_equal(cache_rule_match(&cfg, "/static/x", 9), &r[1]);
    assert_ptr_equal(cache_rule_match(&cfg, "/other", 6), &r[0]);
    assert_true(cache_rule_allows(&r[1], CACHE_M_HEAD));
    assert_false(cache_rule_allows(&r[2], CACHE_M_HEAD));
    assert_false(cache_rule_allows(NULL, CACHE_M_POST));
    cfg.n_rules = 0;
    assert_null(cache_rule_match(&cfg, "/", 1));
}

/* ---- policy: serving decisions ---------------------------------------------------------- */

static void decide(const struct cache_fresh *f, const char *const *q, int64_t now,
                   struct cache_decision *d)
{
    struct hdrs h;
    struct cache_req_meta m = req(&h, CACHE_M_GET, q);
    cache_satisfy(f, &m, now, d);
}

static void test_satisfy(void **st)
{
    struct cache_fresh f = fresh(T0, T0, T0, -1, 10000);
    struct cache_decision d;
    (void)st;
    decide(&f, NONE, T0 + 9999, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    assert_false(d.stale);
    assert_true(d.sie_ok);
    assert_int_equal(d.age_ms, 9999);
    decide(&f, NONE, T0 + 10000, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    assert_true(d.stale);
    assert_false(d.sie_ok);
    /* request directives */
    decide(&f, L("Cache-Control: no-cache"), T0 + 1, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    assert_true(d.sie_ok); /* still fresh: usable if the origin fails */
    decide(&f, L("Pragma: no-cache"), T0 + 1, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    decide(&f, L("Pragma: no-cache", "Cache-Control: max-stale"), T0 + 1, &d);
    assert_int_equal(d.serve, CACHE_FRESH); /* Cache-Control present: Pragma ignored */
    decide(&f, L("Cache-Control: max-age=0"), T0, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    decide(&f, L("Cache-Control: max-age=5"), T0 + 4999, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    decide(&f, L("Cache-Control: max-age=5"), T0 + 5000, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    decide(&f, L("Cache-Control: min-fresh=3"), T0 + 7000, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    decide(&f, L("Cache-Control: min-fresh=3"), T0 + 7001, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    decide(&f, L("Cache-Control: max-stale"), T0 + 999999, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    assert_true(d.stale);
    decide(&f, L("Cache-Control: max-stale=5"), T0 + 15000, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    decide(&f, L("Cache-Control: max-stale=5"), T0 + 15001, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    /* stale-while-revalidate window */
    f.swr_ms = 30000;
    decide(&f, NONE, T0 + 40000, &d);
    assert_int_equal(d.serve, CACHE_STALE_SWR);
    decide(&f, NONE, T0 + 40001, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    decide(&f, L("Cache-Control: no-cache"), T0 + 20000, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    /* stale-if-error: the response's or the request's */
    f.sie_ms = 60000;
    decide(&f, NONE, T0 + 70000, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    assert_true(d.sie_ok);
    decide(&f, NONE, T0 + 70001, &d);
    assert_false(d.sie_ok);
    f.sie_ms = 0;
    decide(&f, L("Cache-Control: stale-if-error=100"), T0 + 100000, &d);
    assert_true(d.sie_ok);
    /* must-revalidate / proxy-revalidate / s-maxage: no stale at all */
    f.flags = CACHE_F_NO_STALE | CACHE_F_MUST_REVALIDATE;
    f.sie_ms = 60000;
    decide(&f, L("Cache-Control: max-stale"), T0 + 10001, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    assert_false(d.sie_ok);
    decide(&f, NONE, T0 + 1, &d);
    assert_int_equal(d.serve, CACHE_FRESH);
    /* response no-cache: always revalidate */
    f.flags = CACHE_F_NO_CACHE;
    decide(&f, NONE, T0 + 1, &d);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    /* cache_fresh_init maps directives to flags and windows */
    struct cache_resp_meta m = resp(200, L("Cache-Control: s-maxage=5, stale-if-error=7"));
    struct cache_verdict v = {.lifetime_ms = 5000};
    cache_fresh_init(&f, &m, &v, T0, T0, 3000);
    assert_int_equal(f.flags, CACHE_F_NO_STALE);
    assert_int_equal(f.swr_ms, 3000);
    assert_int_equal(f.sie_ms, 7000);
    m = resp(200,
             L("Cache-Control: max-age=5, proxy-revalidate, stale-while-revalidate=1", "Age: 3"));
    cache_fresh_init(&f, &m, &v, T0, T0, 3000);
    assert_int_equal(f.flags, CACHE_F_NO_STALE | CACHE_F_MUST_REVALIDATE);
    assert_int_equal(f.swr_ms, 1000);
    assert_int_equal(f.age_s, 3);
}

static void test_conditional(void **st)
{
    struct hdrs h;
    struct cache_req_meta m;
    const char *etag = "\"v1\"";
    int64_t lm = T0 / 1000;
    (void)st;
    m = req(&h, CACHE_M_GET, L("If-None-Match: \"v1\""));
    assert_true(cache_not_modified(&m, etag, 4, true, lm));
    m = req(&h, CACHE_M_GET, L("If-None-Match: W/\"v1\""));
    assert_true(cache_not_modified(&m, etag, 4, true, lm));
    assert_true(cache_not_modified(&m, "W/\"v1\"", 6, false, 0));
    m = req(&h, CACHE_M_GET, L("If-None-Match: \"a\", W/\"b\" ,\"v1\""));
    assert_true(cache_not_modified(&m, etag, 4, false, 0));
    m = req(&h, CACHE_M_GET, L("If-None-Match: \"a\"", "If-None-Match: \"v1\""));
    assert_true(cache_not_modified(&m, etag, 4, false, 0));
    m = req(&h, CACHE_M_GET, L("If-None-Match: \"a,b\", \"v\""));
    assert_false(cache_not_modified(&m, etag, 4, false, 0));
    m = req(&h, CACHE_M_GET, L("If-None-Match: *"));
    assert_true(cache_not_modified(&m, NULL, 0, false, 0));
    /* If-None-Match wins: no match means 200 even if If-Modified-Since would say 304 */
    m = req(&h, CACHE_M_GET,
            L("If-None-Match: \"v2\"", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_false(cache_not_modified(&m, etag, 4, true, lm));
    m = req(&h, CACHE_M_GET, L("If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_true(cache_not_modified(&m, etag, 4, true, lm));
    assert_false(cache_not_modified(&m, etag, 4, true, lm + 1));
    assert_false(cache_not_modified(&m, etag, 4, false, 0));
    m = req(&h, CACHE_M_GET, L("If-Modified-Since: yesterday"));
    assert_false(cache_not_modified(&m, etag, 4, true, lm));
    m = req(&h, CACHE_M_GET, NONE);
    assert_false(cache_not_modified(&m, etag, 4, true, lm));
}

/* ---- store ------------------------------------------------------------------------------ */

static void test_keys(void **st)
{
    char a[64], b[64];
    (void)st;
    int na = cache_key_build(a, sizeof(a), CACHE_M_GET, "Example.COM", 11, "/x?y=1", 6);
    int nb = cache_key_build(b, sizeof(b), CACHE_M_HEAD, "example.com", 11, "/x?y=1", 6);
    assert_int_equal(na, 19);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na);
    assert_memory_equal(a, "Gexample.com /x?y=1", 19);
    assert_int_equal(cache_key_build(a, sizeof(a), CACHE_M_POST, "h", 1, "/", 1), -EINVAL);
    assert_int_equal(cache_key_build(a, 5, CACHE_M_GET, "host", 4, "/", 1), -ENOSPC);

    struct cache *c = mkcache(1 << 20, 100);
    assert_int_equal(put(c, "Example.COM", "/Path", 10, T0), 0);
    assert_true(has(c, "example.com", "/Path", T0));
    assert_false(has(c, "example.com", "/path", T0));
    const struct cache_entry *e = get(c, "HEAD", "EXAMPLE.com", "/Path", NONE, T0, NULL);
    assert_non_null(e);
    cache_entry_unref(e);
    assert_null(get(c, "POST", "example.com", "/Path", NONE, T0, NULL));
    char longpath[5000];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(put(c, "h", longpath, 10, T0), 0); /* keys past the stack buffer */
    assert_true(has(c, "h", longpath, T0));
    assert_true(cache_purge_key(c, "GET", "h", 1, longpath, strlen(longpath)));
    cache_free(c);
}

static void test_vary(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    const char *const *rv =
        L("Cache-Control: max-age=60", "Vary: Accept-Language, X-B", "vary: accept-language");
    const struct cache_entry *e;
    struct cache_stats s;
    (void)st;
    assert_int_equal(
        put_full(c, "h", "/", rv, L("Accept-Language: en", "X-B: 1"), "en", 2, T0, NULL, 0, NULL),
        0);
    assert_int_equal(
        put_full(c, "h", "/", rv, L("Accept-Language: fr", "X-B: 1"), "fr", 2, T0, NULL, 0, NULL),
        0);
    assert_int_equal(put_full(c, "h", "/", rv, L("X-B: 1"), "ab", 2, T0, NULL, 0, NULL), 0);
    assert_int_equal(
        put_full(c, "h", "/", rv, L("Accept-Language:", "X-B: 1"), "em", 2, T0, NULL, 0, NULL), 0);
    assert_int_equal(put_full(c, "h", "/", rv, L("Accept-Language: a  b ,c", "X-B: 1"), "ws", 2, T0,
                              NULL, 0, NULL),
                     0);
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 5);
    e = get(c, "GET", "h", "/", L("x-b: 1", "accept-language: fr"), T0, NULL);
    assert_non_null(e);
    assert_memory_equal(e->body->data, "fr", 2);
    assert_int_equal(e->n_vary, 2);
    assert_int_equal(e->vary_name_lens[0], 15);
    assert_memory_equal(e->vary_names[0], "accept-language", 15); /* lowercased, sorted */
    assert_memory_equal(e->vary_names[1], "x-b", 3);
    cache_entry_unref(e);
    e = get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: en"), T0, NULL);
    assert_memory_equal(e->body->data, "en", 2);
    cache_entry_unref(e);
    e = get(c, "GET", "h", "/", L("X-B: 1"), T0, NULL); /* absent */
    assert_memory_equal(e->body->data, "ab", 2);
    cache_entry_unref(e);
    e = get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: "), T0, NULL); /* empty */
    assert_memory_equal(e->body->data, "em", 2);
    cache_entry_unref(e);
    /* normalisation: whitespace runs, around commas, several lines */
    e = get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: a\t b,c"), T0, NULL);
    assert_non_null(e);
    assert_memory_equal(e->body->data, "ws", 2);
    cache_entry_unref(e);
    e = get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: a b", "Accept-Language: c"), T0,
            NULL);
    assert_non_null(e);
    cache_entry_unref(e);
    assert_null(get(c, "GET", "h", "/", L("X-B: 2", "Accept-Language: en"), T0, NULL));
    assert_null(get(c, "GET", "h", "/", L("Accept-Language: en"), T0, NULL));
    assert_null(get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: de"), T0, NULL));
    /* the same variant again replaces it */
    assert_int_equal(
        put_full(c, "h", "/", rv, L("Accept-Language: fr", "X-B: 1"), "FR", 2, T0, NULL, 0, NULL),
        0);
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 5);
    e = get(c, "GET", "h", "/", L("X-B: 1", "Accept-Language: fr"), T0, NULL);
    assert_memory_equal(e->body->data, "FR", 2);
    cache_entry_unref(e);
    assert_true(cache_purge_key(c, "GET", "h", 1, "/", 1));
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    cache_free(c);
}

static void test_vary_skip_accept_encoding(void **st)
{
    struct cache_field rf[] = {{"Vary", "Accept-Encoding", 4, 15},
                               {"Cache-Control", "max-age=9", 13, 9}};
    struct cache_field qf[] = {{"Accept-Encoding", "gzip", 15, 4}};
    struct cache_span *names;
    (void)st;
    assert_int_equal(cache_vary_names(rf, 2, true, &names), 0);
    assert_null(names);
    assert_int_equal(cache_vary_names(rf, 2, false, &names), 1);
    free(names);
    assert_int_equal(cache_vary_norm(qf, 1, "accept-encoding", 15, NULL), 4);
    assert_int_equal(cache_vary_norm(qf, 1, "x", 1, NULL), -1);

    struct cache *c = mkcache(1 << 20, 100);
    struct cache_resp_meta rm;
    struct cache_req_meta qm;
    struct cache_verdict v = {.lifetime_ms = 9000, .max_bytes = 100};
    cache_resp_meta_parse(&rm, 200, rf, 2);
    cache_req_meta_parse(&qm, CACHE_M_GET, qf, 1);
    struct cache_entry_params p = {.method_bit = CACHE_M_GET,
                                   .host = "h",
                                   .host_len = 1,
                                   .path = "/",
                                   .path_len = 1,
                                   .status = 200,
                                   .resp_fields = rf,
                                   .n_resp_fields = 2,
                                   .req_fields = qf,
                                   .n_req_fields = 1,
                                   .meta = &rm,
                                   .verdict = &v,
                                   .request_ms = T0,
                                   .response_ms = T0,
                                   .vary_skip_accept_encoding = true};
    assert_int_equal(cache_insert(c, cache_entry_new(c, &p), NULL), 0);
    assert_true(has(c, "h", "/", T0)); /* no Accept-Encoding: still that variant */
    cache_free(c);
}

static void test_entry_limits(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    char buf[3000] = {0};
    struct cache_resp_meta rm = resp(200, L("Cache-Control: max-age=5"));
    struct cache_verdict v = {.lifetime_ms = 5000, .max_bytes = 5000};
    struct cache_entry_params p = {.method_bit = CACHE_M_GET,
                                   .host = "h",
                                   .host_len = 1,
                                   .path = "/",
                                   .path_len = 1,
                                   .status = 200,
                                   .meta = &rm,
                                   .verdict = &v};
    (void)st;
    struct cache_builder *b = cache_entry_new(c, &p);
    assert_int_equal(cache_entry_append(b, buf, 3000), 0);
    assert_int_equal(cache_entry_append(b, buf, 2000), 0);
    assert_int_equal(cache_entry_append(b, buf, 1), -EFBIG);
    assert_int_equal(cache_entry_append(b, buf, 1), -EINVAL);
    cache_entry_abort(b);
    b = cache_entry_new(c, &p);
    assert_int_equal(cache_entry_append(b, buf, 3000), 0);
    const struct cache_entry *e;
    assert_int_equal(cache_insert(c, b, &e), 0);
    assert_int_equal(e->body->len, 3000);
    cache_entry_unref(e);
    p.method_bit = CACHE_M_HEAD;
    assert_null(cache_entry_new(c, &p));
    cache_entry_abort(NULL);
    /* an entry larger than the whole cache is refused, not half-stored */
    struct cache *tiny = mkcache(2000, 10);
    v.max_bytes = 1u << 20;
    p.method_bit = CACHE_M_GET;
    b = cache_entry_new(tiny, &p);
    assert_int_equal(cache_entry_append(b, buf, 3000), -EFBIG);
    cache_entry_abort(b);
    b = cache_entry_new(tiny, &p);
    assert_int_equal(cache_entry_append(b, buf, 1900), 0);
    assert_int_equal(cache_insert(tiny, b, NULL), -EFBIG);
    struct cache_stats s;
    cache_get_stats(tiny, &s);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.bytes, 0);
    cache_free(tiny);
    cache_free(c);
}

static void test_refcount_and_purge(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    const struct cache_entry *e, *e2;
    struct cache_stats s;
    (void)st;
    assert_int_equal(put_full(c, "a.test", "/1", L("Cache-Control: max-age=60"), NONE, "hello", 5,
                              T0, "a.test", 0, &e),
                     0);
    assert_int_equal(atomic_load(&e->refs), 2);
    e2 = get(c, "GET", "a.test", "/1", NONE, T0, NULL);
    assert_ptr_equal(e, e2);
    assert_int_equal(atomic_load(&e->refs), 3);
    cache_entry_unref(e2);
    assert_true(cache_purge_key(c, "HEAD", "a.test", 6, "/1", 2));
    assert_false(cache_purge_key(c, "GET", "a.test", 6, "/1", 2));
    assert_false(cache_purge_key(c, "POST", "a.test", 6, "/1", 2));
    assert_false(has(c, "a.test", "/1", T0));
    /* still ours: readable until the unref (ASan would catch a free) */
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_memory_equal(e->body->data, "hello", 5);
    assert_string_equal(e->domain, "a.test");
    uint32_t n;
    const char *cc = cache_entry_field(e, "cache-control", &n);
    assert_memory_equal(cc, "max-age=60", n);
    cache_entry_unref(e);

    for (int i = 0; i < 10; i++) {
        char p[16];
        snprintf(p, sizeof(p), "/%d", i);
        assert_int_equal(put_full(c, "a.test", p, L("Cache-Control: max-age=60"), NONE, "x", 1, T0,
                                  i < 6 ? "a.test" : "b.test", 0, NULL),
                         0);
    }
    e = get(c, "GET", "a.test", "/0", NONE, T0, NULL);
    assert_int_equal(cache_purge_domain(c, "a.test"), 6);
    assert_int_equal(cache_purge_domain(c, "a.test"), 0);
    assert_int_equal(cache_purge_domain(c, "c.test"), 0);
    assert_memory_equal(e->body->data, "x", 1);
    cache_entry_unref(e);
    assert_int_equal(cache_invalidate(c, "A.TEST", 6, "/7", 2), 1);
    assert_int_equal(cache_purge_all(c), 3);
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.purges, 1 + 6 + 3);
    assert_int_equal(s.invalidations, 1);
    assert_int_equal(s.stores, 11);
    cache_free(c);
}

static void test_max_hits_and_stats(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    struct cache_stats s;
    struct cache_decision d;
    (void)st;
    assert_int_equal(
        put_full(c, "h", "/", L("Cache-Control: max-age=60"), NONE, "x", 1, T0, NULL, 3, NULL), 0);
    for (int i = 0; i < 3; i++) {
        const struct cache_entry *e = get(c, "GET", "h", "/", NONE, T0, &d);
        assert_non_null(e);
        assert_int_equal(d.serve, CACHE_FRESH);
        cache_entry_unref(e);
    }
    assert_false(has(c, "h", "/", T0));
    /* a stale entry found is a miss and does not use up max_hits */
    assert_int_equal(put_full(c, "h", "/s", L("Cache-Control: max-age=1", "ETag: \"e\""), NONE, "x",
                              1, T0, NULL, 1, NULL),
                     0);
    const struct cache_entry *e = get(c, "GET", "h", "/s", NONE, T0 + 5000, &d);
    assert_non_null(e);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    assert_int_equal(e->etag_len, 3);
    assert_memory_equal(e->etag, "\"e\"", 3);
    cache_entry_unref(e);
    assert_true(has(c, "h", "/s", T0));
    cache_get_stats(c, &s);
    assert_int_equal(s.hits, 4);
    assert_int_equal(s.misses, 2);
    assert_int_equal(s.entries, 0);
    cache_free(c);
}

static void test_budget_random(void **st)
{
    struct cache_config cfg = {
        .max_total_bytes = 300000, .max_entries = 64, .pre_compress = true, .compress_min_len = 16};
    struct cache *c = cache_new(&cfg);
    static char body[60000];
    uint64_t seed = 42;
    struct cache_stats s;
    (void)st;
    for (size_t i = 0; i < sizeof(body); i++)
        body[i] = "abcdefgh "[i % 9 + (i / 97) % 3 * 0];
    assert_int_equal(cache_compress_start(c, 2), 0);
    for (int i = 0; i < 3000; i++) {
        char p[16];
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (size_t)(seed >> 33) % sizeof(body);
        snprintf(p, sizeof(p), "/%u", (unsigned)(seed >> 20) % 500);
        int rc = put_full(c, "h", p, L("Cache-Control: max-age=60", "Content-Type: text/plain"),
                          NONE, body, len, T0, NULL, 0, NULL);
        assert_true(rc == 0 || rc == -ENOSPC);
        check_budget(c);
        if (i % 7 == 0)
            cache_entry_unref(get(c, "GET", "h", p, NONE, T0, NULL));
    }
    cache_compress_wait_idle(c);
    check_budget(c);
    cache_get_stats(c, &s);
    assert_true(s.gzip_bytes > 0);
    assert_true(s.evictions > 0);
    assert_int_equal(cache_purge_all(c), s.entries);
    cache_get_stats(c, &s);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.gzip_bytes, 0);
    cache_free(c);
}

static void test_sieve_scan(void **st)
{
    struct cache *c = mkcache(64u << 20, 1024);
    char p[32];
    int kept = 0;
    (void)st;
    for (int i = 0; i < 256; i++) {
        snprintf(p, sizeof(p), "/hot/%d", i);
        assert_int_equal(put(c, "h", p, 10, T0), 0);
    }
    for (int i = 0; i < 8192; i++) {
        if (i % 32 == 0)
            for (int j = 0; j < 256; j++) {
                snprintf(p, sizeof(p), "/hot/%d", j);
                has(c, "h", p, T0);
            }
        snprintf(p, sizeof(p), "/cold/%d", i);
        assert_int_equal(put(c, "h", p, 10, T0), 0);
        check_budget(c);
    }
    for (int i = 0; i < 256; i++) {
        snprintf(p, sizeof(p), "/hot/%d", i);
        kept += has(c, "h", p, T0);
    }
    print_message("SIEVE kept %d of 256 hot keys through an 8192-key scan (cache: 1024)\n", kept);
    assert_true(kept >= 240);
    cache_free(c);
}

/* ---- collapsing -------------------------------------------------------------------------- */

struct wake_log {
    int calls, last_result;
    unsigned last_worker;
};

static void on_wake(void *arg, unsigned worker, int result)
{
    struct wake_log *l = arg;
    l->calls++;
    l->last_result = result;
    l->last_worker = worker;
}

static void test_collapse(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    struct cache_fill *f, *f2;
    struct wake_log l1 = {0}, l2 = {0}, l3 = {0};
    struct cache_waiter w1 = {.fn = on_wake, .arg = &l1, .worker = 1};
    struct cache_waiter w2 = {.fn = on_wake, .arg = &l2, .worker = 2};
    struct cache_waiter w3 = {.fn = on_wake, .arg = &l3, .worker = 3};
    (void)st;
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/", 1, &w1, &f), CACHE_FILLER);
    assert_non_null(f);
    assert_int_equal(cache_fill_begin(c, CACHE_M_HEAD, "H", 1, "/", 1, &w1, &f2), CACHE_WAIT);
    assert_null(f2);
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/", 1, &w2, &f2), CACHE_WAIT);
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/", 1, &w3, &f2), CACHE_WAIT);
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/", 1, NULL, &f2), CACHE_BUSY);
    /* another key is independent */
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/b", 2, NULL, &f2), CACHE_FILLER);
    assert_true(cache_fill_cancel_wait(c, &w2)); /* the engine's timer fired */
    assert_false(cache_fill_cancel_wait(c, &w2));
    cache_fill_end(c, f, CACHE_FILL_DONE);
    assert_int_equal(l1.calls, 1);
    assert_int_equal(l1.last_result, CACHE_FILL_DONE);
    assert_int_equal(l1.last_worker, 1);
    assert_int_equal(l3.calls, 1);
    assert_int_equal(l2.calls, 0);
    assert_false(cache_fill_cancel_wait(c, &w1)); /* too late: already called */
    /* abandon: waiters hear it once, and the next miss becomes the filler */
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/b", 2, &w2, &f), CACHE_WAIT);
    cache_fill_end(c, f2, CACHE_FILL_ABANDONED);
    assert_int_equal(l2.calls, 1);
    assert_int_equal(l2.last_result, CACHE_FILL_ABANDONED);
    assert_int_equal(cache_fill_begin(c, CACHE_M_GET, "h", 1, "/b", 2, &w2, &f), CACHE_FILLER);
    cache_fill_end(c, f, CACHE_FILL_ABANDONED);
    assert_int_equal(l2.calls, 1);
    assert_int_equal(cache_fill_begin(c, CACHE_M_POST, "h", 1, "/", 1, NULL, &f), -EINVAL);
    cache_free(c);
}

/* ---- refresh ----------------------------------------------------------------------------- */

static void test_refresh(void **st)
{
    struct cache *c = mkcache(1 << 20, 100);
    const struct cache_entry *old, *e, *n;
    struct cache_decision d;
    struct cache_stats s;
    (void)st;
    assert_int_equal(
        put_full(c, "h", "/",
                 L("Cache-Control: max-age=10", "ETag: \"v1\"", "Content-Length: 4", "X-Old: keep",
                   "X-Rep: a", "X-Rep: b", "Date: Sun, 06 Nov 1994 08:49:37 GMT"),
                 NONE, "body", 4, T0, NULL, 0, &old),
        0);
    e = get(c, "GET", "h", "/", NONE, T0 + 20000, &d);
    assert_ptr_equal(e, old);
    assert_int_equal(d.serve, CACHE_MUST_REVALIDATE);
    struct hdrs h;
    mk(&h, L("Cache-Control: max-age=100", "Date: Sun, 06 Nov 1994 08:49:57 GMT",
             "Content-Length: 0", "X-Rep: c", "ETag: \"v1\""));
    assert_int_equal(cache_refresh(c, e, h.f, h.n, T0 + 20000, T0 + 20000, &n), 0);
    assert_ptr_equal(n->body, old->body); /* shared, not copied */
    assert_int_equal(n->fresh.lifetime_ms, 100000);
    uint32_t len;
    assert_memory_equal(cache_entry_field(n, "content-length", &len), "4", 1);
    assert_memory_equal(cache_entry_field(n, "x-old", &len), "keep", 4);
    assert_memory_equal(cache_entry_field(n, "x-rep", &len), "c", 1);
    int reps = 0;
    for (uint32_t i = 0; i < n->n_fields; i++)
        reps += n->fields[i].name_len == 5 && memcmp(n->fields[i].name, "X-Rep", 5) == 0;
    assert_int_equal(reps, 1);
    assert_false(old->linked);
    cache_entry_unref(e);
    cache_entry_unref(old);
    e = get(c, "GET", "h", "/", NONE, T0 + 30000, &d);
    assert_ptr_equal(e, n);
    assert_int_equal(d.serve, CACHE_FRESH);
    assert_int_equal(d.age_ms, 10000);
    cache_entry_unref(e);
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 1);
    /* refreshing an entry purged meanwhile serves but does not store */
    cache_purge_all(c);
    const struct cache_entry *n2;
    assert_int_equal(cache_refresh(c, n, h.f, h.n, T0, T0, &n2), 0);
    assert_false(n2->linked);
    cache_entry_unref(n2);
    cache_entry_unref(n);
    cache_get_stats(c, &s);
    assert_int_equal(s.entries, 0);
    assert_int_equal(s.bytes, 0);
    cache_free(c);
}

/* ---- compression ------------------------------------------------------------------------ */

static void test_compress_gzip(void **st)
{
    struct cache_config cfg = {.pre_compress = true, .compress_min_len = 100};
    struct cache *c = cache_new(&cfg);
    static char text[20000], noise[5000], out[20000];
    const struct cache_entry *e1, *e2, *e3, *e4, *e5;
    uint64_t x = 1;
    size_t len, got;
    (void)st;
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = "lorem ipsum dolor sit amet "[i % 27];
    for (size_t i = 0; i < sizeof(noise); i++, x = x * 6364136223846793005ull + 1)
        noise[i] = (char)(x >> 56);
    assert_int_equal(cache_compress_start(c, 2), 0);
    assert_int_equal(cache_compress_start(c, 2), 0); /* adds none */
    const char *const *txt =
        L("Cache-Control: max-age=60", "Content-Type: text/html; charset=utf-8");
    assert_int_equal(put_full(c, "h", "/t", txt, NONE, text, sizeof(text), T0, NULL, 0, &e1), 0);
    assert_int_equal(put_full(c, "h", "/n", txt, NONE, noise, sizeof(noise), T0, NULL, 0, &e2), 0);
    assert_int_equal(put_full(c, "h", "/s", txt, NONE, text, 50, T0, NULL, 0, &e3), 0);
    assert_int_equal(put_full(c, "h", "/p",
                              L("Cache-Control: max-age=60", "Content-Type: image/png"), NONE, text,
                              sizeof(text), T0, NULL, 0, &e4),
                     0);
    assert_int_equal(
        put_full(c, "h", "/nt",
                 L("Cache-Control: max-age=60, no-transform", "Content-Type: text/css"), NONE, text,
                 sizeof(text), T0, NULL, 0, &e5),
        0);
    cache_compress_wait_idle(c);
    assert_true(cache_compress_idle(c));
    assert_int_equal(atomic_load(&e1->copy_state), CACHE_COPY_READY);
    const char *gz = cache_entry_copy(e1, &len);
    assert_non_null(gz);
    assert_true(len < sizeof(text) / 10);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    assert_int_equal(libdeflate_gzip_decompress(d, gz, len, out, sizeof(out), &got),
                     LIBDEFLATE_SUCCESS);
    assert_int_equal(got, sizeof(text));
    assert_memory_equal(out, text, sizeof(text));
    libdeflate_free_decompressor(d);
    assert_int_equal(atomic_load(&e2->copy_state), CACHE_COPY_NOT_WORTH);
    assert_null(cache_entry_copy(e2, &len));
    assert_int_equal(atomic_load(&e3->copy_state), CACHE_COPY_NONE);
    assert_int_equal(atomic_load(&e4->copy_state), CACHE_COPY_NONE);
    assert_int_equal(atomic_load(&e5->copy_state), CACHE_COPY_NONE);
    struct cache_stats s;
    cache_get_stats(c, &s);
    assert_true(s.gzip_bytes >= len);
    /* a purged entry keeps its copy readable for its holder */
    cache_purge_all(c);
    assert_non_null(cache_entry_copy(e1, &len));
    cache_entry_unref(e1);
    cache_entry_unref(e2);
    cache_entry_unref(e3);
    cache_entry_unref(e4);
    cache_entry_unref(e5);
    cache_free(c);
}

static void test_compress_identity(void **st)
{
    struct cache_config cfg = {.max_entry_size = 30000}; /* pre_compress off: still unzips */
    struct cache *c = cache_new(&cfg);
    static char text[20000], big[40000], gz[40000], out[20000];
    const struct cache_entry *e1, *e2, *e3;
    size_t len;
    (void)st;
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 23);
    memset(big, 'z', sizeof(big));
    struct libdeflate_compressor *z = libdeflate_alloc_compressor(6);
    size_t gzn = libdeflate_gzip_compress(z, text, sizeof(text), gz, sizeof(gz));
    assert_true(gzn > 0);
    assert_int_equal(cache_compress_start(c, 1), 0);
    const char *const *hd =
        L("Cache-Control: max-age=60", "Content-Encoding: gzip", "Content-Type: application/json");
    assert_int_equal(put_full(c, "h", "/g", hd, NONE, gz, gzn, T0, NULL, 0, &e1), 0);
    assert_true(e1->gzip_body);
    char bad[64] = {0x1f, (char)0x8b, 8};
    assert_int_equal(put_full(c, "h", "/bad", hd, NONE, bad, sizeof(bad), T0, NULL, 0, &e2), 0);
    size_t bign = libdeflate_gzip_compress(z, big, sizeof(big), gz, sizeof(gz));
    assert_int_equal(put_full(c, "h", "/big", hd, NONE, gz, bign, T0, NULL, 0, &e3), 0);
    libdeflate_free_compressor(z);
    cache_compress_wait_idle(c);
    assert_int_equal(atomic_load(&e1->copy_state), CACHE_COPY_READY);
    const char *id = cache_entry_copy(e1, &len);
    assert_int_equal(len, sizeof(text));
    memcpy(out, id, len);
    assert_memory_equal(out, text, sizeof(text));
    assert_int_equal(atomic_load(&e2->copy_state), CACHE_COPY_FAILED);
    assert_int_equal(atomic_load(&e3->copy_state), CACHE_COPY_TOO_BIG);
    cache_entry_unref(e1);
    cache_entry_unref(e2);
    cache_entry_unref(e3);
    cache_free(c); /* stops the pool */
}

/* ---- stress ------------------------------------------------------------------------------- */

struct stress {
    struct cache *c;
    unsigned id;
    int64_t deadline_ns;
    uint64_t ops;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *stress_main(void *arg)
{
    struct stress *s = arg;
    static char body[8192];
    uint64_t x = 0x9e3779b97f4a7c15ull * (s->id + 1);
    while (mono_ns() < s->deadline_ns) {
        for (int k = 0; k < 64; k++) {
            char p[16];
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned key = (unsigned)(x % 512), op = (unsigned)(x >> 40) % 10000;
            snprintf(p, sizeof(p), "/%u", key);
            if (op < 3000) {
                const char *dom = key % 2 ? "odd" : "even";
                int rc = put_full(
                    s->c, "h", p, L("Cache-Control: max-age=60", "Content-Type: text/plain"), NONE,
                    body, (size_t)(x >> 20) % sizeof(body), T0, dom, key % 5 == 0 ? 3 : 0, NULL);
                assert_true(rc == 0 || rc == -ENOSPC);
            } else if (op < 9000) {
                const struct cache_entry *e = get(s->c, "GET", "h", p, NONE, T0, NULL);
                if (e) {
                    size_t n;
                    const char *cp = cache_entry_copy(e, &n);
                    volatile char sink = e->body->len ? e->body->data[e->body->len - 1] : 0;
                    if (cp)
                        sink = cp[n - 1];
                    (void)sink;
                    cache_entry_unref(e);
                }
            } else if (op < 9600) {
                cache_purge_key(s->c, "GET", "h", 1, p, strlen(p));
            } else if (op < 9990) {
                struct cache_fill *f;
                if (cache_fill_begin(s->c, CACHE_M_GET, "h", 1, p, strlen(p), NULL, &f) ==
                    CACHE_FILLER)
                    cache_fill_end(s->c, f, CACHE_FILL_ABANDONED);
            } else {
                cache_purge_domain(s->c, key % 3 ? "odd" : "even");
            }
            check_budget(s->c);
            s->ops++;
        }
    }
    return NULL;
}

static void test_stress(void **st)
{
    struct cache_config cfg = {
        .max_total_bytes = 1u << 20, .max_entries = 200, .pre_compress = true};
    struct cache *c = cache_new(&cfg);
    pthread_t t[4];
    struct stress s[4];
    struct cache_stats cs;
    uint64_t ops = 0;
    (void)st;
    assert_int_equal(cache_compress_start(c, 2), 0);
    for (unsigned i = 0; i < 4; i++) {
        s[i] = (struct stress){c, i, mono_ns() + 1000000000LL, 0};
        assert_int_equal(pthread_create(&t[i], NULL, stress_main, &s[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ops += s[i].ops;
    }
    cache_compress_wait_idle(c);
    check_budget(c);
    cache_get_stats(c, &cs);
    print_message("stress: %llu ops in 1 s on 4 threads; %llu stores %llu hits %llu evictions\n",
                  (unsigned long long)ops, (unsigned long long)cs.stores,
                  (unsigned long long)cs.hits, (unsigned long long)cs.evictions);
    cache_purge_all(c);
    cache_get_stats(c, &cs);
    assert_int_equal(cs.entries, 0);
    assert_int_equal(cs.bytes, 0);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_basic),
        cmocka_unit_test(test_cc_field_lists_and_quotes),
        cmocka_unit_test(test_cc_invalid_dup_overflow),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_compressible),
        cmocka_unit_test(test_etag_weaken),
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_storable_reasons),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_satisfy),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_vary),
        cmocka_unit_test(test_vary_skip_accept_encoding),
        cmocka_unit_test(test_entry_limits),
        cmocka_unit_test(test_refcount_and_purge),
        cmocka_unit_test(test_max_hits_and_stats),
        cmocka_unit_test(test_budget_random),
        cmocka_unit_test(test_sieve_scan),
        cmocka_unit_test(test_collapse),
        cmocka_unit_test(test_refresh),
        cmocka_unit_test(test_compress_gzip),
        cmocka_unit_test(test_compress_identity),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

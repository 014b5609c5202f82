/* fuzz_cache_policy.c: libFuzzer target for the cache's header parsers (cache/policy.c):
 * cache_cc_parse, cache_parse_http_date, cache_accepts_gzip, cache_compressible_type,
 * cache_etag_weaken, cache_vary_norm, cache_vary_names, cache_resp_meta_parse and
 * cache_req_meta_parse, plus cache_freshness_lifetime and cache_not_modified on what they
 * produce. Besides crashes and over-reads (every value is checked from an exact-size copy) it
 * checks the documented ranges, that spans stay inside the input, that Vary normalisation is
 * idempotent, that weakening an ETag is, and that the request scan agrees with the
 * single-value functions.
 *
 * Input: byte 0 picks the response status, byte 1 the request method; the rest is split on
 * '\n' into fields "name: value" (value OWS-trimmed, as h1.c hands them over). A line that
 * starts with a byte below 0x20 takes its name from a table instead (so the fuzzer reaches
 * every field the scanners know without guessing names), the rest of the line is its value. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "fuzz.h"

#define MAX_FIELDS 64

/* IMF-fixdate and asctime years are four digits: 0000-01-01 to 9999-12-31 23:59:60. */
#define DATE_MIN (-62167219200LL)
#define DATE_MAX (253402300800LL)

static const char *const names[] = {
    "Cache-Control", "Pragma",           "Date",          "Expires",
    "Age",           "Last-Modified",    "ETag",          "Set-Cookie",
    "Vary",          "Content-Encoding", "Content-Type",  "Content-Length",
    "Authorization", "Accept-Encoding",  "If-None-Match", "If-Modified-Since",
    "X-Other",
};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static const uint16_t statuses[] = {200, 203, 204, 206, 300, 301, 302, 304,
                                    308, 404, 405, 410, 414, 500, 501, 503};
static const uint32_t methods[] = {CACHE_M_GET,    CACHE_M_HEAD,  CACHE_M_POST,    CACHE_M_PUT,
                                   CACHE_M_DELETE, CACHE_M_PATCH, CACHE_M_OPTIONS, CACHE_M_OTHER};

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static char lc(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static int span_icmp(const struct cache_span *a, const struct cache_span *b)
{
    size_t n = (size_t)(a->n < b->n ? a->n : b->n);

    for (size_t i = 0; i < n; i++)
        if (lc(a->p[i]) != lc(b->p[i]))
            return (unsigned char)lc(a->p[i]) - (unsigned char)lc(b->p[i]);
    return (a->n > b->n) - (a->n < b->n);
}

static bool delta_ok(int64_t v)
{
    return v == -1 || (v >= 0 && v <= CACHE_DELTA_MAX);
}

static void check_cc(const struct cache_cc *cc)
{
    CHECK(delta_ok(cc->max_age) && delta_ok(cc->s_maxage) && delta_ok(cc->max_stale));
    CHECK(delta_ok(cc->min_fresh) && delta_ok(cc->swr) && delta_ok(cc->sie));
    CHECK(!(cc->flags & ~((CACHE_CC_IMMUTABLE << 1) - 1)));
}

static void check_date(const char *v, size_t n)
{
    int64_t t = 0;

    if (cache_parse_http_date(v, n, &t) == 0)
        CHECK(t >= DATE_MIN && t <= DATE_MAX);
}

/* Weakening: "W/" in front unless it is there already; the result weakens to itself; one
 * byte less room is -ENOSPC. */
static void check_etag(const char *v, size_t n)
{
    size_t cap = n + 2;
    char *out = malloc(cap), *again = malloc(cap);
    int rc, rc2;

    CHECK(out && again);
    rc = cache_etag_weaken(v, n, out, cap);
    CHECK(rc >= 2 && (size_t)rc <= cap && out[0] == 'W' && out[1] == '/');
    CHECK((size_t)rc == n + 2 ? !memcmp(out + 2, v, n) : ((size_t)rc == n && !memcmp(out, v, n)));
    rc2 = cache_etag_weaken(out, (size_t)rc, again, cap);
    CHECK(rc2 == rc && !memcmp(again, out, (size_t)rc));
    CHECK(cache_etag_weaken(v, n, out, (size_t)rc - 1) == -ENOSPC);
    free(out);
    free(again);
}

/* One value on its own, in an exact-size copy so ASan sees a read past its end. */
static void check_value(const char *v, size_t n)
{
    char *c = malloc(n ? n : 1);
    struct cache_cc cc;
    bool a, b;

    CHECK(c);
    memcpy(c, v, n);
    cache_cc_init(&cc);
    cache_cc_parse(&cc, c, n);
    check_cc(&cc);
    check_date(c, n);
    a = cache_accepts_gzip(c, n);
    b = cache_accepts_gzip(c, n);
    CHECK(a == b);
    a = cache_compressible_type(c, n);
    b = cache_compressible_type(c, n);
    CHECK(a == b);
    check_etag(c, n);
    free(c);
}

/* Normalised Vary value: sized with out NULL, then written; no empty elements, no OWS at an
 * element's edges or in runs, no tabs; normalising the result again changes nothing. */
static void check_vary_norm(const struct cache_field *f, uint32_t n, const char *name, size_t nlen)
{
    int64_t len = cache_vary_norm(f, n, name, nlen, NULL), len2;
    struct cache_field one;
    char *out, *out2;

    CHECK(len >= -1);
    if (len < 0)
        return;
    out = malloc(len ? (size_t)len : 1);
    CHECK(out);
    CHECK(cache_vary_norm(f, n, name, nlen, out) == len);
    for (int64_t i = 0; i < len; i++) {
        CHECK(out[i] != '\t');
        CHECK(out[i] != ',' || (i > 0 && i + 1 < len && out[i - 1] != ',' && out[i - 1] != ' ' &&
                                out[i + 1] != ' '));
        CHECK(out[i] != ' ' || (i > 0 && i + 1 < len && out[i - 1] != ' '));
    }
    one = (struct cache_field){name, out, (uint32_t)nlen, (uint32_t)len};
    len2 = cache_vary_norm(&one, 1, name, nlen, NULL);
    CHECK(len2 == len);
    out2 = malloc(len ? (size_t)len : 1);
    CHECK(out2);
    CHECK(cache_vary_norm(&one, 1, name, nlen, out2) == len);
    CHECK(!memcmp(out, out2, (size_t)len));
    free(out2);
    free(out);
}

static void check_vary_names(const struct cache_field *f, uint32_t n, const char *buf, size_t len,
                             bool skip_ae)
{
    struct cache_span *s = NULL;
    int m = cache_vary_names(f, n, skip_ae, &s);

    CHECK(m >= 0 || m == -ENOMEM);
    if (m <= 0) {
        CHECK(s == NULL);
        return;
    }
    CHECK(s != NULL);
    for (int i = 0; i < m; i++) {
        CHECK(s[i].n > 0 && inside(s[i].p, (size_t)s[i].n, buf, len));
        CHECK(!memchr(s[i].p, ',', (size_t)s[i].n));
        CHECK(!is_ows(s[i].p[0]) && !is_ows(s[i].p[s[i].n - 1]));
        if (skip_ae)
            CHECK(s[i].n != 15 || strncasecmp(s[i].p, "accept-encoding", 15) != 0);
        if (i)
            CHECK(span_icmp(&s[i - 1], &s[i]) < 0); /* sorted, no duplicates */
    }
    free(s);
}

static void check_resp(const struct cache_field *f, uint32_t n, const char *buf, size_t len,
                       uint16_t status)
{
    struct cache_resp_meta m;
    int64_t lt;

    CHECK(cache_resp_meta_parse(&m, status, f, n) == 0);
    CHECK(m.status == status);
    check_cc(&m.cc);
    CHECK(m.has_etag == (m.etag != NULL));
    CHECK(!m.has_etag || (m.etag_len > 0 && inside(m.etag, m.etag_len, buf, len)));
    CHECK(m.content_length == -1 || (m.content_length >= 0 && m.content_length <= CACHE_DELTA_MAX));
    CHECK(!m.has_age || (m.age_s >= 0 && m.age_s <= CACHE_DELTA_MAX));
    CHECK(!(m.gzip_encoded && m.other_encoded));
    CHECK(!m.vary_star || m.has_vary);
    CHECK(!m.has_date || (m.date_s >= DATE_MIN && m.date_s <= DATE_MAX));
    CHECK(!m.has_lm || (m.lm_s >= DATE_MIN && m.lm_s <= DATE_MAX));
    CHECK(!m.expires_valid || m.has_expires);
    if (cache_freshness_lifetime(&m, 1700000000000LL, &lt))
        CHECK(lt >= 0 && lt <= CACHE_DELTA_MAX * 1000);
    else
        CHECK(m.cc.s_maxage < 0 && m.cc.max_age < 0 && !m.has_expires);
}

static void check_req(const struct cache_field *f, uint32_t n, uint32_t method,
                      const struct cache_resp_meta *rs)
{
    struct cache_req_meta m;
    uint32_t n_ae = 0, ae = 0;

    CHECK(cache_req_meta_parse(&m, method, f, n) == 0);
    CHECK(m.method == method && m.fields == f && m.n_fields == n);
    check_cc(&m.cc);
    CHECK(!(m.cc.flags & CACHE_CC_NO_CACHE) || m.no_cache);
    CHECK(!m.has_ims || (m.ims_s >= DATE_MIN && m.ims_s <= DATE_MAX));
    for (uint32_t i = 0; i < n; i++)
        if (f[i].name_len == 15 && !strncasecmp(f[i].name, "accept-encoding", 15))
            n_ae++, ae = i;
    if (n_ae == 0)
        CHECK(!m.accepts_gzip);
    else if (n_ae == 1)
        CHECK(m.accepts_gzip == cache_accepts_gzip(f[ae].value, f[ae].value_len));
    (void)cache_not_modified(&m, rs->etag, rs->etag_len, rs->has_lm, rs->lm_s);
    (void)cache_not_modified(&m, NULL, 0, false, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_field f[MAX_FIELDS];
    struct cache_resp_meta rs;
    uint32_t n = 0;
    uint16_t status;
    uint32_t method;
    char *buf;
    size_t len, i = 0;

    if (size < 2)
        return 0;
    status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
    method = methods[data[1] % (sizeof(methods) / sizeof(methods[0]))];
    len = size - 2;
    /* An exact-size copy, so ASan sees any read past the end. */
    buf = malloc(len ? len : 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 2, len);

    while (i < len && n < MAX_FIELDS) {
        const char *line = buf + i, *nl = memchr(line, '\n', len - i), *colon, *v;
        size_t ll = nl ? (size_t)(nl - line) : len - i, vn;
        struct cache_field *x = &f[n++];

        i += ll + 1;
        if (ll && (unsigned char)line[0] < 0x20) {
            x->name = names[(unsigned char)line[0] % N_NAMES];
            x->name_len = (uint32_t)strlen(x->name);
            v = line + 1;
            vn = ll - 1;
        } else {
            colon = memchr(line, ':', ll);
            x->name = line;
            x->name_len = (uint32_t)(colon ? (size_t)(colon - line) : ll);
            v = colon ? colon + 1 : line + ll;
            vn = colon ? ll - (size_t)(colon + 1 - line) : 0;
        }
        while (vn && is_ows(v[0]))
            v++, vn--;
        while (vn && is_ows(v[vn - 1]))
            vn--;
        x->value = v;
        x->value_len = (uint32_t)vn;
    }

    /* The whole input as one value, then each field's value. */
    check_value(buf, len);
    for (uint32_t k = 0; k < n; k++) {
        check_value(f[k].value, f[k].value_len);
        check_vary_norm(f, n, f[k].name, f[k].name_len);
    }
    check_vary_names(f, n, buf, len, false);
    check_vary_names(f, n, buf, len, true);
    check_resp(f, n, buf, len, status);
    CHECK(cache_resp_meta_parse(&rs, status, f, n) == 0);
    check_req(f, n, method, &rs);
    free(buf);
    return 0;
}

/* policy.c: RFC 9111 shared-cache policy as pure functions: Cache-Control and HTTP-date
 * parsing, freshness lifetime and age arithmetic, storability, whether a stored response
 * satisfies a request, conditional (304) decisions, Accept-Encoding and content-type tests,
 * and operator rule matching. No allocation, no locks, no clock: callers pass the time.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void trim(const char **s, size_t *n)
{
    while (*n && cache_is_ows(**s))
        (*s)++, (*n)--;
    while (*n && cache_is_ows((*s)[*n - 1]))
        (*n)--;
}

/* The next non-empty element of a comma-separated list, trimmed; *i advances past it.
 * Returns false at the end. Quoted strings are not special (no list here quotes commas). */
static bool next_elem(const char *v, size_t n, size_t *i, const char **el, size_t *en)
{
    while (*i < n) {
        size_t s = *i;
        const char *c = memchr(v + s, ',', n - s);
        size_t e = c ? (size_t)(c - v) : n;
        *i = e + 1;
        *el = v + s;
        *en = e - s;
        trim(el, en);
        if (*en)
            return true;
    }
    return false;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* delta-seconds: 1*DIGIT, clamped at 2^31 (§1.2.2). Returns -1 when not a number. */
static int64_t parse_delta(const char *p, size_t n)
{
    int64_t v = 0;
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        if (v < CACHE_DELTA_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v > CACHE_DELTA_MAX ? CACHE_DELTA_MAX : v;
}

void cache_config_defaults(struct cache_config *c)
{
    *c = (struct cache_config){
        .default_max_age_ms = 5 * 60 * 1000,
        .max_total_bytes = 256ull << 20,
        .max_entries = 10000,
        .max_entry_size = 4ull << 20,
        .pre_compress = false,
        .compress_level = 6,
        .compress_min_len = 256,
        .stale_while_revalidate_ms = 0,
    };
}

/* ---- Cache-Control ------------------------------------------------------------------------ */

void cache_cc_init(struct cache_cc *cc)
{
    *cc = (struct cache_cc){0, -1, -1, -1, -1, -1, -1};
}

/* Keeps the more restrictive of two values; `smaller` says which direction restricts. */
static void keep(int64_t *slot, int64_t v, bool smaller)
{
    if (*slot < 0 || (smaller ? v < *slot : v > *slot))
        *slot = v;
}

static void cc_apply(struct cache_cc *cc, const char *nm, size_t nn, bool has_val, const char *val,
                     size_t vn)
{
    int64_t d = has_val ? parse_delta(val, vn) : -1;
    static const struct {
        const char *name;
        uint32_t flag;
    } flags[] = {
        {"no-cache", CACHE_CC_NO_CACHE},
        {"no-store", CACHE_CC_NO_STORE},
        {"private", CACHE_CC_PRIVATE},
        {"must-revalidate", CACHE_CC_MUST_REVALIDATE},
        {"proxy-revalidate", CACHE_CC_PROXY_REVALIDATE},
        {"public", CACHE_CC_PUBLIC},
        {"only-if-cached", CACHE_CC_ONLY_IF_CACHED},
        {"no-transform", CACHE_CC_NO_TRANSFORM},
        {"immutable", CACHE_CC_IMMUTABLE},
    };

    if (span_ieq(nm, nn, "max-age"))
        keep(&cc->max_age, d < 0 ? 0 : d, true);
    else if (span_ieq(nm, nn, "s-maxage"))
        keep(&cc->s_maxage, d < 0 ? 0 : d, true);
    else if (span_ieq(nm, nn, "max-stale")) {
        if (!has_val)
            cc->flags |= CACHE_CC_MAX_STALE_ANY;
        else if (d >= 0)
            keep(&cc->max_stale, d, true);
    } else if (span_ieq(nm, nn, "min-fresh")) {
        if (d >= 0)
            keep(&cc->min_fresh, d, false);
    } else if (span_ieq(nm, nn, "stale-while-revalidate")) {
        if (d >= 0)
            keep(&cc->swr, d, true);
    } else if (span_ieq(nm, nn, "stale-if-error")) {
        if (d >= 0)
            keep(&cc->sie, d, true);
    } else {
        for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
            if (span_ieq(nm, nn, flags[i].name))
                cc->flags |= flags[i].flag;
    }
}

void cache_cc_parse(struct cache_cc *cc, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ',' || cache_is_ows(v[i])))
            i++;
        size_t ns = i;
        while (i < n && v[i] != '=' && v[i] != ',' && !cache_is_ows(v[i]))
            i++;
        size_t nn = i - ns, j = i, vs = 0, vn = 0;
        bool has_val = false;
        while (j < n && cache_is_ows(v[j]))
            j++;
        if (j < n && v[j] == '=') {
            has_val = true;
            for (j++; j < n && cache_is_ows(v[j]); j++)
                ;
            if (j < n && v[j] == '"') { /* quoted-string: commas inside do not split */
                vs = ++j;
                while (j < n && v[j] != '"')
                    j += (v[j] == '\\' && j + 1 < n) ? 2 : 1;
                vn = (j < n ? j : n) - vs;
                if (j < n)
                    j++;
            } else {
                for (vs = j; j < n && v[j] != ',' && !cache_is_ows(v[j]); j++)
                    ;
                vn = j - vs;
            }
            i = j;
        }
        while (i < n && v[i] != ',') /* junk after a directive: skipped */
            i++;
        if (nn)
            cc_apply(cc, v + ns, nn, has_val, v + vs, vn);
    }
}

/* ---- HTTP-date (RFC 9110 §5.6.7) ---------------------------------------------------------- */

struct cur {
    const char *p, *e;
};

static bool lit(struct cur *c, char ch)
{
    if (c->p < c->e && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool num(struct cur *c, int digits, int *out)
{
    int v = 0;
    for (int i = 0; i < digits; i++, c->p++) {
        if (c->p >= c->e || !is_digit(*c->p))
            return false;
        v = v * 10 + (*c->p - '0');
    }
    *out = v;
    return true;
}

static bool month(struct cur *c, int *m)
{
    static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";
    if (c->e - c->p < 3)
        return false;
    for (int i = 0; i < 12; i++)
        if (span_ieq(c->p, 3, (char[]){names[3 * i], names[3 * i + 1], names[3 * i + 2], 0})) {
            c->p += 3;
            *m = i + 1;
            return true;
        }
    return false;
}

static bool hms(struct cur *c, int *h, int *mi, int *s)
{
    return num(c, 2, h) && lit(c, ':') && num(c, 2, mi) && lit(c, ':') && num(c, 2, s) &&
           *h <= 23 && *mi <= 59 && *s <= 60;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool valid_ymd(int y, int m, int d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m >= 1 && m <= 12 && d >= 1 && d <= mdays[m - 1] + (m == 2 && leap);
}

int cache_parse_http_date(const char *s, size_t n, int64_t *out)
{
    struct cur c;
    int y, m, d, h, mi, sec, wd = 0;
    trim(&s, &n);
    c = (struct cur){s, s + n};
    while (c.p < c.e && ((*c.p | 32) >= 'a' && (*c.p | 32) <= 'z'))
        c.p++, wd++;
    if (wd < 3 || wd > 9)
        return -EINVAL;
    if (lit(&c, ',')) {
        if (!lit(&c, ' ') || !num(&c, 2, &d))
            return -EINVAL;
        if (lit(&c, ' ')) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            if (!month(&c, &m) || !lit(&c, ' ') || !num(&c, 4, &y))
                return -EINVAL;
        } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
            if (!lit(&c, '-') || !month(&c, &m) || !lit(&c, '-') || !num(&c, 2, &y))
                return -EINVAL;
            y += y < 70 ? 2000 : 1900;
        }
        if (!lit(&c, ' ') || !hms(&c, &h, &mi, &sec) || c.e - c.p != 4 ||
            memcmp(c.p, " GMT", 4) != 0)
            return -EINVAL;
    } else { /* asctime: Sun Nov  6 08:49:37 1994 */
        if (!lit(&c, ' ') || !month(&c, &m) || !lit(&c, ' '))
            return -EINVAL;
        if (lit(&c, ' ')) {
            if (!num(&c, 1, &d))
                return -EINVAL;
        } else if (!num(&c, 2, &d))
            return -EINVAL;
        if (!lit(&c, ' ') || !hms(&c, &h, &mi, &sec) || !lit(&c, ' ') || !num(&c, 4, &y) ||
            c.p != c.e)
            return -EINVAL;
    }
    if (!valid_ymd(y, m, d))
        return -EINVAL;
    *out = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 0;
}

/* ---- heads ------------------------------------------------------------------------------- */

/* Accept-Encoding: the best q (0..1000) given to gzip/x-gzip and to `*`, -1 if unnamed. */
struct ae_state {
    int gzip_q, star_q;
};

static int parse_q(const char *p, size_t n)
{
    int q = 0, scale = 1000;
    if (n == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    q = (p[0] - '0') * 1000;
    if (n > 1) {
        if (p[1] != '.' || n > 5)
            return -1;
        for (size_t i = 2; i < n; i++) {
            if (!is_digit(p[i]))
                return -1;
            scale /= 10;
            q += (p[i] - '0') * scale;
        }
    }
    return q > 1000 ? -1 : q;
}

static void ae_feed(struct ae_state *st, const char *v, size_t n)
{
    const char *el;
    size_t en, i = 0;
    while (next_elem(v, n, &i, &el, &en)) {
        const char *semi = memchr(el, ';', en), *pp = semi ? semi + 1 : NULL;
        size_t tn = semi ? (size_t)(semi - el) : en, pn = semi ? en - tn - 1 : 0;
        int q = 1000;
        trim(&el, &tn);
        trim(&pp, &pn); /* parameters: only q matters; an unreadable weight is not a yes */
        if (pn >= 2 && ascii_lower(pp[0]) == 'q') {
            const char *qv = pp + 1;
            size_t qn = pn - 1;
            trim(&qv, &qn);
            if (qn && qv[0] == '=') {
                qv++, qn--;
                trim(&qv, &qn);
                q = parse_q(qv, qn);
                q = q < 0 ? 0 : q;
            }
        }
        if (span_ieq(el, tn, "gzip") || span_ieq(el, tn, "x-gzip"))
            st->gzip_q = st->gzip_q > q ? st->gzip_q : q;
        else if (tn == 1 && el[0] == '*')
            st->star_q = st->star_q > q ? st->star_q : q;
    }
}

static bool ae_gzip(const struct ae_state *st)
{
    return st->gzip_q >= 0 ? st->gzip_q > 0 : st->star_q > 0;
}

bool cache_accepts_gzip(const char *v, size_t n)
{
    struct ae_state st = {-1, -1};
    ae_feed(&st, v, n);
    return ae_gzip(&st);
}

bool cache_compressible_type(const char *v, size_t n)
{
    const char *semi = memchr(v, ';', n);
    if (semi)
        n = (size_t)(semi - v);
    trim(&v, &n);
    if (span_istarts(v, n, "text/") && n > 5)
        return true;
    if (span_ieq(v, n, "application/json") || span_ieq(v, n, "application/javascript") ||
        span_ieq(v, n, "application/x-javascript") || span_ieq(v, n, "application/xml") ||
        span_ieq(v, n, "image/svg+xml"))
        return true;
    const char *slash = memchr(v, '/', n);
    if (!slash)
        return false;
    size_t sub = n - (size_t)(slash + 1 - v);
    return (sub > 5 && span_ieq(v + n - 5, 5, "+json")) ||
           (sub > 4 && span_ieq(v + n - 4, 4, "+xml"));
}

/* Whether a comma-separated list holds the token `tok` (lowercase). */
static bool list_has(const char *v, size_t n, const char *tok)
{
    const char *el;
    size_t en, i = 0;
    while (next_elem(v, n, &i, &el, &en))
        if (span_ieq(el, en, tok))
            return true;
    return false;
}

static void content_encoding(struct cache_resp_meta *m, const char *v, size_t n)
{
    const char *el;
    size_t en, i = 0;
    while (next_elem(v, n, &i, &el, &en)) {
        if (span_ieq(el, en, "identity"))
            continue;
        if ((span_ieq(el, en, "gzip") || span_ieq(el, en, "x-gzip")) && !m->gzip_encoded)
            m->gzip_encoded = true;
        else
            m->other_encoded = true;
    }
    if (m->other_encoded)
        m->gzip_encoded = false;
}

int cache_resp_meta_parse(struct cache_resp_meta *m, uint16_t status, const struct cache_field *f,
                          uint32_t n)
{
    memset(m, 0, sizeof(*m));
    m->status = status;
    m->content_length = -1;
    cache_cc_init(&m->cc);
    for (uint32_t i = 0; i < n; i++) {
        const char *nm = f[i].name, *v = f[i].value;
        size_t nn = f[i].name_len, vn = f[i].value_len;
        if (span_ieq(nm, nn, "cache-control"))
            cache_cc_parse(&m->cc, v, vn);
        else if (span_ieq(nm, nn, "date") && !m->has_date)
            m->has_date = cache_parse_http_date(v, vn, &m->date_s) == 0;
        else if (span_ieq(nm, nn, "expires") && !m->has_expires) {
            m->has_expires = true; /* first line wins; an invalid one means expired */
            m->expires_valid = cache_parse_http_date(v, vn, &m->expires_s) == 0;
        } else if (span_ieq(nm, nn, "age") && !m->has_age) {
            m->age_s = parse_delta(v, vn);
            m->has_age = m->age_s >= 0;
        } else if (span_ieq(nm, nn, "last-modified") && !m->has_lm)
            m->has_lm = cache_parse_http_date(v, vn, &m->lm_s) == 0;
        else if (span_ieq(nm, nn, "etag") && !m->has_etag && vn) {
            m->has_etag = true;
            m->etag = v;
            m->etag_len = (uint32_t)vn;
        } else if (span_ieq(nm, nn, "set-cookie"))
            m->set_cookie = true;
        else if (span_ieq(nm, nn, "vary")) {
            m->has_vary = true;
            m->vary_star |= list_has(v, vn, "*");
        } else if (span_ieq(nm, nn, "content-encoding"))
            content_encoding(m, v, vn);
        else if (span_ieq(nm, nn, "content-type"))
            m->compressible = cache_compressible_type(v, vn);
        else if (span_ieq(nm, nn, "content-length"))
            m->content_length = parse_delta(v, vn);
    }
    return 0;
}

uint32_t cache_method_bit(const char *m, size_t n)
{
    static const struct {
        const char *name;
        uint32_t bit;
    } t[] = {{"GET", CACHE_M_GET},        {"HEAD", CACHE_M_HEAD},     {"POST", CACHE_M_POST},
             {"PUT", CACHE_M_PUT},        {"DELETE", CACHE_M_DELETE}, {"PATCH", CACHE_M_PATCH},
             {"OPTIONS", CACHE_M_OPTIONS}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (strlen(t[i].name) == n && memcmp(t[i].name, m, n) == 0)
            return t[i].bit;
    return CACHE_M_OTHER;
}

int cache_req_meta_parse(struct cache_req_meta *m, uint32_t method_bit, const struct cache_field *f,
                         uint32_t n)
{
    struct ae_state ae = {-1, -1};
    bool had_cc = false, pragma = false;
    memset(m, 0, sizeof(*m));
    m->method = method_bit;
    m->fields = f;
    m->n_fields = n;
    cache_cc_init(&m->cc);
    for (uint32_t i = 0; i < n; i++) {
        const char *nm = f[i].name, *v = f[i].value;
        size_t nn = f[i].name_len, vn = f[i].value_len;
        if (span_ieq(nm, nn, "cache-control")) {
            had_cc = true;
            cache_cc_parse(&m->cc, v, vn);
        } else if (span_ieq(nm, nn, "pragma"))
            pragma |= list_has(v, vn, "no-cache");
        else if (span_ieq(nm, nn, "authorization"))
            m->authorization = true;
        else if (span_ieq(nm, nn, "accept-encoding"))
            ae_feed(&ae, v, vn);
        else if (span_ieq(nm, nn, "if-none-match"))
            m->has_inm = true;
        else if (span_ieq(nm, nn, "if-modified-since") && !m->has_ims)
            m->has_ims = cache_parse_http_date(v, vn, &m->ims_s) == 0;
    }
    m->accepts_gzip = ae_gzip(&ae);
    m->no_cache = (m->cc.flags & CACHE_CC_NO_CACHE) || (!had_cc && pragma);
    return 0;
}

/* ---- freshness ------------------------------------------------------------------------------ */

bool cache_freshness_lifetime(const struct cache_resp_meta *m, int64_t response_ms,
                              int64_t *lifetime_ms)
{
    int64_t lt;
    if (m->cc.s_maxage >= 0)
        lt = m->cc.s_maxage * 1000;
    else if (m->cc.max_age >= 0)
        lt = m->cc.max_age * 1000;
    else if (m->has_expires) {
        int64_t date_ms = m->has_date ? m->date_s * 1000 : response_ms;
        lt = m->expires_valid ? max64(0, m->expires_s * 1000 - date_ms) : 0;
        lt = min64(lt, CACHE_DELTA_MAX * 1000);
    } else
        return false;
    *lifetime_ms = lt;
    return true;
}

int64_t cache_current_age(const struct cache_fresh *f, int64_t now_ms)
{
    int64_t apparent = max64(0, f->response_ms - f->date_ms);
    int64_t delay = max64(0, f->response_ms - f->request_ms);
    int64_t corrected_age = (f->age_s >= 0 ? f->age_s * 1000 : 0) + delay;
    int64_t initial = max64(apparent, corrected_age);
    return initial + max64(0, now_ms - f->response_ms);
}

/* ---- storability ------------------------------------------------------------------------- */

static bool status_in(uint16_t s, const uint16_t *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == s)
            return true;
    return false;
}

static const uint16_t heuristic_statuses[] = {200, 203, 204, 300, 301, 308,
                                              404, 405, 410, 414, 501};
static const uint16_t understood_statuses[] = {200, 203, 204, 300, 301, 302, 303,
                                               307, 308, 400, 403, 404, 405, 410,
                                               414, 451, 500, 501, 502, 503, 504};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *cache_store_reason_str(enum cache_store_reason r)
{
    static const char *const s[] = {
        [CACHE_STORE_OK] = "ok",
        [CACHE_NS_METHOD] = "method",
        [CACHE_NS_HOOK] = "hook",
        [CACHE_NS_PARTIAL] = "partial-content",
        [CACHE_NS_STATUS] = "status",
        [CACHE_NS_NO_STORE_REQ] = "request-no-store",
        [CACHE_NS_NO_STORE] = "no-store",
        [CACHE_NS_PRIVATE] = "private",
        [CACHE_NS_AUTHORIZATION] = "authorization",
        [CACHE_NS_SET_COOKIE] = "set-cookie",
        [CACHE_NS_VARY_STAR] = "vary-star",
        [CACHE_NS_NO_FRESHNESS] = "no-freshness",
        [CACHE_NS_STALE] = "stale-without-validator",
        [CACHE_NS_TOO_LARGE] = "too-large",
        [CACHE_NS_ENCODING] = "content-encoding",
    };
    return (unsigned)r < NELEM(s) && s[r] ? s[r] : "unknown";
}

enum cache_store_reason cache_storable(const struct cache_config *cfg,
                                       const struct cache_req_meta *rq,
                                       const struct cache_resp_meta *rs,
                                       const struct cache_admit *ad, int64_t response_ms,
                                       struct cache_verdict *out)
{
    const struct cache_rule *rule = ad ? ad->rule : NULL;
    int8_t hook = ad ? ad->hook : 0;
    bool rule_status = rule && rule->n_status_only;
    uint16_t st = rs->status;
    uint32_t cc = rs->cc.flags;
    struct cache_verdict v = {0};

    if (rq->method != CACHE_M_GET || !cache_rule_allows(rule, rq->method))
        return CACHE_NS_METHOD;
    if (hook < 0)
        return CACHE_NS_HOOK;
    if (st == 206)
        return CACHE_NS_PARTIAL;
    if (rule_status
            ? !status_in(st, rule->status_only, rule->n_status_only) || st == 304 || st < 200
            : !status_in(st, understood_statuses, NELEM(understood_statuses)))
        return CACHE_NS_STATUS;
    if (rq->cc.flags & CACHE_CC_NO_STORE)
        return CACHE_NS_NO_STORE_REQ;
    if (cc & CACHE_CC_NO_STORE)
        return CACHE_NS_NO_STORE;
    if (cc & CACHE_CC_PRIVATE)
        return CACHE_NS_PRIVATE;
    if (rq->authorization && !(cc & (CACHE_CC_PUBLIC | CACHE_CC_MUST_REVALIDATE)) &&
        rs->cc.s_maxage < 0)
        return CACHE_NS_AUTHORIZATION;
    if (rs->set_cookie && hook <= 0 && !(rule && rule->store_set_cookie))
        return CACHE_NS_SET_COOKIE;
    if (rs->vary_star)
        return CACHE_NS_VARY_STAR;
    if (rs->other_encoded)
        return CACHE_NS_ENCODING;

    v.explicit_fresh = cache_freshness_lifetime(rs, response_ms, &v.lifetime_ms);
    if (!v.explicit_fresh) {
        bool admitted = hook > 0 || rule;
        bool heur = rule_status || status_in(st, heuristic_statuses, NELEM(heuristic_statuses));
        if (!admitted || !heur)
            return CACHE_NS_NO_FRESHNESS;
        v.lifetime_ms = (int64_t)(hook > 0 && ad->hook_ttl_ms ? ad->hook_ttl_ms
                                  : rule && rule->max_age_ms  ? rule->max_age_ms
                                                              : cfg->default_max_age_ms);
    }
    if (v.lifetime_ms == 0 && !rs->has_etag && !rs->has_lm && rs->cc.swr <= 0 && rs->cc.sie <= 0 &&
        !(cc & CACHE_CC_NO_CACHE) && cfg->stale_while_revalidate_ms == 0)
        return CACHE_NS_STALE;
    v.max_bytes = rule && rule->max_bytes ? rule->max_bytes : cfg->max_entry_size;
    if (rs->content_length >= 0 && (uint64_t)rs->content_length > v.max_bytes)
        return CACHE_NS_TOO_LARGE;
    *out = v;
    return CACHE_STORE_OK;
}

void cache_fresh_init(struct cache_fresh *f, const struct cache_resp_meta *rs,
                      const struct cache_verdict *v, int64_t request_ms, int64_t response_ms,
                      uint64_t cfg_swr_ms)
{
    uint32_t cc = rs->cc.flags;
    f->request_ms = request_ms;
    f->response_ms = response_ms;
    f->date_ms = rs->has_date ? rs->date_s * 1000 : response_ms;
    f->age_s = rs->has_age ? rs->age_s : -1;
    f->lifetime_ms = v->lifetime_ms;
    f->swr_ms = rs->cc.swr >= 0 ? rs->cc.swr * 1000 : (int64_t)cfg_swr_ms;
    f->sie_ms = rs->cc.sie >= 0 ? rs->cc.sie * 1000 : 0;
    f->flags = 0;
    if (cc & CACHE_CC_NO_CACHE)
        f->flags |= CACHE_F_NO_CACHE;
    if ((cc & (CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE)) || rs->cc.s_maxage >= 0)
        f->flags |= CACHE_F_NO_STALE;
    if (cc & (CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE))
        f->flags |= CACHE_F_MUST_REVALIDATE;
}

/* ---- serving ---------------------------------------------------------------------------- */

void cache_satisfy(const struct cache_fresh *f, const struct cache_req_meta *rq, int64_t now_ms,
                   struct cache_decision *out)
{
    int64_t age = cache_current_age(f, now_ms);
    int64_t left = f->lifetime_ms - age; /* > 0: fresh */
    int64_t staleness = -left;
    bool no_stale = f->flags & CACHE_F_NO_STALE;
    const struct cache_cc *rc = rq ? &rq->cc : NULL;

    *out = (struct cache_decision){.serve = CACHE_MUST_REVALIDATE, .age_ms = age};
    out->stale = left <= 0;
    if (!out->stale)
        out->sie_ok = true;
    else if (!no_stale)
        out->sie_ok = (f->sie_ms > 0 && staleness <= f->sie_ms) ||
                      (rc && rc->sie > 0 && staleness <= rc->sie * 1000);

    if (f->flags & CACHE_F_NO_CACHE)
        return;
    if (rq && rq->no_cache)
        return;
    if (rc && rc->max_age >= 0 && age >= rc->max_age * 1000)
        return;
    if (!out->stale) {
        if (rc && rc->min_fresh >= 0 && left < rc->min_fresh * 1000)
            return;
        out->serve = CACHE_FRESH;
        return;
    }
    if (no_stale)
        return;
    if (rc && ((rc->flags & CACHE_CC_MAX_STALE_ANY) ||
               (rc->max_stale >= 0 && staleness <= rc->max_stale * 1000))) {
        out->serve = CACHE_FRESH;
        return;
    }
    if (staleness <= f->swr_ms && f->swr_ms > 0)
        out->serve = CACHE_STALE_SWR;
}

/* ---- conditionals ----------------------------------------------------------------------- */

/* The opaque-tag of an entity-tag (W/ prefix removed), for weak comparison. */
static void opaque(const char **s, size_t *n)
{
    if (*n >= 2 && (*s)[0] == 'W' && (*s)[1] == '/')
        *s += 2, *n -= 2;
}

static bool inm_matches(const char *v, size_t n, const char *etag, size_t etag_len)
{
    size_t i = 0;
    opaque(&etag, &etag_len);
    while (i < n) {
        while (i < n && (v[i] == ',' || cache_is_ows(v[i])))
            i++;
        if (i >= n)
            break;
        if (v[i] == '*')
            return true;
        size_t s = i;
        if (n - i >= 2 && v[i] == 'W' && v[i + 1] == '/')
            i += 2;
        if (i < n && v[i] == '"') { /* entity-tags hold no quotes, so the next one closes */
            const char *q = memchr(v + i + 1, '"', n - i - 1);
            i = q ? (size_t)(q - v) + 1 : n;
        } else
            while (i < n && v[i] != ',')
                i++;
        const char *t = v + s;
        size_t tn = i - s;
        opaque(&t, &tn);
        if (etag && tn == etag_len && memcmp(t, etag, tn) == 0)
            return true;
        while (i < n && v[i] != ',')
            i++;
    }
    return false;
}

bool cache_not_modified(const struct cache_req_meta *rq, const char *etag, size_t etag_len,
                        bool has_lm, int64_t lm_s)
{
    if (rq->has_inm) {
        for (uint32_t i = 0; i < rq->n_fields; i++) {
            const struct cache_field *f = &rq->fields[i];
            if (span_ieq(f->name, f->name_len, "if-none-match") &&
                inm_matches(f->value, f->value_len, etag, etag ? etag_len : 0))
                return true;
        }
        return false;
    }
    return rq->has_ims && has_lm && lm_s <= rq->ims_s;
}

int cache_etag_weaken(const char *etag, size_t etag_len, char *out, size_t cap)
{
    bool weak = etag_len >= 2 && etag[0] == 'W' && etag[1] == '/';
    size_t need = etag_len + (weak ? 0 : 2);
    if (need > cap)
        return -ENOSPC;
    if (!weak) {
        out[0] = 'W';
        out[1] = '/';
    }
    memcpy(out + (weak ? 0 : 2), etag, etag_len);
    return (int)need;
}

/* ---- config copies
 * --------------------------------------------------------------------------------- */

static void rules_free(struct cache_rule *r, uint32_t n)
{
    for (uint32_t i = 0; r && i < n; i++) {
        free((char *)r[i].path_prefix);
        free((uint16_t *)r[i].status_only);
    }
    free(r);
}

int cache_config_copy(struct cache_config *dst, const struct cache_config *src)
{
    struct cache_config d;
    cache_config_defaults(&d);
    if (src) {
#define TAKE(f)                                                                                    \
    if (src->f)                                                                                    \
    d.f = src->f
        TAKE(default_max_age_ms);
        TAKE(max_total_bytes);
        TAKE(max_entries);
        TAKE(max_entry_size);
        TAKE(compress_level);
        TAKE(compress_min_len);
        TAKE(stale_while_revalidate_ms);
#undef TAKE
        d.pre_compress = src->pre_compress;
    }
    d.rules = NULL;
    d.n_rules = 0;
    if (src && src->n_rules) {
        struct cache_rule *r = calloc(src->n_rules, sizeof(*r));
        if (!r)
            return -ENOMEM;
        for (uint32_t i = 0; i < src->n_rules; i++) {
            r[i] = src->rules[i];
            r[i].path_prefix = strdup(src->rules[i].path_prefix ? src->rules[i].path_prefix : "");
            r[i].status_only = NULL;
            if (src->rules[i].n_status_only) {
                uint16_t *s = malloc(src->rules[i].n_status_only * sizeof(*s));
                if (s)
                    memcpy(s, src->rules[i].status_only, src->rules[i].n_status_only * sizeof(*s));
                r[i].status_only = s;
            }
            if (!r[i].path_prefix || (src->rules[i].n_status_only && !r[i].status_only)) {
                rules_free(r, i + 1);
                return -ENOMEM;
            }
        }
        d.rules = r;
        d.n_rules = src->n_rules;
    }
    *dst = d;
    return 0;
}

void cache_config_release(struct cache_config *c)
{
    rules_free((struct cache_rule *)c->rules, c->n_rules);
    c->rules = NULL;
    c->n_rules = 0;
}

/* ---- keys and Vary (RFC 9111 §4.1)
 * --------------------------------------------------------------- */

int cache_key_build(char *out, size_t cap, uint32_t method_bit, const char *host, size_t host_len,
                    const char *path, size_t path_len)
{
    size_t need = 2 + host_len + path_len;
    if (method_bit != CACHE_M_GET && method_bit != CACHE_M_HEAD)
        return -EINVAL;
    if (need > cap || need > UINT32_MAX)
        return -ENOSPC;
    out[0] = 'G';
    for (size_t i = 0; i < host_len; i++)
        out[1 + i] = ascii_lower(host[i]);
    out[1 + host_len] = ' ';
    memcpy(out + 2 + host_len, path, path_len);
    return (int)need;
}

int64_t cache_vary_norm(const struct cache_field *f, uint32_t n, const char *name, size_t nlen,
                        char *out)
{
    int64_t len = -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *el;
        size_t en, j = 0;
        if (!span_ieq_span(f[i].name, f[i].name_len, name, nlen))
            continue;
        len = len < 0 ? 0 : len;
        while (next_elem(f[i].value, f[i].value_len, &j, &el, &en)) {
            if (len > 0 && out)
                out[len] = ',';
            len += len > 0;
            for (size_t k = 0; k < en; k++) {
                if (k && cache_is_ows(el[k]) && cache_is_ows(el[k - 1]))
                    continue;
                if (out)
                    out[len] = cache_is_ows(el[k]) ? ' ' : el[k];
                len++;
            }
        }
    }
    return len;
}

static int span_cmp(const void *a, const void *b)
{
    const struct cache_span *x = a, *y = b;
    size_t n = (size_t)(x->n < y->n ? x->n : y->n);
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(x->p[i]) != ascii_lower(y->p[i]))
            return (unsigned char)ascii_lower(x->p[i]) - (unsigned char)ascii_lower(y->p[i]);
    return (x->n > y->n) - (x->n < y->n);
}

int cache_vary_names(const struct cache_field *f, uint32_t n, bool skip_ae, struct cache_span **out)
{
    uint32_t cap = 0, k = 0, m = 0;
    const char *el;
    size_t en;
    *out = NULL;
    for (uint32_t i = 0; i < n; i++)
        if (span_ieq(f[i].name, f[i].name_len, "vary"))
            for (size_t j = 0; j < f[i].value_len + 1; j++)
                cap += j == f[i].value_len || f[i].value[j] == ',';
    struct cache_span *s = cap ? malloc(cap * sizeof(*s)) : NULL;
    if (cap && !s)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        for (size_t j = 0; span_ieq(f[i].name, f[i].name_len, "vary") &&
                           next_elem(f[i].value, f[i].value_len, &j, &el, &en);)
            if (!skip_ae || !span_ieq(el, en, "accept-encoding"))
                s[k++] = (struct cache_span){el, (int64_t)en};
    if (k)
        qsort(s, k, sizeof(*s), span_cmp);
    for (uint32_t i = 0; i < k; i++)
        if (m == 0 || span_cmp(&s[m - 1], &s[i]) != 0)
            s[m++] = s[i];
    if (!m)
        free(s);
    else
        *out = s;
    return (int)m;
}

/* ---- rules ------------------------------------------------------------------------------- */

const struct cache_rule *cache_rule_match(const struct cache_config *cfg, const char *path,
                                          size_t path_len)
{
    const struct cache_rule *best = NULL;
    size_t best_len = 0;
    for (uint32_t i = 0; i < cfg->n_rules; i++) {
        const struct cache_rule *r = &cfg->rules[i];
        size_t k = r->path_prefix ? strlen(r->path_prefix) : 0;
        if (k <= path_len && memcmp(path, r->path_prefix ? r->path_prefix : "", k) == 0 &&
            (!best || k > best_len)) {
            best = r;
            best_len = k;
        }
    }
    return best;
}

bool cache_rule_allows(const struct cache_rule *rule, uint32_t method_bit)
{
    uint32_t m = rule && rule->methods ? rule->methods : CACHE_M_DEFAULT;
    return (m & method_bit) != 0;
}

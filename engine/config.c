/* config.c: the daemon's configuration file (libconfig syntax) turned into the library's
 * config structs. Every value is checked here, so each error names the file, the line and the
 * key ("demo.conf:7: domains[0].backends[1].weight: must be 1-100, got 0"). The structs'
 * strings and arrays live in an arena owned by the rp_file_config, so they outlive libconfig's
 * tree, which is destroyed before the loader returns. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* fileno */
#endif
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logfmt.h"
#include "proxy_proto.h"
#include "util.h"

#define MAX_HEADER_BYTES (1 << 20)
#define MAX_HEADER_COUNT 10000
#define MAX_TARGET_LEN (1 << 20)
#define MAX_FILE_BYTES (16 << 20) /* a configuration file past this is not one */

/* ---- arena: every block is one calloc, chained from rp_file_config.priv ---- */

struct blk {
    struct blk *next;
    max_align_t data[];
};

static void *arena_array(struct rp_file_config *c, size_t n, size_t size)
{
    struct blk *b;

    if (size && n > (SIZE_MAX - sizeof(*b)) / size)
        return NULL;
    b = calloc(1, sizeof(*b) + n * size);
    if (!b)
        return NULL;
    b->next = c->priv;
    c->priv = b;
    return b->data;
}

static char *arena_strdup(struct rp_file_config *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = arena_array(c, n, 1);

    return d ? memcpy(d, s, n) : NULL;
}

void rp_file_config_free(struct rp_file_config *c)
{
    struct blk *b, *next;

    if (!c)
        return;
    for (b = c->priv; b; b = next) {
        next = b->next;
        free(b);
    }
    memset(c, 0, sizeof(*c));
}

/* ---- duration and size strings ---- */

/* Reads one or more decimal digits at *p into *n; false if none or if the value passes max. */
static bool read_number(const char **p, uint64_t *n, uint64_t max)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = s;
    *n = v;
    return true;
}

/* Units in the only order they may appear, as nginx requires: "1h30m", never "30m1h". */
static const struct {
    const char *name;
    uint32_t ms;
} duration_units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

static int duration_unit_at(const char **p)
{
    int u = !strncmp(*p, "ms", 2) ? 3 : **p == 'h' ? 0 : **p == 'm' ? 1 : **p == 's' ? 2 : -1;

    if (u >= 0)
        *p += strlen(duration_units[u].name);
    return u;
}

int rp_parse_duration_ms(const char *s, uint32_t *ms)
{
    uint64_t total = 0, n;
    int last = -1, u;

    if (!s || !*s)
        return -EINVAL;
    while (*s) {
        if (!read_number(&s, &n, UINT32_MAX))
            return -EINVAL;
        u = duration_unit_at(&s);
        if (u <= last)
            return -EINVAL;
        total += n * duration_units[u].ms;
        if (total > UINT32_MAX)
            return -EINVAL;
        last = u;
    }
    *ms = (uint32_t)total;
    return 0;
}

/* Single letters are nginx's (x1024); KiB/MiB/GiB x1024; KB/MB/GB x1000. */
static uint64_t size_unit(const char *u)
{
    static const struct {
        const char *name;
        uint64_t mult;
    } units[] = {
        {"", 1},           {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30},
        {"KB", 1000},      {"MB", 1000000},     {"GB", 1000000000},  {"k", 1ULL << 10},
        {"m", 1ULL << 20}, {"g", 1ULL << 30},   {"K", 1ULL << 10},   {"M", 1ULL << 20},
        {"G", 1ULL << 30},
    };

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(u, units[i].name))
            return units[i].mult;
    return 0;
}

int rp_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t n, mult;

    if (!s || !read_number(&s, &n, UINT64_MAX))
        return -EINVAL;
    mult = size_unit(s);
    if (!mult || (n && mult > UINT64_MAX / n))
        return -EINVAL;
    *bytes = n * mult;
    return 0;
}

/* ---- error messages ---- */

struct loader {
    const char *path; /* file name for messages when libconfig has none */
    char *err;
    size_t errlen;
    struct rp_file_config *out;
};

/* "domains[0].backends[1].weight" into buf; "" for the root. Returns the length wanted. */
static size_t setting_path(const config_setting_t *s, char *buf, size_t cap)
{
    size_t n;
    int w;

    buf[0] = 0;
    if (!s || config_setting_is_root(s))
        return 0;
    n = setting_path(config_setting_parent(s), buf, cap);
    if (n >= cap)
        return n;
    if (config_setting_name(s))
        w = snprintf(buf + n, cap - n, "%s%s", n ? "." : "", config_setting_name(s));
    else
        w = snprintf(buf + n, cap - n, "[%d]", config_setting_index(s));
    return n + (w > 0 ? (size_t)w : 0);
}

/* The nearest line libconfig recorded for s or its parents; 0 when there is none. */
static unsigned line_of(const config_setting_t *s)
{
    for (; s; s = config_setting_parent(s))
        if (config_setting_source_line(s))
            return config_setting_source_line(s);
    return 0;
}

static const char *file_of(const struct loader *ld, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;

    return f ? f : ld->path;
}

/* Writes "FILE:LINE: WHERE: message" ("FILE: " alone when line is 0, no "WHERE: " when
 * where is empty) and returns -EINVAL. */
static int vfail(struct loader *ld, const char *file, unsigned line, const char *where,
                 const char *fmt, va_list ap)
{
    int n;

    if (!ld->err || !ld->errlen)
        return -EINVAL;
    if (line)
        n = snprintf(ld->err, ld->errlen, "%s:%u: ", file, line);
    else
        n = snprintf(ld->err, ld->errlen, "%s: ", file);
    if (n >= 0 && (size_t)n < ld->errlen && where[0])
        n += snprintf(ld->err + n, ld->errlen - (size_t)n, "%s: ", where);
    if (n >= 0 && (size_t)n < ld->errlen)
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    return -EINVAL;
}

/* Writes "FILE:LINE: KEY: message" (line of `at`, key path of `key`) and returns -EINVAL. */
static int fail(struct loader *ld, const config_setting_t *at, const config_setting_t *key,
                const char *fmt, ...)
{
    char where[256];
    va_list ap;

    setting_path(key, where, sizeof(where));
    va_start(ap, fmt);
    vfail(ld, file_of(ld, at), line_of(at), where, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* The same for what belongs to no setting: "FILE:LINE: message", or "FILE: message" when
 * line is 0. */
static int fail_line(struct loader *ld, unsigned line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfail(ld, ld->path, line, "", fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int out_of_memory(struct loader *ld)
{
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: out of memory", ld->path);
    return -ENOMEM;
}

static const char *type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a boolean";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    }
    return "nothing";
}

static int wrong_type(struct loader *ld, const config_setting_t *s, const char *want)
{
    return fail(ld, s, s, "must be %s, got %s", want, type_name(s));
}

/* ---- syntax checks on strings ---- */

static bool is_digits_and_dots(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != '.' && (p[i] < '0' || p[i] > '9'))
            return false;
    return true;
}

static bool ip_literal_ok(int af, const char *p, size_t n)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char sa[sizeof(struct in6_addr)];

    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, p, n);
    buf[n] = 0;
    return inet_pton(af, buf, sa) == 1;
}

static bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Dot-separated labels of [A-Za-z0-9_-], 1-63 bytes each, 253 in all. */
static bool hostname_ok(const char *p, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (!label_char(p[i]) || ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

/* An IPv4 literal, or (if names_ok) a host name; a name of digits and dots must be IPv4. */
static bool host_ok(const char *p, size_t n, bool names_ok)
{
    if (is_digits_and_dots(p, n))
        return ip_literal_ok(AF_INET, p, n);
    return names_ok && hostname_ok(p, n);
}

static bool port_ok(const char *p, size_t n)
{
    unsigned port = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        port = port * 10 + (unsigned)(p[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* "host:port" or "[ip6]:port" in p[0..n); the port may be left out unless need_port. */
static bool hostport_ok(const char *p, size_t n, bool need_port, bool names_ok)
{
    struct hostport hp;

    if (hostport_split(p, n, &hp))
        return false;
    if (hp.bracketed ? !ip_literal_ok(AF_INET6, hp.host, hp.host_len)
                     : !host_ok(hp.host, hp.host_len, names_ok))
        return false;
    if (!hp.port)
        return !need_port;
    return port_ok(hp.port, hp.port_len);
}

/* What a header value or path may hold: visible ASCII, no spaces (so no CR/LF injection). */
static bool visible_ascii(const char *s)
{
    for (; *s; s++)
        if (*s < 0x21 || *s > 0x7e)
            return false;
    return true;
}

/* ---- typed values ---- */

static int get_string(struct loader *ld, const config_setting_t *s, const char **v)
{
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a string");
    *v = config_setting_get_string(s);
    return 0;
}

static int get_copy(struct loader *ld, const config_setting_t *s, const char **v)
{
    int rc = get_string(ld, s, v);

    if (rc)
        return rc;
    *v = arena_strdup(ld->out, *v);
    return *v ? 0 : out_of_memory(ld);
}

/* Every integer arrives here as libconfig's INT64 (promote_integers() saw to that), so the
 * value checked is the value written, never one wrapped to 32 bits. */
static int get_int(struct loader *ld, const config_setting_t *s, long long lo, long long hi,
                   long long *v)
{
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
        return wrong_type(ld, s, "an integer");
    *v = config_setting_get_int64(s);
    if (*v < lo || *v > hi)
        return fail(ld, s, s, "must be %lld-%lld, got %lld", lo, hi, *v);
    return 0;
}

/* A duration string into *ms; "0s" is refused unless zero_ok (where 0 means "off"). */
static int get_duration(struct loader *ld, const config_setting_t *s, bool zero_ok, uint32_t *ms)
{
    const char *v;

    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return wrong_type(ld, s, "a duration string such as \"10s\"");
    v = config_setting_get_string(s);
    if (rp_parse_duration_ms(v, ms))
        return fail(ld, s, s, "\"%s\" is not a valid duration (e.g. \"250ms\", \"10s\", \"1m30s\")",
                    v);
    if (*ms == 0 && !zero_ok)
        return fail(ld, s, s, "must be longer than 0");
    return 0;
}

static int get_size(struct loader *ld, const config_setting_t *s, uint64_t max, uint64_t *v)
{
    long long i;

    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        if (rp_parse_size(config_setting_get_string(s), v))
            return fail(ld, s, s, "\"%s\" is not a valid size (e.g. 4096, \"64KiB\", \"256MiB\")",
                        config_setting_get_string(s));
    } else if (config_setting_type(s) == CONFIG_TYPE_INT ||
               config_setting_type(s) == CONFIG_TYPE_INT64) {
        i = config_setting_get_int64(s);
        *v = i < 0 ? 0 : (uint64_t)i;
        if (i < 0)
            return fail(ld, s, s, "must be 1-%llu bytes, got %lld", (unsigned long long)max, i);
    } else {
        return wrong_type(ld, s, "a size (an integer or a string such as \"64KiB\")");
    }
    if (*v == 0 || *v > max)
        return fail(ld, s, s, "must be 1-%llu bytes, got %llu", (unsigned long long)max,
                    (unsigned long long)*v);
    return 0;
}

static int get_enum(struct loader *ld, const config_setting_t *s, const char *const *names,
                    const char *list, int *v)
{
    const char *str = NULL;
    int rc = get_string(ld, s, &str);

    if (rc)
        return rc;
    for (int i = 0; names[i]; i++) {
        if (!strcmp(str, names[i])) {
            *v = i;
            return 0;
        }
    }
    return fail(ld, s, s, "\"%s\" is not one of %s", str, list);
}

/* ---- key tables: a group's members are looked up here, anything else is an error ---- */

enum kind {
    K_INT,          /* int in [lo, hi] */
    K_INT_ZERO_NEG, /* int in [lo, hi], but a configured 0 is stored as -1 (see set_int) */
    K_U32,          /* uint32_t in [lo, hi] */
    K_DURATION,     /* uint32_t milliseconds from a duration string, more than 0 */
    K_DURATION64,   /* the same, stored as uint64_t milliseconds */
    K_DURATION_OFF, /* as K_DURATION, but "0s" is accepted: it means off, as leaving it out does */
    K_SIZE32,       /* uint32_t bytes from a size, 1 to hi */
    K_SIZE64,       /* uint64_t bytes from a size, at least 1 */
    K_BOOL,         /* bool */
    K_HEADER,       /* const char * Host value; "" means unset (NULL) */
    K_FUNC,         /* fn does the work */
};

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    long long lo, hi;
    int (*fn)(struct loader *ld, const config_setting_t *s, void *obj);
};

static int set_int(struct loader *ld, const config_setting_t *s, const struct key *k, char *f)
{
    long long v = 0;
    int rc = get_int(ld, s, k->lo, k->hi, &v);

    if (rc)
        return rc;
    if (k->kind == K_U32)
        *(uint32_t *)(void *)f = (uint32_t)v;
    else /* in ringproxy.h 0 means "the default", so a configured 0 (none) is stored as -1:
          * RP_NO_RETRIES for max_retries, and route.c treats a negative max_idle_conns as 0 */
        *(int *)(void *)f = k->kind == K_INT_ZERO_NEG && v == 0 ? -1 : (int)v;
    return 0;
}

static int set_size(struct loader *ld, const config_setting_t *s, const struct key *k, char *f)
{
    uint64_t v;
    int rc = get_size(ld, s, k->kind == K_SIZE32 ? (uint64_t)k->hi : UINT64_MAX, &v);

    if (rc)
        return rc;
    if (k->kind == K_SIZE32)
        *(uint32_t *)(void *)f = (uint32_t)v;
    else
        *(uint64_t *)(void *)f = v;
    return 0;
}

static int set_duration64(struct loader *ld, const config_setting_t *s, char *f)
{
    uint32_t ms;
    int rc = get_duration(ld, s, false, &ms);

    if (!rc)
        *(uint64_t *)(void *)f = ms;
    return rc;
}

static int set_bool(struct loader *ld, const config_setting_t *s, char *f)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    *(bool *)(void *)f = config_setting_get_bool(s);
    return 0;
}

static int set_header(struct loader *ld, const config_setting_t *s, char *f)
{
    const char *v = NULL;
    int rc = get_string(ld, s, &v);

    if (rc)
        return rc;
    if (!visible_ascii(v))
        return fail(ld, s, s, "\"%s\" is not a valid Host value (no spaces or control characters)",
                    v);
    if (!*v)
        return 0;
    return get_copy(ld, s, (const char **)(void *)f);
}

static int set_value(struct loader *ld, const config_setting_t *s, const struct key *k, void *obj)
{
    char *f = (char *)obj + k->off;

    switch (k->kind) {
    case K_INT:
    case K_INT_ZERO_NEG:
    case K_U32:
        return set_int(ld, s, k, f);
    case K_DURATION:
    case K_DURATION_OFF:
        return get_duration(ld, s, k->kind == K_DURATION_OFF, (uint32_t *)(void *)f);
    case K_DURATION64:
        return set_duration64(ld, s, f);
    case K_SIZE32:
    case K_SIZE64:
        return set_size(ld, s, k, f);
    case K_BOOL:
        return set_bool(ld, s, f);
    case K_HEADER:
        return set_header(ld, s, f);
    case K_FUNC:
        return k->fn(ld, s, obj);
    }
    return -EINVAL;
}

static int parse_group(struct loader *ld, const config_setting_t *g, const struct key *keys,
                       void *obj)
{
    int n = config_setting_length(g), rc;

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const struct key *k = keys;

        while (k->name && strcmp(k->name, config_setting_name(s)))
            k++;
        if (!k->name)
            return fail(ld, s, g, "unknown key '%s'", config_setting_name(s));
        rc = set_value(ld, s, k, obj);
        if (rc)
            return rc;
    }
    return 0;
}

static int must_be_group(struct loader *ld, const config_setting_t *s)
{
    return config_setting_is_group(s) ? 0 : wrong_type(ld, s, "a group { ... }");
}

/* A list of groups "( { ... }, { ... } )"; an empty array "[]" counts as an empty list. */
static int list_of_groups(struct loader *ld, const config_setting_t *s)
{
    int rc = 0;

    if (!config_setting_is_list(s) && !config_setting_is_array(s))
        return wrong_type(ld, s, "a list of groups ( { ... }, ... )");
    for (int i = 0; !rc && i < config_setting_length(s); i++)
        rc = must_be_group(ld, config_setting_get_elem(s, (unsigned)i));
    return rc;
}

static int missing(struct loader *ld, const config_setting_t *g, const char *name)
{
    return fail(ld, g, g, "missing required key '%s'", name);
}

#define FIELD(T, name, kind, f, lo, hi)                                                            \
    {                                                                                              \
        name, kind, offsetof(T, f), lo, hi, NULL                                                   \
    }
#define FUNC(name, fn)                                                                             \
    {                                                                                              \
        name, K_FUNC, 0, 0, 0, fn                                                                  \
    }

/* ---- backends, health checks, domains ---- */

/* "http://host[:port][/]": host an IPv4 literal, [IPv6] literal or name; stored as written
 * (route.c parses it again and keeps "host" without ":80" as the Host sent upstream). */
static int check_backend(struct loader *ld, const config_setting_t *s, const char **addr)
{
    const char *a, *p;
    size_t n, skip;
    bool tls, h2;
    int rc = get_copy(ld, s, addr);

    if (rc)
        return rc;
    a = *addr;
    skip = url_scheme_len(a, &tls, &h2);
    if (!skip)
        goto bad;
    p = a + skip;
    n = strlen(p);
    if (n && p[n - 1] == '/')
        n--;
    if (!hostport_ok(p, n, false, true))
        goto bad;
    return 0;
bad:
    return fail(ld, s, s,
                "\"%s\" is not a valid backend address (want http://host:port, https://..., "
                "h2c://... or h2://...)",
                a);
}

static int parse_backend_addr(struct loader *ld, const config_setting_t *s, void *obj)
{
    return check_backend(ld, s, &((rp_backend_config *)obj)->addr);
}

static const struct key backend_keys[] = {
    FUNC("addr", parse_backend_addr),
    FIELD(rp_backend_config, "weight", K_INT, weight, 1, 100),
    {0},
};

static int parse_backends(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_domain_config *d = obj;
    int n, rc = list_of_groups(ld, s);
    rp_backend_config *b;

    if (rc)
        return rc;
    n = config_setting_length(s);
    if (n == 0)
        return fail(ld, s, s, "must not be empty");
    d->backends = b = arena_array(ld->out, (size_t)n, sizeof(*b));
    if (!b)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
        b[i].weight = 1;
        d->n_backends++;
        rc = parse_group(ld, g, backend_keys, &b[i]);
        if (!rc && !b[i].addr)
            rc = missing(ld, g, "addr");
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_lb(struct loader *ld, const config_setting_t *s, void *obj)
{
    static const char *const names[] = {"round_robin", "weighted_rr",   "least_conn", "ip_hash",
                                        "random",      "least_latency", NULL};
    static const rp_lb_strategy values[] = {RP_LB_ROUND_ROBIN, RP_LB_WEIGHTED_RR,
                                            RP_LB_LEAST_CONN,  RP_LB_IP_HASH,
                                            RP_LB_RANDOM,      RP_LB_LEAST_LATENCY};
    static const char hint[] =
        "round_robin, weighted_rr, least_conn, ip_hash, random, least_latency";
    int i, rc = get_enum(ld, s, names, hint, &i);

    if (!rc)
        ((rp_domain_config *)obj)->load_balancer = values[i];
    return rc;
}

static int parse_hc_path(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_health_check_config *hc = obj;
    int rc = get_copy(ld, s, &hc->path);

    if (rc)
        return rc;
    if (*hc->path && (hc->path[0] != '/' || !visible_ascii(hc->path)))
        return fail(ld, s, s, "\"%s\" is not a valid path (want \"\" or \"/...\" without spaces)",
                    hc->path);
    return 0;
}

#define HC_FIELD(name, kind, f, lo, hi) FIELD(rp_health_check_config, name, kind, f, lo, hi)

static const struct key health_keys[] = {
    HC_FIELD("enabled", K_BOOL, enabled, 0, 0),
    FUNC("path", parse_hc_path),
    HC_FIELD("interval", K_DURATION, interval_ms, 0, 0),
    HC_FIELD("timeout", K_DURATION, timeout_ms, 0, 0),
    HC_FIELD("fail_threshold", K_INT, fail_threshold, 1, 100),
    HC_FIELD("success_threshold", K_INT, success_threshold, 1, 100),
    HC_FIELD("host", K_HEADER, host, 0, 0),
    {0},
};

/* A health_check group turns checks on unless it says enabled = false: writing the group and
 * forgetting "enabled" should not silently leave every backend unchecked. */
static int parse_health(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_health_check_config *hc = &((rp_domain_config *)obj)->health_check;
    int rc = must_be_group(ld, s);

    if (rc)
        return rc;
    hc->enabled = true;
    return parse_group(ld, s, health_keys, hc);
}

/* "api.example.com" or "*.example.com", stored lowercase. */
static int parse_domain_name(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_domain_config *d = obj;
    char *name;
    int rc = get_copy(ld, s, &d->domain);
    size_t skip;

    if (rc)
        return rc;
    name = (char *)d->domain;
    skip = !strncmp(name, "*.", 2) ? 2 : 0;
    if (!hostname_ok(name + skip, strlen(name + skip)))
        return fail(ld, s, s, "\"%s\" is not a valid domain (want a host name or \"*.suffix\")",
                    name);
    str_lower(name);
    return 0;
}

/* ---- access logs: access_log = { path = "..."; format = "..."; } or "off" ---- */

/* The file must be writable, or creatable in its directory: said here, with its line (the
 * library opens it when the server is built, and could only say it without one). Nothing is
 * created here: the fuzzer loads configs too. */
static int check_alog_path(struct loader *ld, const config_setting_t *s, const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    struct stat st;
    int e = 0;

    if (!stat(path, &st))
        e = S_ISDIR(st.st_mode) ? EISDIR : access(path, W_OK) ? errno : 0;
    else if (errno != ENOENT)
        e = errno;
    else if (!slash)
        e = access(".", W_OK | X_OK) ? errno : 0;
    else if ((size_t)(slash - path) >= sizeof(dir))
        e = ENAMETOOLONG;
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash == path ? 1 : slash - path] = 0;
        if (slash == path)
            dir[0] = '/';
        e = access(dir, W_OK | X_OK) ? errno : 0;
    }
    if (!e)
        return 0;
    return fail(ld, s, NULL, "access_log path \"%s\": cannot open: %s", path, strerror(e));
}

static int parse_alog_path(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_access_log_config *c = obj;
    int rc = get_copy(ld, s, &c->path);

    if (rc)
        return rc;
    if (!*c->path)
        return fail(ld, s, s, "must not be empty");
    return check_alog_path(ld, s, c->path);
}

/* Compiled here to be checked with its line; the library compiles it again. */
static int parse_alog_format(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_access_log_config *c = obj;
    struct logfmt *f;
    char err[256];
    int rc = get_copy(ld, s, &c->format);

    if (rc)
        return rc;
    rc = logfmt_compile(c->format, &f, err, sizeof(err));
    logfmt_free(f);
    if (rc == -ENOMEM)
        return out_of_memory(ld);
    return rc ? fail(ld, s, NULL, "%s in access_log format", err) : 0;
}

static const struct key alog_keys[] = {
    FUNC("path", parse_alog_path),
    FUNC("format", parse_alog_format),
    {0},
};

static int get_access_log(struct loader *ld, const config_setting_t *s, rp_access_log_config *c)
{
    int rc;

    if (config_setting_type(s) == CONFIG_TYPE_STRING &&
        !strcmp(config_setting_get_string(s), "off")) {
        *c = (rp_access_log_config){.off = true};
        return 0;
    }
    if (!config_setting_is_group(s))
        return wrong_type(ld, s, "a group { path = \"...\"; format = \"...\"; } or \"off\"");
    rc = parse_group(ld, s, alog_keys, c);
    return !rc && !c->path ? missing(ld, s, "path") : rc;
}

static int parse_access_log(struct loader *ld, const config_setting_t *s, void *obj)
{
    return get_access_log(ld, s, &((struct rp_file_config *)obj)->server.access_log);
}

static int parse_domain_access_log(struct loader *ld, const config_setting_t *s, void *obj)
{
    return get_access_log(ld, s, &((rp_domain_config *)obj)->access_log);
}

/* request_id = true | false: 1 | -1, so the zero value means "the server's" */
static int parse_domain_request_id(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((rp_domain_config *)obj)->request_id = config_setting_get_bool(s) ? 1 : -1;
    return 0;
}

#define DOM_FIELD(name, kind, f, lo, hi) FIELD(rp_domain_config, name, kind, f, lo, hi)

static int parse_domain_tls(struct loader *ld, const config_setting_t *s, void *obj);

static int parse_tls_ca_file(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_domain_config *d = obj;
    int rc = get_copy(ld, s, &d->tls_ca_file);

    if (!rc && access(d->tls_ca_file, R_OK))
        rc = fail(ld, s, s, "\"%s\": cannot read: %s", d->tls_ca_file, strerror(errno));
    return rc;
}

/* tls_verify = false: the struct's zero value must mean "verify", so it is stored inverted */
static int parse_tls_verify(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((rp_domain_config *)obj)->tls_no_verify = !config_setting_get_bool(s);
    return 0;
}

/* upgrade = false: stored inverted, like tls_verify, so the zero value means "tunnel" */
static int parse_domain_upgrade(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((rp_domain_config *)obj)->no_upgrade = !config_setting_get_bool(s);
    return 0;
}

/* cache = false: like tls_verify, the struct's zero value is the default ("use the cache") */
static int parse_domain_cache(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((rp_domain_config *)obj)->no_cache = !config_setting_get_bool(s);
    return 0;
}

/* send_proxy_protocol = "v1" | "v2" */
static int parse_send_pp(struct loader *ld, const config_setting_t *s, void *obj)
{
    static const char *const names[] = {"v1", "v2", NULL};
    int i, rc = get_enum(ld, s, names, "v1, v2", &i);

    if (!rc)
        ((rp_domain_config *)obj)->send_proxy_protocol = i + 1;
    return rc;
}

static const struct key domain_keys[] = {
    FUNC("domain", parse_domain_name),
    FUNC("backends", parse_backends),
    FUNC("load_balancer", parse_lb),
    DOM_FIELD("connect_timeout", K_DURATION, connect_timeout_ms, 0, 0),
    DOM_FIELD("read_timeout", K_DURATION, read_timeout_ms, 0, 0),
    DOM_FIELD("write_timeout", K_DURATION, write_timeout_ms, 0, 0),
    DOM_FIELD("max_retries", K_INT_ZERO_NEG, max_retries, 0, 10),
    DOM_FIELD("max_idle_conns", K_INT_ZERO_NEG, max_idle_conns, 0, 100000),
    DOM_FIELD("idle_timeout", K_DURATION, idle_timeout_ms, 0, 0),
    DOM_FIELD("preserve_host", K_BOOL, preserve_host, 0, 0),
    DOM_FIELD("host_header", K_HEADER, host_header, 0, 0),
    FUNC("health_check", parse_health),
    FUNC("tls", parse_domain_tls),
    FUNC("tls_verify", parse_tls_verify),
    FUNC("tls_ca_file", parse_tls_ca_file),
    FUNC("cache", parse_domain_cache),
    FUNC("upgrade", parse_domain_upgrade),
    DOM_FIELD("try_timeout", K_DURATION_OFF, try_timeout_ms, 0, 0),
    DOM_FIELD("hedge", K_BOOL, hedge, 0, 0),
    FUNC("send_proxy_protocol", parse_send_pp),
    FUNC("access_log", parse_domain_access_log),
    FUNC("request_id", parse_domain_request_id),
    {0},
};

/* An attempt with no response for read_timeout has failed already, so a try_timeout that is
 * not shorter would never fire. A hedge is sent when the try timeout fires: it needs one. */
static int check_try_timeout(struct loader *ld, const config_setting_t *g,
                             const rp_domain_config *d)
{
    const config_setting_t *tt = config_setting_get_member(g, "try_timeout");
    const config_setting_t *rt = config_setting_get_member(g, "read_timeout");

    if (d->try_timeout_ms && d->read_timeout_ms && d->try_timeout_ms >= d->read_timeout_ms)
        return fail(ld, tt, tt, "must be shorter than read_timeout (\"%s\"), got \"%s\"",
                    config_setting_get_string(rt), config_setting_get_string(tt));
    if (d->hedge && !d->try_timeout_ms) {
        const config_setting_t *h = config_setting_get_member(g, "hedge");
        return fail(ld, h, h, "needs a try_timeout (a hedge is sent when it fires)");
    }
    return 0;
}

static int parse_domain(struct loader *ld, const config_setting_t *g, rp_domain_config *d)
{
    int rc = parse_group(ld, g, domain_keys, d);

    if (rc)
        return rc;
    if (!d->domain)
        return missing(ld, g, "domain");
    if (!d->backends)
        return missing(ld, g, "backends");
    return check_try_timeout(ld, g, d);
}

/* Names are lowercase by now, so strcmp is the case-insensitive comparison. */
static int check_unique_domain(struct loader *ld, const config_setting_t *list, size_t i)
{
    const struct rp_file_config *c = ld->out;

    for (size_t j = 0; j < i; j++) {
        if (strcmp(c->domains[j].domain, c->domains[i].domain))
            continue;
        const config_setting_t *first = config_setting_get_elem(list, (unsigned)j);
        const config_setting_t *dup = config_setting_get_elem(list, (unsigned)i);
        dup = config_setting_get_member(dup, "domain");
        return fail(ld, dup, dup, "duplicate domain \"%s\" (first at line %u)",
                    c->domains[i].domain, line_of(config_setting_get_member(first, "domain")));
    }
    return 0;
}

static int parse_domains(struct loader *ld, const config_setting_t *s, void *obj)
{
    struct rp_file_config *c = obj;
    int n, rc = list_of_groups(ld, s);

    if (rc)
        return rc;
    n = config_setting_length(s);
    c->domains = arena_array(c, (size_t)n, sizeof(*c->domains));
    if (!c->domains)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        c->n_domains++;
        rc = parse_domain(ld, config_setting_get_elem(s, (unsigned)i), &c->domains[i]);
        if (!rc)
            rc = check_unique_domain(ld, s, (size_t)i);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- path routes ---- */

/* A path prefix: "/..." without spaces (routes and cache rules). */
static int get_prefix(struct loader *ld, const config_setting_t *s, const char **out)
{
    int rc = get_copy(ld, s, out);

    if (rc)
        return rc;
    if ((*out)[0] != '/' || !visible_ascii(*out))
        return fail(ld, s, s, "\"%s\" is not a valid path prefix (want \"/...\" without spaces)",
                    *out);
    return 0;
}

static int parse_prefix(struct loader *ld, const config_setting_t *s, void *obj)
{
    return get_prefix(ld, s, &((rp_http_route *)obj)->path_prefix);
}

static int parse_route_backend(struct loader *ld, const config_setting_t *s, void *obj)
{
    return check_backend(ld, s, &((rp_http_route *)obj)->backend);
}

static const struct key route_keys[] = {
    FUNC("path_prefix", parse_prefix),
    FUNC("backend", parse_route_backend),
    FIELD(rp_http_route, "host_header", K_HEADER, host_header, 0, 0),
    {0},
};

static int parse_route(struct loader *ld, const config_setting_t *g, rp_http_route *r)
{
    int rc = parse_group(ld, g, route_keys, r);

    if (rc)
        return rc;
    if (!r->path_prefix)
        return missing(ld, g, "path_prefix");
    if (!r->backend)
        return missing(ld, g, "backend");
    return 0;
}

static int check_unique_route(struct loader *ld, const config_setting_t *list, size_t i)
{
    const struct rp_file_config *c = ld->out;

    for (size_t j = 0; j < i; j++) {
        if (strcmp(c->routes[j].path_prefix, c->routes[i].path_prefix))
            continue;
        const config_setting_t *first = config_setting_get_elem(list, (unsigned)j);
        const config_setting_t *dup = config_setting_get_elem(list, (unsigned)i);
        dup = config_setting_get_member(dup, "path_prefix");
        return fail(ld, dup, dup, "duplicate path_prefix \"%s\" (first at line %u)",
                    c->routes[i].path_prefix,
                    line_of(config_setting_get_member(first, "path_prefix")));
    }
    return 0;
}

static int parse_routes(struct loader *ld, const config_setting_t *s, void *obj)
{
    struct rp_file_config *c = obj;
    int n, rc = list_of_groups(ld, s);

    if (rc)
        return rc;
    n = config_setting_length(s);
    c->routes = arena_array(c, (size_t)n, sizeof(*c->routes));
    if (!c->routes)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        c->n_routes++;
        rc = parse_route(ld, config_setting_get_elem(s, (unsigned)i), &c->routes[i]);
        if (!rc)
            rc = check_unique_route(ld, s, (size_t)i);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- response cache ---- */

/* A string or a list of them ( "GET", "HEAD" ) / [ "GET", "HEAD" ]: must not be empty. */
static int list_of_scalars(struct loader *ld, const config_setting_t *s, const char *what)
{
    if (!config_setting_is_list(s) && !config_setting_is_array(s))
        return wrong_type(ld, s, what);
    if (config_setting_length(s) == 0)
        return fail(ld, s, s, "must not be empty");
    return 0;
}

static int parse_rule_prefix(struct loader *ld, const config_setting_t *s, void *obj)
{
    return get_prefix(ld, s, &((rp_cache_rule *)obj)->path_prefix);
}

/* The cache answers only GET and HEAD (HEAD from the GET entry): other methods pass through,
 * and after a successful POST/PUT/DELETE/PATCH the URL's entries are dropped. */
static int parse_rule_methods(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_cache_rule *r = obj;
    const char **m;
    int n, rc = list_of_scalars(ld, s, "a list of methods [ \"GET\", \"HEAD\" ]");

    if (rc)
        return rc;
    n = config_setting_length(s);
    r->methods = m = arena_array(ld->out, (size_t)n, sizeof(*m));
    if (!m)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        rc = get_copy(ld, e, &m[i]);
        if (rc)
            return rc;
        if (strcmp(m[i], "GET") && strcmp(m[i], "HEAD"))
            return fail(ld, e, e,
                        "\"%s\" is not a method the cache serves (it serves only GET and HEAD)",
                        m[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(m[j], m[i]))
                return fail(ld, e, e, "\"%s\" is listed twice", m[i]);
        r->n_methods++;
    }
    return 0;
}

static int parse_rule_statuses(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_cache_rule *r = obj;
    int *st, n, rc = list_of_scalars(ld, s, "a list of statuses [ 200, 301 ]");
    long long v = 0;

    if (rc)
        return rc;
    n = config_setting_length(s);
    r->status_only = st = arena_array(ld->out, (size_t)n, sizeof(*st));
    if (!st)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        rc = get_int(ld, e, 200, 599, &v);
        if (rc)
            return rc;
        st[i] = (int)v;
        for (int j = 0; j < i; j++)
            if (st[j] == st[i])
                return fail(ld, e, e, "%d is listed twice", st[i]);
        r->n_status_only++;
    }
    return 0;
}

#define RULE_FIELD(name, kind, f, lo, hi) FIELD(rp_cache_rule, name, kind, f, lo, hi)

static const struct key cache_rule_keys[] = {
    FUNC("path_prefix", parse_rule_prefix),
    RULE_FIELD("max_age", K_DURATION64, max_age_ms, 0, 0),
    RULE_FIELD("max_bytes", K_SIZE64, max_bytes, 1, 0),
    FUNC("methods", parse_rule_methods),
    FUNC("status_only", parse_rule_statuses),
    {0},
};

static int parse_cache_rules(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_cache_config *cc = obj;
    rp_cache_rule *r;
    int n, rc = list_of_groups(ld, s);

    if (rc)
        return rc;
    n = config_setting_length(s);
    cc->rules = r = arena_array(ld->out, (size_t)n, sizeof(*r));
    if (!r)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
        cc->n_rules++;
        rc = parse_group(ld, g, cache_rule_keys, &r[i]);
        if (!rc && !r[i].path_prefix)
            rc = missing(ld, g, "path_prefix");
        for (int j = 0; !rc && j < i; j++) {
            if (strcmp(r[j].path_prefix, r[i].path_prefix))
                continue;
            const config_setting_t *dup = config_setting_get_member(g, "path_prefix");
            const config_setting_t *first = config_setting_get_elem(s, (unsigned)j);
            rc = fail(ld, dup, dup, "duplicate path_prefix \"%s\" (first at line %u)",
                      r[i].path_prefix, line_of(config_setting_get_member(first, "path_prefix")));
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* x_cache = false: the struct's zero value must mean "send X-Cache", so it is stored inverted */
static int parse_x_cache(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((rp_cache_config *)obj)->no_x_cache = !config_setting_get_bool(s);
    return 0;
}

#define CACHE_FIELD(name, kind, f, lo, hi) FIELD(rp_cache_config, name, kind, f, lo, hi)

/* compress_threads = 0 is accepted, but rp_set_proxy_cache reads 0 as its default (1). */
static const struct key cache_keys[] = {
    CACHE_FIELD("default_max_age", K_DURATION64, default_max_age_ms, 0, 0),
    CACHE_FIELD("max_total_bytes", K_SIZE64, max_total_bytes, 1, 0),
    CACHE_FIELD("max_entries", K_U32, max_entries, 1, UINT32_MAX),
    CACHE_FIELD("max_entry_size", K_SIZE64, max_entry_size, 1, 0),
    CACHE_FIELD("pre_compress", K_BOOL, pre_compress, 0, 0),
    CACHE_FIELD("compress_level", K_INT, compress_level, 1, 12),
    CACHE_FIELD("compress_min_len", K_SIZE32, compress_min_len, 1, UINT32_MAX),
    CACHE_FIELD("stale_while_revalidate", K_DURATION64, stale_while_revalidate_ms, 0, 0),
    CACHE_FIELD("compress_threads", K_INT, compress_threads, 0, 64),
    CACHE_FIELD("lock_timeout", K_DURATION, lock_timeout_ms, 0, 0),
    FUNC("x_cache", parse_x_cache),
    FUNC("rules", parse_cache_rules),
    {0},
};

/* cache = { ... } turns the cache on, with defaults for whatever the group leaves out. */
static int parse_cache(struct loader *ld, const config_setting_t *s, void *obj)
{
    struct rp_file_config *c = obj;
    int rc = must_be_group(ld, s);

    if (rc)
        return rc;
    c->has_cache = true;
    return parse_group(ld, s, cache_keys, &c->cache);
}

/* ---- top level ---- */

static int check_twice(struct loader *ld, const config_setting_t *s, const char *const *seen,
                       size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(seen[i], addr))
            return fail(ld, s, s, "\"%s\" is listed twice", addr);
    return 0;
}

static int check_listen(struct loader *ld, const config_setting_t *s, const char *const *seen,
                        size_t n, const char **addr)
{
    int rc = get_copy(ld, s, addr);

    if (rc)
        return rc;
    if (!hostport_ok(*addr, strlen(*addr), true, false))
        return fail(ld, s, s, "\"%s\" is not a valid address (want ip:port or [ip6]:port)", *addr);
    return check_twice(ld, s, seen, n, *addr);
}

/* ---- listeners with options: { addr = "..."; proxy_protocol = true; ... } ---- */

static int parse_listener_addr(struct loader *ld, const config_setting_t *s, void *obj)
{
    return check_listen(ld, s, NULL, 0, &((rp_listener_config *)obj)->addr);
}

/* An entry of proxy_protocol_from, checked as the library parses it; a block listed before
 * (in any spelling: "::1" is "::1/128") is an error. */
static int check_block(struct loader *ld, const config_setting_t *e, const char *const *from, int i)
{
    struct pp_cidr c, prev;
    char want[INET6_ADDRSTRLEN + 4];
    int rc = pp_cidr_parse(from[i], &c);

    if (rc == -EDOM) {
        pp_cidr_format(&c, want, sizeof(want));
        return fail(ld, e, e, "\"%s\" has bits set past its /%u prefix (\"%s\"?)", from[i], c.bits,
                    want);
    }
    if (rc)
        return fail(ld, e, e,
                    "\"%s\" is not an address block (want \"10.0.0.0/8\", \"::1/128\" or an "
                    "address)",
                    from[i]);
    for (int j = 0; j < i; j++)
        if (!pp_cidr_parse(from[j], &prev) && !memcmp(&prev, &c, sizeof(c)))
            return fail(ld, e, e, "\"%s\" is listed twice", from[i]);
    return 0;
}

/* proxy_protocol_from = [ "10.0.0.0/8", "::1/128" ]; or one string. */
static int parse_pp_from(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_listener_config *l = obj;
    bool one = config_setting_type(s) == CONFIG_TYPE_STRING;
    int n, rc = one ? 0 : list_of_scalars(ld, s, "a list of address blocks [ \"10.0.0.0/8\" ]");
    const char **from;

    if (rc)
        return rc;
    n = one ? 1 : config_setting_length(s);
    l->proxy_protocol_from = from = arena_array(ld->out, (size_t)n, sizeof(*from));
    if (!from)
        return out_of_memory(ld);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = one ? s : config_setting_get_elem(s, (unsigned)i);
        rc = get_copy(ld, e, &from[i]);
        if (!rc)
            rc = check_block(ld, e, from, i);
        if (rc)
            return rc;
        l->n_proxy_protocol_from++;
    }
    return 0;
}

static const struct key listener_keys[] = {
    FUNC("addr", parse_listener_addr),
    FIELD(rp_listener_config, "proxy_protocol", K_BOOL, proxy_protocol, 0, 0),
    FUNC("proxy_protocol_from", parse_pp_from),
    {0},
};

static int parse_listener(struct loader *ld, const config_setting_t *g, rp_listener_config *l)
{
    const config_setting_t *from = config_setting_get_member(g, "proxy_protocol_from");
    int rc = parse_group(ld, g, listener_keys, l);

    if (rc)
        return rc;
    if (!l->addr)
        return missing(ld, g, "addr");
    if (from && !l->proxy_protocol)
        return fail(ld, from, from, "needs proxy_protocol = true");
    return 0;
}

/* listen / listen_tls: an address, a group { addr = ...; ... }, or a list mixing them (an
 * array when all are addresses: libconfig's arrays hold scalars only). Addresses go to
 * *out / *count, groups to the server's listeners (as TLS ones for listen_tls). */
static int parse_addrs(struct loader *ld, const config_setting_t *s, bool tls,
                       const char *const **out, size_t *count)
{
    rp_server_config *srv = &ld->out->server;
    bool many = config_setting_is_list(s) || config_setting_is_array(s);
    int n = many ? config_setting_length(s) : 1, groups = 0, rc;
    const char **addrs, **seen;
    rp_listener_config *ls;

    if (n == 0)
        return fail(ld, s, s, "must not be empty");
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = many ? config_setting_get_elem(s, (unsigned)i) : s;
        if (config_setting_is_group(e))
            groups++;
        else if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return wrong_type(ld, e,
                              many ? "a string or a group { addr = ...; }"
                                   : "a string, a group { addr = ...; } or a list of them");
    }
    *out = addrs = arena_array(ld->out, (size_t)n, sizeof(*addrs));
    seen = arena_array(ld->out, (size_t)n, sizeof(*seen));
    ls = arena_array(ld->out, srv->n_listeners + (size_t)groups, sizeof(*ls));
    if (!addrs || !seen || !ls)
        return out_of_memory(ld);
    if (srv->n_listeners) /* the other key's, parsed first */
        memcpy(ls, srv->listeners, srv->n_listeners * sizeof(*ls));
    srv->listeners = ls;
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = many ? config_setting_get_elem(s, (unsigned)i) : s;
        if (config_setting_is_group(e)) {
            rp_listener_config *l = &ls[srv->n_listeners++];
            l->tls = tls;
            rc = parse_listener(ld, e, l);
            if (!rc)
                rc =
                    check_twice(ld, config_setting_get_member(e, "addr"), seen, (size_t)i, l->addr);
            seen[i] = l->addr;
        } else {
            rc = check_listen(ld, e, seen, (size_t)i, &seen[i]);
            addrs[*count] = seen[i];
            *count += !rc;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int parse_listen(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_server_config *srv = &((struct rp_file_config *)obj)->server;

    return parse_addrs(ld, s, false, &srv->listen, &srv->n_listen);
}

static int parse_listen_tls(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_server_config *srv = &((struct rp_file_config *)obj)->server;

    return parse_addrs(ld, s, true, &srv->listen_tls, &srv->n_listen_tls);
}

/* tls = { cert = "..."; key = "..."; }: both files must be readable now. */
static int parse_tls_pair(struct loader *ld, const config_setting_t *s, const char **cert,
                          const char **key)
{
    const config_setting_t *c, *k;
    int rc = must_be_group(ld, s);

    for (int i = 0; !rc && i < config_setting_length(s); i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (strcmp(config_setting_name(e), "cert") && strcmp(config_setting_name(e), "key"))
            return fail(ld, e, s, "unknown key '%s'", config_setting_name(e));
    }
    if (rc)
        return rc;
    c = config_setting_get_member(s, "cert");
    k = config_setting_get_member(s, "key");
    if (!c || !k)
        return fail(ld, s, s, "needs both cert and key");
    rc = get_copy(ld, c, cert);
    if (!rc)
        rc = get_copy(ld, k, key);
    if (!rc && access(*cert, R_OK))
        rc = fail(ld, c, c, "\"%s\": cannot read: %s", *cert, strerror(errno));
    if (!rc && access(*key, R_OK))
        rc = fail(ld, k, k, "\"%s\": cannot read: %s", *key, strerror(errno));
    return rc;
}

static int parse_tls(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_server_config *srv = &((struct rp_file_config *)obj)->server;

    return parse_tls_pair(ld, s, &srv->tls_cert, &srv->tls_key);
}

static int parse_domain_tls(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_domain_config *d = obj;

    return parse_tls_pair(ld, s, &d->tls_cert, &d->tls_key);
}

static int parse_log_level(struct loader *ld, const config_setting_t *s, void *obj)
{
    static const char *const names[] = {"info", "warn", "debug", NULL};

    return get_enum(ld, s, names, "info, warn, debug",
                    &((struct rp_file_config *)obj)->server.log_level);
}

static int parse_admin_listen(struct loader *ld, const config_setting_t *s, void *obj)
{
    return check_listen(ld, s, NULL, 0, &((struct rp_file_config *)obj)->server.admin_listen);
}

/* The token is a secret: no message here (or anywhere) quotes it. */
static int parse_admin_token(struct loader *ld, const config_setting_t *s, void *obj)
{
    rp_server_config *srv = &((struct rp_file_config *)obj)->server;
    const char *v = NULL;
    int rc = get_string(ld, s, &v);

    if (rc)
        return rc;
    if (!*v)
        return fail(ld, s, s, "must not be empty");
    if (!visible_ascii(v))
        return fail(ld, s, s,
                    "must be printable ASCII without spaces or control characters "
                    "(value not shown)");
    return get_copy(ld, s, &srv->admin_token);
}

static const struct key admin_keys[] = {
    FUNC("listen", parse_admin_listen),
    FUNC("token", parse_admin_token),
    {0},
};

/* admin = { listen = "127.0.0.1:9901"; token = "..."; }: the cache admin API's listener. */
static int parse_admin(struct loader *ld, const config_setting_t *s, void *obj)
{
    struct rp_file_config *c = obj;
    int rc = must_be_group(ld, s);

    if (!rc)
        rc = parse_group(ld, s, admin_keys, c);
    if (!rc && !c->server.admin_listen)
        rc = missing(ld, s, "listen");
    return rc;
}

/* Splits a checked "ip:port" or "[ip6]:port" into family, address and port. */
static void split_addr(const char *a, int *af, unsigned char ip[16], unsigned *port)
{
    char host[INET6_ADDRSTRLEN];
    struct hostport hp;

    hostport_split(a, strlen(a), &hp); /* checked: it has a host that fits, and a port */
    *af = hp.bracketed ? AF_INET6 : AF_INET;
    memcpy(host, hp.host, hp.host_len);
    host[hp.host_len] = 0;
    memset(ip, 0, 16);
    inet_pton(*af, host, ip);
    *port = (unsigned)atoi(hp.port);
}

/* Whether two listen addresses would take each other's connections: the same family and
 * port, and the same address or a wildcard on either side (IPv6 listeners are V6ONLY). */
static bool addrs_overlap(const char *a, const char *b)
{
    static const unsigned char any[16];
    unsigned char ia[16], ib[16];
    unsigned pa, pb;
    int fa, fb;

    split_addr(a, &fa, ia, &pa);
    split_addr(b, &fb, ib, &pb);
    return fa == fb && pa == pb &&
           (!memcmp(ia, ib, 16) || !memcmp(ia, any, 16) || !memcmp(ib, any, 16));
}

/* The i-th proxy listener's address: listen's, listen_tls's, then the groups'. */
static const char *listener_addr(const rp_server_config *srv, size_t i)
{
    if (i < srv->n_listen)
        return srv->listen[i];
    i -= srv->n_listen;
    if (i < srv->n_listen_tls)
        return srv->listen_tls[i];
    return srv->listeners[i - srv->n_listen_tls].addr;
}

/* The admin listener must not share an address with a proxy listener (the default one,
 * "0.0.0.0:8080", included when there is no other): one of them would get the other's
 * connections. */
static int check_admin_overlap(struct loader *ld, const config_setting_t *s)
{
    static const char def[] = "0.0.0.0:8080";
    const rp_server_config *srv = &ld->out->server;
    size_t n = srv->n_listen + srv->n_listen_tls + srv->n_listeners;

    if (!n && addrs_overlap(srv->admin_listen, def))
        return fail(ld, s, s, "\"%s\" overlaps the proxy listener \"%s\" (the default listen)",
                    srv->admin_listen, def);
    for (size_t i = 0; i < n; i++)
        if (addrs_overlap(srv->admin_listen, listener_addr(srv, i)))
            return fail(ld, s, s, "\"%s\" overlaps the proxy listener \"%s\"", srv->admin_listen,
                        listener_addr(srv, i));
    return 0;
}

/* pid_file = "/run/ringproxy.pid": its directory must exist now, so a start never fails on
 * it after the listeners are open. */
static int parse_pid_file(struct loader *ld, const config_setting_t *s, void *obj)
{
    struct rp_file_config *c = obj;
    const char *v = NULL, *slash;
    char dir[RP_PID_FILE_MAX + 1];
    struct stat st;
    int rc = get_string(ld, s, &v);

    if (rc)
        return rc;
    slash = strrchr(v, '/');
    if (!*v || (slash && !slash[1]))
        return fail(ld, s, s, "must name a file, got \"%s\"", v);
    if (strlen(v) > RP_PID_FILE_MAX)
        return fail(ld, s, s,
                    "must be at most %d bytes (its control socket PID_FILE.sock must fit a Unix "
                    "socket path)",
                    RP_PID_FILE_MAX);
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else /* "/x.pid" is in "/" */
        snprintf(dir, sizeof(dir), "%.*s", slash == v ? 1 : (int)(slash - v), v);
    if (stat(dir, &st))
        return fail(ld, s, s, "directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail(ld, s, s, "%s is not a directory", dir);
    return get_copy(ld, s, &c->pid_file);
}

/* http2 = true | false (the library's no_http2, so that its zero value means on) */
static int parse_http2(struct loader *ld, const config_setting_t *s, void *obj)
{
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return wrong_type(ld, s, "true or false");
    ((struct rp_file_config *)obj)->server.no_http2 = !config_setting_get_bool(s);
    return 0;
}

#define SRV_FIELD(name, kind, f, lo, hi) FIELD(struct rp_file_config, name, kind, server.f, lo, hi)

static const struct key top_keys[] = {
    FUNC("listen", parse_listen),
    SRV_FIELD("workers", K_INT, workers, 1, 1024),
    SRV_FIELD("header_timeout", K_DURATION, header_timeout_ms, 0, 0),
    SRV_FIELD("keepalive_timeout", K_DURATION, keepalive_timeout_ms, 0, 0),
    SRV_FIELD("shutdown_timeout", K_DURATION, shutdown_timeout_ms, 0, 0),
    SRV_FIELD("tunnel_idle_timeout", K_DURATION, tunnel_idle_timeout_ms, 0, 0),
    SRV_FIELD("max_header_bytes", K_SIZE32, max_header_bytes, 1, MAX_HEADER_BYTES),
    SRV_FIELD("max_body_size", K_SIZE64, max_body_bytes, 1, 0),
    SRV_FIELD("max_header_count", K_U32, max_header_count, 1, MAX_HEADER_COUNT),
    SRV_FIELD("max_target_len", K_U32, max_target_len, 1, MAX_TARGET_LEN),
    FUNC("log_level", parse_log_level),
    FUNC("domains", parse_domains),
    FUNC("routes", parse_routes),
    FUNC("cache", parse_cache),
    FUNC("listen_tls", parse_listen_tls),
    FUNC("tls", parse_tls),
    FUNC("admin", parse_admin),
    FUNC("pid_file", parse_pid_file),
    FUNC("access_log", parse_access_log),
    SRV_FIELD("request_id", K_BOOL, request_id, 0, 0),
    FUNC("http2", parse_http2),
    SRV_FIELD("h2c", K_BOOL, h2c, 0, 0),
    SRV_FIELD("h2_max_concurrent_streams", K_U32, h2_max_concurrent_streams, 1, 65536),
    {0},
};

/* ---- integer literals ----
 *
 * libconfig 1.5 reads an integer literal without an L suffix with atoi(): 4294967297 comes
 * out as 1 and 3000000000 as -1294967296, and nothing in the tree says so. So the text is
 * copied first, with an L after every integer literal that has none: each then reaches
 * get_int() as the 64-bit value written, and the key's range check judges that. Tokens are
 * read as libconfig's scanner reads them (comments, strings, names, floats, hex), so
 * nothing else changes (but that an array may now mix 1 and 1L) and every line keeps its
 * number. */

struct scan {
    struct loader *ld;
    const char *p, *end;
    char *o;
    unsigned line;
};

static char peek(const struct scan *s, size_t i)
{
    return (size_t)(s->end - s->p) > i ? s->p[i] : 0; /* no NUL is left in the text */
}

static void copy1(struct scan *s)
{
    s->line += *s->p == '\n';
    *s->o++ = *s->p++;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '*';
}

static bool name_char(char c)
{
    return name_start(c) || is_digit(c) || c == '-' || c == '_';
}

static bool exponent_at(const struct scan *s)
{
    char e = peek(s, 0), n = peek(s, 1);

    return (e == 'e' || e == 'E') &&
           (is_digit(n) || ((n == '-' || n == '+') && is_digit(peek(s, 2))));
}

/* The rest of a float after its integer digits: [.digits][e[+-]digits]. */
static void copy_fraction(struct scan *s)
{
    if (peek(s, 0) == '.')
        copy1(s);
    while (is_digit(peek(s, 0)))
        copy1(s);
    if (!exponent_at(s))
        return;
    copy1(s);
    if (!is_digit(peek(s, 0)))
        copy1(s);
    while (is_digit(peek(s, 0)))
        copy1(s);
}

/* "\"...\"" with its backslash escapes; a newline inside is allowed, as libconfig allows it. */
static void copy_string(struct scan *s)
{
    copy1(s);
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' && s->end - s->p > 1)
            copy1(s);
        copy1(s);
    }
    if (s->p < s->end)
        copy1(s);
}

/* A block comment, its closing star-slash included (or to the end, where there is none). */
static void copy_comment(struct scan *s)
{
    copy1(s);
    copy1(s);
    while (s->p < s->end && !(*s->p == '*' && peek(s, 1) == '/'))
        copy1(s);
    for (int i = 0; i < 2 && s->p < s->end; i++)
        copy1(s);
}

/* A decimal [+-]digits or a hex 0xdigits (libconfig takes no sign on hex), L appended. */
static int copy_integer(struct scan *s)
{
    const char *start = s->p;
    bool neg = *s->p == '-', hex, big = false;
    uint64_t v = 0, max;
    unsigned base;

    if (*s->p == '-' || *s->p == '+')
        copy1(s);
    hex = s->p == start && *s->p == '0' && (peek(s, 1) == 'x' || peek(s, 1) == 'X') &&
          hex_value(peek(s, 2)) >= 0;
    if (hex) {
        copy1(s);
        copy1(s);
    }
    base = hex ? 16 : 10;
    max = neg ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
    while (s->p < s->end && (hex ? hex_value(*s->p) >= 0 : is_digit(*s->p))) {
        unsigned d = (unsigned)hex_value(*s->p);
        if (v > (max - d) / base)
            big = true;
        else
            v = v * base + d;
        copy1(s);
    }
    if (!hex && (peek(s, 0) == '.' || exponent_at(s))) {
        copy_fraction(s);
        return 0;
    }
    if (big) {
        int n = (int)(s->p - start);
        return fail_line(s->ld, s->line, "integer %.*s%s does not fit in 64 bits", n > 40 ? 40 : n,
                         start, n > 40 ? "..." : "");
    }
    if (peek(s, 0) != 'L')
        *s->o++ = 'L';
    return 0;
}

/* Copies s->p..s->end to s->o (room for twice as many bytes), promoting integers. */
static int promote_integers(struct scan *s)
{
    while (s->p < s->end) {
        char c = *s->p, n = peek(s, 1);
        int rc = 0;

        if (c == '#' || (c == '/' && n == '/')) {
            while (s->p < s->end && *s->p != '\n')
                copy1(s);
        } else if (c == '/' && n == '*') {
            copy_comment(s);
        } else if (c == '"') {
            copy_string(s);
        } else if (name_start(c)) {
            while (s->p < s->end && name_char(*s->p))
                copy1(s);
        } else if (is_digit(c) || ((c == '-' || c == '+') && is_digit(n))) {
            rc = copy_integer(s);
        } else if (c == '.') {
            copy_fraction(s);
        } else if (c == '@' && (size_t)(s->end - s->p) >= 8 && !memcmp(s->p, "@include", 8)) {
            /* libconfig would read that file itself, past promote_integers() */
            rc = fail_line(s->ld, s->line, "@include is not supported: write one file");
        } else {
            copy1(s);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* libconfig stops a string at a NUL (silently cutting the value short): refuse the file. */
static int check_no_nul(struct loader *ld, const char *text, size_t len)
{
    const char *nul = memchr(text, 0, len);
    unsigned line = 1;

    if (!nul)
        return 0;
    for (const char *p = text; p < nul; p++)
        line += *p == '\n';
    return fail_line(ld, line, "contains a NUL byte: not a configuration file");
}

/* ---- entry points ---- */

static int syntax_error(struct loader *ld, const config_t *cfg)
{
    const char *file = config_error_file(cfg) ? config_error_file(cfg) : ld->path;
    const char *text = config_error_text(cfg) ? config_error_text(cfg) : "cannot parse";

    if (ld->err && ld->errlen && config_error_line(cfg) > 0)
        snprintf(ld->err, ld->errlen, "%s:%d: %s", file, config_error_line(cfg), text);
    else if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: %s", file, text);
    return -EINVAL;
}

/* Runs after libconfig has read the text (read_ok says whether it could). The library
 * would start a server with no domain and no route, answering 404 to everything; a
 * daemon has no other way to add endpoints, so such a file is refused, as nginx and
 * HAProxy refuse one with nothing to serve. */
static int load_tree(struct loader *ld, config_t *cfg, bool read_ok)
{
    int rc = read_ok ? parse_group(ld, config_root_setting(cfg), top_keys, ld->out)
                     : syntax_error(ld, cfg);
    const config_setting_t *ltls = read_ok ? config_lookup(cfg, "listen_tls") : NULL;

    if (!rc && ltls && !ld->out->server.tls_cert)
        rc = fail(ld, ltls, ltls, "TLS listeners need a tls = { cert = ...; key = ...; } block");
    if (!rc && read_ok && ld->out->server.admin_listen)
        rc = check_admin_overlap(ld, config_lookup(cfg, "admin.listen"));
    if (!rc && read_ok && !ld->out->n_domains && !ld->out->n_routes)
        rc = fail_line(ld, 0, "nothing to serve: no domains and no routes");

    config_destroy(cfg);
    return rc;
}

/* text[0..len) through promote_integers() into libconfig, then into ld->out. */
static int load_text(struct loader *ld, const char *text, size_t len)
{
    struct scan s = {.ld = ld, .p = text, .end = text + len, .line = 1};
    config_t cfg;
    char *buf;
    int rc = check_no_nul(ld, text, len);

    if (rc)
        return rc;
    buf = len < SIZE_MAX / 2 ? malloc(2 * len + 1) : NULL;
    if (!buf)
        return out_of_memory(ld);
    s.o = buf;
    rc = promote_integers(&s);
    if (!rc) {
        *s.o = 0;
        config_init(&cfg);
        rc = load_tree(ld, &cfg, config_read_string(&cfg, buf) == CONFIG_TRUE);
    }
    free(buf);
    return rc;
}

static int cannot_read(struct loader *ld, int e)
{
    if (ld->err && ld->errlen)
        snprintf(ld->err, ld->errlen, "%s: cannot read: %s", ld->path, strerror(e));
    return -e;
}

/* The whole of f into a malloc'd *text (its length in *len); a directory, a read error or a
 * file past MAX_FILE_BYTES is an error with its message written. */
static int read_all(struct loader *ld, FILE *f, char **text, size_t *len)
{
    size_t cap = 64 << 10, n = 0, got;
    struct stat st;
    char *buf = NULL, *bigger;

    if (fstat(fileno(f), &st))
        return cannot_read(ld, errno);
    if (S_ISDIR(st.st_mode))
        return cannot_read(ld, EISDIR);
    do {
        if (n == cap || !buf) {
            cap = buf ? cap * 2 : cap;
            bigger = realloc(buf, cap);
            if (!bigger) {
                free(buf);
                return out_of_memory(ld);
            }
            buf = bigger;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got && n <= MAX_FILE_BYTES);
    if (ferror(f) || n > MAX_FILE_BYTES) {
        int e = errno;
        free(buf);
        if (n > MAX_FILE_BYTES)
            return fail_line(ld, 0, "larger than %d MiB: not a configuration file",
                             MAX_FILE_BYTES >> 20);
        return cannot_read(ld, e ? e : EIO);
    }
    *text = buf;
    *len = n;
    return 0;
}

int rp_file_config_load(const char *path, struct rp_file_config *out, char *err, size_t errlen)
{
    struct loader ld = {.path = path, .err = err, .errlen = errlen, .out = out};
    char *text = NULL;
    size_t len = 0;
    FILE *f;
    int rc;

    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = 0;
    f = fopen(path, "r");
    if (!f)
        return cannot_read(&ld, errno);
    rc = read_all(&ld, f, &text, &len);
    fclose(f);
    if (rc)
        return rc;
    rc = load_text(&ld, text, len);
    free(text);
    return rc;
}

int rp_file_config_load_string(const char *text, const char *name, struct rp_file_config *out,
                               char *err, size_t errlen)
{
    struct loader ld = {.path = name ? name : "(string)", .err = err, .errlen = errlen, .out = out};

    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = 0;
    return load_text(&ld, text, strlen(text));
}

/* pcache.c: the library's face of the response cache (cache/): rp_set_proxy_cache, purges and
 * stats. The request path's use of the cache (lookup, serving hits, storing responses) is in
 * conn.c; the store itself, its policy and its compression threads are in cache/.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../cache/cache.h"
#include "internal.h"
#include "log.h"

static uint32_t method_bits(const char *const *m, size_t n, int *bad)
{
    uint32_t bits = 0;

    for (size_t i = 0; i < n; i++) {
        uint32_t b = m[i] ? cache_method_bit(m[i], strlen(m[i])) : 0;
        if (!b || b == CACHE_M_OTHER)
            *bad = (int)i + 1;
        bits |= b;
    }
    return bits;
}

int rp_set_proxy_cache(rp_server *s, const rp_cache_config *cfg)
{
    rp_cache_config def = {0};
    struct cache_config cc;
    struct cache_rule *rules = NULL;
    uint16_t *statuses = NULL;
    size_t n_status = 0, k = 0;
    struct cache *c;
    int rc = 0;

    if (!s)
        return -EINVAL;
    if (atomic_load(&s->running))
        return -EBUSY;
    if (!cfg)
        cfg = &def;
    if (cfg->compress_level < 0 || cfg->compress_level > 12 || cfg->compress_threads < 0 ||
        cfg->compress_threads > 64 || (cfg->n_rules && !cfg->rules)) {
        log_error("cache: compress_level must be 1-12 and compress_threads 0-64");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_rules; i++)
        n_status += cfg->rules[i].n_status_only;
    rules = calloc(cfg->n_rules ? cfg->n_rules : 1, sizeof(*rules));
    statuses = calloc(n_status ? n_status : 1, sizeof(*statuses));
    if (!rules || !statuses) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const rp_cache_rule *r = &cfg->rules[i];
        int bad = 0;
        if (!r->path_prefix || r->path_prefix[0] != '/') {
            log_error("cache rule %zu: path_prefix must start with /", i + 1);
            rc = -EINVAL;
            goto out;
        }
        rules[i].path_prefix = r->path_prefix;
        rules[i].max_age_ms = r->max_age_ms;
        rules[i].methods = method_bits(r->methods, r->n_methods, &bad);
        if (bad) {
            log_error("cache rule %zu: method %d is not one the cache serves (GET, HEAD)", i + 1,
                      bad);
            rc = -EINVAL;
            goto out;
        }
        rules[i].status_only = statuses + k;
        for (size_t j = 0; j < r->n_status_only; j++) {
            if (r->status_only[j] < 200 || r->status_only[j] > 599) {
                log_error("cache rule %zu: status %d is not 200-599", i + 1, r->status_only[j]);
                rc = -EINVAL;
                goto out;
            }
            statuses[k++] = (uint16_t)r->status_only[j];
        }
        rules[i].n_status_only = (uint32_t)r->n_status_only;
        rules[i].max_bytes = r->max_bytes;
    }
    cc = (struct cache_config){
        .default_max_age_ms = cfg->default_max_age_ms,
        .max_total_bytes = cfg->max_total_bytes,
        .max_entries = cfg->max_entries,
        .max_entry_size = cfg->max_entry_size,
        .pre_compress = cfg->pre_compress,
        .compress_level = cfg->compress_level,
        .compress_min_len = cfg->compress_min_len,
        .stale_while_revalidate_ms = cfg->stale_while_revalidate_ms,
        .rules = rules,
        .n_rules = (uint32_t)cfg->n_rules,
    };
    c = cache_new(&cc); /* copies the rules and their strings */
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    cache_free(s->cache);
    s->cache = c;
    s->cache_threads = cfg->compress_threads ? cfg->compress_threads : 1;
    s->x_cache = !cfg->no_x_cache;
out:
    free(rules);
    free(statuses);
    return rc;
}

bool rp_purge_proxy_cache(rp_server *s, const char *method, const char *host, const char *path)
{
    if (!s || !s->cache || !method || !host || !path)
        return false;
    return cache_purge_key(s->cache, method, host, strlen(host), path, strlen(path));
}

size_t rp_purge_domain_cache(rp_server *s, const char *domain)
{
    return s && s->cache && domain ? (size_t)cache_purge_domain(s->cache, domain) : 0;
}

size_t rp_purge_all_proxy_cache(rp_server *s)
{
    return s && s->cache ? (size_t)cache_purge_all(s->cache) : 0;
}

void rp_proxy_cache_stats(rp_server *s, rp_cache_stats *st)
{
    struct cache_stats cs;

    if (!st)
        return;
    memset(st, 0, sizeof(*st));
    if (!s || !s->cache)
        return;
    cache_get_stats(s->cache, &cs);
    *st = (rp_cache_stats){cs.entries, cs.bytes,  cs.hits,     cs.misses,
                           cs.stores,  cs.evictions, cs.purges};
}

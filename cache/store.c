/* store.c: the shared cache store: keys, immutable refcounted entries and their builder,
 * 64 hash shards each behind one short mutex with its own SIEVE eviction list, global byte
 * and entry budgets reserved with atomics before anything is published, purges, stats,
 * revalidation refresh and request collapsing (per-key fill records with waiter callbacks).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "cache.h"

#define NSHARDS 64
#define SHARD_OF(h) ((unsigned)((h) >> 58))
#define KEY_STACK 1024

struct cache_fill {
    struct cache_fill *next; /* shard's list */
    struct cache_waiter *waiters;
    uint64_t hash;
    unsigned shard;
    uint32_t key_len;
    char key[];
};

struct shard {
    pthread_mutex_t mu;
    struct cache_entry **buckets;
    uint32_t nbuckets, n;
    struct cache_entry *head, *tail, *hand; /* SIEVE: head newest; the hand walks to head */
    struct cache_fill *fills;
} __attribute__((aligned(64)));

/* One version of the settings. A reload publishes a new one (cache_reconfigure); older ones
 * stay until cache_free, since a request may hold one of their rules for its whole life and
 * nothing counts those uses (a version is a few hundred bytes; reloads that change the cache
 * settings are rare). */
struct cfg_ver {
    struct cache_config cfg;
    struct cfg_ver *prev;
};

struct cache {
    struct cfg_ver *cur; /* __atomic loads and stores */
    struct shard shards[NSHARDS];
    _Atomic uint64_t bytes, entries;
    _Atomic uint64_t hits, misses, stores, evictions, purges, invalidations, refused, copy_bytes;
    atomic_uint evict_rr;
    struct cache_cpool pool;
};

#define CFG(c) (&__atomic_load_n(&(c)->cur, __ATOMIC_ACQUIRE)->cfg)

struct cache_builder {
    struct cache *c;
    struct cache_entry *e;
    struct cache_body *body;
    size_t cap, max;
    bool failed;
};

/* ---- keys ------------------------------------------------------------------------------------ */

/* A key being looked for: in `stack` when it fits, else on the heap. */
struct key {
    char stack[KEY_STACK];
    char *heap;
    const char *p;
    int len; /* or -errno */
    uint64_t hash;
};

static int key_init(struct key *k, uint32_t method_bit, const char *host, size_t host_len,
                    const char *path, size_t path_len)
{
    size_t need = 2 + host_len + path_len;
    k->heap = need > KEY_STACK ? malloc(need) : NULL;
    k->p = k->heap ? k->heap : k->stack;
    if (need > KEY_STACK && !k->heap)
        return k->len = -ENOMEM;
    k->len = cache_key_build((char *)k->p, need, method_bit, host, host_len, path, path_len);
    k->hash = k->len > 0 ? XXH3_64bits(k->p, (size_t)k->len) : 0;
    return k->len;
}

static void key_fini(struct key *k)
{
    free(k->heap);
}

/* ---- Vary ------------------------------------------------------------------------------------ */

/* Equality of optional spans: NULL (absent) equals only NULL. */
static bool opt_eq(const char *a, uint32_t an, const char *b, uint32_t bn)
{
    return (!a || !b) ? a == b : an == bn && memcmp(a, b, an) == 0;
}

static bool vary_match(const struct cache_entry *e, const struct cache_req_meta *m)
{
    char stack[512];
    const struct cache_field *f = m ? m->fields : NULL;
    uint32_t n = m ? m->n_fields : 0;
    for (uint32_t i = 0; i < e->n_vary; i++) {
        int64_t len = cache_vary_norm(f, n, e->vary_names[i], e->vary_name_lens[i], NULL);
        if (len < 0 || !e->vary_values[i] || (uint64_t)len != e->vary_value_lens[i]) {
            if (len >= 0 || e->vary_values[i])
                return false;
            continue;
        }
        char *buf = (size_t)len <= sizeof(stack) ? stack : malloc((size_t)len);
        if (!buf)
            return false;
        cache_vary_norm(f, n, e->vary_names[i], e->vary_name_lens[i], buf);
        bool eq = memcmp(buf, e->vary_values[i], (size_t)len) == 0;
        if (buf != stack)
            free(buf);
        if (!eq)
            return false;
    }
    return true;
}

/* Two entries hold the same variant: same Vary names and values. */
static bool same_variant(const struct cache_entry *a, const struct cache_entry *b)
{
    if (a->n_vary != b->n_vary)
        return false;
    for (uint32_t i = 0; i < a->n_vary; i++)
        if (!opt_eq(a->vary_names[i], a->vary_name_lens[i], b->vary_names[i],
                    b->vary_name_lens[i]) ||
            !opt_eq(a->vary_values[i], a->vary_value_lens[i], b->vary_values[i],
                    b->vary_value_lens[i]))
            return false;
    return true;
}

/* ---- entries -----------------------------------------------------------------------------------
 */

struct cache_body *cache_body_new(size_t len)
{
    struct cache_body *b = malloc(sizeof(*b) + (len ? len : 1));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->pad = 0;
    b->len = len;
    return b;
}

void cache_body_unref(struct cache_body *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

static void entry_free(struct cache_entry *e)
{
    cache_body_unref(e->body);
    cache_body_unref(atomic_load_explicit(&e->copy, memory_order_acquire));
    free(e);
}

void cache_entry_ref(const struct cache_entry *e)
{
    atomic_fetch_add_explicit(&((struct cache_entry *)e)->refs, 1, memory_order_relaxed);
}

void cache_entry_unref(const struct cache_entry *ce)
{
    struct cache_entry *e = (struct cache_entry *)ce;
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        entry_free(e);
}

const char *cache_entry_copy(const struct cache_entry *e, size_t *len)
{
    struct cache_body *b =
        atomic_load_explicit(&((struct cache_entry *)e)->copy, memory_order_acquire);
    if (!b)
        return NULL;
    *len = b->len;
    return b->data;
}

const char *cache_entry_field(const struct cache_entry *e, const char *name, uint32_t *len)
{
    size_t nl = strlen(name);
    for (uint32_t i = 0; i < e->n_fields; i++)
        if (span_ieq_span(e->fields[i].name, e->fields[i].name_len, name, nl)) {
            *len = e->fields[i].value_len;
            return e->fields[i].value;
        }
    return NULL;
}

void cache_set_copy_state(struct cache_entry *e, enum cache_copy_state s)
{
    atomic_store_explicit(&e->copy_state, (unsigned char)s, memory_order_release);
}

/* What an entry block is made of: up to two runs of fields (a 304 merge has two) with a skip
 * mask each, and the Vary names and values. */
struct entry_src {
    const char *key;
    uint32_t key_len;
    uint64_t hash;
    const char *domain;
    const struct cache_field *f[2];
    uint32_t nf[2];
    const bool *skip[2];
    uint32_t n_vary;
    const struct cache_span *vn, *vv;
};

static char *put(char **w, const char *s, size_t n, bool fold)
{
    char *at = *w;
    for (size_t i = 0; i < n; i++)
        at[i] = fold ? ascii_lower(s[i]) : s[i];
    *w += n;
    return at;
}

#define ALIGN8(x) (((x) + 7) & ~(size_t)7)

/* One allocation holding the entry and every string it points at. */
static struct cache_entry *entry_alloc(const struct entry_src *s, size_t *block_size)
{
    size_t dlen = s->domain ? strlen(s->domain) : 0, chars = s->key_len + dlen + 1;
    uint32_t nf = 0;
    for (int r = 0; r < 2; r++)
        for (uint32_t i = 0; i < s->nf[r]; i++)
            if (!s->skip[r] || !s->skip[r][i]) {
                nf++;
                chars += s->f[r][i].name_len + s->f[r][i].value_len;
            }
    for (uint32_t i = 0; i < s->n_vary; i++)
        chars += (size_t)s->vn[i].n + (s->vv[i].n > 0 ? (size_t)s->vv[i].n : 0);
    size_t off_f = ALIGN8(sizeof(struct cache_entry));
    size_t off_vp = off_f + nf * sizeof(struct cache_field);
    size_t off_vl = off_vp + 2 * s->n_vary * sizeof(char *);
    size_t off_c = off_vl + 2 * s->n_vary * sizeof(uint32_t);
    size_t total = off_c + chars;
    char *blk = calloc(1, total);
    if (!blk)
        return NULL;
    struct cache_entry *e = (struct cache_entry *)blk;
    struct cache_field *fields = (struct cache_field *)(blk + off_f);
    const char **vp = (const char **)(blk + off_vp);
    uint32_t *vl = (uint32_t *)(blk + off_vl);
    char *w = blk + off_c;

    atomic_init(&e->refs, 1);
    atomic_init(&e->hits, 0);
    atomic_init(&e->visited, false);
    atomic_init(&e->copy_state, CACHE_COPY_NONE);
    atomic_init(&e->copy, NULL);
    e->hash = s->hash;
    e->key = put(&w, s->key, s->key_len, false);
    e->key_len = s->key_len;
    e->domain = put(&w, s->domain ? s->domain : "", dlen + 1, false);
    e->fields = fields;
    for (int r = 0; r < 2; r++)
        for (uint32_t i = 0; i < s->nf[r]; i++) {
            const struct cache_field *f = &s->f[r][i];
            if (s->skip[r] && s->skip[r][i])
                continue;
            fields->name = put(&w, f->name, f->name_len, false);
            fields->name_len = f->name_len;
            fields->value = put(&w, f->value, f->value_len, false);
            fields->value_len = f->value_len;
            fields++;
        }
    e->n_fields = nf;
    e->n_vary = s->n_vary;
    e->vary_names = vp;
    e->vary_values = vp + s->n_vary;
    e->vary_name_lens = vl;
    e->vary_value_lens = vl + s->n_vary;
    for (uint32_t i = 0; i < s->n_vary; i++) {
        vp[i] = put(&w, s->vn[i].p, (size_t)s->vn[i].n, true);
        vl[i] = (uint32_t)s->vn[i].n;
        vp[s->n_vary + i] = s->vv[i].n < 0 ? NULL : put(&w, s->vv[i].p, (size_t)s->vv[i].n, false);
        vl[s->n_vary + i] = s->vv[i].n < 0 ? 0 : (uint32_t)s->vv[i].n;
    }
    uint32_t elen;
    e->etag = cache_entry_field(e, "etag", &elen);
    e->etag_len = e->etag ? elen : 0;
    *block_size = total;
    return e;
}

/* ---- shards ---------------------------------------------------------------------------------- */

static void shard_grow(struct shard *s)
{
    uint32_t nb = s->nbuckets * 2;
    struct cache_entry **b = calloc(nb, sizeof(*b));
    if (!b)
        return; /* longer chains, still correct */
    /* oldest first, each pushed to its bucket's head: newest variants stay in front */
    for (struct cache_entry *e = s->tail; e; e = e->lprev) {
        struct cache_entry **slot = &b[e->hash & (nb - 1)];
        e->hnext = *slot;
        *slot = e;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

static void link_entry(struct cache *c, struct shard *s, struct cache_entry *e)
{
    if (s->n >= s->nbuckets)
        shard_grow(s);
    struct cache_entry **slot = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->hnext = *slot;
    *slot = e;
    e->lprev = NULL;
    e->lnext = s->head;
    if (s->head)
        s->head->lprev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
    s->n++;
    e->linked = true;
    e->owner = c;
}

/* Unlinks e, returns its budget, and chains it on *gc (the store's reference moves there:
 * drop it after unlocking). Shard lock held. */
static void unlink_entry(struct cache *c, struct shard *s, struct cache_entry *e,
                         struct cache_entry **gc)
{
    struct cache_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (s->hand == e)
        s->hand = e->lprev;
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        s->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        s->tail = e->lprev;
    s->n--;
    e->linked = false;
    atomic_fetch_sub_explicit(&c->bytes, e->charge, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->copy_bytes, e->copy_charge, memory_order_relaxed);
    e->gc_next = *gc;
    *gc = e;
}

static void gc_drop(struct cache_entry *gc)
{
    while (gc) {
        struct cache_entry *n = gc->gc_next;
        cache_entry_unref(gc);
        gc = n;
    }
}

/* SIEVE: from the hand toward the head (wrapping to the tail), clear visited bits until an
 * unvisited entry turns up; that one goes. Shard lock held. */
static struct cache_entry *sieve_victim(struct shard *s)
{
    struct cache_entry *p = s->hand ? s->hand : s->tail;
    if (!p)
        return NULL;
    while (atomic_load_explicit(&p->visited, memory_order_relaxed)) {
        atomic_store_explicit(&p->visited, false, memory_order_relaxed);
        p = p->lprev ? p->lprev : s->tail;
    }
    s->hand = p->lprev;
    return p;
}

/* Evicts one entry: from shard `own` first, then the others round-robin, one lock at a time.
 * Returns false when every shard is empty. */
static bool evict_one(struct cache *c, unsigned own)
{
    unsigned start = atomic_fetch_add_explicit(&c->evict_rr, 1, memory_order_relaxed);
    for (unsigned k = 0; k <= NSHARDS; k++) {
        unsigned i = k == 0 ? own : (start + k) % NSHARDS;
        struct shard *s = &c->shards[i];
        struct cache_entry *gc = NULL;
        pthread_mutex_lock(&s->mu);
        struct cache_entry *v = sieve_victim(s);
        if (v)
            unlink_entry(c, s, v, &gc);
        pthread_mutex_unlock(&s->mu);
        if (v) {
            atomic_fetch_add_explicit(&c->evictions, 1, memory_order_relaxed);
            gc_drop(gc);
            return true;
        }
    }
    return false;
}

static bool try_take(_Atomic uint64_t *ctr, uint64_t amount, uint64_t max)
{
    uint64_t cur = atomic_load_explicit(ctr, memory_order_relaxed);
    do {
        if (amount > max || cur > max - amount)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(ctr, &cur, cur + amount, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

/* Reserves an entry slot (when slot) and `bytes`, evicting until they fit. */
static int reserve(struct cache *c, bool slot, uint64_t bytes, unsigned own)
{
    if (bytes > CFG(c)->max_total_bytes)
        return -EFBIG;
    while (slot && !try_take(&c->entries, 1, CFG(c)->max_entries))
        if (!evict_one(c, own))
            return -ENOSPC;
    while (!try_take(&c->bytes, bytes, CFG(c)->max_total_bytes))
        if (!evict_one(c, own)) {
            if (slot)
                atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
            return -ENOSPC;
        }
    return 0;
}

static void unreserve(struct cache *c, bool slot, uint64_t bytes)
{
    if (slot)
        atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->bytes, bytes, memory_order_relaxed);
}

int cache_attach_copy(struct cache *c, struct cache_entry *e, struct cache_body *copy)
{
    size_t charge = sizeof(*copy) + copy->len;
    struct shard *s = &c->shards[SHARD_OF(e->hash)];
    bool done = false;
    /* no eviction for a copy: dropping it is cheaper than dropping someone's entry */
    if (!try_take(&c->bytes, charge, CFG(c)->max_total_bytes)) {
        cache_set_copy_state(e, CACHE_COPY_TOO_BIG);
        cache_body_unref(copy);
        return -ENOSPC;
    }
    pthread_mutex_lock(&s->mu);
    if (e->linked && !atomic_load_explicit(&e->copy, memory_order_relaxed)) {
        e->charge += charge;
        e->copy_charge = charge;
        atomic_fetch_add_explicit(&c->copy_bytes, charge, memory_order_relaxed);
        atomic_store_explicit(&e->copy, copy, memory_order_release);
        cache_set_copy_state(e, CACHE_COPY_READY);
        done = true;
    }
    pthread_mutex_unlock(&s->mu);
    if (!done) {
        unreserve(c, false, charge);
        cache_body_unref(copy);
        return -ENOENT;
    }
    return 0;
}

/* ---- create / free -----------------------------------------------------------------------------
 */

struct cache *cache_new(const struct cache_config *cfg)
{
    struct cache *c = aligned_alloc(64, sizeof(struct cache));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    if (!(c->cur = calloc(1, sizeof(*c->cur))))
        goto err_ver;
    if (cache_config_copy(&c->cur->cfg, cfg) < 0)
        goto err_cfg;
    if (cache_cpool_init(&c->pool) < 0)
        goto err_pool;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->nbuckets = 16;
        s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
        if (!s->buckets) {
            for (unsigned j = 0; j <= i; j++) {
                free(c->shards[j].buckets);
                pthread_mutex_destroy(&c->shards[j].mu);
            }
            goto err_shards;
        }
    }
    return c;
err_shards:
    cache_cpool_fini(&c->pool);
err_pool:
    cache_config_release(&c->cur->cfg);
err_cfg:
    free(c->cur);
err_ver:
    free(c);
    return NULL;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    cache_compress_stop(c);
    cache_purge_all(c);
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &c->shards[i];
        while (s->fills) {
            struct cache_fill *f = s->fills;
            s->fills = f->next;
            free(f);
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    cache_cpool_fini(&c->pool);
    while (c->cur) {
        struct cfg_ver *v = c->cur;
        c->cur = v->prev;
        cache_config_release(&v->cfg);
        free(v);
    }
    free(c);
}

const struct cache_config *cache_config_of(const struct cache *c)
{
    return CFG(c);
}

int cache_reconfigure(struct cache *c, const struct cache_config *cfg)
{
    struct cfg_ver *v = calloc(1, sizeof(*v));

    if (!v)
        return -ENOMEM;
    if (cache_config_copy(&v->cfg, cfg) < 0) {
        free(v);
        return -ENOMEM;
    }
    v->prev = c->cur;
    __atomic_store_n(&c->cur, v, __ATOMIC_RELEASE);
    return 0;
}

struct cache_cpool *cache_cpool_of(struct cache *c)
{
    return &c->pool;
}

/* ---- building and inserting ------------------------------------------------------------------ */

static bool wants_copy(const struct cache *c, const struct cache_entry *e, bool no_transform,
                       int8_t compress)
{
    if (no_transform || compress < 0)
        return false;
    if (e->gzip_body)
        return true; /* identity copy: needed whenever the origin gzipped */
    return (compress > 0 || CFG(c)->pre_compress) && e->compressible;
}

struct cache_builder *cache_entry_new(struct cache *c, const struct cache_entry_params *p)
{
    struct key k;
    struct cache_span *names = NULL, *vals = NULL;
    char *vbuf = NULL;
    struct cache_builder *b = NULL;
    size_t block;
    int nv;

    if (p->method_bit != CACHE_M_GET || !p->meta || !p->verdict)
        return NULL;
    if (key_init(&k, p->method_bit, p->host, p->host_len, p->path, p->path_len) < 0)
        goto out;
    nv = cache_vary_names(p->resp_fields, p->n_resp_fields, p->vary_skip_accept_encoding, &names);
    if (nv < 0)
        goto out;
    if (nv > 0) {
        size_t total = 0;
        vals = calloc((size_t)nv, sizeof(*vals));
        if (!vals)
            goto out;
        for (int i = 0; i < nv; i++) {
            vals[i].n = cache_vary_norm(p->req_fields, p->n_req_fields, names[i].p,
                                        (size_t)names[i].n, NULL);
            total += vals[i].n > 0 ? (size_t)vals[i].n : 0;
        }
        vbuf = malloc(total + 1);
        if (!vbuf)
            goto out;
        for (size_t i = 0, off = 0; i < (size_t)nv; i++) {
            vals[i].p = vbuf + off;
            if (vals[i].n > 0)
                off += (size_t)cache_vary_norm(p->req_fields, p->n_req_fields, names[i].p,
                                               (size_t)names[i].n, vbuf + off);
        }
    }
    struct entry_src src = {.key = k.p,
                            .key_len = (uint32_t)k.len,
                            .hash = k.hash,
                            .domain = p->domain,
                            .f = {p->resp_fields, NULL},
                            .nf = {p->n_resp_fields, 0},
                            .n_vary = (uint32_t)nv,
                            .vn = names,
                            .vv = vals};
    b = calloc(1, sizeof(*b));
    if (!b)
        goto out;
    b->e = entry_alloc(&src, &block);
    if (!b->e) {
        free(b);
        b = NULL;
        goto out;
    }
    struct cache_entry *e = b->e;
    e->charge = block;
    e->status = p->status;
    e->max_hits = p->max_hits;
    e->gzip_body = p->meta->gzip_encoded;
    e->compressible = p->meta->compressible;
    e->want_gzip = wants_copy(c, e, p->meta->cc.flags & CACHE_CC_NO_TRANSFORM, p->compress);
    e->min_len = p->compress_min_len;
    e->has_lm = p->meta->has_lm;
    e->lm_s = p->meta->lm_s;
    cache_fresh_init(&e->fresh, p->meta, p->verdict, p->request_ms, p->response_ms,
                     CFG(c)->stale_while_revalidate_ms);
    b->c = c;
    b->max = p->verdict->max_bytes;
    if (b->max > CFG(c)->max_total_bytes)
        b->max = CFG(c)->max_total_bytes;
    b->cap = p->meta->content_length >= 0 && (uint64_t)p->meta->content_length <= b->max
                 ? (size_t)p->meta->content_length
                 : 4096;
    b->body = cache_body_new(b->cap);
    if (!b->body) {
        free(b->e);
        free(b);
        b = NULL;
        goto out;
    }
    b->body->len = 0;
out:
    free(vbuf);
    free(vals);
    free(names);
    key_fini(&k);
    return b;
}

int cache_entry_append(struct cache_builder *b, const void *data, size_t n)
{
    if (b->failed)
        return -EINVAL;
    size_t len = b->body->len;
    if (n > b->max - len) {
        b->failed = true;
        return -EFBIG;
    }
    if (len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < len + n)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        struct cache_body *nb = realloc(b->body, sizeof(*nb) + cap);
        if (!nb) {
            b->failed = true;
            return -ENOMEM;
        }
        b->body = nb;
        b->cap = cap;
    }
    memcpy(b->body->data + len, data, n);
    b->body->len = len + n;
    return 0;
}

void cache_entry_abort(struct cache_builder *b)
{
    if (!b)
        return;
    free(b->body);
    free(b->e);
    free(b);
}

/* Publishes e (already reserved): replaces the same variant, if any. Returns the gc list. */
static struct cache_entry *publish(struct cache *c, struct cache_entry *e)
{
    struct shard *s = &c->shards[SHARD_OF(e->hash)];
    struct cache_entry *gc = NULL;
    pthread_mutex_lock(&s->mu);
    for (struct cache_entry *o = s->buckets[e->hash & (s->nbuckets - 1)]; o;) {
        struct cache_entry *next = o->hnext;
        if (o->hash == e->hash && o->key_len == e->key_len &&
            memcmp(o->key, e->key, e->key_len) == 0 && same_variant(o, e))
            unlink_entry(c, s, o, &gc);
        o = next;
    }
    link_entry(c, s, e);
    pthread_mutex_unlock(&s->mu);
    return gc;
}

static void maybe_queue(struct cache *c, struct cache_entry *e)
{
    size_t len = e->body->len;
    if (!e->want_gzip || len == 0 ||
        (!e->gzip_body && len < (e->min_len ? e->min_len : CFG(c)->compress_min_len)))
        return;
    cache_set_copy_state(e, CACHE_COPY_QUEUED);
    if (!cache_compress_enqueue(c, e))
        cache_set_copy_state(e, CACHE_COPY_NONE);
}

int cache_insert(struct cache *c, struct cache_builder *b, const struct cache_entry **out)
{
    struct cache_entry *e = b->e;
    int rc;
    if (b->failed) {
        cache_entry_abort(b);
        return -EINVAL;
    }
    if (b->body->len < b->cap) { /* give back the slack: the budget counts what we keep */
        struct cache_body *nb = realloc(b->body, sizeof(*nb) + (b->body->len ? b->body->len : 1));
        if (nb)
            b->body = nb;
    }
    e->body = b->body;
    e->charge += sizeof(struct cache_body) + e->body->len;
    free(b);
    rc = reserve(c, true, e->charge, SHARD_OF(e->hash));
    if (rc < 0) {
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        entry_free(e);
        return rc;
    }
    /* the store's reference, the caller's, and ours until queued: once published, a purge
     * on another thread may drop the store's at any moment */
    atomic_store_explicit(&e->refs, out ? 3 : 2, memory_order_relaxed);
    struct cache_entry *gc = publish(c, e);
    atomic_fetch_add_explicit(&c->stores, 1, memory_order_relaxed);
    gc_drop(gc);
    maybe_queue(c, e);
    if (out)
        *out = e;
    cache_entry_unref(e);
    return 0;
}

/* ---- lookup -------------------------------------------------------------------------------- */

static bool key_eq(const struct cache_entry *e, const struct key *k)
{
    return e->hash == k->hash && e->key_len == (uint32_t)k->len &&
           memcmp(e->key, k->p, e->key_len) == 0;
}

const struct cache_entry *cache_lookup(struct cache *c, const struct cache_req *rq, int64_t now_ms,
                                       struct cache_decision *d)
{
    struct key k;
    struct cache_entry *found = NULL, *gc = NULL;
    *d = (struct cache_decision){.serve = CACHE_MUST_REVALIDATE};
    if (key_init(&k, rq->method_bit, rq->host, rq->host_len, rq->path, rq->path_len) < 0) {
        key_fini(&k);
        atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
        return NULL;
    }
    struct shard *s = &c->shards[SHARD_OF(k.hash)];
    pthread_mutex_lock(&s->mu);
    for (struct cache_entry *e = s->buckets[k.hash & (s->nbuckets - 1)]; e; e = e->hnext)
        if (key_eq(e, &k) && vary_match(e, rq->meta)) {
            found = e;
            break;
        }
    if (found) {
        cache_entry_ref(found);
        cache_satisfy(&found->fresh, rq->meta, now_ms, d);
        if (d->serve != CACHE_MUST_REVALIDATE) {
            if (!atomic_load_explicit(&found->visited, memory_order_relaxed))
                atomic_store_explicit(&found->visited, true, memory_order_relaxed);
            unsigned hits = atomic_fetch_add_explicit(&found->hits, 1, memory_order_relaxed) + 1;
            if (found->max_hits && hits >= found->max_hits)
                unlink_entry(c, s, found, &gc);
        }
    }
    pthread_mutex_unlock(&s->mu);
    key_fini(&k);
    gc_drop(gc);
    bool hit = found && d->serve != CACHE_MUST_REVALIDATE;
    atomic_fetch_add_explicit(hit ? &c->hits : &c->misses, 1, memory_order_relaxed);
    return found;
}

/* ---- refresh after 304 -------------------------------------------------------------------------
 */

int cache_refresh(struct cache *c, const struct cache_entry *old, const struct cache_field *fields,
                  uint32_t n, int64_t request_ms, int64_t response_ms,
                  const struct cache_entry **out)
{
    bool *skip_old = calloc(old->n_fields + 1, sizeof(bool));
    bool *skip_new = calloc(n + 1, sizeof(bool));
    struct cache_span *vn = calloc(old->n_vary + 1, sizeof(*vn));
    struct cache_span *vv = calloc(old->n_vary + 1, sizeof(*vv));
    struct cache_entry *e = NULL, *gc = NULL;
    size_t block;
    int rc = -ENOMEM;

    if (!skip_old || !skip_new || !vn || !vv)
        goto out;
    for (uint32_t j = 0; j < n; j++)
        skip_new[j] = span_ieq_span(fields[j].name, fields[j].name_len, "content-length", 14);
    for (uint32_t i = 0; i < old->n_fields; i++)
        for (uint32_t j = 0; j < n && !skip_old[i]; j++)
            skip_old[i] =
                !skip_new[j] && span_ieq_span(old->fields[i].name, old->fields[i].name_len,
                                              fields[j].name, fields[j].name_len);
    for (uint32_t i = 0; i < old->n_vary; i++) {
        vn[i] = (struct cache_span){old->vary_names[i], old->vary_name_lens[i]};
        vv[i] = (struct cache_span){old->vary_values[i],
                                    old->vary_values[i] ? (int64_t)old->vary_value_lens[i] : -1};
    }
    struct entry_src src = {.key = old->key,
                            .key_len = old->key_len,
                            .hash = old->hash,
                            .domain = old->domain,
                            .f = {old->fields, fields},
                            .nf = {old->n_fields, n},
                            .skip = {skip_old, skip_new},
                            .n_vary = old->n_vary,
                            .vn = vn,
                            .vv = vv};
    e = entry_alloc(&src, &block);
    if (!e)
        goto out;
    struct cache_resp_meta m;
    struct cache_verdict v = {.lifetime_ms = old->fresh.lifetime_ms};
    cache_resp_meta_parse(&m, old->status, e->fields, e->n_fields);
    if (cache_freshness_lifetime(&m, response_ms, &v.lifetime_ms))
        v.explicit_fresh = true;
    cache_fresh_init(&e->fresh, &m, &v, request_ms, response_ms, CFG(c)->stale_while_revalidate_ms);
    e->status = old->status;
    e->max_hits = old->max_hits;
    e->gzip_body = old->gzip_body;
    e->compressible = old->compressible;
    e->want_gzip = old->want_gzip;
    e->min_len = old->min_len;
    e->has_lm = m.has_lm;
    e->lm_s = m.lm_s;
    e->body = old->body;
    atomic_fetch_add_explicit(&e->body->refs, 1, memory_order_relaxed);
    e->charge = block + sizeof(struct cache_body) + e->body->len;
    struct cache_body *copy =
        atomic_load_explicit(&((struct cache_entry *)old)->copy, memory_order_acquire);
    if (copy) {
        atomic_fetch_add_explicit(&copy->refs, 1, memory_order_relaxed);
        atomic_store_explicit(&e->copy, copy, memory_order_relaxed);
        e->copy_charge = old->copy_charge;
        e->charge += e->copy_charge;
        cache_set_copy_state(e, CACHE_COPY_READY);
    } else {
        unsigned char st =
            atomic_load_explicit(&((struct cache_entry *)old)->copy_state, memory_order_acquire);
        if (st != CACHE_COPY_QUEUED)
            cache_set_copy_state(e, (enum cache_copy_state)st);
    }
    /* reserved while old still counts: briefly both, so the budget holds without a second
     * lock; eviction may even pick old, and then the refresh is served but not stored */
    struct shard *s = &c->shards[SHARD_OF(e->hash)];
    rc = reserve(c, true, e->charge, SHARD_OF(e->hash));
    if (rc < 0) {
        entry_free(e);
        goto out;
    }
    atomic_store_explicit(&e->refs, 2, memory_order_relaxed);
    pthread_mutex_lock(&s->mu);
    bool linked = old->linked;
    if (linked) {
        unlink_entry(c, s, (struct cache_entry *)old, &gc);
        link_entry(c, s, e);
        if (copy)
            atomic_fetch_add_explicit(&c->copy_bytes, e->copy_charge, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mu);
    if (!linked) {
        unreserve(c, true, e->charge);
        atomic_store_explicit(&e->refs, 1, memory_order_relaxed);
    } else if (!copy && atomic_load(&e->copy_state) == CACHE_COPY_NONE)
        maybe_queue(c, e);
    gc_drop(gc);
    *out = e;
    rc = 0;
out:
    free(skip_old);
    free(skip_new);
    free(vn);
    free(vv);
    return rc;
}

/* ---- purge ----------------------------------------------------------------------------------- */

static uint64_t remove_key(struct cache *c, uint32_t method_bit, const char *host, size_t host_len,
                           const char *path, size_t path_len)
{
    struct key k;
    struct cache_entry *gc = NULL;
    uint64_t n = 0;
    if (key_init(&k, method_bit, host, host_len, path, path_len) < 0) {
        key_fini(&k);
        return 0;
    }
    struct shard *s = &c->shards[SHARD_OF(k.hash)];
    pthread_mutex_lock(&s->mu);
    for (struct cache_entry *e = s->buckets[k.hash & (s->nbuckets - 1)]; e;) {
        struct cache_entry *next = e->hnext;
        if (key_eq(e, &k)) {
            unlink_entry(c, s, e, &gc);
            n++;
        }
        e = next;
    }
    pthread_mutex_unlock(&s->mu);
    key_fini(&k);
    gc_drop(gc);
    return n;
}

bool cache_purge_key(struct cache *c, const char *method, const char *host, size_t host_len,
                     const char *path, size_t path_len)
{
    uint64_t n =
        remove_key(c, cache_method_bit(method, strlen(method)), host, host_len, path, path_len);
    atomic_fetch_add_explicit(&c->purges, n, memory_order_relaxed);
    return n > 0;
}

uint64_t cache_invalidate(struct cache *c, const char *host, size_t host_len, const char *path,
                          size_t path_len)
{
    uint64_t n = remove_key(c, CACHE_M_GET, host, host_len, path, path_len);
    atomic_fetch_add_explicit(&c->invalidations, n, memory_order_relaxed);
    return n;
}

static uint64_t purge_where(struct cache *c, const char *domain)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *s = &c->shards[i];
        struct cache_entry *gc = NULL;
        pthread_mutex_lock(&s->mu);
        for (struct cache_entry *e = s->head; e;) {
            struct cache_entry *next = e->lnext;
            if (!domain || strcmp(e->domain, domain) == 0) {
                unlink_entry(c, s, e, &gc);
                n++;
            }
            e = next;
        }
        pthread_mutex_unlock(&s->mu);
        gc_drop(gc);
    }
    atomic_fetch_add_explicit(&c->purges, n, memory_order_relaxed);
    return n;
}

uint64_t cache_purge_domain(struct cache *c, const char *domain)
{
    return purge_where(c, domain ? domain : "");
}

uint64_t cache_purge_all(struct cache *c)
{
    return purge_where(c, NULL);
}

void cache_get_stats(struct cache *c, struct cache_stats *o)
{
#define LD(x) atomic_load_explicit(&c->x, memory_order_relaxed)
    *o = (struct cache_stats){.entries = LD(entries),
                              .bytes = LD(bytes),
                              .hits = LD(hits),
                              .misses = LD(misses),
                              .stores = LD(stores),
                              .evictions = LD(evictions),
                              .purges = LD(purges),
                              .invalidations = LD(invalidations),
                              .refused = LD(refused),
                              .gzip_bytes = LD(copy_bytes)};
#undef LD
}

/* ---- request collapsing -------------------------------------------------------------------- */

int cache_fill_begin(struct cache *c, uint32_t method_bit, const char *host, size_t host_len,
                     const char *path, size_t path_len, struct cache_waiter *w,
                     struct cache_fill **fill)
{
    struct key k;
    int rc = key_init(&k, method_bit, host, host_len, path, path_len);
    *fill = NULL;
    if (rc < 0) {
        key_fini(&k);
        return rc;
    }
    unsigned si = SHARD_OF(k.hash);
    struct shard *s = &c->shards[si];
    struct cache_fill *nf = malloc(sizeof(*nf) + (size_t)k.len), *f;
    pthread_mutex_lock(&s->mu);
    for (f = s->fills; f; f = f->next)
        if (f->hash == k.hash && f->key_len == (uint32_t)k.len &&
            memcmp(f->key, k.p, f->key_len) == 0)
            break;
    if (f && w) {
        w->fill = f;
        w->shard = si;
        w->prev = NULL;
        w->next = f->waiters;
        if (f->waiters)
            f->waiters->prev = w;
        f->waiters = w;
        rc = CACHE_WAIT;
    } else if (f) {
        rc = CACHE_BUSY;
    } else if (!nf) {
        rc = -ENOMEM;
    } else {
        *nf = (struct cache_fill){
            .next = s->fills, .hash = k.hash, .shard = si, .key_len = (uint32_t)k.len};
        memcpy(nf->key, k.p, (size_t)k.len);
        s->fills = nf;
        *fill = nf;
        nf = NULL;
        rc = CACHE_FILLER;
    }
    pthread_mutex_unlock(&s->mu);
    free(nf);
    key_fini(&k);
    return rc;
}

void cache_fill_end(struct cache *c, struct cache_fill *fill, enum cache_fill_result result)
{
    struct shard *s = &c->shards[fill->shard];
    struct cache_fill **pp;
    pthread_mutex_lock(&s->mu);
    for (pp = &s->fills; *pp != fill; pp = &(*pp)->next)
        ;
    *pp = fill->next;
    for (struct cache_waiter *w = fill->waiters; w; w = w->next)
        w->fill = NULL; /* from here on, cancel says "too late" */
    pthread_mutex_unlock(&s->mu);
    for (struct cache_waiter *w = fill->waiters, *next; w; w = next) {
        next = w->next; /* w may be gone once its callback returns */
        w->fn(w->arg, w->worker, (int)result);
    }
    free(fill);
}

bool cache_fill_cancel_wait(struct cache *c, struct cache_waiter *w)
{
    struct shard *s = &c->shards[w->shard % NSHARDS];
    bool waiting;
    pthread_mutex_lock(&s->mu);
    waiting = w->fill != NULL;
    if (waiting) {
        if (w->prev)
            w->prev->next = w->next;
        else
            w->fill->waiters = w->next;
        if (w->next)
            w->next->prev = w->prev;
        w->fill = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    return waiting;
}

/* compress.c: the compression pool. N threads take newly stored entries from a bounded queue
 * in batches, gzip identity bodies with their own libdeflate compressor (or gunzip bodies the
 * origin sent gzipped into an identity copy), and attach the copy to the published entry with
 * a release store. The I/O threads never compress: a full queue means "serve identity".
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "cache.h"

#define QUEUE_CAP 1024
#define BATCH_MAX 32
#define BATCH_BYTES (4u << 20)

int cache_cpool_init(struct cache_cpool *p)
{
    memset(p, 0, sizeof(*p));
    p->cap = QUEUE_CAP;
    p->q = calloc(p->cap, sizeof(*p->q));
    if (!p->q)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->idle_cv, NULL);
    return 0;
}

void cache_cpool_fini(struct cache_cpool *p)
{
    free(p->q);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->idle_cv);
}

bool cache_compress_enqueue(struct cache *c, struct cache_entry *e)
{
    struct cache_cpool *p = cache_cpool_of(c);
    struct cache_entry *dropped = NULL;
    bool ok = false;
    pthread_mutex_lock(&p->mu);
    if (p->nthreads && !p->stop) {
        if (p->n == p->cap) {
            /* the threads are behind (they yield to the I/O threads): the oldest job gives
             * way, since the newest entries are the likeliest to be asked for (and still
             * stored) by the time a thread gets to them */
            dropped = p->q[p->head];
            p->head = (p->head + 1) % p->cap;
            p->n--;
        }
        cache_entry_ref(e);
        p->q[(p->head + p->n) % p->cap] = e;
        p->n++;
        ok = true;
        pthread_cond_signal(&p->work_cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (dropped) {
        cache_set_copy_state(dropped, CACHE_COPY_NONE);
        cache_entry_unref(dropped);
    }
    return ok;
}

/* The gzip trailer's ISIZE: the uncompressed size mod 2^32 (a hint; checked afterwards). */
static uint32_t gzip_isize(const char *p, size_t n)
{
    const unsigned char *t = (const unsigned char *)p + n - 4;
    return (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
}

static void make_identity(struct cache *c, struct cache_entry *e, struct libdeflate_decompressor *d)
{
    const struct cache_body *in = e->body;
    size_t in_used = 0, got = 0;
    if (in->len < 18) {
        cache_set_copy_state(e, CACHE_COPY_FAILED);
        return;
    }
    uint32_t isize = gzip_isize(in->data, in->len);
    if (isize > cache_config_of(c)->max_entry_size) {
        cache_set_copy_state(e, CACHE_COPY_TOO_BIG);
        return;
    }
    struct cache_body *out = cache_body_new(isize);
    if (!out) {
        cache_set_copy_state(e, CACHE_COPY_FAILED);
        return;
    }
    enum libdeflate_result r =
        libdeflate_gzip_decompress_ex(d, in->data, in->len, out->data, isize, &in_used, &got);
    /* one member that fills exactly ISIZE bytes; anything else (several members, a body
     * over 4 GiB, corruption) is not worth a second attempt */
    if (r != LIBDEFLATE_SUCCESS || in_used != in->len || got != isize) {
        cache_body_unref(out);
        cache_set_copy_state(e, r == LIBDEFLATE_INSUFFICIENT_SPACE ? CACHE_COPY_TOO_BIG
                                                                   : CACHE_COPY_FAILED);
        return;
    }
    cache_attach_copy(c, e, out);
}

/* A thread's output buffer for compression, kept between entries: compressing into a fresh
 * bound-sized allocation each time faulted in (and grew the heap for) about 1 MiB per 1 MiB
 * entry, work that competes with the I/O threads for the process's memory map. */
struct scratch {
    char *p;
    size_t cap;
};

static void make_gzip(struct cache *c, struct cache_entry *e, struct libdeflate_compressor *z,
                      struct scratch *s)
{
    const struct cache_body *in = e->body;
    size_t bound = libdeflate_gzip_compress_bound(z, in->len);
    struct cache_body *out;
    size_t n;

    if (s->cap < bound) {
        char *p = realloc(s->p, bound);
        if (!p) {
            cache_set_copy_state(e, CACHE_COPY_FAILED);
            return;
        }
        s->p = p;
        s->cap = bound;
    }
    /* one byte short of the input: a copy that is not smaller is not worth keeping */
    n = libdeflate_gzip_compress(z, in->data, in->len, s->p, in->len > 1 ? in->len - 1 : 0);
    if (n == 0) {
        cache_set_copy_state(e, CACHE_COPY_NOT_WORTH);
        return;
    }
    out = cache_body_new(n);
    if (!out) {
        cache_set_copy_state(e, CACHE_COPY_FAILED);
        return;
    }
    memcpy(out->data, s->p, n);
    cache_attach_copy(c, e, out);
}

static void *worker_main(void *arg)
{
    struct cache *c = arg;
    struct cache_cpool *p = cache_cpool_of(c);
    int level = cache_config_of(c)->compress_level;
    struct libdeflate_compressor *z =
        libdeflate_alloc_compressor(level < 1 || level > 12 ? 6 : level);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    struct cache_entry *batch[BATCH_MAX];
    struct scratch scratch = {NULL, 0};

    /* Compression yields to the I/O threads: SCHED_IDLE takes the CPU they leave and is
     * preempted as soon as one of them wakes (nice 19 still held the CPU for whole slices:
     * hit p99 doubled under a batch), and still gets a trickle when they saturate the
     * machine. Best effort: a failure leaves the default policy. */
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &(struct sched_param){0});
    for (;;) {
        unsigned nb = 0;
        size_t bytes = 0;
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->n == 0)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        while (p->n && nb < BATCH_MAX && bytes < BATCH_BYTES) {
            batch[nb] = p->q[p->head];
            bytes += batch[nb++]->body->len;
            p->head = (p->head + 1) % p->cap;
            p->n--;
        }
        p->busy++;
        pthread_mutex_unlock(&p->mu);

        for (unsigned i = 0; i < nb; i++) {
            struct cache_entry *e = batch[i];
            /* only the store's and our reference left: purged meanwhile, skip the work */
            if (atomic_load_explicit(&e->refs, memory_order_relaxed) <= 1)
                cache_set_copy_state(e, CACHE_COPY_NONE);
            else if (!z || !d)
                cache_set_copy_state(e, CACHE_COPY_FAILED);
            else if (e->gzip_body)
                make_identity(c, e, d);
            else
                make_gzip(c, e, z, &scratch);
            cache_entry_unref(e);
        }

        pthread_mutex_lock(&p->mu);
        p->busy--;
        if (p->n == 0 && p->busy == 0)
            pthread_cond_broadcast(&p->idle_cv);
        pthread_mutex_unlock(&p->mu);
    }
    libdeflate_free_compressor(z);
    libdeflate_free_decompressor(d);
    free(scratch.p);
    return NULL;
}

int cache_compress_start(struct cache *c, unsigned nthreads)
{
    struct cache_cpool *p = cache_cpool_of(c);
    int rc = 0;
    if (nthreads == 0 || p->nthreads)
        return 0;
    p->threads = calloc(nthreads, sizeof(*p->threads));
    if (!p->threads)
        return -ENOMEM;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < nthreads; i++) {
        rc = -pthread_create(&p->threads[i], NULL, worker_main, c);
        if (rc)
            break;
        p->nthreads++;
    }
    pthread_mutex_unlock(&p->mu);
    if (p->nthreads == 0) {
        free(p->threads);
        p->threads = NULL;
    }
    return p->nthreads ? 0 : rc;
}

void cache_compress_stop(struct cache *c)
{
    struct cache_cpool *p = cache_cpool_of(c);
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
    while (p->n) {
        struct cache_entry *e = p->q[p->head];
        cache_set_copy_state(e, CACHE_COPY_NONE);
        cache_entry_unref(e);
        p->head = (p->head + 1) % p->cap;
        p->n--;
    }
    pthread_cond_broadcast(&p->idle_cv);
}

bool cache_compress_idle(struct cache *c)
{
    struct cache_cpool *p = cache_cpool_of(c);
    pthread_mutex_lock(&p->mu);
    bool idle = p->n == 0 && p->busy == 0;
    pthread_mutex_unlock(&p->mu);
    return idle;
}

void cache_compress_wait_idle(struct cache *c)
{
    struct cache_cpool *p = cache_cpool_of(c);
    pthread_mutex_lock(&p->mu);
    while (p->n || p->busy)
        pthread_cond_wait(&p->idle_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

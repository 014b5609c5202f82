/* accesslog.c: the access log. The server holds one refcounted alog_file per distinct path and
 * says which log (a file and a logfmt.c format) each target writes to. A request of a target
 * that logs gets a record when it is routed; the exchange fills it in and hands it over when
 * it ends, and the line goes whole into the worker's buffer for that file. A worker never
 * blocks on its log: each file has a 64 KiB buffer being filled and one being written
 * (IORING_OP_WRITE, O_APPEND, whole lines only, so lines from two workers never interleave),
 * written when it passes 32 KiB or 100 ms after its first line; a line that finds both full
 * is dropped and counted. What is left at exit is written synchronously.
 *
 * Reopening (logrotate): rp_server_reopen_logs bumps a generation. The first worker to see the
 * bump opens every path again and swaps the fds in (atomic_exchange); every worker then moves
 * on at its next loop pass, once no write of its own is in flight on an old fd (io_uring may
 * resolve an fd late, in io-wq, so "submitted" is not enough). An old fd carries a count of
 * the workers that have still to move on; the last one closes it.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../tls/tls.h"
#include "internal.h"
#include "log.h"

#define ALOG_BUF (64u * 1024)
#define ALOG_THRESHOLD (32u * 1024)
#define ALOG_FLUSH_MS 100
#define ALOG_ERR_LOG_MS 10000 /* a failing file is logged at most this often per worker */
#define OPEN_FLAGS (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC)

struct alog_retired {
    int fd;
    uint32_t refs; /* workers that have yet to move past its generation */
    uint64_t gen;
};

/* One file's buffers on one worker. `op` first: the write's CQE names it. */
struct alog_wbuf {
    struct file_op op;
    struct worker *w;
    struct alog_file *f;
    char *fill, *flight;
    uint32_t fill_len, fill_lines;
    uint32_t flight_off, flight_len, flight_lines;
    uint64_t fill_ms; /* when the fill buffer got its first line */
    int wfd;          /* the fd the write in flight uses */
    bool busy;
} __attribute__((aligned(1 << OP_BITS)));

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- files ------------------------------------------------------------------------------- */

static struct alog_server *server_alog(struct rp_server *s)
{
    struct alog_server *a = s->alog;

    if (a)
        return a;
    if (!(a = calloc(1, sizeof(*a))))
        return NULL;
    pthread_mutex_init(&a->mu, NULL);
    /* unique within the process by construction (make_id); the seed only makes ids of
     * different processes unlikely to meet */
    if (getrandom(a->rid_seed, sizeof(a->rid_seed), GRND_NONBLOCK) != sizeof(a->rid_seed)) {
        a->rid_seed[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        a->rid_seed[1] = mono_ns();
    }
    s->alog = a;
    return a;
}

struct alog_file *alog_open(struct rp_server *s, const char *path, char *err, size_t errlen)
{
    struct alog_server *a = server_alog(s);
    struct alog_file *f = NULL, **files;
    int fd;

    if (!a)
        goto oom;
    pthread_mutex_lock(&a->mu);
    for (uint32_t i = 0; i < a->n_files; i++)
        if (a->files[i] && !strcmp(a->files[i]->path, path)) {
            f = a->files[i];
            f->refs++;
            pthread_mutex_unlock(&a->mu);
            return f;
        }
    pthread_mutex_unlock(&a->mu);
    fd = open(path, OPEN_FLAGS, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "access_log path \"%s\": cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!(f = calloc(1, sizeof(*f))) || !(f->path = strdup(path)))
        goto oom_fd;
    atomic_init(&f->fd, fd);
    f->refs = 1;
    pthread_mutex_lock(&a->mu);
    files = realloc(a->files, (a->n_files + 1) * sizeof(*files));
    if (files) {
        a->files = files;
        f->id = a->n_files;
        files[a->n_files++] = f;
    }
    pthread_mutex_unlock(&a->mu);
    if (files)
        return f;
oom_fd:
    close(fd);
    if (f)
        free(f->path);
    free(f);
oom:
    snprintf(err, errlen, "access_log path \"%s\": out of memory", path);
    return NULL;
}

void alog_file_put(struct rp_server *s, struct alog_file *f)
{
    struct alog_server *a = s->alog;

    if (!f || !a)
        return;
    pthread_mutex_lock(&a->mu);
    /* running workers may still have lines for it: it stays open until the server goes
     * (a reload that drops a path must wait for the old config's requests first) */
    if (--f->refs == 0 && !atomic_load(&s->running)) {
        close(atomic_load(&f->fd));
        atomic_store(&f->fd, -1);
    }
    pthread_mutex_unlock(&a->mu);
}

/* Under a->mu: fd is replaced; it closes once the n_live workers have moved past `gen`. */
static void retire_locked(struct alog_server *a, int fd, uint64_t gen)
{
    struct alog_retired *r;

    if (fd < 0)
        return;
    if (!a->n_live) {
        close(fd);
        return;
    }
    r = realloc(a->retired, (a->n_retired + 1) * sizeof(*r));
    if (!r) {
        log_error("access log: out of memory: an old log file stays open");
        return; /* leaked rather than closed under a write that may still use it */
    }
    a->retired = r;
    r[a->n_retired++] = (struct alog_retired){.fd = fd, .refs = a->n_live, .gen = gen};
}

/* Under a->mu: a worker has moved on from generation `from` to `to`. */
static void ack_locked(struct alog_server *a, uint64_t from, uint64_t to)
{
    for (uint32_t i = 0; i < a->n_retired; i++) {
        struct alog_retired *r = &a->retired[i];
        if (r->gen <= from || r->gen > to || --r->refs)
            continue;
        close(r->fd);
        *r = a->retired[--a->n_retired];
        i--;
    }
}

/* Under a->mu: opens every file again, as generation `gen`. */
static void reopen_locked(struct alog_server *a, uint64_t gen)
{
    for (uint32_t i = 0; i < a->n_files; i++) {
        struct alog_file *f = a->files[i];
        int fd;
        if (!f || !f->refs)
            continue;
        fd = open(f->path, OPEN_FLAGS, 0644);
        if (fd < 0) {
            log_error("access_log path \"%s\": cannot open again: %s (still writing to the old "
                      "file)",
                      f->path, strerror(errno));
            continue;
        }
        retire_locked(a, atomic_exchange(&f->fd, fd), gen);
    }
    atomic_store_explicit(&a->opened, gen, memory_order_release);
}

void alog_reopen_all(struct rp_server *s)
{
    struct alog_server *a = s->alog;

    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    reopen_locked(a, atomic_fetch_add(&a->gen, 1) + 1);
    pthread_mutex_unlock(&a->mu);
}

void rp_server_reopen_logs(rp_server *s)
{
    if (s && s->alog) /* a lock-free atomic add: safe in a signal handler */
        atomic_fetch_add_explicit(&s->alog->gen, 1, memory_order_release);
}

/* ---- configured logs ----------------------------------------------------------------------- */

static void log_free(struct rp_server *s, struct alog *l)
{
    if (!l)
        return;
    alog_file_put(s, l->file);
    logfmt_free(l->fmt);
    free(l);
}

/* The server owns every log it made (alog_free frees them). */
static int log_keep(struct alog_server *a, struct alog *l)
{
    struct alog **v = realloc(a->logs, (a->n_logs + 1) * sizeof(*v));

    if (!v)
        return -ENOMEM;
    a->logs = v;
    a->logs[a->n_logs++] = l;
    return 0;
}

/* A log from its config (path set); `who` names it in messages. */
static int log_new(struct rp_server *s, const rp_access_log_config *c, const char *who,
                   struct alog **out)
{
    struct alog *l = calloc(1, sizeof(*l));
    char err[512];
    int rc;

    if (!l)
        return -ENOMEM;
    rc = logfmt_compile(c->format, &l->fmt, err, sizeof(err));
    if (rc)
        log_error("%s: %s in access_log format", who, err);
    else if (!(l->file = alog_open(s, c->path, err, sizeof(err)))) {
        log_error("%s: %s", who, err);
        rc = -EINVAL;
    }
    if (!rc && log_keep(s->alog, l))
        rc = -ENOMEM;
    if (rc) {
        log_free(s, l);
        return rc;
    }
    *out = l;
    return 0;
}

int alog_setup(struct rp_server *s, const rp_access_log_config *cfg, bool request_id)
{
    struct alog_server *a;

    if (!(a = server_alog(s)))
        return -ENOMEM;
    a->request_id = request_id;
    return cfg->path && !cfg->off ? log_new(s, cfg, "server", &a->global) : 0;
}

int alog_add_domain(struct rp_server *s, struct target *t, const rp_domain_config *d)
{
    const rp_access_log_config *c = &d->access_log;
    struct alog *log = NULL;
    char who[300];
    int rc;

    t->alog_set = c->off || c->path;
    t->request_id = (int8_t)(d->request_id > 0 ? 1 : d->request_id < 0 ? -1 : 0);
    t->alog = NULL;
    if (!c->path || c->off)
        return 0;
    if (!server_alog(s))
        return -ENOMEM;
    snprintf(who, sizeof(who), "domain %s", d->domain ? d->domain : "?");
    rc = log_new(s, c, who, &log);
    t->alog = log;
    return rc;
}

int alog_adopt(struct rp_server *s, struct rp_server *staged)
{
    struct alog_server *a = s->alog, *b = staged->alog;
    struct alog_file **files;
    struct alog **logs;

    if (!b || (!b->n_logs && !b->n_files))
        return 0;
    if (!a)
        return -EINVAL;
    pthread_mutex_lock(&a->mu);
    files = realloc(a->files, (a->n_files + b->n_files) * sizeof(*files));
    if (files)
        a->files = files;
    logs = realloc(a->logs, (a->n_logs + b->n_logs) * sizeof(*logs));
    if (logs)
        a->logs = logs;
    if (!files || !logs) {
        pthread_mutex_unlock(&a->mu);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < b->n_files; i++) {
        struct alog_file *f = b->files[i], *have = NULL;
        for (uint32_t j = 0; j < a->n_files && !have; j++)
            if (!strcmp(a->files[j]->path, f->path))
                have = a->files[j];
        if (!have) { /* a new path: its id is s's next, for the workers' buffers */
            f->id = a->n_files;
            a->files[a->n_files++] = f;
            continue;
        }
        for (uint32_t k = 0; k < b->n_logs; k++)
            if (b->logs[k]->file == f) {
                b->logs[k]->file = have;
                have->refs++;
            }
        close(atomic_load(&f->fd));
        free(f->path);
        free(f);
    }
    for (uint32_t k = 0; k < b->n_logs; k++)
        a->logs[a->n_logs++] = b->logs[k];
    pthread_mutex_unlock(&a->mu);
    b->n_files = b->n_logs = 0; /* all s's now */
    b->global = NULL;
    return 0;
}

void alog_free(struct rp_server *s)
{
    struct alog_server *a = s->alog;

    if (!a)
        return;
    for (uint32_t i = 0; i < a->n_logs; i++)
        log_free(s, a->logs[i]);
    for (uint32_t i = 0; i < a->n_retired; i++)
        close(a->retired[i].fd);
    for (uint32_t i = 0; i < a->n_files; i++) {
        if (atomic_load(&a->files[i]->fd) >= 0)
            close(atomic_load(&a->files[i]->fd));
        free(a->files[i]->path);
        free(a->files[i]);
    }
    free(a->files);
    free(a->logs);
    free(a->retired);
    pthread_mutex_destroy(&a->mu);
    free(a);
    s->alog = NULL;
}

/* The settings that apply to target t (NULL: a request no target took): its own, else the
 * server's in the worker's snapshot (a reload may change either). */
static const struct alog *log_for(const struct worker *w, const struct target *t)
{
    return t && t->alog_set ? t->alog : w->snap->alog_global;
}

static bool request_id_for(const struct worker *w, const struct target *t)
{
    return t && t->request_id ? t->request_id > 0 : w->snap->request_id;
}

/* ---- the worker's buffers ------------------------------------------------------------------ */

static void on_written(struct worker *w, struct file_op *op, int res);

static void start_write(struct worker *w, struct alog_wbuf *b)
{
    struct io_uring_sqe *sqe = w_sqe(w);

    b->wfd = atomic_load_explicit(&b->f->fd, memory_order_acquire);
    /* offset -1: at the file's position, which O_APPEND keeps at its end */
    io_uring_prep_write(sqe, b->wfd, b->flight + b->flight_off, b->flight_len - b->flight_off,
                        (uint64_t)-1);
    sqe->user_data = ud_of(&b->op, OP_FILE);
    b->busy = true;
}

/* The fill buffer becomes the one in flight. */
static void submit(struct worker *w, struct alog_wbuf *b)
{
    char *t = b->flight;

    b->flight = b->fill;
    b->fill = t;
    b->flight_len = b->fill_len;
    b->flight_lines = b->fill_lines;
    b->flight_off = 0;
    b->fill_len = b->fill_lines = 0;
    start_write(w, b);
}

static uint32_t count_lines(const char *p, uint32_t n)
{
    uint32_t k = 0;

    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
        k++;
    return k;
}

/* A write failed after `written` bytes of buf[0..len) holding `lines` lines: the rest is
 * dropped, counted, and said in the log at most every ALOG_ERR_LOG_MS per worker. */
static void write_failed(struct worker *w, const struct alog_file *f, int err, const char *buf,
                         uint32_t written, uint32_t lines)
{
    uint32_t done = count_lines(buf, written);

    ctr_add(&w->m->alog_errors, 1);
    ctr_add(&w->m->alog_lines, done);
    ctr_add(&w->m->alog_dropped, lines - done);
    if (w->alog && w->now_ms - w->alog->err_ms < ALOG_ERR_LOG_MS && w->alog->err_ms)
        return;
    if (w->alog)
        w->alog->err_ms = w->now_ms ? w->now_ms : 1;
    log_error("worker %d: access log \"%s\": write failed: %s (%u lines lost; said at most every "
              "%d s)",
              w->id, f->path, strerror(err), lines - done, ALOG_ERR_LOG_MS / 1000);
}

static void on_written(struct worker *w, struct file_op *op, int res)
{
    struct alog_wbuf *b = (struct alog_wbuf *)op;

    b->busy = false;
    if (res > 0 && (b->flight_off += (uint32_t)res) < b->flight_len) {
        start_write(w, b); /* a short write: the rest, not again from the start */
        return;
    }
    if (res > 0)
        ctr_add(&w->m->alog_lines, b->flight_lines);
    else /* 0 would never progress: an error like any other */
        write_failed(w, b->f, res ? -res : EIO, b->flight, b->flight_off, b->flight_lines);
    b->flight_len = b->flight_off = b->flight_lines = 0;
    if (b->fill_len >= ALOG_THRESHOLD || (w->draining && b->fill_len))
        submit(w, b);
}

static struct alog_wbuf *wbuf_of(struct worker *w, struct alog_file *f)
{
    struct alog_worker *aw = w->alog;
    struct alog_wbuf *b;

    if (f->id >= aw->n_bufs) {
        struct alog_wbuf **v = realloc(aw->bufs, (f->id + 1) * sizeof(*v));
        if (!v)
            return NULL;
        memset(v + aw->n_bufs, 0, (f->id + 1 - aw->n_bufs) * sizeof(*v));
        aw->bufs = v;
        aw->n_bufs = f->id + 1;
    }
    if ((b = aw->bufs[f->id]))
        return b;
    if (posix_memalign((void **)&b, 1 << OP_BITS, sizeof(*b)))
        return NULL;
    memset(b, 0, sizeof(*b));
    b->fill = malloc(ALOG_BUF);
    b->flight = malloc(ALOG_BUF);
    if (!b->fill || !b->flight) {
        free(b->fill);
        free(b->flight);
        free(b);
        return NULL;
    }
    b->op.done = on_written;
    b->w = w;
    b->f = f;
    aw->bufs[f->id] = b;
    return b;
}

/* Appends l's line whole to its file's buffer, or drops it (counted): both buffers full, or
 * a line longer than a buffer. */
static void put_line(struct worker *w, const struct alog *log, const struct lf_line *l)
{
    struct alog_wbuf *b = wbuf_of(w, log->file);
    size_t n;

    if (!b) {
        ctr_add(&w->m->alog_dropped, 1);
        return;
    }
    n = logfmt_write(log->fmt, l, b->fill + b->fill_len, ALOG_BUF - b->fill_len);
    if (!n && b->fill_len && !b->busy) { /* full: it goes, the line starts the next one */
        submit(w, b);
        n = logfmt_write(log->fmt, l, b->fill, ALOG_BUF);
    }
    if (!n) {
        ctr_add(&w->m->alog_dropped, 1);
        return;
    }
    if (!b->fill_len)
        b->fill_ms = w->now_ms;
    b->fill_len += (uint32_t)n;
    b->fill_lines++;
    if (b->fill_len >= ALOG_THRESHOLD && !b->busy)
        submit(w, b);
}

/* At exit: what is left, with plain write(2). */
static void write_sync(struct worker *w, struct alog_wbuf *b)
{
    uint32_t off = 0;
    int fd = atomic_load(&b->f->fd);

    while (off < b->fill_len) {
        ssize_t k = write(fd, b->fill + off, b->fill_len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            write_failed(w, b->f, k < 0 ? errno : EIO, b->fill, off, b->fill_lines);
            return;
        }
        off += (uint32_t)k;
    }
    ctr_add(&w->m->alog_lines, b->fill_lines);
}

/* ---- the module ---------------------------------------------------------------------------- */

static int alog_init(struct worker *w)
{
    struct alog_server *a = w->s->alog;

    if (!a)
        return 0;
    if (!(w->alog = calloc(1, sizeof(*w->alog))))
        return -ENOMEM;
    w->alog->sec = -1;
    pthread_mutex_lock(&a->mu);
    a->n_live++;
    w->alog->seen = atomic_load_explicit(&a->opened, memory_order_acquire);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

/* A reopen was asked for: the first worker here opens the files again; each moves on once
 * none of its writes in flight uses an old fd. */
static void reopen_tick(struct alog_server *a, struct alog_worker *aw)
{
    uint64_t opened;

    if (atomic_load_explicit(&a->opened, memory_order_acquire) <
            atomic_load_explicit(&a->gen, memory_order_acquire) &&
        !pthread_mutex_trylock(&a->mu)) {
        uint64_t gen = atomic_load(&a->gen);
        if (atomic_load(&a->opened) < gen)
            reopen_locked(a, gen);
        pthread_mutex_unlock(&a->mu);
    }
    opened = atomic_load_explicit(&a->opened, memory_order_acquire);
    if (opened <= aw->seen)
        return; /* another worker is opening them: next pass */
    for (uint32_t i = 0; i < aw->n_bufs; i++) {
        const struct alog_wbuf *b = aw->bufs[i];
        if (b && b->busy && b->wfd != atomic_load(&b->f->fd))
            return; /* its completion comes first */
    }
    pthread_mutex_lock(&a->mu);
    ack_locked(a, aw->seen, opened);
    pthread_mutex_unlock(&a->mu);
    aw->seen = opened;
}

static void alog_tick(struct worker *w)
{
    struct alog_server *a = w->s->alog;
    struct alog_worker *aw = w->alog;

    if (!aw)
        return;
    if (atomic_load_explicit(&a->gen, memory_order_relaxed) != aw->seen)
        reopen_tick(a, aw);
    for (uint32_t i = 0; i < aw->n_bufs; i++) {
        struct alog_wbuf *b = aw->bufs[i];
        if (b && b->fill_len && !b->busy &&
            (w->draining || w->now_ms - b->fill_ms >= ALOG_FLUSH_MS))
            submit(w, b);
    }
}

static void alog_fini(struct worker *w)
{
    struct alog_server *a = w->s->alog;
    struct alog_worker *aw = w->alog;

    if (!aw)
        return;
    for (uint32_t i = 0; i < aw->n_bufs; i++) {
        struct alog_wbuf *b = aw->bufs[i];
        if (!b)
            continue;
        if (b->fill_len)
            write_sync(w, b);
        /* a write still in flight here (the drain timed out on it): the kernel may yet read
         * its buffer, so that one is left allocated */
        if (!b->busy)
            free(b->flight);
        free(b->fill);
        free(b);
    }
    free(aw->bufs);
    pthread_mutex_lock(&a->mu);
    a->n_live--;
    ack_locked(a, aw->seen, UINT64_MAX);
    pthread_mutex_unlock(&a->mu);
    free(aw);
    w->alog = NULL;
}

const struct worker_module alog_module = {
    .init = alog_init,
    .tick = alog_tick,
    .fini = alog_fini,
    .name = "access log",
};

/* ---- lines --------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* 32 hex digits. The first 64 bits are splitmix64 (a bijection) of the seed mixed with the
 * worker's id and its counter, which no two requests of the process share: unique. They are
 * not unpredictable, and need not be: an id names a request, it guards nothing. */
static void make_id(struct worker *w, char out[33])
{
    const uint64_t *seed = w->s->alog->rid_seed;
    uint64_t n = w->alog->rid_n++;
    uint64_t v[2];
    static const char hex[] = "0123456789abcdef";

    v[0] = splitmix64(seed[0] ^ ((uint64_t)w->id << 56) ^ n);
    v[1] = splitmix64(seed[1] ^ v[0]);
    for (int i = 0; i < 32; i++)
        out[i] = hex[(v[i / 16] >> (60 - 4 * (i % 16))) & 15];
    out[32] = 0;
}

/* A client's X-Request-Id is kept when it is 1-64 characters of [A-Za-z0-9._-]. */
static bool id_ok(const char *p, uint32_t n)
{
    if (!n || n > 64)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* time_local and time_iso8601, formatted once per second per worker. */
static void refresh_time(struct alog_worker *aw)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec == aw->sec)
        return;
    aw->sec = ts.tv_sec;
    localtime_r(&ts.tv_sec, &tm);
    strftime(aw->time_local, sizeof(aw->time_local), "%d/%b/%Y:%H:%M:%S %z", &tm);
    n = strftime(aw->time_iso, sizeof(aw->time_iso) - 1, "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (n >= 5) { /* +0000 -> +00:00 */
        memmove(aw->time_iso + n - 1, aw->time_iso + n - 2, 3);
        aw->time_iso[n - 2] = ':';
    }
}

/* The values of the format's $http_* fields in r, first field of each name. */
static void find_headers(const struct logfmt *f, const struct h1_request *r, struct lf_span *v)
{
    uint32_t n = logfmt_n_headers(f);

    memset(v, 0, n * sizeof(*v));
    for (uint32_t i = 0; r && i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        for (uint32_t k = 0; k < n; k++)
            if (!v[k].p && logfmt_header_is(f, k, h->name, h->name_len)) {
                v[k] = (struct lf_span){h->value ? h->value : "", h->value_len};
                break;
            }
    }
}

static int64_t since_us(uint64_t from, uint64_t to)
{
    return from && to >= from ? (int64_t)((to - from) / 1000) : -1;
}

/* Writes the line of a request answered on c: r its head (or NULL: none was parsed), rec its
 * record (or NULL: answered before it had one). */
static void emit(struct conn *c, const struct alog *log, const struct h1_request *r,
                 const struct alog_rec *rec, int status, uint64_t body, uint64_t start_ns)
{
    struct worker *w = c->w;
    struct alog_worker *aw = w->alog;
    struct lf_span hv[LOGFMT_MAX_HEADERS];
    struct lf_try tries[ALOG_TRIES];
    char peer[INET6_ADDRSTRLEN], id[33];
    uint64_t now = mono_ns();
    struct lf_line l;

    if (!aw || !log || !log->file)
        return;
    refresh_time(aw);
    conn_format_peer(&c->peer, peer, sizeof(peer));
    find_headers(log->fmt, r, hv);
    l = (struct lf_line){
        .remote_addr = peer,
        .time_local = aw->time_local,
        .time_iso8601 = aw->time_iso,
        .hdrs = hv,
        .status = status,
        .body_bytes = body,
        .request_us = now > start_ns ? (now - start_ns) / 1000 : 0,
        .ssl_protocol = c->tls ? tls_version(c->tls) : NULL,
    };
    if (r) {
        l.method = (struct lf_span){r->method, r->method_len};
        l.path = (struct lf_span){r->path, r->path_len};
        l.host = (struct lf_span){r->host, r->host ? r->host_len : 0};
        l.minor = r->minor;
        l.h2 = c->h2s;
    }
    if (rec) {
        for (uint32_t i = 0; i < rec->n_tries; i++) {
            const struct alog_try *t = &rec->tries[i];
            tries[i] = (struct lf_try){
                .addr = t->be->authority,
                .status = t->status,
                .connect_us = since_us(t->start_ns, t->connect_ns),
                .resp_us = since_us(t->start_ns, t->end_ns ? t->end_ns : now),
            };
        }
        l.tries = tries;
        l.n_tries = rec->n_tries;
        l.cache_status = rec->cache;
        l.request_id = rec->id[0] ? rec->id : NULL;
    }
    if (!l.request_id && logfmt_uses_request_id(log->fmt)) {
        make_id(w, id);
        l.request_id = id;
    }
    put_line(w, log, &l);
}

/* When the current head's first byte arrived: the connection's coarse clock, refined by
 * the monotonic clock now. */
static uint64_t head_start_ns(const struct conn *c, uint64_t now)
{
    uint64_t waited = (c->w->now_ms - c->head_start_ms) * 1000000u;

    return now > waited ? now - waited : now;
}

/* Bytes a record takes for the fields of r that f reads. */
static size_t fields_size(const struct logfmt *f, const struct h1_request *r, uint32_t *n)
{
    size_t bytes = 0;

    *n = 0;
    for (uint32_t i = 0; f && i < r->n_headers; i++)
        for (uint32_t k = 0; k < logfmt_n_headers(f); k++)
            if (logfmt_header_is(f, k, r->headers[i].name, r->headers[i].name_len)) {
                bytes += r->headers[i].name_len + r->headers[i].value_len;
                ++*n;
                break;
            }
    return bytes;
}

static const char *copy_span(char **blob, const char *p, uint32_t n)
{
    char *d = *blob;

    if (!p)
        return NULL;
    memcpy(d, p, n);
    *blob += n;
    return d;
}

/* The record's copy of r: method, path, Host and the fields f reads. */
static void copy_request(struct alog_rec *rec, const struct logfmt *f, const struct h1_request *r,
                         char *blob)
{
    uint32_t k = 0;

    rec->req = *r;
    rec->req.method = copy_span(&blob, r->method, r->method_len);
    rec->req.path = copy_span(&blob, r->path, r->path_len);
    rec->req.host = copy_span(&blob, r->host, r->host ? r->host_len : 0);
    rec->req.target = rec->req.path;
    rec->req.headers = rec->hdrs;
    for (uint32_t i = 0; f && i < r->n_headers; i++)
        for (uint32_t j = 0; j < logfmt_n_headers(f); j++)
            if (logfmt_header_is(f, j, r->headers[i].name, r->headers[i].name_len)) {
                struct h1_header *h = &rec->hdrs[k++];
                *h = r->headers[i];
                h->name = copy_span(&blob, h->name, h->name_len);
                h->value = copy_span(&blob, h->value ? h->value : "", h->value_len);
                break;
            }
    rec->req.n_headers = rec->req.headers_cap = k;
}

/* The client's X-Request-Id when it may be kept, else one made here. */
static void pick_id(struct worker *w, const struct h1_request *r, char id[65])
{
    for (uint32_t i = 0; i < r->n_headers; i++) {
        const struct h1_header *h = &r->headers[i];
        if (h1_span_ieq(h->name, h->name_len, "x-request-id") && id_ok(h->value, h->value_len)) {
            memcpy(id, h->value, h->value_len);
            id[h->value_len] = 0;
            return;
        }
    }
    make_id(w, id);
}

void alog_begin(struct conn *c, const struct h1_request *r)
{
    struct exchange *ex = c->ex;
    const struct alog *log = log_for(c->w, ex->t);
    bool send_id = request_id_for(c->w, ex->t);
    const struct logfmt *f;
    struct alog_rec *rec;
    uint32_t n;
    size_t bytes;

    if (!log && !send_id)
        return;
    f = log ? log->fmt : NULL;
    bytes = fields_size(f, r, &n) + r->method_len + r->path_len + (r->host ? r->host_len : 0);
    rec = malloc(sizeof(*rec) + n * sizeof(struct h1_header) + bytes);
    if (!rec)
        return; /* out of memory: no line for this one */
    memset(rec, 0, sizeof(*rec));
    rec->log = log;
    rec->send_id = send_id;
    rec->start_ns = head_start_ns(c, mono_ns());
    copy_request(rec, f, r, (char *)(rec->hdrs + n));
    if (send_id)
        pick_id(c->w, r, rec->id);
    else if (f && logfmt_uses_request_id(f))
        make_id(c->w, rec->id);
    ex->log = rec;
}

void alog_end(struct conn *c)
{
    struct alog_rec *rec = c->ex->log;

    c->ex->log = NULL;
    /* no answer went out: the client went away first (nginx's 499) */
    emit(c, rec->log, &rec->req, rec, rec->status ? rec->status : 499, rec->body, rec->start_ns);
    free(rec);
}

void alog_answer(struct conn *c, int status, uint64_t body)
{
    struct exchange *ex = c->ex;
    struct worker *w = c->w;

    if (c->admin || !w->alog)
        return; /* the admin API is not logged */
    if (ex->log) {
        ex->log->status = (uint16_t)status;
        ex->log->body = body;
        return;
    }
    if (ex_active(ex) && ex->state != EX_LOCAL)
        return; /* a target that does not log */
    /* no exchange (a head that did not parse or arrive, no route, 405, 413), or a local
     * endpoint's: not routed, so the server's log */
    emit(c, w->snap->alog_global, w->alog->req, NULL, status, body, head_start_ns(c, mono_ns()));
}

const struct h1_request *alog_set_request(struct worker *w, const struct h1_request *r)
{
    const struct h1_request *outer;

    if (!w->alog)
        return NULL;
    outer = w->alog->req;
    w->alog->req = r;
    return outer;
}

void alog_try_start(struct exchange *ex, const struct backend *be, uint64_t ns, bool reused)
{
    struct alog_rec *rec = ex->log;
    struct alog_try *t;

    if (!rec || rec->n_tries >= ALOG_TRIES)
        return;
    t = &rec->tries[rec->n_tries++];
    *t = (struct alog_try){.be = be, .start_ns = ns, .connect_ns = reused ? ns : 0};
}

void alog_try_event(struct exchange *ex, const struct backend *be, int status, bool end)
{
    struct alog_rec *rec = ex->log;

    for (uint32_t i = rec->n_tries; i-- > 0;) { /* the latest attempt at be still open */
        struct alog_try *t = &rec->tries[i];
        if (t->be != be || t->end_ns)
            continue;
        if (!status)
            t->connect_ns = mono_ns();
        else
            t->status = (uint16_t)status;
        if (end)
            t->end_ns = mono_ns();
        return;
    }
}

/* snapshot.c: the configuration in force (snapshot.h): its life, its slots, and the reload
 * that builds the next one from a staged server (rp_server_reload) and publishes it.
 *
 * Locking: s->snap_mu guards s->snap, the slot tables and the freeing of a snapshot (so a
 * slot freed by a worker dropping the last reference cannot race a reload taking slots);
 * s->reload_mu serialises reloads. Neither is taken on a request's path: workers only take
 * snap_mu when they adopt a new snapshot or drop an old one.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../cache/cache.h"
#include "../tls/tls.h"
#include "accesslog.h"
#include "internal.h"
#include "log.h"
#include "proxy_proto.h"
#include "snapshot.h"

uint32_t snapshot_slot_cap(uint32_t n, uint32_t headroom)
{
    return 2 * n + headroom;
}

/* ---- slots ------------------------------------------------------------------------------- */

static int slots_init(struct slots *sl, uint32_t cap)
{
    sl->cap = cap;
    sl->refs = calloc(cap ? cap : 1, sizeof(*sl->refs));
    return sl->refs ? 0 : -ENOMEM;
}

uint32_t slots_free_count(const struct slots *sl)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < sl->cap; i++)
        n += !sl->refs[i];
    return n;
}

/* The lowest free index, now held once. The caller checked one is free. */
static uint32_t slot_take(struct slots *sl)
{
    uint32_t i = 0;

    while (sl->refs[i])
        i++;
    sl->refs[i] = 1;
    return i;
}

/* ---- listening sockets -------------------------------------------------------------------- */

static void spec_free(struct listen_spec *sp)
{
    if (!sp)
        return;
    free(sp->addr);
    free(sp->pp_from);
    free(sp);
}

static struct listen_spec *spec_dup(const struct listen_spec *src)
{
    struct listen_spec *sp = calloc(1, sizeof(*sp));

    if (!sp)
        return NULL;
    *sp = *src;
    sp->addr = strdup(src->addr);
    sp->pp_from = NULL;
    if (src->n_pp_from && (sp->pp_from = calloc(src->n_pp_from, sizeof(*sp->pp_from))))
        memcpy(sp->pp_from, src->pp_from, src->n_pp_from * sizeof(*sp->pp_from));
    if (!sp->addr || (src->n_pp_from && !sp->pp_from)) {
        spec_free(sp);
        return NULL;
    }
    return sp;
}

static bool spec_same(const struct listen_spec *a, const struct listen_spec *b)
{
    return !strcmp(a->addr, b->addr) && a->tls == b->tls && a->admin == b->admin &&
           a->proxy_protocol == b->proxy_protocol && a->n_pp_from == b->n_pp_from &&
           (!a->n_pp_from || !memcmp(a->pp_from, b->pp_from, a->n_pp_from * sizeof(*a->pp_from)));
}

static void lsock_put(struct lsock *l)
{
    if (atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (uint32_t i = 0; i < l->nfds; i++) /* sockets no worker ever took */
        if (l->fds[i] >= 0)
            close(l->fds[i]);
    free(l->fds);
    spec_free(l->spec);
    free(l);
}

/* The sockets of one listener: one per traffic worker (SO_REUSEPORT), or the admin
 * worker's one; at start, the sockets another process handed over for it instead
 * (rp_server_inherit_listener, spec index `inherit`; SIZE_MAX: none), each worker taking
 * entries id, id + n, ... (duplicates when there are fewer than workers). NULL with the
 * reason logged. */
static struct lsock *lsock_open(const struct rp_server *s, const struct listen_spec *spec,
                                size_t inherit)
{
    struct lsock *l = calloc(1, sizeof(*l));
    uint32_t nw = spec->admin ? 1 : (uint32_t)s->nworkers, n = nw;
    size_t got = inherit == SIZE_MAX ? 0 : server_inherited_count(s, inherit);

    if (!l)
        return NULL;
    if (got > n)
        n = (uint32_t)got;
    atomic_init(&l->refs, 1);
    l->spec = spec_dup(spec);
    l->fds = malloc(n * sizeof(*l->fds));
    if (!l->spec || !l->fds) {
        free(l->fds);
        l->fds = NULL;
        lsock_put(l);
        return NULL;
    }
    for (; l->nfds < n; l->nfds++) {
        int fd = got ? server_inherited_dup(s, inherit, l->nfds) : server_open_listener(spec->addr);
        if (fd < 0) {
            lsock_put(l);
            return NULL;
        }
        l->fds[l->nfds] = fd;
    }
    return l;
}

/* ---- a snapshot's life ------------------------------------------------------------------- */

struct snapshot *snapshot_acquire(struct rp_server *s)
{
    struct snapshot *snap;

    pthread_mutex_lock(&s->snap_mu);
    snap = s->snap;
    if (snap)
        atomic_fetch_add(&snap->refs, 1);
    pthread_mutex_unlock(&s->snap_mu);
    return snap;
}

/* s->snap_mu held. What only this snapshot held goes with it: its targets, the backends no
 * newer snapshot kept (their slots, counters and health state cleared for the next user),
 * listeners no other snapshot has. */
static void snapshot_free(struct rp_server *s, struct snapshot *snap)
{
    struct route_table *rt = &snap->rt;

    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i);
        if (t->index < s->t_slots.cap && !--s->t_slots.refs[t->index])
            metrics_clear_target(s, t->index);
        tls_ctx_free(t->up_tls);
        t->up_tls = NULL;
    }
    for (uint32_t i = 0; i < rt->n_backends; i++) {
        struct backend *be = rt->backends[i];
        if (atomic_fetch_sub(&be->refs, 1) != 1)
            continue;
        if (be->index < s->be_slots.cap) {
            s->be_slots.refs[be->index] = 0;
            metrics_clear_backend(s, be->index);
            if (s->health)
                memset(&s->health[be->index], 0, sizeof(s->health[be->index]));
        }
        route_backend_free(be);
    }
    rt->n_backends = 0; /* freed above, those that were ours */
    route_table_fini(rt);
    tls_ctx_free(snap->tls);
    for (uint32_t i = 0; i < snap->n_ls; i++)
        lsock_put(snap->ls[i]);
    free(snap->ls);
    if (snap->admin_token) {
        explicit_bzero(snap->admin_token, strlen(snap->admin_token));
        free(snap->admin_token);
    }
    free(snap);
}

void snapshot_put(struct rp_server *s, struct snapshot *snap)
{
    if (!snap || atomic_fetch_sub(&snap->refs, 1) != 1)
        return;
    pthread_mutex_lock(&s->snap_mu);
    snapshot_free(s, snap);
    pthread_mutex_unlock(&s->snap_mu);
}

/* ---- users: exchanges and refreshes, on their worker -------------------------------------- */

struct snapshot *snap_use(struct worker *w)
{
    w->snap_users++;
    return w->snap;
}

void snap_unuse(struct worker *w, struct snapshot *snap)
{
    if (snap == w->snap) {
        w->snap_users--;
        return;
    }
    for (uint32_t i = 0; i < w->n_held; i++) {
        if (w->held[i].snap != snap)
            continue;
        if (!--w->held[i].users) {
            w->held[i] = w->held[--w->n_held];
            snapshot_put(w->s, snap);
        }
        return;
    }
}

/* ---- the first snapshot ------------------------------------------------------------------- */

static bool has_tls_backend(const struct target *t)
{
    for (uint32_t i = 0; i < t->n_backends; i++)
        if (t->backends[i]->tls)
            return true;
    return false;
}

/* The TLS contexts of a snapshot: client ones for targets with https:// backends (their CAs
 * and verification), and the server one, with each domain's own certificate for SNI, when
 * some listener is TLS. Files are read here, so a reload reads renewed certificates. */
static int snapshot_tls(struct rp_server *s, struct snapshot *snap, const char *cert,
                        const char *key, char *err, size_t cap)
{
    bool tls_listener = false;
    char why[256];

    for (uint32_t i = 0; i < route_count(&snap->rt); i++) {
        struct target *t = route_target(&snap->rt, i);
        if (!has_tls_backend(t))
            continue;
        if (tls_global_init())
            return snprintf(err, cap, "TLS: wolfSSL did not initialise"), -EINVAL;
        t->up_tls = tls_client_new(t->tls_ca_file, !t->tls_no_verify, why, sizeof(why));
        if (!t->up_tls)
            return snprintf(err, cap, "TLS to the backends of %s: %s", t->label, why), -EINVAL;
        s->upstream_tls = true;
    }
    for (uint32_t i = 0; i < snap->n_ls; i++)
        tls_listener |= snap->ls[i]->spec->tls;
    if (!tls_listener)
        return 0;
    if (!cert || !key)
        return snprintf(err, cap,
                        "TLS listeners need a certificate and a key (tls = { cert; "
                        "key; })"),
               -EINVAL;
    if (tls_global_init())
        return snprintf(err, cap, "TLS: wolfSSL did not initialise"), -EINVAL;
    snap->tls = tls_server_new(cert, key, why, sizeof(why));
    if (!snap->tls)
        return snprintf(err, cap, "TLS: %s", why), -EINVAL;
    tls_server_set_h2(snap->tls, !snap->cfg.no_http2);
    for (uint32_t i = 0; i < snap->rt.n_domains; i++) {
        const struct target *t = snap->rt.domains[i];
        if (t->tls_cert &&
            tls_server_add_sni(snap->tls, t->label, t->tls_cert, t->tls_key, why, sizeof(why)))
            return snprintf(err, cap, "TLS for %s: %s", t->label, why), -EINVAL;
    }
    return 0;
}

/* What a snapshot keeps of a server config: the values, not the pointers (they belong to
 * the server that was configured). */
static void snapshot_set_cfg(struct snapshot *snap, const struct rp_server *from)
{
    snap->cfg = from->cfg;
    snap->cfg.listen = snap->cfg.listen_tls = NULL;
    snap->cfg.listeners = NULL;
    snap->cfg.n_listen = snap->cfg.n_listen_tls = snap->cfg.n_listeners = 0;
    snap->cfg.tls_cert = snap->cfg.tls_key = NULL;
    snap->cfg.admin_listen = snap->cfg.admin_token = NULL;
    snap->lim = from->lim;
    snap->x_cache = from->x_cache;
    snap->cache_lock_ms = from->cache_lock_ms;
    snap->alog_global = from->alog ? from->alog->global : NULL;
    snap->request_id = from->alog && from->alog->request_id;
}

int snapshot_init(struct rp_server *s)
{
    struct snapshot *snap = calloc(1, sizeof(*snap));
    struct route_table *rt = &s->rt;
    char err[512];
    int rc = -ENOMEM;

    if (!snap)
        return -ENOMEM;
    atomic_init(&snap->refs, 1);
    snap->gen = 1;
    snap->rt = *rt; /* the config calls' table moves in; its indexes become the first slots */
    memset(rt, 0, sizeof(*rt));
    snapshot_set_cfg(snap, s);
    if (slots_init(&s->be_slots, snapshot_slot_cap(snap->rt.n_backends, 256)) ||
        slots_init(&s->t_slots, snapshot_slot_cap(snap->rt.n_targets, 64)))
        goto err;
    for (uint32_t i = 0; i < snap->rt.n_backends; i++)
        s->be_slots.refs[snap->rt.backends[i]->index] = 1;
    for (uint32_t i = 0; i < route_count(&snap->rt); i++)
        s->t_slots.refs[route_target(&snap->rt, i)->index] = 1;
    if (s->admin_token && !(snap->admin_token = strdup(s->admin_token)))
        goto err;
    if (!(snap->ls = calloc(s->n_listen ? s->n_listen : 1, sizeof(*snap->ls))))
        goto err;
    rc = -EINVAL;
    for (size_t i = 0; i < s->n_listen; i++, snap->n_ls++)
        if (!(snap->ls[i] = lsock_open(s, &s->listen[i], i)))
            goto err;
    if ((rc = snapshot_tls(s, snap, s->tls_cert, s->tls_key, err, sizeof(err)))) {
        log_error("%s", err);
        goto err;
    }
    pthread_mutex_lock(&s->reload_mu); /* a reload asked for this early reads it */
    s->snap = snap;
    atomic_store(&s->gen, 1);
    atomic_store(&s->last_reload_ok_s, (long long)time(NULL));
    pthread_mutex_unlock(&s->reload_mu);
    return 0;
err:
    pthread_mutex_lock(&s->snap_mu);
    snapshot_free(s, snap);
    pthread_mutex_unlock(&s->snap_mu);
    return rc;
}

void snapshot_fini(struct rp_server *s)
{
    struct snapshot *snap;

    pthread_mutex_lock(&s->reload_mu); /* a reload in progress (a late SIGHUP) ends first */
    snap = s->snap;
    pthread_mutex_lock(&s->snap_mu);
    s->snap = NULL;
    if (snap && atomic_load(&snap->refs) == 1) {
        /* every worker is gone: the last table goes back to the server, numbered afresh,
         * for rp_backend_states after the run (and a later rp_listen_and_serve) */
        struct route_table *rt = &snap->rt;
        for (uint32_t i = 0; i < route_count(rt); i++) {
            tls_ctx_free(route_target(rt, i)->up_tls);
            route_target(rt, i)->up_tls = NULL;
            route_target(rt, i)->index = i;
        }
        for (uint32_t i = 0; i < rt->n_backends; i++)
            rt->backends[i]->index = i;
        rt->n_targets = route_count(rt);
        s->rt = *rt;
        memset(rt, 0, sizeof(*rt));
    }
    pthread_mutex_unlock(&s->snap_mu);
    snapshot_put(s, snap);
    free(s->be_slots.refs);
    free(s->t_slots.refs);
    memset(&s->be_slots, 0, sizeof(s->be_slots));
    memset(&s->t_slots, 0, sizeof(s->t_slots));
    pthread_mutex_unlock(&s->reload_mu);
}

/* ---- reload ------------------------------------------------------------------------------- */

static struct target *find_target(const struct route_table *rt, const char *label)
{
    for (uint32_t i = 0; i < route_count(rt); i++)
        if (!strcmp(route_target(rt, i)->label, label))
            return route_target(rt, i);
    return NULL;
}

/* The same backend: the same address as written and as resolved, the same scheme. */
static struct backend *find_backend(const struct target *t, const struct backend *be)
{
    for (uint32_t i = 0; t && i < t->n_backends; i++) {
        struct backend *o = t->backends[i];
        if (!strcmp(o->addr, be->addr) && o->salen == be->salen &&
            !memcmp(&o->sa, &be->sa, be->salen) && o->tls == be->tls)
            return o;
    }
    return NULL;
}

/* What a reload did, for its log line and its answer. */
struct reload_diff {
    uint32_t domains_added, domains_removed, backends_added, backends_removed, backends_kept;
    uint32_t listeners_added, listeners_removed;
};

static void appendf(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (*len >= cap)
        return;
    va_start(ap, fmt);
    n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

/* Matches the staged table's targets and backends with the current ones (s->snap_mu held):
 * kept backends replace their staged twins (whose weights go to `weights` for the commit),
 * everything new takes a slot. Fails with nothing changed when the slots would not do. */
static int match_table(struct rp_server *s, const struct snapshot *cur, struct snapshot *next,
                       int *weights, struct reload_diff *d, char *err, size_t cap)
{
    struct route_table *rt = &next->rt;
    uint32_t need_t = 0, need_b = 0, k = 0;

    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i), *old = find_target(&cur->rt, t->label);
        need_t += !old;
        for (uint32_t j = 0; j < t->n_backends; j++)
            need_b += !find_backend(old, t->backends[j]);
    }
    if (need_t > slots_free_count(&s->t_slots) || need_b > slots_free_count(&s->be_slots)) {
        snprintf(err, cap,
                 "the reload adds %u domains/routes and %u backends: more than the %u and %u "
                 "this run has room for (twice the starting count, plus headroom); restart",
                 need_t, need_b, slots_free_count(&s->t_slots), slots_free_count(&s->be_slots));
        return -ENOSPC;
    }
    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i), *old = find_target(&cur->rt, t->label);
        if (old)
            s->t_slots.refs[t->index = old->index]++;
        else
            t->index = slot_take(&s->t_slots), d->domains_added++;
        for (uint32_t j = 0; j < t->n_backends; j++) {
            struct backend *be = t->backends[j], *ob = find_backend(old, be);
            if (!ob) {
                be->index = slot_take(&s->be_slots);
                d->backends_added++;
                continue;
            }
            atomic_fetch_add(&ob->refs, 1);
            weights[ob->index] = atomic_load(&be->weight);
            t->backends[j] = ob;
            for (k = 0; k < rt->n_backends && rt->backends[k] != be; k++)
                ;
            rt->backends[k] = ob;
            route_backend_free(be);
            d->backends_kept++;
        }
    }
    for (uint32_t i = 0; i < route_count(&cur->rt); i++)
        d->domains_removed += !find_target(rt, route_target(&cur->rt, i)->label);
    return 0;
}

/* Listeners by difference: an unchanged one is the same lsock (never closed); a new one is
 * opened now, so a failure to bind changes nothing. */
static int match_listeners(struct rp_server *s, const struct snapshot *cur, struct snapshot *next,
                           const struct rp_server *staged, struct reload_diff *d, char *msg,
                           size_t cap, size_t *len, char *err, size_t errcap)
{
    next->ls = calloc(staged->n_listen ? staged->n_listen : 1, sizeof(*next->ls));
    if (!next->ls)
        return -ENOMEM;
    for (size_t i = 0; i < staged->n_listen; i++) {
        const struct listen_spec *sp = &staged->listen[i];
        struct lsock *l = NULL;
        for (uint32_t j = 0; j < cur->n_ls && !l; j++)
            if (spec_same(cur->ls[j]->spec, sp))
                l = cur->ls[j];
        if (l) {
            atomic_fetch_add(&l->refs, 1);
        } else if (sp->admin && s->nthreads == s->nworkers) {
            appendf(msg, cap, len, "; admin listener %s needs a restart (none at start)", sp->addr);
            continue;
        } else if (!(l = lsock_open(s, sp, SIZE_MAX))) {
            snprintf(err, errcap, "cannot listen on %s (see the log)", sp->addr);
            return -EINVAL;
        } else {
            d->listeners_added++;
        }
        next->ls[next->n_ls++] = l;
    }
    for (uint32_t j = 0; j < cur->n_ls; j++) {
        bool kept = false;
        for (uint32_t i = 0; i < next->n_ls && !kept; i++)
            kept = next->ls[i] == cur->ls[j];
        d->listeners_removed += !kept;
    }
    return 0;
}

/* Publishes next (s->snap_mu held): what kept backends take from the file, retired flags
 * on removed ones, health slots of new ones, the swap. Cannot fail. */
static struct snapshot *commit(struct rp_server *s, struct snapshot *cur, struct snapshot *next,
                               const int *weights, struct reload_diff *d)
{
    struct route_table *rt = &next->rt;
    struct snapshot *old = s->snap;

    for (uint32_t i = 0; i < route_count(rt); i++) {
        struct target *t = route_target(rt, i);
        for (uint32_t j = 0; j < t->n_backends; j++) {
            struct backend *be = t->backends[j];
            struct health_state *hs = &s->health[be->index];
            if (atomic_load(&be->refs) > 1) { /* kept: the file is the truth again */
                atomic_store(&be->weight, weights[be->index]);
                atomic_store(&be->drained, false);
            } else {
                memset(hs, 0, sizeof(*hs));
                hs->be = be;
            }
        }
    }
    for (uint32_t i = 0; i < cur->rt.n_backends; i++) {
        struct backend *be = cur->rt.backends[i];
        bool kept = false;
        for (uint32_t j = 0; j < rt->n_backends && !kept; j++)
            kept = rt->backends[j] == be;
        if (!kept) {
            atomic_store(&be->retired, true);
            d->backends_removed++;
        }
    }
    next->gen = old->gen + 1;
    s->snap = next;
    atomic_fetch_add(&s->reloads, 1);
    atomic_store(&s->gen, next->gen);
    return old;
}

void rp_server_reload_refused(rp_server *s, const char *why)
{
    if (!s)
        return;
    log_error("reload refused, nothing changed: %s", why ? why : "");
    atomic_fetch_add(&s->reload_failures, 1);
    atomic_store(&s->last_reload_failed, true);
}

int rp_server_reload(rp_server *s, rp_server *staged, char *msg, size_t cap)
{
    struct reload_diff d = {0};
    struct snapshot *cur, *next = NULL, *old;
    char err[512] = "";
    char note[512] = "";
    size_t nlen = 0;
    int *weights = NULL;
    int rc;

    if (!msg || !cap) {
        msg = err;
        cap = sizeof(err);
    }
    msg[0] = 0;
    if (!s || !staged || atomic_load(&staged->running))
        return snprintf(msg, cap, "bad arguments"), -EINVAL;
    pthread_mutex_lock(&s->reload_mu); /* the run's end (snapshot_fini) waits for it too */
    if (!atomic_load(&s->running) || !s->snap) {
        pthread_mutex_unlock(&s->reload_mu);
        return snprintf(msg, cap, "the server is not running"), -EAGAIN;
    }
    cur = snapshot_acquire(s);
    rc = -ENOMEM;
    if (!(next = calloc(1, sizeof(*next))) ||
        !(weights = calloc(s->be_slots.cap ? s->be_slots.cap : 1, sizeof(*weights))))
        goto fail;
    atomic_init(&next->refs, 1);
    next->rt = staged->rt; /* moves in: the staged server keeps an empty table */
    memset(&staged->rt, 0, sizeof(staged->rt));
    snapshot_set_cfg(next, staged);
    if (staged->cfg.workers != s->nworkers)
        appendf(note, sizeof(note), &nlen, "; workers %d -> %d needs a restart (kept %d)",
                s->nworkers, staged->cfg.workers, s->nworkers);
    if (!staged->cache != !s->cache)
        appendf(note, sizeof(note), &nlen, "; the cache %s needs a restart",
                s->cache ? "turned off" : "turned on");
    if (!staged->cache || !s->cache) { /* the cache as it runs */
        next->x_cache = cur->x_cache;
        next->cache_lock_ms = cur->cache_lock_ms;
    }
    /* the staged table's indexes mean nothing here: none is used before match_table */
    for (uint32_t i = 0; i < route_count(&next->rt); i++)
        route_target(&next->rt, i)->index = UINT32_MAX;
    for (uint32_t i = 0; i < next->rt.n_backends; i++)
        next->rt.backends[i]->index = UINT32_MAX;
    if (staged->admin_token && !(next->admin_token = strdup(staged->admin_token)))
        goto fail;
    pthread_mutex_lock(&s->snap_mu);
    rc = match_table(s, cur, next, weights, &d, err, sizeof(err));
    pthread_mutex_unlock(&s->snap_mu);
    if (rc)
        goto fail;
    rc = match_listeners(s, cur, next, staged, &d, note, sizeof(note), &nlen, err, sizeof(err));
    if (!rc)
        rc = snapshot_tls(s, next, staged->tls_cert, staged->tls_key, err, sizeof(err));
    /* loading keys filled this thread's ECC cache: the caller's thread may end without
     * telling us (the daemon's reload thread does), so it goes now */
    tls_thread_exit();
    /* the last steps that may fail: the logs staged opened become ours (a path we have open
     * keeps its file), the cache's new settings (its entries stay) */
    if (!rc && (rc = alog_adopt(s, staged)))
        snprintf(err, sizeof(err), "out of memory taking the access logs over");
    if (!rc && staged->cache && s->cache)
        rc = cache_reconfigure(s->cache, cache_config_of(staged->cache));
    if (rc)
        goto fail;
    pthread_mutex_lock(&s->snap_mu);
    old = commit(s, cur, next, weights, &d);
    pthread_mutex_unlock(&s->snap_mu);
    server_apply_log_level(next->cfg.log_level);
    atomic_store(&s->last_reload_failed, false);
    atomic_store(&s->last_reload_ok_s, (long long)time(NULL));
    snapshot_put(s, old); /* the server's reference: workers hold theirs until they move */
    snapshot_put(s, cur);
    free(weights);
    snprintf(msg, cap,
             "generation %llu: domains and routes +%u -%u, backends +%u -%u (%u kept), "
             "listeners +%u -%u%s",
             (unsigned long long)next->gen, d.domains_added, d.domains_removed, d.backends_added,
             d.backends_removed, d.backends_kept, d.listeners_added, d.listeners_removed, note);
    log_info("reload: %s", msg);
    pthread_mutex_unlock(&s->reload_mu);
    return 0;
fail:
    if (!err[0])
        snprintf(err, sizeof(err), "%s", strerror(-rc));
    snprintf(msg, cap, "%s", err);
    rp_server_reload_refused(s, err);
    if (next) {
        pthread_mutex_lock(&s->snap_mu);
        snapshot_free(s, next);
        pthread_mutex_unlock(&s->snap_mu);
    }
    snapshot_put(s, cur);
    free(weights);
    pthread_mutex_unlock(&s->reload_mu);
    return rc;
}

/* accesslog.h: the access log (accesslog.c): the server's log files and which log each target
 * writes to, every worker's buffers for them, and the per-request record the exchange fills
 * in (status, body bytes, attempts, cache status) and hands over when it ends.
 *
 * Every server has its alog_server (so a reload can bring logs to one started without), and
 * every request passes alog_begin, which looks at its target's settings and the snapshot's:
 * with no log and no request_id there, it returns, and each hook below costs one branch on
 * the exchange's record. A request of a target that logs gets a record (one allocation) when
 * it is routed; the line is formatted only when the exchange ends.
 */
#ifndef RP_ACCESSLOG_H
#define RP_ACCESSLOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "exchange-t.h"
#include "h1.h"
#include "logfmt.h"
#include "ringproxy.h"

struct conn;
struct worker;
struct backend;
struct rp_server;

/* ---- the server's files and logs (built before the workers run) ------------------------- */

/* One log file, shared by every log that names its path: opened O_APPEND, so lines from
 * several workers (or processes) never overwrite each other. */
struct alog_file {
    char *path;
    atomic_int fd; /* swapped by a reopen (rp_server_reopen_logs) */
    uint32_t refs; /* the logs using it; changed under alog_server.mu */
    uint32_t id;   /* index of the workers' buffers for it */
};

/* A configured log: a file and a compiled format. */
struct alog {
    struct alog_file *file;
    struct logfmt *fmt;
};

struct alog_retired; /* an fd replaced by a reopen, closed once no worker can write to it */

struct alog_server {
    struct alog_file **files; /* by id */
    uint32_t n_files;
    struct alog *global; /* as configured (the snapshot's is in force): NULL, no server-wide log */
    bool request_id;     /* as configured, likewise */
    struct alog **logs;  /* every log made, owned here until the server goes: a snapshot's
                            targets (and requests in flight) point at them; formats are small */
    uint32_t n_logs;
    uint64_t rid_seed[2]; /* per process, from getrandom: $request_id */
    atomic_ulong gen;     /* reopens asked for (rp_server_reopen_logs: signal-safe) */
    atomic_ulong opened;  /* the last generation whose files were opened again */
    pthread_mutex_t mu;   /* files, reopening, retired fds, n_live */
    uint32_t n_live;      /* workers between init and fini */
    struct alog_retired *retired;
    uint32_t n_retired;
};

/* rp_server_new: the server-wide log and request_id (cfg borrowed for the call). 0, or
 * -EINVAL (the reason logged: a bad format, a path that cannot be opened), -ENOMEM. The
 * server always gets its alog_server, so a reload can bring logs to one started without. */
int alog_setup(struct rp_server *s, const rp_access_log_config *cfg, bool request_id);
/* rp_add_proxy_domain: target t's settings (t->alog, alog_set, request_id) from its
 * domain's config. As above. */
int alog_add_domain(struct rp_server *s, struct target *t, const rp_domain_config *d);
/* A reload (snapshot.c): the logs and files staged's config made become s's (a path s has
 * open already keeps its file, fd and workers' buffers; staged's copy closes). 0 or
 * -ENOMEM (nothing moved). Not while staged runs; s's workers may run. */
int alog_adopt(struct rp_server *s, struct rp_server *staged);
/* rp_server_free: closes the files, frees everything. */
void alog_free(struct rp_server *s);

/* The file for `path`, opened (created 0644) or shared with the logs that already name it,
 * referenced for the caller; NULL with the reason in err ("access_log path \"/x\": cannot
 * open: No such file or directory"). Not while workers run: their buffers are per file. */
struct alog_file *alog_open(struct rp_server *s, const char *path, char *err, size_t errlen);
/* Drops a reference; the last one closes the file (when the server is not running). */
void alog_file_put(struct rp_server *s, struct alog_file *f);
/* Opens every file again by its path (after logrotate renamed it) and swaps the new fds in;
 * each old fd is closed once every worker has moved past the writes that may use it. Any
 * thread but a signal handler; rp_server_reopen_logs asks the workers to do it instead. */
void alog_reopen_all(struct rp_server *s);

/* ---- per request ------------------------------------------------------------------------- */

#define ALOG_TRIES 4 /* attempts listed in $upstream_* (more are left out) */

struct alog_try {
    const struct backend *be;
    uint64_t start_ns, connect_ns, end_ns; /* 0: not (yet) */
    uint16_t status;
};

/* What an exchange records for its line (ex->log). */
struct alog_rec {
    const struct alog *log; /* NULL: none (the record exists for request_id) */
    uint64_t start_ns;      /* the first byte of the request head, monotonic */
    uint64_t body;          /* response body bytes queued to the client */
    uint16_t status;        /* the answer's; 0 at the end: none went out (logged as 499) */
    uint8_t n_tries;
    bool send_id;      /* request_id: sent upstream as X-Request-Id */
    const char *cache; /* $upstream_cache_status, or NULL */
    struct alog_try tries[ALOG_TRIES];
    char id[65];             /* $request_id */
    struct h1_request req;   /* a copy of the request as far as the format reads it */
    struct h1_header hdrs[]; /* req.headers: the fields it reads */
};

/* The worker's view: one buffer pair per file, the request id counter, a cached clock. */
struct alog_wbuf;
struct alog_worker {
    struct alog_wbuf **bufs; /* by file id, allocated on first use */
    uint32_t n_bufs;
    const struct h1_request *req; /* the request ex_start is handling, for answers made
                                     before it has a record (no route, 405, 413, local) */
    uint64_t seen;                /* the file generation this worker writes to */
    uint64_t rid_n;
    int64_t sec; /* the second time_local and time_iso8601 hold */
    char time_local[40], time_iso[40];
    uint64_t err_ms; /* last write error logged */
};

extern const struct worker_module alog_module;

/* ex_start, after routing: gives the exchange a record when its target logs or sends a
 * request id. */
void alog_begin(struct conn *c, const struct h1_request *r);
/* ex_end, with a record: writes the line (status 499 if no answer went out), frees it. */
void alog_end(struct conn *c);
/* Every answer the proxy composes (respond_answer): recorded in the
 * exchange's record, or, without an exchange, written at once (the server's log). */
void alog_answer(struct conn *c, int status, uint64_t body);
/* ex_start: the request being handled, for alog_answer; returns the outer one to restore. */
const struct h1_request *alog_set_request(struct worker *w, const struct h1_request *r);

void alog_try_start(struct exchange *ex, const struct backend *be, uint64_t ns, bool reused);
void alog_try_event(struct exchange *ex, const struct backend *be, int status, bool end);

/* The hooks on the request path: one branch when the exchange has no record. */
static inline void alog_status(struct exchange *ex, int status)
{
    if (ex->log)
        ex->log->status = (uint16_t)status;
}

static inline void alog_body(struct exchange *ex, uint64_t n)
{
    if (ex->log)
        ex->log->body += n;
}

static inline void alog_cache(struct exchange *ex, const char *status)
{
    if (ex->log)
        ex->log->cache = status;
}

/* The X-Request-Id to send upstream, or NULL (request_id off: the client's goes as it came). */
static inline const char *alog_request_id(const struct exchange *ex)
{
    return ex->log && ex->log->send_id ? ex->log->id : NULL;
}

/* A connect completed (`status` 0), a response head arrived (its status), or the attempt
 * failed (502, 504 for a timeout; `end`). */
static inline void alog_try(struct exchange *ex, const struct backend *be, int status, bool end)
{
    if (ex->log)
        alog_try_event(ex, be, status, end);
}

#endif /* RP_ACCESSLOG_H */

/* main.c: the ringproxy daemon. A thin user of the library: it reads the configuration file
 * (config.c), makes the library calls, installs SIGTERM/SIGINT to drain and SIGHUP to
 * reload, and runs until the drain ends. `-t` only checks the file, as `nginx -t` does: it
 * makes every call but the last. With a pid_file it writes its pid there once it serves
 * (pidfile.c), `-s` signals the pid there, and `--upgrade` takes the running daemon's
 * listeners over (upgrade.c). Nothing here prints the admin token.
 *
 * Reload: SIGHUP posts a semaphore (async-signal-safe); a thread of ours waits on it, takes
 * every post that piled up meanwhile (a storm of signals is one reload, of the file as it is
 * then), reads the file and builds a staged server exactly as at start, and hands it to
 * rp_server_reload. POST /reload on the admin API runs the same function (on the admin
 * listener's thread), under the same lock. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "pidfile.h"
#include "ringproxy.h"
#include "upgrade.h"

static rp_server *running_server; /* for the signal handler only */
static sem_t reload_sem;

static void on_signal(int sig)
{
    if (sig == SIGUSR1) /* logrotate: the access logs are opened again by their paths */
        rp_server_reopen_logs(running_server);
    else
        rp_server_shutdown(running_server);
}

static void on_hup(int sig)
{
    (void)sig;
    sem_post(&reload_sem);
}

/* What a reload needs to read the file again as at start. */
struct reloader {
    const char *path;
    int workers; /* -w, which overrides the file's as at start (0: none) */
    pthread_mutex_t mu;
    bool quit;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ringproxy [-t] [-w N] [--upgrade] -c FILE\n"
               "       ringproxy -s reload|stop|reopen -c FILE\n"
               "  -c, --config FILE  configuration file (libconfig syntax, see README)\n"
               "  -t, --test         check the configuration file and exit\n"
               "  -w, --workers N    worker threads (default: the file's, else online CPUs)\n"
               "  -s, --signal SIG   send the daemon named by the file's pid_file SIGHUP\n"
               "                     (reload), SIGTERM (stop: it drains) or SIGUSR1 (reopen\n"
               "                     the access log), then exit\n"
               "      --upgrade      replace the running daemon of the file's pid_file (a new\n"
               "                     binary, say): take its listening sockets over, serve, then\n"
               "                     have it drain; no connection is refused. If this process\n"
               "                     fails first, the old one goes on untouched\n"
               "  -h, --help         this text\n"
               "      --version      print the version and exit\n"
               "SIGTERM or SIGINT drains: in-flight requests finish, then it exits 0.\n"
               "SIGHUP reads the file again (a file with an error changes nothing).\n"
               "SIGUSR1 opens the access logs again (after logrotate moved them).\n");
}

struct args {
    const char *path;
    bool test, upgrade;
    int workers;
    int signal; /* -s: the signal to send, 0 for none */
};

/* -s NAME: nginx's names. */
static int signal_named(const char *name)
{
    return !strcmp(name, "reload")   ? SIGHUP
           : !strcmp(name, "stop")   ? SIGTERM
           : !strcmp(name, "reopen") ? SIGUSR1
                                     : 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},  {"test", no_argument, 0, 't'},
        {"workers", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},       {"signal", required_argument, 0, 's'},
        {"upgrade", no_argument, 0, 'U'},       {0, 0, 0, 0},
    };
    int opt;
    char *end;

    while ((opt = getopt_long(argc, argv, "c:tw:hs:", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a->path = optarg;
            break;
        case 't':
            a->test = true;
            break;
        case 'U':
            a->upgrade = true;
            break;
        case 's':
            a->signal = signal_named(optarg);
            if (!a->signal) {
                fprintf(stderr, "ringproxy: -s wants reload, stop or reopen, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'w': {
            long n = strtol(optarg, &end, 10); /* checked before it is narrowed */
            a->workers = n >= 1 && n <= 1024 ? (int)n : 0;
            if (*end || end == optarg || !a->workers) {
                fprintf(stderr, "ringproxy: -w wants a number from 1 to 1024, got '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            printf("ringproxy %s\n", rp_version());
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!a->path || optind != argc) {
        fprintf(stderr, "ringproxy: %s\n", a->path ? "unexpected argument" : "-c FILE is required");
        usage(stderr);
        return 2;
    }
    if (a->test + a->upgrade + !!a->signal > 1) {
        fprintf(stderr, "ringproxy: -t, -s and --upgrade do not go together\n");
        return 2;
    }
    return 0;
}

/* The server a loaded file describes, as at start and for a reload alike: -w's worker count
 * (`workers`, 0: the file's), its domains, routes and cache. Building it resolves backend
 * names and checks what the file cannot say (the library logs why); NULL with the reason in
 * msg[0..cap) when it does not hold. */
static rp_server *build_server(struct rp_file_config *fc, const char *path, int workers, char *msg,
                               size_t cap)
{
    rp_server *s;
    int rc;

    if (workers)
        fc->server.workers = workers;
    if (!(s = rp_server_new(&fc->server)))
        goto err;
    for (size_t i = 0; i < fc->n_domains; i++)
        if (rp_add_proxy_domain(s, &fc->domains[i]))
            goto err;
    if (fc->n_routes && rp_set_http_routes(s, fc->routes, fc->n_routes))
        goto err;
    /* the loader checked each value; the library checks them together */
    if (fc->has_cache && (rc = rp_set_proxy_cache(s, &fc->cache))) {
        snprintf(msg, cap, "%s: cache configuration rejected: %s%s", path, strerror(-rc),
                 rc == -EINVAL ? " (see the log)" : "");
        rp_server_free(s);
        return NULL;
    }
    return s;
err:
    snprintf(msg, cap, "%s: configuration rejected (see the log)", path);
    rp_server_free(s);
    return NULL;
}

/* Reads the file again and swaps it in (rp_reload_fn): 0, or the reason in msg. */
static int reload_file(rp_server *s, void *user, char *msg, size_t cap)
{
    struct reloader *rl = user;
    struct rp_file_config fc = {0};
    rp_server *staged = NULL;
    int rc;

    pthread_mutex_lock(&rl->mu);
    rc = rp_file_config_load(rl->path, &fc, msg, cap);
    if (!rc && !(staged = build_server(&fc, rl->path, rl->workers, msg, cap)))
        rc = -EINVAL;
    if (!rc)
        rc = rp_server_reload(s, staged, msg, cap);
    else
        rp_server_reload_refused(s, msg);
    rp_server_free(staged);
    rp_file_config_free(&fc);
    pthread_mutex_unlock(&rl->mu);
    return rc;
}

static void *reload_thread(void *p)
{
    struct reloader *rl = p;
    const struct timespec settle = {0, 50 * 1000 * 1000};
    char msg[1024];

    for (;;) {
        while (sem_wait(&reload_sem) && errno == EINTR)
            ;
        /* a storm of signals (a config manager touching many files) is one reload: let it
         * settle for 50 ms, then take every signal since and read the file as it is now */
        nanosleep(&settle, NULL);
        while (!sem_trywait(&reload_sem))
            ;
        if (__atomic_load_n(&rl->quit, __ATOMIC_ACQUIRE))
            return NULL;
        reload_file(running_server, rl, msg, sizeof(msg));
    }
}

/* What the daemon does around the server when the file has a pid_file. */
struct daemon {
    const char *pid_file;
    char sock_path[108]; /* PID_FILE.sock: where --upgrade finds us */
    bool upgrading;      /* --upgrade: `up` is connected to the old process */
    struct upg_client up;
    struct upg_server ctl;
    bool failed; /* the steps after start-up failed: exit 1 */
};

/* The server serves (every worker accepts): have the old process drain (--upgrade), then
 * listen for the next upgrade and write the pid file. Runs on the main thread. */
static void on_ready(rp_server *s, void *user)
{
    struct daemon *d = user;
    char err[512];
    int rc;

    if (d->upgrading) {
        rc = upg_client_drain(&d->up, err, sizeof(err));
        upg_client_close(&d->up);
        if (rc) { /* the old process serves on: leave it the sockets, and leave */
            fprintf(stderr, "ringproxy: upgrade: %s; shutting down\n", err);
            d->failed = true;
            rp_server_shutdown(s);
            return;
        }
    }
    upg_server_start(&d->ctl, d->sock_path, s); /* a failure is logged; serving goes on */
    rc = pidfile_write(d->pid_file);
    if (rc) {
        fprintf(stderr, "ringproxy: cannot write the pid file %s: %s\n", d->pid_file,
                strerror(-rc));
        if (!d->upgrading) { /* a start that cannot say who it is stops (nginx does too) */
            d->failed = true;
            rp_server_shutdown(s);
        }
    }
}

/* Before the server starts: refuse to run twice; --upgrade takes the old one's sockets.
 * Returns 0 or the exit status. */
static int daemon_prepare(struct daemon *d, const struct rp_file_config *fc, const char *path,
                          bool upgrade, rp_server *s)
{
    char err[512];
    pid_t pid;

    d->pid_file = fc->pid_file;
    d->upgrading = upgrade;
    if (upg_sock_path(fc->pid_file, d->sock_path, sizeof(d->sock_path))) {
        fprintf(stderr, "%s: pid_file %s: too long for its socket\n", path, fc->pid_file);
        return 1;
    }
    if (!upgrade && !pidfile_read(fc->pid_file, &pid) && pidfile_is_ringproxy(pid)) {
        fprintf(stderr, "ringproxy: already running (pid %d, %s); --upgrade replaces it\n",
                (int)pid, fc->pid_file);
        return 1;
    }
    if (upgrade && upg_client_take(&d->up, d->sock_path, s, err, sizeof(err))) {
        fprintf(stderr, "ringproxy: upgrade: %s; nothing changed\n", err);
        upg_client_close(&d->up);
        return 1;
    }
    rp_server_on_ready(s, on_ready, d);
    return 0;
}

static void daemon_finish(struct daemon *d)
{
    if (!d->pid_file)
        return;
    upg_server_stop(&d->ctl);
    if (d->upgrading)
        upg_client_close(&d->up); /* start-up failed before the drain: the old one goes on */
    if (!upg_server_handed_over(&d->ctl)) /* else the pid file is the new process's */
        pidfile_remove(d->pid_file);
}

/* ringproxy -s NAME -c FILE */
static int send_signal(const struct rp_file_config *fc, const char *path, int sig)
{
    char err[512];

    if (!fc->pid_file) {
        fprintf(stderr, "%s: -s needs pid_file\n", path);
        return 1;
    }
    if (pidfile_signal(fc->pid_file, sig, err, sizeof(err))) {
        fprintf(stderr, "ringproxy: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct rp_file_config fc = {0};
    struct args a = {0};
    struct daemon d = {0};
    int ret;
    char err[512];
    struct sigaction sa;
    struct reloader rl = {0};
    pthread_t rt;
    rp_server *s;

    ret = parse_args(argc, argv, &a);
    if (ret)
        return ret;
    if (rp_file_config_load(a.path, &fc, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        rp_file_config_free(&fc);
        return 1;
    }
    if (a.signal) {
        ret = send_signal(&fc, a.path, a.signal);
        rp_file_config_free(&fc);
        return ret;
    }
    if (a.upgrade && !fc.pid_file) {
        fprintf(stderr, "%s: --upgrade needs pid_file\n", a.path);
        rp_file_config_free(&fc);
        return 1;
    }
    s = build_server(&fc, a.path, a.workers, err, sizeof(err));
    if (!s) {
        fprintf(stderr, "%s\n", err);
        rp_file_config_free(&fc);
        return 1;
    }
    if (a.test) {
        printf("%s: configuration is valid\n", a.path);
        rp_server_free(s);
        rp_file_config_free(&fc);
        return 0;
    }
    if (fc.pid_file && (ret = daemon_prepare(&d, &fc, a.path, a.upgrade, s))) {
        rp_server_free(s);
        rp_file_config_free(&fc);
        return ret;
    }
    /* Response buffers of a few hundred KiB come and go per request: keep glibc from
     * returning them to the kernel (and faulting them back in) on every free. Workers hand
     * memory back themselves once quiet (malloc_trim). The daemon owns the process, so it
     * sets this; the library leaves the host's allocator alone. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    running_server = s;
    rl.path = a.path;
    rl.workers = a.workers;
    pthread_mutex_init(&rl.mu, NULL);
    sem_init(&reload_sem, 0, 0);
    rp_server_set_reload_handler(s, reload_file, &rl);
    if (pthread_create(&rt, NULL, reload_thread, &rl)) {
        fprintf(stderr, "ringproxy: cannot start the reload thread\n");
        daemon_finish(&d);
        rp_server_free(s);
        rp_file_config_free(&fc);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL); /* on_signal: reopens the access logs */
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    ret = rp_listen_and_serve(s);
    __atomic_store_n(&rl.quit, true, __ATOMIC_RELEASE);
    sem_post(&reload_sem);
    pthread_join(rt, NULL);
    daemon_finish(&d);
    rp_server_free(s);
    rp_file_config_free(&fc);
    return ret || d.failed ? 1 : 0;
}

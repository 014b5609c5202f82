/* main.c: the ringproxy daemon. A thin user of the library: it reads the configuration file
 * (config.c), makes the library calls, installs SIGTERM/SIGINT to drain, and runs until the
 * drain ends. `-t` only checks the file, as `nginx -t` does: it makes every call but the
 * last. Nothing here prints the admin token. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ringproxy.h"

static rp_server *running_server; /* for the signal handler only */

static void on_signal(int sig)
{
    if (sig == SIGUSR1) /* logrotate: the access logs are opened again by their paths */
        rp_server_reopen_logs(running_server);
    else
        rp_server_shutdown(running_server);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ringproxy [-t] [-w N] -c FILE\n"
               "  -c, --config FILE  configuration file (libconfig syntax, see README)\n"
               "  -t, --test         check the configuration file and exit\n"
               "  -w, --workers N    worker threads (default: the file's, else online CPUs)\n"
               "  -h, --help         this text\n"
               "      --version      print the version and exit\n"
               "SIGTERM or SIGINT drains: in-flight requests finish, then it exits 0.\n"
               "SIGUSR1 opens the access logs again (after logrotate moved them).\n"
               "SIGHUP is ignored (reloading is not built yet).\n");
}

static int parse_args(int argc, char **argv, const char **path, bool *test, int *workers)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},  {"test", no_argument, 0, 't'},
        {"workers", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},       {0, 0, 0, 0},
    };
    int opt;
    char *end;

    while ((opt = getopt_long(argc, argv, "c:tw:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            *path = optarg;
            break;
        case 't':
            *test = true;
            break;
        case 'w': {
            long n = strtol(optarg, &end, 10); /* checked before it is narrowed */
            *workers = n >= 1 && n <= 1024 ? (int)n : 0;
            if (*end || end == optarg || !*workers) {
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
    if (!*path || optind != argc) {
        fprintf(stderr, "ringproxy: %s\n", *path ? "unexpected argument" : "-c FILE is required");
        usage(stderr);
        return 2;
    }
    return 0;
}

static rp_server *build_server(struct rp_file_config *fc)
{
    rp_server *s = rp_server_new(&fc->server);

    if (!s)
        return NULL;
    for (size_t i = 0; i < fc->n_domains; i++)
        if (rp_add_proxy_domain(s, &fc->domains[i]))
            goto err;
    if (fc->n_routes && rp_set_http_routes(s, fc->routes, fc->n_routes))
        goto err;
    return s;
err:
    rp_server_free(s);
    return NULL;
}

int main(int argc, char **argv)
{
    struct rp_file_config fc = {0};
    const char *path = NULL;
    bool test = false;
    int workers = 0, ret;
    char err[512];
    struct sigaction sa;
    rp_server *s;

    ret = parse_args(argc, argv, &path, &test, &workers);
    if (ret)
        return ret;
    if (rp_file_config_load(path, &fc, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        rp_file_config_free(&fc);
        return 1;
    }
    if (workers)
        fc.server.workers = workers;
    /* building the server resolves backend names and checks what the file cannot say */
    s = build_server(&fc);
    if (!s) {
        fprintf(stderr, "%s: configuration rejected (see above)\n", path);
        rp_file_config_free(&fc);
        return 1;
    }
    /* the loader checked each value; the library checks them together (reason logged) */
    if (fc.has_cache && (ret = rp_set_proxy_cache(s, &fc.cache))) {
        fprintf(stderr, "%s: cache configuration rejected: %s%s\n", path, strerror(-ret),
                ret == -EINVAL ? " (see above)" : "");
        rp_server_free(s);
        rp_file_config_free(&fc);
        return 1;
    }
    if (test) {
        printf("%s: configuration is valid\n", path);
        rp_server_free(s);
        rp_file_config_free(&fc);
        return 0;
    }
    /* Response buffers of a few hundred KiB come and go per request: keep glibc from
     * returning them to the kernel (and faulting them back in) on every free. Workers hand
     * memory back themselves once quiet (malloc_trim). The daemon owns the process, so it
     * sets this; the library leaves the host's allocator alone. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    running_server = s;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* reloading on SIGHUP is not built yet: ignore it rather than die of it */
    signal(SIGHUP, SIG_IGN);
    ret = rp_listen_and_serve(s);
    rp_server_free(s);
    rp_file_config_free(&fc);
    return ret ? 1 : 0;
}

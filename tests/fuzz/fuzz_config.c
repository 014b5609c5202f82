/* fuzz_config.c: libFuzzer target for engine/config.c. Loads the input as a configuration
 * file (through the string entry point, so no temp files), walks whatever it produced, frees
 * it; then feeds the same bytes to rp_parse_duration_ms and rp_parse_size. Must not crash or
 * leak. Build: clang -fsanitize=fuzzer,address,undefined (see the Makefile's fuzz target). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
const char *__lsan_default_suppressions(void);

/* libconfig 1.5's parser leaks a string token's buffer when a syntax error follows it (for
 * example `"key" = 1;` or `a ""`): its bug, not ours. Suppressed by module: our own
 * allocations (config.c's arena) never have libconfig on their stack. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

/* That leak makes libFuzzer run a whole LeakSanitizer pass after most mutations (2k exec/s
 * instead of 60k) until, 1000 such inputs later, it turns per-input leak checks off by itself.
 * So they start off: the check at exit still runs, and a -detect_leaks=1 given after wins. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char flag[] = "-detect_leaks=0";
    static char *args[256];

    if (*argc < 1 || *argc > 254)
        return 0;
    args[0] = (*argv)[0];
    args[1] = flag;
    memcpy(args + 2, *argv + 1, (size_t)(*argc - 1) * sizeof(*args));
    *argv = args;
    (*argc)++;
    return 0;
}

/* Touches every string and array a successful load handed out, so ASan sees any pointer
 * into freed or foreign storage. Returns a value so the reads are not optimised away. */
static size_t walk(const struct rp_file_config *c)
{
    size_t n = 0;

    for (size_t i = 0; i < c->server.n_listen; i++)
        n += strlen(c->server.listen[i]);
    for (size_t i = 0; i < c->n_domains; i++) {
        const rp_domain_config *d = &c->domains[i];
        n += strlen(d->domain) + (d->host_header ? strlen(d->host_header) : 0);
        n += d->health_check.path ? strlen(d->health_check.path) : 0;
        for (size_t j = 0; j < d->n_backends; j++)
            n += strlen(d->backends[j].addr) + (size_t)d->backends[j].weight;
        if (d->n_backends == 0)
            abort();
    }
    for (size_t i = 0; i < c->n_routes; i++) {
        const rp_http_route *r = &c->routes[i];
        n += strlen(r->path_prefix) + strlen(r->backend);
        n += r->host_header ? strlen(r->host_header) : 0;
    }
    for (size_t i = 0; c->has_cache && i < c->cache.n_rules; i++) {
        const rp_cache_rule *r = &c->cache.rules[i];
        n += strlen(r->path_prefix);
        for (size_t j = 0; j < r->n_methods; j++)
            n += strlen(r->methods[j]);
        for (size_t j = 0; j < r->n_status_only; j++)
            n += (size_t)r->status_only[j];
    }
    n += c->server.admin_listen ? strlen(c->server.admin_listen) : 0;
    n += c->server.admin_token ? strlen(c->server.admin_token) : 0;
    return n;
}

static void fuzz_load(const char *text)
{
    struct rp_file_config c;
    char err[256];
    int rc = rp_file_config_load_string(text, "fuzz.conf", &c, err, sizeof(err));

    if (rc == 0 && walk(&c) == SIZE_MAX)
        abort();
    if (rc != 0 && (rc > 0 || strncmp(err, "fuzz.conf", 9) != 0))
        abort(); /* every failure explains itself, naming the file */
    rp_file_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;
    uint32_t ms;
    uint64_t bytes;

    /* @include would make libconfig open whatever path the input names (/dev/stdin...). */
    if (memmem(data, size, "@include", 8))
        return 0;
    text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    fuzz_load(text);
    if (rp_parse_duration_ms(text, &ms) == 0 && ms == 0 && strspn(text, "0msh") != strlen(text))
        abort(); /* a zero duration is written with zeros only */
    if (rp_parse_size(text, &bytes) == 0 && bytes == 0 && text[0] != '0')
        abort();
    free(text);
    return 0;
}

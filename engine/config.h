/* config.h: the daemon's configuration file (libconfig syntax, DESIGN.md "Names users see")
 * turned into the library's config structs.
 *
 * Used by the daemon (engine/main.c) only; the library itself never reads files. Every error
 * is reported as "FILE:LINE: what is wrong" so an operator can fix it without guessing.
 */
#ifndef RP_CONFIG_H
#define RP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ringproxy.h"

/* The longest pid_file: PID_FILE.sock, and the name it is bound under before it is renamed
 * there (PID_FILE.sock.PID), must fit a Unix socket's 108-byte path. */
#define RP_PID_FILE_MAX 90

/* A loaded file. Owns every string and array the structs point to. */
struct rp_file_config {
    rp_server_config server;
    rp_domain_config *domains;
    size_t n_domains;
    rp_http_route *routes;
    size_t n_routes;
    rp_cache_config cache; /* cache = { ... }: its rules, methods and statuses owned here */
    bool has_cache;        /* the file has a cache group: call rp_set_proxy_cache(&cache) */
    /* pid_file = "/run/ringproxy.pid": where the daemon writes its pid, and beside it
     * (PID_FILE.sock) the socket `--upgrade` takes the listeners over from. NULL: none. Its
     * directory existed when the file was loaded; at most RP_PID_FILE_MAX bytes. */
    const char *pid_file;
    void *priv; /* owned storage */
};

/* Reads and validates `path`. Returns 0 and fills *out, or a negative errno with a message
 * "path:line: what is wrong" (or "path: what is wrong" when no line applies) in err[0..errlen).
 * Unknown keys are errors. admin.listen and admin.token go into out->server; no message ever
 * quotes admin.token. Free *out with rp_file_config_free() (also after a failure). */
int rp_file_config_load(const char *path, struct rp_file_config *out, char *err, size_t errlen);

/* The same for config text in memory (NUL-terminated); `name` stands for the file name in
 * messages. For tests and the fuzzer. Note that libconfig's @include still reads files. */
int rp_file_config_load_string(const char *text, const char *name, struct rp_file_config *out,
                               char *err, size_t errlen);

void rp_file_config_free(struct rp_file_config *c);

/* "250ms", "10s", "5m", "1h", "1m30s" -> milliseconds. Returns 0 or -EINVAL (also for values
 * over UINT32_MAX ms or an empty string). */
int rp_parse_duration_ms(const char *s, uint32_t *ms);

/* 4096, "4096", "64KiB", "256MiB", "1GiB" (x1024), "10KB"/"10MB"/"1GB" (x1000), "16k"/"16m"/
 * "1g" (x1024, as nginx). Returns 0 or -EINVAL (overflow, unknown unit, negative). */
int rp_parse_size(const char *s, uint64_t *bytes);

#endif /* RP_CONFIG_H */

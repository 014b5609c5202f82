/* fuzz_tls_server.c: libFuzzer target for the server side of tls/.
 *
 * Bytes go to a fresh server connection, fed in pieces whose sizes come from the input; it
 * must never crash, never return plaintext before its handshake finished, and once failed stay
 * failed. An input starting with 0xff is XORed over a real ClientHello (TLS 1.3 or 1.2) so the
 * mutations reach deep into the handshake. One context, made at start with a throw-away cert.
 */
#include "tls.h"

#include "fuzz.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tls_ctx *ctx;
static size_t hello_len[2];
static char hello[2][4096];

static int sink(void *arg, const char *p, size_t n)
{
    (void)p;
    *(size_t *)arg += n;
    return 0;
}

static int keep_hello(void *arg, const char *p, size_t n)
{
    size_t *len = arg, i = (size_t)(len - hello_len);

    if (*len + n <= sizeof(hello[0])) {
        memcpy(hello[i] + *len, p, n);
        *len += n;
    }
    return 0;
}

static void make_hellos(void)
{
    for (int i = 0; i < 2; i++) {
        struct tls_ctx *c = tls_client_new(NULL, false, NULL, 0);
        struct tls_conn *t;

        if (!c || (i == 1 && tls_ctx_set_max_version(c, "TLSv1.2") != 0) ||
            !(t = tls_conn_new(c, "a.fuzz.local", keep_hello, &hello_len[i])) ||
            tls_connect(t) != 0)
            abort();
        tls_conn_free(t);
        tls_ctx_free(c);
    }
}

static void make_ctx(void)
{
    char dir[] = "/tmp/fuzz_tls_XXXXXX", cmd[512], cert[64], key[64], err[256];

    if (!mkdtemp(dir) || tls_global_init() != 0)
        abort();
    snprintf(cert, sizeof(cert), "%s/c.pem", dir);
    snprintf(key, sizeof(key), "%s/k.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s "
             "-out %s -days 2 -subj /CN=fuzz.local 2>/dev/null",
             key, cert);
    if (system(cmd) != 0 || !(ctx = tls_server_new(cert, key, err, sizeof(err))) ||
        tls_server_add_sni(ctx, "*.fuzz.local", cert, key, err, sizeof(err)) != 0)
        abort();
    make_hellos();
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* 0xff, which hello, then bytes XORed over it; the input's length sets the hello's length */
static size_t over_hello(const uint8_t *data, size_t size, uint8_t *buf)
{
    const char *h = hello[data[1] & 1];
    size_t hl = hello_len[data[1] & 1], n = size - 2 > hl ? size - 2 : hl;

    n = n > 8192 ? 8192 : n;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)((i < hl ? h[i] : 0) ^ (i + 2 < size ? data[i + 2] : 0));
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[8192];

    size_t sent = 0, off = 0;
    char out[1024];
    struct tls_conn *t;

    if (!ctx)
        make_ctx();
    /* first byte picks the piece size: 1..254 bytes, or everything at once when 0 */
    size_t piece = size ? data[0] : 0;
    if (size >= 2 && data[0] == 0xff) {
        piece = data[1] >> 1;
        size = over_hello(data, size, buf);
        data = buf;
    }
    if (!(t = tls_conn_new(ctx, NULL, sink, &sent)))
        return 0;
    while (off < size) {
        size_t n = piece && piece < size - off ? piece : size - off;
        ssize_t r = tls_recv(t, (const char *)data + off, n, out, sizeof(out));

        off += n;
        while (r > 0) {
            if (!tls_handshake_done(t) || (size_t)r > sizeof(out))
                abort();
            r = tls_recv(t, NULL, 0, out, sizeof(out));
        }
        if (r < 0) {
            if (tls_recv(t, NULL, 0, out, sizeof(out)) != r || !tls_error(t))
                abort(); /* errors are sticky and explained */
            break;
        }
    }
    if (tls_send(t, "x", 1) == 1 && !tls_handshake_done(t))
        abort();
    tls_conn_free(t);
    return 0;
}

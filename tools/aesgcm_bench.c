/* aesgcm_bench: one-core throughput of wolfCrypt's AEADs as TLS uses them (16 KiB records,
 * 13 bytes of additional data): AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 encryption.
 * Built twice by tools/wolfssl-bench.sh, against Debian's libwolfssl and against the fast build
 * (tools/wolfssl-fast.sh), to compare them. Prints one line per cipher, in MB/s (10^6 bytes).
 *
 *   aesgcm_bench [seconds-per-cipher] [record-size]
 */
#include <wolfssl/options.h>

#include <wolfssl/version.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *name, size_t record, unsigned long n, double wall, double cpu)
{
    double bytes = (double)record * (double)n;
    printf("%-20s %9.1f MB/s  (%lu records of %zu bytes, %.2f s, %.2f s CPU)\n", name,
           bytes / cpu / 1e6, n, record, wall, cpu);
}

static int bench_gcm(const char *name, int keylen, uint8_t *in, uint8_t *out, size_t record,
                     double secs)
{
    Aes aes;
    uint8_t key[32], iv[12], tag[16], aad[13];
    memset(key, 0x42, sizeof key);
    memset(iv, 0x24, sizeof iv);
    memset(aad, 0x17, sizeof aad);
    if (wc_AesInit(&aes, NULL, INVALID_DEVID) != 0 ||
        wc_AesGcmSetKey(&aes, key, (word32)keylen) != 0) {
        fprintf(stderr, "%s: key setup failed\n", name);
        return 1;
    }
    unsigned long n = 0;
    double t0 = now(), c0 = cpu_now(), t;
    do {
        for (int i = 0; i < 64; i++, n++) {
            iv[11] = (uint8_t)n; /* a fresh nonce per record, as TLS does */
            if (wc_AesGcmEncrypt(&aes, out, in, (word32)record, iv, sizeof iv, tag, sizeof tag, aad,
                                 sizeof aad) != 0) {
                fprintf(stderr, "%s: encryption failed\n", name);
                wc_AesFree(&aes);
                return 1;
            }
        }
        t = now();
    } while (t - t0 < secs);
    report(name, record, n, t - t0, cpu_now() - c0);
    wc_AesFree(&aes);
    return 0;
}

static int bench_chacha(uint8_t *in, uint8_t *out, size_t record, double secs)
{
    uint8_t key[32], iv[12], tag[16], aad[13];
    memset(key, 0x42, sizeof key);
    memset(iv, 0x24, sizeof iv);
    memset(aad, 0x17, sizeof aad);
    unsigned long n = 0;
    double t0 = now(), c0 = cpu_now(), t;
    do {
        for (int i = 0; i < 64; i++, n++) {
            iv[11] = (uint8_t)n;
            if (wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof aad, in, (word32)record, out,
                                            tag) != 0) {
                fprintf(stderr, "chacha20-poly1305: encryption failed\n");
                return 1;
            }
        }
        t = now();
    } while (t - t0 < secs);
    report("chacha20-poly1305", record, n, t - t0, cpu_now() - c0);
    return 0;
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    size_t record = argc > 2 ? (size_t)strtoul(argv[2], NULL, 10) : 16384;
    if (secs <= 0 || record == 0 || record > (1u << 24)) {
        fprintf(stderr, "usage: %s [seconds-per-cipher] [record-size]\n", argv[0]);
        return 2;
    }
    uint8_t *in = malloc(record), *out = malloc(record);
    if (!in || !out) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < record; i++)
        in[i] = (uint8_t)(i * 131u + 7u);
    printf("wolfSSL %s, AES-NI code %s\n", LIBWOLFSSL_VERSION_STRING,
#ifdef WOLFSSL_AESNI
           "compiled in"
#else
           "not compiled in"
#endif
    );
    int rc = bench_gcm("aes-128-gcm", 16, in, out, record, secs) ||
             bench_gcm("aes-256-gcm", 32, in, out, record, secs) ||
             bench_chacha(in, out, record, secs);
    free(in);
    free(out);
    return rc;
}

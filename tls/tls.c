/* tls.c: wolfSSL driven over the engine's buffers (the tls.h contract).
 *
 * Contexts (server with SNI certificates and rotated ticket keys, client with verification)
 * are built at start-up and then only read; a connection pulls ciphertext from the bytes
 * handed to tls_recv through a custom receive callback and pushes its output to the sink.
 */
#include "tls.h"

#include <wolfssl/options.h>

#include <wolfssl/openssl/evp.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* Server order wins. Without AES-NI (Debian's build) ChaCha20 is 2.5x faster than AES-GCM,
 * so it goes first there; a build with the assembly prefers AES-GCM. */
#define TLS13_AES "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384"
#define TLS13_CHACHA "TLS13-CHACHA20-POLY1305-SHA256"
#define TLS12_AES                                                                                  \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define TLS12_CHACHA "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#if defined(WOLFSSL_AESNI)
#define CIPHERS TLS13_AES ":" TLS13_CHACHA ":" TLS12_AES ":" TLS12_CHACHA
#else
#define CIPHERS TLS13_CHACHA ":" TLS13_AES ":" TLS12_CHACHA ":" TLS12_AES
#endif

/* Ticket keys: a fresh random key each epoch; tickets made under the previous epoch's key
 * are still accepted (and replaced), so a ticket lives one to two epochs. */
#define TICKET_EPOCH_SECS (2 * 3600)

#define ALPN_H1 "http/1.1"
#define ALPN_H2 "h2"

enum alpn { ALPN_NONE = 0, ALPN_IS_H1, ALPN_IS_H2 };

struct ticket_slot {
    uint64_t epoch;
    unsigned char key[CHACHA20_POLY1305_AEAD_KEYSIZE];
};

struct ticket_keys {
    pthread_mutex_t lock; /* ticket callbacks run on every worker */
    unsigned char id[8];  /* first half of every key name */
    struct ticket_slot slot[2];
};

struct sni_cert {
    char *name; /* lower case; "*.example.com" kept as ".example.com" with wildcard set */
    bool wildcard;
    WOLFSSL_CTX *ctx;
};

struct tls_ctx {
    WOLFSSL_CTX *ctx;
    atomic_uint refs; /* the owner's, and one per connection made on it */
    bool server;
    struct sni_cert *sni;
    size_t nsni;
    struct ticket_keys *keys;
    atomic_bool h2; /* server: ALPN offers h2 before http/1.1 (tls_server_set_h2) */
};

struct tls_conn {
    WOLFSSL *ssl;
    struct tls_ctx *owner; /* holds a reference: the context outlives its connections */
    tls_sink_fn sink;
    void *arg;
    const char *in; /* borrowed: the bytes of the current tls_recv call */
    size_t in_len;
    char *pend; /* owned: unconsumed ciphertext carried between calls, NULL when none */
    size_t pend_off, pend_len;
    int dead;        /* sticky negative errno once the connection failed */
    int sink_err;    /* what the sink returned when it failed */
    int wolf_err;    /* wolfSSL's code behind -EPROTO */
    const char *why; /* our own reason, when wolfSSL's code is not the story */
    bool server, done;
    uint8_t alpn; /* enum alpn: what the handshake agreed on */
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

int tls_global_init(void)
{
    return wolfSSL_Init() == WOLFSSL_SUCCESS ? 0 : -EIO;
}

void tls_thread_exit(void)
{
#ifdef FP_ECC
    wc_ecc_fp_free(); /* wolfSSL's per-thread ECC fixed-point cache */
#endif
}

/* ---- ticket keys ---- */

static struct ticket_keys *ticket_keys_new(void)
{
    struct ticket_keys *k = calloc(1, sizeof(*k));

    if (!k)
        return NULL;
    if (getrandom(k->id, sizeof(k->id), 0) != (ssize_t)sizeof(k->id) ||
        pthread_mutex_init(&k->lock, NULL) != 0) {
        free(k);
        return NULL;
    }
    return k;
}

static void ticket_keys_free(struct ticket_keys *k)
{
    if (!k)
        return;
    pthread_mutex_destroy(&k->lock);
    explicit_bzero(k, sizeof(*k));
    free(k);
}

/* Copies the key of `epoch` into key: a newer epoch than its slot holds rotates the slot to
 * a fresh random key (the old one is overwritten), an older one is gone. */
static int ticket_key(struct ticket_keys *k, uint64_t epoch, unsigned char *key)
{
    struct ticket_slot *s = &k->slot[epoch & 1];
    int ret = 0;

    pthread_mutex_lock(&k->lock);
    if (s->epoch < epoch) {
        if (getrandom(s->key, sizeof(s->key), 0) == (ssize_t)sizeof(s->key))
            s->epoch = epoch;
        else
            ret = -1;
    } else if (s->epoch > epoch) {
        ret = -1;
    }
    if (ret == 0)
        memcpy(key, s->key, sizeof(s->key));
    pthread_mutex_unlock(&k->lock);
    return ret;
}

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* wolfSSL's ticket callback: key name = our id + epoch, ChaCha20-Poly1305 in place with the
 * key name and length as associated data; the tag takes the first half of `mac`. */
static int ticket_cb(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
                     unsigned char iv[WOLFSSL_TICKET_IV_SZ],
                     unsigned char mac[WOLFSSL_TICKET_MAC_SZ], int enc, unsigned char *ticket,
                     int len, int *outlen, void *arg)
{
    struct ticket_keys *k = arg;
    uint64_t now = (uint64_t)time(NULL) / TICKET_EPOCH_SECS, epoch = now;
    unsigned char key[CHACHA20_POLY1305_AEAD_KEYSIZE], aad[WOLFSSL_TICKET_NAME_SZ + 2];
    int ret;

    (void)ssl;
    if (len < 0 || len > 0xffff)
        return WOLFSSL_TICKET_RET_REJECT;
    if (enc) {
        memcpy(name, k->id, 8);
        put_be64(name + 8, epoch);
        if (getrandom(iv, CHACHA20_POLY1305_AEAD_IV_SIZE, 0) != CHACHA20_POLY1305_AEAD_IV_SIZE)
            return WOLFSSL_TICKET_RET_REJECT;
    } else {
        epoch = get_be64(name + 8);
        if (memcmp(name, k->id, 8) != 0 || (epoch != now && epoch + 1 != now))
            return WOLFSSL_TICKET_RET_REJECT;
    }
    if (ticket_key(k, epoch, key) != 0)
        return WOLFSSL_TICKET_RET_REJECT;
    memcpy(aad, name, WOLFSSL_TICKET_NAME_SZ);
    aad[WOLFSSL_TICKET_NAME_SZ] = (unsigned char)(len >> 8);
    aad[WOLFSSL_TICKET_NAME_SZ + 1] = (unsigned char)len;
    if (enc) {
        memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
        ret = wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof(aad), ticket, (word32)len, ticket,
                                          mac);
    } else {
        ret = wc_ChaCha20Poly1305_Decrypt(key, iv, aad, sizeof(aad), ticket, (word32)len, mac,
                                          ticket);
    }
    explicit_bzero(key, sizeof(key));
    if (ret != 0)
        return WOLFSSL_TICKET_RET_REJECT;
    *outlen = len;
    /* A ticket under last epoch's key is honoured once and replaced (TLS 1.2; TLS 1.3 sends
     * a new ticket after every handshake anyway). */
    return enc || epoch == now ? WOLFSSL_TICKET_RET_OK : WOLFSSL_TICKET_RET_CREATE;
}

/* ---- callbacks shared by every server context ---- */

/* Whether the client's ALPN list in[0..inlen) names `proto`; *out points at it there. */
static bool alpn_offered(const unsigned char *in, unsigned int inlen, const char *proto,
                         const unsigned char **out, unsigned char *outlen)
{
    size_t pl = strlen(proto);

    for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == pl && i + 1u + in[i] <= inlen && memcmp(in + i + 1, proto, pl) == 0) {
            *out = in + i + 1;
            *outlen = in[i];
            return true;
        }
    }
    return false;
}

/* The server's preference, not the client's order (RFC 7301 section 3.2): h2 when the
 * context offers it, then http/1.1. */
static int alpn_cb(WOLFSSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tls_ctx *t = arg;

    (void)ssl;
    if (t && atomic_load_explicit(&t->h2, memory_order_relaxed) &&
        alpn_offered(in, inlen, ALPN_H2, out, outlen))
        return SSL_TLSEXT_ERR_OK;
    if (alpn_offered(in, inlen, ALPN_H1, out, outlen))
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK; /* neither offered: carry on without ALPN */
}

static bool sni_matches(const struct sni_cert *c, const char *host)
{
    size_t hl = strlen(host), nl = strlen(c->name);

    if (!c->wildcard)
        return strcasecmp(host, c->name) == 0;
    /* "*.example.com" covers exactly one more label */
    return hl > nl && strcasecmp(host + hl - nl, c->name) == 0 &&
           memchr(host, '.', hl - nl) == NULL;
}

static WOLFSSL_CTX *sni_find(const struct tls_ctx *t, const char *host)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < t->nsni; i++) {
            if (t->sni[i].wildcard == (pass == 1) && sni_matches(&t->sni[i], host))
                return t->sni[i].ctx;
        }
    }
    return NULL;
}

/* Runs inside the ClientHello: switch to the certificate for the name, if we have one. */
static int sni_cb(WOLFSSL *ssl, int *alert, void *arg)
{
    const char *host = wolfSSL_get_servername(ssl, WOLFSSL_SNI_HOST_NAME);
    WOLFSSL_CTX *c;

    (void)alert;
    if (!host || !(c = sni_find(arg, host)))
        return SSL_TLSEXT_ERR_OK;
    return wolfSSL_set_SSL_CTX(ssl, c) ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg);
static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg);

/* ---- contexts ---- */

static int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1};

static WOLFSSL_CTX *wctx_new(bool server, char *err, size_t errlen)
{
    WOLFSSL_CTX *c =
        wolfSSL_CTX_new(server ? wolfSSLv23_server_method() : wolfSSLv23_client_method());

    if (!c) {
        set_err(err, errlen, "%s%s", "out of memory", "");
        return NULL;
    }
    if (wolfSSL_CTX_SetMinVersion(c, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_cipher_list(c, CIPHERS) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_set_groups(c, groups, (int)(sizeof(groups) / sizeof(groups[0]))) !=
            WOLFSSL_SUCCESS) {
        set_err(err, errlen, "%s%s", "cannot set TLS versions, ciphers or groups", "");
        wolfSSL_CTX_free(c);
        return NULL;
    }
    wolfSSL_CTX_SetIORecv(c, io_recv);
    wolfSSL_CTX_SetIOSend(c, io_send);
    return c;
}

static int readable(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    int e = errno;

    if (!f) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(e));
        return -e;
    }
    fclose(f);
    return 0;
}

/* Debian's wolfSSL does not notice an EC key that belongs to another certificate: prove the
 * pair by signing with the key and verifying with the certificate's public key. */
static bool ec_pair_ok(WOLFSSL_CTX *c)
{
    static const char msg[] = "ringproxy key check";
    WOLFSSL_EVP_PKEY *priv = wolfSSL_CTX_get0_privatekey(c), *pub = NULL;
    WOLFSSL_X509 *x = wolfSSL_CTX_get0_certificate(c);
    WOLFSSL_EVP_MD_CTX *md = NULL;
    unsigned char sig[256];
    size_t len = sizeof(sig);
    bool ok = false;

    if (!priv || wolfSSL_EVP_PKEY_base_id(priv) != EVP_PKEY_EC)
        return true; /* wolfSSL's own check covers RSA */
    if (!x || !(pub = wolfSSL_X509_get_pubkey(x)) || !(md = wolfSSL_EVP_MD_CTX_new()))
        goto out;
    ok = wolfSSL_EVP_DigestSignInit(md, NULL, wolfSSL_EVP_sha256(), NULL, priv) == 1 &&
         wolfSSL_EVP_DigestSignUpdate(md, msg, sizeof(msg)) == 1 &&
         wolfSSL_EVP_DigestSignFinal(md, sig, &len) == 1;
    wolfSSL_EVP_MD_CTX_free(md);
    if (!ok || !(md = wolfSSL_EVP_MD_CTX_new()))
        goto out;
    ok = wolfSSL_EVP_DigestVerifyInit(md, NULL, wolfSSL_EVP_sha256(), NULL, pub) == 1 &&
         wolfSSL_EVP_DigestVerifyUpdate(md, msg, sizeof(msg)) == 1 &&
         wolfSSL_EVP_DigestVerifyFinal(md, sig, len) == 1;
    wolfSSL_EVP_MD_CTX_free(md);
out:
    wolfSSL_EVP_PKEY_free(pub);
    return ok;
}

static int load_pair(WOLFSSL_CTX *c, const char *cert, const char *key, char *err, size_t errlen)
{
    int r;

    if ((r = readable(cert, err, errlen)) < 0 || (r = readable(key, err, errlen)) < 0)
        return r;
    if (wolfSSL_CTX_use_certificate_chain_file(c, cert) != WOLFSSL_SUCCESS) {
        set_err(err, errlen, "%s: %s", cert, "not a PEM certificate chain");
        return -EINVAL;
    }
    if (wolfSSL_CTX_use_PrivateKey_file(c, key, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        set_err(err, errlen, "%s: %s", key, "not a PEM private key");
        return -EINVAL;
    }
    if (wolfSSL_CTX_check_private_key(c) != WOLFSSL_SUCCESS || !ec_pair_ok(c)) {
        set_err(err, errlen, "%s%s", "key does not match certificate", "");
        return -EINVAL;
    }
    return 0;
}

/* A server WOLFSSL_CTX for one certificate; every one shares the ticket keys and callbacks
 * because the SNI callback may move a connection to another mid-handshake. */
static WOLFSSL_CTX *server_wctx(struct tls_ctx *t, const char *cert, const char *key, char *err,
                                size_t errlen, int *rc)
{
    WOLFSSL_CTX *c = wctx_new(true, err, errlen);

    *rc = -ENOMEM;
    if (!c)
        return NULL;
    if ((*rc = load_pair(c, cert, key, err, errlen)) < 0) {
        wolfSSL_CTX_free(c);
        return NULL;
    }
    /* Stateless tickets only: the built-in session cache takes a global lock. */
    wolfSSL_CTX_set_session_cache_mode(c, WOLFSSL_SESS_CACHE_OFF);
    wolfSSL_CTX_set_timeout(c, TICKET_EPOCH_SECS);
    wolfSSL_CTX_set_TicketHint(c, TICKET_EPOCH_SECS);
    wolfSSL_CTX_set_TicketEncCb(c, ticket_cb);
    wolfSSL_CTX_set_TicketEncCtx(c, t->keys);
    wolfSSL_CTX_set_alpn_select_cb(c, alpn_cb, t);
    wolfSSL_CTX_set_servername_callback(c, sni_cb);
    wolfSSL_CTX_set_servername_arg(c, t);
    return c;
}

struct tls_ctx *tls_server_new(const char *cert_file, const char *key_file, char *err,
                               size_t errlen)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));
    int rc;

    if (!t)
        goto err_oom;
    atomic_init(&t->refs, 1);
    t->server = true;
    if (!(t->keys = ticket_keys_new()))
        goto err_keys;
    if (!(t->ctx = server_wctx(t, cert_file, key_file, err, errlen, &rc)))
        goto err_ctx;
    return t;

err_keys:
    free(t);
err_oom:
    set_err(err, errlen, "%s%s", "out of memory", "");
    return NULL;
err_ctx:
    ticket_keys_free(t->keys);
    free(t);
    return NULL;
}

int tls_server_add_sni(struct tls_ctx *ctx, const char *name, const char *cert_file,
                       const char *key_file, char *err, size_t errlen)
{
    bool wild = strncmp(name, "*.", 2) == 0;
    struct sni_cert *v, *c;
    int rc;

    if (!ctx->server || !name[wild ? 2 : 0]) {
        set_err(err, errlen, "%s: %s", name, "not a server name");
        return -EINVAL;
    }
    if (!(v = realloc(ctx->sni, (ctx->nsni + 1) * sizeof(*v)))) {
        set_err(err, errlen, "%s%s", "out of memory", "");
        return -ENOMEM;
    }
    ctx->sni = v;
    c = &v[ctx->nsni];
    c->wildcard = wild;
    if (!(c->name = strdup(name + (wild ? 1 : 0)))) {
        set_err(err, errlen, "%s%s", "out of memory", "");
        return -ENOMEM;
    }
    if (!(c->ctx = server_wctx(ctx, cert_file, key_file, err, errlen, &rc))) {
        free(c->name);
        return rc;
    }
    ctx->nsni++;
    return 0;
}

struct tls_ctx *tls_client_new(const char *ca_file, bool verify, char *err, size_t errlen)
{
    struct tls_ctx *t = calloc(1, sizeof(*t));
    const char *ca = ca_file ? ca_file : SYSTEM_CA_FILE;

    if (!t) {
        set_err(err, errlen, "%s%s", "out of memory", "");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    if (!(t->ctx = wctx_new(false, err, errlen)))
        goto err_ctx;
    wolfSSL_CTX_UseSessionTicket(t->ctx);
    if (!verify) {
        wolfSSL_CTX_set_verify(t->ctx, WOLFSSL_VERIFY_NONE, NULL);
        return t;
    }
    if (readable(ca, err, errlen) < 0)
        goto err_ca;
    if (wolfSSL_CTX_load_verify_locations(t->ctx, ca, NULL) != WOLFSSL_SUCCESS) {
        set_err(err, errlen, "%s: %s", ca, "no usable CA certificate");
        goto err_ca;
    }
    wolfSSL_CTX_set_verify(t->ctx, WOLFSSL_VERIFY_PEER, NULL);
    return t;

err_ca:
    wolfSSL_CTX_free(t->ctx);
err_ctx:
    free(t);
    return NULL;
}

void tls_server_set_h2(struct tls_ctx *ctx, bool on)
{
    atomic_store_explicit(&ctx->h2, on, memory_order_relaxed);
}

int tls_ctx_set_max_version(struct tls_ctx *ctx, const char *version)
{
    int v;

    if (strcmp(version, "TLSv1.2") == 0)
        v = TLS1_2_VERSION;
    else if (strcmp(version, "TLSv1.3") == 0)
        v = TLS1_3_VERSION;
    else
        return -EINVAL;
    if (wolfSSL_CTX_set_max_proto_version(ctx->ctx, v) != WOLFSSL_SUCCESS)
        return -EINVAL;
    for (size_t i = 0; i < ctx->nsni; i++)
        wolfSSL_CTX_set_max_proto_version(ctx->sni[i].ctx, v);
    return 0;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ctx->nsni; i++) {
        wolfSSL_CTX_free(ctx->sni[i].ctx);
        free(ctx->sni[i].name);
    }
    free(ctx->sni);
    wolfSSL_CTX_free(ctx->ctx);
    ticket_keys_free(ctx->keys);
    free(ctx);
}

/* ---- connections: I/O callbacks ---- */

/* wolfSSL asks for exactly the record bytes it needs: serve the carried tail, then the
 * bytes of the current call; "would block" when both are empty. */
static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_conn *t = arg;
    size_t want = (size_t)sz, k = t->pend_len < want ? t->pend_len : want, got = k;

    (void)ssl;
    if (k)
        memcpy(buf, t->pend + t->pend_off, k);
    t->pend_off += k;
    t->pend_len -= k;
    k = t->in_len < want - got ? t->in_len : want - got;
    if (k) {
        memcpy(buf + got, t->in, k);
        t->in += k;
        t->in_len -= k;
        got += k;
    }
    return got ? (int)got : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
    struct tls_conn *t = arg;
    int r;

    (void)ssl;
    if (t->sink_err)
        return WOLFSSL_CBIO_ERR_GENERAL;
    if ((r = t->sink(t->arg, buf, (size_t)sz)) < 0) {
        t->sink_err = r;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
    return sz;
}

/* ---- connections ---- */

static bool is_ip_literal(const char *s)
{
    unsigned char a[16];

    return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

static int client_setup(struct tls_ctx *ctx, struct tls_conn *t, const char *sni, bool h2)
{
    char alpn1[] = ALPN_H1, alpn2[] = ALPN_H2;
    char *alpn = h2 ? alpn2 : alpn1;

    if (wolfSSL_UseALPN(t->ssl, alpn, (unsigned)strlen(alpn), WOLFSSL_ALPN_CONTINUE_ON_MISMATCH) !=
        WOLFSSL_SUCCESS)
        return -ENOMEM;
    if (!sni || !*sni)
        return 0;
    /* RFC 6066: no IP addresses in SNI */
    if (!is_ip_literal(sni) && wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, sni,
                                              (unsigned short)strlen(sni)) != WOLFSSL_SUCCESS)
        return -ENOMEM;
    if (wolfSSL_CTX_get_verify_mode(ctx->ctx) != WOLFSSL_VERIFY_NONE &&
        wolfSSL_check_domain_name(t->ssl, sni) != WOLFSSL_SUCCESS)
        return -ENOMEM;
    return 0;
}

static struct tls_conn *conn_new(struct tls_ctx *ctx, const char *sni, bool h2, tls_sink_fn sink,
                                 void *arg)
{
    struct tls_conn *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    if (!(t->ssl = wolfSSL_new(ctx->ctx)))
        goto err_ssl;
    t->sink = sink;
    t->arg = arg;
    t->server = ctx->server;
    t->owner = ctx;
    atomic_fetch_add(&ctx->refs, 1);
    wolfSSL_SetIOReadCtx(t->ssl, t);
    wolfSSL_SetIOWriteCtx(t->ssl, t);
    if (!t->server && client_setup(ctx, t, sni, h2) < 0)
        goto err_setup;
    return t;

err_setup:
    wolfSSL_free(t->ssl);
    tls_ctx_free(ctx);
err_ssl:
    free(t);
    return NULL;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, const char *sni, tls_sink_fn sink, void *arg)
{
    return conn_new(ctx, sni, false, sink, arg);
}

struct tls_conn *tls_conn_new_h2(struct tls_ctx *ctx, const char *sni, tls_sink_fn sink, void *arg)
{
    return conn_new(ctx, sni, true, sink, arg);
}

void tls_conn_free(struct tls_conn *t)
{
    if (!t)
        return;
    wolfSSL_free(t->ssl);
    tls_ctx_free(t->owner);
    free(t->pend);
    free(t);
}

static int fail(struct tls_conn *t, int code, const char *why)
{
    if (t->sink_err) {
        t->dead = t->sink_err;
        t->why = "could not send";
    } else {
        t->dead = -EPROTO;
        t->wolf_err = code;
        t->why = why;
    }
    return t->dead;
}

/* Translates a wolfSSL failure: "wants more input" is 0, close_notify -ECONNRESET. */
static int wolf_status(struct tls_conn *t, int ret)
{
    int e = wolfSSL_get_error(t->ssl, ret);

    if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
        return t->sink_err ? fail(t, e, NULL) : 0;
    if (e == WOLFSSL_ERROR_ZERO_RETURN) {
        t->dead = -ECONNRESET;
        t->why = "peer closed the session";
        return t->dead;
    }
    return fail(t, e, NULL);
}

static void handshake_finished(struct tls_conn *t)
{
    char *proto = NULL;
    unsigned short len = 0;

    t->done = true;
    if (wolfSSL_ALPN_GetProtocol(t->ssl, &proto, &len) == WOLFSSL_SUCCESS && proto) {
        if (len == sizeof(ALPN_H1) - 1 && memcmp(proto, ALPN_H1, len) == 0)
            t->alpn = ALPN_IS_H1;
        else if (len == sizeof(ALPN_H2) - 1 && memcmp(proto, ALPN_H2, len) == 0)
            t->alpn = ALPN_IS_H2;
    }
}

static int handshake(struct tls_conn *t)
{
    int r = t->server ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);

    if (r != WOLFSSL_SUCCESS)
        return wolf_status(t, r);
    handshake_finished(t);
    return 0;
}

static ssize_t advance(struct tls_conn *t, char *out, size_t cap)
{
    int r;

    if (!t->done && ((r = handshake(t)) < 0 || !t->done))
        return r;
    if (cap == 0)
        return 0;
    r = wolfSSL_read(t->ssl, out, cap > INT_MAX ? INT_MAX : (int)cap);
    if (r > 0)
        return r;
    return wolf_status(t, r);
}

/* Keeps what wolfSSL did not consume of this call's bytes: they are borrowed. */
static int carry_tail(struct tls_conn *t)
{
    size_t need = t->pend_len + t->in_len;
    char *p;

    if (need == 0) {
        free(t->pend);
        t->pend = NULL;
        t->pend_off = 0;
        return 0;
    }
    if (t->in_len == 0)
        return 0;
    if (need > TLS_PENDING_MAX)
        return -ENOBUFS;
    if (!(p = malloc(need)))
        return -ENOMEM;
    if (t->pend_len)
        memcpy(p, t->pend + t->pend_off, t->pend_len);
    memcpy(p + t->pend_len, t->in, t->in_len);
    free(t->pend);
    t->pend = p;
    t->pend_off = 0;
    t->pend_len = need;
    return 0;
}

ssize_t tls_recv(struct tls_conn *t, const char *p, size_t n, char *out, size_t cap)
{
    ssize_t r;
    int c;

    if (t->dead)
        return t->dead;
    t->in = p;
    t->in_len = p ? n : 0;
    r = advance(t, out, cap);
    if (r >= 0 && (c = carry_tail(t)) < 0) {
        t->why = c == -ENOBUFS ? "too much unread ciphertext" : "out of memory";
        r = t->dead = c;
    }
    t->in = NULL;
    t->in_len = 0;
    return r;
}

int tls_connect(struct tls_conn *t)
{
    if (t->server)
        return -EINVAL;
    if (t->dead)
        return t->dead;
    return handshake(t);
}

ssize_t tls_send(struct tls_conn *t, const char *p, size_t n)
{
    size_t done = 0;
    int r;

    if (t->dead)
        return t->dead;
    if (!t->done)
        return -EAGAIN;
    while (done < n) {
        size_t k = n - done > INT_MAX ? INT_MAX : n - done;

        if ((r = wolfSSL_write(t->ssl, p + done, (int)k)) <= 0)
            return wolf_status(t, r) ? t->dead : fail(t, 0, "write stalled");
        done += (size_t)r;
    }
    return (ssize_t)n;
}

void tls_shutdown(struct tls_conn *t)
{
    if (t->done && !t->dead)
        wolfSSL_shutdown(t->ssl);
}

bool tls_handshake_done(const struct tls_conn *t)
{
    return t->done;
}

const char *tls_version(const struct tls_conn *t)
{
    return t->done ? wolfSSL_get_version(t->ssl) : NULL;
}

const char *tls_alpn(const struct tls_conn *t)
{
    return t->alpn == ALPN_IS_H1 ? ALPN_H1 : t->alpn == ALPN_IS_H2 ? ALPN_H2 : NULL;
}

bool tls_resumed(const struct tls_conn *t)
{
    return t->done && wolfSSL_session_reused(t->ssl) == 1;
}

const char *tls_sni(const struct tls_conn *t)
{
    return t->server ? wolfSSL_get_servername(t->ssl, WOLFSSL_SNI_HOST_NAME) : NULL;
}

const char *tls_error(const struct tls_conn *t)
{
    if (t->why)
        return t->why;
    if (t->wolf_err)
        return wolfSSL_ERR_reason_error_string((unsigned long)t->wolf_err);
    return NULL;
}

/* ---- client sessions ---- */

struct tls_session *tls_conn_get_session(struct tls_conn *t)
{
    WOLFSSL_SESSION *s, *copy;

    if (t->server || !t->done || !(s = wolfSSL_get1_session(t->ssl)))
        return NULL;
    copy = wolfSSL_SESSION_dup(s);
    wolfSSL_SESSION_free(s);
    return (struct tls_session *)copy;
}

int tls_conn_set_session(struct tls_conn *t, const struct tls_session *s)
{
    if (t->server || t->done || !s)
        return -EINVAL;
    return wolfSSL_set_session(t->ssl, (WOLFSSL_SESSION *)s) == WOLFSSL_SUCCESS ? 0 : -EINVAL;
}

void tls_session_free(struct tls_session *s)
{
    wolfSSL_SESSION_free((WOLFSSL_SESSION *)s);
}

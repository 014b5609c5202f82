/* ws.c: base64 and Sec-WebSocket-Accept for the tools' WebSocket modes (ws.h). */
#include "ws.h"

#include <errno.h>
#include <stdint.h>

#include <wolfssl/options.h> /* before any other wolfSSL header: it says how wolfSSL was built */
#include <wolfssl/wolfcrypt/sha.h>

void ws_base64(char *out, const unsigned char *in, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < n; i += 3, out += 4) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        out[0] = b64[v >> 18];
        out[1] = b64[v >> 12 & 63];
        out[2] = b64[v >> 6 & 63];
        out[3] = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

        out[0] = b64[v >> 18];
        out[1] = b64[v >> 12 & 63];
        out[2] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[3] = '=';
    }
}

uint64_t ws_payload_len(const unsigned char *hdr)
{
    unsigned l7 = hdr[1] & 127;
    uint64_t n = 0;

    if (l7 < 126)
        return l7;
    if (l7 == 126)
        return (uint64_t)hdr[2] << 8 | hdr[3];
    for (int i = 0; i < 8; i++)
        n = n << 8 | hdr[2 + i];
    return n >> 63 ? UINT64_MAX : n;
}

int ws_accept(const char *key, size_t n, char out[WS_ACCEPT_LEN])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char d[WC_SHA_DIGEST_SIZE];
    wc_Sha sha;
    int ret = wc_InitSha(&sha);

    if (ret)
        return -EINVAL;
    ret = wc_ShaUpdate(&sha, (const byte *)key, (word32)n);
    if (!ret)
        ret = wc_ShaUpdate(&sha, (const byte *)guid, sizeof(guid) - 1);
    if (!ret)
        ret = wc_ShaFinal(&sha, d);
    wc_ShaFree(&sha);
    if (ret)
        return -EINVAL;
    ws_base64(out, d, sizeof(d));
    return 0;
}

/* ws.h: the WebSocket handshake arithmetic ringload and ringorigin share (RFC 6455 4.2.2). */
#ifndef RP_TOOLS_WS_H
#define RP_TOOLS_WS_H

#include <stddef.h>
#include <stdint.h>

#define WS_ACCEPT_LEN 28 /* base64 of a 20-byte SHA-1 */

/* Writes the base64 of in[0..n) to out: 4 * ((n + 2) / 3) characters, no NUL. */
void ws_base64(char *out, const unsigned char *in, size_t n);

/* The Sec-WebSocket-Accept a server owes a Sec-WebSocket-Key: base64 of the SHA-1 of the key
 * and the protocol's GUID, WS_ACCEPT_LEN characters (no NUL). 0, or -EINVAL when wolfSSL's
 * SHA-1 fails. Any thread. */
int ws_accept(const char *key, size_t n, char out[WS_ACCEPT_LEN]);

/* The payload length of a frame whose header starts at hdr (RFC 6455 5.2: the 7-bit length,
 * or the 16- or 64-bit one after it, which the caller has read in full), or UINT64_MAX for a
 * 64-bit length with its top bit set, which the RFC forbids. */
uint64_t ws_payload_len(const unsigned char *hdr);

#endif /* RP_TOOLS_WS_H */

/* h2common.h: what both HTTP/2 sides (session_h2.c to clients, upstream_h2.c to backends)
 * set up the same way on libnghttp2. */
#ifndef RP_H2COMMON_H
#define RP_H2COMMON_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* The callbacks one side uses; NULL members are not set. */
struct h2_handlers {
    nghttp2_on_begin_frame_callback begin_frame;
    nghttp2_on_begin_headers_callback begin_headers;
    nghttp2_on_header_callback header;
    nghttp2_on_frame_recv_callback frame_recv;
    nghttp2_on_frame_send_callback frame_send;
    nghttp2_on_data_chunk_recv_callback data_chunk;
    nghttp2_on_stream_close_callback stream_close;
    nghttp2_on_invalid_frame_recv_callback invalid_frame;
};

/* nghttp2's callbacks for h, and the options both sides share: windows given back by the
 * engine (no automatic WINDOW_UPDATE), at most 8 CONTINUATION frames per header block
 * (CVE-2024-27316). 0, or -ENOMEM (nothing is left allocated). */
int h2_setup(const struct h2_handlers *h, nghttp2_session_callbacks **cb, nghttp2_option **opt);

/* HTTP/2 field names are lower case: p[0..n) in place. */
void h2_lower(char *p, size_t n);

#endif /* RP_H2COMMON_H */

/* h2common.c: nghttp2 set-up both HTTP/2 sides share (h2common.h). */
#include "h2common.h"

#include <errno.h>

int h2_setup(const struct h2_handlers *h, nghttp2_session_callbacks **cb, nghttp2_option **opt)
{
    if (nghttp2_session_callbacks_new(cb))
        return -ENOMEM;
    if (nghttp2_option_new(opt)) {
        nghttp2_session_callbacks_del(*cb);
        *cb = NULL;
        return -ENOMEM;
    }
    if (h->begin_frame)
        nghttp2_session_callbacks_set_on_begin_frame_callback(*cb, h->begin_frame);
    if (h->begin_headers)
        nghttp2_session_callbacks_set_on_begin_headers_callback(*cb, h->begin_headers);
    if (h->header)
        nghttp2_session_callbacks_set_on_header_callback(*cb, h->header);
    if (h->frame_recv)
        nghttp2_session_callbacks_set_on_frame_recv_callback(*cb, h->frame_recv);
    if (h->frame_send)
        nghttp2_session_callbacks_set_on_frame_send_callback(*cb, h->frame_send);
    if (h->data_chunk)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(*cb, h->data_chunk);
    if (h->stream_close)
        nghttp2_session_callbacks_set_on_stream_close_callback(*cb, h->stream_close);
    if (h->invalid_frame)
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(*cb, h->invalid_frame);
    nghttp2_option_set_no_auto_window_update(*opt, 1);
    /* Debian's 1.52.0-1+deb12u2 has the bound (CVE-2024-27316); 8, as upstream */
    nghttp2_option_set_max_continuations(*opt, 8);
    return 0;
}

void h2_lower(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            p[i] = (char)(p[i] + 32);
}

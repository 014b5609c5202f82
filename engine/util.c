/* util.c: the helpers of util.h that are more than a few lines: host[:port] splitting (the
 * config checks, the routing table and the tools parse addresses with it) and percent-decoding
 * (local endpoints' parameters, the admin API, ringorigin's query strings).
 */
#include "util.h"

#include <errno.h>
#include <string.h>

int hostport_split(const char *s, size_t n, struct hostport *hp)
{
    const char *end = s + n, *hend;

    memset(hp, 0, sizeof(*hp));
    if (n && s[0] == '[') {
        const char *close = memchr(s + 1, ']', n - 1);
        if (!close)
            return -EINVAL;
        hp->bracketed = true;
        hp->host = s + 1;
        hp->host_len = (size_t)(close - s - 1);
        hend = close + 1;
        if (hend < end && *hend != ':')
            return -EINVAL;
    } else {
        hend = memchr(s, ':', n);
        if (!hend)
            hend = end;
        hp->host = s;
        hp->host_len = (size_t)(hend - s);
    }
    if (hend < end) {
        hp->port = hend + 1;
        hp->port_len = (size_t)(end - hend - 1);
    }
    return 0;
}

size_t pct_decode(const char *s, size_t n, char *out, size_t cap, bool plus_is_space)
{
    size_t k = 0;

    for (size_t j = 0; j < n && k + 1 < cap; j++) {
        int hi, lo;
        if (s[j] == '%' && j + 2 < n && (hi = hex_value(s[j + 1])) >= 0 &&
            (lo = hex_value(s[j + 2])) >= 0) {
            out[k++] = (char)(hi * 16 + lo);
            j += 2;
        } else {
            out[k++] = plus_is_space && s[j] == '+' ? ' ' : s[j];
        }
    }
    out[k] = 0;
    return k;
}

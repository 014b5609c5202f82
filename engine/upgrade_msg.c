/* upgrade_msg.c: the messages of a handover (upgrade.h): encoding and the decoder that
 * takes nothing on trust, since a record comes from another process. Pure functions, for the
 * unit tests and the fuzzer (tests/fuzz/fuzz_upgrade.c). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "upgrade.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    return get16(p) | (uint32_t)get16(p + 2) << 16;
}

/* An address or a reason: 1..max bytes of visible ASCII (a space too in a reason). */
static bool text_ok(const char *s, size_t n, size_t max, bool spaces)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((s[i] < 0x21 && !(spaces && s[i] == ' ')) || s[i] > 0x7e)
            return false;
    return true;
}

static bool batch_ok(uint32_t total, uint32_t first, uint32_t n)
{
    return total <= UPG_MAX_LISTENERS && n <= UPG_BATCH && first <= total && n <= total - first &&
           (n > 0 || total == 0);
}

static int encode_listeners(const struct upg_msg *m, uint8_t *p, size_t cap)
{
    size_t off = 12;

    if (!batch_ok(m->total, m->first, m->n))
        return -EINVAL;
    if (cap < off)
        return -ENOSPC;
    put32(p, m->total);
    put32(p + 4, m->first);
    put16(p + 8, m->n);
    put16(p + 10, 0);
    for (uint16_t i = 0; i < m->n; i++) {
        size_t len = strnlen(m->e[i].addr, sizeof(m->e[i].addr));
        if (m->e[i].kind > RP_LISTENER_ADMIN || !text_ok(m->e[i].addr, len, UPG_ADDR_MAX, false))
            return -EINVAL;
        if (cap - off < 2 + len)
            return -ENOSPC;
        p[off] = m->e[i].kind;
        p[off + 1] = (uint8_t)len;
        memcpy(p + off + 2, m->e[i].addr, len);
        off += 2 + len;
    }
    return (int)off;
}

/* The payload of *m into p[0..cap): its length or -errno. */
static int encode_payload(const struct upg_msg *m, uint8_t *p, size_t cap)
{
    size_t len;

    switch (m->type) {
    case UPG_GET_LISTENERS:
        if (cap < 4)
            return -ENOSPC;
        put32(p, m->pid);
        return 4;
    case UPG_LISTENERS:
        return encode_listeners(m, p, cap);
    case UPG_DRAIN:
    case UPG_DRAIN_OK:
        return 0;
    case UPG_ERROR:
        len = strnlen(m->text, sizeof(m->text));
        if (!text_ok(m->text, len, UPG_TEXT_MAX, true))
            return -EINVAL;
        if (cap < len)
            return -ENOSPC;
        memcpy(p, m->text, len);
        return (int)len;
    }
    return -EINVAL;
}

int upg_encode(const struct upg_msg *m, uint8_t *out, size_t cap)
{
    int n;

    if (cap < UPG_HDR_LEN)
        return -ENOSPC;
    n = encode_payload(m, out + UPG_HDR_LEN, cap - UPG_HDR_LEN);
    if (n < 0)
        return n;
    put32(out, UPG_MAGIC);
    put16(out + 4, UPG_VERSION);
    put16(out + 6, (uint16_t)m->type);
    put32(out + 8, (uint32_t)n);
    return UPG_HDR_LEN + n;
}

static int decode_listeners(const uint8_t *p, size_t n, struct upg_msg *m)
{
    size_t off = 12;

    if (n < off)
        return -EBADMSG;
    m->total = get32(p);
    m->first = get32(p + 4);
    m->n = get16(p + 8);
    if (get16(p + 10) || !batch_ok(m->total, m->first, m->n))
        return -EBADMSG;
    for (uint16_t i = 0; i < m->n; i++) {
        size_t len;
        if (n - off < 2)
            return -EBADMSG;
        m->e[i].kind = p[off];
        len = p[off + 1];
        off += 2;
        if (m->e[i].kind > RP_LISTENER_ADMIN || len > n - off ||
            !text_ok((const char *)p + off, len, UPG_ADDR_MAX, false))
            return -EBADMSG;
        memcpy(m->e[i].addr, p + off, len);
        m->e[i].addr[len] = 0;
        off += len;
    }
    return off == n ? 0 : -EBADMSG;
}

int upg_decode(const uint8_t *p, size_t n, struct upg_msg *m)
{
    size_t len;

    memset(m, 0, sizeof(*m));
    if (n < UPG_HDR_LEN || get32(p) != UPG_MAGIC)
        return -EBADMSG;
    if (get16(p + 4) != UPG_VERSION)
        return -EPROTONOSUPPORT;
    len = get32(p + 8);
    if (len != n - UPG_HDR_LEN)
        return -EBADMSG;
    m->type = (enum upg_type)get16(p + 6);
    p += UPG_HDR_LEN;
    switch (m->type) {
    case UPG_GET_LISTENERS:
        if (len != 4)
            return -EBADMSG;
        m->pid = get32(p);
        return 0;
    case UPG_LISTENERS:
        return decode_listeners(p, len, m);
    case UPG_DRAIN:
    case UPG_DRAIN_OK:
        return len ? -EBADMSG : 0;
    case UPG_ERROR:
        if (!text_ok((const char *)p, len, UPG_TEXT_MAX, true))
            return -EBADMSG;
        memcpy(m->text, p, len);
        return 0;
    }
    return -EBADMSG;
}

int upg_sock_path(const char *pid_file, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s.sock", pid_file);

    return n < 0 || (size_t)n >= cap || (size_t)n >= sizeof(((struct sockaddr_un *)0)->sun_path)
               ? -ENAMETOOLONG
               : 0;
}

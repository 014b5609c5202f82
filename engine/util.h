/* util.h: the small helpers the engine, the cache and the tools share: ASCII case folding and
 * case-insensitive comparison of spans, the HTTP token class, hex digits, URL schemes, host[:port]
 * splitting, percent-decoding (util.c), container_of and an intrusive doubly linked list.
 * Pure functions over caller-owned memory: no allocation, no globals, any thread.
 */
#ifndef RP_UTIL_H
#define RP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The struct of type `type` whose field `member` is at ptr. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- ASCII case ------------------------------------------------------------------------- */

/* c with A-Z folded to a-z; every other byte (>= 0x80 included) unchanged. */
static inline char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Folds the ASCII letters of the NUL-terminated s to lowercase, in place. */
static inline void str_lower(char *s)
{
    for (; *s; s++)
        *s = ascii_lower(*s);
}

/* Whether a[0..n) and b[0..n) are equal, ASCII case ignored on both sides. */
static inline bool mem_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    return true;
}

/* Whether s[0..n) equals the NUL-terminated `lower` (which must be lowercase: an uppercase
 * letter in it never matches), s's case ignored. Reads nothing past n or past lower's NUL. */
static inline bool span_ieq(const char *s, size_t n, const char *lower)
{
    size_t i;

    for (i = 0; lower[i]; i++)
        if (i == n || ascii_lower(s[i]) != lower[i])
            return false;
    return i == n;
}

/* Whether a[0..an) and b[0..bn) are equal, ASCII case ignored on both sides. */
static inline bool span_ieq_span(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && mem_ieq(a, b, an);
}

/* Whether s[0..n) starts with the NUL-terminated lowercase `lower`, s's case ignored. */
static inline bool span_istarts(const char *s, size_t n, const char *lower)
{
    for (size_t i = 0; lower[i]; i++)
        if (i == n || ascii_lower(s[i]) != lower[i])
            return false;
    return true;
}

/* Whether the NUL-terminated s starts with the lowercase `lower`, s's case ignored; reads s no
 * further than its first byte that differs (so never past its NUL). */
static inline bool str_istarts(const char *s, const char *lower)
{
    for (size_t i = 0; lower[i]; i++)
        if (ascii_lower(s[i]) != lower[i])
            return false;
    return true;
}

/* ---- HTTP characters and URLs ----------------------------------------------------------- */

/* RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~. A constant expression (for tables built at
 * compile time) that evaluates c several times; http_is_tchar() is the function. */
#define HTTP_TCHAR(c)                                                                              \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') || ((c) >= '0' && (c) <= '9') ||     \
     (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||          \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||           \
     (c) == '`' || (c) == '|' || (c) == '~')

/* Whether byte c is an RFC 9110 tchar (NUL is not). */
static inline bool http_is_tchar(unsigned char c)
{
    return HTTP_TCHAR(c);
}

/* The value 0-15 of the hex digit c (either case), or -1 for any other c (negative included). */
static inline int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The length of the "http://" (7), "https://" (8), "h2c://" (6: HTTP/2 in the clear) or
 * "h2://" (5: HTTP/2 over TLS) that starts the NUL-terminated s, in any case, with *tls set
 * for https and h2, *h2 for h2c and h2; 0 with both false when s starts with none. */
static inline size_t url_scheme_len(const char *s, bool *tls, bool *h2)
{
    *h2 = str_istarts(s, "h2c://") || str_istarts(s, "h2://");
    *tls = str_istarts(s, "https://") || str_istarts(s, "h2://");
    if (*h2)
        return *tls ? 5 : 6;
    return *tls ? 8 : str_istarts(s, "http://") ? 7 : 0;
}

/* The parts of "host", "host:port", "[ip6]" or "[ip6]:port": spans into the caller's string. */
struct hostport {
    const char *host; /* without the brackets */
    size_t host_len;  /* may be 0: callers decide whether an empty host is allowed */
    const char *port; /* the bytes after the colon, unchecked (may be empty); NULL if no colon */
    size_t port_len;
    bool bracketed; /* the host was written in [ ] */
};

/* Splits s[0..n) at the first ':' (after the ']' when s starts with '['). Returns 0, or -EINVAL
 * when a '[' has no ']' or the ']' is followed by anything but ':' or the end. Checks neither the
 * host's nor the port's characters: each caller has its own rules for those. */
int hostport_split(const char *s, size_t n, struct hostport *hp);

/* v in decimal, written backwards from the end of tmp[0..24): returns where it starts (the
 * digits run to tmp + 24). */
static inline char *u64_dec(char tmp[24], uint64_t v)
{
    char *p = tmp + 24;

    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    return p;
}

/* Percent-decodes s[0..n) into out (at most cap - 1 bytes, then a NUL; cap >= 1) and returns the
 * length written. Invalid or truncated escapes are copied as they are; plus_is_space turns '+'
 * into ' ' (form-encoded query strings). out may hold NUL bytes (from %00). */
size_t pct_decode(const char *s, size_t n, char *out, size_t cap, bool plus_is_space);

/* ---- intrusive doubly linked list --------------------------------------------------------- */

/* A list is a struct list_node head (a sentinel, never an element); each element embeds a node
 * and is found from it with container_of. A node is in at most one list at a time. */
struct list_node {
    struct list_node *prev, *next;
};

/* Makes head an empty list (also a fresh node that is in no list). */
static inline void list_init(struct list_node *head)
{
    head->prev = head->next = head;
}

/* Whether the list at head has no element. */
static inline bool list_empty(const struct list_node *head)
{
    return head->next == head;
}

/* Links n in right after `at` (at the front when `at` is the head). */
static inline void list_add(struct list_node *at, struct list_node *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

/* Links n in right before `at` (at the back when `at` is the head). */
static inline void list_add_tail(struct list_node *at, struct list_node *n)
{
    list_add(at->prev, n);
}

/* Unlinks n from its list and leaves it an empty, self-linked node (so a second del is safe). */
static inline void list_del(struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_init(n);
}

/* Walks the list at head with the node pointer `pos`; the body must not unlink pos (save
 * pos->next first, or use a while (!list_empty(head)) loop, to remove while walking). */
#define list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#endif /* RP_UTIL_H */

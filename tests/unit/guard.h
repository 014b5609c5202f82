/* guard.h: a parser's input copied so that it ends where an unreadable page begins: a read
 * one byte past the input faults at once, instead of passing unnoticed (h1.c's tests have
 * the same habit). For cmocka tests. */
#ifndef RP_TEST_GUARD_H
#define RP_TEST_GUARD_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guarded {
    char *base;
    size_t len;
};

/* Returns the copy of p[0..n); free with guard_free. */
static inline const void *guard_copy(struct guarded *g, const void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), data = (n + page - 1) / page * page;

    if (data == 0)
        data = page;
    g->len = data + page;
    g->base = mmap(NULL, g->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g->base != MAP_FAILED);
    assert_int_equal(mprotect(g->base + data, page, PROT_NONE), 0);
    memcpy(g->base + data - n, p, n);
    return g->base + data - n;
}

static inline void guard_free(struct guarded *g)
{
    munmap(g->base, g->len);
}

#endif /* RP_TEST_GUARD_H */

/* timer.h: a per-worker timing wheel. O(1) arm, disarm and expiry; 16 ms resolution.
 *
 * Each connection embeds one struct timer and re-arms it as its state changes (header
 * deadline, keep-alive idle, backend read/write progress, pool idle). Deadlines past the
 * wheel's span stay in their slot and are skipped until their turn comes round.
 */
#ifndef RP_TIMER_H
#define RP_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMER_SLOT_MS 16
#define TIMER_SLOTS 4096 /* 65 s span */

struct timer {
    struct timer *next, *prev; /* NULL when not armed */
    uint64_t deadline_ms;
    void (*fn)(struct timer *t, uint64_t now_ms);
};

struct timer_wheel {
    struct timer slots[TIMER_SLOTS]; /* list heads */
    uint64_t last_ms;                /* every slot up to this time has been run */
    uint32_t armed;
};

void timer_wheel_init(struct timer_wheel *tw, uint64_t now_ms);

/* Arms (or re-arms) t to fire at `deadline_ms`. t->fn must be set. */
void timer_arm(struct timer_wheel *tw, struct timer *t, uint64_t deadline_ms);

/* Disarms t; a no-op if it is not armed. */
void timer_disarm(struct timer_wheel *tw, struct timer *t);

static inline bool timer_armed(const struct timer *t)
{
    return t->next != 0;
}

/* Runs every timer whose deadline is <= now_ms. A callback may arm or disarm any timer,
 * including its own. */
void timer_run(struct timer_wheel *tw, uint64_t now_ms);

/* Milliseconds until the next slot boundary that holds a timer, capped at `cap_ms`;
 * returns cap_ms when nothing is armed. */
uint64_t timer_next_ms(const struct timer_wheel *tw, uint64_t now_ms, uint64_t cap_ms);

#endif /* RP_TIMER_H */

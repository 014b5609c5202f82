/* timer.c: the timing wheel of timer.h. Slots are circular doubly-linked lists with a
 * sentinel head, so arming and disarming touch only the neighbours. */
#include "timer.h"

#include <stddef.h>

static struct timer *slot_of(struct timer_wheel *tw, uint64_t ms)
{
    return &tw->slots[(ms / TIMER_SLOT_MS) % TIMER_SLOTS];
}

void timer_wheel_init(struct timer_wheel *tw, uint64_t now_ms)
{
    for (size_t i = 0; i < TIMER_SLOTS; i++)
        tw->slots[i].next = tw->slots[i].prev = &tw->slots[i];
    tw->last_ms = now_ms;
    tw->armed = 0;
}

void timer_disarm(struct timer_wheel *tw, struct timer *t)
{
    if (!t->next)
        return;
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->next = t->prev = NULL;
    tw->armed--;
}

void timer_arm(struct timer_wheel *tw, struct timer *t, uint64_t deadline_ms)
{
    struct timer *head;

    timer_disarm(tw, t);
    /* A deadline already past fires on the next run, not in a slot a full turn away (and
     * never within the run that armed it, so a callback cannot loop forever). */
    if (deadline_ms <= tw->last_ms)
        deadline_ms = tw->last_ms + 1;
    t->deadline_ms = deadline_ms;
    head = slot_of(tw, deadline_ms);
    t->next = head;
    t->prev = head->prev;
    head->prev->next = t;
    head->prev = t;
    tw->armed++;
}

static void run_slot(struct timer_wheel *tw, struct timer *head, uint64_t now_ms)
{
    struct timer *t = head->next;

    while (t != head) {
        struct timer *next = t->next;

        if (t->deadline_ms <= now_ms) {
            timer_disarm(tw, t);
            t->fn(t, now_ms);
            /* The callback may have disarmed or re-armed any timer, `next` too (into another
             * slot's list, or this one's tail): start the slot over. What fired has left it,
             * and what the callback armed is not due in this run (timer_arm), so this ends. */
            next = head->next;
        }
        t = next;
    }
}

void timer_run(struct timer_wheel *tw, uint64_t now_ms)
{
    uint64_t from = tw->last_ms / TIMER_SLOT_MS, to = now_ms / TIMER_SLOT_MS;

    if (to < from)
        return;
    if (to - from >= TIMER_SLOTS)
        from = to - TIMER_SLOTS + 1;
    tw->last_ms = now_ms;
    for (uint64_t s = from; s <= to && tw->armed; s++)
        run_slot(tw, &tw->slots[s % TIMER_SLOTS], now_ms);
}

uint64_t timer_next_ms(const struct timer_wheel *tw, uint64_t now_ms, uint64_t cap_ms)
{
    uint64_t next;

    if (!tw->armed)
        return cap_ms;
    next = TIMER_SLOT_MS - now_ms % TIMER_SLOT_MS;
    return next < cap_ms ? next : cap_ms;
}

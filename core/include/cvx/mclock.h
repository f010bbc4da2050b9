/*
 * The media clock: 20 ms (configurable) ticks for every call's media, paced by a timerfd with
 * absolute CLOCK_MONOTONIC deadlines watched by uv_poll.  uv_timer is not used because it has
 * millisecond resolution and may fire up to 1 ms early.
 *
 * The period is divided into slots; each subscriber is put in the least loaded slot, so 1,000
 * calls are spread over the frame instead of all being served on one tick.  A subscriber's
 * deadlines are absolute (start + n * period + slot offset): lateness never accumulates into
 * drift.  When the loop was held up for longer than a whole period, the missed ticks are not
 * replayed in a burst; they are counted as overruns and the schedule moves on.
 *
 * Every tick's lateness (time the callback ran minus its deadline) goes into a histogram.
 *
 * Thread: loop thread only.  Ownership: subscribers are embedded in their owner and must be
 * removed before the owner frees them; a tick callback may remove any subscriber.
 */
#ifndef CVX_MCLOCK_H
#define CVX_MCLOCK_H

#include <stdint.h>
#include <uv.h>

typedef struct cvx_mclock_sub cvx_mclock_sub_t;

/* deadline_ns: this tick's nominal time (uv_hrtime() base); lateness = now - deadline. */
typedef void (*cvx_mclock_tick_fn)(cvx_mclock_sub_t *sub, uint64_t deadline_ns);

struct cvx_mclock_sub {
    cvx_mclock_sub_t *next, *prev;
    cvx_mclock_tick_fn tick;
    unsigned slot;
    int active;
    void *data;
};

#define CVX_MCLOCK_MAX_SLOTS 64
#define CVX_MCLOCK_HIST      512 /* 10 us buckets: 0..5.12 ms, the last one open-ended */

typedef struct cvx_mclock_stats {
    uint64_t ticks;    /* subscriber callbacks run */
    uint64_t wakeups;  /* timerfd expirations handled */
    uint64_t overruns; /* periods skipped because the loop was held up */
    uint64_t late_max_ns;
    uint64_t hist[CVX_MCLOCK_HIST];
} cvx_mclock_stats_t;

typedef struct cvx_mclock {
    uv_poll_t poll; /* owned; closed by cvx_mclock_close() */
    uv_loop_t *loop;
    int fd;
    uint64_t period_ns;
    unsigned nslots;
    uint64_t base_ns;   /* deadline of slot 0 of the current period */
    unsigned next_slot; /* the next slot to serve */
    unsigned count[CVX_MCLOCK_MAX_SLOTS];
    cvx_mclock_sub_t *slots[CVX_MCLOCK_MAX_SLOTS];
    cvx_mclock_sub_t *iter_next; /* the iteration cursor, kept valid by remove() */
    unsigned nsubs;
    int armed;
    cvx_mclock_stats_t stats;
    void (*on_closed)(struct cvx_mclock *c);
} cvx_mclock_t;

/* period_ms: 10..100; slots: 1..CVX_MCLOCK_MAX_SLOTS.  Returns 0 or CVX_E*. */
int cvx_mclock_init(uv_loop_t *loop, cvx_mclock_t *c, unsigned period_ms, unsigned slots);
/* on_closed (may be NULL) runs when c may be freed.  Subscribers are dropped. */
void cvx_mclock_close(cvx_mclock_t *c, void (*on_closed)(cvx_mclock_t *c));

/* Adds sub (tick and data set by the caller); its first tick is its slot's next deadline. */
void cvx_mclock_add(cvx_mclock_t *c, cvx_mclock_sub_t *sub);
void cvx_mclock_remove(cvx_mclock_t *c, cvx_mclock_sub_t *sub);

/* Lateness at quantile q (0..1) in nanoseconds, from the histogram (10 us resolution). */
uint64_t cvx_mclock_quantile(const cvx_mclock_stats_t *s, double q);

#endif

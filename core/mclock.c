/*
 * The timerfd media clock (see cvx/mclock.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/mclock.h"
#include "cvx/reactor.h"

static uint64_t slot_deadline(const cvx_mclock_t *c, unsigned slot)
{
    return c->base_ns + (c->period_ns * slot) / c->nslots;
}

static int arm(cvx_mclock_t *c, uint64_t deadline)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    its.it_value.tv_sec = (time_t)(deadline / 1000000000ull);
    its.it_value.tv_nsec = (long)(deadline % 1000000000ull);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
        its.it_value.tv_nsec = 1; /* zero would disarm */
    if (timerfd_settime(c->fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        return cvx_from_errno(errno);
    c->armed = 1;
    return 0;
}

static void disarm(cvx_mclock_t *c)
{
    struct itimerspec its;
    memset(&its, 0, sizeof(its));
    timerfd_settime(c->fd, TFD_TIMER_ABSTIME, &its, NULL);
    c->armed = 0;
}

/* Moves next_slot (and base at a period's end) to the next slot that has subscribers. */
static void advance(cvx_mclock_t *c)
{
    for (unsigned i = 0; i < c->nslots; i++) {
        c->next_slot++;
        if (c->next_slot == c->nslots) {
            c->next_slot = 0;
            c->base_ns += c->period_ns;
        }
        if (c->count[c->next_slot] > 0)
            return;
    }
}

static void record(cvx_mclock_t *c, uint64_t late)
{
    uint64_t b = late / 10000;
    if (b >= CVX_MCLOCK_HIST)
        b = CVX_MCLOCK_HIST - 1;
    c->stats.hist[b]++;
    if (late > c->stats.late_max_ns)
        c->stats.late_max_ns = late;
    c->stats.ticks++;
}

static void serve_slot(cvx_mclock_t *c, unsigned slot, uint64_t deadline)
{
    cvx_mclock_sub_t *s = c->slots[slot];
    while (s != NULL) {
        c->iter_next = s->next;
        uint64_t now = uv_hrtime();
        record(c, now > deadline ? now - deadline : 0);
        s->tick(s, deadline);
        s = c->iter_next;
    }
    c->iter_next = NULL;
}

static void on_timer(uv_poll_t *h, int status, int events)
{
    cvx_mclock_t *c = h->data;
    uint64_t expirations;
    (void)events;
    if (status < 0)
        return;
    if (read(c->fd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
        return; /* EAGAIN: re-armed before we read; the next wake-up serves it */
    c->stats.wakeups++;
    cvx_loop_doing("media clock tick");

    uint64_t now = uv_hrtime();
    /* At most one period's slots per wake-up: when the ticks themselves keep the clock behind
     * (a loaded or preempted process), the loop runs its other events (signalling, the control
     * socket) before the clock goes on; the timer, re-armed in the past, fires at once. */
    unsigned served = 0;
    while (c->nsubs > 0 && served < c->nslots) {
        uint64_t d = slot_deadline(c, c->next_slot);
        /* Held up for more than a period, before this wake-up or by a tick during it: skip
         * whole periods rather than bursting through the missed ones. */
        if (now > d + c->period_ns) {
            uint64_t behind = (now - d) / c->period_ns;
            c->base_ns += behind * c->period_ns;
            c->stats.overruns += behind;
            d = slot_deadline(c, c->next_slot);
        }
        if (d > now)
            break;
        unsigned slot = c->next_slot;
        advance(c);
        serve_slot(c, slot, d);
        served++;
        now = uv_hrtime();
    }
    cvx_loop_doing(NULL);
    if (c->nsubs > 0)
        arm(c, slot_deadline(c, c->next_slot));
    else
        disarm(c);
}

int cvx_mclock_init(uv_loop_t *loop, cvx_mclock_t *c, unsigned period_ms, unsigned slots)
{
    if (period_ms < 10 || period_ms > 100 || slots < 1 || slots > CVX_MCLOCK_MAX_SLOTS)
        return CVX_EINVAL;
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->period_ns = (uint64_t)period_ms * 1000000ull;
    c->nslots = slots;
    c->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->fd < 0)
        return cvx_from_errno(errno);
    int rc = uv_poll_init(loop, &c->poll, c->fd);
    if (rc != 0) {
        close(c->fd);
        return cvx_from_errno(-rc);
    }
    c->poll.data = c;
    uv_poll_start(&c->poll, UV_READABLE, on_timer);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    cvx_mclock_t *c = h->data;
    close(c->fd);
    c->fd = -1;
    if (c->on_closed != NULL)
        c->on_closed(c);
}

void cvx_mclock_close(cvx_mclock_t *c, void (*on_closed)(cvx_mclock_t *c))
{
    for (unsigned i = 0; i < c->nslots; i++) {
        for (cvx_mclock_sub_t *s = c->slots[i]; s != NULL; s = s->next)
            s->active = 0;
        c->slots[i] = NULL;
        c->count[i] = 0;
    }
    c->nsubs = 0;
    c->iter_next = NULL; /* closed from a tick: serve_slot must not go on to a dropped sub */
    c->on_closed = on_closed;
    uv_close((uv_handle_t *)&c->poll, on_poll_closed);
}

void cvx_mclock_add(cvx_mclock_t *c, cvx_mclock_sub_t *sub)
{
    if (sub->active)
        return;
    unsigned best = 0;
    for (unsigned i = 1; i < c->nslots; i++)
        if (c->count[i] < c->count[best])
            best = i;
    sub->slot = best;
    sub->prev = NULL;
    sub->next = c->slots[best];
    if (sub->next != NULL)
        sub->next->prev = sub;
    c->slots[best] = sub;
    c->count[best]++;
    sub->active = 1;

    uint64_t now = uv_hrtime();
    if (c->nsubs++ == 0) {
        /* First subscriber: the schedule starts one slot from now. */
        c->base_ns = now - (c->period_ns * best) / c->nslots + c->period_ns / c->nslots;
        c->next_slot = best;
        arm(c, slot_deadline(c, best));
        return;
    }
    /* The clock runs.  A slot already served in this period is reached after the period
     * ends; one still ahead of the scheduled slot in this period is served first. */
    uint64_t dnew = slot_deadline(c, best);
    if (dnew > now && dnew < slot_deadline(c, c->next_slot)) {
        c->next_slot = best;
        arm(c, dnew);
    }
}

void cvx_mclock_remove(cvx_mclock_t *c, cvx_mclock_sub_t *sub)
{
    if (!sub->active)
        return;
    if (c->iter_next == sub)
        c->iter_next = sub->next;
    if (sub->prev != NULL)
        sub->prev->next = sub->next;
    else
        c->slots[sub->slot] = sub->next;
    if (sub->next != NULL)
        sub->next->prev = sub->prev;
    sub->next = sub->prev = NULL;
    sub->active = 0;
    c->count[sub->slot]--;
    c->nsubs--;
    if (c->nsubs == 0)
        disarm(c);
}

uint64_t cvx_mclock_quantile(const cvx_mclock_stats_t *s, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < CVX_MCLOCK_HIST; i++)
        total += s->hist[i];
    if (total == 0)
        return 0;
    /* Nearest rank: the smallest lateness that at least q of the ticks did not exceed, i.e.
     * the ceil(q * total)-th sample (1-based).  The small tolerance keeps 0.99 * 100 from
     * rounding up to the 100th sample. */
    double r = (q < 1 ? q : 1) * (double)total;
    uint64_t rank = r <= 0 ? 0 : (uint64_t)r;
    if (r > 0 && (double)rank < r - 1e-9)
        rank++;
    uint64_t want = rank > 0 ? rank - 1 : 0;
    if (want >= total)
        want = total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < CVX_MCLOCK_HIST; i++) {
        seen += s->hist[i];
        if (seen > want)
            return i == CVX_MCLOCK_HIST - 1 ? s->late_max_ns : (uint64_t)(i + 1) * 10000;
    }
    return s->late_max_ns;
}

/*
 * The media clock on a real loop: absolute deadlines, never early, subscribers spread over
 * the slots, removal inside a tick, disarming, overruns skipped rather than replayed, and the
 * lateness quantiles.  Only ordering and correctness are asserted, never how fast it is.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/timerfd.h>

#include "cvx/error.h"
#include "cvx/mclock.h"
#include "cvx/reactor.h"

#define PERIOD_MS 20
#define PERIOD_NS (PERIOD_MS * 1000000ull)
#define MAXT      64

typedef struct tsub {
    cvx_mclock_sub_t sub; /* first: the tick callback casts back */
    cvx_mclock_t *clock;
    int n; /* ticks seen */
    uint64_t deadline[MAXT];
    uint64_t ran_at[MAXT];
    uint64_t wakeup[MAXT]; /* the clock's wake-up count when the tick ran */
    int remove_self_at;    /* remove itself at this tick (1-based), 0: never */
    struct tsub *victim;   /* remove this one ... */
    int remove_victim_at;  /* ... at this tick */
    int close_at;          /* close the clock at this tick */
    int burn_at;           /* busy-wait burn_ns at this tick */
    uint64_t burn_ns;
    uint64_t burn_end;
} tsub_t;

static int closed_calls;

static void on_clock_closed(cvx_mclock_t *c)
{
    (void)c;
    closed_calls++;
}

static void on_tick(cvx_mclock_sub_t *sub, uint64_t deadline)
{
    tsub_t *t = (tsub_t *)sub;
    uint64_t now = uv_hrtime();
    assert_true(t->n < MAXT);
    assert_int_equal(sub->active, 1);
    t->deadline[t->n] = deadline;
    t->ran_at[t->n] = now;
    t->wakeup[t->n] = t->clock->stats.wakeups;
    t->n++;
    if (t->burn_at == t->n) {
        while (uv_hrtime() - now < t->burn_ns)
            ;
        t->burn_end = uv_hrtime();
    }
    if (t->victim != NULL && t->remove_victim_at == t->n)
        cvx_mclock_remove(t->clock, &t->victim->sub);
    if (t->remove_self_at == t->n)
        cvx_mclock_remove(t->clock, sub);
    if (t->close_at == t->n)
        cvx_mclock_close(t->clock, on_clock_closed);
    else if (t->clock->nsubs == 0)
        cvx_mclock_close(t->clock, on_clock_closed);
}

static void sub_init(tsub_t *t, cvx_mclock_t *c)
{
    memset(t, 0, sizeof(*t));
    t->clock = c;
    t->sub.tick = on_tick;
    t->sub.data = t;
}

static void run(uv_loop_t *loop)
{
    closed_calls = 0;
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(closed_calls, 1);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_init_bounds(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, 9, 4), CVX_EINVAL);
    assert_int_equal(cvx_mclock_init(&loop, &c, 101, 4), CVX_EINVAL);
    assert_int_equal(cvx_mclock_init(&loop, &c, 20, 0), CVX_EINVAL);
    assert_int_equal(cvx_mclock_init(&loop, &c, 20, CVX_MCLOCK_MAX_SLOTS + 1), CVX_EINVAL);
    assert_int_equal(cvx_mclock_init(&loop, &c, 20, CVX_MCLOCK_MAX_SLOTS), 0);
    assert_int_equal(c.period_ns, PERIOD_NS);
    cvx_mclock_close(&c, on_clock_closed);
    run(&loop);
}

static void test_absolute_deadlines(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t s[4];
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 4), 0);
    for (int i = 0; i < 4; i++) {
        sub_init(&s[i], &c);
        s[i].remove_self_at = 12;
        cvx_mclock_add(&c, &s[i].sub);
        assert_int_equal(s[i].sub.slot, (unsigned)i); /* one per slot */
    }
    run(&loop);

    assert_int_equal(c.stats.ticks, 48);
    uint64_t phase0 = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s[i].n, 12);
        /* The slot's offset in the period, measured from any one deadline. */
        uint64_t phase = (s[i].deadline[0] - PERIOD_NS * s[i].sub.slot / 4) % PERIOD_NS;
        if (i == 0)
            phase0 = phase;
        assert_int_equal(phase, phase0);
        for (int k = 0; k < s[i].n; k++) {
            assert_true(s[i].ran_at[k] >= s[i].deadline[k]); /* never early */
            if (k == 0)
                continue;
            uint64_t step = s[i].deadline[k] - s[i].deadline[k - 1];
            assert_true(s[i].deadline[k] > s[i].deadline[k - 1]);
            /* Absolute: whole periods, exactly one unless the loop was held up. */
            assert_int_equal(step % PERIOD_NS, 0);
            if (c.stats.overruns == 0)
                assert_int_equal(step, PERIOD_NS);
        }
    }
}

static void assert_balanced(const cvx_mclock_t *c, unsigned want_total)
{
    unsigned lo = ~0u, hi = 0, total = 0;
    for (unsigned i = 0; i < c->nslots; i++) {
        unsigned n = 0;
        for (cvx_mclock_sub_t *s = c->slots[i]; s != NULL; s = s->next) {
            assert_int_equal(s->slot, i);
            n++;
        }
        assert_int_equal(n, c->count[i]);
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
        total += n;
    }
    assert_int_equal(total, want_total);
    assert_int_equal(c->nsubs, want_total);
    assert_true(hi - lo <= 1);
}

static void test_spread_and_disarm(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t s[10];
    struct itimerspec its;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 4), 0);
    assert_int_equal(c.armed, 0);
    for (unsigned i = 0; i < 10; i++) {
        sub_init(&s[i], &c);
        cvx_mclock_add(&c, &s[i].sub);
        assert_balanced(&c, i + 1);
        assert_int_equal(c.armed, 1);
    }
    /* Adding twice is ignored. */
    cvx_mclock_add(&c, &s[0].sub);
    assert_balanced(&c, 10);
    /* Empty one slot, then add three: they go where the room is. */
    unsigned slot = s[0].sub.slot, removed = 0;
    for (int i = 0; i < 10; i++) {
        if (s[i].sub.slot == slot) {
            cvx_mclock_remove(&c, &s[i].sub);
            assert_int_equal(s[i].sub.active, 0);
            removed++;
        }
    }
    assert_int_equal(c.count[slot], 0);
    for (int i = 0; i < 10 && removed > 0; i++) {
        if (!s[i].sub.active) {
            cvx_mclock_add(&c, &s[i].sub);
            assert_int_equal(s[i].sub.slot, slot);
            removed--;
        }
    }
    assert_balanced(&c, 10);
    /* Removing every subscriber disarms the timer. */
    for (int i = 0; i < 10; i++) {
        cvx_mclock_remove(&c, &s[i].sub);
        cvx_mclock_remove(&c, &s[i].sub); /* twice: ignored */
    }
    assert_int_equal(c.nsubs, 0);
    assert_int_equal(c.armed, 0);
    assert_int_equal(timerfd_gettime(c.fd, &its), 0);
    assert_int_equal(its.it_value.tv_sec, 0);
    assert_int_equal(its.it_value.tv_nsec, 0);
    cvx_mclock_close(&c, on_clock_closed);
    run(&loop);
    assert_int_equal(c.stats.ticks, 0);
}

static void test_remove_inside_tick(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t a, b, x;
    assert_int_equal(cvx_loop_init(&loop), 0);
    /* One slot: all three are served in one list, most recently added first: a, b, x. */
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 1), 0);
    sub_init(&a, &c);
    sub_init(&b, &c);
    sub_init(&x, &c);
    cvx_mclock_add(&c, &x.sub);
    cvx_mclock_add(&c, &b.sub);
    cvx_mclock_add(&c, &a.sub);
    /* a removes b, the next in the iteration, at its second tick: b never ticks again, not
     * even in that round.  x removes itself at its third; a itself at its fifth. */
    a.victim = &b;
    a.remove_victim_at = 2;
    a.remove_self_at = 5;
    x.remove_self_at = 3;
    run(&loop);
    assert_int_equal(a.n, 5);
    assert_int_equal(b.n, 1);
    assert_int_equal(x.n, 3);
    assert_int_equal(c.stats.ticks, 9);
    /* Rounds stay whole periods apart for the survivors. */
    for (int k = 1; k < a.n; k++)
        assert_int_equal((a.deadline[k] - a.deadline[k - 1]) % PERIOD_NS, 0);
    assert_int_equal(x.deadline[2], a.deadline[2]);
}

static void test_close_inside_tick(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t a, b;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 1), 0);
    sub_init(&a, &c);
    sub_init(&b, &c);
    cvx_mclock_add(&c, &b.sub);
    cvx_mclock_add(&c, &a.sub); /* served first */
    a.close_at = 2;
    run(&loop);
    /* Closing drops every subscriber: b is not served after a closed the clock. */
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.sub.active, 0);
}

static void check_disarmed(uv_timer_t *t)
{
    cvx_mclock_t *c = t->data;
    struct itimerspec its;
    /* The tick removed the last subscriber and returned; the timerfd must be disarmed. */
    assert_int_equal(c->nsubs, 0);
    assert_int_equal(c->armed, 0);
    assert_int_equal(timerfd_gettime(c->fd, &its), 0);
    assert_int_equal(its.it_value.tv_sec, 0);
    assert_int_equal(its.it_value.tv_nsec, 0);
    cvx_mclock_close(c, on_clock_closed);
    uv_close((uv_handle_t *)t, NULL);
}

static uv_timer_t check_timer;

static void remove_and_check(cvx_mclock_sub_t *sub, uint64_t deadline)
{
    tsub_t *t = (tsub_t *)sub;
    (void)deadline;
    if (++t->n == 3) {
        cvx_mclock_remove(t->clock, sub);
        uv_timer_start(&check_timer, check_disarmed, 0, 0);
    }
}

static void test_last_removed_in_tick_disarms(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t a;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 4), 0);
    assert_int_equal(uv_timer_init(&loop, &check_timer), 0);
    check_timer.data = &c;
    sub_init(&a, &c);
    a.sub.tick = remove_and_check;
    cvx_mclock_add(&c, &a.sub);
    run(&loop);
    assert_int_equal(a.n, 3);
}

static void test_overrun_skips_periods(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_mclock_t c;
    tsub_t a, b;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_mclock_init(&loop, &c, PERIOD_MS, 2), 0);
    sub_init(&a, &c);
    sub_init(&b, &c);
    /* a holds the loop up for more than two periods at its third tick. */
    a.burn_at = 3;
    a.burn_ns = 2 * PERIOD_NS + PERIOD_NS / 2;
    a.remove_self_at = 10;
    b.remove_self_at = 10;
    cvx_mclock_add(&c, &a.sub);
    cvx_mclock_add(&c, &b.sub);
    assert_int_not_equal(a.sub.slot, b.sub.slot);
    run(&loop);

    assert_true(c.stats.overruns >= 1);
    assert_int_equal(a.n, 10);
    assert_int_equal(b.n, 10);
    const tsub_t *subs[] = {&a, &b};
    int after = 0;
    for (int i = 0; i < 2; i++) {
        const tsub_t *t = subs[i];
        for (int k = 0; k < t->n; k++) {
            assert_true(t->ran_at[k] >= t->deadline[k]);
            if (k > 0) {
                /* Still on the absolute schedule. */
                assert_true(t->deadline[k] > t->deadline[k - 1]);
                assert_int_equal((t->deadline[k] - t->deadline[k - 1]) % PERIOD_NS, 0);
            }
            /* No burst of catch-up ticks: a tick served after the stall is for a deadline
             * at most one period before the stall ended, never one that passed during it. */
            if (t->ran_at[k] >= a.burn_end) {
                assert_true(t->deadline[k] + PERIOD_NS >= a.burn_end);
                after++;
            }
        }
    }
    assert_true(after >= 7);
    /* a's next tick skipped the periods the loop was held up for. */
    assert_true(a.deadline[3] - a.deadline[2] >= 2 * PERIOD_NS);
}

static void test_quantile(void **state)
{
    (void)state;
    cvx_mclock_stats_t s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(cvx_mclock_quantile(&s, 0.5), 0);

    /* 99 ticks under 10 us and one at 5.004 ms: the 99th percentile is the bucket of the
     * 99th sample, not the outlier. */
    s.hist[0] = 99;
    s.hist[500] = 1;
    s.late_max_ns = 5004000;
    assert_int_equal(cvx_mclock_quantile(&s, 0.0), 10000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.5), 10000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.99), 10000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.995), 5010000);
    assert_int_equal(cvx_mclock_quantile(&s, 1.0), 5010000);

    /* One sample in each of the first ten buckets. */
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < 10; i++)
        s.hist[i] = 1;
    s.late_max_ns = 95000;
    assert_int_equal(cvx_mclock_quantile(&s, 0.1), 10000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.5), 50000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.55), 60000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.9), 90000);
    assert_int_equal(cvx_mclock_quantile(&s, 0.95), 100000);
    assert_int_equal(cvx_mclock_quantile(&s, 1.0), 100000);

    /* The last bucket is open-ended: its answer is the maximum seen. */
    memset(&s, 0, sizeof(s));
    s.hist[3] = 1;
    s.hist[CVX_MCLOCK_HIST - 1] = 1;
    s.late_max_ns = 40000000;
    assert_int_equal(cvx_mclock_quantile(&s, 0.5), 40000);
    assert_int_equal(cvx_mclock_quantile(&s, 1.0), 40000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_bounds),
        cmocka_unit_test(test_absolute_deadlines),
        cmocka_unit_test(test_spread_and_disarm),
        cmocka_unit_test(test_remove_inside_tick),
        cmocka_unit_test(test_close_inside_tick),
        cmocka_unit_test(test_last_removed_in_tick_disarms),
        cmocka_unit_test(test_overrun_skips_periods),
        cmocka_unit_test(test_quantile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

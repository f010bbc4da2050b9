/*
 * The loop-stall watchdog: a callback that holds the loop is counted as a stall, named by
 * cvx_loop_doing(), and logged; cvx_watchdog_resync() keeps time spent outside the loop's
 * wait (a signal wake-up on libuv 1.44) from being counted as work.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cvx/log.h"
#include "cvx/reactor.h"

#define MS 1000000ull

static void spin(uint64_t ns)
{
    uint64_t t0 = uv_hrtime();
    while (uv_hrtime() - t0 < ns)
        ;
}

static char logged[16][512];
static int nlogged;

static void sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    (void)level;
    if (nlogged < 16)
        snprintf(logged[nlogged++], sizeof(logged[0]), "%s", line);
}

static void quick(uv_timer_t *t)
{
    (void)t;
}

/* Runs one short timer through the loop: one measured iteration of almost no work. */
static void run_once_more(uv_loop_t *loop, uv_timer_t *t)
{
    assert_int_equal(uv_timer_start(t, quick, 1, 0), 0);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void burn(uv_timer_t *t)
{
    (void)t;
    cvx_loop_doing("small");
    spin(1 * MS);
    cvx_loop_doing("burn");
    spin(30 * MS);
    cvx_loop_doing(NULL);
    spin(2 * MS); /* unmarked work after the section: counted in busy, not in the section */
}

static void test_stall_named(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_watchdog_t wd;
    uv_timer_t t;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_null(cvx_watchdog_current());
    /* 25 ms: over the threshold with the 30 ms burn, and out of reach of the scheduler's
     * usual preemptions on a loaded machine. */
    assert_int_equal(cvx_watchdog_start(&wd, &loop, 25), 0);
    assert_ptr_equal(cvx_watchdog_current(), &wd);
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    /* The first iteration only starts the measurement: run one before the burn. */
    run_once_more(&loop, &t);
    assert_true(wd.last_ns != 0);
    assert_int_equal(uv_timer_start(&t, burn, 0, 0), 0);
    nlogged = 0;
    assert_int_equal(cvx_log_add_sink(sink, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cvx_log_remove_sink(sink, NULL);

    /* The burn is the stall (an unlucky preemption elsewhere may add a shorter one). */
    assert_true(wd.stalls >= 1);
    assert_string_equal(wd.worst[0].what, "burn");
    assert_true(wd.worst[0].section_ns >= 30 * MS);
    assert_true(wd.worst[0].busy_ns >= 33 * MS);
    assert_true(wd.worst[0].busy_ns >= wd.worst[0].section_ns);
    assert_true(wd.busy_max_ns >= 33 * MS);
    /* The histogram counted that iteration in the 20..50 ms bucket or above. */
    uint64_t high = 0, all = 0;
    for (int i = 0; i < 8; i++) {
        all += wd.hist[i];
        if (i >= 5)
            high += wd.hist[i];
    }
    assert_int_equal(all, wd.iterations);
    assert_true(high >= 1);

    /* The warning names the section. */
    int named = 0;
    char head[] = "warning: reactor: loop iteration took ";
    for (int i = 0; i < nlogged; i++) {
        assert_memory_equal(logged[i], head, strlen(head));
        named += strstr(logged[i], " ms (longest section: burn, ") != NULL;
    }
    assert_int_equal(named, 1);

    cvx_watchdog_stop(&wd);
    assert_null(cvx_watchdog_current());
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* With no watchdog, marking sections is harmless. */
    cvx_loop_doing("nothing");
    cvx_loop_doing(NULL);
}

static void test_resync(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_watchdog_t wd;
    uv_timer_t t;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_watchdog_start(&wd, &loop, 50), 0);
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    run_once_more(&loop, &t);
    assert_int_equal(wd.stalls, 0);

    /* Time spent outside the wait that the idle metric does not see is counted as work ... */
    spin(80 * MS);
    run_once_more(&loop, &t);
    assert_int_equal(wd.stalls, 1);
    assert_string_equal(wd.worst[0].what, "unmarked work");
    assert_true(wd.worst[0].busy_ns >= 80 * MS);

    /* ... unless the measurement is restarted first, as signal callbacks do. */
    spin(80 * MS);
    cvx_watchdog_resync(&wd);
    uint64_t iterations = wd.iterations;
    run_once_more(&loop, &t);
    assert_true(wd.iterations > iterations);
    assert_int_equal(wd.stalls, 1);

    cvx_watchdog_stop(&wd);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void busy_each(uv_timer_t *t)
{
    int *n = t->data;
    spin((uint64_t)(15 + 5 * *n) * MS); /* 15, 20, 25 ... ms */
    if (++*n == CVX_WATCHDOG_WORST + 2)
        uv_timer_stop(t);
}

static void test_worst_sorted(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx_watchdog_t wd;
    uv_timer_t t;
    int n = 0;
    assert_int_equal(cvx_loop_init(&loop), 0);
    assert_int_equal(cvx_watchdog_start(&wd, &loop, 10), 0);
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    run_once_more(&loop, &t); /* the first iteration only starts the measurement */
    t.data = &n;
    assert_int_equal(uv_timer_start(&t, busy_each, 1, 1), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(wd.stalls >= CVX_WATCHDOG_WORST + 2);
    /* Only the worst are kept, longest first. */
    for (int i = 1; i < CVX_WATCHDOG_WORST; i++)
        assert_true(wd.worst[i - 1].busy_ns >= wd.worst[i].busy_ns);
    assert_true(wd.worst[CVX_WATCHDOG_WORST - 1].busy_ns >= 25 * MS);
    cvx_watchdog_stop(&wd);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stall_named),
        cmocka_unit_test(test_resync),
        cmocka_unit_test(test_worst_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

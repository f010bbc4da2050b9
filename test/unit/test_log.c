/*
 * Logging: the level is checked before any argument is evaluated, the call context format,
 * order through the logging thread, flush, dropping when the queue is full, level names, and
 * Sofia-SIP's and spandsp's own output routed into the log.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sofia-sip/su_log.h>
#include <spandsp.h>

#include "cvx/error.h"
#include "cvx/log.h"

/* --- a sink that keeps lines ----------------------------------------------------------- */

#define KEEP 64

static pthread_mutex_t kept_mutex = PTHREAD_MUTEX_INITIALIZER;
static char kept[KEEP][2100];
static cvx_log_level_t kept_level[KEEP];
static int nkept;

static void keep_sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    pthread_mutex_lock(&kept_mutex);
    if (nkept < KEEP) {
        snprintf(kept[nkept], sizeof(kept[0]), "%s", line);
        kept_level[nkept] = level;
        nkept++;
    }
    pthread_mutex_unlock(&kept_mutex);
}

static void keep_start(void)
{
    nkept = 0;
    assert_int_equal(cvx_log_add_sink(keep_sink, NULL), 0);
}

static void keep_stop(void)
{
    cvx_log_flush();
    cvx_log_remove_sink(keep_sink, NULL);
}

/* stderr to /dev/null while thousands of lines are written. */
static int saved_stderr = -1;

static void quiet(void)
{
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open("/dev/null", O_WRONLY);
    assert_true(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

static void loud(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
}

/* --- tests ------------------------------------------------------------------------------ */

static int evaluated;

static int side_effect(void)
{
    return ++evaluated;
}

static void test_level_checked_first(void **state)
{
    (void)state;
    keep_start();
    cvx_log_set_level(CVX_LOG_WARN);
    assert_int_equal(cvx_log_get_level(), CVX_LOG_WARN);
    evaluated = 0;
    cvx_debug("debug %d", side_effect());
    cvx_info("info %d", side_effect());
    cvx_notice("notice %d", side_effect());
    cvx_log_ctx_t ctx = {"c1", NULL, NULL};
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "ctx %d", side_effect());
    assert_int_equal(evaluated, 0);
    cvx_warn("warn %d", side_effect());
    cvx_error("error %d", side_effect());
    assert_int_equal(evaluated, 2);
    keep_stop();
    assert_int_equal(nkept, 2);
    assert_string_equal(kept[0], "warning: warn 1");
    assert_int_equal(kept_level[0], CVX_LOG_WARN);
    assert_string_equal(kept[1], "error: error 2");

    /* Out-of-range levels are ignored. */
    cvx_log_set_level((cvx_log_level_t)42);
    assert_int_equal(cvx_log_get_level(), CVX_LOG_WARN);
    cvx_log_set_level(CVX_LOG_TRACE);
    assert_true(cvx_log_enabled(CVX_LOG_TRACE));
    cvx_log_set_level(CVX_LOG_INFO);
    assert_false(cvx_log_enabled(CVX_LOG_DEBUG));
}

static void test_level_names(void **state)
{
    (void)state;
    static const char *const names[] = {"error", "warning", "notice", "info", "debug", "trace"};
    for (int l = CVX_LOG_ERROR; l <= CVX_LOG_TRACE; l++) {
        assert_string_equal(cvx_log_level_name((cvx_log_level_t)l), names[l]);
        assert_int_equal(cvx_log_level_from_name(names[l]), l);
    }
    assert_int_equal(cvx_log_level_from_name("warn"), CVX_LOG_WARN);
    assert_int_equal(cvx_log_level_from_name("verbose"), -1);
    assert_int_equal(cvx_log_level_from_name(""), -1);
    assert_int_equal(cvx_log_level_from_name("INFO"), -1);
    assert_string_equal(cvx_log_level_name((cvx_log_level_t)6), "?");
}

static void test_context_format(void **state)
{
    (void)state;
    cvx_log_set_level(CVX_LOG_INFO);
    keep_start();
    cvx_log_ctx_t full = {"box1-17", "null:a", "answering"};
    cvx_log_ctx(CVX_LOG_INFO, &full, "answered after %d ms", 5);
    cvx_log_ctx_t call = {"box1-18", NULL, NULL};
    cvx_log_ctx(CVX_LOG_NOTICE, &call, "ringing");
    cvx_log_ctx_t inst = {NULL, "sip:pbx1", NULL};
    cvx_log_ctx(CVX_LOG_WARN, &inst, "line down");
    cvx_log_ctx_t doing = {NULL, NULL, "loading modules"};
    cvx_log_ctx(CVX_LOG_ERROR, &doing, "out of memory");
    cvx_log_ctx_t none = {NULL, NULL, NULL};
    cvx_log_ctx(CVX_LOG_INFO, &none, "plain");
    cvx_info("no context");
    keep_stop();
    assert_int_equal(nkept, 6);
    assert_string_equal(kept[0], "info: [call=box1-17 inst=null:a] answered after 5 ms, while "
                                 "answering");
    assert_string_equal(kept[1], "notice: [call=box1-18] ringing");
    assert_string_equal(kept[2], "warning: [inst=sip:pbx1] line down");
    assert_string_equal(kept[3], "error: out of memory, while loading modules");
    assert_string_equal(kept[4], "info: plain");
    assert_string_equal(kept[5], "info: no context");

    /* An over-long message is cut, never overflowing. */
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    keep_start();
    cvx_log_ctx(CVX_LOG_INFO, &full, "%s", big);
    keep_stop();
    free(big);
    assert_int_equal(nkept, 1);
    assert_int_equal(strlen(kept[0]), 2047);
    assert_memory_equal(kept[0], "info: [call=box1-17 inst=null:a] xxx", 36);
}

/* Lines from several threads: each thread's lines arrive in order, none lost. */
#define THREADS 4
#define LINES   2000

static int order_next[THREADS];
static int order_bad, order_count;

static void order_sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    (void)level;
    int t, n;
    if (sscanf(line, "info: order t%d n%d", &t, &n) != 2 || t < 0 || t >= THREADS)
        return;
    if (n != order_next[t])
        order_bad++;
    order_next[t] = n + 1;
    order_count++;
}

static void *write_lines(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int n = 0; n < LINES; n++)
        cvx_info("order t%d n%d", t, n);
    return NULL;
}

static void test_thread_order_and_flush(void **state)
{
    (void)state;
    cvx_log_set_level(CVX_LOG_INFO);
    assert_int_equal(cvx_log_start(CVX_LOG_TO_STDERR, "test_log"), 0);
    assert_int_equal(cvx_log_start(CVX_LOG_TO_STDERR, "test_log"), CVX_ESTATE);
    cvx_log_stats_t before, after;
    cvx_log_get_stats(&before);
    assert_int_equal(cvx_log_add_sink(order_sink, NULL), 0);
    quiet();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, write_lines, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    /* Flush returns once everything queued so far has been written: no waiting needed. */
    cvx_log_flush();
    loud();
    cvx_log_remove_sink(order_sink, NULL);
    assert_int_equal(order_count, THREADS * LINES);
    assert_int_equal(order_bad, 0);
    cvx_log_get_stats(&after);
    assert_int_equal(after.written - before.written, THREADS * LINES);
    assert_int_equal(after.dropped, before.dropped);

    /* One thread's lines, interleaved with context lines, in exact order. */
    keep_start();
    for (int i = 0; i < 20; i++) {
        cvx_log_ctx_t ctx = {"c", NULL, NULL};
        if (i % 2)
            cvx_log_ctx(CVX_LOG_INFO, &ctx, "line %d", i);
        else
            cvx_info("line %d", i);
    }
    cvx_log_flush();
    assert_int_equal(nkept, 20);
    for (int i = 0; i < 20; i++) {
        char want[64];
        snprintf(want, sizeof(want), i % 2 ? "info: [call=c] line %d" : "info: line %d", i);
        assert_string_equal(kept[i], want);
    }
    keep_stop();
    cvx_log_stop();
    cvx_log_stop(); /* twice: harmless */

    /* After stop, lines are written synchronously: seen before the call returns. */
    keep_start();
    cvx_info("after stop");
    assert_int_equal(nkept, 1);
    assert_string_equal(kept[0], "info: after stop");
    keep_stop();
}

static void test_library_bridge(void **state)
{
    (void)state;
    cvx_log_bridge_libraries();
    cvx_log_set_level(CVX_LOG_DEBUG);
    assert_int_equal(cvx_log_start(CVX_LOG_TO_STDERR, "test_log"), 0);
    keep_start();

    /* Sofia-SIP: whole lines, and a line formatted in pieces. */
    su_llog(su_log_default, 0, "hello %s\n", "sip");
    su_llog(su_log_default, 0, "part %d, ", 1);
    su_llog(su_log_default, 0, "part %d\n", 2);
    /* Several lines in one call, as tport's message dumps come: one log line each. */
    su_llog(su_log_default, 0, "%s   ---\n", "recv 12 bytes from udp/[127.0.0.1]:5060:\n");
    su_llog(su_log_default, 0, "INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\nrest");
    su_llog(su_log_default, 0, " of it\n");

    /* spandsp: a logging state initialised with the default message handler. */
    logging_state_t *ls = span_log_init(NULL, SPAN_LOG_DEBUG_3, "test");
    assert_non_null(ls);
    span_log(ls, SPAN_LOG_WARNING, "tone %d detected\n", 7);
    span_log(ls, SPAN_LOG_ERROR, "cannot %s\n", "decode");
    span_log(ls, SPAN_LOG_FLOW | SPAN_LOG_SUPPRESS_LABELLING, "flow step\n");
    span_log(ls, SPAN_LOG_DEBUG_3, "too detailed for debug\n");
    span_log_free(ls);

    keep_stop();
    cvx_log_stop();
    cvx_log_set_level(CVX_LOG_INFO);

    assert_int_equal(nkept, 10);
    assert_string_equal(kept[0], "debug: sofia-sip: hello sip");
    assert_int_equal(kept_level[0], CVX_LOG_DEBUG);
    assert_string_equal(kept[1], "debug: sofia-sip: part 1, part 2");
    assert_string_equal(kept[2], "debug: sofia-sip: recv 12 bytes from udp/[127.0.0.1]:5060:");
    assert_string_equal(kept[3], "debug: sofia-sip:    ---");
    assert_string_equal(kept[4], "debug: sofia-sip: INVITE sip:a@b SIP/2.0");
    assert_string_equal(kept[5], "debug: sofia-sip: Via: x");
    assert_string_equal(kept[6], "debug: sofia-sip: rest of it");
    assert_string_equal(kept[7], "warning: spandsp: tone 7 detected");
    assert_int_equal(kept_level[7], CVX_LOG_WARN);
    assert_string_equal(kept[8], "error: spandsp: cannot decode");
    assert_string_equal(kept[9], "debug: spandsp: flow step");
    assert_int_equal(kept_level[9], CVX_LOG_DEBUG);

    /* A line longer than the bridge's buffer is cut rather than held back. */
    char *longline = malloc(1501);
    assert_non_null(longline);
    memset(longline, 'y', 1500);
    longline[1500] = '\0';
    cvx_log_set_level(CVX_LOG_DEBUG);
    keep_start();
    su_llog(su_log_default, 0, "%s", longline);
    su_llog(su_log_default, 0, "tail\n");
    keep_stop();
    free(longline);
    assert_int_equal(nkept, 2);
    assert_int_equal(strlen(kept[0]), strlen("debug: sofia-sip: ") + 1023);
    assert_string_equal(kept[1], "debug: sofia-sip: tail");
    cvx_log_set_level(CVX_LOG_INFO);

    /* Below the threshold, nothing comes through. */
    keep_start();
    su_llog(su_log_default, 0, "quiet sofia\n");
    ls = span_log_init(NULL, SPAN_LOG_DEBUG, "test");
    span_log(ls, SPAN_LOG_FLOW, "quiet spandsp\n");
    span_log_free(ls);
    keep_stop();
    assert_int_equal(nkept, 0);
}

/* A sink that holds the logging thread until released, to fill the queue. */
static pthread_mutex_t gate_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_entered;

static void gate_sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    (void)level;
    (void)line;
    pthread_mutex_lock(&gate_mutex);
    gate_entered = 1;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_mutex);
    pthread_mutex_unlock(&gate_mutex);
}

static void test_full_queue_drops(void **state)
{
    (void)state;
    const int total = 16384 + 500;
    cvx_log_set_level(CVX_LOG_INFO);
    assert_int_equal(cvx_log_start(CVX_LOG_TO_STDERR, "test_log"), 0);
    cvx_log_stats_t before, after;
    cvx_log_get_stats(&before);
    assert_int_equal(before.dropped, 0);
    assert_int_equal(cvx_log_add_sink(gate_sink, NULL), 0);
    quiet();
    cvx_info("first");
    /* Wait until the logging thread is stuck in the sink with the first line. */
    pthread_mutex_lock(&gate_mutex);
    while (!gate_entered)
        pthread_cond_wait(&gate_cond, &gate_mutex);
    pthread_mutex_unlock(&gate_mutex);
    /* The writer never blocks: lines beyond the queue's room are dropped and counted. */
    for (int i = 1; i < total; i++)
        cvx_info("line %d", i);
    cvx_log_get_stats(&after);
    assert_true(after.dropped >= 500 - 1);
    pthread_mutex_lock(&gate_mutex);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_mutex);
    cvx_log_flush();
    loud();
    cvx_log_remove_sink(gate_sink, NULL);
    cvx_log_get_stats(&after);
    assert_int_equal((after.written - before.written) + after.dropped, (uint64_t)total);

    /* Stopping says how many were lost. */
    keep_start();
    cvx_log_stop();
    assert_int_equal(nkept, 1);
    char want[128];
    snprintf(want, sizeof(want), "warning: log: %llu lines were dropped because the queue was full",
             (unsigned long long)after.dropped);
    assert_string_equal(kept[0], want);
    keep_stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_checked_first), cmocka_unit_test(test_level_names),
        cmocka_unit_test(test_context_format),      cmocka_unit_test(test_thread_order_and_flush),
        cmocka_unit_test(test_library_bridge),      cmocka_unit_test(test_full_queue_drops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

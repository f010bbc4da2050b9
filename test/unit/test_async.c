/*
 * The cross-thread completion queue: jobs posted by several threads each run exactly once, on
 * the loop thread, in posting order per thread, however the wake-ups coalesce; closing runs
 * the jobs still queued.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/reactor.h"

#define THREADS 4
#define JOBS    5000

typedef struct job {
    cvx_async_job_t job; /* first: the callback casts back */
    int thread;
    int seq;
    int runs;
} job_t;

typedef struct ctx {
    uv_loop_t loop;
    cvx_async_queue_t q;
    pthread_t loop_thread;
    job_t *jobs; /* THREADS * JOBS */
    int next_seq[THREADS];
    int done;
    int wrong_thread, out_of_order;
    int closed;
} ctx_t;

static ctx_t *cur;

typedef struct poster {
    ctx_t *c;
    int thread;
} poster_t;

static void run_job(cvx_async_job_t *j)
{
    job_t *job = (job_t *)j;
    ctx_t *c = cur;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread++;
    if (job->seq != c->next_seq[job->thread])
        c->out_of_order++;
    c->next_seq[job->thread] = job->seq + 1;
    job->runs++;
    if (++c->done == THREADS * JOBS)
        uv_stop(&c->loop);
}

static void *post_many(void *arg)
{
    poster_t *p = arg;
    for (int i = 0; i < JOBS; i++) {
        job_t *job = &p->c->jobs[p->thread * JOBS + i];
        job->thread = p->thread;
        job->seq = i;
        cvx_async_queue_post(&p->c->q, &job->job, run_job);
    }
    return NULL;
}

static void on_closed(cvx_async_queue_t *q)
{
    (void)q;
    cur->closed++;
}

static void test_many_threads(void **state)
{
    (void)state;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    cur = &c;
    c.jobs = calloc(THREADS * JOBS, sizeof(job_t));
    assert_non_null(c.jobs);
    c.loop_thread = pthread_self();
    assert_int_equal(cvx_loop_init(&c.loop), 0);
    assert_int_equal(cvx_async_queue_init(&c.loop, &c.q), 0);

    pthread_t th[THREADS];
    poster_t p[THREADS];
    for (int i = 0; i < THREADS; i++) {
        p[i].c = &c;
        p[i].thread = i;
        assert_int_equal(pthread_create(&th[i], NULL, post_many, &p[i]), 0);
    }
    /* The loop runs while the threads post; it stops when the last job has run. */
    uv_run(&c.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);

    assert_int_equal(c.done, THREADS * JOBS);
    assert_int_equal(c.wrong_thread, 0);
    assert_int_equal(c.out_of_order, 0);
    for (int i = 0; i < THREADS * JOBS; i++)
        assert_int_equal(c.jobs[i].runs, 1);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(c.next_seq[i], JOBS);
    assert_int_equal(c.q.posted, THREADS * JOBS);
    assert_int_equal(c.q.drained, THREADS * JOBS);
    assert_true(c.q.wakeups >= 1);
    assert_true(c.q.wakeups <= c.q.posted);

    cvx_async_queue_close(&c.q, on_closed);
    assert_int_equal(c.closed, 0); /* only from the close callback */
    assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.closed, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    /* Nothing ran twice, even during close. */
    for (int i = 0; i < THREADS * JOBS; i++)
        assert_int_equal(c.jobs[i].runs, 1);
    free(c.jobs);
}

static void test_close_runs_queued(void **state)
{
    (void)state;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    cur = &c;
    c.jobs = calloc(THREADS * JOBS, sizeof(job_t));
    assert_non_null(c.jobs);
    c.loop_thread = pthread_self();
    assert_int_equal(cvx_loop_init(&c.loop), 0);
    assert_int_equal(cvx_async_queue_init(&c.loop, &c.q), 0);

    /* Posted by other threads while the loop does not run. */
    pthread_t th[2];
    poster_t p[2];
    for (int i = 0; i < 2; i++) {
        p[i].c = &c;
        p[i].thread = i;
        assert_int_equal(pthread_create(&th[i], NULL, post_many, &p[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(c.done, 0);
    assert_int_equal(c.q.posted, 2 * JOBS);

    /* Close runs them all at once, on this (the loop) thread, in order. */
    cvx_async_queue_close(&c.q, on_closed);
    assert_int_equal(c.done, 2 * JOBS);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.wrong_thread, 0);
    assert_int_equal(c.q.drained, 2 * JOBS);
    assert_int_equal(c.closed, 0);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.done, 2 * JOBS); /* the pending wake-up ran nothing again */
    for (int i = 0; i < 2 * JOBS; i++)
        assert_int_equal(c.jobs[i].runs, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
    free(c.jobs);
}

/* A job that posts another from the loop thread: the new one runs in the same drain. */
static job_t chain[3];
static int chain_order[3], chain_n;
static uint64_t chain_wakeups;

static void run_chained(cvx_async_job_t *j)
{
    job_t *job = (job_t *)j;
    chain_order[chain_n++] = job->seq;
    if (job->seq < 2) {
        chain[job->seq + 1].seq = job->seq + 1;
        cvx_async_queue_post(&cur->q, &chain[job->seq + 1].job, run_chained);
    } else {
        chain_wakeups = cur->q.wakeups;
        cvx_async_queue_close(&cur->q, on_closed);
    }
}

static void test_post_from_a_job(void **state)
{
    (void)state;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    cur = &c;
    chain_n = 0;
    assert_int_equal(cvx_loop_init(&c.loop), 0);
    assert_int_equal(cvx_async_queue_init(&c.loop, &c.q), 0);
    chain[0].seq = 0;
    cvx_async_queue_post(&c.q, &chain[0].job, run_chained);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(chain_n, 3);
    assert_int_equal(chain_order[0], 0);
    assert_int_equal(chain_order[1], 1);
    assert_int_equal(chain_order[2], 2);
    assert_int_equal(chain_wakeups, 1); /* drained completely in one wake-up */
    assert_int_equal(c.closed, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
}

/* A job that posts another and then closes the queue, with one more job behind it in the
 * same batch: every job still runs, in posting order, before the close completes. */
static job_t batch[3];
static int batch_order[3], batch_n;

static void run_batch(cvx_async_job_t *j)
{
    job_t *job = (job_t *)j;
    batch_order[batch_n++] = job->seq;
    assert_int_equal(cur->closed, 0);
    if (job->seq == 0) {
        batch[2].seq = 2;
        cvx_async_queue_post(&cur->q, &batch[2].job, run_batch);
        cvx_async_queue_close(&cur->q, on_closed);
    }
}

static void test_close_from_a_job(void **state)
{
    (void)state;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    cur = &c;
    batch_n = 0;
    assert_int_equal(cvx_loop_init(&c.loop), 0);
    assert_int_equal(cvx_async_queue_init(&c.loop, &c.q), 0);
    batch[0].seq = 0;
    batch[1].seq = 1;
    cvx_async_queue_post(&c.q, &batch[0].job, run_batch);
    cvx_async_queue_post(&c.q, &batch[1].job, run_batch);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    assert_int_equal(batch_n, 3);
    assert_int_equal(batch_order[0], 0);
    assert_int_equal(batch_order[1], 1);
    assert_int_equal(batch_order[2], 2);
    assert_int_equal(c.q.drained, 3);
    assert_int_equal(c.closed, 1);
    assert_int_equal(uv_loop_close(&c.loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_threads),
        cmocka_unit_test(test_close_runs_queued),
        cmocka_unit_test(test_post_from_a_job),
        cmocka_unit_test(test_close_from_a_job),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

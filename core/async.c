/*
 * Completion queue from other threads to the loop.
 *
 * uv_async_send() coalesces: several posts may produce one callback, so the callback takes
 * the whole list each time and runs every job in posting order.
 */
#include "cvx/error.h"
#include "cvx/reactor.h"

static cvx_async_job_t *take_all(cvx_async_queue_t *q)
{
    pthread_mutex_lock(&q->mutex);
    cvx_async_job_t *jobs = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mutex);
    return jobs;
}

/* The queue whose jobs this thread is running.  A job that closes its own queue must not
 * start a second, nested drain: that would run jobs posted later before the rest of the
 * current batch.  The drain under way takes them, in order. */
static __thread cvx_async_queue_t *draining;

static void run_all(cvx_async_queue_t *q)
{
    cvx_async_queue_t *outer = draining;
    cvx_async_job_t *job;
    draining = q;
    while ((job = take_all(q)) != NULL) {
        while (job != NULL) {
            cvx_async_job_t *next = job->next;
            q->drained++;
            job->fn(job); /* may free job */
            job = next;
        }
    }
    draining = outer;
}

static void on_async(uv_async_t *h)
{
    cvx_async_queue_t *q = h->data;
    q->wakeups++;
    run_all(q);
}

int cvx_async_queue_init(uv_loop_t *loop, cvx_async_queue_t *q)
{
    q->head = q->tail = NULL;
    q->posted = q->drained = q->wakeups = 0;
    q->on_closed = NULL;
    int rc = pthread_mutex_init(&q->mutex, NULL);
    if (rc != 0)
        return cvx_from_errno(rc);
    rc = uv_async_init(loop, &q->async, on_async);
    if (rc != 0) {
        pthread_mutex_destroy(&q->mutex);
        return cvx_from_errno(-rc);
    }
    q->async.data = q;
    return 0;
}

void cvx_async_queue_post(cvx_async_queue_t *q, cvx_async_job_t *job, cvx_async_fn fn)
{
    job->fn = fn;
    job->next = NULL;
    pthread_mutex_lock(&q->mutex);
    if (q->tail != NULL)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->posted++;
    pthread_mutex_unlock(&q->mutex);
    uv_async_send(&q->async);
}

static void on_close(uv_handle_t *h)
{
    cvx_async_queue_t *q = h->data;
    pthread_mutex_destroy(&q->mutex);
    if (q->on_closed != NULL)
        q->on_closed(q);
}

void cvx_async_queue_close(cvx_async_queue_t *q, void (*on_closed)(cvx_async_queue_t *q))
{
    if (draining != q)
        run_all(q);
    q->on_closed = on_closed;
    uv_close((uv_handle_t *)&q->async, on_close);
}

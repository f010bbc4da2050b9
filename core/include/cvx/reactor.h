/*
 * The reactor: one libuv loop per process, on one thread, and the tools that keep it honest.
 *
 *  - cvx_watchdog_t measures every loop iteration's busy time (wall time minus the time spent
 *    waiting in the poll phase, from libuv's idle-time metric); iterations over the threshold
 *    (10 ms by default, half a packet time) are counted, the worst are kept and logged with
 *    the section that took longest, as named by cvx_loop_doing().
 *  - cvx_async_queue_t carries finished work from other threads to the loop: any thread
 *    posts, the loop drains the whole queue on each wake-up (uv_async_send coalesces).
 *
 * Thread: everything here belongs to the loop thread except cvx_async_queue_post().
 */
#ifndef CVX_REACTOR_H
#define CVX_REACTOR_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#define CVX_WATCHDOG_WORST 8

typedef struct cvx_stall {
    uint64_t busy_ns;    /* the iteration's busy time */
    uint64_t section_ns; /* the longest named section in it */
    const char *what;    /* that section's name (a static string), or "unmarked work" */
    uint64_t when_ms;    /* uv_now() of the iteration */
} cvx_stall_t;

typedef struct cvx_watchdog {
    uv_prepare_t prepare; /* owned; closed by cvx_watchdog_stop() */
    uv_loop_t *loop;
    uint64_t threshold_ns;
    uint64_t last_ns, last_idle_ns;
    uint64_t iterations;
    uint64_t stalls;
    uint64_t busy_max_ns;
    uint64_t hist[8]; /* busy time: <1, <2, <5, <10, <20, <50, <100, >=100 ms */
    cvx_stall_t worst[CVX_WATCHDOG_WORST]; /* sorted, longest first */
    uint64_t last_report_ms;
    uint64_t suppressed;
    /* The section being timed in the current iteration. */
    const char *cur_what;
    uint64_t cur_start_ns;
    const char *top_what;
    uint64_t top_ns;
} cvx_watchdog_t;

/* Starts measuring loop; the loop must have been configured with UV_METRICS_IDLE_TIME
 * (cvx_loop_init does).  threshold_ms is the stall threshold.  Returns 0 or CVX_E*. */
int cvx_watchdog_start(cvx_watchdog_t *wd, uv_loop_t *loop, unsigned threshold_ms);
void cvx_watchdog_stop(cvx_watchdog_t *wd);

/* Starts the current iteration's measurement now.  libuv 1.44 does not count a wait that a
 * signal ends as idle time, so uv_signal callbacks call this first; other wake-ups (I/O,
 * timers, uv_async) are measured correctly. */
void cvx_watchdog_resync(cvx_watchdog_t *wd);

/* Names the work that follows on the loop thread ("sip: su_root_step"); what must be a static
 * string.  Cheap: one clock read.  Call cvx_loop_doing(NULL) when the section ends. */
void cvx_loop_doing(const char *what);

/* The process's watchdog (the one cvx_loop_doing reports to), or NULL. */
cvx_watchdog_t *cvx_watchdog_current(void);

/* Initialises a loop with idle-time metrics on.  Returns 0 or CVX_E*. */
int cvx_loop_init(uv_loop_t *loop);

/* Closes every handle still open on loop, runs it until they are gone and closes it. */
void cvx_loop_close_all(uv_loop_t *loop);

/* --- work from other threads ---------------------------------------------------------- */

typedef struct cvx_async_job cvx_async_job_t;
typedef void (*cvx_async_fn)(cvx_async_job_t *job);

/* Embed in the object that carries the result; the queue does not own it. */
struct cvx_async_job {
    cvx_async_job_t *next;
    cvx_async_fn fn;
};

typedef struct cvx_async_queue {
    uv_async_t async;
    pthread_mutex_t mutex;
    cvx_async_job_t *head, *tail;
    uint64_t posted;  /* jobs posted (under mutex) */
    uint64_t drained; /* jobs run on the loop */
    uint64_t wakeups; /* async callbacks, fewer than posted when sends coalesce */
    void (*on_closed)(struct cvx_async_queue *q);
} cvx_async_queue_t;

int cvx_async_queue_init(uv_loop_t *loop, cvx_async_queue_t *q);
/* Any thread.  fn(job) later runs on the loop thread.  Never fails. */
void cvx_async_queue_post(cvx_async_queue_t *q, cvx_async_job_t *job, cvx_async_fn fn);
/* Loop thread.  Runs jobs still queued, then closes; on_closed (may be NULL) is called from
 * the close callback, after which q may be freed.  No thread may post after this call. */
void cvx_async_queue_close(cvx_async_queue_t *q, void (*on_closed)(cvx_async_queue_t *q));

#endif

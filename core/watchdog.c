/*
 * The loop-stall watchdog.
 *
 * libuv runs prepare handles once per iteration, just before it blocks in poll.  Between two
 * prepare callbacks the loop spent (wall time) = (time blocked in poll) + (time running
 * callbacks); the idle-time metric gives the first, so the difference is the work done in
 * that iteration.  A stall is work over the threshold.
 */
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/reactor.h"

static cvx_watchdog_t *current;

cvx_watchdog_t *cvx_watchdog_current(void)
{
    return current;
}

int cvx_loop_init(uv_loop_t *loop)
{
    int rc = uv_loop_init(loop);
    if (rc != 0)
        return cvx_from_errno(-rc);
    rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
    if (rc != 0) {
        uv_loop_close(loop);
        return cvx_from_errno(-rc);
    }
    return 0;
}

static void close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void cvx_loop_close_all(uv_loop_t *loop)
{
    uv_walk(loop, close_one, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

static void section_end(cvx_watchdog_t *wd, uint64_t now)
{
    if (wd->cur_what != NULL) {
        uint64_t d = now - wd->cur_start_ns;
        if (d > wd->top_ns) {
            wd->top_ns = d;
            wd->top_what = wd->cur_what;
        }
    }
}

void cvx_loop_doing(const char *what)
{
    cvx_watchdog_t *wd = current;
    if (wd == NULL)
        return;
    uint64_t now = uv_hrtime();
    section_end(wd, now);
    wd->cur_what = what;
    wd->cur_start_ns = now;
}

static unsigned bucket(uint64_t ns)
{
    static const uint64_t edges_ms[] = {1, 2, 5, 10, 20, 50, 100};
    for (unsigned i = 0; i < 7; i++)
        if (ns < edges_ms[i] * 1000000ull)
            return i;
    return 7;
}

static void record_stall(cvx_watchdog_t *wd, uint64_t busy)
{
    cvx_stall_t s = {busy, wd->top_ns, wd->top_what ? wd->top_what : "unmarked work",
                     uv_now(wd->loop)};
    int pos = CVX_WATCHDOG_WORST;
    while (pos > 0 && wd->worst[pos - 1].busy_ns < busy)
        pos--;
    if (pos < CVX_WATCHDOG_WORST) {
        memmove(&wd->worst[pos + 1], &wd->worst[pos],
                (CVX_WATCHDOG_WORST - pos - 1) * sizeof(cvx_stall_t));
        wd->worst[pos] = s;
    }
    /* At most one line a second, so a sick loop does not also flood the log. */
    if (s.when_ms - wd->last_report_ms >= 1000 || wd->last_report_ms == 0) {
        cvx_warn("reactor: loop iteration took %.1f ms (longest section: %s, %.1f ms)%s",
                 busy / 1e6, s.what, s.section_ns / 1e6, wd->suppressed ? "; more suppressed" : "");
        wd->last_report_ms = s.when_ms;
        wd->suppressed = 0;
    } else {
        wd->suppressed++;
    }
}

static void on_prepare(uv_prepare_t *h)
{
    cvx_watchdog_t *wd = h->data;
    uint64_t now = uv_hrtime();
    uint64_t idle = uv_metrics_idle_time(wd->loop);
    section_end(wd, now);
    if (wd->last_ns != 0) {
        uint64_t wall = now - wd->last_ns;
        uint64_t waited = idle - wd->last_idle_ns;
        uint64_t busy = wall > waited ? wall - waited : 0;
        wd->iterations++;
        wd->hist[bucket(busy)]++;
        if (busy > wd->busy_max_ns)
            wd->busy_max_ns = busy;
        if (busy > wd->threshold_ns) {
            wd->stalls++;
            record_stall(wd, busy);
        }
    }
    wd->last_ns = now;
    wd->last_idle_ns = idle;
    wd->cur_what = NULL;
    wd->top_what = NULL;
    wd->top_ns = 0;
}

void cvx_watchdog_resync(cvx_watchdog_t *wd)
{
    wd->last_ns = uv_hrtime();
    wd->last_idle_ns = uv_metrics_idle_time(wd->loop);
}

int cvx_watchdog_start(cvx_watchdog_t *wd, uv_loop_t *loop, unsigned threshold_ms)
{
    memset(wd, 0, sizeof(*wd));
    wd->loop = loop;
    wd->threshold_ns = (uint64_t)threshold_ms * 1000000ull;
    int rc = uv_prepare_init(loop, &wd->prepare);
    if (rc != 0)
        return cvx_from_errno(-rc);
    wd->prepare.data = wd;
    uv_prepare_start(&wd->prepare, on_prepare);
    /* The prepare handle must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&wd->prepare);
    current = wd;
    return 0;
}

void cvx_watchdog_stop(cvx_watchdog_t *wd)
{
    if (current == wd)
        current = NULL;
    if (!uv_is_closing((uv_handle_t *)&wd->prepare))
        uv_close((uv_handle_t *)&wd->prepare, NULL);
}

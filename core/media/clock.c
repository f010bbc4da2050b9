/*
 * The process-wide media clock: one cvx_mclock_t, created lazily on the first loop that asks
 * for it (the daemon's loop in callvoxd; a test's loop in tests).  Every RTP session and
 * every media operation subscribes to it, so all of the process's media is paced from one
 * timerfd and spread over the frame.
 */
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"

#define MEDIA_PERIOD_MS 20
#define MEDIA_SLOTS     CVX_MCLOCK_MAX_SLOTS

static cvx_mclock_t media_clock; /* static: nothing to free if the loop is torn down */
static int media_clock_up;

cvx_mclock_t *cvx_media_clock(uv_loop_t *loop)
{
    if (media_clock_up && media_clock.loop != loop &&
        uv_is_closing((uv_handle_t *)&media_clock.poll)) {
        /* The previous loop was torn down with its handles (a test's loop): start afresh. */
        if (media_clock.fd >= 0)
            close(media_clock.fd);
        media_clock_up = 0;
    }
    if (media_clock_up) {
        if (media_clock.loop != loop)
            return NULL; /* one reactor per process */
        return &media_clock;
    }
    int rc = cvx_mclock_init(loop, &media_clock, MEDIA_PERIOD_MS, MEDIA_SLOTS);
    if (rc != 0) {
        cvx_error("media: cannot create the media clock: %s", cvx_strerror(rc));
        return NULL;
    }
    media_clock_up = 1;
    return &media_clock;
}

cvx_mclock_t *cvx_media_clock_peek(void)
{
    return media_clock_up ? &media_clock : NULL;
}

static void clock_closed(cvx_mclock_t *c)
{
    (void)c;
    media_clock_up = 0;
}

void cvx_media_clock_close(void)
{
    if (media_clock_up && !uv_is_closing((uv_handle_t *)&media_clock.poll))
        cvx_mclock_close(&media_clock, clock_closed);
}

/*
 * The media core: what call flows do with a channel's audio, on any driver.
 *
 * Thread: loop thread only.  Nothing here blocks: audio files are read on the libuv thread
 * pool and completed on the loop.
 */
#ifndef CVX_MEDIA_H
#define CVX_MEDIA_H

#include <stdint.h>
#include <uv.h>

#include "cvx/chan.h"
#include "cvx/frame.h"
#include "cvx/mclock.h"

/* --- the process's media clock ------------------------------------------------------- */

/* The media clock (20 ms, 64 slots), created on loop at the first call.  Returns NULL when it
 * cannot be created or when it already runs on another loop.  Valid until
 * cvx_media_clock_close(). */
cvx_mclock_t *cvx_media_clock(uv_loop_t *loop);
/* The clock if it exists, without creating it ("show media"). */
cvx_mclock_t *cvx_media_clock_peek(void);
/* Closes the clock (subscribers are dropped); for shutdown and tests. */
void cvx_media_clock_close(void);

/* RTP send lateness of every session of the process (time a packet was sent minus its
 * deadline on the media clock), as a histogram with the media clock's buckets; read with
 * cvx_mclock_quantile().  Reset starts a new measurement (the benchmark). */
void cvx_rtp_send_lateness(cvx_mclock_stats_t *out);
void cvx_rtp_reset_lateness(void);

#endif

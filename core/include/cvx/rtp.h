/*
 * RTP media sessions (the SIP driver's media; implemented in core/media/).
 *
 * This header is the contract between the SIP driver (signalling, SDP) and the RTP engine:
 * the driver creates a session when it needs a local port for its SDP, tells it the remote
 * address and the negotiated payload types from the answer or offer, and starts it.  From
 * then on the session runs on the process's media clock: it sends one packet per period from
 * the frames written to it (comfort silence when none), receives and reorders packets in a
 * small jitter buffer, and reports upward through cvx_drv_event() on the channel it was
 * created for: CVX_EV_FRAME (decoded audio, 20 ms), CVX_EV_DTMF (RFC 4733, or in-band when
 * telephone-event was not negotiated, each digit once) and CVX_EV_HANGUP with
 * CVX_CAUSE_MEDIA_TIMEOUT when nothing arrived for media_timeout (never while on hold).
 * The media timeout goes down, not up: the session calls cvx_chan_hangup(chan,
 * CVX_CAUSE_MEDIA_TIMEOUT), so the driver's hangup operation ends the call with the peer
 * (BYE) and reports the CVX_EV_HANGUP with that cause, as for any hangup the core asks for.
 *
 * Thread: loop thread only.  Ownership: the driver owns the session and destroys it at the
 * latest when the call ends; the session holds a reference to its channel until destroyed.
 * Re-entrancy: events go up synchronously from the session's media clock tick; a handler may
 * hang up, and the driver may then call cvx_rtp_destroy() from inside that event: the
 * session is freed when the tick returns.
 */
#ifndef CVX_RTP_H
#define CVX_RTP_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "cvx/chan.h"
#include "cvx/frame.h"

typedef struct cvx_rtp cvx_rtp_t;

typedef struct cvx_rtp_params {
    const char *bind_addr;       /* local address ("127.0.0.1", "::1", "0.0.0.0") */
    uint16_t port_min, port_max; /* even RTP ports in [min, max]; RTCP on port + 1 */
    long long media_timeout_ms;  /* 0: never hang up for missing media */
    unsigned ptime_ms;           /* packet time, 20 */
} cvx_rtp_params_t;

/* What offer/answer settled on. */
typedef struct cvx_rtp_remote {
    struct sockaddr_storage addr; /* the address in the remote SDP (c= and m= port) */
    cvx_codec_t codec;            /* CVX_CODEC_PCMU or CVX_CODEC_PCMA */
    int payload_type;             /* 0 for PCMU, 8 for PCMA, or the dynamic number given */
    int te_payload_type;          /* telephone-event payload type, -1 when not negotiated */
} cvx_rtp_remote_t;

/* Allocates a socket pair from the port range (CVX_EBUSY when the range is exhausted) for
 * chan on inst.  Nothing is sent or received until cvx_rtp_start(). */
int cvx_rtp_create(uv_loop_t *loop, cvx_drv_inst_t *inst, cvx_chan_t *chan,
                   const cvx_rtp_params_t *params, cvx_rtp_t **out);
/* The local address and port to put in the SDP. */
uint16_t cvx_rtp_local_port(const cvx_rtp_t *rtp);
const char *cvx_rtp_local_addr(const cvx_rtp_t *rtp);

/* Sets (or, on a re-INVITE, changes) the remote side. */
int cvx_rtp_set_remote(cvx_rtp_t *rtp, const cvx_rtp_remote_t *remote);
int cvx_rtp_start(cvx_rtp_t *rtp);
/* Hold: stop sending and suspend the media timeout; resume with on = 0. */
void cvx_rtp_hold(cvx_rtp_t *rtp, int on);

/* Queues audio to send (any codec and 8 kHz; converted as needed). */
int cvx_rtp_write(cvx_rtp_t *rtp, const cvx_frame_t *frame);
/* Sends an RFC 4733 event (or in-band tones when telephone-event is not negotiated). */
int cvx_rtp_send_dtmf(cvx_rtp_t *rtp, char digit, unsigned duration_ms);

/* Counters for "show calls". */
typedef struct cvx_rtp_stats {
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t lost, malformed, foreign; /* foreign: from another source than the latched one */
    double jitter_ms;
    uint64_t late_p99_ns; /* send lateness against the media clock */
} cvx_rtp_stats_t;
void cvx_rtp_get_stats(const cvx_rtp_t *rtp, cvx_rtp_stats_t *out);

/* The negotiated codec, or -1 before the remote side is known. */
int cvx_rtp_codec(const cvx_rtp_t *rtp);

/* Stops and frees the session (sockets are closed asynchronously). */
void cvx_rtp_destroy(cvx_rtp_t *rtp);

/* --- appended after the first version ------------------------------------------------- */

/* The session created for chan, or NULL ("show calls"). */
cvx_rtp_t *cvx_rtp_of_chan(const cvx_chan_t *chan);
/* Sessions alive in this process. */
unsigned cvx_rtp_count(void);

#endif

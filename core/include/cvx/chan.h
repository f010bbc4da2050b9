/*
 * Channels: one call leg, owned by the core, driven by a driver instance below and a call
 * flow above.
 *
 * Lifetime: channels are reference counted.  The driver holds one reference from
 * cvx_chan_create() until the call has ended at its side; every pending timer, job or event
 * that refers to a channel holds one more.  Hangup never frees: the last cvx_chan_unref()
 * does.  Thread: loop thread only.
 *
 * Events travel up through one funnel, cvx_drv_event(): the driver reports an incoming call,
 * answer, hangup, DTMF, media, transfer results, line state and MWI results; the core routes
 * them to the channel's handler (the call flow that owns the call).
 */
#ifndef CVX_CHAN_H
#define CVX_CHAN_H

#include <stdint.h>

#include "cvx/frame.h"
#include "cvx/log.h"

typedef struct cvx_chan cvx_chan_t;
typedef struct cvx_drv_inst cvx_drv_inst_t;

#define CVX_NUMBER_MAX 64

/* Why the call was redirected to us: it picks the mailbox and the greeting. */
typedef enum cvx_redirect {
    CVX_REDIRECT_NONE = 0,      /* a direct call */
    CVX_REDIRECT_UNKNOWN,       /* redirected, reason not given */
    CVX_REDIRECT_BUSY,          /* user busy */
    CVX_REDIRECT_NO_ANSWER,     /* no reply */
    CVX_REDIRECT_UNCONDITIONAL, /* forward all calls */
    CVX_REDIRECT_DEFLECTION,    /* deflected during alerting or immediately */
    CVX_REDIRECT_UNAVAILABLE,   /* out of service, not reachable */
    CVX_REDIRECT_DND,           /* do not disturb */
    CVX_REDIRECT_TIME_OF_DAY,
    CVX_REDIRECT_AWAY,
} cvx_redirect_t;

const char *cvx_redirect_name(cvx_redirect_t r);

/*
 * What the PBX tells about a call.  SIP gives it in headers (Diversion, History-Info); SMDI
 * and analog integrations carry the same fields in their own messages (SMDI: calling number,
 * called station, call type), so every driver fills this one struct.
 */
typedef struct cvx_call_info {
    char calling[CVX_NUMBER_MAX];         /* caller's number, "" when withheld */
    char calling_name[CVX_NUMBER_MAX];    /* caller's name, "" when unknown */
    char called[CVX_NUMBER_MAX];          /* the number dialed (pilot, attendant) */
    char original_called[CVX_NUMBER_MAX]; /* the redirecting number: picks the mailbox */
    cvx_redirect_t redirect;              /* why it was redirected */
    unsigned redirect_count;              /* how many redirections, 0 when direct */
    char smdi_line[8];                    /* SMDI message desk/terminal, "" when not SMDI */
} cvx_call_info_t;

typedef enum cvx_dir {
    CVX_DIR_IN = 0,  /* the PBX called us */
    CVX_DIR_OUT = 1, /* we placed the call */
} cvx_dir_t;

typedef enum cvx_chan_state {
    CVX_CHAN_RINGING = 0, /* offered, not answered */
    CVX_CHAN_DIALING,     /* outbound, not answered */
    CVX_CHAN_UP,
    CVX_CHAN_ENDED,
} cvx_chan_state_t;

/* Hangup causes (Q.850 values where there is one). */
typedef enum cvx_cause {
    CVX_CAUSE_NORMAL = 16,
    CVX_CAUSE_BUSY = 17,
    CVX_CAUSE_NO_ANSWER = 19,
    CVX_CAUSE_REJECTED = 21,
    CVX_CAUSE_UNALLOCATED = 1,
    CVX_CAUSE_NO_ROUTE = 3,
    CVX_CAUSE_CONGESTION = 34,
    CVX_CAUSE_TEMP_FAILURE = 41,
    CVX_CAUSE_MEDIA_TIMEOUT = 102, /* recovery on timer expiry */
    CVX_CAUSE_SHUTDOWN = 38,       /* network out of order: the server is stopping */
} cvx_cause_t;

const char *cvx_cause_name(cvx_cause_t c);

typedef enum cvx_dtmf_source {
    CVX_DTMF_RFC4733 = 0, /* telephone-event packets */
    CVX_DTMF_INBAND = 1,  /* detected in the audio */
    CVX_DTMF_SIGNAL = 2,  /* SIP INFO, SMDI, a card's signalling */
} cvx_dtmf_source_t;

typedef enum cvx_event_type {
    CVX_EV_INCOMING = 1, /* chan: a new inbound call; info is in the channel */
    CVX_EV_ANSWERED,     /* chan: the far end answered our outbound call */
    CVX_EV_HANGUP,       /* chan: the call ended; u.hangup */
    CVX_EV_DTMF,         /* chan: u.dtmf */
    CVX_EV_FRAME,        /* chan: u.frame */
    CVX_EV_TRANSFER,     /* chan: u.transfer */
    CVX_EV_LINE_STATE,   /* no chan: u.line */
    CVX_EV_MWI_RESULT,   /* no chan: u.mwi */
} cvx_event_type_t;

typedef struct cvx_event {
    cvx_event_type_t type;
    union {
        struct {
            cvx_cause_t cause;
        } hangup;
        struct {
            char digit; /* 0-9 * # A-D */
            cvx_dtmf_source_t source;
            unsigned duration_ms;
        } dtmf;
        const cvx_frame_t *frame;
        struct {
            int ok;
            int code; /* driver's result code (SIP status), 0 when none */
        } transfer;
        struct {
            int up;             /* 1: in service */
            const char *reason; /* "red alarm", "registered", may be NULL */
        } line;
        struct {
            uint64_t request_id; /* from cvx_mwi_req_t */
            int err;             /* 0 or CVX_E* */
            int code;            /* driver's result code, 0 when none */
        } mwi;
    } u;
} cvx_event_t;

/* A request to set a message-waiting lamp; the result comes back as CVX_EV_MWI_RESULT. */
typedef struct cvx_mwi_req {
    uint64_t request_id;
    const char *mailbox;
    const char *device; /* driver-specific address of the lamp: SIP URI, SMDI station, channel */
    int on;
    unsigned new_msgs, old_msgs, new_urgent, old_urgent;
} cvx_mwi_req_t;

/* Handler of a channel's events (the call flow).  Runs on the loop. */
typedef void (*cvx_chan_handler_fn)(cvx_chan_t *chan, const cvx_event_t *ev, void *arg);

/* Creates a channel on inst with one reference, owned by the caller (the driver).
 * Returns NULL when out of memory. */
cvx_chan_t *cvx_chan_create(cvx_drv_inst_t *inst, cvx_dir_t dir, const cvx_call_info_t *info);
cvx_chan_t *cvx_chan_ref(cvx_chan_t *chan);
void cvx_chan_unref(cvx_chan_t *chan);

/* The call id: unique in this process's life and across servers ("<server>-<n>"); valid as
 * long as the reference the caller holds. */
const char *cvx_chan_id(const cvx_chan_t *chan);
const cvx_call_info_t *cvx_chan_info(const cvx_chan_t *chan);
cvx_call_info_t *cvx_chan_info_mut(cvx_chan_t *chan);
cvx_drv_inst_t *cvx_chan_inst(const cvx_chan_t *chan);
cvx_dir_t cvx_chan_dir(const cvx_chan_t *chan);
cvx_chan_state_t cvx_chan_state(const cvx_chan_t *chan);
uint64_t cvx_chan_start_ms(const cvx_chan_t *chan);

/* The driver's per-call data. */
void cvx_chan_set_driver_data(cvx_chan_t *chan, void *data);
void *cvx_chan_driver_data(const cvx_chan_t *chan);

/* Sets who receives the channel's events; arg is not owned. */
void cvx_chan_set_handler(cvx_chan_t *chan, cvx_chan_handler_fn fn, void *arg);

/* A log context for lines about this channel; valid while the reference is held. */
cvx_log_ctx_t cvx_chan_log_ctx(const cvx_chan_t *chan, const char *doing);

/* --- operations on a channel, forwarded to its driver (CVX_ENOTSUP when it has none) --- */
int cvx_chan_answer(cvx_chan_t *chan);
int cvx_chan_hangup(cvx_chan_t *chan, cvx_cause_t cause);
int cvx_chan_transfer(cvx_chan_t *chan, const char *dest, int supervised);
int cvx_chan_send_dtmf(cvx_chan_t *chan, char digit, unsigned duration_ms);
int cvx_chan_write_frame(cvx_chan_t *chan, const cvx_frame_t *frame);

/* Iterates the live channels (for "show calls"); fn returns non-zero to stop. */
void cvx_chan_foreach(int (*fn)(cvx_chan_t *chan, void *arg), void *arg);
unsigned cvx_chan_count(void);

#endif

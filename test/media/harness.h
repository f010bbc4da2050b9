/*
 * A small harness for the media tests: a loop with the real null driver loaded from the module
 * directory (CVX_MODULE_DIR), one instance "null:t", channels whose events are recorded, and
 * "run the loop until a condition holds or a deadline passes" (no fixed sleeps).
 */
#ifndef CVX_TEST_MEDIA_HARNESS_H
#define CVX_TEST_MEDIA_HARNESS_H

#include <stdint.h>
#include <uv.h>

#include "cvx/chan.h"
#include "cvx/driver.h"
#include "cvx/module.h"

typedef struct mt_events mt_events_t;

typedef struct mt_env {
    uv_loop_t loop;
    struct cvx__module *mods;
    void *conf; /* cvx_conf_t */
    cvx_drv_inst_t *inst;
    /* Where the test application puts the next inbound call it takes. */
    mt_events_t *in_events;
    cvx_chan_t *in_chan; /* referenced */
} mt_env_t;

/* What a recording handler saw on a channel. */
struct mt_events {
    char digits[64];
    unsigned ndigits;
    cvx_dtmf_source_t last_source;
    unsigned frames;
    uint64_t samples;
    uint64_t nonsilent_frames; /* frames with any sample of magnitude > 64 */
    double energy;             /* sum of squares of every sample */
    int hangup;
    cvx_cause_t cause;
    int incoming;
    cvx_chan_t *incoming_chan; /* referenced by the handler */
    int answered;
};

/* Loads null.so and creates and starts [null:t] with extra_conf appended to its section. */
void mt_setup(mt_env_t *e, const char *extra_conf);
void mt_teardown(mt_env_t *e);

/* A channel on the instance, not known to the null driver (for RTP tests), with the
 * recording handler. */
cvx_chan_t *mt_chan(mt_env_t *e, mt_events_t *ev);
void mt_record_handler(cvx_chan_t *chan, const cvx_event_t *ev, void *arg);

/* A call through the null driver: out is placed by the test, in is taken (and answered) by
 * the test application; both legs are up when this returns. */
typedef struct mt_call {
    cvx_chan_t *out, *in; /* referenced */
    mt_events_t out_ev, in_ev;
} mt_call_t;
void mt_call(mt_env_t *e, mt_call_t *c);
/* Hangs up (when still up), waits for both hangups, drops the references. */
void mt_call_end(mt_env_t *e, mt_call_t *c);

/* Runs the loop until cond(arg) is true (returns 1) or timeout_ms passes (returns 0). */
int mt_run_until(mt_env_t *e, int (*cond)(void *arg), void *arg, unsigned timeout_ms);
/* Runs the loop for at least ms of loop time (for "nothing more arrives" checks, bounded). */
void mt_run_for(mt_env_t *e, unsigned ms);

#endif

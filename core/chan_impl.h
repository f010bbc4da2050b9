/*
 * The channel struct and the instance internals channels use; core files only.
 */
#ifndef CVX_CHAN_IMPL_H
#define CVX_CHAN_IMPL_H

#include <uv.h>

#include "cvx/chan.h"
#include "cvx/driver.h"

struct cvx_chan {
    cvx_chan_t *next, *prev; /* the live list */
    unsigned refs;
    int linked_out;
    int hangup_sent;
    char id[64];
    cvx_drv_inst_t *inst;
    cvx_dir_t dir;
    cvx_chan_state_t state;
    cvx_call_info_t info;
    uint64_t start_ms;
    void *drv_data;
    cvx_chan_handler_fn handler;
    void *handler_arg;
    /* The call record (cvx/cdr.h): wall-clock times in UTC ms (0: did not happen). */
    uint64_t start_wall_ms, answer_wall_ms, end_wall_ms;
    int end_cause;            /* cvx_cause_t of the hangup, 0 before it */
    int no_record;            /* refused at once by the driver: never was a call */
    int handed_off;           /* answered by one flow and handed to another (cvx_app_handoff) */
    char cdr_instance[64];    /* the driver instance's name, kept past the instance's life */
    cvx_call_info_t cdr_info; /* the call as the driver presented it (flows may change info) */
    char cdr_app[48];
    char cdr_mailbox[CVX_NUMBER_MAX];
    char cdr_outcome[24];
    char cdr_transfer[CVX_NUMBER_MAX];
};

/* Queues the channel's call record (cdr.c); called once, as the channel is freed. */
void cvx__cdr_emit(const cvx_chan_t *c);
uint64_t cvx__wall_ms(void);

void cvx__chan_unlink(cvx_chan_t *c);

uv_loop_t *cvx__drv_inst_loop(const cvx_drv_inst_t *inst);
const cvx_driver_ops_t *cvx__drv_inst_ops(const cvx_drv_inst_t *inst);
void *cvx__drv_inst_priv(const cvx_drv_inst_t *inst);
void cvx__drv_inst_count(cvx_drv_inst_t *inst, int delta);

#endif

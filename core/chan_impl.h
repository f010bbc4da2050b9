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
};

void cvx__chan_unlink(cvx_chan_t *c);

uv_loop_t *cvx__drv_inst_loop(const cvx_drv_inst_t *inst);
const cvx_driver_ops_t *cvx__drv_inst_ops(const cvx_drv_inst_t *inst);
void *cvx__drv_inst_priv(const cvx_drv_inst_t *inst);
void cvx__drv_inst_count(cvx_drv_inst_t *inst, int delta);

#endif

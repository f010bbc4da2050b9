/*
 * The media driver interface.  One driver module (sip, dahdi, mgw, null) creates any number
 * of instances, one per "[driver:name]" section: one per PBX, span or gateway.
 *
 * Downward, one typed operation per verb.  Every operation runs on the loop thread, must not
 * block, and returns 0 or a CVX_E* code; an operation that returns an error has not started
 * anything and will report nothing later.  Results that take time come back up through
 * cvx_drv_event() (answered, transfer result, MWI result).  A NULL operation, or one past
 * the table's size, means "not supported" and the core answers CVX_ENOTSUP.
 *
 * The table only grows by appending; size is sizeof(cvx_driver_ops_t) as the driver was
 * built.  drivers/null is the reference implementation and the template for new drivers.
 */
#ifndef CVX_DRIVER_H
#define CVX_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "cvx/chan.h"
#include "cvx/config.h"

typedef struct cvx_driver_ops {
    uint32_t size;
    /* The instance section: "[<module name>:<instance>]", read with this table into a
     * struct of conf_size bytes that create() receives. */
    const cvx_option_t *options;
    size_t conf_size;

    /* Lifecycle.  create() checks the configuration and allocates (no ports yet: it also runs
     * for --check-config); start() binds ports and opens devices (still as root); stop()
     * refuses new calls and ends calls in progress, reporting their hangups; destroy() frees
     * everything, after stop(). */
    int (*create)(cvx_drv_inst_t *inst, const void *conf, void **priv);
    int (*start)(void *priv);
    void (*stop)(void *priv);
    void (*destroy)(void *priv);

    /* Calls.  chan belongs to this instance. */
    int (*answer)(void *priv, cvx_chan_t *chan);
    int (*hangup)(void *priv, cvx_chan_t *chan, cvx_cause_t cause);
    /* Places a call for chan (created by the core, CVX_DIR_OUT, info->called is the
     * destination); CVX_EV_ANSWERED or CVX_EV_HANGUP follows. */
    int (*originate)(void *priv, cvx_chan_t *chan);
    /* Blind (supervised = 0) or supervised transfer; CVX_EV_TRANSFER follows. */
    int (*transfer)(void *priv, cvx_chan_t *chan, const char *dest, int supervised);
    int (*send_dtmf)(void *priv, cvx_chan_t *chan, char digit, unsigned duration_ms);
    int (*write_frame)(void *priv, cvx_chan_t *chan, const cvx_frame_t *frame);

    /* Message-waiting lamp; CVX_EV_MWI_RESULT with req->request_id follows. */
    int (*set_mwi)(void *priv, const cvx_mwi_req_t *req);

    /* Applies options marked CVX_OPT_RELOADABLE from a new configuration; may be NULL. */
    int (*reload)(void *priv, const void *conf);
} cvx_driver_ops_t;

#define CVX_DRIVER_OPS_MIN_SIZE (offsetof(cvx_driver_ops_t, set_mwi) + sizeof(void *))

/* --- the instance, as drivers see it ------------------------------------------------- */

/* "sip:pbx1" */
const char *cvx_drv_inst_name(const cvx_drv_inst_t *inst);
struct uv_loop_s *cvx_drv_inst_loop(const cvx_drv_inst_t *inst);
/* A log context naming this instance. */
cvx_log_ctx_t cvx_drv_inst_log_ctx(const cvx_drv_inst_t *inst, const char *doing);

/* The upward funnel: every event a driver reports (chan is NULL for line state and MWI
 * results).  Runs the handler synchronously; the driver must hold its own reference to chan
 * across the call, because the handler may hang the call up. */
void cvx_drv_event(cvx_drv_inst_t *inst, cvx_chan_t *chan, const cvx_event_t *ev);

/* --- the instances, as the core sees them -------------------------------------------- */

typedef struct cvx_drv_inst_info {
    const char *name;   /* "sip:pbx1" */
    const char *driver; /* "sip" */
    int line_up;
    const char *line_reason;
    unsigned calls;
    uint64_t calls_total;
} cvx_drv_inst_info_t;

cvx_drv_inst_t *cvx_drv_inst_find(const char *name);
void cvx_drv_inst_foreach(int (*fn)(cvx_drv_inst_t *inst, void *arg), void *arg);
void cvx_drv_inst_get_info(const cvx_drv_inst_t *inst, cvx_drv_inst_info_t *out);
int cvx_drv_inst_set_mwi(cvx_drv_inst_t *inst, const cvx_mwi_req_t *req);

/* Places an outbound call on inst to dest; the new channel (one reference, owned by the
 * caller) is returned in *out and its events go to fn.  Returns 0 or CVX_E*. */
int cvx_drv_originate(cvx_drv_inst_t *inst, const cvx_call_info_t *info, cvx_chan_handler_fn fn,
                      void *arg, cvx_chan_t **out);

/* Receives CVX_EV_MWI_RESULT and CVX_EV_LINE_STATE events (one listener: the MWI service). */
typedef void (*cvx_drv_listener_fn)(cvx_drv_inst_t *inst, const cvx_event_t *ev, void *arg);
void cvx_drv_set_listener(cvx_drv_listener_fn fn, void *arg);

#endif

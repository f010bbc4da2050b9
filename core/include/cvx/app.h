/*
 * Call-flow applications (voicemail, attendant).  The core offers every new inbound call to
 * the application its driver instance routes to; the application takes it by setting itself
 * as the channel's handler.
 */
#ifndef CVX_APP_H
#define CVX_APP_H

#include <stdint.h>

#include "cvx/chan.h"

typedef struct cvx_app_ops {
    uint32_t size;
    /* A new inbound call.  Return 0 after cvx_chan_set_handler() to take it, CVX_EDECLINED
     * to let the next application try, or another error to reject it. */
    int (*incoming)(cvx_chan_t *chan, void *arg);
} cvx_app_ops_t;

/* Registers an application by name (modules of kind CVX_MODULE_APP are registered by the
 * loader).  Returns 0 or CVX_E*. */
int cvx_app_register(const char *name, const cvx_app_ops_t *ops, void *arg);
void cvx_app_unregister(const char *name);

/* Offers chan to the application named route (NULL: each in registration order).  Returns 0
 * when taken, CVX_ENOTFOUND when nobody took it. */
int cvx_app_route(cvx_chan_t *chan, const char *route);

/* Hands an answered call over to the application named route (a flow that has finished its
 * part: the attendant giving a caller to voicemail).  The caller must have released the
 * channel (its media core destroyed); the new application's cvx_chan_answer() succeeds
 * without signalling.  Returns 0 when taken, CVX_ESTATE when the call is not up, or as
 * cvx_app_route(). */
int cvx_app_handoff(cvx_chan_t *chan, const char *route);

#endif

/*
 * Registered call-flow applications and the routing of new calls to them.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "cvx/module.h"
#include "chan_impl.h"

typedef struct app {
    struct app *next;
    char *name;
    const cvx_app_ops_t *ops;
    void *arg;
    uint64_t unlicensed_logged_ms; /* the last "not licensed" line (one a minute) */
} app_t;

/* On a call server, applications of features the system server's licence does not cover
 * are loaded (the licence arrives after the modules) but offered no call. */
static int unlicensed(app_t *a, cvx_chan_t *chan)
{
    char why[200];
    /* Elsewhere an unlicensed feature is never loaded: nothing to check per call. */
    if (cvx_daemon_role() != CVX_ROLE_CALL ||
        !cvx__license_denies_module(a->name, why, sizeof(why)))
        return 0;
    uint64_t now = uv_now(cvx_daemon_loop());
    if (a->unlicensed_logged_ms == 0 || now - a->unlicensed_logged_ms >= 60000) {
        a->unlicensed_logged_ms = now;
        cvx_log_ctx_t ctx = cvx_chan_log_ctx(chan, "routing a new call");
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "%s: %s; calls are not offered to it", a->name, why);
    }
    return 1;
}

static app_t *apps;

int cvx_app_register(const char *name, const cvx_app_ops_t *ops, void *arg)
{
    app_t **tail = &apps;
    for (app_t *a = apps; a != NULL; a = a->next) {
        if (strcmp(a->name, name) == 0)
            return CVX_EEXIST;
        tail = &a->next;
    }
    app_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->name = strdup(name)) == NULL) {
        free(a);
        return CVX_ENOMEM;
    }
    a->ops = ops;
    a->arg = arg;
    *tail = a;
    return 0;
}

void cvx_app_unregister(const char *name)
{
    for (app_t **p = &apps; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->name, name) == 0) {
            app_t *a = *p;
            *p = a->next;
            free(a->name);
            free(a);
            return;
        }
    }
}

int cvx_app_route(cvx_chan_t *chan, const char *route)
{
    for (app_t *a = apps; a != NULL; a = a->next) {
        if (route != NULL && strcmp(a->name, route) != 0)
            continue;
        if (unlicensed(a, chan))
            continue;
        int (*op)(cvx_chan_t *, void *) = CVX_OP(a->ops, incoming);
        if (op == NULL)
            continue;
        int rc = op(chan, a->arg);
        if (rc == 0)
            return 0;
        if (rc != CVX_EDECLINED)
            return rc;
    }
    return CVX_ENOTFOUND;
}

int cvx_app_handoff(cvx_chan_t *chan, const char *route)
{
    if (chan->state != CVX_CHAN_UP)
        return CVX_ESTATE;
    chan->handed_off = 1;
    cvx_chan_set_handler(chan, NULL, NULL);
    int rc = cvx_app_route(chan, route);
    if (rc != 0)
        chan->handed_off = 0;
    return rc;
}

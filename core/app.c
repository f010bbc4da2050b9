/*
 * Registered call-flow applications and the routing of new calls to them.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/module.h"
#include "chan_impl.h"

typedef struct app {
    struct app *next;
    char *name;
    const cvx_app_ops_t *ops;
    void *arg;
} app_t;

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

/*
 * Driver instances: creation from "[driver:name]" sections, lifecycle, the upward event
 * funnel and outbound calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "chan_impl.h"
#include "internal.h"

struct cvx_drv_inst {
    cvx_drv_inst_t *next;
    char name[128]; /* "sip:pbx1" */
    const cvx_module_t *module;
    const cvx_driver_ops_t *ops;
    cvx_section_def_t def; /* the instance section, from ops */
    void *conf;            /* bound options, owned */
    void *priv;            /* the driver's state */
    uv_loop_t *loop;
    int created, started;
    int line_up;
    char line_reason[96];
    unsigned calls;
    uint64_t calls_total;
};

static cvx_drv_inst_t *instances;
static cvx_drv_listener_fn listener;
static void *listener_arg;

uv_loop_t *cvx__drv_inst_loop(const cvx_drv_inst_t *inst)
{
    return inst->loop;
}

const cvx_driver_ops_t *cvx__drv_inst_ops(const cvx_drv_inst_t *inst)
{
    return inst->ops;
}

void *cvx__drv_inst_priv(const cvx_drv_inst_t *inst)
{
    return inst->priv;
}

void cvx__drv_inst_count(cvx_drv_inst_t *inst, int delta)
{
    if (delta > 0) {
        inst->calls++;
        inst->calls_total++;
    } else if (inst->calls > 0) {
        inst->calls--;
    }
}

const char *cvx_drv_inst_name(const cvx_drv_inst_t *inst)
{
    return inst->name;
}

struct uv_loop_s *cvx_drv_inst_loop(const cvx_drv_inst_t *inst)
{
    return inst->loop;
}

cvx_log_ctx_t cvx_drv_inst_log_ctx(const cvx_drv_inst_t *inst, const char *doing)
{
    cvx_log_ctx_t ctx = {NULL, inst->name, doing};
    return ctx;
}

cvx_drv_inst_t *cvx_drv_inst_find(const char *name)
{
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next)
        if (strcmp(i->name, name) == 0)
            return i;
    return NULL;
}

void cvx_drv_inst_foreach(int (*fn)(cvx_drv_inst_t *inst, void *arg), void *arg)
{
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next)
        if (fn(i, arg))
            break;
}

void cvx_drv_inst_get_info(const cvx_drv_inst_t *inst, cvx_drv_inst_info_t *out)
{
    out->name = inst->name;
    out->driver = inst->module->name;
    out->line_up = inst->line_up;
    out->line_reason = inst->line_reason;
    out->calls = inst->calls;
    out->calls_total = inst->calls_total;
}

void cvx_drv_set_listener(cvx_drv_listener_fn fn, void *arg)
{
    listener = fn;
    listener_arg = arg;
}

int cvx_drv_inst_set_mwi(cvx_drv_inst_t *inst, const cvx_mwi_req_t *req)
{
    int (*op)(void *, const cvx_mwi_req_t *) = CVX_OP(inst->ops, set_mwi);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (!inst->started)
        return CVX_ESTATE;
    return op(inst->priv, req);
}

int cvx_drv_originate(cvx_drv_inst_t *inst, const cvx_call_info_t *info, cvx_chan_handler_fn fn,
                      void *arg, cvx_chan_t **out)
{
    int (*op)(void *, cvx_chan_t *) = CVX_OP(inst->ops, originate);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (!inst->started)
        return CVX_ESTATE;
    cvx_chan_t *chan = cvx_chan_create(inst, CVX_DIR_OUT, info);
    if (chan == NULL)
        return CVX_ENOMEM;
    cvx_chan_set_handler(chan, fn, arg);
    int rc = op(inst->priv, chan);
    if (rc != 0) {
        /* Refused at once (busy, say): it never was a call, so it is not counted as one. */
        inst->calls_total--;
        chan->state = CVX_CHAN_ENDED;
        chan->no_record = 1;
        cvx_chan_unref(chan);
        return rc;
    }
    *out = chan;
    return 0;
}

static void deliver(cvx_chan_t *chan, const cvx_event_t *ev)
{
    if (chan->handler != NULL)
        chan->handler(chan, ev, chan->handler_arg);
}

void cvx_drv_event(cvx_drv_inst_t *inst, cvx_chan_t *chan, const cvx_event_t *ev)
{
    switch (ev->type) {
    case CVX_EV_INCOMING: {
        chan->cdr_info = chan->info; /* for the call record, before a flow changes it */
        cvx_log_ctx_t ctx = cvx_chan_log_ctx(chan, "routing a new call");
        cvx_log_ctx(CVX_LOG_INFO, &ctx,
                    "incoming call from '%s' to '%s' (redirected from '%s', %s)",
                    chan->info.calling, chan->info.called, chan->info.original_called,
                    cvx_redirect_name(chan->info.redirect));
        if (cvx_app_route(chan, NULL) != 0) {
            cvx_log_ctx(CVX_LOG_WARN, &ctx, "no application takes the call; rejecting it");
            cvx_chan_hangup(chan, CVX_CAUSE_NO_ROUTE);
        }
        break;
    }
    case CVX_EV_ANSWERED:
        if (chan->state == CVX_CHAN_ENDED)
            break; /* an answer that crossed the hangup: the call is over */
        if (chan->state == CVX_CHAN_DIALING || chan->state == CVX_CHAN_RINGING) {
            chan->state = CVX_CHAN_UP;
            chan->answer_wall_ms = cvx__wall_ms();
        }
        deliver(chan, ev);
        break;
    case CVX_EV_HANGUP:
        if (chan->state == CVX_CHAN_ENDED)
            break; /* reported twice: once is enough */
        chan->state = CVX_CHAN_ENDED;
        chan->end_wall_ms = cvx__wall_ms();
        chan->end_cause = (int)ev->u.hangup.cause;
        cvx__chan_unlink(chan);
        deliver(chan, ev);
        break;
    case CVX_EV_DTMF:
    case CVX_EV_FRAME:
    case CVX_EV_TRANSFER:
        if (chan != NULL && chan->state != CVX_CHAN_ENDED)
            deliver(chan, ev);
        break;
    case CVX_EV_LINE_STATE:
        if (inst->line_up != ev->u.line.up || ev->u.line.reason != NULL) {
            cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(inst, NULL);
            cvx_log_ctx(ev->u.line.up ? CVX_LOG_INFO : CVX_LOG_WARN, &ctx, "line %s%s%s",
                        ev->u.line.up ? "up" : "down", ev->u.line.reason ? ": " : "",
                        ev->u.line.reason ? ev->u.line.reason : "");
        }
        inst->line_up = ev->u.line.up;
        snprintf(inst->line_reason, sizeof(inst->line_reason), "%s",
                 ev->u.line.reason ? ev->u.line.reason : "");
        if (listener)
            listener(inst, ev, listener_arg);
        break;
    case CVX_EV_MWI_RESULT:
        if (listener)
            listener(inst, ev, listener_arg);
        break;
    }
}

static void inst_free(cvx_drv_inst_t *i)
{
    if (i->conf != NULL) {
        cvx_conf_release(i->def.options, i->conf);
        free(i->conf);
    }
    free(i);
}

int cvx__drv_create_all(cvx__module_t *mods, cvx_conf_t *conf, uv_loop_t *loop, cvx_diag_t *diag)
{
    int rc = 0;
    cvx_drv_inst_t **tail = &instances;
    while (*tail != NULL)
        tail = &(*tail)->next;
    for (cvx__module_t *m = mods; m != NULL; m = m->next) {
        if (m->state != CVX__MOD_LOADED || m->desc->kind != CVX_MODULE_DRIVER)
            continue;
        const cvx_driver_ops_t *ops = m->desc->driver;
        for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
            if (strcmp(s->kind, m->desc->name) != 0)
                continue;
            if (s->name == NULL) {
                cvx_diag_add(diag, "%s:%d: [%s] needs an instance name: [%s:NAME]", s->file,
                             s->line, s->kind, s->kind);
                s->claimed = 1;
                rc = CVX_EINVAL;
                continue;
            }
            cvx_drv_inst_t *i = calloc(1, sizeof(*i));
            if (i == NULL)
                return CVX_ENOMEM;
            snprintf(i->name, sizeof(i->name), "%s:%s", s->kind, s->name);
            i->module = m->desc;
            i->ops = ops;
            i->loop = loop;
            i->def.kind = m->desc->name;
            i->def.repeated = 1;
            i->def.options = ops->options;
            i->def.conf_size = ops->conf_size;
            i->conf = calloc(1, ops->conf_size ? ops->conf_size : 1);
            if (i->conf == NULL) {
                free(i);
                return CVX_ENOMEM;
            }
            if (cvx_conf_bind(&i->def, s, i->conf, diag) != 0) {
                inst_free(i);
                rc = CVX_EINVAL;
                continue;
            }
            int r = ops->create(i, i->conf, &i->priv);
            if (r != 0) {
                cvx_diag_add(diag, "%s:%d: [%s] cannot create the instance: %s", s->file, s->line,
                             i->name, cvx_strerror(r));
                inst_free(i);
                rc = CVX_EINVAL;
                continue;
            }
            i->created = 1;
            *tail = i;
            tail = &i->next;
        }
    }
    return rc;
}

int cvx__drv_start_all(cvx_diag_t *diag)
{
    int rc = 0;
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next) {
        int (*op)(void *) = CVX_OP(i->ops, start);
        int r = op ? op(i->priv) : 0;
        if (r != 0) {
            cvx_diag_add(diag, "[%s] cannot start: %s", i->name, cvx_strerror(r));
            rc = r;
            continue;
        }
        i->started = 1;
        cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(i, NULL);
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "started");
    }
    return rc;
}

void cvx__drv_stop_all(void)
{
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next) {
        void (*op)(void *) = CVX_OP(i->ops, stop);
        if (i->started && op != NULL)
            op(i->priv);
        i->started = 0;
    }
}

void cvx__drv_destroy_all(void)
{
    cvx_drv_inst_t *i = instances;
    while (i != NULL) {
        cvx_drv_inst_t *next = i->next;
        if (i->created)
            i->ops->destroy(i->priv);
        inst_free(i);
        i = next;
    }
    instances = NULL;
}

/* Exchanges one option's value (and the ownership of its strings) between two bound structs. */
static void swap_option(const cvx_option_t *o, void *a, void *b)
{
    size_t size;
    switch (o->type) {
    case CVX_OPT_BOOL:
    case CVX_OPT_ENUM:
        size = sizeof(int);
        break;
    case CVX_OPT_INT:
    case CVX_OPT_DURATION:
        size = sizeof(long long);
        break;
    case CVX_OPT_STRING:
        size = sizeof(char *);
        break;
    case CVX_OPT_LIST:
        size = sizeof(cvx_strlist_t);
        break;
    default:
        return;
    }
    char tmp[sizeof(cvx_strlist_t)];
    char *pa = (char *)a + o->offset, *pb = (char *)b + o->offset;
    memcpy(tmp, pa, size);
    memcpy(pa, pb, size);
    memcpy(pb, tmp, size);
}

int cvx__drv_reload_all(cvx_conf_t *conf, unsigned *applied, unsigned *restart, cvx_diag_t *report)
{
    /* First bind every instance's new section, so that an error changes nothing. */
    unsigned n = 0;
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next)
        n++;
    void **nconf = calloc(n ? n : 1, sizeof(*nconf));
    if (nconf == NULL)
        return CVX_ENOMEM;
    int rc = 0;
    unsigned k = 0;
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next, k++) {
        cvx_conf_section_t *s = cvx_conf_find(conf, i->module->name, strchr(i->name, ':') + 1);
        if (s == NULL)
            continue;
        nconf[k] = calloc(1, i->def.conf_size ? i->def.conf_size : 1);
        if (nconf[k] == NULL || cvx_conf_bind(&i->def, s, nconf[k], report) != 0)
            rc = CVX_EINVAL;
    }
    /* Then compare and apply. */
    k = 0;
    for (cvx_drv_inst_t *i = instances; rc == 0 && i != NULL; i = i->next, k++) {
        if (nconf[k] == NULL) {
            cvx_diag_add(report, "[%s] was removed: needs a restart", i->name);
            (*restart)++;
            continue;
        }
        int changed_reloadable = 0;
        for (const cvx_option_t *o = i->def.options; o->name != NULL; o++) {
            if (cvx_opt_equal(o, i->conf, nconf[k]))
                continue;
            char v[256];
            cvx_opt_format(o, nconf[k], v, sizeof(v));
            if (o->flags & CVX_OPT_RELOADABLE) {
                changed_reloadable++;
                cvx_diag_add(report, "[%s] %s = %s: applied", i->name, o->name, v);
            } else {
                cvx_diag_add(report, "[%s] %s = %s: needs a restart", i->name, o->name, v);
                (*restart)++;
            }
        }
        int (*op)(void *, const void *) = CVX_OP(i->ops, reload);
        if (changed_reloadable && op != NULL && op(i->priv, nconf[k]) == 0) {
            /* The driver took the new reloadable values; they become the ones shown.  The
             * others keep their running values: they still need a restart, and say so again
             * at the next reload. */
            *applied += (unsigned)changed_reloadable;
            for (const cvx_option_t *o = i->def.options; o->name != NULL; o++)
                if (!(o->flags & CVX_OPT_RELOADABLE))
                    swap_option(o, i->conf, nconf[k]);
            void *old = i->conf;
            i->conf = nconf[k];
            nconf[k] = old;
        } else if (changed_reloadable) {
            cvx_diag_add(report, "[%s] the driver cannot apply changes: they need a restart",
                         i->name);
            *restart += (unsigned)changed_reloadable;
        }
    }
    k = 0;
    for (cvx_drv_inst_t *i = instances; i != NULL; i = i->next, k++) {
        if (nconf[k] != NULL) {
            cvx_conf_release(i->def.options, nconf[k]);
            free(nconf[k]);
        }
    }
    free(nconf);
    if (rc != 0)
        return rc;

    /* Sections of a running driver's kind that name no instance are new instances. */
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (s->name == NULL)
            continue;
        int driver_kind = 0;
        for (cvx_drv_inst_t *i = instances; i != NULL && !driver_kind; i = i->next)
            driver_kind = strcmp(s->kind, i->module->name) == 0;
        char name[128];
        snprintf(name, sizeof(name), "%s:%s", s->kind, s->name);
        if (driver_kind && cvx_drv_inst_find(name) == NULL) {
            cvx_diag_add(report, "[%s] is new: needs a restart", name);
            (*restart)++;
        }
    }
    return 0;
}

/*
 * The echo application: answers calls to its numbers and sends back what it hears (audio
 * frames and DTMF).  It is the smallest complete call flow, used to test drivers and media
 * end to end, and a line an installer can call to check a trunk.
 *
 * Configuration: "[echo]" with "number = ..." (repeatable); "*" answers every call that no
 * application before it took.  Without an [echo] section the module stays loaded but takes
 * no calls.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"

typedef struct echo_conf {
    cvx_strlist_t numbers;
} echo_conf_t;

static const cvx_option_t echo_options[] = {
    {"number", CVX_OPT_LIST, offsetof(echo_conf_t, numbers), "", 0, 0, NULL, 0,
     "A called number the echo application answers (repeat the key for more; * for any)."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t echo_section = {"echo", 0, echo_options, sizeof(echo_conf_t),
                                               "The echo test line."};
static const cvx_section_def_t *const echo_sections[] = {&echo_section, NULL};

static echo_conf_t echo_conf;

static int echo_wants(const char *called)
{
    for (size_t i = 0; i < echo_conf.numbers.n; i++)
        if (strcmp(echo_conf.numbers.v[i], "*") == 0 || strcmp(echo_conf.numbers.v[i], called) == 0)
            return 1;
    return 0;
}

static void echo_event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    (void)arg;
    cvx_log_ctx_t ctx = cvx_chan_log_ctx(chan, "echoing");
    switch (ev->type) {
    case CVX_EV_FRAME:
        cvx_chan_write_frame(chan, ev->u.frame);
        break;
    case CVX_EV_DTMF:
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "echo: DTMF %c", ev->u.dtmf.digit);
        cvx_chan_send_dtmf(chan, ev->u.dtmf.digit, ev->u.dtmf.duration_ms);
        break;
    case CVX_EV_HANGUP:
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "echo: call ended (%s)",
                    cvx_cause_name(ev->u.hangup.cause));
        cvx_chan_set_handler(chan, NULL, NULL);
        cvx_chan_unref(chan); /* the reference taken in echo_incoming */
        break;
    default:
        break;
    }
}

static int echo_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    if (!echo_wants(cvx_chan_info(chan)->called))
        return CVX_EDECLINED;
    cvx_chan_set_handler(chan, echo_event, NULL);
    int rc = cvx_chan_answer(chan);
    if (rc != 0) {
        cvx_chan_set_handler(chan, NULL, NULL);
        return rc;
    }
    cvx_chan_ref(chan);
    cvx_log_ctx_t ctx = cvx_chan_log_ctx(chan, "answering");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "echo: answered call to %s", cvx_chan_info(chan)->called);
    return 0;
}

static int echo_load(cvx_module_env_t *env)
{
    cvx_diag_t diag = {0};
    memset(&echo_conf, 0, sizeof(echo_conf));
    int rc =
        cvx_conf_bind(&echo_section, cvx_conf_find(env->conf, "echo", NULL), &echo_conf, &diag);
    for (size_t i = 0; i < diag.n; i++)
        cvx_error("%s", diag.msgs[i]);
    cvx_diag_clear(&diag);
    return rc;
}

static void echo_unload(void)
{
    cvx_conf_release(echo_options, &echo_conf);
}

static const cvx_app_ops_t echo_ops = {
    .size = sizeof(cvx_app_ops_t),
    .incoming = echo_incoming,
};

static const cvx_module_t echo_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "echo",
    .version = "1.0",
    .description = "echo test line: sends back audio and DTMF",
    .kind = CVX_MODULE_APP,
    .roles = CVX_ROLE_CALL,
    .load = echo_load,
    .unload = echo_unload,
    .app = &echo_ops,
    .sections = echo_sections,
};

CVX_MODULE_DEFINE(echo_module)

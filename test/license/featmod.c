/* A stand-in for a licensed feature module ("fax", "attendant"): loads, and registers an
 * application of its name that logs each call offered to it and lets the next application
 * take it, so the licence tests can see whether the loader let the module in and whether a
 * call server offers it calls.  FM_NAME is its name. */
#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"

static int fm_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    cvx_info("feature app %s: offered a call to %s", FM_NAME, cvx_chan_info(chan)->called);
    return CVX_EDECLINED;
}

static const cvx_app_ops_t fm_app = {sizeof(cvx_app_ops_t), fm_incoming};

static int fm_load(cvx_module_env_t *env)
{
    (void)env;
    cvx_info("feature module %s: loaded", FM_NAME);
    return cvx_app_register(FM_NAME, &fm_app, NULL);
}

static void fm_unload(void)
{
    cvx_app_unregister(FM_NAME);
}

static const cvx_module_t fm_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = FM_NAME,
    .version = "0.1",
    .description = "licence test feature module",
    .kind = CVX_MODULE_SERVICE,
    .roles = CVX_ROLE_ALL,
    .load = fm_load,
    .unload = fm_unload,
};

CVX_MODULE_DEFINE(fm_module)

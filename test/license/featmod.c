/* A stand-in for a licensed feature module ("fax", "attendant"): loads and does nothing, so
 * the licence tests can see whether the loader let it in.  FM_NAME is its name. */
#include "cvx/log.h"
#include "cvx/module.h"

static int fm_load(cvx_module_env_t *env)
{
    (void)env;
    cvx_info("feature module %s: loaded", FM_NAME);
    return 0;
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
};

CVX_MODULE_DEFINE(fm_module)

/*
 * Test modules for the loader, one source compiled with a different TM_* definition each:
 * a good one, and one for every way a module can be broken or decline.
 */
#include <stddef.h>

#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/module.h"

#if defined(TM_OTHER_NAME)
#define TM_NAME "other"
#elif defined(TM_GOOD)
#define TM_NAME "good"
#elif defined(TM_DECLINE)
#define TM_NAME "declines"
#elif defined(TM_WRONG_ABI)
#define TM_NAME "wrongabi"
#elif defined(TM_SMALL)
#define TM_NAME "small"
#elif defined(TM_NO_SYMBOL)
#define TM_NAME "nosym"
#elif defined(TM_NULL_DESC)
#define TM_NAME "nulldesc"
#elif defined(TM_BAD_SIGNATURE)
#define TM_NAME "badsig"
#elif defined(TM_LOAD_FAILS)
#define TM_NAME "fails"
#elif defined(TM_DRIVER_SMALL)
#define TM_NAME "drvsmall"
#elif defined(TM_UNDEFINED_SYMBOL)
#define TM_NAME "undefsym"
#endif

#ifdef TM_UNDEFINED_SYMBOL
/* Resolved nowhere: dlopen(RTLD_NOW) must fail. */
extern int cvx_symbol_that_does_not_exist(void);
#endif

static int tm_load(cvx_module_env_t *env)
{
#ifdef TM_DECLINE
    cvx_module_decline(env, "no test hardware present");
    return CVX_EDECLINED;
#elif defined(TM_LOAD_FAILS)
    (void)env;
    return CVX_EIO;
#elif defined(TM_UNDEFINED_SYMBOL)
    (void)env;
    return cvx_symbol_that_does_not_exist();
#else
    (void)env;
    return 0;
#endif
}

#ifdef TM_DRIVER_SMALL
static int tm_create(cvx_drv_inst_t *inst, const void *conf, void **priv)
{
    (void)inst;
    (void)conf;
    *priv = NULL;
    return 0;
}
static void tm_destroy(void *priv)
{
    (void)priv;
}
static const cvx_option_t tm_options[] = {CVX_OPTIONS_END};
static const cvx_driver_ops_t tm_driver = {
    .size = offsetof(cvx_driver_ops_t, answer), /* an old, too small table */
    .options = tm_options,
    .create = tm_create,
    .destroy = tm_destroy,
};
#endif

static const cvx_module_t tm_module = {
#ifdef TM_WRONG_ABI
    .abi_major = CVX_MODULE_ABI_MAJOR + 1,
#else
    .abi_major = CVX_MODULE_ABI_MAJOR,
#endif
    .abi_minor = CVX_MODULE_ABI_MINOR,
#ifdef TM_SMALL
    .size = 16,
#else
    .size = sizeof(cvx_module_t),
#endif
#ifdef TM_BAD_SIGNATURE
    .signature = "cvx1-ptr4-1234",
#else
    .signature = CVX_MODULE_SIGNATURE,
#endif
    .name = TM_NAME,
    .version = "0.1",
    .description = "loader test module",
#ifdef TM_DRIVER_SMALL
    .kind = CVX_MODULE_DRIVER,
    .driver = &tm_driver,
#else
    .kind = CVX_MODULE_SERVICE,
#endif
    .roles = CVX_ROLE_ALL,
    .load = tm_load,
};

#if defined(TM_NULL_DESC)
__attribute__((visibility("default"))) const cvx_module_t *cvx_module_entry(void);
const cvx_module_t *cvx_module_entry(void)
{
    (void)tm_module;
    return NULL;
}
#elif defined(TM_NO_SYMBOL)
__attribute__((visibility("default"))) const cvx_module_t *tm_entry_with_wrong_name(void);
const cvx_module_t *tm_entry_with_wrong_name(void)
{
    return &tm_module;
}
#else
CVX_MODULE_DEFINE(tm_module)
#endif

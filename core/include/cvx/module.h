/*
 * Loadable modules: drivers (drivers/), applications and integrations (plugins/).
 *
 * A module is a shared object with one exported function, cvx_module_entry, that returns a
 * pointer to a static, versioned descriptor.  The loader refuses a module whose ABI major
 * differs from the daemon's, whose descriptor is smaller than the first published version, or
 * whose build signature differs (a module built for another word size or against different
 * headers).  Descriptors and operation tables only ever grow by appending fields; each table
 * starts with its size, and an operation beyond the size or NULL means "not supported".
 *
 * A module may decline to load (no hardware, say) by returning CVX_EDECLINED from load() and
 * giving a reason with cvx_module_decline(); the daemon goes on without it.
 */
#ifndef CVX_MODULE_H
#define CVX_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "cvx/config.h"

#define CVX_MODULE_ABI_MAJOR 1
#define CVX_MODULE_ABI_MINOR 0
#define CVX_MODULE_ENTRY     "cvx_module_entry"

/* Word size, byte order and ABI major: a module built differently is refused. */
#define CVX_STR2(x) #x
#define CVX_STR(x)  CVX_STR2(x)
#define CVX_MODULE_SIGNATURE                                                                       \
    "cvx" CVX_STR(CVX_MODULE_ABI_MAJOR) "-ptr" CVX_STR(__SIZEOF_POINTER__) "-" CVX_STR(            \
        __BYTE_ORDER__)

typedef enum cvx_role {
    CVX_ROLE_CALL = 1 << 0,   /* media drivers, call flows, spool */
    CVX_ROLE_SYSTEM = 1 << 1, /* message store, directory, MWI, licence */
    CVX_ROLE_ALL = CVX_ROLE_CALL | CVX_ROLE_SYSTEM,
    CVX_ROLE_WITNESS = 1 << 2, /* a Raft vote only: no store, no calls, no modules */
} cvx_role_t;

typedef enum cvx_module_kind {
    CVX_MODULE_DRIVER = 1, /* a media driver: descriptor.driver is set */
    CVX_MODULE_APP = 2,    /* a call flow: descriptor.app is set */
    CVX_MODULE_SERVICE = 3 /* an integration with neither (licence provider, notifier) */
} cvx_module_kind_t;

struct cvx_driver_ops;
struct cvx_app_ops;
typedef struct cvx_module_env cvx_module_env_t;

typedef struct cvx_module {
    uint32_t abi_major;    /* CVX_MODULE_ABI_MAJOR */
    uint32_t abi_minor;    /* CVX_MODULE_ABI_MINOR */
    uint32_t size;         /* sizeof(cvx_module_t) as the module was built */
    const char *signature; /* CVX_MODULE_SIGNATURE */
    const char *name;      /* "sip"; a driver's instance sections are "[name:instance]" */
    const char *version;
    const char *description;
    cvx_module_kind_t kind;
    unsigned roles; /* cvx_role_t bits of the processes that load it */
    /* Called once after the checks; 0, CVX_EDECLINED (see cvx_module_decline) or an error. */
    int (*load)(cvx_module_env_t *env);
    /* Called once before the module is unloaded (not after a declined or failed load). */
    void (*unload)(void);
    const struct cvx_driver_ops *driver; /* CVX_MODULE_DRIVER */
    const struct cvx_app_ops *app;       /* CVX_MODULE_APP */
    /* Sections of the module's own ("[name]" or "[name:x]"), NULL-terminated; may be NULL.
     * A driver's instance section is described by its driver ops, not here. */
    const cvx_section_def_t *const *sections;
} cvx_module_t;

/* The smallest descriptor the loader accepts (version 1.0). */
#define CVX_MODULE_MIN_SIZE (offsetof(cvx_module_t, sections) + sizeof(void *))

typedef const cvx_module_t *(*cvx_module_entry_fn)(void);

/* What load() receives. */
struct cvx_module_env {
    struct uv_loop_s *loop;
    cvx_role_t role;
    cvx_conf_t *conf; /* the whole configuration, for the module's own sections */
    char decline_reason[256];
};

/* Records why a module declines; load() then returns CVX_EDECLINED. */
void cvx_module_decline(cvx_module_env_t *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An operation of a size-guarded table, or NULL when the table predates it. */
#define CVX_OP(table, field)                                                                       \
    ((table) != NULL &&                                                                            \
             offsetof(__typeof__(*(table)), field) + sizeof((table)->field) <= (table)->size       \
         ? (table)->field                                                                          \
         : NULL)

/* Define the entry point of a module: CVX_MODULE_DEFINE(my_descriptor). */
#define CVX_MODULE_DEFINE(desc)                                                                    \
    __attribute__((visibility("default"))) const cvx_module_t *cvx_module_entry(void);             \
    const cvx_module_t *cvx_module_entry(void)                                                     \
    {                                                                                              \
        return &(desc);                                                                            \
    }

#endif

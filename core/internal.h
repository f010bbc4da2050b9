/*
 * Declarations shared between the core's own files; not for modules.
 */
#ifndef CVX_CORE_INTERNAL_H
#define CVX_CORE_INTERNAL_H

#include <uv.h>

#include "cvx/driver.h"
#include "cvx/module.h"

/* A loaded (or refused) module file. */
typedef enum cvx__module_state {
    CVX__MOD_LOADED = 0,
    CVX__MOD_DECLINED,
    CVX__MOD_REFUSED,
    CVX__MOD_SKIPPED, /* not for this role, or "load = no" */
} cvx__module_state_t;

typedef struct cvx__module {
    struct cvx__module *next;
    char *path;
    char name[64]; /* from the file name: "null" for null.so */
    void *handle;  /* dlopen handle, NULL when not open */
    const cvx_module_t *desc;
    cvx__module_state_t state;
    int required;
    char reason[512];
} cvx__module_t;

/* Options of a "[module:NAME]" section. */
typedef struct cvx__module_conf {
    int load;
    int required;
} cvx__module_conf_t;

extern const cvx_section_def_t cvx__module_section;

/*
 * Opens path and checks its descriptor (ABI, size, signature, name, operation tables) without
 * calling load().  On failure m->state is CVX__MOD_REFUSED and m->reason says why; returns 0
 * or CVX_E*.
 */
int cvx__module_open(cvx__module_t *m, const char *path);
/* Calls the module's load(); declines and errors are recorded in m.  Returns 0 or CVX_E*. */
int cvx__module_load(cvx__module_t *m, cvx_module_env_t *env);
/* Calls unload() if loaded and closes the handle. */
void cvx__module_close(cvx__module_t *m);

/*
 * Loads every *.so in dir for role, following the "[module:NAME]" sections of conf.  Refused
 * and declined modules are logged; a refused module with "required = yes" (or a required
 * module whose file is missing) is fatal: the function adds the reason to diag and returns
 * CVX_EINVAL.  Sections of modules not loaded for this role are claimed silently.
 */
int cvx__modules_load_dir(const char *dir, cvx_conf_t *conf, cvx_role_t role, uv_loop_t *loop,
                          cvx__module_t **list, cvx_diag_t *diag);
void cvx__modules_unload(cvx__module_t **list);

/* Creates the driver instances of every loaded driver module from conf ("[drv:name]"). */
int cvx__drv_create_all(cvx__module_t *mods, cvx_conf_t *conf, uv_loop_t *loop, cvx_diag_t *diag);
int cvx__drv_start_all(cvx_diag_t *diag);
/* Stops every instance (calls in progress are hung up by the drivers). */
void cvx__drv_stop_all(void);
void cvx__drv_destroy_all(void);
/* Re-reads the options of every instance from conf and applies the reloadable ones; one
 * report line per change.  When a section has errors nothing changes and CVX_EINVAL is
 * returned (the errors are in report). */
int cvx__drv_reload_all(cvx_conf_t *conf, unsigned *applied, unsigned *restart, cvx_diag_t *report);

/* The names of dir's files ending in suffix (not hidden ones), sorted; free them with
 * cvx__dir_list_free().  Returns 0 or CVX_E* when dir cannot be read. */
int cvx__dir_list(const char *dir, const char *suffix, char ***names, size_t *n);
void cvx__dir_list_free(char **names, size_t n);

/* Sets the prefix of call ids ("<server name>"). */
void cvx__chan_set_id_prefix(const char *prefix);

#endif

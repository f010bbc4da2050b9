/*
 * The module loader: dlopen, descriptor checks, load(), decline, required modules.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "internal.h"

static const cvx_option_t module_options[] = {
    {"load", CVX_OPT_BOOL, offsetof(cvx__module_conf_t, load), "yes", 0, 0, NULL, 0,
     "Load this module at start."},
    {"required", CVX_OPT_BOOL, offsetof(cvx__module_conf_t, required), "no", 0, 0, NULL, 0,
     "Refuse to start when the module is missing, broken, or declines to load."},
    CVX_OPTIONS_END,
};

const cvx_section_def_t cvx__module_section = {
    "module", 1, module_options, sizeof(cvx__module_conf_t),
    "[module:NAME] controls the loading of NAME.so from the module directory."};

void cvx_module_decline(cvx_module_env_t *env, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(env->decline_reason, sizeof(env->decline_reason), fmt, ap);
    va_end(ap);
}

static int refuse(cvx__module_t *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(cvx__module_t *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
    va_end(ap);
    m->state = CVX__MOD_REFUSED;
    m->desc = NULL;
    if (m->handle != NULL) {
        dlclose(m->handle);
        m->handle = NULL;
    }
    return CVX_EABI;
}

/* The name a file gives its module: "null" for ".../null.so". */
static void name_from_path(const char *path, char *name, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 3 && strcmp(base + len - 3, ".so") == 0)
        len -= 3;
    snprintf(name, size, "%.*s", (int)len, base);
}

static int check_tables(cvx__module_t *m)
{
    const cvx_module_t *d = m->desc;
    if (d->kind == CVX_MODULE_DRIVER) {
        if (d->driver == NULL)
            return refuse(m, "is a driver but has no driver operations");
        if (d->driver->size < CVX_DRIVER_OPS_MIN_SIZE)
            return refuse(m, "driver operations table too small (%u bytes, at least %zu)",
                          d->driver->size, (size_t)CVX_DRIVER_OPS_MIN_SIZE);
        if (d->driver->options == NULL || d->driver->create == NULL || d->driver->destroy == NULL)
            return refuse(m, "driver lacks its option table, create() or destroy()");
    } else if (d->kind == CVX_MODULE_APP) {
        if (d->app == NULL || d->app->size < sizeof(uint32_t) + sizeof(void *))
            return refuse(m, "is an application but has no usable operations table");
    } else if (d->kind != CVX_MODULE_SERVICE) {
        return refuse(m, "unknown module kind %d", (int)d->kind);
    }
    return 0;
}

int cvx__module_open(cvx__module_t *m, const char *path)
{
    m->path = strdup(path);
    if (m->path == NULL)
        return CVX_ENOMEM;
    name_from_path(path, m->name, sizeof(m->name));

    dlerror();
    /* RTLD_NODELETE: a module stays mapped after dlclose().  Callbacks a module left behind
     * (thread-pool work, library threads) and thread-local storage of libraries it pulled in
     * then never point into unmapped memory, and leak reports keep its symbols. */
    m->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (m->handle == NULL) {
        const char *e = dlerror();
        return refuse(m, "cannot be opened: %s", e ? e : "unknown error");
    }
    cvx_module_entry_fn entry;
    *(void **)&entry = dlsym(m->handle, CVX_MODULE_ENTRY);
    if (entry == NULL)
        return refuse(m, "has no %s symbol; not a callvox module", CVX_MODULE_ENTRY);
    m->desc = entry();
    const cvx_module_t *d = m->desc;
    if (d == NULL)
        return refuse(m, "%s returned no descriptor", CVX_MODULE_ENTRY);
    if (d->abi_major != CVX_MODULE_ABI_MAJOR)
        return refuse(m, "was built for module ABI %u, this callvoxd has ABI %u", d->abi_major,
                      CVX_MODULE_ABI_MAJOR);
    if (d->size < CVX_MODULE_MIN_SIZE)
        return refuse(m, "descriptor too small (%u bytes, at least %zu)", d->size,
                      (size_t)CVX_MODULE_MIN_SIZE);
    if (d->signature == NULL || strcmp(d->signature, CVX_MODULE_SIGNATURE) != 0)
        return refuse(m, "build signature '%s' does not match this callvoxd's '%s'",
                      d->signature ? d->signature : "(none)", CVX_MODULE_SIGNATURE);
    if (d->name == NULL || strcmp(d->name, m->name) != 0)
        return refuse(m, "declares the name '%s' but its file is %s.so",
                      d->name ? d->name : "(none)", m->name);
    return check_tables(m);
}

int cvx__module_load(cvx__module_t *m, cvx_module_env_t *env)
{
    env->decline_reason[0] = '\0';
    int rc = m->desc->load ? m->desc->load(env) : 0;
    if (rc == CVX_EDECLINED) {
        snprintf(m->reason, sizeof(m->reason), "declined to load: %s",
                 env->decline_reason[0] ? env->decline_reason : "no reason given");
        m->state = CVX__MOD_DECLINED;
        return rc;
    }
    if (rc != 0) {
        snprintf(m->reason, sizeof(m->reason), "failed to load: %s", cvx_strerror(rc));
        m->state = CVX__MOD_REFUSED;
        return rc;
    }
    if (m->desc->kind == CVX_MODULE_APP) {
        rc = cvx_app_register(m->desc->name, m->desc->app, NULL);
        if (rc != 0) {
            if (m->desc->unload)
                m->desc->unload();
            snprintf(m->reason, sizeof(m->reason), "cannot register application: %s",
                     cvx_strerror(rc));
            m->state = CVX__MOD_REFUSED;
            return rc;
        }
    }
    m->state = CVX__MOD_LOADED;
    return 0;
}

void cvx__module_close(cvx__module_t *m)
{
    if (m->state == CVX__MOD_LOADED) {
        if (m->desc->kind == CVX_MODULE_APP)
            cvx_app_unregister(m->desc->name);
        if (m->desc->unload)
            m->desc->unload();
    }
    if (m->handle != NULL) {
        dlclose(m->handle);
        m->handle = NULL;
    }
    m->desc = NULL;
}

/* Claims the sections a module that was not loaded would have read. */
static void claim_sections(cvx_conf_t *conf, const char *kind)
{
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next)
        if (strcmp(s->kind, kind) == 0)
            s->claimed = 1;
}

/* The same for the other kinds of section an opened module declares ([menu:NAME] and
 * [schedule:NAME] of the attendant), so that a server that does not load it in its role
 * does not find them unclaimed.  Call before the module is closed. */
static void claim_declared(cvx_conf_t *conf, const cvx__module_t *m)
{
    if (m->desc == NULL || m->desc->sections == NULL)
        return;
    for (const cvx_section_def_t *const *d = m->desc->sections; *d != NULL; d++)
        claim_sections(conf, (*d)->kind);
}

static void append(cvx__module_t **list, cvx__module_t *m)
{
    while (*list != NULL)
        list = &(*list)->next;
    *list = m;
}

/* Opens and loads one module file following its [module:NAME] settings. */
static int load_one(const char *path, cvx_conf_t *conf, cvx_role_t role, uv_loop_t *loop,
                    cvx__module_t **list, cvx_diag_t *diag)
{
    cvx__module_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CVX_ENOMEM;
    name_from_path(path, m->name, sizeof(m->name));
    cvx__module_conf_t mc = {0};
    cvx_conf_section_t *sec = cvx_conf_find(conf, "module", m->name);
    cvx_conf_bind(&cvx__module_section, sec, &mc, diag);
    m->required = mc.required;
    append(list, m);

    if (!mc.load) {
        m->path = strdup(path);
        m->state = CVX__MOD_SKIPPED;
        snprintf(m->reason, sizeof(m->reason), "not loaded (load = no)");
        claim_sections(conf, m->name);
        cvx_info("module %s: %s", path, m->reason);
        return 0;
    }
    if (cvx__module_open(m, path) == 0) {
        if (!(m->desc->roles & role)) {
            /* A system server loads no media driver: close it again, untouched. */
            m->state = CVX__MOD_SKIPPED;
            snprintf(m->reason, sizeof(m->reason), "not used in this role");
            claim_declared(conf, m);
            cvx__module_close(m);
            claim_sections(conf, m->name);
            cvx_debug("module %s: %s", path, m->reason);
            return 0;
        }
        if (cvx__license_denies_module(m->name, m->reason, sizeof(m->reason))) {
            /* An unlicensed feature: close it again, untouched, and say so. */
            m->state = CVX__MOD_SKIPPED;
            claim_declared(conf, m);
            cvx__module_close(m);
            claim_sections(conf, m->name);
            cvx_notice("module %s: %s", path, m->reason);
            return 0;
        }
        cvx_module_env_t env = {loop, role, conf, ""};
        cvx__module_load(m, &env);
    }
    switch (m->state) {
    case CVX__MOD_LOADED:
        cvx_info("module %s: loaded %s %s (%s)", path, m->desc->name,
                 m->desc->version ? m->desc->version : "",
                 m->desc->description ? m->desc->description : "");
        return 0;
    case CVX__MOD_DECLINED:
        claim_declared(conf, m);
        claim_sections(conf, m->name);
        if (m->required) {
            cvx_diag_add(diag, "module %s %s, and [module:%s] says required = yes", path, m->reason,
                         m->name);
            return CVX_EINVAL;
        }
        cvx_notice("module %s %s", path, m->reason);
        cvx__module_close(m);
        return 0;
    default:
        claim_declared(conf, m);
        claim_sections(conf, m->name);
        if (m->required) {
            cvx_diag_add(diag, "module %s %s, and [module:%s] says required = yes", path, m->reason,
                         m->name);
            return CVX_EINVAL;
        }
        cvx_error("module %s %s; going on without it", path, m->reason);
        return 0;
    }
}

int cvx__modules_load_dir(const char *dir, cvx_conf_t *conf, cvx_role_t role, uv_loop_t *loop,
                          cvx__module_t **list, cvx_diag_t *diag)
{
    int rc = 0;
    char **names;
    size_t n;
    if (cvx__dir_list(dir, ".so", &names, &n) != 0)
        cvx_warn("module directory %s cannot be read; no modules loaded", dir);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        int r = load_one(path, conf, role, loop, list, diag);
        if (r != 0 && rc == 0)
            rc = r;
    }
    cvx__dir_list_free(names, n);

    /* [module:NAME] sections that name no file. */
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, "module") != 0 || s->name == NULL)
            continue;
        int found = 0;
        for (cvx__module_t *m = *list; m != NULL && !found; m = m->next)
            found = strcmp(m->name, s->name) == 0;
        if (found)
            continue;
        cvx__module_conf_t mc = {0};
        cvx_conf_bind(&cvx__module_section, s, &mc, diag);
        claim_sections(conf, s->name);
        if (mc.required && mc.load) {
            cvx_diag_add(diag, "%s:%d: [module:%s] is required, but %s/%s.so does not exist",
                         s->file, s->line, s->name, dir, s->name);
            rc = CVX_EINVAL;
        } else if (mc.load) {
            cvx_warn("%s:%d: [module:%s]: %s/%s.so does not exist", s->file, s->line, s->name, dir,
                     s->name);
        }
    }
    return rc;
}

void cvx__modules_unload(cvx__module_t **list)
{
    cvx__module_t *m = *list;
    while (m != NULL) {
        cvx__module_t *next = m->next;
        cvx__module_close(m);
        free(m->path);
        free(m);
        m = next;
    }
    *list = NULL;
}

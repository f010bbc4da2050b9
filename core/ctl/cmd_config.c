/*
 * "show config": every section the daemon reads, with values, defaults, types and help, from
 * the option tables (the core's own sections, registered core sections, [module:NAME], the
 * modules' sections and the driver instances), and the completion of section and option names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "ctl.h"
#include "internal.h"

/* --- show config ------------------------------------------------------------------------ */

typedef struct view {
    char label[128];
    const cvx_section_def_t *def;
    const void *conf;
    void *owned; /* a struct bound for display, released afterwards */
} view_t;

typedef struct views {
    view_t v[256];
    int n;
} views_t;

static view_t *add_view(views_t *vs, const char *label, const cvx_section_def_t *def,
                        const void *conf)
{
    if (vs->n == 256)
        return NULL;
    view_t *v = &vs->v[vs->n++];
    snprintf(v->label, sizeof(v->label), "%s", label);
    v->def = def;
    v->conf = conf;
    v->owned = NULL;
    return v;
}

/* Binds sec (or the defaults, sec NULL) into a fresh struct for display. */
static void add_bound(views_t *vs, const char *label, const cvx_section_def_t *def,
                      cvx_conf_section_t *sec)
{
    void *c = calloc(1, def->conf_size ? def->conf_size : 1);
    if (c == NULL)
        return;
    cvx_diag_t diag = {0};
    int claimed = sec ? sec->claimed : 0;
    cvx_conf_bind(def, sec, c, &diag);
    if (sec != NULL)
        sec->claimed = claimed;
    cvx_diag_clear(&diag);
    view_t *v = add_view(vs, label, def, c);
    if (v == NULL) {
        cvx_conf_release(def->options, c);
        free(c);
        return;
    }
    v->owned = c;
}

static void add_sections_of(views_t *vs, const cvx_section_def_t *def, int need_name);

static int add_core_section(const cvx_core_section_t *s, void *arg)
{
    if (s->def->repeated)
        add_sections_of(arg, s->def, 1);
    else
        add_view(arg, s->def->kind, s->def, s->conf);
    return 0;
}

static void add_sections_of(views_t *vs, const cvx_section_def_t *def, int need_name)
{
    cvx_conf_t *conf = cvx_daemon_conf();
    int found = 0;
    for (cvx_conf_section_t *s = conf ? conf->sections : NULL; s != NULL; s = s->next) {
        if (strcmp(s->kind, def->kind) != 0 || (need_name && s->name == NULL))
            continue;
        /* A section may be split over several files: show it once. */
        int dup = 0;
        for (cvx_conf_section_t *p = conf->sections; p != s; p = p->next)
            if (strcmp(p->kind, s->kind) == 0 &&
                ((p->name == NULL && s->name == NULL) ||
                 (p->name && s->name && strcmp(p->name, s->name) == 0)))
                dup = 1;
        if (dup)
            continue;
        char label[128];
        cvx_conf_section_label(s, label, sizeof(label));
        add_bound(vs, label, def, s);
        found = 1;
    }
    if (!found && !def->repeated)
        add_bound(vs, def->kind, def, NULL);
}

typedef struct desc_ctx {
    views_t *vs;
    cvx_section_def_t *drv_defs; /* the instance sections of driver modules */
    int ndrv;
} desc_ctx_t;

static int add_module_sections(const cvx_module_t *d, void *arg)
{
    desc_ctx_t *x = arg;
    if (d->sections != NULL)
        for (int i = 0; d->sections[i] != NULL; i++)
            add_sections_of(x->vs, d->sections[i], 0);
    if (d->kind == CVX_MODULE_DRIVER && d->driver != NULL && d->driver->options != NULL &&
        x->ndrv < 64) {
        cvx_section_def_t *def = &x->drv_defs[x->ndrv++];
        def->kind = d->name;
        def->repeated = 1;
        def->options = d->driver->options;
        def->conf_size = d->driver->conf_size;
        def->help = d->description;
        add_sections_of(x->vs, def, 1);
    }
    return 0;
}

static void collect_views(views_t *vs, cvx_section_def_t *drv_defs, cvx_log_conf_t *log_now)
{
    vs->n = 0;
    add_view(vs, "general", &cvx_general_section, cvx_daemon_general());
    *log_now = *(const cvx_log_conf_t *)cvx__daemon_log_conf();
    log_now->level = (int)cvx_log_get_level(); /* "log level" changes it at run time */
    add_view(vs, "log", &cvx_log_section, log_now);
    cvx_daemon_foreach_section(add_core_section, vs);
    add_sections_of(vs, &cvx__module_section, 1);
    desc_ctx_t x = {vs, drv_defs, 0};
    cvx__daemon_foreach_desc(add_module_sections, &x);
}

static void free_views(views_t *vs)
{
    for (int i = 0; i < vs->n; i++) {
        if (vs->v[i].owned != NULL) {
            cvx_conf_release(vs->v[i].def->options, vs->v[i].owned);
            free(vs->v[i].owned);
        }
    }
    vs->n = 0;
}

static void fmt_ms(char *buf, size_t size, long long ms)
{
    if (ms % 1000 != 0 || ms == 0)
        snprintf(buf, size, "%lldms", ms);
    else
        snprintf(buf, size, "%llds", ms / 1000);
}

static void option_type(const cvx_option_t *o, char *buf, size_t size)
{
    char a[32], b[32];
    switch (o->type) {
    case CVX_OPT_BOOL:
        snprintf(buf, size, "boolean");
        break;
    case CVX_OPT_INT:
        snprintf(buf, size, "integer %lld..%lld", o->min, o->max);
        break;
    case CVX_OPT_DURATION:
        fmt_ms(a, sizeof(a), o->min);
        fmt_ms(b, sizeof(b), o->max);
        snprintf(buf, size, "duration %s..%s", a, b);
        break;
    case CVX_OPT_STRING:
        snprintf(buf, size, "string");
        break;
    case CVX_OPT_ENUM: {
        size_t off = (size_t)snprintf(buf, size, "one of:");
        for (int i = 0; o->choices && o->choices[i] && off < size; i++)
            off += (size_t)snprintf(buf + off, size - off, " %s", o->choices[i]);
        break;
    }
    case CVX_OPT_LIST:
        snprintf(buf, size, "list (the key may repeat)");
        break;
    }
}

/* Options whose values are secrets (a SIP registration password, USER:PASSWORD pairs) are never
 * shown: the read-only group may run "show config", and output ends up in tickets.  The option
 * tables have no flag for it, so an option whose name or help mentions a password, secret or
 * passphrase counts as one (hiding too much is the safe mistake). */
static int is_secret(const cvx_option_t *o)
{
    static const char *const words[] = {"password", "secret", "passphrase"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasestr(o->name, words[i]) != NULL ||
            (o->help != NULL && strcasestr(o->help, words[i]) != NULL))
            return 1;
    return 0;
}

/* One option: text "  key = value  (default d)" or in detail; JSON object. */
static void show_option(cvx_cmd_req_t *req, const view_t *v, const void *defaults,
                        const cvx_option_t *o, int detail, int width)
{
    char val[512], type[256], defv[512];
    cvx_opt_format(o, v->conf, val, sizeof(val));
    if (is_secret(o) && val[0] != '\0')
        snprintf(val, sizeof(val), "(hidden)");
    if (defaults != NULL && o->def != NULL)
        cvx_opt_format(o, defaults, defv, sizeof(defv));
    else
        snprintf(defv, sizeof(defv), "%s", o->def ? o->def : "");
    option_type(o, type, sizeof(type));
    int reload = (o->flags & CVX_OPT_RELOADABLE) != 0;
    if (detail) {
        cvx_cmd_printf(req, "[%s] %s = %s\n", v->label, o->name, val);
        cvx_cmd_printf(req, "  default:    %s\n",
                       o->def ? (o->def[0] ? o->def : "(empty)") : "(none)");
        cvx_cmd_printf(req, "  type:       %s\n", type);
        cvx_cmd_printf(req, "  reloadable: %s\n", reload ? "yes" : "no (needs a restart)");
        cvx_cmd_printf(req, "  %s\n", o->help ? o->help : "");
    } else {
        cvx_cmd_printf(req, "  %-*s = %s", width, o->name, val);
        if (o->def != NULL && (defaults == NULL || !cvx_opt_equal(o, v->conf, defaults)))
            cvx_cmd_printf(req, "  (default %s)", defv[0] ? defv : "empty");
        cvx_cmd_printf(req, "\n");
    }
    cvx_cmd_json_object(req, NULL);
    cvx_cmd_json_str(req, "key", o->name);
    cvx_cmd_json_str(req, "value", val);
    cvx_cmd_json_str(req, "default", o->def ? defv : NULL);
    cvx_cmd_json_str(req, "type", type);
    cvx_cmd_json_bool(req, "reloadable", reload);
    cvx_cmd_json_str(req, "help", o->help);
    cvx_cmd_json_end(req);
}

/* The defaults of a section, bound into a fresh struct (NULL when out of memory). */
static void *defaults_of(const cvx_section_def_t *def)
{
    void *d = calloc(1, def->conf_size ? def->conf_size : 1);
    cvx_diag_t diag = {0};
    if (d != NULL)
        cvx_conf_defaults(def, d, &diag);
    cvx_diag_clear(&diag);
    return d;
}

static void free_defaults(const cvx_section_def_t *def, void *d)
{
    if (d != NULL)
        cvx_conf_release(def->options, d);
    free(d);
}

static void show_section(cvx_cmd_req_t *req, const view_t *v, int with_help)
{
    void *defaults = defaults_of(v->def);
    int width = 0;
    for (const cvx_option_t *o = v->def->options; o && o->name; o++)
        if ((int)strlen(o->name) > width)
            width = (int)strlen(o->name);
    cvx_cmd_printf(req, "[%s]\n", v->label);
    if (with_help && v->def->help)
        cvx_cmd_printf(req, "; %s\n", v->def->help);
    cvx_cmd_json_object(req, NULL);
    cvx_cmd_json_str(req, "section", v->label);
    cvx_cmd_json_str(req, "help", v->def->help);
    cvx_cmd_json_array(req, "options");
    for (const cvx_option_t *o = v->def->options; o && o->name; o++) {
        show_option(req, v, defaults, o, 0, width);
        if (with_help && o->help)
            cvx_cmd_printf(req, "      %s\n", o->help);
    }
    cvx_cmd_json_end(req);
    cvx_cmd_json_end(req);
    free_defaults(v->def, defaults);
}

int cvx__cmd_show_config(cvx_cmd_req_t *req)
{
    views_t *vs = calloc(1, sizeof(*vs));
    cvx_section_def_t drv_defs[64];
    cvx_log_conf_t log_now;
    if (vs == NULL)
        return CVX_ENOMEM;
    collect_views(vs, drv_defs, &log_now);
    const char *what = cvx_cmd_arg(req, 0);
    int rc = 0;
    cvx_cmd_json_array(req, "sections");
    if (what == NULL) {
        for (int i = 0; i < vs->n; i++) {
            if (i > 0)
                cvx_cmd_printf(req, "\n");
            show_section(req, &vs->v[i], 0);
        }
        goto out;
    }
    /* A section by label, all sections of a kind ("null"), or section.key. */
    int shown = 0;
    for (int i = 0; i < vs->n; i++) {
        const view_t *v = &vs->v[i];
        size_t kl = strlen(v->def->kind);
        if (strcmp(v->label, what) == 0 ||
            (strcmp(v->def->kind, what) == 0 && v->label[kl] == ':')) {
            if (shown++)
                cvx_cmd_printf(req, "\n");
            show_section(req, v, 1);
        }
    }
    if (shown)
        goto out;
    const char *dot = strrchr(what, '.');
    if (dot != NULL) {
        char label[128];
        snprintf(label, sizeof(label), "%.*s", (int)(dot - what), what);
        for (int i = 0; i < vs->n; i++) {
            const view_t *v = &vs->v[i];
            if (strcmp(v->label, label) != 0)
                continue;
            for (const cvx_option_t *o = v->def->options; o && o->name; o++) {
                if (strcmp(o->name, dot + 1) == 0) {
                    cvx_cmd_json_object(req, NULL);
                    cvx_cmd_json_str(req, "section", v->label);
                    cvx_cmd_json_array(req, "options");
                    void *defaults = defaults_of(v->def);
                    show_option(req, v, defaults, o, 1, 0);
                    free_defaults(v->def, defaults);
                    cvx_cmd_json_end(req);
                    cvx_cmd_json_end(req);
                    goto out;
                }
            }
            char list[1024];
            size_t off = 0;
            list[0] = '\0';
            for (const cvx_option_t *o = v->def->options; o && o->name && off < sizeof(list); o++)
                off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                                        o == v->def->options ? " " : ", ", o->name);
            cvx_cmd_error(req, "show config: [%s] has no option '%s'; it has:%s", label, dot + 1,
                          list);
            rc = CVX_ENOTFOUND;
            goto out;
        }
    }
    {
        char *sections = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&sections, &len);
        if (f != NULL) {
            for (int i = 0; i < vs->n; i++)
                fprintf(f, "%s%s", i ? ", " : "", vs->v[i].label);
            fclose(f);
        }
        cvx_cmd_error(req, "show config: no section [%s]%s; sections: %s", what,
                      dot ? " and no section.key by that name" : "", sections ? sections : "");
        free(sections);
        rc = CVX_ENOTFOUND;
    }
out:
    cvx_cmd_json_end(req);
    free_views(vs);
    free(vs);
    return rc;
}

/* Completion of "section" and "option" kinds: labels, kinds of repeated sections and, with
 * options, every section.key. */
void cvx__config_complete(cvx_cmd_comp_t *c, int options)
{
    views_t *vs = calloc(1, sizeof(*vs));
    cvx_section_def_t drv_defs[64];
    cvx_log_conf_t log_now;
    if (vs == NULL)
        return;
    collect_views(vs, drv_defs, &log_now);
    for (int i = 0; i < vs->n; i++) {
        cvx_cmd_comp_add(c, vs->v[i].label);
        if (vs->v[i].def->repeated)
            cvx_cmd_comp_add(c, vs->v[i].def->kind);
        if (!options)
            continue;
        for (const cvx_option_t *o = vs->v[i].def->options; o && o->name; o++) {
            char full[256];
            snprintf(full, sizeof(full), "%s.%s", vs->v[i].label, o->name);
            cvx_cmd_comp_add(c, full);
        }
    }
    free_views(vs);
    free(vs);
}

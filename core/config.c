/*
 * INI parsing and table-driven binding of options (see cvx/config.h for the syntax).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/config.h"
#include "cvx/error.h"
#include "internal.h"

#define FIELD(conf, opt, type)  ((type *)((char *)(conf) + (opt)->offset))
#define CFIELD(conf, opt, type) ((const type *)((const char *)(conf) + (opt)->offset))

void cvx_diag_add(cvx_diag_t *d, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char **v = realloc(d->msgs, (d->n + 1) * sizeof(*v));
    if (v == NULL) {
        free(msg);
        return;
    }
    d->msgs = v;
    d->msgs[d->n++] = msg;
}

void cvx_diag_clear(cvx_diag_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = 0;
}

cvx_conf_t *cvx_conf_new(void)
{
    return calloc(1, sizeof(cvx_conf_t));
}

void cvx_conf_free(cvx_conf_t *conf)
{
    if (conf == NULL)
        return;
    cvx_conf_section_t *s = conf->sections;
    while (s != NULL) {
        cvx_conf_section_t *sn = s->next;
        cvx_conf_entry_t *e = s->entries;
        while (e != NULL) {
            cvx_conf_entry_t *en = e->next;
            free(e->key);
            free(e->value);
            free(e);
            e = en;
        }
        free(s->kind);
        free(s->name);
        free(s);
        s = sn;
    }
    for (size_t i = 0; i < conf->nfiles; i++)
        free(conf->files[i]);
    free(conf->files);
    free(conf);
}

const char *cvx_conf_section_label(const cvx_conf_section_t *sec, char *buf, size_t size)
{
    if (sec->name != NULL)
        snprintf(buf, size, "%s:%s", sec->kind, sec->name);
    else
        snprintf(buf, size, "%s", sec->kind);
    return buf;
}

cvx_conf_section_t *cvx_conf_find(cvx_conf_t *conf, const char *kind, const char *name)
{
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, kind) != 0)
            continue;
        if (name == NULL || (s->name != NULL && strcmp(s->name, name) == 0))
            return s;
    }
    return NULL;
}

static int valid_word(const char *s, int allow_upper_dot)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (islower(c) || isdigit(c) || c == '_' || c == '-')
            continue;
        if (allow_upper_dot && (isupper(c) || c == '.' || c == '+'))
            continue;
        return 0;
    }
    return 1;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Finds or appends the section "[kind:name]"; sections repeated across files are merged. */
static cvx_conf_section_t *open_section(cvx_conf_t *conf, const char *kind, const char *name,
                                        const char *file, int line)
{
    cvx_conf_section_t **tail = &conf->sections;
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, kind) == 0 &&
            ((s->name == NULL && name == NULL) ||
             (s->name != NULL && name != NULL && strcmp(s->name, name) == 0)))
            return s;
        tail = &s->next;
    }
    cvx_conf_section_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->kind = strdup(kind);
    s->name = name ? strdup(name) : NULL;
    s->file = file;
    s->line = line;
    if (s->kind == NULL || (name != NULL && s->name == NULL)) {
        free(s->kind);
        free(s->name);
        free(s);
        return NULL;
    }
    *tail = s;
    return s;
}

static int add_entry(cvx_conf_section_t *sec, const char *key, const char *value, const char *file,
                     int line, int file_index)
{
    cvx_conf_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return CVX_ENOMEM;
    e->key = strdup(key);
    e->value = strdup(value);
    e->file = file;
    e->line = line;
    e->file_index = file_index;
    if (e->key == NULL || e->value == NULL) {
        free(e->key);
        free(e->value);
        free(e);
        return CVX_ENOMEM;
    }
    cvx_conf_entry_t **tail = &sec->entries;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = e;
    return 0;
}

static const char *remember_file(cvx_conf_t *conf, const char *name)
{
    char **v = realloc(conf->files, (conf->nfiles + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    conf->files = v;
    v[conf->nfiles] = strdup(name);
    if (v[conf->nfiles] == NULL)
        return NULL;
    return v[conf->nfiles++];
}

/* Parses one "[...]" header line; returns the section or NULL with an error in diag. */
static cvx_conf_section_t *parse_header(cvx_conf_t *conf, char *p, const char *file, int line,
                                        cvx_diag_t *diag)
{
    size_t n = strlen(p);
    if (p[n - 1] != ']') {
        cvx_diag_add(diag, "%s:%d: section header must end with ']'", file, line);
        return NULL;
    }
    p[n - 1] = '\0';
    char *inner = trim(p + 1);
    char *colon = strchr(inner, ':');
    char *name = NULL;
    if (colon != NULL) {
        *colon = '\0';
        name = trim(colon + 1);
        inner = trim(inner);
    }
    if (!valid_word(inner, 0)) {
        cvx_diag_add(diag, "%s:%d: bad section kind '%s' (lower-case letters, digits, '_' and '-')",
                     file, line, inner);
        return NULL;
    }
    if (name != NULL && !valid_word(name, 1)) {
        cvx_diag_add(diag,
                     "%s:%d: bad section name '%s' in [%s:...] (letters, digits, '_', '-', "
                     "'.', '+')",
                     file, line, name, inner);
        return NULL;
    }
    cvx_conf_section_t *s = open_section(conf, inner, name, file, line);
    if (s == NULL)
        cvx_diag_add(diag, "%s:%d: out of memory", file, line);
    return s;
}

int cvx_conf_parse(cvx_conf_t *conf, const char *name, const char *text, cvx_diag_t *diag)
{
    size_t before = diag->n;
    const char *file = remember_file(conf, name);
    int file_index = (int)conf->nfiles;
    if (file == NULL)
        return CVX_ENOMEM;
    char *copy = strdup(text);
    if (copy == NULL)
        return CVX_ENOMEM;

    cvx_conf_section_t *sec = NULL;
    int bad_header = 0; /* keys under a header already reported are not reported again */
    int line = 0;
    char *save = NULL;
    /* strtok_r would skip empty lines and lose the count, so split by hand. */
    for (char *p = copy; p != NULL; p = save) {
        char *nl = strchr(p, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl)
            *nl = '\0';
        line++;
        char *s = trim(p);
        if (*s == '\0' || *s == ';' || *s == '#')
            continue;
        if (*s == '[') {
            sec = parse_header(conf, s, file, line, diag);
            bad_header = sec == NULL;
            continue;
        }
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            cvx_diag_add(diag, "%s:%d: expected 'key = value' or '[section]', got '%s'", file, line,
                         s);
            continue;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        if (!valid_word(key, 0)) {
            cvx_diag_add(diag, "%s:%d: bad key '%s' (lower-case letters, digits, '_' and '-')",
                         file, line, key);
            continue;
        }
        if (sec == NULL) {
            if (!bad_header)
                cvx_diag_add(diag, "%s:%d: key '%s' is outside any section", file, line, key);
            continue;
        }
        size_t vlen = strlen(value);
        if (vlen > 0 && value[0] == '"') {
            if (vlen < 2 || value[vlen - 1] != '"') {
                cvx_diag_add(diag, "%s:%d: [%s%s%s] %s: unterminated quoted value", file, line,
                             sec->kind, sec->name ? ":" : "", sec->name ? sec->name : "", key);
                continue;
            }
            value[vlen - 1] = '\0';
            value++;
        }
        if (add_entry(sec, key, value, file, line, file_index) != 0) {
            free(copy);
            return CVX_ENOMEM;
        }
    }
    free(copy);
    return diag->n > before ? CVX_EPARSE : 0;
}

static int read_file(const char *path, char **out, cvx_diag_t *diag)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        cvx_diag_add(diag, "%s: cannot open: %s", path, strerror(errno));
        return cvx_from_errno(errno);
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fclose(f);
            return CVX_ENOMEM;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL)
                free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        cvx_diag_add(diag, "%s: read error: %s", path, strerror(err));
        return CVX_EIO;
    }
    if (memchr(buf, '\0', len) != NULL) {
        free(buf);
        cvx_diag_add(diag, "%s: contains a NUL byte; not a text file", path);
        return CVX_EPARSE;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

int cvx_conf_load(cvx_conf_t *conf, const char *path, cvx_diag_t *diag)
{
    char *text = NULL;
    int rc = read_file(path, &text, diag);
    if (rc != 0)
        return rc;
    rc = cvx_conf_parse(conf, path, text, diag);
    free(text);

    /* conf.d/ beside the main file. */
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s/conf.d", (int)(slash - path), path);
    else
        snprintf(dir, sizeof(dir), "conf.d");
    char **names;
    size_t n;
    if (cvx__dir_list(dir, ".conf", &names, &n) != 0)
        return rc; /* no conf.d: nothing more to read */
    for (size_t i = 0; i < n; i++) {
        char fpath[8192];
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, names[i]);
        text = NULL;
        int r = read_file(fpath, &text, diag);
        if (r == 0) {
            r = cvx_conf_parse(conf, fpath, text, diag);
            free(text);
        }
        if (r != 0 && rc == 0)
            rc = r;
    }
    cvx__dir_list_free(names, n);
    return rc;
}

static const cvx_option_t *find_option(const cvx_option_t *opts, const char *name)
{
    for (const cvx_option_t *o = opts; o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1", NULL};
    static const char *const no[] = {"no", "false", "off", "0", NULL};
    for (int i = 0; yes[i]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_int(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno == ERANGE)
        return -1;
    *out = x;
    return 0;
}

static int parse_duration(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || errno == ERANGE || x < 0)
        return -1;
    long long mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else if (strcmp(end, "d") == 0)
        mult = 86400000;
    else
        return -1;
    if (x > INT64_MAX / mult)
        return -1;
    *out = x * mult;
    return 0;
}

static void format_range(const cvx_option_t *opt, char *buf, size_t size)
{
    if (opt->type == CVX_OPT_DURATION)
        snprintf(buf, size, "%lldms..%lldms", opt->min, opt->max);
    else
        snprintf(buf, size, "%lld..%lld", opt->min, opt->max);
}

/* Sets one option from text.  where is "file:line: [section]" for messages. */
static int set_option(const cvx_option_t *opt, void *conf, const char *value, const char *where,
                      cvx_diag_t *diag)
{
    char range[96];
    switch (opt->type) {
    case CVX_OPT_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0) {
            cvx_diag_add(diag, "%s %s: '%s' is not a boolean (yes or no)", where, opt->name, value);
            return CVX_EINVAL;
        }
        *FIELD(conf, opt, int) = b;
        return 0;
    }
    case CVX_OPT_INT:
    case CVX_OPT_DURATION: {
        long long x;
        int bad = opt->type == CVX_OPT_INT ? parse_int(value, &x) : parse_duration(value, &x);
        if (bad) {
            cvx_diag_add(diag, "%s %s: '%s' is not %s", where, opt->name, value,
                         opt->type == CVX_OPT_INT ? "an integer"
                                                  : "a duration (such as 500ms, 20s, 5m, 1h)");
            return CVX_EINVAL;
        }
        if (x < opt->min || x > opt->max) {
            format_range(opt, range, sizeof(range));
            cvx_diag_add(diag, "%s %s: %s is out of range (%s)", where, opt->name, value, range);
            return CVX_ERANGE;
        }
        *FIELD(conf, opt, long long) = x;
        return 0;
    }
    case CVX_OPT_STRING: {
        char *s = strdup(value);
        if (s == NULL)
            return CVX_ENOMEM;
        free(*FIELD(conf, opt, char *));
        *FIELD(conf, opt, char *) = s;
        return 0;
    }
    case CVX_OPT_ENUM:
        for (int i = 0; opt->choices[i] != NULL; i++) {
            if (strcmp(opt->choices[i], value) == 0) {
                *FIELD(conf, opt, int) = i;
                return 0;
            }
        }
        {
            char list[256] = "";
            for (int i = 0; opt->choices[i] != NULL; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", opt->choices[i]);
            }
            cvx_diag_add(diag, "%s %s: '%s' is not one of: %s", where, opt->name, value, list);
        }
        return CVX_EINVAL;
    case CVX_OPT_LIST: {
        cvx_strlist_t *l = FIELD(conf, opt, cvx_strlist_t);
        char **v = realloc(l->v, (l->n + 1) * sizeof(*v));
        if (v == NULL)
            return CVX_ENOMEM;
        l->v = v;
        l->v[l->n] = strdup(value);
        if (l->v[l->n] == NULL)
            return CVX_ENOMEM;
        l->n++;
        return 0;
    }
    }
    return CVX_EINVAL;
}

static void clear_list(cvx_strlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int cvx_conf_defaults(const cvx_section_def_t *def, void *out, cvx_diag_t *diag)
{
    int rc = 0;
    char where[160];
    snprintf(where, sizeof(where), "built-in default: [%s]", def->kind);
    for (const cvx_option_t *o = def->options; o->name != NULL; o++) {
        if (o->def == NULL)
            continue;
        if (o->type == CVX_OPT_LIST && o->def[0] == '\0')
            continue;
        int r = set_option(o, out, o->def, where, diag);
        if (r != 0 && rc == 0)
            rc = r;
    }
    return rc;
}

int cvx_conf_bind(const cvx_section_def_t *def, cvx_conf_section_t *sec, void *out,
                  cvx_diag_t *diag)
{
    int rc = cvx_conf_defaults(def, out, diag);
    if (sec == NULL)
        return rc;
    sec->claimed = 1;

    char label[128];
    cvx_conf_section_label(sec, label, sizeof(label));
    for (cvx_conf_entry_t *e = sec->entries; e != NULL; e = e->next) {
        char where[4352];
        snprintf(where, sizeof(where), "%s:%d: [%s]", e->file, e->line, label);
        const cvx_option_t *o = find_option(def->options, e->key);
        if (o == NULL) {
            cvx_diag_add(diag, "%s unknown key '%s'", where, e->key);
            rc = CVX_EINVAL;
            continue;
        }
        /* The same key earlier in this section: repeated in one file is an error (except for
         * lists); set in an earlier file is overridden.  A list is started afresh by the first
         * value each file gives, which also replaces the default. */
        int dup = 0, first_in_file = 1;
        for (cvx_conf_entry_t *p = sec->entries; p != e; p = p->next) {
            if (strcmp(p->key, e->key) != 0 || p->file_index != e->file_index)
                continue;
            first_in_file = 0;
            if (o->type != CVX_OPT_LIST) {
                cvx_diag_add(diag, "%s %s: set twice in one file (first at line %d)", where, e->key,
                             p->line);
                dup = 1;
                break;
            }
        }
        if (dup) {
            rc = CVX_EINVAL;
            continue;
        }
        if (o->type == CVX_OPT_LIST && first_in_file)
            clear_list(FIELD(out, o, cvx_strlist_t));
        int r = set_option(o, out, e->value, where, diag);
        if (r != 0)
            rc = r;
    }
    for (const cvx_option_t *o = def->options; o->name != NULL; o++) {
        if (!(o->flags & CVX_OPT_REQUIRED))
            continue;
        int found = 0;
        for (cvx_conf_entry_t *e = sec->entries; e != NULL && !found; e = e->next)
            found = strcmp(e->key, o->name) == 0;
        if (!found) {
            cvx_diag_add(diag, "%s:%d: [%s] missing required key '%s'", sec->file, sec->line, label,
                         o->name);
            rc = CVX_EINVAL;
        }
    }
    return rc;
}

void cvx_conf_release(const cvx_option_t *options, void *conf)
{
    for (const cvx_option_t *o = options; o->name != NULL; o++) {
        if (o->type == CVX_OPT_STRING) {
            free(*FIELD(conf, o, char *));
            *FIELD(conf, o, char *) = NULL;
        } else if (o->type == CVX_OPT_LIST) {
            clear_list(FIELD(conf, o, cvx_strlist_t));
        }
    }
}

int cvx_conf_check_unclaimed(cvx_conf_t *conf, cvx_diag_t *diag)
{
    int rc = 0;
    char label[128];
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (s->claimed)
            continue;
        cvx_diag_add(diag, "%s:%d: unknown section [%s] (no loaded module reads '%s' sections)",
                     s->file, s->line, cvx_conf_section_label(s, label, sizeof(label)), s->kind);
        rc = CVX_EINVAL;
    }
    return rc;
}

void cvx_opt_format(const cvx_option_t *opt, const void *conf, char *buf, size_t size)
{
    switch (opt->type) {
    case CVX_OPT_BOOL:
        snprintf(buf, size, "%s", *CFIELD(conf, opt, int) ? "yes" : "no");
        break;
    case CVX_OPT_INT:
        snprintf(buf, size, "%lld", *CFIELD(conf, opt, long long));
        break;
    case CVX_OPT_DURATION: {
        long long ms = *CFIELD(conf, opt, long long);
        if (ms % 1000 != 0)
            snprintf(buf, size, "%lldms", ms);
        else
            snprintf(buf, size, "%llds", ms / 1000);
        break;
    }
    case CVX_OPT_STRING: {
        const char *s = *CFIELD(conf, opt, char *const);
        snprintf(buf, size, "%s", s ? s : "");
        break;
    }
    case CVX_OPT_ENUM:
        snprintf(buf, size, "%s", opt->choices[*CFIELD(conf, opt, int)]);
        break;
    case CVX_OPT_LIST: {
        const cvx_strlist_t *l = CFIELD(conf, opt, cvx_strlist_t);
        size_t off = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < l->n && off < size; i++)
            off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "", l->v[i]);
        break;
    }
    }
}

int cvx_opt_equal(const cvx_option_t *opt, const void *a, const void *b)
{
    switch (opt->type) {
    case CVX_OPT_BOOL:
    case CVX_OPT_ENUM:
        return *CFIELD(a, opt, int) == *CFIELD(b, opt, int);
    case CVX_OPT_INT:
    case CVX_OPT_DURATION:
        return *CFIELD(a, opt, long long) == *CFIELD(b, opt, long long);
    case CVX_OPT_STRING: {
        const char *x = *CFIELD(a, opt, char *const), *y = *CFIELD(b, opt, char *const);
        return (x == NULL && y == NULL) || (x != NULL && y != NULL && strcmp(x, y) == 0);
    }
    case CVX_OPT_LIST: {
        const cvx_strlist_t *x = CFIELD(a, opt, cvx_strlist_t), *y = CFIELD(b, opt, cvx_strlist_t);
        if (x->n != y->n)
            return 0;
        for (size_t i = 0; i < x->n; i++)
            if (strcmp(x->v[i], y->v[i]) != 0)
                return 0;
        return 1;
    }
    }
    return 0;
}

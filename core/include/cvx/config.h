/*
 * Configuration: INI files and the option tables that give them meaning.
 *
 * Syntax: "[kind]" or "[kind:name]" opens a section, "key = value" sets an option, lines whose
 * first non-blank character is ';' or '#' are comments.  There are no inline comments,
 * because '#' and '*' are DTMF keys that values often name; a value may be put in double
 * quotes to keep surrounding blanks.  The main file is read first, then every *.conf in the
 * conf.d directory beside it, in name order.  A section may appear in several files; a key
 * set twice in one file is an error, a key set again in a later file overrides the earlier.
 *
 * Options are declared in tables by the code that owns them (cvx_option_t) with a type, an
 * offset into the owner's struct, a default, bounds and help text; binding a section to a
 * table checks every key and fills the struct.  Errors name file:line, section and key.
 *
 * Ownership: a cvx_conf_t owns its strings; a bound struct's string and list fields are owned
 * by the struct and released with cvx_conf_release(def_options, struct).
 * Thread: the loop thread (start-up and reload), no locking.
 */
#ifndef CVX_CONFIG_H
#define CVX_CONFIG_H

#include <stddef.h>

typedef enum cvx_opt_type {
    CVX_OPT_BOOL,     /* int: 0 or 1; yes/no, true/false, on/off, 1/0 */
    CVX_OPT_INT,      /* long long, within [min, max] */
    CVX_OPT_DURATION, /* long long milliseconds; "250ms", "20s", "5m", "2h"; a bare number is
                         seconds; within [min, max] milliseconds */
    CVX_OPT_STRING,   /* char *, NULL when unset with no default */
    CVX_OPT_ENUM,     /* int: index into choices */
    CVX_OPT_LIST,     /* cvx_strlist_t: the key may repeat, each value is one element */
} cvx_opt_type_t;

enum {
    CVX_OPT_RELOADABLE = 1 << 0, /* SIGHUP / reload applies a change without a restart */
    CVX_OPT_REQUIRED = 1 << 1,   /* the key must be given */
};

typedef struct cvx_strlist {
    size_t n;
    char **v;
} cvx_strlist_t;

typedef struct cvx_option {
    const char *name;
    cvx_opt_type_t type;
    size_t offset;              /* offsetof(owner struct, field) */
    const char *def;            /* default, written as in a file; NULL: none */
    long long min, max;         /* INT and DURATION bounds (inclusive) */
    const char *const *choices; /* ENUM: NULL-terminated */
    unsigned flags;
    const char *help;
} cvx_option_t;

/* A table ends with an entry whose name is NULL. */
#define CVX_OPTIONS_END                                                                            \
    {                                                                                              \
        NULL, 0, 0, NULL, 0, 0, NULL, 0, NULL                                                      \
    }

/* A kind of section and the table that reads it. */
typedef struct cvx_section_def {
    const char *kind; /* "general", "module", "sip" */
    int repeated;     /* 1: "[kind:name]" sections; 0: one "[kind]" */
    const cvx_option_t *options;
    size_t conf_size; /* size of the struct the options fill */
    const char *help;
} cvx_section_def_t;

typedef struct cvx_conf_entry {
    struct cvx_conf_entry *next;
    char *key;
    char *value;
    const char *file; /* owned by the cvx_conf_t */
    int line;
    int file_index; /* order of the file that set it */
} cvx_conf_entry_t;

typedef struct cvx_conf_section {
    struct cvx_conf_section *next;
    char *kind;
    char *name; /* NULL for "[kind]" */
    const char *file;
    int line;
    cvx_conf_entry_t *entries;
    int claimed; /* set when some code bound or deliberately skipped it */
} cvx_conf_section_t;

typedef struct cvx_conf {
    cvx_conf_section_t *sections;
    char **files; /* every file read, in order */
    size_t nfiles;
} cvx_conf_t;

/* Collected error messages, printed one per line. */
typedef struct cvx_diag {
    char **msgs;
    size_t n;
} cvx_diag_t;

void cvx_diag_add(cvx_diag_t *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cvx_diag_clear(cvx_diag_t *d);

cvx_conf_t *cvx_conf_new(void);
void cvx_conf_free(cvx_conf_t *conf);

/*
 * Reads path and then path's directory's conf.d/ *.conf.  A missing main file is an error; a
 * missing conf.d is not.  Syntax errors go to diag.  Returns 0 or a CVX_E* code (CVX_EPARSE
 * when diag has errors).
 */
int cvx_conf_load(cvx_conf_t *conf, const char *path, cvx_diag_t *diag);

/* Parses text as though it were file name.  Returns 0 or CVX_EPARSE. */
int cvx_conf_parse(cvx_conf_t *conf, const char *name, const char *text, cvx_diag_t *diag);

/* Finds "[kind]" or "[kind:name]" (name NULL for the first). */
cvx_conf_section_t *cvx_conf_find(cvx_conf_t *conf, const char *kind, const char *name);

/* Fills out (def->conf_size bytes, zeroed by the caller) with the defaults of def. */
int cvx_conf_defaults(const cvx_section_def_t *def, void *out, cvx_diag_t *diag);

/*
 * Applies defaults and then the section's entries (sec may be NULL: defaults only) to out and
 * marks the section claimed.  Unknown keys, wrong types, out-of-range values and missing
 * required keys are errors naming file:line, section and key.  Returns 0 or CVX_EINVAL.
 */
int cvx_conf_bind(const cvx_section_def_t *def, cvx_conf_section_t *sec, void *out,
                  cvx_diag_t *diag);

/* Frees the strings and lists a bound struct owns (not the struct itself). */
void cvx_conf_release(const cvx_option_t *options, void *conf);

/* Reports every section nobody claimed as an error.  Returns 0 or CVX_EINVAL. */
int cvx_conf_check_unclaimed(cvx_conf_t *conf, cvx_diag_t *diag);

/* Writes the value of opt in conf as it would be written in a file. */
void cvx_opt_format(const cvx_option_t *opt, const void *conf, char *buf, size_t size);

/* Compares one option's value in two bound structs; returns 1 when equal. */
int cvx_opt_equal(const cvx_option_t *opt, const void *a, const void *b);

/* Display name of a section: "kind" or "kind:name"; buf must hold 128 bytes. */
const char *cvx_conf_section_label(const cvx_conf_section_t *sec, char *buf, size_t size);

#endif

/*
 * Shell commands: what administrators type in `callvox` (or send with `callvox -x`).
 *
 * Commands are declared in static tables by the code that owns them and registered with
 * cvx_cmd_register(): the core registers its own (help, status, show ..., reload, shutdown)
 * at start; a module registers its table from load() and removes it from unload().  The
 * control socket parses what the client typed, checks the caller's rights against the
 * command's flags, checks the arguments against the table (count, fixed choices) and only
 * then calls the handler, so a handler sees well-formed input.  A line runs the command whose
 * name matches the most leading words ("show calls media" before "show calls").
 *
 *   static const char *const levels[] = {"error", "warning", "info", NULL};
 *   static int cmd_show_calls(cvx_cmd_req_t *req);
 *   static const cvx_cmd_t my_cmds[] = {
 *       {"show calls", {{0}}, CVX_CMD_READONLY, "List calls in progress",
 *        "One line per call: id, driver instance, direction, state, numbers, age.",
 *        cmd_show_calls, NULL},
 *       {"log level", {{"level", 0, levels, NULL, "the lowest level written"}}, 0,
 *        "Change the log level", "...", cmd_log_level, NULL},
 *       CVX_CMDS_END,
 *   };
 *   cvx_cmd_register(my_cmds);
 *
 * Output: a handler writes text with cvx_cmd_printf() and, for `--json`, structured values
 * with the cvx_cmd_json_* calls (or both at once with the cvx_cmd_table_* helpers, which
 * print aligned columns as text and an array of objects as JSON).  Only the form the client
 * asked for is kept; cvx_cmd_json() tells which, so a handler may skip work.  A handler that
 * writes no JSON gets {"text": "<its text>"} as its JSON result.
 *
 * Result: a handler returns 0 (success), a negative CVX_E* code (failure; its message is the
 * text given to cvx_cmd_error(), or cvx_strerror(code) when none was given), or
 * CVX_CMD_PENDING: it will finish later, on the loop thread, with cvx_cmd_finish() (the
 * store's commands finish after a writer-thread commit).  The request stays valid until
 * cvx_cmd_finish() even if the client goes away meanwhile (its output is then discarded).
 * Calling cvx_cmd_finish() from inside the handler (a completion that came at once) is
 * allowed: that result wins over the handler's return value.
 * While a request is pending, that client's next commands wait; other clients are served.
 *
 * Thread: everything here runs on the loop thread.  Handlers must not block (no fsync, no
 * synchronous file or NSS lookups): hand such work to the thread pool and return
 * CVX_CMD_PENDING.
 *
 * ABI: tables are arrays walked with the entry size the module was built with
 * (cvx_cmd_register passes sizeof(cvx_cmd_t)); cvx_cmd_t only grows by appending fields.
 */
#ifndef CVX_CMD_H
#define CVX_CMD_H

#include <stddef.h>
#include <stdint.h>

#define CVX_CMD_ARGS_MAX 4
/* A handler's return value: it will call cvx_cmd_finish() later. */
#define CVX_CMD_PENDING 1

typedef struct cvx_cmd_req cvx_cmd_req_t;

/* Flags of an argument. */
enum {
    CVX_CMD_ARG_OPTIONAL = 1 << 0, /* may be left out (only trailing arguments) */
    CVX_CMD_ARG_REST = 1 << 1,     /* takes every remaining word (last argument only) */
    CVX_CMD_ARG_SECRET = 1 << 2,   /* a secret (a PIN): the audit log shows *** instead */
};

/*
 * One argument.  choices, when set, is the NULL-terminated list of accepted words (checked
 * before the handler runs, and offered by tab completion).  complete names the kind of object
 * the argument names, for tab completion: the core knows "command", "call", "driver",
 * "plugin", "section", "option" (section.key) and "level"; modules add their own kinds with
 * cvx_cmd_add_completer() ("mailbox").
 */
typedef struct cvx_cmd_arg {
    const char *name; /* shown in usage as <name>; NULL ends the list */
    unsigned flags;   /* CVX_CMD_ARG_* */
    const char *const *choices;
    const char *complete;
    const char *help;
} cvx_cmd_arg_t;

/* Flags of a command. */
enum {
    CVX_CMD_READONLY = 1 << 0, /* only looks: the read-only group may run it, it is not audited */
    CVX_CMD_HIDDEN = 1 << 1,   /* not listed by "help" (tests, diagnostics) */
};

typedef struct cvx_cmd {
    const char *name; /* one or more words: "status", "show calls"; NULL ends the table */
    cvx_cmd_arg_t args[CVX_CMD_ARGS_MAX];
    unsigned flags;      /* CVX_CMD_* */
    const char *summary; /* one line for "help" */
    const char *help;    /* the full text for "help <command>": full sentences */
    int (*handler)(cvx_cmd_req_t *req);
    void *data; /* given back by cvx_cmd_data() */
} cvx_cmd_t;

#define CVX_CMDS_END                                                                               \
    {                                                                                              \
        NULL, {{0}}, 0, NULL, NULL, NULL, NULL                                                     \
    }

/*
 * Adds a table (which must stay valid until unregistered: a static array).  Fails with
 * CVX_EEXIST, registering nothing, when a command name is already taken, and CVX_EINVAL for a
 * malformed entry (no handler, an optional argument before a required one).  Loop thread;
 * before the daemon starts is fine too (the core's own table is registered then).
 */
int cvx_cmd_register_sized(const cvx_cmd_t *table, size_t entry_size);
#define cvx_cmd_register(table) cvx_cmd_register_sized((table), sizeof(cvx_cmd_t))
/* Removes a table; requests of its commands still pending must have finished. */
void cvx_cmd_unregister(const cvx_cmd_t *table);

/* --- the request, as the handler sees it --------------------------------------------- */

/* The command being run. */
const cvx_cmd_t *cvx_cmd_command(const cvx_cmd_req_t *req);
void *cvx_cmd_data(const cvx_cmd_req_t *req);
/* Number of argument words after the command's name, and the i-th (NULL past the end).  A
 * REST argument's words are also available joined by single blanks from cvx_cmd_rest(). */
int cvx_cmd_argc(const cvx_cmd_req_t *req);
const char *cvx_cmd_arg(const cvx_cmd_req_t *req, int i);
const char *cvx_cmd_rest(const cvx_cmd_req_t *req, int i);
/* The argument declared with this name, or NULL when it was left out. */
const char *cvx_cmd_arg_named(const cvx_cmd_req_t *req, const char *name);

/* Who is asking: the user name (or the uid as a number), uid, whether they may change things. */
const char *cvx_cmd_user(const cvx_cmd_req_t *req);
uint32_t cvx_cmd_uid(const cvx_cmd_req_t *req);
int cvx_cmd_is_admin(const cvx_cmd_req_t *req);

/* 1 when the client asked for JSON (--json): text output is then dropped. */
int cvx_cmd_json(const cvx_cmd_req_t *req);

/* --- output -------------------------------------------------------------------------- */

void cvx_cmd_printf(cvx_cmd_req_t *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One "key  value" line of a show command (the key padded to width in text) and the same
 * field in JSON: a string, or an unsigned number. */
void cvx_cmd_kv(cvx_cmd_req_t *req, int width, const char *key, const char *value);
void cvx_cmd_kv_uint(cvx_cmd_req_t *req, int width, const char *key, unsigned long long v);
/* Sets the error message returned with a failure (replaces an earlier one). */
void cvx_cmd_error(cvx_cmd_req_t *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * JSON output, written as a tree: the result is one object; key is NULL inside arrays and
 * names the member inside objects.  Strings are escaped.  Calls are ignored when the client
 * did not ask for JSON.
 */
void cvx_cmd_json_object(cvx_cmd_req_t *req, const char *key); /* opens an object */
void cvx_cmd_json_array(cvx_cmd_req_t *req, const char *key);  /* opens an array */
void cvx_cmd_json_end(cvx_cmd_req_t *req);                     /* closes the innermost */
void cvx_cmd_json_str(cvx_cmd_req_t *req, const char *key, const char *v); /* NULL: null */
void cvx_cmd_json_int(cvx_cmd_req_t *req, const char *key, long long v);
void cvx_cmd_json_uint(cvx_cmd_req_t *req, const char *key, unsigned long long v);
void cvx_cmd_json_double(cvx_cmd_req_t *req, const char *key, double v);
void cvx_cmd_json_bool(cvx_cmd_req_t *req, const char *key, int v);

/*
 * Tables: columns is NULL-terminated; a column name ending in '#' is numeric (right-aligned
 * in text, a JSON number); names are the JSON keys and, upper-cased, the text header.  key
 * names the JSON array in the result.  Each row gives one string per column.
 */
void cvx_cmd_table_begin(cvx_cmd_req_t *req, const char *key, const char *const *columns);
void cvx_cmd_table_row(cvx_cmd_req_t *req, const char *const *cells);
/* Prints the text form (aligned, with a header) or closes the JSON array. */
void cvx_cmd_table_end(cvx_cmd_req_t *req);

/* Ends a request whose handler returned CVX_CMD_PENDING: rc is 0 or a negative CVX_E*.
 * Loop thread.  req is freed; do not touch it afterwards. */
void cvx_cmd_finish(cvx_cmd_req_t *req, int rc);

/* --- completion ---------------------------------------------------------------------- */

typedef struct cvx_cmd_comp cvx_cmd_comp_t;
/* Offers one candidate for the word being completed (the caller filters by prefix). */
void cvx_cmd_comp_add(cvx_cmd_comp_t *c, const char *word);

/*
 * Names the objects of one kind for tab completion: fn calls cvx_cmd_comp_add() for every
 * object whose name starts with prefix.  Runs on the loop thread and must be quick (a short
 * read transaction at most).  The struct must stay valid until removed.
 */
typedef struct cvx_cmd_completer {
    const char *kind; /* "mailbox" */
    void (*fn)(cvx_cmd_comp_t *c, const char *prefix, void *arg);
    void *arg;
} cvx_cmd_completer_t;
int cvx_cmd_add_completer(const cvx_cmd_completer_t *completer);
void cvx_cmd_remove_completer(const cvx_cmd_completer_t *completer);

#endif

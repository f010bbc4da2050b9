/*
 * The command registry: tables of commands, matching a typed line to them, rights and argument
 * checks, running handlers and delivering their result (with the audit line), help and
 * completion.  The request and its output live in cmd_out.c.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cvx/cmd.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cmd_req.h"
#include "ctl.h"
#include "proto.h"

#define MAX_TABLES     64
#define MAX_COMPLETERS 32

typedef struct table_reg {
    const cvx_cmd_t *table;
    size_t entry_size;
} table_reg_t;

static table_reg_t tables[MAX_TABLES];
static unsigned ntables;
static const cvx_cmd_completer_t *completers[MAX_COMPLETERS];
static unsigned ncompleters;

/* --- registry --------------------------------------------------------------------------- */

#define ENTRY(reg, i) ((const cvx_cmd_t *)((const char *)(reg)->table + (i) * (reg)->entry_size))

/* Calls fn for every registered command; fn returns non-zero to stop. */
static const cvx_cmd_t *each_cmd(int (*fn)(const cvx_cmd_t *c, void *arg), void *arg)
{
    for (unsigned t = 0; t < ntables; t++)
        for (size_t i = 0; ENTRY(&tables[t], i)->name != NULL; i++)
            if (fn(ENTRY(&tables[t], i), arg))
                return ENTRY(&tables[t], i);
    return NULL;
}

static int same_name(const cvx_cmd_t *c, void *arg)
{
    return strcmp(c->name, (const char *)arg) == 0;
}

static int check_entry(const cvx_cmd_t *c)
{
    if (c->handler == NULL || c->name[0] == '\0' || c->name[0] == ' ')
        return CVX_EINVAL;
    int optional = 0;
    for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        if (c->args[a].flags & CVX_CMD_ARG_OPTIONAL)
            optional = 1;
        else if (optional)
            return CVX_EINVAL;
        if ((c->args[a].flags & CVX_CMD_ARG_REST) && a + 1 < CVX_CMD_ARGS_MAX &&
            c->args[a + 1].name != NULL)
            return CVX_EINVAL;
    }
    return 0;
}

int cvx_cmd_register_sized(const cvx_cmd_t *table, size_t entry_size)
{
    if (table == NULL || entry_size < offsetof(cvx_cmd_t, data) + sizeof(void *))
        return CVX_EINVAL;
    if (ntables == MAX_TABLES)
        return CVX_ELIMIT;
    table_reg_t reg = {table, entry_size};
    for (size_t i = 0; ENTRY(&reg, i)->name != NULL; i++) {
        const cvx_cmd_t *c = ENTRY(&reg, i);
        if (check_entry(c) != 0) {
            cvx_error("commands: '%s' is malformed (no handler, or an optional argument before "
                      "a required one); its table is not registered",
                      c->name);
            return CVX_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(ENTRY(&reg, j)->name, c->name) == 0)
                return CVX_EEXIST;
        if (each_cmd(same_name, (void *)c->name) != NULL) {
            cvx_error("commands: '%s' is already registered; its table is not registered", c->name);
            return CVX_EEXIST;
        }
    }
    tables[ntables++] = reg;
    return 0;
}

void cvx_cmd_unregister(const cvx_cmd_t *table)
{
    for (unsigned t = 0; t < ntables; t++) {
        if (tables[t].table == table) {
            memmove(&tables[t], &tables[t + 1], (ntables - t - 1) * sizeof(tables[0]));
            ntables--;
            return;
        }
    }
}

void cvx__cmd_reset(void)
{
    ntables = 0;
    ncompleters = 0;
}

int cvx_cmd_add_completer(const cvx_cmd_completer_t *completer)
{
    if (ncompleters == MAX_COMPLETERS)
        return CVX_ELIMIT;
    completers[ncompleters++] = completer;
    return 0;
}

void cvx_cmd_remove_completer(const cvx_cmd_completer_t *completer)
{
    for (unsigned i = 0; i < ncompleters; i++) {
        if (completers[i] == completer) {
            completers[i] = completers[--ncompleters];
            return;
        }
    }
}

/* --- matching a line to a command --------------------------------------------------------- */

/* How many words of c's name equal words[0..n): all of them, or -1 when they differ. */
static int name_match(const char *name, char **words, int n)
{
    int k = 0;
    const char *p = name;
    while (*p != '\0') {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (k >= n || strlen(words[k]) != l || strncmp(words[k], p, l) != 0)
            return -1;
        k++;
        p += l;
        while (*p == ' ')
            p++;
    }
    return k;
}

typedef struct find_ctx {
    char **words;
    int n;
    const cvx_cmd_t *best;
    int best_k;
} find_ctx_t;

static int find_longest(const cvx_cmd_t *c, void *arg)
{
    find_ctx_t *f = arg;
    int k = name_match(c->name, f->words, f->n);
    if (k > f->best_k) {
        f->best = c;
        f->best_k = k;
    }
    return 0;
}

/* Adds to *list the word of every command name that follows words[0..depth) (unique). */
typedef struct next_ctx {
    char **words;
    int depth;
    const char *prefix; /* only words starting with it; may be NULL */
    char *list[256];
    int n;
} next_ctx_t;

static void next_add(next_ctx_t *x, const char *w, size_t l)
{
    if (x->prefix != NULL && strncmp(w, x->prefix, strlen(x->prefix)) != 0)
        return;
    if (x->prefix != NULL && strlen(x->prefix) > l)
        return;
    for (int i = 0; i < x->n; i++)
        if (strlen(x->list[i]) == l && strncmp(x->list[i], w, l) == 0)
            return;
    if (x->n < 256)
        x->list[x->n++] = strndup(w, l);
}

static int collect_next(const cvx_cmd_t *c, void *arg)
{
    next_ctx_t *x = arg;
    if (c->flags & CVX_CMD_HIDDEN)
        return 0;
    const char *p = c->name;
    for (int k = 0; k < x->depth; k++) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (e == NULL || strlen(x->words[k]) != l || strncmp(x->words[k], p, l) != 0)
            return 0;
        p = e + 1;
    }
    const char *e = strchr(p, ' ');
    next_add(x, p, e ? (size_t)(e - p) : strlen(p));
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void next_words(next_ctx_t *x, cvx__sbuf_t *out, const char *sep)
{
    each_cmd(collect_next, x);
    qsort(x->list, (size_t)x->n, sizeof(char *), cmp_str);
    for (int i = 0; i < x->n; i++) {
        if (out != NULL) {
            if (i > 0)
                cvx__sb_str(out, sep);
            cvx__sb_str(out, x->list[i]);
        }
    }
}

static void next_free(next_ctx_t *x)
{
    for (int i = 0; i < x->n; i++)
        free(x->list[i]);
    x->n = 0;
}

static void usage_of(const cvx_cmd_t *c, cvx__sbuf_t *b)
{
    cvx__sb_str(b, c->name);
    for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        const cvx_cmd_arg_t *arg = &c->args[a];
        int literal = arg->choices != NULL && arg->choices[0] != NULL && arg->choices[1] == NULL;
        const char *rest = arg->flags & CVX_CMD_ARG_REST ? "..." : "";
        if (arg->flags & CVX_CMD_ARG_OPTIONAL)
            cvx__sb_printf(b, literal ? " [%s%s]" : " [<%s>%s]",
                           literal ? arg->choices[0] : arg->name, rest);
        else
            cvx__sb_printf(b, literal ? " %s%s" : " <%s>%s", literal ? arg->choices[0] : arg->name,
                           rest);
    }
}

const char *cvx__cmd_usage(const cvx_cmd_t *c)
{
    static char buf[512];
    cvx__sbuf_t b = {0};
    usage_of(c, &b);
    snprintf(buf, sizeof(buf), "%s", b.s ? b.s : c->name);
    free(b.s);
    return buf;
}

static void join_words(cvx__sbuf_t *b, char **words, int n)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            cvx__sb_add(b, " ", 1);
        cvx__sb_str(b, words[i]);
    }
}

/* Explains why words name no command. */
static void unknown_command(cvx__sbuf_t *err, char **words, int n)
{
    next_ctx_t x = {.words = words};
    /* The longest run of words that is the start of some command's name. */
    int depth = 0;
    for (; depth < n; depth++) {
        x.depth = depth;
        x.prefix = NULL;
        next_words(&x, NULL, "");
        int found = 0;
        for (int i = 0; i < x.n; i++)
            if (strcmp(x.list[i], words[depth]) == 0)
                found = 1;
        next_free(&x);
        if (!found)
            break;
    }
    x.depth = depth;
    cvx__sbuf_t choices = {0};
    next_words(&x, &choices, ", ");
    next_free(&x);
    if (depth == 0) {
        cvx__sb_printf(err, "unknown command '%s'; expected one of: %s (type 'help' for a list)",
                       words[0], choices.s ? choices.s : "");
    } else if (depth == n) {
        cvx__sb_str(err, "incomplete command '");
        join_words(err, words, n);
        cvx__sb_printf(err, "'; expected '");
        join_words(err, words, n);
        cvx__sb_printf(err, "' followed by one of: %s", choices.s ? choices.s : "");
    } else {
        cvx__sb_str(err, "unknown command '");
        join_words(err, words, depth + 1);
        cvx__sb_printf(err, "'; after '");
        join_words(err, words, depth);
        cvx__sb_printf(err, "' expected one of: %s", choices.s ? choices.s : "");
    }
    free(choices.s);
}

/* Checks the argument words against c's declaration; 0 or an explanation in err. */
static int check_args(const cvx_cmd_t *c, char **args, int n, cvx__sbuf_t *err)
{
    int a = 0;
    for (; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        const cvx_cmd_arg_t *arg = &c->args[a];
        if (a >= n) {
            if (arg->flags & CVX_CMD_ARG_OPTIONAL)
                return 0;
            cvx__sb_printf(err, "'%s' needs <%s> (usage: %s)", c->name, arg->name,
                           cvx__cmd_usage(c));
            return -1;
        }
        if (arg->choices != NULL) {
            int ok = 0;
            for (int i = 0; arg->choices[i] != NULL; i++)
                if (strcmp(arg->choices[i], args[a]) == 0)
                    ok = 1;
            if (!ok) {
                cvx__sb_printf(err, "'%s': '%s' is not one of: ", c->name, args[a]);
                for (int i = 0; arg->choices[i] != NULL; i++)
                    cvx__sb_printf(err, "%s%s", i ? ", " : "", arg->choices[i]);
                cvx__sb_printf(err, " (usage: %s)", cvx__cmd_usage(c));
                return -1;
            }
        }
        if (arg->flags & CVX_CMD_ARG_REST)
            return 0;
    }
    if (n > a) {
        if (a == 0)
            cvx__sb_printf(err, "'%s' takes no arguments, got '%s' (usage: %s)", c->name, args[a],
                           cvx__cmd_usage(c));
        else
            cvx__sb_printf(err, "'%s': unexpected argument '%s' (usage: %s)", c->name, args[a],
                           cvx__cmd_usage(c));
        return -1;
    }
    return 0;
}

/* --- running ---------------------------------------------------------------------------- */

static const char *const status_names[] = {"ok", "failed", "usage", "denied"};

void (*cvx__cmd_audit_fn)(const cvx__ctl_peer_t *peer, const char *line,
                          const char *result) = cvx__audit;

/* Words that, as an argument, say the next one is a secret ("mailbox set 1001 pin 4321"). */
static int names_secret(const char *w)
{
    static const char *const words[] = {"pin", "password", "passphrase", "secret"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasecmp(w, words[i]) == 0)
            return 1;
    return 0;
}

/* The line as the audit log shows it: arguments declared secret, and every argument after a
 * word that names a secret, become ***. */
static char *audit_line(const cvx_cmd_req_t *r)
{
    cvx__sbuf_t b = {0};
    int masking = 0;
    cvx__sb_str(&b, r->cmd->name);
    for (int w = r->first_arg; w < r->nwords; w++) {
        int a = w - r->first_arg;
        const cvx_cmd_arg_t *arg = NULL;
        for (int k = 0; k < CVX_CMD_ARGS_MAX && r->cmd->args[k].name != NULL; k++)
            if (k == a || ((r->cmd->args[k].flags & CVX_CMD_ARG_REST) && a >= k))
                arg = &r->cmd->args[k];
        if (masking || (arg != NULL && (arg->flags & CVX_CMD_ARG_SECRET)))
            cvx__sb_str(&b, " ***");
        else if (strpbrk(r->words[w], " \t\"") != NULL || r->words[w][0] == '\0')
            cvx__sb_printf(&b, " \"%s\"", r->words[w]); /* shown as typed, near enough */
        else
            cvx__sb_printf(&b, " %s", r->words[w]);
        if (names_secret(r->words[w]))
            masking = 1;
    }
    return b.s;
}

static void deliver(cvx_cmd_req_t *r, int status, const char *error)
{
    cvx__sbuf_t body = {0};
    if (r->json) {
        cvx__sb_str(&body, "{\"command\":");
        if (r->line != NULL)
            cvx__sb_json_string(&body, r->line);
        else
            cvx__sb_str(&body, "null");
        cvx__sb_printf(&body, ",\"status\":\"%s\",\"error\":", status_names[status]);
        if (error != NULL)
            cvx__sb_json_string(&body, error);
        else
            cvx__sb_str(&body, "null");
        cvx__sb_str(&body, ",\"result\":");
        if (r->js_written) {
            cvx__cmd_json_close_all(r);
            cvx__sb_add(&body, "{", 1);
            if (r->js.s != NULL)
                cvx__sb_add(&body, r->js.s, r->js.len);
            cvx__sb_add(&body, "}", 1);
        } else {
            cvx__sb_str(&body, "{\"text\":");
            cvx__sb_json_string(&body, r->text.s ? r->text.s : "");
            cvx__sb_add(&body, "}", 1);
        }
        cvx__sb_add(&body, "}\n", 2);
    } else {
        if (r->text.s != NULL)
            cvx__sb_add(&body, r->text.s, r->text.len);
        if (error != NULL)
            cvx__sb_printf(&body, "%s\n", error);
    }
    if (r->cmd != NULL && !(r->cmd->flags & CVX_CMD_READONLY)) {
        char result[600];
        if (status == CVX__CTL_OK)
            snprintf(result, sizeof(result), "ok");
        else
            snprintf(result, sizeof(result), "%s: %s", status_names[status],
                     error ? error : "(no message)");
        char *line = audit_line(r);
        cvx__cmd_audit_fn(&r->peer, line ? line : r->cmd->name, result);
        free(line);
    }
    if (r->done != NULL) {
        if (body.oom)
            r->done(r->done_arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        else
            r->done(r->done_arg, status, body.s ? body.s : "", body.len);
    }
    free(body.s);
}

void cvx_cmd_finish(cvx_cmd_req_t *req, int rc)
{
    if (req->in_handler) {
        /* Finished from inside the handler (a completion that came at once): the reply goes
         * out when the handler returns, whatever it returns. */
        req->finished_early = 1;
        req->early_rc = rc;
        return;
    }
    const char *err = NULL;
    if (rc != 0)
        err = req->error != NULL ? req->error : cvx_strerror(rc);
    deliver(req, rc == 0 ? CVX__CTL_OK : CVX__CTL_FAILED, err);
    cvx__cmd_req_free(req);
}

void cvx__cmd_detach(cvx_cmd_req_t *req)
{
    req->done = NULL;
    req->done_arg = NULL;
}

void cvx__cmd_run(const char *line, int json, const cvx__ctl_peer_t *peer, cvx__cmd_done_fn done,
                  void *arg, cvx_cmd_req_t **pending)
{
    *pending = NULL;
    cvx_cmd_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        done(arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        return;
    }
    r->peer = *peer;
    r->json = json;
    r->done = done;
    r->done_arg = arg;
    r->js_kind[0] = '{';
    r->js_first[0] = 1;
    r->line = strdup(line);
    r->wordbuf = malloc(strlen(line) + 1);
    if (r->line == NULL || r->wordbuf == NULL) {
        done(arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        cvx__cmd_req_free(r);
        return;
    }
    char perr[96];
    int n = cvx__ctl_split(line, r->wordbuf, r->words, CVX__CMD_MAX_WORDS, perr, sizeof(perr));
    if (n < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot read the command: %s", perr);
        deliver(r, CVX__CTL_USAGE, msg);
        cvx__cmd_req_free(r);
        return;
    }
    r->nwords = n;
    if (n == 0) {
        deliver(r, CVX__CTL_USAGE, "empty command; type 'help' for a list");
        cvx__cmd_req_free(r);
        return;
    }
    find_ctx_t f = {r->words, n, NULL, 0};
    each_cmd(find_longest, &f);
    cvx__sbuf_t err = {0};
    int status = CVX__CTL_OK;
    if (f.best == NULL) {
        unknown_command(&err, r->words, n);
        status = CVX__CTL_USAGE;
    } else {
        r->cmd = f.best;
        r->first_arg = f.best_k;
        if (!(f.best->flags & CVX_CMD_READONLY) && !peer->admin) {
            cvx__sb_printf(&err,
                           "permission denied: '%s' changes the system, and user %s may only run "
                           "read-only commands",
                           f.best->name, peer->user);
            status = CVX__CTL_DENIED;
        } else if (check_args(f.best, r->words + f.best_k, n - f.best_k, &err) != 0) {
            status = CVX__CTL_USAGE;
        }
    }
    if (status != CVX__CTL_OK) {
        deliver(r, status, err.s ? err.s : "error");
        free(err.s);
        cvx__cmd_req_free(r);
        return;
    }
    r->in_handler = 1;
    int rc = r->cmd->handler(r);
    r->in_handler = 0;
    if (r->finished_early)
        rc = r->early_rc;
    else if (rc == CVX_CMD_PENDING) {
        *pending = r;
        return;
    }
    cvx_cmd_finish(r, rc > 0 ? 0 : rc);
}

/* --- help ------------------------------------------------------------------------------- */

typedef struct list_ctx {
    const cvx_cmd_t *v[512];
    int n;
    const char *prefix; /* words the command name must start with, or NULL */
} list_ctx_t;

static int collect_cmd(const cvx_cmd_t *c, void *arg)
{
    list_ctx_t *l = arg;
    if (c->flags & CVX_CMD_HIDDEN)
        return 0;
    if (l->prefix != NULL) {
        size_t pl = strlen(l->prefix);
        if (strncmp(c->name, l->prefix, pl) != 0 || (c->name[pl] != '\0' && c->name[pl] != ' '))
            return 0;
    }
    if (l->n < 512)
        l->v[l->n++] = c;
    return 0;
}

static int cmp_cmd(const void *a, const void *b)
{
    return strcmp((*(const cvx_cmd_t *const *)a)->name, (*(const cvx_cmd_t *const *)b)->name);
}

/* "help" and "help <command>". */
int cvx__cmd_help(cvx_cmd_req_t *req)
{
    const char *topic = cvx_cmd_rest(req, 0);
    list_ctx_t l = {.prefix = topic};
    each_cmd(collect_cmd, &l);
    if (l.n == 0) {
        cvx_cmd_error(req, "help: no command is called '%s' or starts with it", topic);
        return CVX_ENOTFOUND;
    }
    qsort(l.v, (size_t)l.n, sizeof(l.v[0]), cmp_cmd);
    /* One command is explained in full: the one named, or the only one the words start. */
    int exact = topic != NULL && (l.n == 1 || strcmp(l.v[0]->name, topic) == 0);
    cvx_cmd_json_array(req, "commands");
    if (exact) {
        const cvx_cmd_t *c = l.v[0];
        cvx_cmd_printf(req, "usage: %s\n", cvx__cmd_usage(c));
        cvx_cmd_printf(req, "%s%s\n", c->summary ? c->summary : "",
                       c->flags & CVX_CMD_READONLY ? "" : " (changes the system: admin only)");
        if (c->help != NULL)
            cvx_cmd_printf(req, "\n%s\n", c->help);
        for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
            if (a == 0)
                cvx_cmd_printf(req, "\n");
            cvx_cmd_printf(req, "  <%s>  %s", c->args[a].name,
                           c->args[a].help ? c->args[a].help : "");
            if (c->args[a].choices != NULL && c->args[a].choices[1] != NULL) {
                cvx_cmd_printf(req, " (one of:");
                for (int i = 0; c->args[a].choices[i] != NULL; i++)
                    cvx_cmd_printf(req, " %s", c->args[a].choices[i]);
                cvx_cmd_printf(req, ")");
            }
            cvx_cmd_printf(req, "\n");
        }
    } else {
        size_t w = 0;
        for (int i = 0; i < l.n; i++) {
            size_t n = strlen(cvx__cmd_usage(l.v[i]));
            if (n > w)
                w = n;
        }
        cvx_cmd_printf(req, "Commands (* changes the system; your access: %s):\n",
                       req->peer.admin ? "admin" : "read-only");
        for (int i = 0; i < l.n; i++)
            cvx_cmd_printf(req, " %c %-*s  %s\n", l.v[i]->flags & CVX_CMD_READONLY ? ' ' : '*',
                           (int)w, cvx__cmd_usage(l.v[i]), l.v[i]->summary ? l.v[i]->summary : "");
        cvx_cmd_printf(req, "Type 'help <command>' for details.\n");
    }
    for (int i = 0; i < l.n; i++) {
        if (exact && i > 0)
            break;
        cvx_cmd_json_object(req, NULL);
        cvx_cmd_json_str(req, "name", l.v[i]->name);
        cvx_cmd_json_str(req, "usage", cvx__cmd_usage(l.v[i]));
        cvx_cmd_json_bool(req, "read_only", (l.v[i]->flags & CVX_CMD_READONLY) != 0);
        cvx_cmd_json_str(req, "summary", l.v[i]->summary);
        cvx_cmd_json_str(req, "help", l.v[i]->help);
        cvx_cmd_json_end(req);
    }
    cvx_cmd_json_end(req);
    return 0;
}

/* --- completion ------------------------------------------------------------------------- */

struct cvx_cmd_comp {
    const char *prefix;
    char **v;
    size_t n, cap;
};

void cvx_cmd_comp_add(cvx_cmd_comp_t *c, const char *word)
{
    if (word == NULL || strncmp(word, c->prefix, strlen(c->prefix)) != 0)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        if (cap > 4096)
            return;
        char **nv = realloc(c->v, cap * sizeof(char *));
        if (nv == NULL)
            return;
        c->v = nv;
        c->cap = cap;
    }
    char *d = strdup(word);
    if (d != NULL)
        c->v[c->n++] = d;
}

/* Completes an argument of kind "command": the words typed so far after "help". */
static void complete_command_words(cvx_cmd_comp_t *c, char **words, int depth)
{
    next_ctx_t x = {.words = words, .depth = depth, .prefix = c->prefix};
    each_cmd(collect_next, &x);
    for (int i = 0; i < x.n; i++)
        cvx_cmd_comp_add(c, x.list[i]);
    next_free(&x);
}

static void complete_arg(cvx_cmd_comp_t *c, const cvx_cmd_arg_t *arg, char **argwords, int nargs)
{
    if (arg->choices != NULL)
        for (int i = 0; arg->choices[i] != NULL; i++)
            cvx_cmd_comp_add(c, arg->choices[i]);
    if (arg->complete == NULL)
        return;
    if (strcmp(arg->complete, "command") == 0) {
        complete_command_words(c, argwords, nargs);
        return;
    }
    for (unsigned i = 0; i < ncompleters; i++)
        if (strcmp(completers[i]->kind, arg->complete) == 0)
            completers[i]->fn(c, c->prefix, completers[i]->arg);
    cvx__core_complete(c, arg->complete, c->prefix);
}

char *cvx__cmd_complete(const char *line)
{
    char *buf = malloc(strlen(line) + 2);
    char *words[CVX__CMD_MAX_WORDS + 1];
    char err[96];
    if (buf == NULL)
        return NULL;
    int n = cvx__ctl_split(line, buf, words, CVX__CMD_MAX_WORDS, err, sizeof(err));
    size_t ll = strlen(line);
    int trailing = ll == 0 || line[ll - 1] == ' ' || line[ll - 1] == '\t';
    cvx__sbuf_t out = {0};
    if (n < 0) {
        free(buf);
        cvx__sb_str(&out, "");
        return out.s;
    }
    /* The word being completed is the last one, or a new empty one after a blank. */
    static char empty[] = "";
    if (trailing)
        words[n++] = empty;
    cvx_cmd_comp_t c = {.prefix = words[n - 1]};
    int typed = n - 1; /* complete words before the one being completed */

    /* Command-name words first. */
    complete_command_words(&c, words, typed);
    /* Then arguments of the longest command the complete words name. */
    find_ctx_t f = {words, typed, NULL, 0};
    each_cmd(find_longest, &f);
    if (f.best != NULL) {
        int ai = typed - f.best_k; /* index of the argument being completed */
        const cvx_cmd_t *cmd = f.best;
        for (int a = 0; a < CVX_CMD_ARGS_MAX && cmd->args[a].name != NULL; a++) {
            if (a == ai || ((cmd->args[a].flags & CVX_CMD_ARG_REST) && ai >= a)) {
                complete_arg(&c, &cmd->args[a], words + f.best_k + a, ai - a);
                break;
            }
        }
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < c.n; i++) {
        if (i == 0 || strcmp(c.v[i], c.v[i - 1]) != 0) {
            cvx__sb_str(&out, c.v[i]);
            cvx__sb_add(&out, "\n", 1);
        }
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i]);
    free(c.v);
    free(buf);
    if (out.s == NULL)
        out.s = strdup("");
    return out.s;
}

/*
 * callvox: the administrator's shell.  Connects to callvoxd's control socket and runs
 * commands typed with line editing, history and tab completion (libedit), one command given
 * with -x, or commands read from a pipe.  -v.../-l LEVEL shows the live log while you type.
 *
 * Exit status: 0 success; 1 the command failed; 2 unknown command or wrong arguments (or bad
 * options to callvox itself); 3 permission denied; 4 the daemon cannot be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <histedit.h>
#include <locale.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "cvx/error.h"
#include "proto.h"

#ifndef CVX_VERSION
#define CVX_VERSION "0.0.0"
#endif
#define DEFAULT_SOCKET "/run/callvox/callvox.ctl"
#define REDISPLAY_KEY  0x1d /* ^]: bound to a redisplay after log lines were printed */
#define INTERRUPT_KEY  0x1e /* ^^: bound to "drop the line" after Ctrl-C */

static volatile sig_atomic_t got_sigint, got_sigwinch;

static void on_signal(int sig)
{
    if (sig == SIGINT)
        got_sigint = 1;
    else
        got_sigwinch = 1;
}

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug", "trace"};

static struct {
    int fd;
    cvx__ctl_dec_t dec;
    const char *socket;
    int json;
    int attach; /* level, -1: none */
    int interactive;
    int quiet;
    char name[64], role[16], user[64], access[16], why[96], version[32], level[16];
    EditLine *el;
    History *hist;
    char histfile[4096];
    int log_printed; /* log lines printed since the prompt was drawn */
} C = {.fd = -1, .attach = -1};

/* Leaves the terminal as it was (and keeps the history) before exiting on an error. */
static void restore_terminal(void)
{
    if (C.el != NULL) {
        HistEvent ev;
        if (C.histfile[0])
            history(C.hist, &ev, H_SAVE, C.histfile);
        el_end(C.el);
        C.el = NULL;
        fputs("\n", stdout);
        fflush(stdout);
    }
}

/* --- the connection ------------------------------------------------------------------------ */

static void die_unreachable(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_unreachable(const char *fmt, ...)
{
    va_list ap;
    restore_terminal();
    va_start(ap, fmt);
    fprintf(stderr, "callvox: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(CVX__CTL_EXIT_UNREACHABLE);
}

static void send_frame(uint8_t type, const void *prefix, size_t plen, const char *text)
{
    size_t len;
    uint8_t *f = cvx__ctl_frame(type, prefix, plen, text, strlen(text), &len);
    if (f == NULL)
        die_unreachable("out of memory");
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(C.fd, f + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die_unreachable("lost the connection to the daemon: %s", strerror(errno));
        off += (size_t)n;
    }
    free(f);
}

/* Writes text with control characters (other than newline and tab) shown as '?': caller names
 * and numbers come from the network and must not drive the administrator's terminal. */
static void write_text(FILE *f, const uint8_t *p, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if ((p[i] < 0x20 && p[i] != '\n' && p[i] != '\t') || p[i] == 0x7f) {
            fwrite(p + start, 1, i - start, f);
            fputc('?', f);
            start = i + 1;
        }
    }
    fwrite(p + start, 1, len - start, f);
}

static void print_log_line(int level, const char *line, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
    (void)level;
    if (C.el != NULL && C.log_printed == 0)
        fputs("\r\033[K", stdout); /* the prompt line goes; libedit draws it again below */
    printf("%s.%03ld ", stamp, ts.tv_nsec / 1000000);
    write_text(stdout, (const uint8_t *)line, len);
    fputc('\n', stdout);
    fflush(stdout);
    C.log_printed++;
}

/* Reads frames until one of type want arrives (log lines are printed on the way); a goodbye
 * ends the program.  With wait_ms >= 0, returns 0 when nothing came within that time.  The
 * frame stays valid until the next call. */
static int read_frame(uint8_t want, cvx__ctl_frame_t *out, int wait_ms)
{
    for (;;) {
        cvx__ctl_frame_t f;
        int rc = cvx__ctl_dec_next(&C.dec, &f);
        if (rc < 0)
            die_unreachable("the daemon sent something unreadable: %s", C.dec.error);
        if (rc == 1) {
            if (f.type == CVX__CTL_LOG && f.len >= 1) {
                print_log_line(f.payload[0], (const char *)f.payload + 1, f.len - 1);
                if (want == CVX__CTL_LOG) {
                    *out = f;
                    return 1;
                }
                continue;
            }
            if (f.type == CVX__CTL_GOODBYE) {
                restore_terminal();
                fprintf(stderr, "callvox: the daemon closed the connection: %.*s\n", (int)f.len,
                        (const char *)f.payload);
                exit(f.len >= 17 && memcmp(f.payload, "permission denied", 17) == 0
                         ? CVX__CTL_DENIED
                         : CVX__CTL_EXIT_UNREACHABLE);
            }
            if (f.type == want) {
                *out = f;
                return 1;
            }
            continue; /* something this shell does not know: skip it */
        }
        if (wait_ms >= 0) {
            struct pollfd p = {C.fd, POLLIN, 0};
            int n = poll(&p, 1, wait_ms);
            if (n == 0)
                return 0;
            wait_ms = 0;
        }
        char buf[65536];
        ssize_t n = recv(C.fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die_unreachable("the daemon closed the connection%s%s", n < 0 ? ": " : "",
                            n < 0 ? strerror(errno) : "");
        if (cvx__ctl_dec_feed(&C.dec, buf, (size_t)n) != 0)
            die_unreachable("out of memory");
    }
}

static void hello_field(const char *text, size_t len, const char *key, char *out, size_t size)
{
    size_t kl = strlen(key);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        if ((size_t)(nl - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            snprintf(out, size, "%.*s", (int)(nl - p - (ptrdiff_t)kl - 1), p + kl + 1);
            return;
        }
        p = nl + 1;
    }
    out[0] = '\0';
}

static void connect_daemon(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(C.socket) >= sizeof(sa.sun_path))
        die_unreachable("the socket path %s is too long", C.socket);
    strcpy(sa.sun_path, C.socket);
    C.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (C.fd < 0 || connect(C.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        die_unreachable("cannot connect to %s: %s (is callvoxd running? -s names another socket)",
                        C.socket, strerror(errno));
    cvx__ctl_dec_init(&C.dec, 256u << 20, (256u << 20) + 65536);
    cvx__ctl_frame_t f;
    if (read_frame(CVX__CTL_HELLO, &f, 15000) == 0)
        die_unreachable("%s: no greeting from the daemon within 15 s", C.socket);
    const char *t = (const char *)f.payload;
    hello_field(t, f.len, "name", C.name, sizeof(C.name));
    hello_field(t, f.len, "role", C.role, sizeof(C.role));
    hello_field(t, f.len, "user", C.user, sizeof(C.user));
    hello_field(t, f.len, "access", C.access, sizeof(C.access));
    hello_field(t, f.len, "why", C.why, sizeof(C.why));
    hello_field(t, f.len, "version", C.version, sizeof(C.version));
    hello_field(t, f.len, "level", C.level, sizeof(C.level));
}

/* Sends a command and prints the reply; returns the reply status. */
static int run_command(const char *line)
{
    uint8_t flags = C.json ? CVX__CTL_JSON : 0;
    send_frame(CVX__CTL_COMMAND, &flags, 1, line);
    cvx__ctl_frame_t f;
    read_frame(CVX__CTL_REPLY, &f, -1);
    if (f.len < 1)
        die_unreachable("the daemon sent an empty reply");
    int status = f.payload[0];
    FILE *out = status == CVX__CTL_OK || C.json ? stdout : stderr;
    if (C.json)
        write_text(out, f.payload + 1, f.len - 1); /* JSON escapes control characters itself */
    else
        write_text(out, f.payload + 1, f.len - 1);
    fflush(out);
    return status;
}

static int attach(const char *level)
{
    send_frame(CVX__CTL_ATTACH, NULL, 0, level);
    cvx__ctl_frame_t f;
    read_frame(CVX__CTL_REPLY, &f, -1);
    int status = f.len >= 1 ? f.payload[0] : CVX__CTL_FAILED;
    FILE *out = status == CVX__CTL_OK ? stdout : stderr;
    if (f.len > 1)
        fwrite(f.payload + 1, 1, f.len - 1, out);
    fflush(out);
    return status;
}

/* Shell-local commands; returns -1 when line is not one. */
static int local_command(const char *line, int *quit)
{
    char w1[32] = "", w2[32] = "", extra[8] = "";
    int n = sscanf(line, " %31s %31s %7s", w1, w2, extra);
    if (n >= 1 && (strcmp(w1, "exit") == 0 || strcmp(w1, "quit") == 0) && n == 1) {
        *quit = 1;
        return 0;
    }
    if (n >= 1 && strcmp(w1, "attach") == 0) {
        if (n != 2) {
            fprintf(stderr, "usage: attach <level>|off (levels: error, warning, notice, info, "
                            "debug, trace)\n");
            return CVX__CTL_USAGE;
        }
        return attach(w2);
    }
    return -1;
}

/* --- interactive: libedit ----------------------------------------------------------------- */

static char *prompt_fn(EditLine *el)
{
    static char p[96];
    (void)el;
    snprintf(p, sizeof(p), "%s%s> ", C.name, strcmp(C.access, "admin") == 0 ? "*" : "");
    return p;
}

/* Reads one character for libedit while printing log lines that arrive meanwhile. */
static int getc_fn(EditLine *el, wchar_t *wc)
{
    static mbstate_t mb;
    for (;;) {
        if (got_sigwinch) {
            got_sigwinch = 0;
            el_resize(el);
        }
        if (got_sigint) {
            /* Ctrl-C drops the line being typed, as in a login shell. */
            got_sigint = 0;
            fputs("^C\n", stdout);
            fflush(stdout);
            *wc = INTERRUPT_KEY;
            return 1;
        }
        if (C.log_printed > 0 && cvx__ctl_dec_held(&C.dec) == 0) {
            C.log_printed = 0;
            *wc = REDISPLAY_KEY;
            return 1;
        }
        if (cvx__ctl_dec_held(&C.dec) > 0) {
            cvx__ctl_frame_t f;
            if (read_frame(CVX__CTL_LOG, &f, 0) == 1)
                continue;
        }
        struct pollfd p[2] = {{STDIN_FILENO, POLLIN, 0}, {C.fd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (p[1].revents) {
            cvx__ctl_frame_t f;
            read_frame(CVX__CTL_LOG, &f, 0);
            continue;
        }
        if (p[0].revents) {
            char ch;
            ssize_t n = read(STDIN_FILENO, &ch, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return 0;
            size_t r = mbrtowc(wc, &ch, 1, &mb);
            if (r == (size_t)-2)
                continue; /* more bytes of this character */
            if (r == (size_t)-1) {
                memset(&mb, 0, sizeof(mb));
                continue;
            }
            if (r == 0)
                *wc = 0;
            return 1;
        }
    }
}

static unsigned char redisplay_fn(EditLine *el, int ch)
{
    (void)el;
    (void)ch;
    return CC_REDISPLAY;
}

static unsigned char interrupt_fn(EditLine *el, int ch)
{
    (void)ch;
    const LineInfo *li = el_line(el);
    el_cursor(el, (int)(li->lastchar - li->cursor));
    li = el_line(el);
    el_deletestr(el, (int)(li->cursor - li->buffer));
    return CC_REDISPLAY;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Tab: asks the daemon for the candidates of the word before the cursor. */
static unsigned char complete_fn(EditLine *el, int ch)
{
    (void)ch;
    const LineInfo *li = el_line(el);
    size_t len = (size_t)(li->cursor - li->buffer);
    char *line = strndup(li->buffer, len);
    if (line == NULL)
        return CC_ERROR;
    const char *word = line + len;
    while (word > line && word[-1] != ' ' && word[-1] != '\t')
        word--;
    size_t wl = strlen(word);
    send_frame(CVX__CTL_COMPLETE, NULL, 0, line);
    cvx__ctl_frame_t f;
    read_frame(CVX__CTL_MATCHES, &f, -1);
    /* The payload is not NUL-terminated: copy exactly its bytes. */
    char *list = malloc(f.len + 1);
    if (list == NULL) {
        free(line);
        return CC_ERROR;
    }
    memcpy(list, f.payload, f.len);
    list[f.len] = '\0';
    char *cands[512];
    int n = 0;
    for (char *s = list, *save = NULL, *tok; (tok = strtok_r(s, "\n", &save)) != NULL && n < 500;
         s = NULL)
        cands[n++] = tok;
    /* This shell's own commands. */
    static const char *const local_words[] = {"attach", "exit", "quit"};
    static const char *const attach_words[] = {"error", "warning", "notice", "info",
                                               "debug", "trace",   "off"};
    const char *first_end = strpbrk(line, " \t");
    if (first_end == NULL) {
        for (size_t i = 0; i < 3; i++)
            if (strncmp(local_words[i], word, wl) == 0)
                cands[n++] = (char *)local_words[i];
    } else if (strncmp(line, "attach", 6) == 0 && first_end == line + 6 &&
               strpbrk(first_end + strspn(first_end, " \t"), " \t") == NULL) {
        for (size_t i = 0; i < 7; i++)
            if (strncmp(attach_words[i], word, wl) == 0)
                cands[n++] = (char *)attach_words[i];
    }
    unsigned char ret = CC_REFRESH;
    if (n == 0) {
        ret = CC_REFRESH_BEEP;
    } else if (n == 1) {
        el_insertstr(el, cands[0] + wl);
        el_insertstr(el, " ");
    } else {
        size_t common = strlen(cands[0]);
        for (int i = 1; i < n; i++) {
            size_t k = 0;
            while (k < common && cands[i][k] == cands[0][k])
                k++;
            common = k;
        }
        if (common > wl) {
            char *ins = strndup(cands[0] + wl, common - wl);
            el_insertstr(el, ins);
            free(ins);
        } else {
            qsort(cands, (size_t)n, sizeof(char *), cmp_str);
            fputs("\n", stdout);
            for (int i = 0; i < n; i++)
                printf("%s%s", cands[i], i + 1 < n ? "  " : "\n");
            fflush(stdout);
            ret = CC_REDISPLAY;
        }
    }
    free(list);
    free(line);
    return ret;
}

/* 1 when a line carries a secret ("mailbox set 1001 pin 4321"): it stays out of the history
 * file, as the daemon keeps it out of the audit log. */
static int has_secret(const char *line)
{
    static const char *const words[] = {"pin", "password", "passphrase", "secret"};
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", line);
    char *save = NULL;
    int first = 1;
    for (char *w = strtok_r(copy, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
        for (size_t i = 0; !first && i < sizeof(words) / sizeof(words[0]); i++)
            if (strcasecmp(w, words[i]) == 0 && save != NULL && *save != '\0')
                return 1;
        first = 0;
    }
    return 0;
}

static void history_path(void)
{
    const char *f = getenv("CALLVOX_HISTORY");
    const char *home = getenv("HOME");
    if (f != NULL)
        snprintf(C.histfile, sizeof(C.histfile), "%s", f);
    else if (home != NULL && home[0] != '\0')
        snprintf(C.histfile, sizeof(C.histfile), "%s/.callvox_history", home);
}

static int interactive(void)
{
    HistEvent ev;
    int status = 0, quit = 0;
    C.hist = history_init();
    history(C.hist, &ev, H_SETSIZE, 1000);
    history(C.hist, &ev, H_SETUNIQUE, 1);
    history_path();
    if (C.histfile[0])
        history(C.hist, &ev, H_LOAD, C.histfile);
    C.el = el_init("callvox", stdin, stdout, stderr);
    el_set(C.el, EL_EDITOR, "emacs");
    el_set(C.el, EL_PROMPT, prompt_fn);
    el_set(C.el, EL_HIST, history, C.hist);
    /* Our own SIGINT and SIGWINCH handlers (no SA_RESTART: they wake the poll in getc_fn);
     * libedit's would end the program on Ctrl-C. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    el_wset(C.el, EL_GETCFN, getc_fn);
    /* el_wset: the narrow el_set(EL_ADDFN) copies the names with wcsdup and never frees them. */
    el_wset(C.el, EL_ADDFN, L"cvx-complete", L"Complete a command or argument", complete_fn);
    el_set(C.el, EL_BIND, "^I", "cvx-complete", NULL);
    el_wset(C.el, EL_ADDFN, L"cvx-redisplay", L"Redraw after log lines", redisplay_fn);
    el_set(C.el, EL_BIND, "^]", "cvx-redisplay", NULL);
    el_wset(C.el, EL_ADDFN, L"cvx-interrupt", L"Drop the line (Ctrl-C)", interrupt_fn);
    el_set(C.el, EL_BIND, "^^", "cvx-interrupt", NULL);
    el_source(C.el, NULL); /* ~/.editrc */

    if (!C.quiet)
        printf("Connected to callvoxd %s on %s (role %s) as %s, %s access (%s).\n"
               "Type 'help' for commands, Tab to complete, 'attach <level>' for the live log,\n"
               "'exit' or Ctrl-D to leave.\n",
               C.version, C.name, C.role, C.user, C.access, C.why);
    if (C.attach >= 0)
        attach(level_names[C.attach]);
    while (!quit) {
        int count = 0;
        C.log_printed = 0;
        got_sigint = 0; /* a Ctrl-C while a command ran is spent */
        const char *got = el_gets(C.el, &count);
        if (got == NULL || count <= 0) {
            fputs("\n", stdout);
            break;
        }
        char *line = strdup(got);
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' ||
                         line[l - 1] == '\t'))
            line[--l] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0') {
            if (!has_secret(p))
                history(C.hist, &ev, H_ENTER, p);
            int rc = local_command(p, &quit);
            status = rc >= 0 ? rc : run_command(p);
            if (strcmp(p, "help") == 0)
                printf("In this shell: attach <level>|off (the live log), exit or quit.\n");
        }
        free(line);
    }
    if (C.histfile[0])
        history(C.hist, &ev, H_SAVE, C.histfile);
    el_end(C.el);
    C.el = NULL;
    history_end(C.hist);
    return status;
}

/* --- a pipe of commands ------------------------------------------------------------------- */

static int from_pipe(void)
{
    int status = 0, quit = 0;
    char *line = NULL;
    size_t cap = 0;
    if (C.attach >= 0)
        attach(level_names[C.attach]);
    while (!quit && getline(&line, &cap, stdin) >= 0) {
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        int rc = local_command(p, &quit);
        if (rc < 0)
            rc = run_command(p);
        if (rc != 0)
            status = rc;
    }
    free(line);
    return status;
}

/* --- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: callvox [options]\n"
        "  -x, --execute CMD   run one command, print its output and exit with its status\n"
        "  -j, --json          replies as JSON documents (for scripts)\n"
        "  -v, --verbose       show the live log: -v notice, -vv info, -vvv debug, -vvvv trace\n"
        "  -l, --log LEVEL     show the live log at LEVEL (error ... trace)\n"
        "  -s, --socket PATH   the daemon's control socket (default $CALLVOX_SOCKET or %s)\n"
        "  -q, --quiet         no greeting\n"
        "  -V, --version       print the version and exit\n"
        "  -h, --help          this text\n"
        "Exit status: 0 ok, 1 the command failed, 2 unknown command or usage error,\n"
        "3 permission denied, 4 the daemon cannot be reached.\n",
        DEFAULT_SOCKET);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"execute", required_argument, NULL, 'x'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"log", required_argument, NULL, 'l'},
                                             {"socket", required_argument, NULL, 's'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *execute = NULL;
    int verbose = 0, c;
    setlocale(LC_CTYPE, "");
    signal(SIGPIPE, SIG_IGN);
    C.socket = getenv("CALLVOX_SOCKET");
    if (C.socket == NULL || C.socket[0] == '\0')
        C.socket = DEFAULT_SOCKET;
    while ((c = getopt_long(argc, argv, "x:jvl:s:qVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'x':
            execute = optarg;
            break;
        case 'j':
            C.json = 1;
            break;
        case 'v':
            verbose++;
            break;
        case 'l':
            C.attach = -1;
            for (int i = 0; i < 6; i++)
                if (strcmp(optarg, level_names[i]) == 0)
                    C.attach = i;
            if (C.attach < 0) {
                fprintf(stderr,
                        "callvox: unknown log level '%s' (error, warning, notice, info, debug, "
                        "trace)\n",
                        optarg);
                return CVX__CTL_USAGE;
            }
            break;
        case 's':
            C.socket = optarg;
            break;
        case 'q':
            C.quiet = 1;
            break;
        case 'V':
            printf("callvox %s\n", CVX_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return CVX__CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "callvox: unexpected argument '%s' (a command goes after -x, in quotes)\n",
                argv[optind]);
        return CVX__CTL_USAGE;
    }
    if (verbose > 0 && C.attach < 0)
        C.attach = verbose + 1 > 5 ? 5 : verbose + 1; /* -v notice ... -vvvv trace */

    connect_daemon();
    if (execute != NULL)
        return run_command(execute);
    if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO))
        return interactive();
    return from_pipe();
}

/*
 * The core's own shell commands: help, status, show plugins/drivers/calls/config, log level,
 * reload, shutdown; and the object kinds the core completes (call, driver, plugin, section,
 * option, level).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/chan.h"
#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/rtp.h"
#include "ctl.h"
#include "internal.h"

static const char *const level_names[] = {"error", "warning", "notice", "info",
                                          "debug", "trace",   NULL};
static const char *const graceful_word[] = {"graceful", NULL};

/* --- status ------------------------------------------------------------------------------ */

static void fmt_uptime(char *buf, size_t size, uint64_t s)
{
    snprintf(buf, size, "%llud %02llu:%02llu:%02llu", (unsigned long long)(s / 86400),
             (unsigned long long)(s / 3600 % 24), (unsigned long long)(s / 60 % 60),
             (unsigned long long)(s % 60));
}

static int cmd_status(cvx_cmd_req_t *req)
{
    static const char *const hist_names[8] = {"<1ms",  "<2ms",  "<5ms",   "<10ms",
                                              "<20ms", "<50ms", "<100ms", ">=100ms"};
    uint64_t up_s = (uv_now(cvx_daemon_loop()) - cvx_daemon_started_ms()) / 1000;
    char up[64];
    fmt_uptime(up, sizeof(up), up_s);
    const cvx_watchdog_t *wd = cvx_daemon_watchdog();
    cvx_log_stats_t ls;
    cvx_log_get_stats(&ls);
    cvx__ctl_stats_t cs;
    cvx__ctl_get_stats(&cs);
    unsigned calls = cvx_chan_count();

    cvx_cmd_printf(req, "callvoxd %s, server %s, role %s, pid %ld\n", cvx_daemon_version(),
                   cvx_daemon_name(), cvx_daemon_role_name(cvx_daemon_role()), (long)getpid());
    cvx_cmd_printf(req, "uptime:   %s\n", up);
    cvx_cmd_printf(req, "calls:    %u in progress\n", calls);
    cvx_cmd_printf(req,
                   "loop:     %llu iterations, %llu over %.1f ms (stalls), longest busy %.2f ms\n",
                   (unsigned long long)wd->iterations, (unsigned long long)wd->stalls,
                   (double)wd->threshold_ns / 1e6, (double)wd->busy_max_ns / 1e6);
    cvx_cmd_printf(req, "busy:    ");
    for (int i = 0; i < 8; i++)
        cvx_cmd_printf(req, " %s %llu", hist_names[i], (unsigned long long)wd->hist[i]);
    cvx_cmd_printf(req, "\n");
    for (int i = 0; i < CVX_WATCHDOG_WORST && wd->worst[i].busy_ns > 0; i++)
        cvx_cmd_printf(req, "stall:    %.2f ms at uptime %.1f s, mostly %s (%.2f ms)\n",
                       (double)wd->worst[i].busy_ns / 1e6,
                       (double)(wd->worst[i].when_ms - cvx_daemon_started_ms()) / 1000.0,
                       wd->worst[i].what ? wd->worst[i].what : "unmarked work",
                       (double)wd->worst[i].section_ns / 1e6);
    cvx_cmd_printf(req, "log:      level %s, %llu lines written, %llu dropped\n",
                   cvx_log_level_name(cvx_log_get_level()), (unsigned long long)ls.written,
                   (unsigned long long)ls.dropped);
    cvx_cmd_printf(
        req, "control:  %u client%s (%u attached), %llu commands, %llu refused, %llu cut off\n",
        cs.clients, cs.clients == 1 ? "" : "s", cs.attached, (unsigned long long)cs.commands,
        (unsigned long long)cs.refused, (unsigned long long)cs.cut_off);

    cvx_cmd_json_str(req, "version", cvx_daemon_version());
    cvx_cmd_json_str(req, "name", cvx_daemon_name());
    cvx_cmd_json_str(req, "role", cvx_daemon_role_name(cvx_daemon_role()));
    cvx_cmd_json_int(req, "pid", (long long)getpid());
    cvx_cmd_json_uint(req, "uptime_s", up_s);
    cvx_cmd_json_uint(req, "calls", calls);
    cvx_cmd_json_object(req, "loop");
    cvx_cmd_json_uint(req, "iterations", wd->iterations);
    cvx_cmd_json_uint(req, "stalls", wd->stalls);
    cvx_cmd_json_double(req, "stall_threshold_ms", (double)wd->threshold_ns / 1e6);
    cvx_cmd_json_double(req, "busy_max_ms", (double)wd->busy_max_ns / 1e6);
    cvx_cmd_json_object(req, "busy_histogram");
    for (int i = 0; i < 8; i++)
        cvx_cmd_json_uint(req, hist_names[i], wd->hist[i]);
    cvx_cmd_json_end(req);
    cvx_cmd_json_array(req, "worst");
    for (int i = 0; i < CVX_WATCHDOG_WORST && wd->worst[i].busy_ns > 0; i++) {
        cvx_cmd_json_object(req, NULL);
        cvx_cmd_json_double(req, "busy_ms", (double)wd->worst[i].busy_ns / 1e6);
        cvx_cmd_json_str(req, "what", wd->worst[i].what ? wd->worst[i].what : "unmarked work");
        cvx_cmd_json_double(req, "section_ms", (double)wd->worst[i].section_ns / 1e6);
        cvx_cmd_json_uint(req, "at_uptime_ms", wd->worst[i].when_ms - cvx_daemon_started_ms());
        cvx_cmd_json_end(req);
    }
    cvx_cmd_json_end(req);
    cvx_cmd_json_end(req);
    cvx_cmd_json_object(req, "log");
    cvx_cmd_json_str(req, "level", cvx_log_level_name(cvx_log_get_level()));
    cvx_cmd_json_uint(req, "written", ls.written);
    cvx_cmd_json_uint(req, "dropped", ls.dropped);
    cvx_cmd_json_end(req);
    cvx_cmd_json_object(req, "control");
    cvx_cmd_json_uint(req, "clients", cs.clients);
    cvx_cmd_json_uint(req, "attached", cs.attached);
    cvx_cmd_json_uint(req, "commands", cs.commands);
    cvx_cmd_json_uint(req, "refused", cs.refused);
    cvx_cmd_json_uint(req, "cut_off", cs.cut_off);
    cvx_cmd_json_end(req);
    return 0;
}

/* --- show plugins, drivers, calls ----------------------------------------------------- */

static int plugin_row(const cvx_module_info_t *m, void *arg)
{
    const char *cells[] = {m->name, m->kind[0] ? m->kind : "-", m->state,
                           m->version[0] ? m->version : "-",
                           m->reason[0] ? m->reason : m->description};
    cvx_cmd_table_row(arg, cells);
    return 0;
}

static int cmd_show_plugins(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {"name", "kind", "state", "version", "about", NULL};
    cvx_cmd_table_begin(req, "plugins", cols);
    cvx_daemon_foreach_module(plugin_row, req);
    cvx_cmd_table_end(req);
    return 0;
}

static int driver_row(cvx_drv_inst_t *inst, void *arg)
{
    cvx_drv_inst_info_t info;
    cvx_drv_inst_get_info(inst, &info);
    char line[160], calls[32], total[32];
    snprintf(line, sizeof(line), "%s%s%s", info.line_up ? "up" : "down",
             info.line_reason && info.line_reason[0] ? ": " : "",
             info.line_reason ? info.line_reason : "");
    snprintf(calls, sizeof(calls), "%u", info.calls);
    snprintf(total, sizeof(total), "%llu", (unsigned long long)info.calls_total);
    const char *cells[] = {info.name, info.driver, line, calls, total};
    cvx_cmd_table_row(arg, cells);
    return 0;
}

static int cmd_show_drivers(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {"instance", "driver", "line", "calls#", "total#", NULL};
    cvx_cmd_table_begin(req, "drivers", cols);
    cvx_drv_inst_foreach(driver_row, req);
    cvx_cmd_table_end(req);
    return 0;
}

static const char *const state_names[] = {"ringing", "dialing", "up", "ended"};

static int call_row(cvx_chan_t *chan, void *arg)
{
    cvx_cmd_req_t *req = arg;
    const cvx_call_info_t *ci = cvx_chan_info(chan);
    char age[32], in[24] = "0", out[24] = "0", lost[24] = "0", jit[24] = "0", late[24] = "0";
    const char *codec = "-";
    snprintf(age, sizeof(age), "%.1f",
             (double)(uv_now(cvx_daemon_loop()) - cvx_chan_start_ms(chan)) / 1000.0);
    /* Calls with RTP media (SIP) show their codec and packet figures; others dashes and 0. */
    cvx_rtp_t *rtp = cvx_rtp_of_chan(chan);
    if (rtp != NULL) {
        cvx_rtp_stats_t st;
        cvx_rtp_get_stats(rtp, &st);
        int c = cvx_rtp_codec(rtp);
        if (c >= 0)
            codec = cvx_codec_name((cvx_codec_t)c);
        snprintf(in, sizeof(in), "%llu", (unsigned long long)st.packets_in);
        snprintf(out, sizeof(out), "%llu", (unsigned long long)st.packets_out);
        snprintf(lost, sizeof(lost), "%llu", (unsigned long long)st.lost);
        snprintf(jit, sizeof(jit), "%.2f", st.jitter_ms);
        snprintf(late, sizeof(late), "%.3f", (double)st.late_p99_ns / 1e6);
    }
    unsigned state = (unsigned)cvx_chan_state(chan);
    const char *cells[] = {cvx_chan_id(chan),
                           cvx_drv_inst_name(cvx_chan_inst(chan)),
                           cvx_chan_dir(chan) == CVX_DIR_IN ? "in" : "out",
                           state < 4 ? state_names[state] : "?",
                           ci->calling,
                           ci->called,
                           ci->original_called,
                           cvx_redirect_name(ci->redirect),
                           age,
                           codec,
                           in,
                           out,
                           lost,
                           jit,
                           late};
    cvx_cmd_table_row(req, cells);
    return 0;
}

static int cmd_show_calls(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {
        "id",          "instance",        "dir",    "state",      "calling",
        "called",      "redirected_from", "reason", "age_s#",     "codec",
        "packets_in#", "packets_out#",    "lost#",  "jitter_ms#", "late_p99_ms#",
        NULL};
    cvx_cmd_table_begin(req, "calls", cols);
    cvx_chan_foreach(call_row, req);
    cvx_cmd_table_end(req);
    unsigned n = cvx_chan_count();
    cvx_cmd_printf(req, "%u call%s in progress\n", n, n == 1 ? "" : "s");
    return 0;
}

/* --- changing things -------------------------------------------------------------------- */

static int cmd_log_level(cvx_cmd_req_t *req)
{
    int l = cvx_log_level_from_name(cvx_cmd_arg(req, 0));
    cvx_log_level_t old = cvx_log_get_level();
    cvx_log_set_level((cvx_log_level_t)l);
    cvx_notice("log level changed from %s to %s by user %s", cvx_log_level_name(old),
               cvx_log_level_name((cvx_log_level_t)l), cvx_cmd_user(req));
    cvx_cmd_printf(req,
                   "log level: %s (was %s) until the next restart; set [log] level to keep it\n",
                   cvx_log_level_name((cvx_log_level_t)l), cvx_log_level_name(old));
    cvx_cmd_json_str(req, "level", cvx_log_level_name((cvx_log_level_t)l));
    cvx_cmd_json_str(req, "was", cvx_log_level_name(old));
    return 0;
}

static int cmd_reload(cvx_cmd_req_t *req)
{
    cvx_diag_t report = {0};
    cvx_notice("reload requested by user %s", cvx_cmd_user(req));
    int rc = cvx_daemon_reload(&report);
    size_t shown = rc != 0 && report.n > 0 ? report.n - 1 : report.n;
    cvx_cmd_json_array(req, "lines");
    for (size_t i = 0; i < report.n; i++) {
        cvx_log(rc ? CVX_LOG_ERROR : CVX_LOG_NOTICE, "%s", report.msgs[i]);
        if (i < shown)
            cvx_cmd_printf(req, "%s\n", report.msgs[i]);
        cvx_cmd_json_str(req, NULL, report.msgs[i]);
    }
    cvx_cmd_json_end(req);
    if (rc != 0)
        cvx_cmd_error(req, "%s",
                      report.n > 0 ? report.msgs[report.n - 1] : "the configuration has errors");
    cvx_diag_clear(&report);
    return rc;
}

static int cmd_shutdown(cvx_cmd_req_t *req)
{
    int graceful = cvx_cmd_arg(req, 0) != NULL;
    unsigned calls = cvx_chan_count();
    cvx_notice("shutdown%s requested by user %s", graceful ? " (graceful)" : "", cvx_cmd_user(req));
    if (graceful)
        cvx_cmd_printf(req, "shutting down gracefully: waiting for %u call%s to end\n", calls,
                       calls == 1 ? "" : "s");
    else
        cvx_cmd_printf(req, "shutting down: hanging up %u call%s\n", calls, calls == 1 ? "" : "s");
    cvx_cmd_json_bool(req, "graceful", graceful);
    cvx_cmd_json_uint(req, "calls", calls);
    cvx_daemon_shutdown(graceful);
    return 0;
}

/* --- calls from the shell --------------------------------------------------------------- */

/* A call placed by "call originate" holds the reference cvx_drv_originate() gave us until it
 * ends; its audio and digits are not used. */
static void shell_call_event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->type == CVX_EV_HANGUP)
        cvx_chan_unref(chan);
}

static int inst_name_list(cvx_drv_inst_t *inst, void *arg)
{
    char *list = arg;
    size_t n = strlen(list);
    snprintf(list + n, 512 - n, "%s%s", n ? ", " : "", cvx_drv_inst_name(inst));
    return 0;
}

static int cmd_call_originate(cvx_cmd_req_t *req)
{
    const char *name = cvx_cmd_arg(req, 0), *number = cvx_cmd_arg(req, 1);
    const char *calling = cvx_cmd_arg(req, 2);
    cvx_drv_inst_t *inst = cvx_drv_inst_find(name);
    if (inst == NULL) {
        char list[512] = "";
        cvx_drv_inst_foreach(inst_name_list, list);
        cvx_cmd_error(req, "call originate: no driver instance '%s'; instances: %s", name,
                      list[0] ? list : "none");
        return CVX_ENOTFOUND;
    }
    cvx_call_info_t info = {0};
    snprintf(info.called, sizeof(info.called), "%s", number);
    snprintf(info.calling, sizeof(info.calling), "%s", calling ? calling : "shell");
    cvx_chan_t *chan = NULL;
    int rc = cvx_drv_originate(inst, &info, shell_call_event, NULL, &chan);
    if (rc != 0) {
        cvx_cmd_error(req, "call originate: %s cannot place the call: %s", name, cvx_strerror(rc));
        return rc;
    }
    cvx_notice("call %s placed on %s to '%s' by user %s", cvx_chan_id(chan), name, number,
               cvx_cmd_user(req));
    cvx_cmd_printf(req, "call %s placed on %s to %s\n", cvx_chan_id(chan), name, number);
    cvx_cmd_json_str(req, "id", cvx_chan_id(chan));
    cvx_cmd_json_str(req, "instance", name);
    cvx_cmd_json_str(req, "called", number);
    return 0;
}

typedef struct find_call {
    const char *id;
    cvx_chan_t *chan;
} find_call_t;

static int match_call(cvx_chan_t *chan, void *arg)
{
    find_call_t *f = arg;
    if (strcmp(cvx_chan_id(chan), f->id) != 0)
        return 0;
    f->chan = chan;
    return 1;
}

static int cmd_call_hangup(cvx_cmd_req_t *req)
{
    find_call_t f = {cvx_cmd_arg(req, 0), NULL};
    cvx_chan_foreach(match_call, &f);
    if (f.chan == NULL) {
        cvx_cmd_error(req, "call hangup: no call '%s' in progress (see 'show calls')", f.id);
        return CVX_ENOTFOUND;
    }
    cvx_chan_ref(f.chan);
    cvx_notice("call %s: hangup requested by user %s", f.id, cvx_cmd_user(req));
    int rc = cvx_chan_hangup(f.chan, CVX_CAUSE_NORMAL);
    if (rc == 0)
        cvx_cmd_printf(req, "call %s: hung up\n", cvx_chan_id(f.chan));
    else
        cvx_cmd_error(req, "call hangup: %s: %s", cvx_chan_id(f.chan), cvx_strerror(rc));
    cvx_chan_unref(f.chan);
    return rc;
}

/* --- debug wait: a command that finishes later ------------------------------------------ */

/* "debug wait <ms>" answers after a timer: it exercises, through the real socket, the path the
 * store's commands take (CVX_CMD_PENDING, then cvx_cmd_finish()).  Hidden from "help". */
typedef struct waiter {
    uv_timer_t timer;
    cvx_cmd_req_t *req;
    uint64_t ms;
    struct waiter *next;
} waiter_t;

static waiter_t *waiters;

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

static void waiter_end(waiter_t *w, int rc)
{
    for (waiter_t **p = &waiters; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    if (rc == 0)
        cvx_cmd_printf(w->req, "waited %llu ms\n", (unsigned long long)w->ms);
    else
        cvx_cmd_error(w->req, "debug wait: the daemon is stopping");
    cvx_cmd_json_uint(w->req, "waited_ms", w->ms);
    cvx_cmd_finish(w->req, rc);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void on_wait_timer(uv_timer_t *t)
{
    waiter_end(t->data, 0);
}

static int cmd_debug_wait(cvx_cmd_req_t *req)
{
    char *end = NULL;
    const char *arg = cvx_cmd_arg(req, 0);
    long long ms = strtoll(arg, &end, 10);
    if (end == arg || *end != '\0' || ms < 1 || ms > 60000) {
        cvx_cmd_error(req, "debug wait: '%s' is not a number of milliseconds (1..60000)", arg);
        return CVX_EINVAL;
    }
    waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->req = req;
    w->ms = (uint64_t)ms;
    w->timer.data = w;
    uv_timer_init(cvx_daemon_loop(), &w->timer);
    uv_timer_start(&w->timer, on_wait_timer, (uint64_t)ms, 0);
    w->next = waiters;
    waiters = w;
    return CVX_CMD_PENDING;
}

void cvx__core_cmds_stop(void)
{
    while (waiters != NULL)
        waiter_end(waiters, CVX_ECLOSED);
}

/* --- the table ------------------------------------------------------------------------- */

static const cvx_cmd_t core_cmds[] = {
    {"help",
     {{"command", CVX_CMD_ARG_OPTIONAL | CVX_CMD_ARG_REST, NULL, "command",
       "a command, or the first words of several"}},
     CVX_CMD_READONLY,
     "List the commands, or explain one",
     "Without an argument, lists every command you can see with a one-line summary; commands "
     "marked * change the system and need admin access. With a command (or its first words, "
     "such as 'show'), prints its usage, its full description and its arguments.",
     cvx__cmd_help,
     NULL},
    {"status",
     {{0}},
     CVX_CMD_READONLY,
     "Show the server's role, version, uptime, calls and loop health",
     "Prints the version, server name, role and pid; uptime; calls in progress; the loop "
     "watchdog's figures (iterations, stalls over the threshold, the longest busy iteration, a "
     "histogram of busy times and the worst stalls with what caused them); the log's level and "
     "counters; and the control socket's clients.",
     cmd_status,
     NULL},
    {"show plugins",
     {{0}},
     CVX_CMD_READONLY,
     "List driver and plugin modules and whether they loaded",
     "One line per module file found in the module directory: name, kind (driver, app, "
     "service), state (loaded, declined, refused, skipped), version, and its description or "
     "the reason it is not loaded.",
     cmd_show_plugins,
     NULL},
    {"show drivers",
     {{0}},
     CVX_CMD_READONLY,
     "List driver instances, their line state and calls",
     "One line per driver instance ([driver:name] section): the instance, its driver, whether "
     "its line is up (and why not), calls now and calls since start.",
     cmd_show_drivers,
     NULL},
    {"show calls",
     {{0}},
     CVX_CMD_READONLY,
     "List calls in progress",
     "One line per call: its id, driver instance, direction, state, calling and called "
     "numbers, the number it was redirected from and why, and its age in seconds.",
     cmd_show_calls,
     NULL},
    {"show config",
     {{"section", CVX_CMD_ARG_OPTIONAL, NULL, "option",
       "a section (log, null:demo), every section of a kind (null), or section.key "
       "(log.level)"}},
     CVX_CMD_READONLY,
     "Show configuration values, defaults and help",
     "Without an argument, prints every section with each option's value and, where it "
     "differs, its default. With a section, adds the help text of the section and each option. "
     "With section.key, prints that option's value, default, type, whether a reload applies "
     "it, and its help. The core's sections show the values in force; module and driver "
     "sections show the configuration last loaded.",
     cvx__cmd_show_config,
     NULL},
    {"log level",
     {{"level", 0, level_names, "level", "the lowest level written"}},
     0,
     "Change the log level now",
     "Sets the lowest level the daemon writes, at once and until the next restart (a reload "
     "sets it again only when [log] level changed in the file).",
     cmd_log_level,
     NULL},
    {"reload",
     {{0}},
     0,
     "Re-read the configuration and apply what can change at run time",
     "Like SIGHUP: re-reads the configuration, applies the options marked reloadable and says "
     "which changes need a restart. A configuration with errors changes nothing, and the "
     "errors are listed.",
     cmd_reload,
     NULL},
    {"call originate",
     {{"instance", 0, NULL, "driver", "the driver instance to call out on (null:lines)"},
      {"number", 0, NULL, NULL, "the number to call"},
      {"calling", CVX_CMD_ARG_OPTIONAL, NULL, NULL, "the calling number shown (default shell)"}},
     0,
     "Place a test call",
     "Places an outbound call on a driver instance, as a call flow would: on the null driver "
     "the call comes back in and is routed like any incoming call, which makes it the quickest "
     "end-to-end check of drivers, routing and applications. The call stays up until the far "
     "end hangs up or 'call hangup' ends it.",
     cmd_call_originate,
     NULL},
    {"call hangup",
     {{"call", 0, NULL, "call", "the call's id, as 'show calls' lists it"}},
     0,
     "Hang up a call",
     "Hangs up one call in progress (normal clearing), whichever flow owns it.",
     cmd_call_hangup,
     NULL},
    {"debug wait",
     {{"ms", 0, NULL, NULL, "milliseconds, 1..60000"}},
     CVX_CMD_READONLY | CVX_CMD_HIDDEN,
     "Answer after a delay",
     "Answers 'waited N ms' after N milliseconds without holding up the daemon: a test of "
     "commands that finish later. This client's next commands wait for it; others do not.",
     cmd_debug_wait,
     NULL},
    {"shutdown",
     {{"graceful", CVX_CMD_ARG_OPTIONAL, graceful_word, NULL,
       "wait for calls in progress to end (up to [general] drain_timeout)"}},
     0,
     "Stop the daemon",
     "Stops the daemon: calls in progress are hung up at once, or with 'graceful' allowed to "
     "end by themselves for up to [general] drain_timeout. The daemon exits 0.",
     cmd_shutdown,
     NULL},
    CVX_CMDS_END,
};

int cvx__core_cmds_register(void)
{
    return cvx_cmd_register(core_cmds);
}

/* --- completion of the core's kinds ------------------------------------------------------ */

static int comp_call(cvx_chan_t *chan, void *arg)
{
    cvx_cmd_comp_add(arg, cvx_chan_id(chan));
    return 0;
}

static int comp_driver(cvx_drv_inst_t *inst, void *arg)
{
    cvx_cmd_comp_add(arg, cvx_drv_inst_name(inst));
    return 0;
}

static int comp_plugin(const cvx_module_info_t *m, void *arg)
{
    cvx_cmd_comp_add(arg, m->name);
    return 0;
}

void cvx__core_complete(cvx_cmd_comp_t *c, const char *kind, const char *prefix)
{
    (void)prefix;
    if (strcmp(kind, "call") == 0) {
        cvx_chan_foreach(comp_call, c);
    } else if (strcmp(kind, "driver") == 0) {
        cvx_drv_inst_foreach(comp_driver, c);
    } else if (strcmp(kind, "plugin") == 0) {
        cvx_daemon_foreach_module(comp_plugin, c);
    } else if (strcmp(kind, "level") == 0) {
        for (int i = 0; level_names[i] != NULL; i++)
            cvx_cmd_comp_add(c, level_names[i]);
    } else if (strcmp(kind, "section") == 0 || strcmp(kind, "option") == 0) {
        cvx__config_complete(c, strcmp(kind, "option") == 0);
    }
}

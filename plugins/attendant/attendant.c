/*
 * The auto attendant: callers to one of its numbers hear a menu chosen by the schedule
 * (business hours, holidays, in the site's time zone) and reach extensions by number or by
 * name, the operator, or a mailbox (att_flow.c).  This file is the module: its sections,
 * prompts and recorded greetings, the clock schedules see, and which calls it takes.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "att.h"
#include "cvx/app.h"
#include "cvx/chan.h"
#include "cvx/cmd.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"
#include "cvx/prompts.h"

extern const cvx_section_def_t att_section, att_menu_section, att_schedule_section;

#define CVX_PROMPT(name, gen, file) {name, gen, file},
static const cvx_prompt_def_t prompt_defs[] = {
#include "att_prompt_table.h"
};
#undef CVX_PROMPT
#define NPROMPTS (sizeof(prompt_defs) / sizeof(prompt_defs[0]))

cvx_prompt_set_t *att_prompts;

int att_prompt_known(const char *name)
{
    for (size_t i = 0; i < NPROMPTS; i++)
        if (strcmp(prompt_defs[i].name, name) == 0)
            return 1;
    return 0;
}

/* --- the clock ------------------------------------------------------------------------------ */

#ifdef CVX_ATT_TEST_HOOKS
/* Test builds only (BUILD_TESTING): CVX_ATTENDANT_TEST_NOW (seconds since the epoch) stands
 * for the time, so that tests can call in during business hours, at night or on a holiday.
 * Release builds (-DBUILD_TESTING=OFF) do not contain this. */
static time_t test_now(void)
{
    const char *s = getenv("CVX_ATTENDANT_TEST_NOW");
    if (s == NULL || *s == '\0')
        return (time_t)-1;
    char *end;
    long long v = strtoll(s, &end, 10);
    return *end == '\0' && v > 0 ? (time_t)v : (time_t)-1;
}
#endif

time_t att_now(void)
{
#ifdef CVX_ATT_TEST_HOOKS
    time_t t = test_now();
    if (t != (time_t)-1)
        return t;
#endif
    return time(NULL);
}

int att_current_menu(void)
{
    if (att.schedule < 0)
        return att.menu;
    const att_schedule_t *s = &att.schedules[att.schedule];
    struct tm tm;
    att_local_time(att_now(), s->c.timezone, &tm);
    return att_schedule_pick(s, &tm);
}

/* --- recorded greetings --------------------------------------------------------------------- */

static int generation;

static void on_greeting(cvx_audio_t *audio, int err, void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    size_t i = v & 0xffff;
    if ((int)(v >> 16) != generation || i >= att.nmenus) {
        if (audio)
            cvx_audio_unref(audio);
        return;
    }
    if (err != 0) {
        cvx_error("attendant: [menu:%s] greeting %s cannot be used: %s", att.menus[i].name,
                  att.menus[i].c.greeting, cvx_strerror(err));
        return;
    }
    att.menus[i].greeting_audio = audio;
}

static int load_greetings(uv_loop_t *loop)
{
    generation = (generation + 1) & 0x7fff;
    for (size_t i = 0; i < att.nmenus && i < 0xffff; i++) {
        const char *g = att.menus[i].c.greeting;
        if (g[0] != '/')
            continue;
        /* Start-up, before calls are served: a plain access() is fine here. */
        if (access(g, R_OK) != 0) {
            cvx_error("attendant: [menu:%s] greeting %s: no such file", att.menus[i].name, g);
            return CVX_ENOTFOUND;
        }
        int rc = cvx_audio_load(loop, g, on_greeting,
                                (void *)(((uintptr_t)generation << 16) | (uintptr_t)i));
        if (rc != 0) {
            cvx_error("attendant: [menu:%s] greeting %s: %s", att.menus[i].name, g,
                      cvx_strerror(rc));
            return rc;
        }
    }
    return 0;
}

static void drop_greetings(void)
{
    generation = (generation + 1) & 0x7fff;
    for (size_t i = 0; i < att.nmenus; i++) {
        if (att.menus[i].greeting_audio)
            cvx_audio_unref(att.menus[i].greeting_audio);
        att.menus[i].greeting_audio = NULL;
    }
}

/* --- calls ---------------------------------------------------------------------------------- */

static int att_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    const cvx_call_info_t *info = cvx_chan_info(chan);
    for (size_t i = 0; i < att.a.numbers.n; i++)
        if (strcmp(info->called, att.a.numbers.v[i]) == 0)
            return att_call_start(chan);
    return CVX_EDECLINED;
}

/* --- "show attendant" ---------------------------------------------------------------------- */

static int cmd_show_attendant(cvx_cmd_req_t *req)
{
    int now_menu = att_current_menu();
    const char *tz = att.schedule >= 0 ? att.schedules[att.schedule].c.timezone : att.a.timezone;
    struct tm tm;
    char when[64] = "";
    att_local_time(att_now(), tz, &tm);
    strftime(when, sizeof(when), "%a %Y-%m-%d %H:%M", &tm);
    cvx_cmd_json_array(req, "numbers");
    for (size_t i = 0; i < att.a.numbers.n; i++)
        cvx_cmd_json_str(req, NULL, att.a.numbers.v[i]);
    cvx_cmd_json_end(req);
    cvx_cmd_json_str(req, "schedule", att.schedule >= 0 ? att.schedules[att.schedule].name : NULL);
    cvx_cmd_json_str(req, "timezone", tz && tz[0] ? tz : NULL);
    cvx_cmd_json_str(req, "local_time", when);
    cvx_cmd_json_str(req, "menu_now", now_menu >= 0 ? att.menus[now_menu].name : NULL);
    cvx_cmd_json_str(req, "operator", att.a.operator_number[0] ? att.a.operator_number : NULL);
    cvx_cmd_printf(req, "numbers:   ");
    for (size_t i = 0; i < att.a.numbers.n; i++)
        cvx_cmd_printf(req, "%s%s", i ? ", " : "", att.a.numbers.v[i]);
    cvx_cmd_printf(req, "%s\n", att.a.numbers.n ? "" : "(none)");
    cvx_cmd_printf(req, "schedule:  %s (%s)\n",
                   att.schedule >= 0 ? att.schedules[att.schedule].name : "(none)",
                   tz && tz[0] ? tz : "the server's time zone");
    cvx_cmd_printf(req, "now:       %s: menu %s\n", when,
                   now_menu >= 0 ? att.menus[now_menu].name : "(none)");
    cvx_cmd_printf(req, "operator:  %s\n",
                   att.a.operator_number[0] ? att.a.operator_number : "(none)");
    static const char *const cols[] = {"menu", "greeting", "keys", NULL};
    cvx_cmd_table_begin(req, "menus", cols);
    for (size_t i = 0; i < att.nmenus; i++) {
        char keys[512] = "";
        size_t n = 0;
        for (int k = 0; k < ATT_NKEYS && n < sizeof(keys); k++)
            if (att.menus[i].c.keys[k] && att.menus[i].c.keys[k][0])
                n += (size_t)snprintf(keys + n, sizeof(keys) - n, "%s%c: %s", n ? "; " : "",
                                      ATT_KEYS[k], att.menus[i].c.keys[k]);
        const char *cells[] = {att.menus[i].name, att.menus[i].c.greeting, keys};
        cvx_cmd_table_row(req, cells);
    }
    cvx_cmd_table_end(req);
    return 0;
}

static const cvx_cmd_t att_cmds[] = {
    {"show attendant",
     {{0}},
     CVX_CMD_READONLY,
     "Show the attendant's numbers, schedule, the menu in force now and every menu",
     "Prints the numbers the attendant answers, its schedule and time zone, the local time "
     "there and the menu a caller would hear now (what the schedule picks), the operator, and "
     "each menu with its greeting and keys.",
     cmd_show_attendant,
     NULL},
    CVX_CMDS_END,
};

/* --- the module ----------------------------------------------------------------------------- */

static int att_load(cvx_module_env_t *env)
{
    cvx_diag_t diag = {0};
    int rc = att_conf_load(env->conf, &diag);
    for (size_t i = 0; i < diag.n; i++)
        cvx_error("%s", diag.msgs[i]);
    cvx_diag_clear(&diag);
    if (rc != 0) {
        att_conf_release();
        return rc;
    }
    char err[768];
    rc = cvx_prompt_set_create(env->loop, "attendant", prompt_defs, NPROMPTS, att.a.prompt_dir,
                               att.a.generated_dir, err, sizeof(err), &att_prompts);
    if (rc != 0) {
        cvx_error("attendant: %s", err);
        att_conf_release();
        return rc;
    }
    rc = load_greetings(env->loop);
    if (rc != 0) {
        drop_greetings();
        cvx_prompt_set_destroy(att_prompts);
        att_prompts = NULL;
        att_conf_release();
        return rc;
    }
    rc = cvx_cmd_register(att_cmds);
    if (rc != 0) {
        cvx_error("attendant: cannot register its commands: %s", cvx_strerror(rc));
        drop_greetings();
        cvx_prompt_set_destroy(att_prompts);
        att_prompts = NULL;
        att_conf_release();
        return rc;
    }
    if (att.a.numbers.n > 0)
        cvx_info("attendant: %zu menu%s, %zu schedule%s, first number %s", att.nmenus,
                 att.nmenus == 1 ? "" : "s", att.nschedules, att.nschedules == 1 ? "" : "s",
                 att.a.numbers.v[0]);
    return 0;
}

static void att_unload(void)
{
    cvx_cmd_unregister(att_cmds);
    drop_greetings();
    cvx_prompt_set_destroy(att_prompts);
    att_prompts = NULL;
    att_conf_release();
}

static const cvx_app_ops_t att_ops = {
    .size = sizeof(cvx_app_ops_t),
    .incoming = att_incoming,
};

static const cvx_section_def_t *const att_sections[] = {&att_section, &att_menu_section,
                                                        &att_schedule_section, NULL};

static const cvx_module_t att_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "attendant",
    .version = "0.1",
    .description = "auto attendant: menus, schedules, dial by extension and by name, operator",
    .kind = CVX_MODULE_APP,
    .roles = CVX_ROLE_CALL,
    .load = att_load,
    .unload = att_unload,
    .app = &att_ops,
    .sections = att_sections,
};

CVX_MODULE_DEFINE(att_module)

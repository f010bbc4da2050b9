/*
 * The attendant's configuration: [attendant], [menu:NAME] and [schedule:NAME].
 *
 * Menu keys are options key_0 .. key_9, key_star and key_pound ('#' cannot start a key: it
 * starts a comment).  Their values are actions:
 *   menu NAME        go to another menu
 *   transfer EXT     blind transfer to an extension
 *   message MAILBOX  hand the call to voicemail to leave a message in MAILBOX
 *   directory [last|first]  dial by name: keypad letters of the last name (the default)
 *                    or of the first name
 *   operator         transfer to [attendant] operator
 *   repeat           play the menu again
 *   hangup           goodbye
 * Every error names the file, line, section and key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "att.h"
#include "cvx/error.h"

att_config_t att;

int att_prompt_known(const char *name);

static const cvx_option_t att_options[] = {
    {"number", CVX_OPT_LIST, offsetof(att_conf_t, numbers), "", 0, 0, NULL, 0,
     "A called number the attendant answers (repeat for more)."},
    {"menu", CVX_OPT_STRING, offsetof(att_conf_t, menu), "", 0, 0, NULL, 0,
     "The menu callers hear when no schedule is set."},
    {"schedule", CVX_OPT_STRING, offsetof(att_conf_t, schedule), "", 0, 0, NULL, 0,
     "The [schedule:NAME] that picks the menu by business hours and holidays; empty: none."},
    {"operator", CVX_OPT_STRING, offsetof(att_conf_t, operator_number), "", 0, 0, NULL, 0,
     "The operator's extension (0 and the fallback after too many invalid choices); empty: "
     "none (the caller hears goodbye)."},
    {"voicemail", CVX_OPT_STRING, offsetof(att_conf_t, voicemail), "", 0, 0, NULL, 0,
     "The voicemail pilot number: 'message' keys hand the call to voicemail as though it had "
     "been forwarded from the mailbox to this pilot."},
    {"timezone", CVX_OPT_STRING, offsetof(att_conf_t, timezone), "", 0, 0, NULL, 0,
     "The site's time zone (\"Europe/Paris\") for schedules without their own; empty: the "
     "server's."},
    {"prompt_dir", CVX_OPT_STRING, offsetof(att_conf_t, prompt_dir),
     "/usr/share/asterisk/sounds/en_US_f_Allison", 0, 0, NULL, 0,
     "The recorded English prompt set (Debian package asterisk-core-sounds-en-wav)."},
    {"generated_dir", CVX_OPT_STRING, offsetof(att_conf_t, generated_dir), CVX_ATT_GEN_DIR, 0, 0,
     NULL, 0, "Prompts that set lacks, generated at build time with espeak-ng and sox."},
    {"timeout", CVX_OPT_DURATION, offsetof(att_conf_t, timeout_ms), "5s", 500, 60000, NULL, 0,
     "How long the attendant waits for a choice after a menu."},
    {"inter_digit", CVX_OPT_DURATION, offsetof(att_conf_t, inter_digit_ms), "3s", 500, 30000, NULL,
     0, "How long it waits between the digits of an extension or a name."},
    {"retries", CVX_OPT_INT, offsetof(att_conf_t, retries), "3", 1, 10, NULL, 0,
     "Invalid or missing choices in a row before the caller goes to the operator."},
    {"extension_max", CVX_OPT_INT, offsetof(att_conf_t, extension_max), "8", 1, 32, NULL, 0,
     "Most digits of an extension dialed from a menu (# ends it sooner)."},
    {"name_digits", CVX_OPT_INT, offsetof(att_conf_t, name_digits), "3", 1, 16, NULL, 0,
     "Letters of the name a caller dials in the directory (# ends it sooner)."},
    CVX_OPTIONS_END,
};

#define KEY_OPT(n, field)                                                                          \
    {                                                                                              \
        n, CVX_OPT_STRING, offsetof(att_menu_conf_t, keys) + (field) * sizeof(char *), "", 0, 0,   \
            NULL, 0,                                                                               \
            "What this key does: menu NAME, transfer EXT, message MAILBOX, directory [first], "    \
            "operator, "                                                                           \
            "repeat or hangup; empty: nothing (invalid)."                                          \
    }

static const cvx_option_t menu_options[] = {
    {"greeting", CVX_OPT_STRING, offsetof(att_menu_conf_t, greeting), "", 0, 0, NULL,
     CVX_OPT_REQUIRED,
     "What the menu says: a prompt of plugins/attendant/prompts.tsv, or a recorded WAV file "
     "(8 kHz mono; an absolute path)."},
    KEY_OPT("key_0", 0),
    KEY_OPT("key_1", 1),
    KEY_OPT("key_2", 2),
    KEY_OPT("key_3", 3),
    KEY_OPT("key_4", 4),
    KEY_OPT("key_5", 5),
    KEY_OPT("key_6", 6),
    KEY_OPT("key_7", 7),
    KEY_OPT("key_8", 8),
    KEY_OPT("key_9", 9),
    KEY_OPT("key_star", 10),
    KEY_OPT("key_pound", 11),
    {"dial_extension", CVX_OPT_BOOL, offsetof(att_menu_conf_t, dial_extension), "yes", 0, 0, NULL,
     0,
     "Digits that no key maps start an extension number, checked against the directory and "
     "transferred to."},
    CVX_OPTIONS_END,
};

static const cvx_option_t schedule_options[] = {
    {"timezone", CVX_OPT_STRING, offsetof(att_schedule_conf_t, timezone), "", 0, 0, NULL, 0,
     "The schedule's time zone; empty: [attendant] timezone, else the server's."},
    {"open", CVX_OPT_LIST, offsetof(att_schedule_conf_t, open), "", 0, 0, NULL, 0,
     "Opening hours: DAYS HH:MM-HH:MM, DAYS as mon-fri, sat or mon,wed,fri (repeat for "
     "more)."},
    {"holiday", CVX_OPT_LIST, offsetof(att_schedule_conf_t, holiday), "", 0, 0, NULL, 0,
     "A closed day: YYYY-MM-DD, or MM-DD every year (repeat for more)."},
    {"open_menu", CVX_OPT_STRING, offsetof(att_schedule_conf_t, open_menu), "", 0, 0, NULL,
     CVX_OPT_REQUIRED, "The menu during opening hours."},
    {"closed_menu", CVX_OPT_STRING, offsetof(att_schedule_conf_t, closed_menu), "", 0, 0, NULL,
     CVX_OPT_REQUIRED, "The menu outside opening hours."},
    {"holiday_menu", CVX_OPT_STRING, offsetof(att_schedule_conf_t, holiday_menu), "", 0, 0, NULL, 0,
     "The menu on holidays; empty: the closed menu."},
    CVX_OPTIONS_END,
};

const cvx_section_def_t att_section = {"attendant", 0, att_options, sizeof(att_conf_t),
                                       "The auto attendant."};
const cvx_section_def_t att_menu_section = {"menu", 1, menu_options, sizeof(att_menu_conf_t),
                                            "An auto attendant menu."};
const cvx_section_def_t att_schedule_section = {
    "schedule", 1, schedule_options, sizeof(att_schedule_conf_t),
    "Business hours and holidays that pick the attendant's menu."};

int att_menu_index(const char *name)
{
    for (size_t i = 0; i < att.nmenus; i++)
        if (strcmp(att.menus[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The nth entry of key in sec (for the file:line of an error). */
static const cvx_conf_entry_t *entry(const cvx_conf_section_t *sec, const char *key, size_t nth)
{
    const cvx_conf_entry_t *found = NULL;
    for (const cvx_conf_entry_t *e = sec ? sec->entries : NULL; e != NULL; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            found = e;
            if (nth-- == 0)
                break;
        }
    }
    return found;
}

static void err_at(cvx_diag_t *diag, const cvx_conf_section_t *sec, const char *key, size_t nth,
                   const char *fmt, const char *value)
{
    char label[128], msg[384];
    const cvx_conf_entry_t *e = entry(sec, key, nth);
    snprintf(msg, sizeof(msg), fmt, value);
    if (e)
        cvx_diag_add(diag, "%s:%d: [%s] %s: %s", e->file, e->line,
                     cvx_conf_section_label(sec, label, sizeof(label)), key, msg);
    else if (sec)
        cvx_diag_add(diag, "%s:%d: [%s] %s: %s", sec->file, sec->line,
                     cvx_conf_section_label(sec, label, sizeof(label)), key, msg);
    else
        cvx_diag_add(diag, "[attendant] %s: %s", key, msg);
}

static int valid_number(const char *s)
{
    return s[0] != '\0' && strlen(s) < 64 && strspn(s, "0123456789*#+") == strlen(s);
}

static int parse_action(const char *v, att_action_t *a)
{
    static const struct {
        const char *word;
        att_action_kind_t kind;
        int has_arg;
    } words[] = {{"menu", ATT_MENU, 1},         {"transfer", ATT_TRANSFER, 1},
                 {"message", ATT_MESSAGE, 1},   {"directory", ATT_DIRECTORY, 2},
                 {"operator", ATT_OPERATOR, 0}, {"repeat", ATT_REPEAT, 0},
                 {"hangup", ATT_HANGUP, 0}};
    memset(a, 0, sizeof(*a));
    if (v == NULL || v[0] == '\0')
        return 0;
    size_t wn = strcspn(v, " ");
    const char *arg = v + wn;
    while (*arg == ' ')
        arg++;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strlen(words[i].word) != wn || strncmp(v, words[i].word, wn) != 0)
            continue;
        /* has_arg 2: optional ("directory" takes "last" or "first") */
        if ((words[i].has_arg != 2 && words[i].has_arg != (arg[0] != '\0')) ||
            strlen(arg) >= sizeof(a->arg))
            return CVX_EINVAL;
        if (words[i].has_arg == 2 && arg[0] && strcmp(arg, "last") != 0 &&
            strcmp(arg, "first") != 0)
            return CVX_EINVAL;
        a->kind = words[i].kind;
        snprintf(a->arg, sizeof(a->arg), "%s", arg);
        return 0;
    }
    return CVX_EINVAL;
}

static int load_menus(cvx_conf_t *conf, cvx_diag_t *diag)
{
    size_t n = 0;
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next)
        if (strcmp(s->kind, "menu") == 0 && s->name != NULL)
            n++;
    att.menus = calloc(n ? n : 1, sizeof(*att.menus));
    if (att.menus == NULL)
        return CVX_ENOMEM;
    int rc = 0;
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, "menu") != 0 || s->name == NULL)
            continue;
        att_menu_t *m = &att.menus[att.nmenus++];
        snprintf(m->name, sizeof(m->name), "%s", s->name);
        if (cvx_conf_bind(&att_menu_section, s, &m->c, diag) != 0) {
            rc = CVX_EINVAL;
            continue;
        }
        if (m->c.greeting[0] != '/' && !att_prompt_known(m->c.greeting)) {
            err_at(diag, s, "greeting", 0,
                   "'%s' is neither a prompt of the attendant nor an absolute file path",
                   m->c.greeting);
            rc = CVX_EINVAL;
        }
    }
    /* Actions, once every menu's name is known. */
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, "menu") != 0 || s->name == NULL)
            continue;
        int mi = att_menu_index(s->name);
        att_menu_t *m = &att.menus[mi];
        for (int k = 0; k < ATT_NKEYS; k++) {
            const char *key = menu_options[1 + k].name;
            const char *v = m->c.keys[k];
            if (parse_action(v, &m->act[k]) != 0) {
                err_at(diag, s, key, 0,
                       "'%s' is not an action (menu NAME, transfer EXT, message MAILBOX, "
                       "directory [last|first], operator, repeat, hangup)",
                       v);
                rc = CVX_EINVAL;
                continue;
            }
            att_action_t *a = &m->act[k];
            if (a->kind == ATT_MENU && (a->menu = att_menu_index(a->arg)) < 0) {
                err_at(diag, s, key, 0, "no [menu:%s] is defined", a->arg);
                rc = CVX_EINVAL;
            } else if ((a->kind == ATT_TRANSFER || a->kind == ATT_MESSAGE) &&
                       !valid_number(a->arg)) {
                err_at(diag, s, key, 0, "'%s' is not a number", a->arg);
                rc = CVX_EINVAL;
            } else if (a->kind == ATT_MESSAGE && att.a.voicemail[0] == '\0') {
                err_at(diag, s, key, 0, "%s needs [attendant] voicemail (the pilot number)", v);
                rc = CVX_EINVAL;
            }
        }
    }
    return rc;
}

static int menu_ref(const char *name, const cvx_conf_section_t *sec, const char *key,
                    cvx_diag_t *diag)
{
    int i = att_menu_index(name);
    if (i < 0)
        err_at(diag, sec, key, 0, "no [menu:%s] is defined", name);
    return i;
}

static int load_schedules(cvx_conf_t *conf, cvx_diag_t *diag)
{
    size_t n = 0;
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next)
        if (strcmp(s->kind, "schedule") == 0 && s->name != NULL)
            n++;
    att.schedules = calloc(n ? n : 1, sizeof(*att.schedules));
    if (att.schedules == NULL)
        return CVX_ENOMEM;
    int rc = 0;
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (strcmp(s->kind, "schedule") != 0 || s->name == NULL)
            continue;
        att_schedule_t *sc = &att.schedules[att.nschedules++];
        snprintf(sc->name, sizeof(sc->name), "%s", s->name);
        if (cvx_conf_bind(&att_schedule_section, s, &sc->c, diag) != 0) {
            rc = CVX_EINVAL;
            continue;
        }
        sc->periods = calloc(sc->c.open.n + 1, sizeof(*sc->periods));
        sc->holidays = calloc(sc->c.holiday.n + 1, sizeof(*sc->holidays));
        if (sc->periods == NULL || sc->holidays == NULL)
            return CVX_ENOMEM;
        for (size_t i = 0; i < sc->c.open.n; i++) {
            if (att_parse_period(sc->c.open.v[i], &sc->periods[sc->nperiods]) != 0) {
                err_at(diag, s, "open", i,
                       "'%s' is not DAYS HH:MM-HH:MM (mon-fri 08:00-17:30; days sun to sat)",
                       sc->c.open.v[i]);
                rc = CVX_EINVAL;
                continue;
            }
            sc->nperiods++;
        }
        for (size_t i = 0; i < sc->c.holiday.n; i++) {
            if (att_parse_holiday(sc->c.holiday.v[i], &sc->holidays[sc->nholidays]) != 0) {
                err_at(diag, s, "holiday", i, "'%s' is not a date (YYYY-MM-DD or MM-DD)",
                       sc->c.holiday.v[i]);
                rc = CVX_EINVAL;
                continue;
            }
            sc->nholidays++;
        }
        sc->open_menu = menu_ref(sc->c.open_menu, s, "open_menu", diag);
        sc->closed_menu = menu_ref(sc->c.closed_menu, s, "closed_menu", diag);
        sc->holiday_menu = sc->c.holiday_menu[0]
                               ? menu_ref(sc->c.holiday_menu, s, "holiday_menu", diag)
                               : sc->closed_menu;
        if (sc->open_menu < 0 || sc->closed_menu < 0 || sc->holiday_menu < 0)
            rc = CVX_EINVAL;
        if (!sc->c.timezone[0] && att.a.timezone[0]) {
            free(sc->c.timezone);
            sc->c.timezone = strdup(att.a.timezone);
            if (sc->c.timezone == NULL)
                return CVX_ENOMEM;
        }
    }
    return rc;
}

int att_conf_load(cvx_conf_t *conf, cvx_diag_t *diag)
{
    memset(&att, 0, sizeof(att));
    att.schedule = -1;
    cvx_conf_section_t *sec = cvx_conf_find(conf, "attendant", NULL);
    if (cvx_conf_bind(&att_section, sec, &att.a, diag) != 0)
        return CVX_EINVAL;
    int rc = load_menus(conf, diag);
    int rc2 = load_schedules(conf, diag);
    if (rc == 0)
        rc = rc2;
    if (rc != 0)
        return rc;
    if (att.a.schedule[0]) {
        for (size_t i = 0; i < att.nschedules; i++)
            if (strcmp(att.schedules[i].name, att.a.schedule) == 0)
                att.schedule = (int)i;
        if (att.schedule < 0) {
            err_at(diag, sec, "schedule", 0, "no [schedule:%s] is defined", att.a.schedule);
            return CVX_EINVAL;
        }
    }
    att.menu = att.a.menu[0] ? att_menu_index(att.a.menu) : -1;
    if (att.a.menu[0] && att.menu < 0) {
        err_at(diag, sec, "menu", 0, "no [menu:%s] is defined", att.a.menu);
        return CVX_EINVAL;
    }
    if (att.a.numbers.n > 0 && att.menu < 0 && att.schedule < 0) {
        err_at(diag, sec, "menu", 0, "%s", "the attendant needs a menu or a schedule");
        return CVX_EINVAL;
    }
    if (att.a.operator_number[0] && !valid_number(att.a.operator_number)) {
        err_at(diag, sec, "operator", 0, "'%s' is not a number", att.a.operator_number);
        return CVX_EINVAL;
    }
    return 0;
}

void att_conf_release(void)
{
    for (size_t i = 0; i < att.nmenus; i++)
        cvx_conf_release(menu_options, &att.menus[i].c);
    for (size_t i = 0; i < att.nschedules; i++) {
        cvx_conf_release(schedule_options, &att.schedules[i].c);
        free(att.schedules[i].periods);
        free(att.schedules[i].holidays);
    }
    free(att.menus);
    free(att.schedules);
    cvx_conf_release(att_options, &att.a);
    memset(&att, 0, sizeof(att));
}

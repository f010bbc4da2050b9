/*
 * The auto attendant's internal interface: configuration (menus, schedules), the schedule
 * logic, and one call's state.
 *
 * Thread: everything runs on the loop thread.  Nothing blocks: prompts and recorded
 * greetings are loaded on the libuv thread pool at start, the directory is reached only
 * through the store's asynchronous interface.
 */
#ifndef ATT_H
#define ATT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cvx/config.h"

/* --- configuration -------------------------------------------------------------------------- */

typedef enum att_action_kind {
    ATT_NONE = 0,  /* the key does nothing: invalid */
    ATT_MENU,      /* go to another menu (arg: its name) */
    ATT_TRANSFER,  /* blind transfer to an extension (arg) */
    ATT_MESSAGE,   /* hand the call to voicemail for a mailbox (arg) */
    ATT_DIRECTORY, /* dial by name */
    ATT_OPERATOR,  /* transfer to the operator */
    ATT_REPEAT,    /* play the menu again */
    ATT_HANGUP,    /* goodbye */
} att_action_kind_t;

typedef struct att_action {
    att_action_kind_t kind;
    char arg[64];
    int menu; /* ATT_MENU: index of the menu */
} att_action_t;

/* The keys a menu maps, in the order of their options (key_0 .. key_9, key_star, key_pound). */
#define ATT_KEYS  "0123456789*#"
#define ATT_NKEYS 12

/* Options of [menu:NAME] as bound. */
typedef struct att_menu_conf {
    char *greeting; /* a prompt of the attendant's table, or a WAV file (absolute path) */
    char *keys[ATT_NKEYS];
    int dial_extension; /* other digits start an extension number */
} att_menu_conf_t;

typedef struct att_menu {
    char name[64];
    att_menu_conf_t c;
    att_action_t act[ATT_NKEYS];
    void *greeting_audio; /* cvx_audio_t of a recorded greeting file, loaded at start */
} att_menu_t;

/* One opening period: days (bit 0 Sunday .. bit 6 Saturday), from-to in minutes of the day. */
typedef struct att_period {
    unsigned days;
    int from, to;
} att_period_t;

typedef struct att_holiday {
    int year; /* 0: every year */
    int month, day;
} att_holiday_t;

/* Options of [schedule:NAME] as bound. */
typedef struct att_schedule_conf {
    char *timezone;
    cvx_strlist_t open;
    cvx_strlist_t holiday;
    char *open_menu, *closed_menu, *holiday_menu;
} att_schedule_conf_t;

typedef struct att_schedule {
    char name[64];
    att_schedule_conf_t c;
    att_period_t *periods;
    size_t nperiods;
    att_holiday_t *holidays;
    size_t nholidays;
    int open_menu, closed_menu, holiday_menu; /* menu indexes */
} att_schedule_t;

/* Options of [attendant]. */
typedef struct att_conf {
    cvx_strlist_t numbers; /* called numbers the attendant answers */
    char *menu;            /* the menu when no schedule applies */
    char *schedule;        /* the schedule that picks the menu; "" none */
    char *operator_number; /* where the operator is; "" none */
    char *voicemail;       /* the voicemail pilot, for "message" keys */
    char *timezone;        /* the site's time zone */
    char *prompt_dir;      /* recorded prompts */
    char *generated_dir;   /* generated prompts */
    long long timeout_ms;  /* wait for a choice after the menu */
    long long inter_digit_ms;
    long long retries; /* invalid or missing choices before the operator */
    long long extension_max;
    long long name_digits; /* letters of the name dialed */
} att_conf_t;

typedef struct att_config {
    att_conf_t a;
    att_menu_t *menus;
    size_t nmenus;
    att_schedule_t *schedules;
    size_t nschedules;
    int menu;     /* index of [attendant] menu */
    int schedule; /* index of the schedule, -1: none */
} att_config_t;

extern att_config_t att;

/* Reads [attendant], every [menu:*] and [schedule:*] of conf; errors (file:line, section,
 * key) go to diag.  Returns 0 or CVX_EINVAL. */
int att_conf_load(cvx_conf_t *conf, cvx_diag_t *diag);
void att_conf_release(void);
int att_menu_index(const char *name);

/* --- schedules (att_schedule.c, no I/O: unit-tested) ------------------------------------------ */

/* Parses "mon-fri 08:00-17:30" or "sat 09:00-12:00" or "sun,tue 10:00-11:00". */
int att_parse_period(const char *s, att_period_t *out);
/* Parses "2026-12-25" or "12-25" (every year). */
int att_parse_holiday(const char *s, att_holiday_t *out);
/* Which menu the schedule picks for the local time tm. */
int att_schedule_pick(const att_schedule_t *s, const struct tm *tm);
/* The local time of t in zone tz ("" or NULL: the process's): cvx_localtime(). */
void att_local_time(time_t t, const char *tz, struct tm *out);

/* --- prompts and calls (attendant.c, att_flow.c) ---------------------------------------------- */

struct cvx_prompt_set;
struct cvx_chan;
extern struct cvx_prompt_set *att_prompts;
/* 1 when name is a prompt of the attendant's table. */
int att_prompt_known(const char *name);
/* The time schedules see: now, or in test builds CVX_ATTENDANT_TEST_NOW. */
time_t att_now(void);
/* The menu for a call starting now. */
int att_current_menu(void);
/* Takes an answered call into the menu. */
int att_call_start(struct cvx_chan *chan);

#endif

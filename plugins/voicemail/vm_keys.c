/*
 * The key map of the subscriber conversation: which key does what in the message menu, while
 * a message plays, in the reply menu and in the mailbox options.
 *
 * Every action is a [voicemail] option "key_<action>" (vm.h, VM_KEYS) whose value is one key
 * or several ("6#": either one).  The spoken menus are composed from one prompt per action
 * ("To save it, press") and the action's first key, so a remapped system says its own keys.
 * At start vm_keys_check refuses keys that are not 0-9, * or #, and two actions of one menu
 * on the same key, naming the file and line of each option concerned.
 *
 * Fixed keys (not in the map, because recorded prompts of the installed set name them): during
 * a greeting # skips it, 0 reaches the operator and * the login; # ends a recording; the review
 * menu after a recording (1 send, 2 listen, 3 re-record, 4 urgent); the yes/no questions.
 */
#include <string.h>

#include "cvx/error.h"
#include "vm.h"

typedef struct key_def {
    const char *option; /* without "key_" */
    int menu;
    const char *prompt;
} key_def_t;

#define VM_KEY_DEF(a, o, m, d, p, h) {o, m, p},
static const key_def_t defs[VM_K_COUNT] = {VM_KEYS(VM_KEY_DEF)};
#undef VM_KEY_DEF

static const char *const menu_names[VM_MENU_COUNT] = {"message menu", "message playback",
                                                      "reply menu", "mailbox options"};

int vm_key_action(int menu, char key)
{
    if (key == '\0')
        return -1;
    for (int a = 0; a < VM_K_COUNT; a++)
        if (defs[a].menu == menu && vm_conf.keys[a] && strchr(vm_conf.keys[a], key))
            return a;
    return -1;
}

char vm_key(vm_action_t action)
{
    const char *k = vm_conf.keys[action];
    return k && k[0] ? k[0] : '\0';
}

static void say_key(vm_list_t *l, char key)
{
    if (key == '*') {
        vm_add(l, "star");
    } else if (key == '#') {
        vm_add(l, "pound");
    } else {
        char name[16] = "digit-0";
        name[6] = key;
        vm_add(l, name);
    }
}

void vm_say_menu(vm_list_t *l, int menu)
{
    for (int a = 0; a < VM_K_COUNT; a++) {
        if (defs[a].menu != menu || defs[a].prompt == NULL || vm_key((vm_action_t)a) == '\0')
            continue;
        vm_add(l, defs[a].prompt);
        say_key(l, vm_key((vm_action_t)a));
    }
}

/* "file:line" of the option, or "default" when the configuration does not set it. */
static void where(const cvx_conf_section_t *sec, const char *option, char *buf, size_t size)
{
    char key[64];
    snprintf(key, sizeof(key), "key_%s", option);
    const cvx_conf_entry_t *found = NULL;
    for (const cvx_conf_entry_t *e = sec ? sec->entries : NULL; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            found = e; /* the last one wins, as when the section is bound */
    if (found)
        snprintf(buf, size, "%s:%d", found->file, found->line);
    else
        snprintf(buf, size, "default");
}

int vm_keys_check(const cvx_conf_section_t *sec, cvx_diag_t *diag)
{
    int rc = 0;
    char at[512], other[512];
    for (int a = 0; a < VM_K_COUNT; a++) {
        const char *k = vm_conf.keys[a] ? vm_conf.keys[a] : "";
        if (k[0] == '\0' || strspn(k, "0123456789*#") != strlen(k)) {
            where(sec, defs[a].option, at, sizeof(at));
            cvx_diag_add(diag, "%s: [voicemail] key_%s: '%s' is not one or more of 0-9, * and #",
                         at, defs[a].option, k);
            rc = CVX_EINVAL;
            continue;
        }
        for (const char *p = k; *p; p++) {
            if (strchr(p + 1, *p))
                continue; /* "66": counted once, at its last place */
            for (int b = 0; b < a; b++) {
                if (defs[b].menu != defs[a].menu || !vm_conf.keys[b] ||
                    !strchr(vm_conf.keys[b], *p))
                    continue;
                /* The error is placed at the option the configuration sets. */
                int x = a, y = b;
                where(sec, defs[x].option, at, sizeof(at));
                if (strcmp(at, "default") == 0) {
                    x = b;
                    y = a;
                    where(sec, defs[x].option, at, sizeof(at));
                }
                where(sec, defs[y].option, other, sizeof(other));
                cvx_diag_add(diag,
                             "%s: [voicemail] key_%s: key %c is already key_%s (%s) in the %s", at,
                             defs[x].option, *p, defs[y].option, other, menu_names[defs[a].menu]);
                rc = CVX_EINVAL;
            }
        }
    }
    return rc;
}

/*
 * The command registry: a typed line is matched to the longest command name, checked against
 * the caller's rights and the argument declarations before the handler runs, and every
 * mistake gets a message naming what was expected.  Output comes back as text, as JSON, or as
 * tables in either form; a handler may finish later; completion offers command words, fixed
 * choices and objects of registered kinds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/proto.h"
#include "cvx/cmd.h"
#include "cvx/error.h"

typedef struct reply {
    int calls;
    int status;
    char body[4096];
} reply_t;

static void on_done(void *arg, int status, const char *body, size_t len)
{
    reply_t *r = arg;
    r->calls++;
    r->status = status;
    snprintf(r->body, sizeof(r->body), "%.*s", (int)len, body);
}

static const cvx__ctl_peer_t admin = {0, 0, 1, "root", 1, "root"};
static const cvx__ctl_peer_t viewer = {1001, 1001, 2, "bob", 0, "group callvox-ro"};

static reply_t run(const char *line, int json, const cvx__ctl_peer_t *peer)
{
    reply_t r = {0};
    cvx_cmd_req_t *pending = NULL;
    cvx__cmd_run(line, json, peer, on_done, &r, &pending);
    assert_null(pending);
    assert_int_equal(r.calls, 1);
    return r;
}

static int h_echo(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "argc=%d", cvx_cmd_argc(req));
    for (int i = 0; i < cvx_cmd_argc(req); i++)
        cvx_cmd_printf(req, " [%s]", cvx_cmd_arg(req, i));
    const char *rest = cvx_cmd_arg_named(req, "words");
    cvx_cmd_printf(req, " rest=%s user=%s\n", rest ? rest : "-", cvx_cmd_user(req));
    return 0;
}

static int h_fail(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "partial output\n");
    cvx_cmd_error(req, "mailbox %s is locked", cvx_cmd_arg(req, 0));
    return CVX_EBUSY;
}

static int h_fail_plain(cvx_cmd_req_t *req)
{
    (void)req;
    return CVX_ENOTFOUND;
}

static int h_table(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {"name", "calls#", "state", NULL};
    cvx_cmd_table_begin(req, "rows", cols);
    const char *r1[] = {"sip:pbx1", "12", "up"};
    const char *r2[] = {"null:lines-long", "3", "down: \"alarm\""};
    cvx_cmd_table_row(req, r1);
    cvx_cmd_table_row(req, r2);
    if (cvx_cmd_json(req)) {
        /* Cells of a numeric column that are no JSON number stay strings. */
        const char *r3[] = {"odd", "nan", "-"};
        const char *r4[] = {"odd", "0x10", "-"};
        const char *r5[] = {"ok \xc3\xa9\xff\xc3", "-1.5e3", "\x01"};
        cvx_cmd_table_row(req, r3);
        cvx_cmd_table_row(req, r4);
        cvx_cmd_table_row(req, r5);
    }
    cvx_cmd_table_end(req);
    cvx_cmd_json_bool(req, "ok", 1);
    return 0;
}

static cvx_cmd_req_t *held;
static int h_later(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "committed %s\n", cvx_cmd_arg(req, 0));
    held = req;
    return CVX_CMD_PENDING;
}

/* A completion that comes at once, before the handler returns. */
static int h_at_once(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "tried\n");
    cvx_cmd_error(req, "store full");
    cvx_cmd_finish(req, CVX_EFULL);
    return CVX_CMD_PENDING;
}

static const char *const levels[] = {"low", "high", NULL};
static const char *const force[] = {"force", NULL};
static const char *const fields[] = {"name", "pin", NULL};

static const cvx_cmd_t table[] = {
    {"test echo",
     {{"first", 0, NULL, NULL, "x"},
      {"words", CVX_CMD_ARG_OPTIONAL | CVX_CMD_ARG_REST, NULL, NULL, "y"}},
     CVX_CMD_READONLY,
     "Echo",
     "Echoes its arguments.",
     h_echo,
     NULL},
    {"test set",
     {{"level", 0, levels, NULL, "how much"}, {"force", CVX_CMD_ARG_OPTIONAL, force, NULL, "z"}},
     0,
     "Set",
     "Sets.",
     h_echo,
     NULL},
    {"test fail", {{"box", 0, NULL, "box", "a box"}}, 0, "Fail", "Fails.", h_fail, NULL},
    {"test plain", {{0}}, CVX_CMD_READONLY, "Plain", "Fails plainly.", h_fail_plain, NULL},
    {"test table", {{0}}, CVX_CMD_READONLY, "Table", "A table.", h_table, NULL},
    {"test later", {{"what", 0, NULL, NULL, "w"}}, 0, "Later", "Finishes later.", h_later, NULL},
    {"test at once", {{0}}, 0, "At once", "Finishes inside.", h_at_once, NULL},
    {"test field",
     {{"box", 0, NULL, "box", "a box"},
      {"field", 0, fields, NULL, "what"},
      {"value", CVX_CMD_ARG_REST, NULL, NULL, "the value"}},
     0,
     "Set a field",
     "Sets a field.",
     h_echo,
     NULL},
    {"test pin",
     {{"box", 0, NULL, "box", "a box"}, {"pin", CVX_CMD_ARG_SECRET, NULL, NULL, "the new PIN"}},
     0,
     "Set a PIN",
     "Sets a PIN.",
     h_echo,
     NULL},
    {"help",
     {{"command", CVX_CMD_ARG_OPTIONAL | CVX_CMD_ARG_REST, NULL, "command", "c"}},
     CVX_CMD_READONLY,
     "Help",
     "Helps.",
     cvx__cmd_help,
     NULL},
    CVX_CMDS_END,
};

static void box_names(cvx_cmd_comp_t *c, const char *prefix, void *arg)
{
    (void)prefix;
    (void)arg;
    cvx_cmd_comp_add(c, "1001");
    cvx_cmd_comp_add(c, "1002");
    cvx_cmd_comp_add(c, "2001");
}
static const cvx_cmd_completer_t boxes = {"box", box_names, NULL};

static int setup(void **state)
{
    (void)state;
    cvx__cmd_reset();
    assert_int_equal(cvx_cmd_register(table), 0);
    assert_int_equal(cvx_cmd_add_completer(&boxes), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cvx__cmd_reset();
    return 0;
}

static void longest_name_wins_and_args_are_passed(void **state)
{
    (void)state;
    reply_t r = run("test echo a \"b c\"   d", 0, &viewer);
    assert_int_equal(r.status, CVX__CTL_OK);
    assert_string_equal(r.body, "argc=3 [a] [b c] [d] rest=b c d user=bob\n");
    r = run("test echo a", 0, &viewer);
    assert_string_equal(r.body, "argc=1 [a] rest=- user=bob\n");
}

static void mistakes_name_what_was_expected(void **state)
{
    (void)state;
    reply_t r = run("bogus", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_USAGE);
    assert_string_equal(r.body, "unknown command 'bogus'; expected one of: help, test (type "
                                "'help' for a list)\n");
    r = run("test bogus x", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_USAGE);
    assert_string_equal(r.body, "unknown command 'test bogus'; after 'test' expected one of: "
                                "at, echo, fail, field, later, pin, plain, set, table\n");
    r = run("test", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_USAGE);
    assert_string_equal(r.body, "incomplete command 'test'; expected 'test' followed by one "
                                "of: at, echo, fail, field, later, pin, plain, set, table\n");
    r = run("test set", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_USAGE);
    assert_string_equal(r.body, "'test set' needs <level> (usage: test set <level> [force])\n");
    r = run("test set loud", 0, &admin);
    assert_string_equal(r.body, "'test set': 'loud' is not one of: low, high (usage: test set "
                                "<level> [force])\n");
    r = run("test set low gently", 0, &admin);
    assert_string_equal(r.body, "'test set': 'gently' is not one of: force (usage: test set "
                                "<level> [force])\n");
    r = run("test set low force more", 0, &admin);
    assert_string_equal(r.body, "'test set': unexpected argument 'more' (usage: test set "
                                "<level> [force])\n");
    r = run("test plain x", 0, &admin);
    assert_string_equal(r.body, "'test plain' takes no arguments, got 'x' (usage: test plain)\n");
    r = run("test echo \"open", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_USAGE);
    assert_string_equal(r.body, "cannot read the command: unterminated quote\n");
    r = run("   ", 0, &admin);
    assert_string_equal(r.body, "empty command; type 'help' for a list\n");
}

static void read_only_users_may_only_look(void **state)
{
    (void)state;
    reply_t r = run("test set low", 0, &viewer);
    assert_int_equal(r.status, CVX__CTL_DENIED);
    assert_string_equal(r.body, "permission denied: 'test set' changes the system, and user "
                                "bob may only run read-only commands\n");
    r = run("test set low", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_OK);
    r = run("test table", 0, &viewer);
    assert_int_equal(r.status, CVX__CTL_OK);
}

static void failures_carry_their_message(void **state)
{
    (void)state;
    reply_t r = run("test fail 1001", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_FAILED);
    assert_string_equal(r.body, "partial output\nmailbox 1001 is locked\n");
    r = run("test plain", 0, &admin);
    assert_int_equal(r.status, CVX__CTL_FAILED);
    assert_string_equal(r.body, "not found\n");
    r = run("test fail 1001", 1, &admin);
    assert_string_equal(r.body, "{\"command\":\"test fail 1001\",\"status\":\"failed\",\"error\":"
                                "\"mailbox 1001 is locked\",\"result\":{\"text\":\"partial "
                                "output\\n\"}}\n");
}

static void tables_as_text_and_json(void **state)
{
    (void)state;
    reply_t r = run("test table", 0, &admin);
    assert_string_equal(r.body, "NAME             CALLS  STATE\n"
                                "sip:pbx1            12  up\n"
                                "null:lines-long      3  down: \"alarm\"\n");
    r = run("test table", 1, &admin);
    assert_string_equal(
        r.body,
        "{\"command\":\"test table\",\"status\":\"ok\",\"error\":null,\"result\":{"
        "\"rows\":[{\"name\":\"sip:pbx1\",\"calls\":12,\"state\":\"up\"},"
        "{\"name\":\"null:lines-long\",\"calls\":3,\"state\":\"down: "
        "\\\"alarm\\\"\"},{\"name\":\"odd\",\"calls\":\"nan\",\"state\":\"-\"},"
        "{\"name\":\"odd\",\"calls\":\"0x10\",\"state\":\"-\"},"
        "{\"name\":\"ok "
        "\xc3\xa9\\ufffd\\ufffd\",\"calls\":-1.5e3,\"state\":\"\\u0001\"}],\"ok\":true}}\n");
}

static void a_handler_may_finish_later(void **state)
{
    (void)state;
    reply_t r = {0};
    cvx_cmd_req_t *pending = NULL;
    held = NULL;
    cvx__cmd_run("test later deposit", 0, &admin, on_done, &r, &pending);
    assert_non_null(pending);
    assert_ptr_equal(pending, held);
    assert_int_equal(r.calls, 0);
    cvx_cmd_finish(held, 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, CVX__CTL_OK);
    assert_string_equal(r.body, "committed deposit\n");

    /* The client left before the commit: the request still finishes, silently. */
    reply_t r2 = {0};
    cvx__cmd_run("test later x", 0, &admin, on_done, &r2, &pending);
    cvx__cmd_detach(pending);
    cvx_cmd_finish(held, CVX_EFULL);
    assert_int_equal(r2.calls, 0);

    /* Finished inside the handler: one reply, that result. */
    reply_t r3 = run("test at once", 0, &admin);
    assert_int_equal(r3.status, CVX__CTL_FAILED);
    assert_string_equal(r3.body, "tried\nstore full\n");
}

static void registration_rules(void **state)
{
    (void)state;
    static const cvx_cmd_t dup[] = {
        {"test echo", {{0}}, 0, "x", "x", h_echo, NULL},
        CVX_CMDS_END,
    };
    static const cvx_cmd_t bad[] = {
        {"test bad",
         {{"a", CVX_CMD_ARG_OPTIONAL, NULL, NULL, ""}, {"b", 0, NULL, NULL, ""}},
         0,
         "x",
         "x",
         h_echo,
         NULL},
        CVX_CMDS_END,
    };
    static const cvx_cmd_t nohandler[] = {
        {"test none", {{0}}, 0, "x", "x", NULL, NULL},
        CVX_CMDS_END,
    };
    static const cvx_cmd_t extra[] = {
        {"test extra", {{0}}, CVX_CMD_READONLY, "x", "x", h_echo, NULL},
        CVX_CMDS_END,
    };
    assert_int_equal(cvx_cmd_register(dup), CVX_EEXIST);
    assert_int_equal(cvx_cmd_register(bad), CVX_EINVAL);
    assert_int_equal(cvx_cmd_register(nohandler), CVX_EINVAL);
    assert_int_equal(cvx_cmd_register(extra), 0);
    assert_int_equal(run("test extra", 0, &admin).status, CVX__CTL_OK);
    cvx_cmd_unregister(extra);
    assert_int_equal(run("test extra", 0, &admin).status, CVX__CTL_USAGE);
}

static void completion_offers_words_choices_and_objects(void **state)
{
    (void)state;
    char *m = cvx__cmd_complete("te");
    assert_string_equal(m, "test\n");
    free(m);
    m = cvx__cmd_complete("test ");
    assert_string_equal(m, "at\necho\nfail\nfield\nlater\npin\nplain\nset\ntable\n");
    free(m);
    m = cvx__cmd_complete("test set h");
    assert_string_equal(m, "high\n");
    free(m);
    m = cvx__cmd_complete("test set high ");
    assert_string_equal(m, "force\n");
    free(m);
    m = cvx__cmd_complete("test fail 10");
    assert_string_equal(m, "1001\n1002\n");
    free(m);
    m = cvx__cmd_complete("help test s");
    assert_string_equal(m, "set\n");
    free(m);
    m = cvx__cmd_complete("nothing here");
    assert_string_equal(m, "");
    free(m);
}

static void help_lists_and_explains(void **state)
{
    (void)state;
    reply_t r = run("help test set", 0, &viewer);
    assert_int_equal(r.status, CVX__CTL_OK);
    assert_string_equal(r.body, "usage: test set <level> [force]\n"
                                "Set (changes the system: admin only)\n"
                                "\n"
                                "Sets.\n"
                                "\n"
                                "  <level>  how much (one of: low high)\n"
                                "  <force>  z\n");
    r = run("help", 0, &viewer);
    assert_non_null(strstr(r.body, "Commands (* changes the system; your access: read-only):\n"));
    assert_non_null(strstr(r.body, " * test set <level> [force]"));
    assert_non_null(strstr(r.body, "   test table "));
    r = run("help nothing", 0, &viewer);
    assert_int_equal(r.status, CVX__CTL_FAILED);
    assert_string_equal(r.body, "help: no command is called 'nothing' or starts with it\n");
}

/* Any line made of known and unknown words gets exactly one reply with a known status. */
static void random_lines_always_get_one_reply(void **state)
{
    (void)state;
    static const char *const vocab[] = {"test", "echo",  "set",     "low",   "high", "force",
                                        "fail", "table", "help",    "plain", "at",   "once",
                                        "x",    "\"",    "\"a b\"", "",      "  ",   "1001"};
    uint32_t seed = 42;
    for (int round = 0; round < 5000; round++) {
        char line[256] = "";
        int words = (int)((seed = seed * 1103515245u + 12345u) >> 16) % 6;
        for (int i = 0; i < words; i++) {
            seed = seed * 1103515245u + 12345u;
            strcat(line, vocab[(seed >> 16) % (sizeof(vocab) / sizeof(vocab[0]))]);
            strcat(line, " ");
        }
        for (int json = 0; json < 2; json++) {
            reply_t r = run(line, json, round % 2 ? &admin : &viewer);
            assert_true(r.status >= CVX__CTL_OK && r.status <= CVX__CTL_DENIED);
            if (r.status != CVX__CTL_OK)
                assert_true(r.body[0] != '\0');
        }
    }
}

static char audited[16][256];
static int naudited;
static void capture_audit(const cvx__ctl_peer_t *peer, const char *line, const char *result)
{
    if (naudited < 16)
        snprintf(audited[naudited++], sizeof(audited[0]), "%s|%s|%s", peer->user, line, result);
}

static void changes_are_audited_and_secrets_masked(void **state)
{
    (void)state;
    naudited = 0;
    cvx__cmd_audit_fn = capture_audit;
    run("test table", 0, &admin);         /* read-only: not audited */
    run("test set low", 0, &admin);       /* a change */
    run("test pin 1001 4321", 0, &admin); /* a change with a secret */
    run("test pin \"10 01\" 4321 9", 0, &admin);
    run("test field 1001 pin 4321", 0, &admin);       /* a secret named by a word */
    run("test field 1001 name Bob Smith", 0, &admin); /* no secret */
    run("test set high", 0, &viewer);                 /* refused */
    run("test set loud", 0, &admin);                  /* malformed */
    cvx__cmd_audit_fn = cvx__audit;
    assert_int_equal(naudited, 7);
    assert_string_equal(audited[0], "root|test set low|ok");
    assert_string_equal(audited[1], "root|test pin 1001 ***|ok");
    assert_string_equal(audited[2], "root|test pin \"10 01\" *** 9|usage: 'test pin': unexpected "
                                    "argument '9' (usage: test pin <box> <pin>)");
    assert_string_equal(audited[3], "root|test field 1001 pin ***|ok");
    assert_string_equal(audited[4], "root|test field 1001 name Bob Smith|ok");
    assert_string_equal(audited[5], "bob|test set high|denied: permission denied: 'test set' "
                                    "changes the system, and user bob may only run read-only "
                                    "commands");
    assert_string_equal(audited[6], "root|test set loud|usage: 'test set': 'loud' is not one of: "
                                    "low, high (usage: test set <level> [force])");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(longest_name_wins_and_args_are_passed, setup, teardown),
        cmocka_unit_test_setup_teardown(mistakes_name_what_was_expected, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_users_may_only_look, setup, teardown),
        cmocka_unit_test_setup_teardown(failures_carry_their_message, setup, teardown),
        cmocka_unit_test_setup_teardown(tables_as_text_and_json, setup, teardown),
        cmocka_unit_test_setup_teardown(a_handler_may_finish_later, setup, teardown),
        cmocka_unit_test_setup_teardown(registration_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(completion_offers_words_choices_and_objects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(help_lists_and_explains, setup, teardown),
        cmocka_unit_test_setup_teardown(random_lines_always_get_one_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(changes_are_audited_and_secrets_masked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

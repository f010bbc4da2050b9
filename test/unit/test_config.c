/*
 * Configuration: INI syntax, table-driven binding, every error message a user can see, conf.d
 * loading and override, and the formatting/comparison helpers the shell and reload use.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cvx/config.h"
#include "cvx/error.h"

typedef struct tconf {
    int flag;
    long long count;
    long long timeout;
    char *name;
    int mode;
    cvx_strlist_t item;
} tconf_t;

static const char *const modes[] = {"fast", "slow", "off", NULL};

static const cvx_option_t topts[] = {
    {"flag", CVX_OPT_BOOL, offsetof(tconf_t, flag), "no", 0, 0, NULL, 0, "a boolean"},
    {"count", CVX_OPT_INT, offsetof(tconf_t, count), "8", 1, 100, NULL, 0, "an integer"},
    {"timeout", CVX_OPT_DURATION, offsetof(tconf_t, timeout), "5s", 0, 3600000, NULL,
     CVX_OPT_RELOADABLE, "a duration"},
    {"name", CVX_OPT_STRING, offsetof(tconf_t, name), NULL, 0, 0, NULL, 0, "a string"},
    {"mode", CVX_OPT_ENUM, offsetof(tconf_t, mode), "fast", 0, 0, modes, 0, "an enum"},
    {"item", CVX_OPT_LIST, offsetof(tconf_t, item), "dflt", 0, 0, NULL, 0, "a list"},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t tdef = {"t", 0, topts, sizeof(tconf_t), "test section"};

typedef struct rconf {
    char *host;
    long long port;
} rconf_t;

static const cvx_option_t ropts[] = {
    {"host", CVX_OPT_STRING, offsetof(rconf_t, host), NULL, 0, 0, NULL, CVX_OPT_REQUIRED,
     "required"},
    {"port", CVX_OPT_INT, offsetof(rconf_t, port), "5060", 1, 65535, NULL, 0, "port"},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t rdef = {"r", 1, ropts, sizeof(rconf_t), "repeated section"};

/* Parses text (expected to be valid) and binds section [t]. */
static int bind_text(const char *text, tconf_t *out, cvx_diag_t *diag)
{
    cvx_conf_t *conf = cvx_conf_new();
    assert_non_null(conf);
    memset(out, 0, sizeof(*out));
    int rc = cvx_conf_parse(conf, "t.conf", text, diag);
    if (rc == 0)
        rc = cvx_conf_bind(&tdef, cvx_conf_find(conf, "t", NULL), out, diag);
    cvx_conf_free(conf);
    return rc;
}

/* Parses text and expects exactly one diagnostic, equal to want. */
static void expect_parse_error(const char *text, const char *want)
{
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "t.conf", text, &d), CVX_EPARSE);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], want);
    cvx_diag_clear(&d);
    cvx_conf_free(conf);
}

/* Parses (valid) text, binds [t], and expects exactly one diagnostic, equal to want. */
static void expect_bind_error(const char *text, int want_rc, const char *want)
{
    tconf_t c;
    cvx_diag_t d = {0};
    assert_int_equal(bind_text(text, &c, &d), want_rc);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], want);
    cvx_diag_clear(&d);
    cvx_conf_release(topts, &c);
}

static void test_parse_sections(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    const char *text = "; a comment\n"
                       "  # another comment\n"
                       "\n"
                       "[general]\n"
                       "name = box1\n"
                       "[ sip : pbx1 ]\n"
                       "host=10.0.0.1\n"
                       "[sip:pbx2]\n"
                       "host = 10.0.0.2\r\n"
                       "[general]\n"
                       "user = callvox\n";
    assert_int_equal(cvx_conf_parse(conf, "main.conf", text, &d), 0);
    assert_int_equal(d.n, 0);

    cvx_conf_section_t *g = cvx_conf_find(conf, "general", NULL);
    assert_non_null(g);
    assert_null(g->name);
    assert_int_equal(g->line, 4);
    assert_string_equal(g->file, "main.conf");
    /* [general] appears twice: one section, entries in order. */
    assert_string_equal(g->entries->key, "name");
    assert_string_equal(g->entries->value, "box1");
    assert_int_equal(g->entries->line, 5);
    assert_string_equal(g->entries->next->key, "user");
    assert_int_equal(g->entries->next->line, 11);
    assert_null(g->entries->next->next);

    cvx_conf_section_t *p1 = cvx_conf_find(conf, "sip", "pbx1");
    cvx_conf_section_t *p2 = cvx_conf_find(conf, "sip", "pbx2");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_string_equal(p1->kind, "sip");
    assert_string_equal(p1->name, "pbx1");
    assert_string_equal(p1->entries->value, "10.0.0.1");
    assert_string_equal(p2->entries->value, "10.0.0.2"); /* CR trimmed */
    assert_ptr_equal(cvx_conf_find(conf, "sip", NULL), p1);
    assert_null(cvx_conf_find(conf, "sip", "pbx3"));
    char label[128];
    assert_string_equal(cvx_conf_section_label(p2, label, sizeof(label)), "sip:pbx2");
    assert_string_equal(cvx_conf_section_label(g, label, sizeof(label)), "general");
    assert_int_equal(conf->nfiles, 1);
    cvx_conf_free(conf);
}

static void test_values_quotes_no_inline_comments(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    const char *text = "[menu:main]\n"
                       "key = #\n"
                       "star = *9# ; not a comment\n"
                       "quoted = \"  two blanks  \"\n"
                       "empty =\n"
                       "emptyq = \"\"\n"
                       "eq = a = b\n"
                       "inner = say \"hi\" there\n";
    assert_int_equal(cvx_conf_parse(conf, "m.conf", text, &d), 0);
    cvx_conf_section_t *s = cvx_conf_find(conf, "menu", "main");
    assert_non_null(s);
    const char *want[][2] = {{"key", "#"},
                             {"star", "*9# ; not a comment"},
                             {"quoted", "  two blanks  "},
                             {"empty", ""},
                             {"emptyq", ""},
                             {"eq", "a = b"},
                             {"inner", "say \"hi\" there"}};
    cvx_conf_entry_t *e = s->entries;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++, e = e->next) {
        assert_non_null(e);
        assert_string_equal(e->key, want[i][0]);
        assert_string_equal(e->value, want[i][1]);
    }
    assert_null(e);
    cvx_conf_free(conf);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_parse_error("[general\n", "t.conf:1: section header must end with ']'");
    expect_parse_error(
        "\n[Gen]\n", "t.conf:2: bad section kind 'Gen' (lower-case letters, digits, '_' and '-')");
    expect_parse_error("[]\n", "t.conf:1: bad section kind '' (lower-case letters, digits, '_' "
                               "and '-')");
    expect_parse_error("[sip:pbx 1]\n", "t.conf:1: bad section name 'pbx 1' in [sip:...] "
                                        "(letters, digits, '_', '-', '.', '+')");
    expect_parse_error("name = x\n", "t.conf:1: key 'name' is outside any section");
    expect_parse_error("[t]\njust words\n",
                       "t.conf:2: expected 'key = value' or '[section]', got 'just words'");
    expect_parse_error("[t]\nBad-Key = 1\n",
                       "t.conf:2: bad key 'Bad-Key' (lower-case letters, digits, '_' and '-')");
    expect_parse_error("[t]\n= 1\n",
                       "t.conf:2: bad key '' (lower-case letters, digits, '_' and '-')");
    expect_parse_error("[t]\nname = \"open\n", "t.conf:2: [t] name: unterminated quoted value");
    expect_parse_error("[r:x]\nname = \"\n", "t.conf:2: [r:x] name: unterminated quoted value");
    /* The keys under a broken header are not reported again as outside any section. */
    expect_parse_error("[t]\ncount = 1\n[Bad]\ncount = 2\nflag = yes\n",
                       "t.conf:3: bad section kind 'Bad' (lower-case letters, digits, '_' and "
                       "'-')");

    /* Several errors in one file are all reported, in line order. */
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "t.conf", "a = 1\n[t]\nb\nc = 2\n", &d), CVX_EPARSE);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "t.conf:1: key 'a' is outside any section");
    assert_string_equal(d.msgs[1], "t.conf:3: expected 'key = value' or '[section]', got 'b'");
    /* The good line was kept. */
    assert_string_equal(cvx_conf_find(conf, "t", NULL)->entries->key, "c");
    cvx_diag_clear(&d);
    assert_int_equal(d.n, 0);
    assert_null(d.msgs);
    cvx_conf_free(conf);
}

static void test_defaults(void **state)
{
    (void)state;
    tconf_t c;
    cvx_diag_t d = {0};
    memset(&c, 0, sizeof(c));
    assert_int_equal(cvx_conf_bind(&tdef, NULL, &c, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.flag, 0);
    assert_int_equal(c.count, 8);
    assert_int_equal(c.timeout, 5000);
    assert_null(c.name);
    assert_int_equal(c.mode, 0);
    assert_int_equal(c.item.n, 1);
    assert_string_equal(c.item.v[0], "dflt");
    cvx_conf_release(topts, &c);
    assert_int_equal(c.item.n, 0);
    assert_null(c.item.v);

    /* A section that sets nothing gets the defaults, and is claimed. */
    cvx_conf_t *conf = cvx_conf_new();
    assert_int_equal(cvx_conf_parse(conf, "t.conf", "[t]\n", &d), 0);
    cvx_conf_section_t *s = cvx_conf_find(conf, "t", NULL);
    assert_int_equal(s->claimed, 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cvx_conf_bind(&tdef, s, &c, &d), 0);
    assert_int_equal(s->claimed, 1);
    assert_int_equal(c.count, 8);
    cvx_conf_release(topts, &c);
    cvx_conf_free(conf);

    /* A broken built-in default is reported as such. */
    static const cvx_option_t bad[] = {
        {"count", CVX_OPT_INT, 0, "eight", 0, 10, NULL, 0, "x"},
        CVX_OPTIONS_END,
    };
    static const cvx_section_def_t baddef = {"b", 0, bad, sizeof(long long), "x"};
    long long v = 0;
    assert_int_equal(cvx_conf_defaults(&baddef, &v, &d), CVX_EINVAL);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "built-in default: [b] count: 'eight' is not an integer");
    cvx_diag_clear(&d);
}

static void test_bind_values(void **state)
{
    (void)state;
    tconf_t c;
    cvx_diag_t d = {0};
    assert_int_equal(bind_text("[t]\nflag = On\ncount = 100\ntimeout = 250ms\n"
                               "name = \" x \"\nmode = off\n",
                               &c, &d),
                     0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.flag, 1);
    assert_int_equal(c.count, 100);
    assert_int_equal(c.timeout, 250);
    assert_string_equal(c.name, " x ");
    assert_int_equal(c.mode, 2);
    cvx_conf_release(topts, &c);
    assert_null(c.name);

    static const struct {
        const char *text;
        int want;
    } bools[] = {{"yes", 1}, {"no", 0}, {"true", 1}, {"false", 0}, {"on", 1},
                 {"off", 0}, {"1", 1},  {"0", 0},    {"YES", 1},   {"False", 0}};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "[t]\nflag = %s\n", bools[i].text);
        assert_int_equal(bind_text(text, &c, &d), 0);
        assert_int_equal(c.flag, bools[i].want);
        cvx_conf_release(topts, &c);
    }
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        long long ms;
    } cases[] = {{"0", 0},        {"7", 7000}, {"250ms", 250},   {"20s", 20000},  {"5m", 300000},
                 {"1h", 3600000}, {"0d", 0},   {"1500ms", 1500}, {"3min", 180000}};
    tconf_t c;
    cvx_diag_t d = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "[t]\ntimeout = %s\n", cases[i].text);
        assert_int_equal(bind_text(text, &c, &d), 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(c.timeout, cases[i].ms);
        cvx_conf_release(topts, &c);
    }

    /* d is days: 1d is 86400000 ms, above this option's maximum of one hour. */
    expect_bind_error("[t]\ntimeout = 1d\n", CVX_ERANGE,
                      "t.conf:2: [t] timeout: 1d is out of range (0ms..3600000ms)");
    static const char *const bad[] = {"5x", "ms", "-1s", "1.5s", "5 s", "", "s5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[64], want[160];
        snprintf(text, sizeof(text), "[t]\ntimeout = %s\n", bad[i]);
        snprintf(want, sizeof(want),
                 "t.conf:2: [t] timeout: '%s' is not a duration (such as 500ms, 20s, 5m, 1h)",
                 bad[i]);
        expect_bind_error(text, CVX_EINVAL, want);
    }
}

static void test_bind_errors(void **state)
{
    (void)state;
    expect_bind_error("[t]\nbogus = 1\n", CVX_EINVAL, "t.conf:2: [t] unknown key 'bogus'");
    expect_bind_error("[t]\nflag = maybe\n", CVX_EINVAL,
                      "t.conf:2: [t] flag: 'maybe' is not a boolean (yes or no)");
    expect_bind_error("[t]\nflag =\n", CVX_EINVAL,
                      "t.conf:2: [t] flag: '' is not a boolean (yes or no)");
    expect_bind_error("[t]\ncount = ten\n", CVX_EINVAL,
                      "t.conf:2: [t] count: 'ten' is not an integer");
    expect_bind_error("[t]\ncount = 12abc\n", CVX_EINVAL,
                      "t.conf:2: [t] count: '12abc' is not an integer");
    expect_bind_error("[t]\ncount = 99999999999999999999\n", CVX_EINVAL,
                      "t.conf:2: [t] count: '99999999999999999999' is not an integer");
    expect_bind_error("[t]\ncount = 101\n", CVX_ERANGE,
                      "t.conf:2: [t] count: 101 is out of range (1..100)");
    expect_bind_error("[t]\ncount = 0\n", CVX_ERANGE,
                      "t.conf:2: [t] count: 0 is out of range (1..100)");
    expect_bind_error("[t]\ntimeout = 2h\n", CVX_ERANGE,
                      "t.conf:2: [t] timeout: 2h is out of range (0ms..3600000ms)");
    expect_bind_error("[t]\nmode = medium\n", CVX_EINVAL,
                      "t.conf:2: [t] mode: 'medium' is not one of: fast, slow, off");
    expect_bind_error("[t]\nmode = FAST\n", CVX_EINVAL,
                      "t.conf:2: [t] mode: 'FAST' is not one of: fast, slow, off");
    expect_bind_error("[t]\ncount = 5\nflag = yes\ncount = 6\n", CVX_EINVAL,
                      "t.conf:4: [t] count: set twice in one file (first at line 2)");

    /* An error leaves the earlier value (default) in place and other keys still apply. */
    tconf_t c;
    cvx_diag_t d = {0};
    assert_int_equal(bind_text("[t]\ncount = 500\nflag = yes\n", &c, &d), CVX_ERANGE);
    assert_int_equal(c.count, 8);
    assert_int_equal(c.flag, 1);
    cvx_diag_clear(&d);
    cvx_conf_release(topts, &c);
}

static void test_required_and_unclaimed(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "r.conf",
                                    "[r:ok]\nhost = a\n\n[r:missing]\nport = 5\n"
                                    "[foo:bar]\nx = 1\n[other]\n",
                                    &d),
                     0);
    rconf_t r = {0};
    assert_int_equal(cvx_conf_bind(&rdef, cvx_conf_find(conf, "r", "ok"), &r, &d), 0);
    assert_string_equal(r.host, "a");
    assert_int_equal(r.port, 5060);
    cvx_conf_release(ropts, &r);
    memset(&r, 0, sizeof(r));
    assert_int_equal(cvx_conf_bind(&rdef, cvx_conf_find(conf, "r", "missing"), &r, &d), CVX_EINVAL);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "r.conf:4: [r:missing] missing required key 'host'");
    cvx_conf_release(ropts, &r);
    cvx_diag_clear(&d);

    assert_int_equal(cvx_conf_check_unclaimed(conf, &d), CVX_EINVAL);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0],
                        "r.conf:6: unknown section [foo:bar] (no loaded module reads 'foo' "
                        "sections)");
    assert_string_equal(d.msgs[1],
                        "r.conf:8: unknown section [other] (no loaded module reads 'other' "
                        "sections)");
    cvx_diag_clear(&d);
    cvx_conf_find(conf, "foo", "bar")->claimed = 1;
    cvx_conf_find(conf, "other", NULL)->claimed = 1;
    assert_int_equal(cvx_conf_check_unclaimed(conf, &d), 0);
    assert_int_equal(d.n, 0);
    cvx_conf_free(conf);
}

static void test_lists(void **state)
{
    (void)state;
    tconf_t c;
    cvx_diag_t d = {0};
    /* The key repeats; the first value replaces the default. */
    assert_int_equal(bind_text("[t]\nitem = a\nitem = b\ncount = 2\nitem = c\n", &c, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.item.n, 3);
    assert_string_equal(c.item.v[0], "a");
    assert_string_equal(c.item.v[1], "b");
    assert_string_equal(c.item.v[2], "c");
    cvx_conf_release(topts, &c);

    /* A later file replaces the list of an earlier one; a file without the key keeps it. */
    cvx_conf_t *conf = cvx_conf_new();
    assert_int_equal(cvx_conf_parse(conf, "one.conf", "[t]\nitem = a\nitem = b\n", &d), 0);
    assert_int_equal(cvx_conf_parse(conf, "two.conf", "[t]\nitem = x\nitem = y\n", &d), 0);
    assert_int_equal(cvx_conf_parse(conf, "three.conf", "[t]\ncount = 3\n", &d), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cvx_conf_bind(&tdef, cvx_conf_find(conf, "t", NULL), &c, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.item.n, 2);
    assert_string_equal(c.item.v[0], "x");
    assert_string_equal(c.item.v[1], "y");
    assert_int_equal(c.count, 3);
    cvx_conf_release(topts, &c);
    cvx_conf_free(conf);
}

/* --- files ---------------------------------------------------------------------------- */

static char tmpdir[256];

static void write_file(const char *rel, const char *text, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cvx-test-config-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    char confd[300];
    snprintf(confd, sizeof(confd), "%s/conf.d", tmpdir);
    return mkdir(confd, 0700);
}

static int drop_tmpdir(void **state)
{
    (void)state;
    remove_tree(tmpdir);
    return 0;
}

static void test_load_conf_d(void **state)
{
    (void)state;
#define S(x) x, strlen(x)
    write_file("main.conf", S("[t]\ncount = 5\nname = main\ntimeout = 1s\n"));
    /* Name order: 10-b before 20-a before 9-c; "x.conf.bak" and dot files are ignored. */
    write_file("conf.d/20-a.conf", S("[t]\ncount = 20\nmode = slow\n"));
    write_file("conf.d/10-b.conf", S("[t]\ncount = 10\nname = ten\n[r:extra]\nhost = h\n"));
    write_file("conf.d/9-c.conf", S("[t]\nname = nine\n"));
    write_file("conf.d/x.conf.bak", S("[t]\ncount = 99\n"));
    write_file("conf.d/.hidden.conf", S("[t]\ncount = 98\n"));
#undef S
    char path[512];
    snprintf(path, sizeof(path), "%s/main.conf", tmpdir);
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_load(conf, path, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(conf->nfiles, 4);
    char want[600];
    assert_string_equal(conf->files[0], path);
    snprintf(want, sizeof(want), "%s/conf.d/10-b.conf", tmpdir);
    assert_string_equal(conf->files[1], want);
    snprintf(want, sizeof(want), "%s/conf.d/20-a.conf", tmpdir);
    assert_string_equal(conf->files[2], want);
    snprintf(want, sizeof(want), "%s/conf.d/9-c.conf", tmpdir);
    assert_string_equal(conf->files[3], want);

    tconf_t c = {0};
    assert_int_equal(cvx_conf_bind(&tdef, cvx_conf_find(conf, "t", NULL), &c, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(c.count, 20);       /* 20-a.conf overrides 10-b.conf and main */
    assert_string_equal(c.name, "nine"); /* 9-c.conf comes last */
    assert_int_equal(c.timeout, 1000);   /* only main sets it */
    assert_int_equal(c.mode, 1);
    cvx_conf_release(topts, &c);
    assert_non_null(cvx_conf_find(conf, "r", "extra"));
    cvx_conf_free(conf);

    /* An error in a drop-in names that file and line. */
    write_file("conf.d/30-bad.conf", "[t]\n\ncount = many\n", 18);
    conf = cvx_conf_new();
    assert_int_equal(cvx_conf_load(conf, path, &d), 0);
    memset(&c, 0, sizeof(c));
    assert_int_equal(cvx_conf_bind(&tdef, cvx_conf_find(conf, "t", NULL), &c, &d), CVX_EINVAL);
    assert_int_equal(d.n, 1);
    snprintf(want, sizeof(want), "%s/conf.d/30-bad.conf:3: [t] count: 'many' is not an integer",
             tmpdir);
    assert_string_equal(d.msgs[0], want);
    cvx_diag_clear(&d);
    cvx_conf_release(topts, &c);
    cvx_conf_free(conf);

    /* A syntax error in a drop-in makes the load fail, and the other files still count. */
    write_file("conf.d/40-syntax.conf", "[t\n", 3);
    conf = cvx_conf_new();
    assert_int_equal(cvx_conf_load(conf, path, &d), CVX_EPARSE);
    assert_int_equal(d.n, 1);
    snprintf(want, sizeof(want), "%s/conf.d/40-syntax.conf:1: section header must end with ']'",
             tmpdir);
    assert_string_equal(d.msgs[0], want);
    assert_int_equal(conf->nfiles, 6);
    cvx_diag_clear(&d);
    cvx_conf_free(conf);
}

static void test_load_refusals(void **state)
{
    (void)state;
    char path[512], want[700];
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};

    snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
    assert_int_equal(cvx_conf_load(conf, path, &d), CVX_ENOTFOUND);
    assert_int_equal(d.n, 1);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(d.msgs[0], want);
    cvx_diag_clear(&d);

    /* A NUL byte: not a text file, nothing of it is read. */
    write_file("nul.conf", "[t]\ncount = 1\0\n", 15);
    snprintf(path, sizeof(path), "%s/nul.conf", tmpdir);
    assert_int_equal(cvx_conf_load(conf, path, &d), CVX_EPARSE);
    assert_int_equal(d.n, 1);
    snprintf(want, sizeof(want), "%s: contains a NUL byte; not a text file", path);
    assert_string_equal(d.msgs[0], want);
    assert_null(cvx_conf_find(conf, "t", NULL));
    cvx_diag_clear(&d);

    /* A directory where a file should be (conf.d/old.conf/, say) says why it is refused. */
    snprintf(path, sizeof(path), "%s/conf.d", tmpdir);
    assert_int_equal(cvx_conf_load(conf, path, &d), CVX_EIO);
    assert_int_equal(d.n, 1);
    snprintf(want, sizeof(want), "%s: read error: Is a directory", path);
    assert_string_equal(d.msgs[0], want);
    cvx_diag_clear(&d);

    /* A file larger than the reader's first buffer is read whole. */
    size_t big = 3 * 4096 + 17;
    char *text = malloc(big + 64);
    assert_non_null(text);
    size_t off = (size_t)sprintf(text, "[t]\n");
    while (off < big)
        off += (size_t)sprintf(text + off, "; filler filler filler\n");
    off += (size_t)sprintf(text + off, "count = 42\n");
    write_file("big.conf", text, off);
    free(text);
    snprintf(path, sizeof(path), "%s/big.conf", tmpdir);
    cvx_conf_free(conf);
    conf = cvx_conf_new();
    assert_int_equal(cvx_conf_load(conf, path, &d), 0);
    tconf_t c = {0};
    assert_int_equal(cvx_conf_bind(&tdef, cvx_conf_find(conf, "t", NULL), &c, &d), 0);
    assert_int_equal(c.count, 42);
    cvx_conf_release(topts, &c);
    cvx_conf_free(conf);
}

static void test_format_and_equal(void **state)
{
    (void)state;
    tconf_t a, b;
    cvx_diag_t d = {0};
    assert_int_equal(bind_text("[t]\nflag = on\ncount = 42\ntimeout = 1500ms\nname = n\n"
                               "mode = slow\nitem = a\nitem = b c\n",
                               &a, &d),
                     0);
    char buf[128];
    const char *want[] = {"yes", "42", "1500ms", "n", "slow", "a, b c"};
    for (int i = 0; topts[i].name != NULL; i++) {
        cvx_opt_format(&topts[i], &a, buf, sizeof(buf));
        assert_string_equal(buf, want[i]);
    }
    assert_int_equal(bind_text("[t]\n", &b, &d), 0);
    const char *dflt[] = {"no", "8", "5s", "", "fast", "dflt"};
    for (int i = 0; topts[i].name != NULL; i++) {
        cvx_opt_format(&topts[i], &b, buf, sizeof(buf));
        assert_string_equal(buf, dflt[i]);
        assert_int_equal(cvx_opt_equal(&topts[i], &a, &b), 0);
        assert_int_equal(cvx_opt_equal(&topts[i], &a, &a), 1);
    }
    /* Whole seconds are written as seconds; a value read back equals the original. */
    tconf_t c;
    assert_int_equal(bind_text("[t]\ntimeout = 120000ms\nitem = a\nitem = b c\n", &c, &d), 0);
    cvx_opt_format(&topts[2], &c, buf, sizeof(buf));
    assert_string_equal(buf, "120s");
    assert_int_equal(cvx_opt_equal(&topts[5], &a, &c), 1);
    /* Lists differing in length or in one element are not equal. */
    free(c.item.v[1]);
    c.item.v[1] = strdup("b");
    assert_int_equal(cvx_opt_equal(&topts[5], &a, &c), 0);
    /* A small buffer truncates, terminated. */
    cvx_opt_format(&topts[5], &a, buf, 4);
    assert_string_equal(buf, "a, ");
    cvx_conf_release(topts, &a);
    cvx_conf_release(topts, &b);
    cvx_conf_release(topts, &c);
    assert_int_equal(d.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_sections),
        cmocka_unit_test(test_values_quotes_no_inline_comments),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bind_values),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_required_and_unclaimed),
        cmocka_unit_test(test_lists),
        cmocka_unit_test_setup_teardown(test_load_conf_d, make_tmpdir, drop_tmpdir),
        cmocka_unit_test_setup_teardown(test_load_refusals, make_tmpdir, drop_tmpdir),
        cmocka_unit_test(test_format_and_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

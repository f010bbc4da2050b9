/*
 * The module loader: every way test/modules/testmod.c can be broken is refused with the exact
 * reason a user reads in the log; load(), decline and failure; a module directory with
 * [module:NAME] settings, required modules and role filtering; the real null.so.
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

#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "internal.h"

static const char *test_dir(void)
{
    const char *d = getenv("CVX_TEST_MODULE_DIR");
    assert_non_null(d);
    return d;
}

static const char *module_dir(void)
{
    const char *d = getenv("CVX_MODULE_DIR");
    assert_non_null(d);
    return d;
}

/* Opens dir/name.so into a fresh m. */
static int open_mod(cvx__module_t *m, const char *dir, const char *name)
{
    char path[1024];
    memset(m, 0, sizeof(*m));
    snprintf(path, sizeof(path), "%s/%s.so", dir, name);
    return cvx__module_open(m, path);
}

static void close_mod(cvx__module_t *m)
{
    cvx__module_close(m);
    free(m->path);
    m->path = NULL;
}

/* Opens a test module that must be refused with exactly want as the reason. */
static void expect_refused(const char *name, const char *want)
{
    cvx__module_t m;
    assert_int_equal(open_mod(&m, test_dir(), name), CVX_EABI);
    assert_int_equal(m.state, CVX__MOD_REFUSED);
    assert_string_equal(m.name, name);
    assert_null(m.handle);
    assert_null(m.desc);
    assert_string_equal(m.reason, want);
    close_mod(&m);
}

static void test_open_good(void **state)
{
    (void)state;
    cvx__module_t m;
    assert_int_equal(open_mod(&m, test_dir(), "good"), 0);
    assert_non_null(m.handle);
    assert_non_null(m.desc);
    assert_string_equal(m.name, "good");
    assert_string_equal(m.desc->name, "good");
    assert_string_equal(m.desc->version, "0.1");
    assert_int_equal(m.desc->kind, CVX_MODULE_SERVICE);
    assert_int_equal(m.desc->abi_major, CVX_MODULE_ABI_MAJOR);
    assert_string_equal(m.reason, "");
    close_mod(&m);
    assert_null(m.handle);
    assert_null(m.desc);
}

static void test_open_refusals(void **state)
{
    (void)state;
    char want[600];
    expect_refused("wrongabi", "was built for module ABI 2, this callvoxd has ABI 1");
    snprintf(want, sizeof(want), "descriptor too small (16 bytes, at least %zu)",
             (size_t)CVX_MODULE_MIN_SIZE);
    expect_refused("small", want);
    expect_refused("nosym", "has no cvx_module_entry symbol; not a callvox module");
    expect_refused("nulldesc", "cvx_module_entry returned no descriptor");
    snprintf(want, sizeof(want),
             "build signature 'cvx1-ptr4-1234' does not match this callvoxd's '%s'",
             CVX_MODULE_SIGNATURE);
    expect_refused("badsig", want);
    expect_refused("renamed", "declares the name 'other' but its file is renamed.so");
    snprintf(want, sizeof(want), "driver operations table too small (%zu bytes, at least %zu)",
             offsetof(cvx_driver_ops_t, answer), (size_t)CVX_DRIVER_OPS_MIN_SIZE);
    expect_refused("drvsmall", want);
    snprintf(want, sizeof(want),
             "cannot be opened: %s/undefsym.so: undefined symbol: cvx_symbol_that_does_not_exist",
             test_dir());
    expect_refused("undefsym", want);
    snprintf(want, sizeof(want), "cannot be opened: %s/notelf.so: file too short", test_dir());
    expect_refused("notelf", want);
    snprintf(want, sizeof(want),
             "cannot be opened: %s/absent.so: cannot open shared object file: No such file or "
             "directory",
             test_dir());
    expect_refused("absent", want);
}

static void test_load_results(void **state)
{
    (void)state;
    cvx__module_t m;
    cvx_module_env_t env = {NULL, CVX_ROLE_ALL, NULL, ""};

    assert_int_equal(open_mod(&m, test_dir(), "good"), 0);
    assert_int_equal(cvx__module_load(&m, &env), 0);
    assert_int_equal(m.state, CVX__MOD_LOADED);
    close_mod(&m);

    assert_int_equal(open_mod(&m, test_dir(), "declines"), 0);
    assert_int_equal(cvx__module_load(&m, &env), CVX_EDECLINED);
    assert_int_equal(m.state, CVX__MOD_DECLINED);
    assert_string_equal(m.reason, "declined to load: no test hardware present");
    close_mod(&m);

    assert_int_equal(open_mod(&m, test_dir(), "fails"), 0);
    assert_int_equal(cvx__module_load(&m, &env), CVX_EIO);
    assert_int_equal(m.state, CVX__MOD_REFUSED);
    assert_string_equal(m.reason, "failed to load: input/output error");
    close_mod(&m);
}

static void test_real_null(void **state)
{
    (void)state;
    cvx__module_t m;
    cvx_module_env_t env = {NULL, CVX_ROLE_CALL, NULL, ""};
    assert_int_equal(open_mod(&m, module_dir(), "null"), 0);
    assert_string_equal(m.desc->name, "null");
    assert_int_equal(m.desc->kind, CVX_MODULE_DRIVER);
    assert_true(m.desc->roles & CVX_ROLE_CALL);
    assert_false(m.desc->roles & CVX_ROLE_SYSTEM);
    assert_non_null(m.desc->driver);
    assert_int_equal(m.desc->driver->size, sizeof(cvx_driver_ops_t));
    assert_non_null(CVX_OP(m.desc->driver, set_mwi));
    assert_int_equal(cvx__module_load(&m, &env), 0);
    assert_int_equal(m.state, CVX__MOD_LOADED);
    close_mod(&m);
}

/* --- a module directory ---------------------------------------------------------------- */

static char tmpdir[256];

static void copy_module(const char *from_dir, const char *name)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cp '%s/%s.so' '%s/%s.so'", from_dir, name, tmpdir, name);
    assert_int_equal(system(cmd), 0);
}

static int make_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/cvx-test-loader-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    copy_module(test_dir(), "good");
    copy_module(test_dir(), "declines");
    copy_module(test_dir(), "fails");
    copy_module(test_dir(), "wrongabi");
    copy_module(module_dir(), "null");
    /* Not modules: ignored. */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "touch '%s/README' '%s/.hidden.so'", tmpdir, tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static int drop_dir(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Lines the loader logs, to check what an administrator reads. */
static char logged[64][600];
static int nlogged;

static void sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    (void)level;
    if (nlogged < 64)
        snprintf(logged[nlogged++], sizeof(logged[0]), "%s", line);
}

static int was_logged(const char *want)
{
    for (int i = 0; i < nlogged; i++)
        if (strcmp(logged[i], want) == 0)
            return 1;
    return 0;
}

static cvx__module_t *find_mod(cvx__module_t *list, const char *name)
{
    for (; list != NULL; list = list->next)
        if (strcmp(list->name, name) == 0)
            return list;
    return NULL;
}

static void test_dir_defaults(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "m.conf", "[null:a]\nchannels = 2\n", &d), 0);
    cvx__module_t *list = NULL;
    nlogged = 0;
    assert_int_equal(cvx_log_add_sink(sink, NULL), 0);
    assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_ALL, NULL, &list, &d), 0);
    cvx_log_remove_sink(sink, NULL);
    assert_int_equal(d.n, 0);

    /* Name order: declines, fails, good, null, wrongabi. */
    const char *order[] = {"declines", "fails", "good", "null", "wrongabi"};
    cvx__module_t *m = list;
    for (int i = 0; i < 5; i++, m = m->next) {
        assert_non_null(m);
        assert_string_equal(m->name, order[i]);
    }
    assert_null(m);
    assert_int_equal(find_mod(list, "declines")->state, CVX__MOD_DECLINED);
    assert_null(find_mod(list, "declines")->handle); /* closed again */
    assert_int_equal(find_mod(list, "fails")->state, CVX__MOD_REFUSED);
    assert_int_equal(find_mod(list, "good")->state, CVX__MOD_LOADED);
    assert_int_equal(find_mod(list, "null")->state, CVX__MOD_LOADED);
    assert_int_equal(find_mod(list, "wrongabi")->state, CVX__MOD_REFUSED);

    char want[800];
    snprintf(want, sizeof(want),
             "notice: module %s/declines.so declined to load: no test hardware present", tmpdir);
    assert_true(was_logged(want));
    snprintf(want, sizeof(want),
             "error: module %s/wrongabi.so was built for module ABI 2, this callvoxd has ABI 1; "
             "going on without it",
             tmpdir);
    assert_true(was_logged(want));
    snprintf(want, sizeof(want),
             "error: module %s/fails.so failed to load: input/output error; going on without it",
             tmpdir);
    assert_true(was_logged(want));

    /* The loaded driver's instance section is not claimed by the loader (the driver's
     * instance creation reads it). */
    assert_int_equal(cvx_conf_find(conf, "null", "a")->claimed, 0);
    cvx__modules_unload(&list);
    assert_null(list);
    cvx_conf_free(conf);
}

static void test_dir_required(void **state)
{
    (void)state;
    static const struct {
        const char *name, *reason;
    } cases[] = {
        {"declines", "declined to load: no test hardware present"},
        {"fails", "failed to load: input/output error"},
        {"wrongabi", "was built for module ABI 2, this callvoxd has ABI 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cvx_conf_t *conf = cvx_conf_new();
        cvx_diag_t d = {0};
        char text[200], want[800];
        snprintf(text, sizeof(text), "[module:%s]\nrequired = yes\n", cases[i].name);
        assert_int_equal(cvx_conf_parse(conf, "m.conf", text, &d), 0);
        cvx__module_t *list = NULL;
        assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_ALL, NULL, &list, &d),
                         CVX_EINVAL);
        assert_int_equal(d.n, 1);
        snprintf(want, sizeof(want), "module %s/%s.so %s, and [module:%s] says required = yes",
                 tmpdir, cases[i].name, cases[i].reason, cases[i].name);
        assert_string_equal(d.msgs[0], want);
        assert_int_equal(cvx_conf_check_unclaimed(conf, &d), 0);
        cvx_diag_clear(&d);
        cvx__modules_unload(&list);
        cvx_conf_free(conf);
    }

    /* A required module that loads is fine. */
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "m.conf", "[module:good]\nrequired = yes\n", &d), 0);
    cvx__module_t *list = NULL;
    assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_ALL, NULL, &list, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(find_mod(list, "good")->state, CVX__MOD_LOADED);
    assert_int_equal(find_mod(list, "good")->required, 1);
    cvx__modules_unload(&list);
    cvx_conf_free(conf);
}

static void test_dir_load_no_and_roles(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "m.conf",
                                    "[module:good]\nload = no\nrequired = yes\n"
                                    "[good:x]\nwhatever = 1\n"
                                    "[null:a]\nchannels = 2\n"
                                    "[module:declines]\nload = no\n",
                                    &d),
                     0);
    cvx__module_t *list = NULL;
    /* A system server loads no media driver: null.so is skipped, its sections claimed. */
    assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_SYSTEM, NULL, &list, &d), 0);
    assert_int_equal(d.n, 0);
    cvx__module_t *good = find_mod(list, "good");
    assert_int_equal(good->state, CVX__MOD_SKIPPED);
    assert_string_equal(good->reason, "not loaded (load = no)");
    assert_null(good->handle);
    cvx__module_t *null = find_mod(list, "null");
    assert_int_equal(null->state, CVX__MOD_SKIPPED);
    assert_string_equal(null->reason, "not used in this role");
    assert_null(null->handle);
    assert_int_equal(find_mod(list, "declines")->state, CVX__MOD_SKIPPED);
    /* Every section is claimed: [module:*], [good:x] and [null:a]. */
    assert_int_equal(cvx_conf_check_unclaimed(conf, &d), 0);
    assert_int_equal(d.n, 0);
    cvx__modules_unload(&list);
    cvx_conf_free(conf);

    /* The same directory in the call role loads null. */
    conf = cvx_conf_new();
    assert_int_equal(cvx_conf_parse(conf, "m.conf", "[module:wrongabi]\nload = no\n", &d), 0);
    assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_CALL, NULL, &list, &d), 0);
    assert_int_equal(find_mod(list, "null")->state, CVX__MOD_LOADED);
    assert_int_equal(find_mod(list, "wrongabi")->state, CVX__MOD_SKIPPED);
    cvx__modules_unload(&list);
    cvx_conf_free(conf);
}

static void test_dir_missing_files(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "m.conf",
                                    "[module:ghost]\nrequired = yes\n"
                                    "[ghost:one]\nx = 1\n"
                                    "[module:spook]\n"
                                    "[module:gone]\nload = no\nrequired = yes\n",
                                    &d),
                     0);
    cvx__module_t *list = NULL;
    nlogged = 0;
    assert_int_equal(cvx_log_add_sink(sink, NULL), 0);
    assert_int_equal(cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_ALL, NULL, &list, &d),
                     CVX_EINVAL);
    cvx_log_remove_sink(sink, NULL);
    assert_int_equal(d.n, 1);
    char want[800];
    snprintf(want, sizeof(want),
             "m.conf:1: [module:ghost] is required, but %s/ghost.so does not "
             "exist",
             tmpdir);
    assert_string_equal(d.msgs[0], want);
    snprintf(want, sizeof(want), "warning: m.conf:5: [module:spook]: %s/spook.so does not exist",
             tmpdir);
    assert_true(was_logged(want));
    /* Nothing is said about [module:gone] (load = no), and all sections are claimed. */
    for (int i = 0; i < nlogged; i++)
        assert_null(strstr(logged[i], "gone"));
    cvx_diag_clear(&d);
    assert_int_equal(cvx_conf_check_unclaimed(conf, &d), 0);
    cvx__modules_unload(&list);
    cvx_conf_free(conf);

    /* An empty module directory loads nothing. */
    char empty[300];
    snprintf(empty, sizeof(empty), "%s/empty", tmpdir);
    assert_int_equal(mkdir(empty, 0700), 0);
    conf = cvx_conf_new();
    assert_int_equal(cvx__modules_load_dir(empty, conf, CVX_ROLE_ALL, NULL, &list, &d), 0);
    assert_null(list);
    assert_int_equal(d.n, 0);
    cvx_conf_free(conf);

    /* A module directory that does not exist loads nothing and is not fatal. */
    conf = cvx_conf_new();
    assert_int_equal(cvx__modules_load_dir("/nonexistent/cvx", conf, CVX_ROLE_ALL, NULL, &list, &d),
                     0);
    assert_null(list);
    assert_int_equal(d.n, 0);
    cvx_conf_free(conf);
}

static void test_dir_bad_module_section(void **state)
{
    (void)state;
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(
        cvx_conf_parse(conf, "m.conf", "[module:good]\nload = perhaps\nspeed = 3\n", &d), 0);
    cvx__module_t *list = NULL;
    cvx__modules_load_dir(tmpdir, conf, CVX_ROLE_ALL, NULL, &list, &d);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "m.conf:2: [module:good] load: 'perhaps' is not a boolean "
                                   "(yes or no)");
    assert_string_equal(d.msgs[1], "m.conf:3: [module:good] unknown key 'speed'");
    cvx_diag_clear(&d);
    cvx__modules_unload(&list);
    cvx_conf_free(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_good),
        cmocka_unit_test(test_open_refusals),
        cmocka_unit_test(test_load_results),
        cmocka_unit_test(test_real_null),
        cmocka_unit_test_setup_teardown(test_dir_defaults, make_dir, drop_dir),
        cmocka_unit_test_setup_teardown(test_dir_required, make_dir, drop_dir),
        cmocka_unit_test_setup_teardown(test_dir_load_no_and_roles, make_dir, drop_dir),
        cmocka_unit_test_setup_teardown(test_dir_missing_files, make_dir, drop_dir),
        cmocka_unit_test_setup_teardown(test_dir_bad_module_section, make_dir, drop_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

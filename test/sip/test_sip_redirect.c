/*
 * Redirect information from Diversion, History-Info and RFC 4458 URIs: every case of
 * test/data/diversion-history/cases.txt (written from the RFC examples there), plus the
 * helpers' edge cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip_redirect.h"

#define MAXV 16

typedef struct tcase {
    char name[200];
    char ruri[1024];
    char *div[MAXV], *hist[MAXV];
    size_t ndiv, nhist;
    int pick_last;
    char expect[256];
} tcase_t;

static const char *source_name(sip_redirect_source_t s)
{
    switch (s) {
    case SIP_REDIR_SRC_DIVERSION:
        return "diversion";
    case SIP_REDIR_SRC_HISTORY:
        return "history";
    case SIP_REDIR_SRC_RURI:
        return "ruri";
    default:
        return "none";
    }
}

static int run_case(tcase_t *t)
{
    sip_redirect_in_t in = {.ruri = t->ruri[0] ? t->ruri : NULL,
                            .diversion = (const char *const *)t->div,
                            .ndiversion = t->ndiv,
                            .history = (const char *const *)t->hist,
                            .nhistory = t->nhist,
                            .pick_last = t->pick_last};
    cvx_call_info_t info;
    memset(&info, 0x55, sizeof(info));
    sip_redirect_source_t src = sip_redirect_parse(&in, &info);
    char got[256];
    snprintf(got, sizeof(got), "%s %s %u %s", info.original_called[0] ? info.original_called : "-",
             cvx_redirect_name(info.redirect), info.redirect_count, source_name(src));
    int ok = strcmp(got, t->expect) == 0;
    printf("%s %s\n     expected: %s\n     got:      %s\n", ok ? "ok  " : "FAIL", t->name,
           t->expect, got);
    for (size_t i = 0; i < t->ndiv; i++)
        free(t->div[i]);
    for (size_t i = 0; i < t->nhist; i++)
        free(t->hist[i]);
    return ok;
}

static void test_material_cases(void **state)
{
    (void)state;
    const char *path = SIP_TEST_DATA "/diversion-history/cases.txt";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    tcase_t t;
    int have = 0, cases = 0, failed = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *colon = strchr(line, ':');
        assert_non_null(colon);
        *colon = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        if (strcmp(line, "case") == 0) {
            memset(&t, 0, sizeof(t));
            snprintf(t.name, sizeof(t.name), "%s", v);
            have = 1;
        } else if (strcmp(line, "pick") == 0) {
            t.pick_last = strcmp(v, "last") == 0;
        } else if (strcmp(line, "ruri") == 0) {
            snprintf(t.ruri, sizeof(t.ruri), "%s", v);
        } else if (strcmp(line, "diversion") == 0 && t.ndiv < MAXV) {
            t.div[t.ndiv++] = strdup(v);
        } else if (strcmp(line, "history") == 0 && t.nhist < MAXV) {
            t.hist[t.nhist++] = strdup(v);
        } else if (strcmp(line, "expect") == 0) {
            assert_true(have);
            snprintf(t.expect, sizeof(t.expect), "%s", v);
            cases++;
            failed += !run_case(&t);
            have = 0;
        } else {
            fail_msg("%s: unknown key '%s'", path, line);
        }
    }
    fclose(f);
    printf("%d cases, %d failed\n", cases, failed);
    assert_true(cases >= 15);
    assert_int_equal(failed, 0);
}

static void test_uri_number(void **state)
{
    (void)state;
    char out[CVX_NUMBER_MAX];
    const char *u = "tel:+1-919-555-1002;phone-context=x";
    assert_int_equal(sip_uri_number(u, strlen(u), out, sizeof(out)), 0);
    assert_string_equal(out, "+19195551002");
    u = "sip:user;par=u@example.net";
    assert_int_equal(sip_uri_number(u, strlen(u), out, sizeof(out)), 0);
    assert_string_equal(out, "user");
    u = "sip:example.com";
    assert_int_equal(sip_uri_number(u, strlen(u), out, sizeof(out)), 0);
    assert_string_equal(out, "");
    u = "mailto:bob@example.com";
    assert_int_equal(sip_uri_number(u, strlen(u), out, sizeof(out)), -1);
    /* An escaped NUL is dropped, not a terminator; control characters never reach us. */
    u = "sip:%00null%01@example.com";
    assert_int_equal(sip_uri_number(u, strlen(u), out, sizeof(out)), 0);
    assert_string_equal(out, "null");
    /* A user part longer than the field is cut, never overrun. */
    char big[600];
    memset(big, '7', sizeof(big));
    memcpy(big, "sip:", 4);
    memcpy(big + sizeof(big) - 6, "@x.io", 5);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(sip_uri_number(big, strlen(big), out, sizeof(out)), 0);
    assert_int_equal(strlen(out), CVX_NUMBER_MAX - 1);
}

static void test_reason_tables(void **state)
{
    (void)state;
    assert_int_equal(sip_diversion_reason("user-busy", 9), CVX_REDIRECT_BUSY);
    assert_int_equal(sip_diversion_reason("NO-ANSWER", 9), CVX_REDIRECT_NO_ANSWER);
    assert_int_equal(sip_diversion_reason("out-of-service", 14), CVX_REDIRECT_UNAVAILABLE);
    assert_int_equal(sip_diversion_reason("away", 4), CVX_REDIRECT_AWAY);
    assert_int_equal(sip_diversion_reason("frobnicated", 11), CVX_REDIRECT_UNKNOWN);
    assert_int_equal(sip_cause_redirect(404), CVX_REDIRECT_UNKNOWN);
    assert_int_equal(sip_cause_redirect(486), CVX_REDIRECT_BUSY);
    assert_int_equal(sip_cause_redirect(408), CVX_REDIRECT_NO_ANSWER);
    assert_int_equal(sip_cause_redirect(302), CVX_REDIRECT_UNCONDITIONAL);
    assert_int_equal(sip_cause_redirect(487), CVX_REDIRECT_DEFLECTION);
    assert_int_equal(sip_cause_redirect(480), CVX_REDIRECT_DEFLECTION);
    assert_int_equal(sip_cause_redirect(503), CVX_REDIRECT_UNAVAILABLE);
    /* RFC 4458 section 2: no mapping means unconditional. */
    assert_int_equal(sip_cause_redirect(499), CVX_REDIRECT_UNCONDITIONAL);
}

static void test_bounded_on_hostile_input(void **state)
{
    (void)state;
    /* 200 entries in one header: only SIP_REDIR_MAX_ENTRIES are looked at. */
    size_t n = 200 * 24 + 1;
    char *v = malloc(n);
    assert_non_null(v);
    v[0] = '\0';
    for (int i = 0; i < 200; i++)
        strcat(v, "<sip:1@h>;counter=99,  ");
    const char *div[] = {v};
    sip_redirect_in_t in = {.diversion = div, .ndiversion = 1};
    cvx_call_info_t info;
    assert_int_equal(sip_redirect_parse(&in, &info), SIP_REDIR_SRC_DIVERSION);
    assert_int_equal(info.redirect_count, SIP_REDIR_MAX_ENTRIES * 99);
    free(v);
    const char *garbage[] = {"<<<<>>>>;;;;====\"\\", ">", ",,,,", ""};
    in.diversion = garbage;
    in.ndiversion = 4;
    sip_redirect_parse(&in, &info);
    in.history = garbage;
    in.nhistory = 4;
    in.ndiversion = 0;
    sip_redirect_parse(&in, &info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_material_cases),
        cmocka_unit_test(test_uri_number),
        cmocka_unit_test(test_reason_tables),
        cmocka_unit_test(test_bounded_on_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

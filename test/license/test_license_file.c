/*
 * The licence file format (core/license_file.c): what is accepted, and the exact error for
 * each way a file can be wrong.  Licences are signed here with a key pair made for the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "cvx/error.h"
#include "cvx/license.h"

static unsigned char pk[CVX_LICENSE_PK_BYTES], sk[CVX_LICENSE_SK_BYTES];
static char H1[CVX_LICENSE_HASH_HEX];

#define BODY                                                                                       \
    "# a licence\n"                                                                                \
    "format = 1\n"                                                                                 \
    "serial = S-1\n"                                                                               \
    "customer = Some Customer\n"                                                                   \
    "issued = 2026-01-01\n"                                                                        \
    "expires = 2026-06-30\n"                                                                       \
    "ports = 30\n"                                                                                 \
    "mailboxes = 200\n"                                                                            \
    "features = attendant, web\n"

/* Signs body (adding key_id and signature) with sk into out. */
static void sign(const char *body, char *out, size_t size)
{
    char id[CVX_LICENSE_KEYID_HEX];
    cvx_license_key_id(pk, id);
    int n = snprintf(out, size, "%skey_id = %s\n", body, id);
    unsigned char sig[CVX_LICENSE_SIG_BYTES];
    crypto_sign_detached(sig, NULL, (unsigned char *)out, (size_t)n, sk);
    char b64[128];
    cvx_license_b64_encode(sig, sizeof(sig), b64, sizeof(b64));
    snprintf(out + n, size - (size_t)n, "signature = %s\n", b64);
}

static int parse(const char *text, int64_t now, cvx_license_t *l, char *err, size_t errlen)
{
    err[0] = '\0';
    return cvx_license_parse(text, strlen(text), pk, now, l, err, errlen);
}

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(pk, sk);
    cvx_license_hash_secret("one", 3, H1);
    return 0;
}

static void test_valid(void **state)
{
    (void)state;
    char body[2048], text[4096], err[320];
    snprintf(body, sizeof(body), BODY "key_hash = %s\n", H1);
    sign(body, text, sizeof(text));
    cvx_license_t l;
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), 0);
    assert_string_equal(l.serial, "S-1");
    assert_string_equal(l.customer, "Some Customer");
    assert_int_equal(l.ports, 30);
    assert_int_equal(l.mailboxes, 200);
    assert_int_equal(l.features, CVX_LIC_ATTENDANT | CVX_LIC_WEB);
    assert_int_equal(l.nhashes, 1);
    assert_string_equal(l.hashes[0], H1);
    char feats[64];
    cvx_license_features_format(l.features, feats, sizeof(feats));
    assert_string_equal(feats, "attendant, web");
    /* Valid through the last second of its expiry day, not after. */
    assert_int_equal(parse(text, 1782863999, &l, err, sizeof(err)), 0); /* 2026-06-30 23:59:59 */
    assert_int_equal(parse(text, 1782864000, &l, err, sizeof(err)), CVX_ERANGE);
    assert_string_equal(err, "licence S-1 for Some Customer expired on 2026-06-30");
}

static void test_altered_and_foreign(void **state)
{
    (void)state;
    char body[2048], text[4096], err[320];
    snprintf(body, sizeof(body), BODY "key_hash = %s\n", H1);
    sign(body, text, sizeof(text));
    cvx_license_t l;
    /* One more port. */
    char *p = strstr(text, "ports = 30");
    p[9] = '1';
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_ECORRUPT);
    assert_string_equal(err, "the signature does not match the contents: the file was altered "
                             "after it was signed");
    p[9] = '0';
    /* A comment added after signing is an alteration too. */
    char more[4200];
    snprintf(more, sizeof(more), "# hello\n%s", text);
    assert_int_equal(parse(more, 0, &l, err, sizeof(err)), CVX_ECORRUPT);
    /* Text after the signature line. */
    snprintf(more, sizeof(more), "%sports = 999\n", text);
    assert_int_equal(parse(more, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "line 13: text after the signature line");
    /* Another key. */
    unsigned char pk2[CVX_LICENSE_PK_BYTES], sk2[CVX_LICENSE_SK_BYTES];
    crypto_sign_keypair(pk2, sk2);
    char id[CVX_LICENSE_KEYID_HEX], id2[CVX_LICENSE_KEYID_HEX], want[200];
    cvx_license_key_id(pk, id);
    cvx_license_key_id(pk2, id2);
    assert_int_equal(cvx_license_parse(text, strlen(text), pk2, 0, &l, err, sizeof(err)),
                     CVX_EPERM);
    snprintf(want, sizeof(want),
             "signed with key %s, but this build accepts only licences signed with key %s", id,
             id2);
    assert_string_equal(err, want);
    /* No signature at all. */
    assert_int_equal(parse(body, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "no signature line: the file is not a signed licence");
}

static void test_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *err;
    } cases[] = {
        {"ports = 12x\n", "line 11: ports '12x' is not a number from 0 to 1000000"},
        {"ports = 12\n", "line 11: ports is given twice"},
        {"colour = blue\n", "line 11: unknown key 'colour'"},
        {"key_hash = ABC\n", "line 11: key_hash must be 64 lowercase hex digits"},
        {"just words\n", "line 11: expected key = value"},
    };
    char body[2048], text[4096], err[320];
    cvx_license_t l;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body), BODY "key_hash = %s\n%s", H1, cases[i].line);
        sign(body, text, sizeof(text));
        assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
        assert_string_equal(err, cases[i].err);
    }
    /* Missing fields, bad values. */
    sign("format = 1\nserial = S\n", text, sizeof(text));
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "customer is missing");
    snprintf(body, sizeof(body), BODY);
    sign(body, text, sizeof(text));
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "key_hash is missing");
    snprintf(body, sizeof(body), "%s", BODY "key_hash = ");
    strcat(body, H1);
    strcat(body, "\n");
    char *d = strstr(body, "2026-06-30");
    memcpy(d, "2026-02-30", 10);
    sign(body, text, sizeof(text));
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "line 6: expires '2026-02-30' is not a date (YYYY-MM-DD or never)");
    memcpy(strstr(body, "2026-02-30"), "2026-06-30", 10);
    memcpy(strstr(body, "attendant"), "attendan ", 9);
    sign(body, text, sizeof(text));
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "line 9: features: unknown feature (expected none or a list of "
                             "attendant, ha, dahdi, mgw, fax, web)");
    snprintf(body, sizeof(body), "%s", BODY);
    memcpy(strstr(body, "format = 1"), "format = 2", 10);
    sign(body, text, sizeof(text));
    assert_int_equal(parse(text, 0, &l, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "line 2: format 2 is not supported (this callvoxd reads 1)");
}

static void test_ports_counting(void **state)
{
    (void)state;
    /* Outside a daemon nothing is enforced: admission always succeeds and is counted. */
    for (int i = 0; i < 20; i++)
        assert_int_equal(cvx_license_admit_call(), 0);
    for (int i = 0; i < 20; i++)
        cvx_license_release_call();
    const char *why = "x";
    assert_int_equal(cvx_license_accepting_messages(&why), 1);
    assert_null(why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_altered_and_foreign),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_ports_counting),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

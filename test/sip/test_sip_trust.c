/*
 * Trust and numbering: trusted networks (IPv4, IPv6, prefixes, IPv4-mapped sources), digest
 * credentials (a correct response, a wrong one, another realm, a forged or stale nonce) and
 * number mapping rules.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <sofia-sip/auth_digest.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_md5.h>

#include "sip_int.h"

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    inet_pton(AF_INET, a, &s->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &s->sin6_addr);
    return ss;
}

static void test_trusted_networks(void **state)
{
    (void)state;
    sip_net_t n[4];
    assert_int_equal(sip_net_parse("192.0.2.10", &n[0]), 0);
    assert_int_equal(sip_net_parse("10.1.0.0/16", &n[1]), 0);
    assert_int_equal(sip_net_parse("2001:db8::/32", &n[2]), 0);
    assert_int_equal(sip_net_parse("::1", &n[3]), 0);
    assert_int_equal(sip_net_parse("10.0.0.0/33", &n[0]), -1);
    assert_int_equal(sip_net_parse("pbx.example.com", &n[0]), -1);
    assert_int_equal(sip_net_parse("10.0.0.0/", &n[0]), -1);
    assert_int_equal(sip_net_parse("10.1.0.0/16", &n[1]), 0);
    assert_int_equal(sip_net_parse("192.0.2.10", &n[0]), 0);
    struct sockaddr_storage a;
    a = v4("192.0.2.10");
    assert_true(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v4("192.0.2.11");
    assert_false(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v4("10.1.255.3");
    assert_true(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v4("10.2.0.1");
    assert_false(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v6("2001:db8:ffff::1");
    assert_true(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v6("2001:db9::1");
    assert_false(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v6("::1");
    assert_true(sip_net_match(n, 4, (struct sockaddr *)&a));
    /* An IPv4 source on a dual-stack socket is matched as IPv4. */
    a = v6("::ffff:192.0.2.10");
    assert_true(sip_net_match(n, 4, (struct sockaddr *)&a));
    a = v6("::ffff:192.0.2.99");
    assert_false(sip_net_match(n, 4, (struct sockaddr *)&a));
}

static void test_number_map(void **state)
{
    (void)state;
    char *rules[] = {"+1919555>", "9>", ">44"};
    cvx_strlist_t l = {3, rules};
    char n[CVX_NUMBER_MAX];
    strcpy(n, "+19195551002");
    sip_number_map(&l, n, sizeof(n));
    assert_string_equal(n, "1002");
    strcpy(n, "91234");
    sip_number_map(&l, n, sizeof(n));
    assert_string_equal(n, "1234");
    strcpy(n, "2000");
    sip_number_map(&l, n, sizeof(n));
    assert_string_equal(n, "442000");
    cvx_strlist_t none = {0, NULL};
    strcpy(n, "2000");
    sip_number_map(&none, n, sizeof(n));
    assert_string_equal(n, "2000");
}

/* An INVITE with the Authorization a client computes for user/password on challenge. */
static int check(sip_inst_t *si, const char *chal, const char *user, const char *pw,
                 const char *realm, char *who)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char nonce[64];
    const char *p = strstr(chal, "nonce=\"") + 7;
    size_t n = strcspn(p, "\"");
    memcpy(nonce, p, n);
    nonce[n] = '\0';
    auth_response_t ar[1];
    memset(ar, 0, sizeof(ar));
    ar->ar_size = sizeof(ar[0]);
    ar->ar_username = user;
    ar->ar_realm = realm;
    ar->ar_nonce = nonce;
    ar->ar_uri = "sip:100@127.0.0.1";
    ar->ar_qop = "auth";
    ar->ar_auth = 1;
    ar->ar_md5 = 1;
    ar->ar_nc = "00000001";
    ar->ar_cnonce = "0a4f113b";
    auth_hexmd5_t ha1, resp;
    auth_digest_ha1(ha1, user, realm, pw);
    auth_digest_response(ar, resp, ha1, "INVITE", NULL, 0);
    char hdr[512];
    snprintf(hdr, sizeof(hdr),
             "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"sip:100@127.0.0.1\", "
             "response=\"%s\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
             user, realm, nonce, resp);
    sip_t sip;
    memset(&sip, 0, sizeof(sip));
    sip.sip_request = sip_request_make(home, "INVITE sip:100@127.0.0.1 SIP/2.0");
    sip.sip_authorization = sip_authorization_make(home, hdr);
    assert_non_null(sip.sip_request);
    assert_non_null(sip.sip_authorization);
    int r = sip_auth_check(si, &sip, who, 64);
    su_home_deinit(home);
    return r;
}

static void test_digest(void **state)
{
    (void)state;
    static sip_inst_t si;
    char *users[] = {"alice:s3cret"};
    si.conf.auth_users.n = 1;
    si.conf.auth_users.v = users;
    si.conf.realm = "callvox";
    memcpy(si.nonce_key, "0123456789abcdef", 16);
    char chal[256], who[64];
    sip_auth_challenge(&si, 0, chal, sizeof(chal));
    assert_non_null(strstr(chal, "Digest realm=\"callvox\", nonce=\""));
    assert_non_null(strstr(chal, "\", algorithm=MD5, qop=\"auth\""));
    assert_null(strstr(chal, "stale"));
    assert_int_equal(check(&si, chal, "alice", "s3cret", "callvox", who), 1);
    assert_string_equal(who, "alice");
    assert_int_equal(check(&si, chal, "alice", "wrong", "callvox", who), 0);
    assert_int_equal(check(&si, chal, "bob", "s3cret", "callvox", who), 0);
    assert_int_equal(check(&si, chal, "alice", "s3cret", "other", who), 0);
    /* A nonce made with another key is not ours. */
    static sip_inst_t other;
    other = si;
    memcpy(other.nonce_key, "fedcba9876543210", 16);
    char chal2[256];
    sip_auth_challenge(&other, 0, chal2, sizeof(chal2));
    assert_int_equal(check(&si, chal2, "alice", "s3cret", "callvox", who), 0);
    /* An old nonce of ours is stale: the caller is challenged again with stale=true. */
    char ts[24], mac_hex[33], old[128];
    snprintf(ts, sizeof(ts), "%llx", (unsigned long long)time(NULL) - 400);
    su_md5_t md5;
    su_md5_init(&md5);
    su_md5_update(&md5, si.nonce_key, sizeof(si.nonce_key));
    su_md5_strupdate(&md5, ts);
    su_md5_hexdigest(&md5, mac_hex);
    mac_hex[16] = '\0';
    snprintf(old, sizeof(old), "Digest realm=\"callvox\", nonce=\"%s.%s\"", ts, mac_hex);
    assert_int_equal(check(&si, old, "alice", "s3cret", "callvox", who), -1);
    sip_auth_challenge(&si, 1, chal, sizeof(chal));
    assert_non_null(strstr(chal, ", stale=true"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trusted_networks),
        cmocka_unit_test(test_number_map),
        cmocka_unit_test(test_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

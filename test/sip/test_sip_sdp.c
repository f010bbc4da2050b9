/*
 * SDP offer/answer: the SDP bodies of the RFC examples and torture messages
 * (test/data/sdp/from-rfc), Sofia-SIP's own SDP corpus (test/data/sofia-sip/sdp-tests), and
 * the cases a voicemail trunk meets: codec order, dynamic telephone-event, hold, 488.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sip_sdp.h"

static char *slurp(const char *rel, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", SIP_TEST_DATA, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    static char buf[65536];
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void parse_file(const char *rel, sip_sdp_t *out, int *rc)
{
    size_t len;
    char *b = slurp(rel, &len);
    *rc = sip_sdp_parse(b, len, out);
}

static void test_torture_bodies(void **state)
{
    (void)state;
    static const char *const names[] = {"baddate", "badinv01", "bcast",      "clerr",   "esc01",
                                        "escruri", "insuf",    "inv2543",    "longreq", "ltgtruri",
                                        "lwsruri", "lwsstart", "mismatch02", "multi01", "ncl",
                                        "quotbal", "sdp01",    "unreason",   "wsinv"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "sdp/from-rfc/rfc4475-%s-body.sdp", names[i]);
        sip_sdp_t s;
        int rc;
        parse_file(rel, &s, &rc);
        printf("%s: rc %d usable %d pt %d addr %s port %u\n", rel, rc, s.usable, s.payload_type,
               s.addr, s.port);
        assert_int_equal(rc, 0);
        assert_true(s.usable);
        assert_int_equal(s.codec, CVX_CODEC_PCMU);
        assert_int_equal(s.payload_type, 0);
        assert_int_equal(s.te_payload_type, -1);
        assert_int_equal(s.port, 49217);
        assert_int_equal(s.chosen, 0);
        assert_false(s.hold);
    }
    /* test.dat's "body" is no session description at all. */
    sip_sdp_t s;
    int rc;
    parse_file("sdp/from-rfc/rfc4475-test-body.sdp", &s, &rc);
    assert_false(s.usable);
}

static void test_rfc_examples(void **state)
{
    (void)state;
    sip_sdp_t s;
    int rc;
    parse_file("sdp/from-rfc/rfc4566-ex1.sdp", &s, &rc);
    assert_int_equal(rc, 0);
    assert_false(s.usable); /* multicast: nothing a trunk call can use */
    parse_file("sdp/from-rfc/rfc8866-ex1.sdp", &s, &rc);
    assert_int_equal(rc, 0);
    assert_true(s.usable);
    assert_string_equal(s.addr, "198.51.100.1");
    assert_int_equal(s.port, 49170);
    assert_int_equal(s.nmedia, 3);
    parse_file("sdp/from-rfc/rfc8866-ex2.sdp", &s, &rc);
    assert_int_equal(rc, 0);
    assert_true(s.usable);
    assert_int_equal(s.family, AF_INET6);
    assert_string_equal(s.addr, "2001:db8::1");
    /* The answer keeps the three m= lines, rejecting the two we do not use. */
    char buf[1024];
    int n = sip_sdp_answer(&s, "::1", 20000, 1, 2, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "c=IN IP6 ::1\r\n"));
    assert_non_null(strstr(buf, "m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"));
    assert_non_null(strstr(buf, "m=audio 0 RTP/AVP 0\r\n"));
    assert_non_null(strstr(buf, "m=video 0 RTP/AVP 99\r\n"));
}

static void test_sofia_corpus_never_crashes(void **state)
{
    (void)state;
    for (int i = 1; i <= 11; i++) {
        char rel[128];
        snprintf(rel, sizeof(rel), "sofia-sip/sdp-tests/message-%d.sdp", i);
        sip_sdp_t s;
        int rc;
        parse_file(rel, &s, &rc);
        printf("%s: rc %d usable %d %s\n", rel, rc, s.usable, s.error);
    }
}

static const char offer_g729_only[] = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"
                                      "c=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                                      "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

static void test_no_codec_and_garbage(void **state)
{
    (void)state;
    sip_sdp_t s;
    assert_int_equal(sip_sdp_parse(offer_g729_only, strlen(offer_g729_only), &s), 0);
    assert_false(s.usable);
    assert_string_equal(s.error, "no audio stream offers PCMU or PCMA over RTP/AVP");
    assert_int_equal(sip_sdp_parse("hello", 5, &s), -1);
    assert_int_equal(sip_sdp_parse(NULL, 0, &s), -1);
    const char savp[] = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                        "t=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n";
    assert_int_equal(sip_sdp_parse(savp, strlen(savp), &s), 0);
    assert_false(s.usable);
}

static void test_choice_te_and_hold(void **state)
{
    (void)state;
    const char o[] = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                     "m=audio 4000 RTP/AVP 18 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n"
                     "a=fmtp:96 0-15\r\na=sendonly\r\n";
    sip_sdp_t s;
    assert_int_equal(sip_sdp_parse(o, strlen(o), &s), 0);
    assert_true(s.usable);
    assert_int_equal(s.codec, CVX_CODEC_PCMA);
    assert_int_equal(s.payload_type, 8);
    assert_int_equal(s.te_payload_type, 96);
    assert_true(s.hold);
    assert_int_equal(s.direction, SIP_SDP_SENDONLY);
    char buf[1024];
    int n = sip_sdp_answer(&s, "127.0.0.1", 20002, 7, 3, buf, sizeof(buf));
    assert_true(n > 0);
    assert_string_equal(buf, "v=0\r\no=callvox 7 3 IN IP4 127.0.0.1\r\ns=callvox\r\n"
                             "c=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                             "m=audio 20002 RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\n"
                             "a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n"
                             "a=ptime:20\r\na=recvonly\r\n");
    /* RFC 2543 hold: c=0.0.0.0. */
    const char h[] = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                     "m=audio 4000 RTP/AVP 0\r\n";
    assert_int_equal(sip_sdp_parse(h, strlen(h), &s), 0);
    assert_true(s.usable);
    assert_true(s.hold);
    /* A too small buffer is refused, not overrun. */
    assert_int_equal(sip_sdp_answer(&s, "127.0.0.1", 20002, 7, 3, buf, 40), -1);
    n = sip_sdp_offer("127.0.0.1", 20004, 1, 1, 0, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "m=audio 20004 RTP/AVP 0 8 101\r\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torture_bodies),
        cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_sofia_corpus_never_crashes),
        cmocka_unit_test(test_no_codec_and_garbage),
        cmocka_unit_test(test_choice_te_and_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

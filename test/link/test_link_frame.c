/*
 * The link's framing (core/link/frame.c): reassembly from a byte stream cut anywhere, the
 * size limit, envelopes that do not decode, and address parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cvx/error.h"
#include "link/link_impl.h"

typedef struct got {
    int n;
    size_t lens[16];
    uint8_t first[16];
    int stop_at; /* return an error from this frame on (0: never) */
} got_t;

static int on_frame(void *arg, const uint8_t *frame, size_t len)
{
    got_t *g = arg;
    if (g->n < 16) {
        g->lens[g->n] = len;
        g->first[g->n] = len > 0 ? frame[0] : 0;
    }
    g->n++;
    return g->stop_at != 0 && g->n >= g->stop_at ? CVX_ECLOSED : 0;
}

/* Appends a frame of len bytes, all equal to fill, to buf at *off. */
static void put_frame(uint8_t *buf, size_t *off, uint32_t len, uint8_t fill)
{
    buf[*off] = (uint8_t)(len >> 24);
    buf[*off + 1] = (uint8_t)(len >> 16);
    buf[*off + 2] = (uint8_t)(len >> 8);
    buf[*off + 3] = (uint8_t)len;
    memset(buf + *off + 4, fill, len);
    *off += 4 + len;
}

static void test_frames_in_one_chunk(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t off = 0;
    put_frame(buf, &off, 10, 'a');
    put_frame(buf, &off, 0, 0);
    put_frame(buf, &off, 3, 'c');
    cvx__link_rx_t rx = {0};
    got_t g = {0};
    assert_int_equal(cvx__link_rx_feed(&rx, buf, off, on_frame, &g, NULL), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.lens[0], 10);
    assert_int_equal(g.first[0], 'a');
    assert_int_equal(g.lens[1], 0);
    assert_int_equal(g.lens[2], 3);
    assert_int_equal(g.first[2], 'c');
    assert_int_equal(rx.len, 0);
    cvx__link_rx_release(&rx);
}

/* The same stream cut at every possible place, and fed one byte at a time. */
static void test_frames_cut_anywhere(void **state)
{
    (void)state;
    uint8_t buf[256];
    size_t off = 0;
    put_frame(buf, &off, 7, 'x');
    put_frame(buf, &off, 1, 'y');
    put_frame(buf, &off, 40, 'z');
    for (size_t cut = 0; cut <= off; cut++) {
        cvx__link_rx_t rx = {0};
        got_t g = {0};
        assert_int_equal(cvx__link_rx_feed(&rx, buf, cut, on_frame, &g, NULL), 0);
        assert_int_equal(cvx__link_rx_feed(&rx, buf + cut, off - cut, on_frame, &g, NULL), 0);
        assert_int_equal(g.n, 3);
        assert_int_equal(g.lens[0], 7);
        assert_int_equal(g.first[0], 'x');
        assert_int_equal(g.lens[1], 1);
        assert_int_equal(g.first[1], 'y');
        assert_int_equal(g.lens[2], 40);
        assert_int_equal(g.first[2], 'z');
        cvx__link_rx_release(&rx);
    }
    cvx__link_rx_t rx = {0};
    got_t g = {0};
    for (size_t i = 0; i < off; i++)
        assert_int_equal(cvx__link_rx_feed(&rx, buf + i, 1, on_frame, &g, NULL), 0);
    assert_int_equal(g.n, 3);
    assert_int_equal(g.lens[2], 40);
    cvx__link_rx_release(&rx);
}

/* A length over the limit is refused as soon as its 4 bytes are in, before any body. */
static void test_oversized_length(void **state)
{
    (void)state;
    uint32_t big = CVX__LINK_FRAME_MAX + 1;
    uint8_t hdr[4] = {(uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8),
                      (uint8_t)big};
    cvx__link_rx_t rx = {0};
    got_t g = {0};
    uint32_t bad = 0;
    assert_int_equal(cvx__link_rx_feed(&rx, hdr, 3, on_frame, &g, &bad), 0);
    assert_int_equal(cvx__link_rx_feed(&rx, hdr + 3, 1, on_frame, &g, &bad), CVX_EPROTO);
    assert_int_equal(bad, big);
    assert_int_equal(g.n, 0);
    cvx__link_rx_release(&rx);

    /* Garbage (ASCII text) read as a length is over the limit too. */
    const char *text = "GET / HTTP/1.1\r\n\r\n";
    rx = (cvx__link_rx_t){0};
    bad = 0;
    assert_int_equal(
        cvx__link_rx_feed(&rx, (const uint8_t *)text, strlen(text), on_frame, &g, &bad),
        CVX_EPROTO);
    assert_int_equal(bad, 0x47455420u);
    cvx__link_rx_release(&rx);
}

/* A frame of exactly the limit passes, in pieces. */
static void test_largest_frame(void **state)
{
    (void)state;
    size_t n = CVX__LINK_FRAME_MAX;
    uint8_t *buf = malloc(4 + n + 8);
    assert_non_null(buf);
    size_t off = 0;
    put_frame(buf, &off, (uint32_t)n, 'm');
    put_frame(buf, &off, 4, 'n');
    cvx__link_rx_t rx = {0};
    got_t g = {0};
    for (size_t at = 0; at < off; at += 65536) {
        size_t len = off - at < 65536 ? off - at : 65536;
        assert_int_equal(cvx__link_rx_feed(&rx, buf + at, len, on_frame, &g, NULL), 0);
    }
    assert_int_equal(g.n, 2);
    assert_int_equal(g.lens[0], n);
    assert_int_equal(g.first[0], 'm');
    assert_int_equal(g.lens[1], 4);
    cvx__link_rx_release(&rx);
    free(buf);
}

/* An error from the frame handler stops the feed at once. */
static void test_handler_error_stops(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t off = 0;
    put_frame(buf, &off, 2, 'a');
    put_frame(buf, &off, 2, 'b');
    put_frame(buf, &off, 2, 'c');
    cvx__link_rx_t rx = {0};
    got_t g = {.stop_at = 2};
    assert_int_equal(cvx__link_rx_feed(&rx, buf, off, on_frame, &g, NULL), CVX_ECLOSED);
    assert_int_equal(g.n, 2);
    cvx__link_rx_release(&rx);
}

/* pack and unpack agree; a body over the limit is refused; garbage does not decode. */
static void test_envelope(void **state)
{
    (void)state;
    Cvxlink__Frame f = CVXLINK__FRAME__INIT;
    f.version = CVX_LINK_VERSION;
    f.type = CVXLINK__FRAME__TYPE__REPLY;
    f.id = 1234567890123ULL;
    f.method = CVX_LINK_METHOD(CVX_LINK_SVC_STORE, 7);
    f.status = CVX_ENOTFOUND;
    f.body.data = (uint8_t *)"hello";
    f.body.len = 5;
    uint8_t *buf;
    size_t n;
    assert_int_equal(cvx__link_frame_pack(&f, &buf, &n), 0);
    uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    assert_int_equal(len, n - 4);
    Cvxlink__Frame *u = cvxlink__frame__unpack(NULL, n - 4, buf + 4);
    assert_non_null(u);
    assert_int_equal(u->version, CVX_LINK_VERSION);
    assert_int_equal(u->type, CVXLINK__FRAME__TYPE__REPLY);
    assert_true(u->id == 1234567890123ULL);
    assert_int_equal(u->method, 0x10007);
    assert_int_equal(u->status, CVX_ENOTFOUND);
    assert_int_equal(u->body.len, 5);
    assert_memory_equal(u->body.data, "hello", 5);
    cvxlink__frame__free_unpacked(u, NULL);
    free(buf);

    uint8_t *big = calloc(1, CVX_LINK_BODY_MAX + 1);
    assert_non_null(big);
    f.body.data = big;
    f.body.len = CVX_LINK_BODY_MAX + 1;
    assert_int_equal(cvx__link_frame_pack(&f, &buf, &n), CVX_ERANGE);
    f.body.len = CVX_LINK_BODY_MAX;
    assert_int_equal(cvx__link_frame_pack(&f, &buf, &n), 0);
    assert_true(n - 4 <= CVX__LINK_FRAME_MAX);
    free(buf);
    free(big);

    /* A field whose length runs past the end, and a truncated varint. */
    const uint8_t bad1[] = {0x32, 0x10, 'a', 'b'};
    const uint8_t bad2[] = {0x18, 0xff, 0xff};
    assert_null(cvxlink__frame__unpack(NULL, sizeof(bad1), bad1));
    assert_null(cvxlink__frame__unpack(NULL, sizeof(bad2), bad2));
}

static void test_parse_addr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    assert_int_equal(cvx__link_parse_addr("127.0.0.1:5070", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 5070);
    assert_int_equal(cvx__link_parse_addr("[::1]:5070", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    char text[64];
    cvx_tls_format_addr((struct sockaddr *)&ss, text, sizeof(text));
    assert_string_equal(text, "[::1]:5070");
    assert_int_equal(cvx__link_parse_addr("127.0.0.1", &ss), CVX_EINVAL);
    assert_int_equal(cvx__link_parse_addr("127.0.0.1:", &ss), CVX_EINVAL);
    assert_int_equal(cvx__link_parse_addr("127.0.0.1:0", &ss), CVX_EINVAL);
    assert_int_equal(cvx__link_parse_addr("127.0.0.1:65536", &ss), CVX_EINVAL);
    assert_int_equal(cvx__link_parse_addr("sys1.example:5070", &ss), CVX_EINVAL);
    assert_int_equal(cvx__link_parse_addr("::1:5070", &ss), CVX_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_in_one_chunk), cmocka_unit_test(test_frames_cut_anywhere),
        cmocka_unit_test(test_oversized_length),    cmocka_unit_test(test_largest_frame),
        cmocka_unit_test(test_handler_error_stops), cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_parse_addr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

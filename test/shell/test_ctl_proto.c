/*
 * The control socket's wire format: frames survive any split of the byte stream, and every
 * kind of bad input (a length that is no frame, an empty frame, a flood) is reported with the
 * exact message the client is cut off with; command lines split into words as documented.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "ctl/proto.h"
#include "cvx/error.h"

static size_t put(uint8_t *out, uint8_t type, const char *payload)
{
    size_t len;
    uint8_t *f = cvx__ctl_frame(type, NULL, 0, payload, strlen(payload), &len);
    assert_non_null(f);
    memcpy(out, f, len);
    free(f);
    return len;
}

static void frames_survive_any_split(void **state)
{
    (void)state;
    uint8_t stream[256];
    size_t n = 0;
    n += put(stream + n, 'Q', "\x01status");
    n += put(stream + n, 'C', "show c");
    n += put(stream + n, 'A', "");
    /* Every split point, including one byte at a time. */
    for (size_t chunk = 1; chunk <= n; chunk++) {
        cvx__ctl_dec_t d;
        cvx__ctl_dec_init(&d, 4096, 8192);
        int got = 0;
        for (size_t off = 0; off < n; off += chunk) {
            size_t k = off + chunk > n ? n - off : chunk;
            assert_int_equal(cvx__ctl_dec_feed(&d, stream + off, k), 0);
            cvx__ctl_frame_t f;
            int rc;
            while ((rc = cvx__ctl_dec_next(&d, &f)) == 1) {
                if (got == 0) {
                    assert_int_equal(f.type, 'Q');
                    assert_int_equal(f.len, 7);
                    assert_memory_equal(f.payload, "\x01status", 7);
                } else if (got == 1) {
                    assert_int_equal(f.type, 'C');
                    assert_memory_equal(f.payload, "show c", 6);
                } else {
                    assert_int_equal(f.type, 'A');
                    assert_int_equal(f.len, 0);
                }
                got++;
            }
            assert_int_equal(rc, 0);
        }
        assert_int_equal(got, 3);
        assert_int_equal(cvx__ctl_dec_held(&d), 0);
        cvx__ctl_dec_free(&d);
    }
}

static void unfinished_frame_is_held(void **state)
{
    (void)state;
    uint8_t stream[64];
    size_t n = put(stream, 'Q', "\x00reload");
    cvx__ctl_dec_t d;
    cvx__ctl_dec_init(&d, 4096, 8192);
    assert_int_equal(cvx__ctl_dec_feed(&d, stream, n - 1), 0);
    cvx__ctl_frame_t f;
    assert_int_equal(cvx__ctl_dec_next(&d, &f), 0);
    assert_int_equal(cvx__ctl_dec_held(&d), n - 1);
    assert_int_equal(cvx__ctl_dec_complete(&d), 0);
    assert_int_equal(cvx__ctl_dec_feed(&d, stream + n - 1, 1), 0);
    assert_int_equal(cvx__ctl_dec_next(&d, &f), 1);
    assert_int_equal(cvx__ctl_dec_held(&d), 0);
    cvx__ctl_dec_free(&d);
}

static void garbage_is_a_protocol_error(void **state)
{
    (void)state;
    cvx__ctl_dec_t d;
    cvx__ctl_dec_init(&d, 4096, 8192);
    const char *http = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(cvx__ctl_dec_feed(&d, http, strlen(http)), 0);
    cvx__ctl_frame_t f;
    assert_int_equal(cvx__ctl_dec_next(&d, &f), CVX_EPROTO);
    assert_string_equal(d.error, "frame of 1195725856 bytes exceeds the limit of 4096");
    cvx__ctl_dec_free(&d);

    /* One byte over the limit is refused as soon as the length is known. */
    cvx__ctl_dec_init(&d, 4096, 8192);
    uint8_t hdr[4] = {0, 0, 0x10, 0x01};
    assert_int_equal(cvx__ctl_dec_feed(&d, hdr, 4), 0);
    assert_int_equal(cvx__ctl_dec_next(&d, &f), CVX_EPROTO);
    assert_string_equal(d.error, "frame of 4097 bytes exceeds the limit of 4096");
    cvx__ctl_dec_free(&d);

    /* The limit itself is fine. */
    cvx__ctl_dec_init(&d, 4096, 8192);
    uint8_t *big = calloc(1, 4 + 4096);
    big[2] = 0x10;
    big[4] = 'Q';
    assert_int_equal(cvx__ctl_dec_feed(&d, big, 4 + 4096), 0);
    assert_int_equal(cvx__ctl_dec_next(&d, &f), 1);
    assert_int_equal(f.len, 4095);
    free(big);
    cvx__ctl_dec_free(&d);

    cvx__ctl_dec_init(&d, 4096, 8192);
    uint8_t zero[4] = {0, 0, 0, 0};
    assert_int_equal(cvx__ctl_dec_feed(&d, zero, 4), 0);
    assert_int_equal(cvx__ctl_dec_next(&d, &f), CVX_EPROTO);
    assert_string_equal(d.error, "empty frame");
    cvx__ctl_dec_free(&d);
}

static void flood_is_refused_without_buffering_it(void **state)
{
    (void)state;
    cvx__ctl_dec_t d;
    cvx__ctl_dec_init(&d, 64, 200);
    uint8_t stream[300];
    size_t n = 0, frames = 0;
    while (n + 10 < 150) {
        n += put(stream + n, 'Q', "xstatus");
        frames++;
    }
    assert_int_equal(cvx__ctl_dec_feed(&d, stream, n), 0);
    assert_int_equal(cvx__ctl_dec_complete(&d), frames);
    assert_int_equal(cvx__ctl_dec_feed(&d, stream, n), CVX_ELIMIT);
    assert_int_equal(cvx__ctl_dec_held(&d), n);
    /* Taking frames makes room again. */
    cvx__ctl_frame_t f;
    while (cvx__ctl_dec_next(&d, &f) == 1)
        ;
    assert_int_equal(cvx__ctl_dec_feed(&d, stream, n), 0);
    cvx__ctl_dec_free(&d);
}

static void lines_split_into_words(void **state)
{
    (void)state;
    char buf[256], err[64];
    char *w[8];
    assert_int_equal(cvx__ctl_split("  show   config\tlog.level ", buf, w, 8, err, sizeof(err)), 3);
    assert_string_equal(w[0], "show");
    assert_string_equal(w[1], "config");
    assert_string_equal(w[2], "log.level");
    assert_int_equal(
        cvx__ctl_split("say \"a b\" x\"y z\"w \"q\\\"t\\\\\"", buf, w, 8, err, sizeof(err)), 4);
    assert_string_equal(w[1], "a b");
    assert_string_equal(w[2], "xy zw");
    assert_string_equal(w[3], "q\"t\\");
    assert_int_equal(cvx__ctl_split("", buf, w, 8, err, sizeof(err)), 0);
    assert_int_equal(cvx__ctl_split("a \"b", buf, w, 8, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "unterminated quote");
    assert_int_equal(cvx__ctl_split("1 2 3 4 5 6 7 8 9", buf, w, 8, err, sizeof(err)), CVX_EPARSE);
    assert_string_equal(err, "too many words (at most 8)");
}

/* A small deterministic generator, so that a failure repeats. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(void)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return rnd_state >> 8;
}

static void random_bytes_never_break_the_decoder(void **state)
{
    (void)state;
    for (int round = 0; round < 2000; round++) {
        cvx__ctl_dec_t d;
        cvx__ctl_dec_init(&d, 1 + rnd() % 300, rnd() % 1000);
        uint8_t chunk[700];
        int dead = 0;
        for (int i = 0; i < 20 && !dead; i++) {
            size_t n = rnd() % sizeof(chunk);
            for (size_t k = 0; k < n; k++)
                chunk[k] = (uint8_t)(rnd() % 4 == 0 ? 0 : rnd());
            if (cvx__ctl_dec_feed(&d, chunk, n) != 0) {
                assert_true(cvx__ctl_dec_held(&d) + n > d.max_buffer);
                continue;
            }
            assert_true(cvx__ctl_dec_held(&d) <= d.max_buffer);
            cvx__ctl_frame_t f;
            int rc;
            while ((rc = cvx__ctl_dec_next(&d, &f)) == 1)
                assert_true(f.len + 1 <= d.max_body);
            if (rc < 0) {
                assert_int_equal(rc, CVX_EPROTO);
                assert_true(d.error[0] != '\0');
                dead = 1;
            }
        }
        cvx__ctl_dec_free(&d);
    }
}

static void random_lines_split_within_their_buffer(void **state)
{
    (void)state;
    static const char alphabet[] = "ab \t\"\\x";
    for (int round = 0; round < 20000; round++) {
        char line[64];
        size_t n = rnd() % (sizeof(line) - 1);
        for (size_t k = 0; k < n; k++)
            line[k] = alphabet[rnd() % (sizeof(alphabet) - 1)];
        line[n] = '\0';
        char *buf = malloc(n + 1); /* exactly what the contract asks for */
        char *w[64], err[64];
        int rc = cvx__ctl_split(line, buf, w, 64, err, sizeof(err));
        if (rc < 0) {
            assert_int_equal(rc, CVX_EPARSE);
            assert_string_equal(err, "unterminated quote");
        } else {
            for (int i = 0; i < rc; i++)
                assert_true(w[i] >= buf && w[i] + strlen(w[i]) < buf + n + 1);
        }
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_survive_any_split),
        cmocka_unit_test(unfinished_frame_is_held),
        cmocka_unit_test(garbage_is_a_protocol_error),
        cmocka_unit_test(flood_is_refused_without_buffering_it),
        cmocka_unit_test(lines_split_into_words),
        cmocka_unit_test(random_bytes_never_break_the_decoder),
        cmocka_unit_test(random_lines_split_within_their_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

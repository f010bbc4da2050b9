/*
 * Framing of the link: a 4-byte big-endian length, then a protobuf-c Frame.  The decoder
 * here knows nothing of sockets so that its edge cases are tested by themselves
 * (test/link/test_link_frame.c).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvx/error.h"
#include "link/link_impl.h"

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int append(cvx__link_rx_t *rx, const uint8_t *data, size_t len)
{
    if (rx->len + len > rx->cap) {
        size_t cap = rx->cap * 2 > rx->len + len ? rx->cap * 2 : rx->len + len;
        if (cap < 256)
            cap = 256;
        uint8_t *nb = realloc(rx->buf, cap);
        if (nb == NULL)
            return CVX_ENOMEM;
        rx->buf = nb;
        rx->cap = cap;
    }
    memcpy(rx->buf + rx->len, data, len);
    rx->len += len;
    return 0;
}

static int too_long(uint32_t n, uint32_t *bad_len)
{
    if (n <= CVX__LINK_FRAME_MAX)
        return 0;
    if (bad_len != NULL)
        *bad_len = n;
    return CVX_EPROTO;
}

int cvx__link_rx_feed(cvx__link_rx_t *rx, const uint8_t *data, size_t len, cvx__link_frame_fn fn,
                      void *arg, uint32_t *bad_len)
{
    int rc;
    for (;;) {
        if (rx->len > 0) {
            /* A partial frame is buffered: complete its length, then the frame. */
            if (rx->len < 4) {
                size_t take = 4 - rx->len < len ? 4 - rx->len : len;
                if ((rc = append(rx, data, take)) != 0)
                    return rc;
                data += take;
                len -= take;
                if (rx->len < 4)
                    return 0;
                if ((rc = too_long(be32(rx->buf), bad_len)) != 0)
                    return rc;
            }
            uint32_t n = be32(rx->buf);
            size_t need = 4 + (size_t)n - rx->len;
            size_t take = need < len ? need : len;
            if ((rc = append(rx, data, take)) != 0)
                return rc;
            data += take;
            len -= take;
            if (take < need)
                return 0;
            rx->len = 0; /* rx->buf stays as it is until the next append */
            if ((rc = fn(arg, rx->buf + 4, n)) != 0)
                return rc;
            continue;
        }
        /* Frames entirely inside data are handed over without a copy. */
        if (len < 4)
            return len > 0 ? append(rx, data, len) : 0;
        uint32_t n = be32(data);
        if ((rc = too_long(n, bad_len)) != 0)
            return rc;
        if (len < 4 + (size_t)n)
            return append(rx, data, len);
        if ((rc = fn(arg, data + 4, n)) != 0)
            return rc;
        data += 4 + (size_t)n;
        len -= 4 + (size_t)n;
    }
}

void cvx__link_rx_release(cvx__link_rx_t *rx)
{
    free(rx->buf);
    memset(rx, 0, sizeof(*rx));
}

int cvx__link_frame_pack(const Cvxlink__Frame *f, uint8_t **out, size_t *out_len)
{
    *out = NULL;
    if (f->body.len > CVX_LINK_BODY_MAX)
        return CVX_ERANGE;
    size_t n = cvxlink__frame__get_packed_size(f);
    if (n > CVX__LINK_FRAME_MAX)
        return CVX_ERANGE;
    uint8_t *buf = malloc(4 + n);
    if (buf == NULL)
        return CVX_ENOMEM;
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    cvxlink__frame__pack(f, buf + 4);
    *out = buf;
    *out_len = 4 + n;
    return 0;
}

int cvx__link_send(cvx_tls_t *t, Cvxlink__Frame__Type type, uint64_t id, uint32_t method,
                   int32_t status, const void *body, size_t len)
{
    Cvxlink__Frame f = CVXLINK__FRAME__INIT;
    f.version = CVX_LINK_VERSION;
    f.type = type;
    f.id = id;
    f.method = method;
    f.status = status;
    f.body.data = (uint8_t *)body;
    f.body.len = body != NULL ? len : 0;
    uint8_t *buf;
    size_t n;
    int rc = cvx__link_frame_pack(&f, &buf, &n);
    if (rc != 0)
        return rc;
    rc = cvx_tls_write(t, buf, n);
    free(buf);
    return rc;
}

const char *cvx__link_type_name(int type)
{
    static const char *const names[] = {"none", "hello",  "hello-ack", "request", "reply",
                                        "push", "status", "ping",      "pong"};
    return type >= 0 && type < (int)(sizeof(names) / sizeof(names[0])) ? names[type] : "unknown";
}

uint64_t cvx__link_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t cvx__link_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

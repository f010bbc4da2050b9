/*
 * The control socket's framing and command-line splitting (see proto.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "proto.h"

void cvx__ctl_dec_init(cvx__ctl_dec_t *d, size_t max_body, size_t max_buffer)
{
    memset(d, 0, sizeof(*d));
    d->max_body = max_body;
    d->max_buffer = max_buffer < max_body + CVX__CTL_HDR ? max_body + CVX__CTL_HDR : max_buffer;
}

void cvx__ctl_dec_free(cvx__ctl_dec_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->off = d->len = d->cap = 0;
}

int cvx__ctl_dec_feed(cvx__ctl_dec_t *d, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    if (d->len + n > d->max_buffer)
        return CVX_ELIMIT;
    if (d->off > 0) {
        /* Frames already taken are no longer referenced: move what is left to the front. */
        memmove(d->buf, d->buf + d->off, d->len);
        d->off = 0;
    }
    if (d->len + n > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->len + n)
            cap *= 2;
        if (cap > d->max_buffer)
            cap = d->max_buffer;
        uint8_t *nb = realloc(d->buf, cap);
        if (nb == NULL)
            return CVX_ENOMEM;
        d->buf = nb;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, n);
    d->len += n;
    return 0;
}

int cvx__ctl_dec_next(cvx__ctl_dec_t *d, cvx__ctl_frame_t *f)
{
    if (d->len < CVX__CTL_HDR)
        return 0;
    const uint8_t *p = d->buf + d->off;
    size_t body = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (body == 0) {
        snprintf(d->error, sizeof(d->error), "empty frame");
        return CVX_EPROTO;
    }
    if (body > d->max_body) {
        snprintf(d->error, sizeof(d->error), "frame of %zu bytes exceeds the limit of %zu", body,
                 d->max_body);
        return CVX_EPROTO;
    }
    if (d->len < CVX__CTL_HDR + body)
        return 0;
    f->type = p[CVX__CTL_HDR];
    f->payload = p + CVX__CTL_HDR + 1;
    f->len = body - 1;
    d->off += CVX__CTL_HDR + body;
    d->len -= CVX__CTL_HDR + body;
    return 1;
}

size_t cvx__ctl_dec_held(const cvx__ctl_dec_t *d)
{
    return d->len;
}

size_t cvx__ctl_dec_complete(const cvx__ctl_dec_t *d)
{
    size_t n = 0, off = 0;
    const uint8_t *p = d->buf + d->off;
    while (d->len - off >= CVX__CTL_HDR) {
        const uint8_t *h = p + off;
        size_t body = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (body == 0 || body > d->max_body || d->len - off - CVX__CTL_HDR < body)
            break;
        off += CVX__CTL_HDR + body;
        n++;
    }
    return n;
}

void cvx__ctl_header(uint8_t *hdr, uint8_t type, size_t payload_len)
{
    size_t body = payload_len + 1;
    hdr[0] = (uint8_t)(body >> 24);
    hdr[1] = (uint8_t)(body >> 16);
    hdr[2] = (uint8_t)(body >> 8);
    hdr[3] = (uint8_t)body;
    hdr[4] = type;
}

uint8_t *cvx__ctl_frame(uint8_t type, const void *prefix, size_t prefix_len, const void *payload,
                        size_t len, size_t *out_len)
{
    size_t total = CVX__CTL_HDR + 1 + prefix_len + len;
    uint8_t *buf = malloc(total);
    if (buf == NULL)
        return NULL;
    cvx__ctl_header(buf, type, prefix_len + len);
    if (prefix_len > 0)
        memcpy(buf + CVX__CTL_HDR + 1, prefix, prefix_len);
    if (len > 0)
        memcpy(buf + CVX__CTL_HDR + 1 + prefix_len, payload, len);
    *out_len = total;
    return buf;
}

int cvx__ctl_split(const char *line, char *buf, char **words, int max, char *err, size_t errlen)
{
    int n = 0;
    const char *s = line;
    char *o = buf;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (*s == '\0')
            break;
        if (n == max) {
            snprintf(err, errlen, "too many words (at most %d)", max);
            return CVX_EPARSE;
        }
        words[n++] = o;
        while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') {
            if (*s != '"') {
                *o++ = *s++;
                continue;
            }
            s++; /* a quoted part of the word */
            while (*s != '"') {
                if (*s == '\0') {
                    snprintf(err, errlen, "unterminated quote");
                    return CVX_EPARSE;
                }
                if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
                    s++;
                *o++ = *s++;
            }
            s++;
        }
        *o++ = '\0';
    }
    return n;
}

/*
 * RTCP sender and receiver reports (RFC 3550 sections 6.4 and 6.5), built and parsed without
 * I/O (see rtp_impl.h).
 */
#include <string.h>

#include "cvx/error.h"
#include "media/rtp_impl.h"

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* One report block about src (RFC 3550 6.4.1, A.3). */
static void put_block(uint8_t *p, cvx__rtp_src_t *src, uint64_t now_ns)
{
    uint32_t expected = cvx__rtp_src_expected(src);
    int64_t lost = cvx__rtp_src_lost(src);
    uint32_t expected_interval = expected - src->expected_prior;
    uint32_t received_interval = src->received - src->received_prior;
    src->expected_prior = expected;
    src->received_prior = src->received;
    int64_t lost_interval = (int64_t)expected_interval - received_interval;
    uint8_t fraction = 0;
    if (expected_interval != 0 && lost_interval > 0)
        fraction = (uint8_t)((lost_interval << 8) / expected_interval);
    if (lost > 0x7fffff)
        lost = 0x7fffff;
    if (lost < -0x800000)
        lost = -0x800000;
    put32(p, src->ssrc);
    put32(p + 4, ((uint32_t)fraction << 24) | ((uint32_t)lost & 0xffffff));
    put32(p + 8, src->cycles + src->max_seq);
    put32(p + 12, (uint32_t)src->jitter);
    put32(p + 16, src->last_sr_ntp_mid);
    uint32_t dlsr = 0;
    if (src->last_sr_ntp_mid != 0 && now_ns > src->last_sr_recv_ns)
        dlsr = (uint32_t)(((now_ns - src->last_sr_recv_ns) * 65536ull) / 1000000000ull);
    put32(p + 20, dlsr);
}

size_t cvx__rtcp_build(uint8_t *buf, size_t size, uint32_t ssrc, const char *cname, uint64_t ntp,
                       uint32_t rtp_ts, uint32_t sent_packets, uint32_t sent_octets,
                       cvx__rtp_src_t *src, uint64_t now_ns)
{
    size_t clen = strlen(cname);
    if (clen > 255)
        clen = 255;
    int block = src != NULL && !src->probation;
    size_t rlen = (sent_packets > 0 ? 28 : 8) + (block ? 24 : 0);
    size_t slen = (8 + 2 + clen + 1 + 3) & ~(size_t)3; /* header, item, END, padding */
    if (rlen + slen > size)
        return 0;
    memset(buf, 0, rlen + slen);
    uint8_t *p = buf;
    p[0] = (uint8_t)(0x80 | (block ? 1 : 0));
    p[1] = sent_packets > 0 ? 200 : 201;
    put16(p + 2, (uint16_t)(rlen / 4 - 1));
    put32(p + 4, ssrc);
    p += 8;
    if (sent_packets > 0) {
        put32(p, (uint32_t)(ntp >> 32));
        put32(p + 4, (uint32_t)ntp);
        put32(p + 8, rtp_ts);
        put32(p + 12, sent_packets);
        put32(p + 16, sent_octets);
        p += 20;
    }
    if (block) {
        put_block(p, src, now_ns);
        p += 24;
    }
    /* SDES with one chunk: CNAME. */
    p[0] = 0x81;
    p[1] = 202;
    put16(p + 2, (uint16_t)(slen / 4 - 1));
    put32(p + 4, ssrc);
    p[8] = 1;
    p[9] = (uint8_t)clen;
    memcpy(p + 10, cname, clen);
    return rlen + slen;
}

int cvx__rtcp_parse(const uint8_t *buf, size_t len, cvx__rtcp_info_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t off = 0;
    int found = 0;
    /* A compound packet starts with SR or RR (RFC 3550 6.1); check every part's length. */
    if (len < 8 || (buf[0] >> 6) != 2 || (buf[1] != 200 && buf[1] != 201))
        return CVX_EPROTO;
    while (off < len) {
        if (len - off < 4 || (buf[off] >> 6) != 2)
            return CVX_EPROTO;
        size_t plen = 4 * ((size_t)((buf[off + 2] << 8) | buf[off + 3]) + 1);
        if (plen > len - off)
            return CVX_EPROTO;
        const uint8_t *p = buf + off;
        int rc = p[0] & 0x1f, pt = p[1];
        if (!found && (pt == 200 || pt == 201)) {
            size_t need = 8 + (pt == 200 ? 20 : 0) + 24u * (size_t)rc;
            if (need > plen)
                return CVX_EPROTO;
            out->is_sr = pt == 200;
            out->ssrc = get32(p + 4);
            const uint8_t *b = p + 8;
            if (pt == 200) {
                out->ntp_mid = (get32(p + 8) << 16) | (get32(p + 12) >> 16);
                out->packets = get32(p + 20);
                out->octets = get32(p + 24);
                b = p + 28;
            }
            if (rc > 0) {
                out->has_block = 1;
                out->block_ssrc = get32(b);
                out->lsr = get32(b + 16);
                out->fraction_lost = b[4];
                uint32_t cl = get32(b + 4) & 0xffffff;
                out->cum_lost = (cl & 0x800000) ? (int32_t)(cl | 0xff000000u) : (int32_t)cl;
                out->jitter = get32(b + 12);
            }
            found = 1;
        }
        off += plen;
    }
    return found ? 0 : CVX_EPROTO;
}

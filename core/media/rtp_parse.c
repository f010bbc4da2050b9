/*
 * RTP packet parsing, RFC 3550 source validation and RFC 4733 event reception (see
 * rtp_impl.h).  No I/O here.
 */
#include <string.h>

#include "cvx/error.h"
#include "media/rtp_impl.h"

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int cvx__rtp_parse(const uint8_t *buf, size_t len, cvx__rtp_hdr_t *h)
{
    if (len < 12 || (buf[0] >> 6) != 2)
        return CVX_EPROTO;
    size_t off = 12 + 4u * (buf[0] & 0x0f);
    if (off > len)
        return CVX_EPROTO;
    if (buf[0] & 0x10) {
        if (off + 4 > len)
            return CVX_EPROTO;
        size_t ext = 4 + 4u * get16(buf + off + 2);
        if (off + ext > len)
            return CVX_EPROTO;
        off += ext;
    }
    size_t end = len;
    if (buf[0] & 0x20) {
        uint8_t pad = buf[len - 1];
        if (pad == 0 || pad > len - off)
            return CVX_EPROTO;
        end -= pad;
    }
    h->marker = buf[1] >> 7;
    h->pt = buf[1] & 0x7f;
    /* Payload types 72-76 are RTCP packet types arriving on the RTP port (RFC 5761). */
    if (h->pt >= 72 && h->pt <= 76)
        return CVX_EPROTO;
    h->seq = get16(buf + 2);
    h->ts = get32(buf + 4);
    h->ssrc = get32(buf + 8);
    h->payload = buf + off;
    h->len = end - off;
    return 0;
}

size_t cvx__rtp_put_hdr(uint8_t *buf, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc)
{
    buf[0] = 0x80;
    buf[1] = (uint8_t)((marker ? 0x80 : 0) | (pt & 0x7f));
    buf[2] = (uint8_t)(seq >> 8);
    buf[3] = (uint8_t)seq;
    buf[4] = (uint8_t)(ts >> 24);
    buf[5] = (uint8_t)(ts >> 16);
    buf[6] = (uint8_t)(ts >> 8);
    buf[7] = (uint8_t)ts;
    buf[8] = (uint8_t)(ssrc >> 24);
    buf[9] = (uint8_t)(ssrc >> 16);
    buf[10] = (uint8_t)(ssrc >> 8);
    buf[11] = (uint8_t)ssrc;
    return 12;
}

/* --- RFC 3550 appendix A.1 ------------------------------------------------------------- */

static void src_reset_seq(cvx__rtp_src_t *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->bad_seq = CVX__RTP_SEQ_MOD + 1; /* so seq == bad_seq is false */
    s->cycles = 0;
    s->received = 0;
    s->received_prior = 0;
    s->expected_prior = 0;
}

void cvx__rtp_src_init(cvx__rtp_src_t *s, uint32_t ssrc, uint16_t seq)
{
    memset(s, 0, sizeof(*s));
    s->ssrc = ssrc;
    src_reset_seq(s, seq);
    s->max_seq = (uint16_t)(seq - 1);
    s->probation = CVX__RTP_MIN_SEQUENTIAL;
}

int cvx__rtp_src_update(cvx__rtp_src_t *s, uint16_t seq)
{
    uint16_t udelta = (uint16_t)(seq - s->max_seq);

    if (s->probation) {
        /* Packets must be in sequence to leave probation. */
        if (seq == (uint16_t)(s->max_seq + 1)) {
            s->probation--;
            s->max_seq = seq;
            if (s->probation == 0) {
                src_reset_seq(s, seq);
                s->received++;
                return 1;
            }
        } else {
            s->probation = CVX__RTP_MIN_SEQUENTIAL - 1;
            s->max_seq = seq;
        }
        return 0;
    } else if (udelta < CVX__RTP_MAX_DROPOUT) {
        /* In order, with a permissible gap. */
        if (seq < s->max_seq)
            s->cycles += CVX__RTP_SEQ_MOD;
        s->max_seq = seq;
    } else if (udelta <= CVX__RTP_SEQ_MOD - CVX__RTP_MAX_MISORDER) {
        /* A very large jump: the other side may have restarted.  Accept it only when the
         * next packet follows it. */
        if (seq == s->bad_seq) {
            src_reset_seq(s, seq);
        } else {
            s->bad_seq = (seq + 1) & (CVX__RTP_SEQ_MOD - 1);
            return 0;
        }
    } else {
        /* Duplicate or reordered packet. */
    }
    s->received++;
    return 1;
}

void cvx__rtp_src_jitter(cvx__rtp_src_t *s, uint32_t rtp_ts, uint32_t arrival)
{
    int32_t transit = (int32_t)(arrival - rtp_ts);
    if (!s->have_transit) {
        s->have_transit = 1;
        s->transit = transit;
        return;
    }
    int32_t d = transit - s->transit;
    s->transit = transit;
    if (d < 0)
        d = -d;
    s->jitter += (1.0 / 16.0) * ((double)d - s->jitter);
}

uint32_t cvx__rtp_src_expected(const cvx__rtp_src_t *s)
{
    if (s->probation)
        return 0;
    uint32_t ext_max = s->cycles + s->max_seq;
    return ext_max - s->base_seq + 1;
}

int64_t cvx__rtp_src_lost(const cvx__rtp_src_t *s)
{
    if (s->probation)
        return 0;
    return (int64_t)cvx__rtp_src_expected(s) - (int64_t)s->received;
}

/* --- RFC 4733 ---------------------------------------------------------------------------- */

static const char te_keys[] = "0123456789*#ABCD";

char cvx__te_digit(int event)
{
    return event >= 0 && event < 16 ? te_keys[event] : 0;
}

int cvx__te_event(char digit)
{
    if (digit == 0)
        return -1;
    const char *p = strchr(te_keys, digit);
    if (p == NULL && digit >= 'a' && digit <= 'd')
        p = strchr(te_keys, digit - 'a' + 'A');
    return p ? (int)(p - te_keys) : -1;
}

static int te_recent(const cvx__te_rx_t *r, uint32_t ts)
{
    for (unsigned i = 0; i < r->nrecent; i++)
        if (r->recent[i] == ts)
            return 1;
    return 0;
}

int cvx__te_rx_packet(cvx__te_rx_t *r, const cvx__rtp_hdr_t *h, char *digit, unsigned *duration)
{
    if (h->len < 4)
        return CVX_EPROTO;
    int event = h->payload[0];
    int end = (h->payload[1] & 0x80) != 0;
    unsigned dur = get16(h->payload + 2);

    if (h->ts == r->last_ts && r->have_last) {
        /* The event in progress: a continuation, its end, or a retransmitted end. */
        if (end)
            r->last_ended = 1;
        return 0;
    }
    if (te_recent(r, h->ts))
        return 0; /* a late packet of an event already reported */
    /* A long event is split into segments with new timestamps and no marker (RFC 4733
     * 2.5.1.3): the same key still held is not a new digit. */
    int continuation = r->have_last && !r->last_ended && !h->marker && event == r->last_event;
    r->have_last = 1;
    r->last_ts = h->ts;
    r->last_event = event;
    r->last_ended = end;
    if (r->nrecent < 4) {
        r->recent[r->nrecent++] = h->ts;
    } else {
        memmove(r->recent, r->recent + 1, 3 * sizeof(uint32_t));
        r->recent[3] = h->ts;
    }
    if (continuation)
        return 0;
    char d = cvx__te_digit(event);
    if (d == 0)
        return 0;
    *digit = d;
    *duration = dur;
    return 1;
}

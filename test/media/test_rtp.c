/*
 * The RTP engine: packet parsing and RFC 3550 validation, the RFC 4733 "911" example of
 * RFC 4733 section 5 (each digit reported once although end packets are retransmitted), the
 * jitter buffer, G.711, RTCP, and live sessions on loopback against a peer socket owned by the
 * test: pacing, latching, foreign and malformed packets, DTMF both ways, media timeout.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spandsp.h>

#include "cvx/error.h"
#include "cvx/media.h"
#include "cvx/rtp.h"
#include "harness.h"
#include "media/media_impl.h"
#include "media/rtp_impl.h"

#define PORT_MIN 31000
#define PORT_MAX 31999

/* --- pure logic ------------------------------------------------------------------------ */

static size_t mk(uint8_t *b, int m, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc,
                 const uint8_t *pl, size_t n)
{
    cvx__rtp_put_hdr(b, m, pt, seq, ts, ssrc);
    memcpy(b + 12, pl, n);
    return 12 + n;
}

static void parse_valid_and_malformed(void **state)
{
    (void)state;
    uint8_t b[64], pl[4] = {1, 2, 3, 4};
    cvx__rtp_hdr_t h;
    size_t n = mk(b, 1, 0, 513, 0x01020304, 0xdeadbeef, pl, 4);
    assert_int_equal(cvx__rtp_parse(b, n, &h), 0);
    assert_int_equal(h.marker, 1);
    assert_int_equal(h.pt, 0);
    assert_int_equal(h.seq, 513);
    assert_int_equal(h.ts, 0x01020304);
    assert_int_equal(h.ssrc, 0xdeadbeef);
    assert_int_equal(h.len, 4);
    assert_memory_equal(h.payload, pl, 4);

    assert_int_equal(cvx__rtp_parse(b, 11, &h), CVX_EPROTO); /* short */
    b[0] = 0x40;                                             /* version 1 */
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
    b[0] = 0x82; /* two CSRCs: 8 bytes, only 4 present */
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
    b[0] = 0x81; /* one CSRC: the payload is empty */
    assert_int_equal(cvx__rtp_parse(b, n, &h), 0);
    assert_int_equal(h.len, 0);
    b[0] = 0x90; /* extension header claims 1 word: 4 + 4 bytes, only 4 present */
    b[12] = 0xbe, b[13] = 0xde, b[14] = 0, b[15] = 1;
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
    b[15] = 0; /* extension of zero words: fits, empty payload */
    assert_int_equal(cvx__rtp_parse(b, n, &h), 0);
    assert_int_equal(h.len, 0);
    n = mk(b, 0, 8, 1, 1, 1, pl, 4);
    b[0] = 0xa0; /* padding: last byte says 4: all of the payload */
    b[n - 1] = 4;
    assert_int_equal(cvx__rtp_parse(b, n, &h), 0);
    assert_int_equal(h.len, 0);
    b[n - 1] = 5; /* more padding than payload */
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
    b[n - 1] = 0; /* padding count zero */
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
    n = mk(b, 0, 72, 1, 1, 1, pl, 4); /* RTCP SR (200) seen as RTP pt 72 */
    assert_int_equal(cvx__rtp_parse(b, n, &h), CVX_EPROTO);
}

static void source_validation(void **state)
{
    (void)state;
    cvx__rtp_src_t s;
    cvx__rtp_src_init(&s, 42, 100);
    assert_int_equal(cvx__rtp_src_update(&s, 100), 0); /* probation */
    assert_int_equal(cvx__rtp_src_update(&s, 101), 1); /* two in sequence: valid */
    assert_int_equal(cvx__rtp_src_update(&s, 102), 1);
    assert_int_equal(cvx__rtp_src_update(&s, 105), 1); /* gap: 103, 104 lost */
    assert_int_equal(cvx__rtp_src_expected(&s), 5);    /* 101..105 */
    assert_int_equal(cvx__rtp_src_lost(&s), 2);
    assert_int_equal(cvx__rtp_src_update(&s, 40000), 0); /* a huge jump is a stray... */
    assert_int_equal(cvx__rtp_src_update(&s, 106), 1);
    assert_int_equal(cvx__rtp_src_update(&s, 50000), 0);
    assert_int_equal(cvx__rtp_src_update(&s, 50001), 1); /* ...unless the next follows it */
    assert_int_equal(cvx__rtp_src_expected(&s), 1);
    /* Out of order in probation starts probation again. */
    cvx__rtp_src_init(&s, 7, 10);
    assert_int_equal(cvx__rtp_src_update(&s, 10), 0);
    assert_int_equal(cvx__rtp_src_update(&s, 12), 0);
    assert_int_equal(cvx__rtp_src_update(&s, 13), 1);
    /* Wrap-around counts a cycle. */
    cvx__rtp_src_init(&s, 7, 65534);
    cvx__rtp_src_update(&s, 65534);
    assert_int_equal(cvx__rtp_src_update(&s, 65535), 1);
    assert_int_equal(cvx__rtp_src_update(&s, 0), 1);
    assert_int_equal(cvx__rtp_src_update(&s, 1), 1);
    assert_int_equal(s.cycles, 65536);
    assert_int_equal(cvx__rtp_src_expected(&s), 3);
    assert_int_equal(cvx__rtp_src_lost(&s), 0);
}

/* One row of the RFC 4733 Table 5 file: a packet (or a comment line, skipped). */
typedef struct te_row {
    int m, seq, event, duration, e;
    uint32_t ts;
} te_row_t;

static unsigned load_911(te_row_t *rows, unsigned max)
{
    char path[512];
    const char *data = getenv("CVX_TEST_DATA");
    assert_non_null(data);
    snprintf(path, sizeof(path), "%s/dtmf/rfc4733-table5-911-sequence.csv", data);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    unsigned n = 0;
    while (fgets(line, sizeof(line), f) != NULL && n < max) {
        /* time_ms,what,M,timestamp,seq,event,duration,E; "what" may be quoted with commas
         * in it, so read the last six fields from the end. */
        char *fields[8];
        int nf = 0;
        char *p = line + strlen(line);
        while (p > line && (p[-1] == '\n' || p[-1] == '\r'))
            *--p = 0;
        while (nf < 6 && p > line) {
            char *c = strrchr(line, ',');
            if (c == NULL)
                break;
            fields[nf++] = c + 1;
            *c = 0;
        }
        if (nf < 6 || fields[5][0] == 0 || strcmp(fields[5], "M") == 0)
            continue;
        rows[n].e = atoi(fields[0]);
        rows[n].duration = atoi(fields[1]);
        rows[n].event = atoi(fields[2]);
        rows[n].seq = atoi(fields[3]);
        rows[n].ts = (uint32_t)strtoul(fields[4], NULL, 10);
        rows[n].m = atoi(fields[5]);
        n++;
    }
    fclose(f);
    return n;
}

static void rfc4733_911_each_digit_once(void **state)
{
    (void)state;
    te_row_t rows[64];
    unsigned n = load_911(rows, 64);
    assert_int_equal(n, 14); /* the packets of Table 5 */
    cvx__te_rx_t rx;
    memset(&rx, 0, sizeof(rx));
    char got[16] = {0};
    unsigned ng = 0;
    for (unsigned i = 0; i < n; i++) {
        uint8_t pkt[16], pl[4];
        pl[0] = (uint8_t)rows[i].event;
        pl[1] = (uint8_t)((rows[i].e ? 0x80 : 0) | 10);
        pl[2] = (uint8_t)(rows[i].duration >> 8);
        pl[3] = (uint8_t)rows[i].duration;
        size_t len = mk(pkt, rows[i].m, 101, (uint16_t)rows[i].seq, rows[i].ts, 1, pl, 4);
        cvx__rtp_hdr_t h;
        assert_int_equal(cvx__rtp_parse(pkt, len, &h), 0);
        char d;
        unsigned dur;
        int r = cvx__te_rx_packet(&rx, &h, &d, &dur);
        assert_true(r == 0 || r == 1);
        if (r == 1)
            got[ng++] = d;
    }
    assert_string_equal(got, "911");
    /* Replaying every packet again (a duplicating network) reports nothing more. */
    for (unsigned i = 0; i < n; i++) {
        uint8_t pkt[16], pl[4] = {(uint8_t)rows[i].event, 0x80, 0, 160};
        size_t len = mk(pkt, rows[i].m, 101, (uint16_t)rows[i].seq, rows[i].ts, 1, pl, 4);
        cvx__rtp_hdr_t h;
        cvx__rtp_parse(pkt, len, &h);
        char d;
        unsigned dur;
        if (rows[i].ts != 11200) /* the last event is the current one: its packets repeat */
            assert_int_equal(cvx__te_rx_packet(&rx, &h, &d, &dur), 0);
    }
    /* A payload shorter than 4 bytes is malformed. */
    uint8_t pkt[16], pl[4] = {1, 0, 0, 0};
    size_t len = mk(pkt, 1, 101, 1, 99999, 1, pl, 2);
    cvx__rtp_hdr_t h;
    cvx__rtp_parse(pkt, len, &h);
    char d;
    unsigned dur;
    assert_int_equal(cvx__te_rx_packet(&rx, &h, &d, &dur), CVX_EPROTO);
}

static void jitter_buffer(void **state)
{
    (void)state;
    cvx__jb_t *jb = malloc(sizeof(*jb));
    uint8_t pl[160], out[160];
    cvx__jb_init(jb, 0xff, 2, 6);
    /* Filling: nothing until two packets are held. */
    memset(pl, 1, sizeof(pl));
    assert_int_equal(cvx__jb_put(jb, 10, pl, 160), 0);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 0);
    assert_int_equal(out[0], 0xff);
    /* Out of order arrival is put back in order. */
    memset(pl, 3, sizeof(pl));
    assert_int_equal(cvx__jb_put(jb, 12, pl, 160), 0);
    memset(pl, 2, sizeof(pl));
    assert_int_equal(cvx__jb_put(jb, 11, pl, 160), 0);
    assert_int_equal(cvx__jb_put(jb, 11, pl, 160), CVX_ERANGE); /* duplicate */
    assert_int_equal(jb->dup, 1);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 160);
    assert_int_equal(out[0], 1);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 160);
    assert_int_equal(out[0], 2);
    assert_int_equal(cvx__jb_put(jb, 10, pl, 160), CVX_ERANGE); /* too late */
    assert_int_equal(jb->late, 1);
    /* 13 is lost: 14 is there when 13's turn comes, so 13 is played as silence. */
    memset(pl, 4, sizeof(pl));
    assert_int_equal(cvx__jb_put(jb, 14, pl, 160), 0);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 160);
    assert_int_equal(out[0], 3);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 0);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(jb->lost, 1);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 160);
    assert_int_equal(out[0], 4);
    /* Empty: an underrun refills to a deeper target. */
    assert_int_equal(cvx__jb_pop(jb, out, 160), 0);
    assert_int_equal(jb->underruns, 1);
    assert_int_equal(jb->target, 3);
    /* Packets of 80 samples are played two per frame. */
    cvx__jb_init(jb, 0xd5, 2, 6);
    memset(pl, 7, 80);
    cvx__jb_put(jb, 100, pl, 80);
    memset(pl, 8, 80);
    cvx__jb_put(jb, 101, pl, 80);
    assert_int_equal(cvx__jb_pop(jb, out, 160), 160);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[80], 8);
    /* Jitter raises the target; a buffer that stays too deep for 50 frames drops one. */
    cvx__jb_init(jb, 0xff, 2, 8);
    cvx__jb_set_jitter(jb, 400.0, 160); /* 50 ms of jitter */
    assert_int_equal(jb->target, 8);
    cvx__jb_set_jitter(jb, 0.0, 160);
    assert_int_equal(jb->target, 2);
    for (uint16_t s = 0; s < 8; s++)
        cvx__jb_put(jb, s, pl, 160);
    for (unsigned i = 0; i < 49; i++) {
        cvx__jb_pop(jb, out, 160);
        cvx__jb_put(jb, (uint16_t)(8 + i), pl, 160);
    }
    assert_int_equal(jb->dropped, 0);
    cvx__jb_pop(jb, out, 160);
    assert_int_equal(jb->dropped, 1);
    free(jb);
}

static void g711_round_trip(void **state)
{
    (void)state;
    /* Every code word decodes and encodes back to itself (except mu-law's negative zero,
     * 0x7f, which encodes as positive zero, 0xff). */
    for (int c = 0; c < 256; c++) {
        int16_t s = ulaw_to_linear((uint8_t)c);
        uint8_t back = linear_to_ulaw(s);
        if (c == 0x7f)
            assert_int_equal(back, 0xff);
        else
            assert_int_equal(back, c);
        assert_int_equal(linear_to_alaw(alaw_to_linear((uint8_t)c)), c);
    }
    /* Linear samples survive within the quantisation step (under 1/16 of the value). */
    for (int v = -32000; v <= 32000; v += 37) {
        int du = ulaw_to_linear(linear_to_ulaw((int16_t)v)) - v;
        int da = alaw_to_linear(linear_to_alaw((int16_t)v)) - v;
        int lim = abs(v) / 16 + 16;
        assert_true(abs(du) <= lim);
        assert_true(abs(da) <= lim);
    }
}

static void rtcp_build_parse(void **state)
{
    (void)state;
    cvx__rtp_src_t s;
    cvx__rtp_src_init(&s, 0xabcdef01, 1);
    cvx__rtp_src_update(&s, 1);
    cvx__rtp_src_update(&s, 2);
    cvx__rtp_src_update(&s, 5); /* 3 and 4 lost */
    s.jitter = 37.0;
    uint8_t buf[256];
    size_t n = cvx__rtcp_build(buf, sizeof(buf), 0x11223344, "call-1", 0x0123456789abcdefull, 1000,
                               50, 8000, &s, 0);
    assert_true(n > 0 && n % 4 == 0);
    cvx__rtcp_info_t info;
    assert_int_equal(cvx__rtcp_parse(buf, n, &info), 0);
    assert_int_equal(info.is_sr, 1);
    assert_int_equal(info.ssrc, 0x11223344);
    assert_int_equal(info.ntp_mid, 0x456789ab);
    assert_int_equal(info.packets, 50);
    assert_int_equal(info.octets, 8000);
    assert_int_equal(info.has_block, 1);
    assert_int_equal(info.cum_lost, 2);
    assert_int_equal(info.fraction_lost, (2 << 8) / 4);
    assert_int_equal(info.jitter, 37);
    /* Nothing sent: a receiver report. */
    n = cvx__rtcp_build(buf, sizeof(buf), 1, "x", 0, 0, 0, 0, NULL, 0);
    assert_int_equal(cvx__rtcp_parse(buf, n, &info), 0);
    assert_int_equal(info.is_sr, 0);
    assert_int_equal(info.has_block, 0);
    /* Truncated or lying about its length. */
    assert_int_equal(cvx__rtcp_parse(buf, 6, &info), CVX_EPROTO);
    buf[3] = 50;
    assert_int_equal(cvx__rtcp_parse(buf, n, &info), CVX_EPROTO);
    assert_int_equal(cvx__rtcp_build(buf, 10, 1, "x", 0, 0, 0, 0, NULL, 0), 0);
}

/* --- live sessions --------------------------------------------------------------------- */

typedef struct peer {
    int fd;
    struct sockaddr_in addr;
    uint16_t seq;
    uint32_t ts, ssrc;
    unsigned received;      /* packets from the session */
    unsigned audio, events; /* by payload type */
    int first_pt;
    uint16_t last_seq;
    uint32_t last_ts;
    int seq_ok, ts_ok;
    char te_digits[32]; /* RFC 4733 events received, once per event (by timestamp) */
    uint32_t te_last_ts;
    int te_have;
    unsigned te_ends;
    struct sockaddr_in from;
    unsigned rtcp; /* RTCP compound packets from the session */
    cvx__rtcp_info_t last_rtcp;
} peer_t;

static void peer_open(peer_t *p)
{
    memset(p, 0, sizeof(*p));
    p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(p->fd >= 0);
    p->addr.sin_family = AF_INET;
    p->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->fd, (struct sockaddr *)&p->addr, sizeof(p->addr)), 0);
    socklen_t l = sizeof(p->addr);
    getsockname(p->fd, (struct sockaddr *)&p->addr, &l);
    p->seq = 5000;
    p->ts = 160000;
    p->ssrc = 0x5eed;
    p->seq_ok = p->ts_ok = 1;
    p->first_pt = -1;
}

static void peer_send_raw(peer_t *p, const uint8_t *buf, size_t n, uint16_t port)
{
    struct sockaddr_in to = p->addr;
    to.sin_port = htons(port);
    assert_int_equal(sendto(p->fd, buf, n, 0, (struct sockaddr *)&to, sizeof(to)), (ssize_t)n);
}

/* Sends one 20 ms PCMU packet of a 1 kHz tone (or silence). */
static void peer_send_audio(peer_t *p, uint16_t port, int tone)
{
    uint8_t pkt[12 + 160];
    cvx__rtp_put_hdr(pkt, 0, 0, p->seq++, p->ts, p->ssrc);
    for (int i = 0; i < 160; i++) {
        int16_t s = tone ? (int16_t)(8000 * ((i % 8) < 4 ? 1 : -1)) : 0;
        pkt[12 + i] = linear_to_ulaw(s);
    }
    p->ts += 160;
    peer_send_raw(p, pkt, sizeof(pkt), port);
}

/* Reads what the session sent; returns the number of packets read. */
static unsigned peer_read(peer_t *p)
{
    uint8_t b[1500];
    unsigned n = 0;
    for (;;) {
        socklen_t l = sizeof(p->from);
        ssize_t r = recvfrom(p->fd, b, sizeof(b), 0, (struct sockaddr *)&p->from, &l);
        if (r < 0)
            break;
        cvx__rtp_hdr_t h;
        if (r >= 2 && (b[1] == 200 || b[1] == 201)) {
            /* RTCP, sent here once the session latched our RTCP source (this socket). */
            if (cvx__rtcp_parse(b, (size_t)r, &p->last_rtcp) == 0)
                p->rtcp++;
            continue;
        }
        if (cvx__rtp_parse(b, (size_t)r, &h) != 0)
            continue;
        if (p->received > 0) {
            if (h.seq != (uint16_t)(p->last_seq + 1))
                p->seq_ok = 0;
            if (h.pt == 0 && h.ts != p->last_ts + 160 && p->events == 0)
                p->ts_ok = 0;
        } else {
            p->first_pt = h.pt;
        }
        p->last_seq = h.seq;
        if (h.pt == 0) {
            p->audio++;
            p->last_ts = h.ts;
            if (h.len != 160)
                p->ts_ok = 0;
        } else if (h.pt == 101 && h.len == 4) {
            p->events++;
            if (!p->te_have || h.ts != p->te_last_ts) {
                size_t k = strlen(p->te_digits);
                p->te_digits[k] = cvx__te_digit(h.payload[0]);
                p->te_last_ts = h.ts;
                p->te_have = 1;
            }
            if (h.payload[1] & 0x80)
                p->te_ends++;
        }
        p->received++;
        n++;
    }
    return n;
}

typedef struct live {
    mt_env_t env;
    mt_events_t ev;
    cvx_chan_t *chan;
    cvx_rtp_t *rtp;
    peer_t peer;
    unsigned want;
    int echo; /* the peer answers every packet with one of its own */
    int tone;
} live_t;

static int peer_got(void *arg)
{
    live_t *l = arg;
    unsigned n = peer_read(&l->peer);
    for (unsigned i = 0; i < n && l->echo; i++)
        peer_send_audio(&l->peer, cvx_rtp_local_port(l->rtp), l->tone);
    return l->peer.received >= l->want;
}

static void live_open(live_t *l, int te)
{
    memset(l, 0, sizeof(*l));
    mt_setup(&l->env, NULL);
    l->chan = mt_chan(&l->env, &l->ev);
    peer_open(&l->peer);
    cvx_rtp_params_t p = {"127.0.0.1", PORT_MIN, PORT_MAX, 0, 20};
    assert_int_equal(cvx_rtp_create(&l->env.loop, l->env.inst, l->chan, &p, &l->rtp), 0);
    assert_true(cvx_rtp_local_port(l->rtp) >= PORT_MIN);
    assert_true(cvx_rtp_local_port(l->rtp) % 2 == 0);
    assert_string_equal(cvx_rtp_local_addr(l->rtp), "127.0.0.1");
    assert_ptr_equal(cvx_rtp_of_chan(l->chan), l->rtp);
    cvx_rtp_remote_t r;
    memset(&r, 0, sizeof(r));
    memcpy(&r.addr, &l->peer.addr, sizeof(l->peer.addr));
    r.codec = CVX_CODEC_PCMU;
    r.payload_type = 0;
    r.te_payload_type = te ? 101 : -1;
    assert_int_equal(cvx_rtp_set_remote(l->rtp, &r), 0);
}

static void live_close(live_t *l)
{
    cvx_rtp_destroy(l->rtp);
    assert_null(cvx_rtp_of_chan(l->chan));
    cvx_chan_unref(l->chan);
    close(l->peer.fd);
    mt_teardown(&l->env);
}

static int frames_loud(void *arg)
{
    live_t *l = arg;
    peer_got(l);
    return l->ev.nonsilent_frames >= 10;
}

static void live_send_receive(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    /* Nothing is sent before start. */
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    /* 50 packets: one a period, in sequence, PCMU 160 bytes, timestamps 160 apart. */
    l->want = 50;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    assert_int_equal(l->peer.first_pt, 0);
    assert_true(l->peer.seq_ok);
    assert_true(l->peer.ts_ok);
    assert_int_equal(l->peer.events, 0);
    /* Audio from the peer, paced by the session's own packets, comes up as 20 ms frames. */
    l->echo = 1;
    l->tone = 1;
    assert_true(mt_run_until(&l->env, frames_loud, l, 5000));
    cvx_rtp_stats_t st;
    cvx_rtp_get_stats(l->rtp, &st);
    assert_true(st.packets_in >= 10);
    assert_int_equal(st.malformed, 0);
    assert_int_equal(st.foreign, 0);
    assert_true(st.packets_out >= 60);
    assert_int_equal(l->ev.samples, (uint64_t)l->ev.frames * 160);
    live_close(l);
    free(l);
}

/* Sends a raw RTP packet from the peer's socket with its own SSRC and sequence. */
static void peer_send_te(peer_t *p, uint16_t port, int m, uint16_t seq, uint32_t ts, int event,
                         int end, unsigned dur)
{
    uint8_t pkt[16], pl[4] = {(uint8_t)event, (uint8_t)((end ? 0x80 : 0) | 10), (uint8_t)(dur >> 8),
                              (uint8_t)dur};
    mk(pkt, m, 101, seq, ts, p->ssrc, pl, 4);
    peer_send_raw(p, pkt, sizeof(pkt), port);
}

static int latched(void *arg)
{
    live_t *l = arg;
    peer_got(l);
    cvx_rtp_stats_t st;
    cvx_rtp_get_stats(l->rtp, &st);
    return st.packets_in >= 3;
}

static int digits_at_least(void *arg)
{
    live_t *l = arg;
    peer_got(l);
    return l->ev.ndigits >= l->want;
}

static void live_rfc4733_911_over_the_wire(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    l->echo = 1;
    assert_true(mt_run_until(&l->env, latched, l, 5000));
    l->echo = 0;
    /* The Table 5 packets, shifted onto the peer's sequence and timestamps, all at once
     * (events do not wait in the jitter buffer). */
    te_row_t rows[64];
    unsigned n = load_911(rows, 64);
    uint16_t seq0 = l->peer.seq;
    uint32_t ts0 = l->peer.ts;
    uint16_t port = cvx_rtp_local_port(l->rtp);
    for (unsigned i = 0; i < n; i++)
        peer_send_te(&l->peer, port, rows[i].m, (uint16_t)(seq0 + rows[i].seq - 1),
                     ts0 + rows[i].ts, rows[i].event, rows[i].e, (unsigned)rows[i].duration);
    l->want = 3;
    assert_true(mt_run_until(&l->env, digits_at_least, l, 5000));
    mt_run_for(&l->env, 100); /* nothing more comes */
    assert_int_equal(l->ev.ndigits, 3);
    assert_string_equal(l->ev.digits, "911");
    assert_int_equal(l->ev.last_source, CVX_DTMF_RFC4733);
    live_close(l);
    free(l);
}

static void live_foreign_and_malformed(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    l->echo = 1;
    assert_true(mt_run_until(&l->env, latched, l, 5000));
    uint16_t port = cvx_rtp_local_port(l->rtp);
    /* Another socket (another port: another source) sends well-formed RTP and digits: all
     * ignored and counted; the session keeps sending to the latched peer. */
    peer_t *intruder = malloc(sizeof(*intruder));
    peer_open(intruder);
    intruder->ssrc = l->peer.ssrc; /* even with the latched SSRC */
    for (int i = 0; i < 5; i++)
        peer_send_audio(intruder, port, 1);
    peer_send_te(intruder, port, 1, 1, 1, 5, 0, 160);
    peer_send_te(intruder, port, 0, 2, 1, 5, 1, 320);
    /* Garbage: short, wrong version, bad CSRC count, unknown payload type, bad padding. */
    uint8_t junk[200];
    memset(junk, 0x41, sizeof(junk));
    peer_send_raw(&l->peer, junk, 5, port);
    peer_send_raw(&l->peer, junk, sizeof(junk), port); /* version 1 */
    uint8_t pl[4] = {0};
    size_t k = mk(junk, 0, 0, 1, 1, l->peer.ssrc, pl, 4);
    junk[0] = 0x8f; /* 15 CSRCs in a 16-byte packet */
    peer_send_raw(&l->peer, junk, k, port);
    k = mk(junk, 0, 96, 1, 1, l->peer.ssrc, pl, 4); /* not negotiated */
    peer_send_raw(&l->peer, junk, k, port);
    k = mk(junk, 0, 0, 1, 1, l->peer.ssrc, pl, 4);
    junk[0] = 0xa0;
    junk[k - 1] = 200; /* padding longer than the packet */
    peer_send_raw(&l->peer, junk, k, port);
    /* The peer goes on talking; the intruder's packets never became frames or digits. */
    unsigned before = l->peer.received;
    l->want = before + 10;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    cvx_rtp_stats_t st;
    cvx_rtp_get_stats(l->rtp, &st);
    assert_int_equal(st.foreign, 7);
    assert_int_equal(st.malformed, 5);
    assert_int_equal(l->ev.ndigits, 0);
    /* The session still sends to the latched peer, not to the intruder. */
    assert_int_equal(ntohs(l->peer.from.sin_port), port);
    uint8_t b[1500];
    assert_true(recv(intruder->fd, b, sizeof(b), MSG_DONTWAIT) < 0);
    close(intruder->fd);
    free(intruder);
    live_close(l);
    free(l);
}

static void live_dtmf_sent_rfc4733(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    assert_int_equal(cvx_rtp_send_dtmf(l->rtp, '5', 100), 0);
    assert_int_equal(cvx_rtp_send_dtmf(l->rtp, '#', 60), 0);
    assert_int_equal(cvx_rtp_send_dtmf(l->rtp, 'x', 60), CVX_EINVAL);
    l->want = 30;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    assert_string_equal(l->peer.te_digits, "5#");
    /* 100 ms: 5 packets, the last an end packet sent three times; 60 ms: 3 + 2 more ends. */
    assert_int_equal(l->peer.events, 5 + 2 + 3 + 2);
    assert_int_equal(l->peer.te_ends, 6);
    assert_true(l->peer.seq_ok);
    live_close(l);
    free(l);
}

/* In-band: the peer sends audio with DTMF tones made by spandsp; the session detects them. */
typedef struct inband {
    live_t l;
    dtmf_tx_state_t *gen;
} inband_t;

static int inband_step(void *arg)
{
    inband_t *ib = arg;
    unsigned n = peer_read(&ib->l.peer);
    for (unsigned i = 0; i < n; i++) {
        int16_t amp[160];
        int got = dtmf_tx(ib->gen, amp, 160);
        if (got < 160)
            memset(amp + (got > 0 ? got : 0), 0, (size_t)(160 - (got > 0 ? got : 0)) * 2);
        uint8_t pkt[12 + 160];
        cvx__rtp_put_hdr(pkt, 0, 0, ib->l.peer.seq++, ib->l.peer.ts, ib->l.peer.ssrc);
        ib->l.peer.ts += 160;
        for (int j = 0; j < 160; j++)
            pkt[12 + j] = linear_to_ulaw(amp[j]);
        peer_send_raw(&ib->l.peer, pkt, sizeof(pkt), cvx_rtp_local_port(ib->l.rtp));
    }
    return ib->l.ev.ndigits >= 4;
}

static void live_inband_dtmf_detected(void **state)
{
    (void)state;
    inband_t *ib = malloc(sizeof(*ib));
    live_open(&ib->l, 0); /* telephone-event not negotiated */
    ib->gen = dtmf_tx_init(NULL);
    dtmf_tx_set_timing(ib->gen, 80, 80);
    dtmf_tx_put(ib->gen, "1A#9", -1);
    assert_int_equal(cvx_rtp_start(ib->l.rtp), 0);
    assert_true(mt_run_until(&ib->l.env, inband_step, ib, 5000));
    assert_string_equal(ib->l.ev.digits, "1A#9");
    assert_int_equal(ib->l.ev.last_source, CVX_DTMF_INBAND);
    dtmf_tx_free(ib->gen);
    live_close(&ib->l);
    free(ib);
}

/* In-band sending: the peer decodes what the session sends and runs spandsp's detector. */
typedef struct inband_rx {
    live_t l;
    dtmf_rx_state_t *det;
    char got[16];
} inband_rx_t;

static void peer_digits(void *data, const char *digits, int len)
{
    inband_rx_t *ib = data;
    strncat(ib->got, digits, (size_t)len);
}

static int inband_rx_step(void *arg)
{
    inband_rx_t *ib = arg;
    uint8_t b[1500];
    for (;;) {
        ssize_t r = recv(ib->l.peer.fd, b, sizeof(b), MSG_DONTWAIT);
        if (r < 0)
            break;
        cvx__rtp_hdr_t h;
        if (cvx__rtp_parse(b, (size_t)r, &h) != 0 || h.pt != 0)
            continue;
        int16_t amp[480];
        for (size_t i = 0; i < h.len; i++)
            amp[i] = ulaw_to_linear(h.payload[i]);
        dtmf_rx(ib->det, amp, (int)h.len);
        ib->l.peer.received++;
    }
    return strlen(ib->got) >= 3 && ib->l.peer.received > 60;
}

static void live_inband_dtmf_sent(void **state)
{
    (void)state;
    inband_rx_t *ib = calloc(1, sizeof(*ib));
    live_open(&ib->l, 0);
    ib->det = dtmf_rx_init(NULL, peer_digits, ib);
    assert_int_equal(cvx_rtp_start(ib->l.rtp), 0);
    assert_int_equal(cvx_rtp_send_dtmf(ib->l.rtp, '4', 100), 0);
    assert_int_equal(cvx_rtp_send_dtmf(ib->l.rtp, '*', 100), 0);
    assert_int_equal(cvx_rtp_send_dtmf(ib->l.rtp, 'D', 100), 0);
    assert_true(mt_run_until(&ib->l.env, inband_rx_step, ib, 5000));
    assert_string_equal(ib->got, "4*D");
    dtmf_rx_free(ib->det);
    live_close(&ib->l);
    free(ib);
}

/* Media timeout: a call (null legs) whose RTP hears nothing is hung up with the media timeout
 * cause, but not while it is on hold. */
static int out_hung_up(void *arg)
{
    return ((mt_call_t *)arg)->out_ev.hangup > 0;
}

static void live_media_timeout_not_on_hold(void **state)
{
    (void)state;
    mt_env_t env;
    mt_call_t call;
    mt_setup(&env, NULL);
    mt_call(&env, &call);
    peer_t peer;
    peer_open(&peer);
    cvx_rtp_params_t p = {"127.0.0.1", PORT_MIN, PORT_MAX, 200, 20};
    cvx_rtp_t *rtp;
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, call.out, &p, &rtp), 0);
    cvx_rtp_remote_t r;
    memset(&r, 0, sizeof(r));
    memcpy(&r.addr, &peer.addr, sizeof(peer.addr));
    r.codec = CVX_CODEC_PCMA;
    r.payload_type = 8;
    r.te_payload_type = 101;
    assert_int_equal(cvx_rtp_set_remote(rtp, &r), 0);
    cvx_rtp_hold(rtp, 1);
    assert_int_equal(cvx_rtp_start(rtp), 0);
    mt_run_for(&env, 500); /* on hold: no timeout, nothing sent */
    assert_int_equal(call.out_ev.hangup, 0);
    uint8_t b[1500];
    assert_true(recv(peer.fd, b, sizeof(b), MSG_DONTWAIT) < 0);
    uint64_t t0 = uv_hrtime();
    cvx_rtp_hold(rtp, 0);
    assert_true(mt_run_until(&env, out_hung_up, &call, 5000));
    assert_true(uv_hrtime() - t0 >= 200000000ull);
    assert_int_equal(call.out_ev.cause, CVX_CAUSE_MEDIA_TIMEOUT);
    /* PCMA was sent while not on hold. */
    ssize_t got = recv(peer.fd, b, sizeof(b), MSG_DONTWAIT);
    assert_int_equal(got, 172);
    assert_int_equal(b[1] & 0x7f, 8);
    cvx_rtp_destroy(rtp);
    close(peer.fd);
    mt_call_end(&env, &call);
    mt_teardown(&env);
}

/* An even port p such that p..p+3 are free on 127.0.0.1 (UDP), from the ephemeral range. */
static uint16_t free_quad(void)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        int fds[4] = {-1, -1, -1, -1};
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[0] = socket(AF_INET, SOCK_DGRAM, 0);
        bind(fds[0], (struct sockaddr *)&a, sizeof(a));
        socklen_t l = sizeof(a);
        getsockname(fds[0], (struct sockaddr *)&a, &l);
        uint16_t base = (uint16_t)(ntohs(a.sin_port) & ~1u);
        close(fds[0]);
        int ok = base > 1024 && base < 65530;
        for (int i = 0; i < 4 && ok; i++) {
            fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
            a.sin_port = htons((uint16_t)(base + i));
            ok = bind(fds[i], (struct sockaddr *)&a, sizeof(a)) == 0;
        }
        for (int i = 0; i < 4; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        if (ok)
            return base;
    }
    fail_msg("no four free consecutive ports");
    return 0;
}

static void ports_exhausted_and_reused(void **state)
{
    (void)state;
    mt_env_t env;
    mt_events_t ev;
    memset(&ev, 0, sizeof(ev));
    mt_setup(&env, NULL);
    cvx_chan_t *c = mt_chan(&env, &ev);
    /* A range of two pairs holds two sessions; the third is refused.  The range is four
     * ports the kernel shows free right now. */
    uint16_t base = free_quad();
    cvx_rtp_params_t p = {"127.0.0.1", base, (uint16_t)(base + 3), 0, 20};
    cvx_rtp_t *a, *b, *x;
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &p, &a), 0);
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &p, &b), 0);
    assert_true(cvx_rtp_local_port(a) != cvx_rtp_local_port(b));
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &p, &x), CVX_EBUSY);
    uint16_t freed = cvx_rtp_local_port(a);
    cvx_rtp_destroy(a);
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &p, &x), 0);
    assert_int_equal(cvx_rtp_local_port(x), freed);
    assert_int_equal(cvx_rtp_count(), 2);
    /* Bad parameters. */
    cvx_rtp_params_t bad = {"not an address", base, (uint16_t)(base + 3), 0, 20};
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &bad, &a), CVX_EINVAL);
    cvx_rtp_params_t odd = {"127.0.0.1", base, base, 0, 20};
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &odd, &a), CVX_EINVAL);
    assert_int_equal(cvx_rtp_start(b), CVX_ESTATE); /* no remote yet */
    cvx_rtp_destroy(b);
    cvx_rtp_destroy(x);
    cvx_chan_unref(c);
    mt_teardown(&env);
}

static int rtcp_back(void *arg)
{
    live_t *l = arg;
    peer_got(l);
    return l->peer.rtcp >= 1;
}

static void live_rtcp_sender_report_round_trip(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    l->echo = 1;
    assert_true(mt_run_until(&l->env, latched, l, 5000));
    /* The peer's SR (from its RTP socket) to the session's RTCP port: the session answers to
     * where RTCP came from, with an SR whose report block is about the peer and echoes the
     * peer's NTP time as "last SR" (RFC 3550 6.4.1). */
    uint8_t sr[256];
    uint64_t ntp = 0x1122334455667788ull;
    size_t n = cvx__rtcp_build(sr, sizeof(sr), l->peer.ssrc, "peer", ntp, 1234, 10, 1600, NULL, 0);
    peer_send_raw(&l->peer, sr, n, (uint16_t)(cvx_rtp_local_port(l->rtp) + 1));
    /* The first report goes out 5 s after start, the next 2.5 to 7.5 s later. */
    assert_true(mt_run_until(&l->env, rtcp_back, l, 15000));
    const cvx__rtcp_info_t *r = &l->peer.last_rtcp;
    assert_int_equal(r->is_sr, 1);
    assert_true(r->packets > 0);
    assert_int_equal(r->has_block, 1);
    assert_int_equal(r->block_ssrc, l->peer.ssrc);
    assert_int_equal(r->cum_lost, 0);
    assert_int_equal(r->lsr, 0x33445566u); /* the middle of 0x1122334455667788 */
    live_close(l);
    free(l);
}

static void live_new_remote_relatches(void **state)
{
    (void)state;
    live_t *l = malloc(sizeof(*l));
    live_open(l, 1);
    assert_int_equal(cvx_rtp_start(l->rtp), 0);
    l->echo = 1;
    assert_true(mt_run_until(&l->env, latched, l, 5000));
    l->echo = 0;
    /* A re-INVITE moves the media to another address: the session follows the signalling. */
    peer_t old = l->peer;
    peer_open(&l->peer);
    l->peer.ssrc = 0xb0b;
    cvx_rtp_remote_t r;
    memset(&r, 0, sizeof(r));
    memcpy(&r.addr, &l->peer.addr, sizeof(l->peer.addr));
    r.codec = CVX_CODEC_PCMU;
    r.payload_type = 0;
    r.te_payload_type = 101;
    assert_int_equal(cvx_rtp_set_remote(l->rtp, &r), 0);
    cvx_rtp_stats_t st0;
    cvx_rtp_get_stats(l->rtp, &st0);
    l->echo = 1;
    l->want = l->peer.received + 20;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    /* The old address is now foreign. */
    for (int i = 0; i < 3; i++)
        peer_send_audio(&old, cvx_rtp_local_port(l->rtp), 1);
    l->want = l->peer.received + 5;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    cvx_rtp_stats_t st;
    cvx_rtp_get_stats(l->rtp, &st);
    assert_int_equal(st.foreign - st0.foreign, 3);
    assert_true(st.packets_in > st0.packets_in + 10);
    uint8_t b[1500];
    while (recv(old.fd, b, sizeof(b), MSG_DONTWAIT) > 0) {
    }
    l->want = l->peer.received + 3;
    assert_true(mt_run_until(&l->env, peer_got, l, 5000));
    assert_true(recv(old.fd, b, sizeof(b), MSG_DONTWAIT) < 0); /* nothing to the old one */
    close(old.fd);
    live_close(l);
    free(l);
}

/* IPv6: a session bound to ::1 exchanges media with a peer on ::1 and latches it. */
static void live_ipv6(void **state)
{
    (void)state;
    mt_env_t env;
    mt_events_t ev;
    memset(&ev, 0, sizeof(ev));
    mt_setup(&env, NULL);
    cvx_chan_t *c = mt_chan(&env, &ev);
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd); /* no IPv6 on this host */
        cvx_chan_unref(c);
        mt_teardown(&env);
        skip();
    }
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    cvx_rtp_params_t p = {"::1", PORT_MIN, PORT_MAX, 0, 20};
    cvx_rtp_t *rtp;
    assert_int_equal(cvx_rtp_create(&env.loop, env.inst, c, &p, &rtp), 0);
    assert_string_equal(cvx_rtp_local_addr(rtp), "::1");
    cvx_rtp_remote_t r;
    memset(&r, 0, sizeof(r));
    memcpy(&r.addr, &a, sizeof(a));
    r.codec = CVX_CODEC_PCMA;
    r.payload_type = 8;
    r.te_payload_type = 101;
    assert_int_equal(cvx_rtp_set_remote(rtp, &r), 0);
    assert_int_equal(cvx_rtp_start(rtp), 0);
    /* Answer each packet from the session with one of ours until three arrived. */
    struct sockaddr_in6 to = a;
    to.sin6_port = htons(cvx_rtp_local_port(rtp));
    uint16_t seq = 1;
    unsigned got = 0;
    uint64_t deadline = uv_hrtime() + 5000000000ull;
    cvx_rtp_stats_t st = {0};
    while (st.packets_in < 3 && uv_hrtime() < deadline) {
        uv_run(&env.loop, UV_RUN_ONCE);
        uint8_t b[1500];
        while (recv(fd, b, sizeof(b), MSG_DONTWAIT) > 0) {
            got++;
            uint8_t pkt[12 + 160];
            memset(pkt + 12, 0xd5, 160);
            cvx__rtp_put_hdr(pkt, 0, 8, seq, 160u * seq, 0x66);
            seq++;
            sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to));
        }
        cvx_rtp_get_stats(rtp, &st);
    }
    assert_true(got >= 3);
    assert_true(st.packets_in >= 3);
    assert_int_equal(st.foreign, 0);
    assert_int_equal(st.malformed, 0);
    char remote[80];
    cvx__rtp_remote_str(rtp, remote, sizeof(remote));
    char want[80];
    snprintf(want, sizeof(want), "[::1]:%u latched", ntohs(a.sin6_port));
    assert_string_equal(remote, want);
    cvx_rtp_destroy(rtp);
    close(fd);
    cvx_chan_unref(c);
    mt_teardown(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_valid_and_malformed),
        cmocka_unit_test(source_validation),
        cmocka_unit_test(rfc4733_911_each_digit_once),
        cmocka_unit_test(jitter_buffer),
        cmocka_unit_test(g711_round_trip),
        cmocka_unit_test(rtcp_build_parse),
        cmocka_unit_test(live_send_receive),
        cmocka_unit_test(live_rfc4733_911_over_the_wire),
        cmocka_unit_test(live_foreign_and_malformed),
        cmocka_unit_test(live_dtmf_sent_rfc4733),
        cmocka_unit_test(live_inband_dtmf_detected),
        cmocka_unit_test(live_inband_dtmf_sent),
        cmocka_unit_test(live_media_timeout_not_on_hold),
        cmocka_unit_test(ports_exhausted_and_reused),
        cmocka_unit_test(live_rtcp_sender_report_round_trip),
        cmocka_unit_test(live_new_remote_relatches),
        cmocka_unit_test(live_ipv6),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The pieces of the RTP engine that are pure logic, kept apart from sockets so that unit tests
 * can feed them packets: header parsing (RFC 3550 section 5.1), source validation and
 * statistics (RFC 3550 appendix A.1, A.3, A.8), RFC 4733 event reception, the jitter buffer
 * and RTCP packet building and parsing.  Core files and tests only; not for modules.
 *
 * Thread: none of these objects locks; each belongs to one session on the loop thread.
 */
#ifndef CVX_MEDIA_RTP_IMPL_H
#define CVX_MEDIA_RTP_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* --- RTP header ---------------------------------------------------------------------- */

typedef struct cvx__rtp_hdr {
    int marker;
    int pt;
    uint16_t seq;
    uint32_t ts;
    uint32_t ssrc;
    const uint8_t *payload; /* points into the parsed buffer */
    size_t len;             /* payload bytes, padding removed */
} cvx__rtp_hdr_t;

/* Parses one datagram.  Returns 0, or CVX_EPROTO for anything that is not a well-formed RTP
 * version 2 packet (short, wrong version, CSRC list or extension past the end, padding
 * count of zero or larger than the payload). */
int cvx__rtp_parse(const uint8_t *buf, size_t len, cvx__rtp_hdr_t *h);
/* Writes a 12-byte header (no CSRC, no extension) and returns 12. */
size_t cvx__rtp_put_hdr(uint8_t *buf, int marker, int pt, uint16_t seq, uint32_t ts, uint32_t ssrc);

/* --- RFC 3550 A.1 source validation and A.3 loss, A.8 jitter --------------------------- */

#define CVX__RTP_MIN_SEQUENTIAL 2
#define CVX__RTP_MAX_DROPOUT    3000
#define CVX__RTP_MAX_MISORDER   100
#define CVX__RTP_SEQ_MOD        (1u << 16)

typedef struct cvx__rtp_src {
    uint32_t ssrc;
    uint16_t max_seq;
    uint32_t cycles;
    uint32_t base_seq;
    uint32_t bad_seq;
    uint32_t probation;
    uint32_t received;
    uint32_t expected_prior;
    uint32_t received_prior;
    int have_transit;
    int32_t transit;
    double jitter;            /* in timestamp units */
    uint32_t last_sr_ntp_mid; /* middle 32 bits of the last SR's NTP time, 0: none */
    uint64_t last_sr_recv_ns;
} cvx__rtp_src_t;

/* Starts a source on its first packet (in probation). */
void cvx__rtp_src_init(cvx__rtp_src_t *s, uint32_t ssrc, uint16_t seq);
/* Feeds one packet's sequence number.  Returns 1 when the packet is valid and may be used, 0
 * while the source is in probation or the packet is a stray (a large jump, a duplicate of
 * something long gone). */
int cvx__rtp_src_update(cvx__rtp_src_t *s, uint16_t seq);
/* Updates the interarrival jitter with a packet's timestamp and its arrival time expressed in
 * the same clock (samples). */
void cvx__rtp_src_jitter(cvx__rtp_src_t *s, uint32_t rtp_ts, uint32_t arrival);
/* Packets expected and lost since the start (lost may be negative with duplicates). */
uint32_t cvx__rtp_src_expected(const cvx__rtp_src_t *s);
int64_t cvx__rtp_src_lost(const cvx__rtp_src_t *s);

/* --- RFC 4733 telephone-event reception ------------------------------------------------ */

typedef struct cvx__te_rx {
    int have_last;
    uint32_t last_ts; /* timestamp of the last event reported */
    int last_event;
    int last_ended;
    uint32_t recent[4]; /* timestamps of the events reported most recently */
    unsigned nrecent;
} cvx__te_rx_t;

/* Feeds one telephone-event packet (already validated as RTP from the latched source).
 * Returns 1 and sets *digit and *duration (samples) when it starts a digit not yet reported,
 * 0 when it belongs to a digit already reported (continuation, end, retransmitted end), and
 * CVX_EPROTO when the payload is malformed.  Events other than the 16 DTMF keys are ignored
 * (0). */
int cvx__te_rx_packet(cvx__te_rx_t *r, const cvx__rtp_hdr_t *h, char *digit, unsigned *duration);
/* "0123456789*#ABCD"[event] or 0; and back (-1 when not a DTMF key). */
char cvx__te_digit(int event);
int cvx__te_event(char digit);

/* --- the jitter buffer ----------------------------------------------------------------- */

/* Holds received G.711 payloads (one byte per sample) by sequence number and plays them out
 * 160 samples (or any frame size) at a time, from the media clock.  The target depth adapts
 * to the measured jitter between min and max packets: it grows after an underrun and shrinks
 * (dropping one packet) when the buffer has stayed deeper than it needs for a second. */
#define CVX__JB_SLOTS   32
#define CVX__JB_MAX_PKT 480 /* samples per packet: 60 ms */

typedef struct cvx__jb_slot {
    int used;
    uint16_t seq;
    uint16_t n;
    uint8_t data[CVX__JB_MAX_PKT];
} cvx__jb_slot_t;

typedef struct cvx__jb {
    cvx__jb_slot_t slot[CVX__JB_SLOTS];
    unsigned count;                          /* packets held */
    int playing;                             /* 0 while (re)filling to the target depth */
    uint16_t next_seq;                       /* the packet to play next */
    unsigned offset;                         /* samples of next_seq already played */
    unsigned target, min_target, max_target; /* in packets */
    unsigned deep_ticks; /* consecutive pops with more than target + 1 packets */
    uint16_t last_n;     /* size of the last packet played, for loss fill */
    uint8_t silence;     /* the codec's silence byte */
    /* counters */
    uint64_t late, dup, lost, dropped, underruns, resets;
} cvx__jb_t;

void cvx__jb_init(cvx__jb_t *jb, uint8_t silence, unsigned min_target, unsigned max_target);
/* Stores one packet's payload (n bytes).  Returns 0, or CVX_ERANGE when it was too late or a
 * duplicate (counted) or too big. */
int cvx__jb_put(cvx__jb_t *jb, uint16_t seq, const uint8_t *data, size_t n);
/* Fills out with n samples.  Returns the number of samples that came from received packets
 * (the rest is silence: filling, underrun or loss), or 0 while filling. */
unsigned cvx__jb_pop(cvx__jb_t *jb, uint8_t *out, unsigned n);
/* Adapts the target depth to the interarrival jitter (in samples at 8 kHz). */
void cvx__jb_set_jitter(cvx__jb_t *jb, double jitter_samples, unsigned pkt_samples);

/* --- RTCP (RFC 3550 section 6.4) -------------------------------------------------------- */

typedef struct cvx__rtcp_info {
    int is_sr;
    uint32_t ssrc;
    uint32_t ntp_mid; /* middle 32 bits of an SR's NTP timestamp */
    uint32_t packets, octets;
    int has_block;
    uint32_t block_ssrc; /* the source the first report block is about */
    uint32_t lsr;        /* its "last SR" field */
    uint8_t fraction_lost;
    int32_t cum_lost;
    uint32_t jitter;
} cvx__rtcp_info_t;

/* Builds an SR (when sent_packets > 0) or RR, with one report block about src when src is
 * not NULL, followed by an SDES CNAME item.  Returns the length written (<= size), or 0 when
 * size is too small. */
size_t cvx__rtcp_build(uint8_t *buf, size_t size, uint32_t ssrc, const char *cname, uint64_t ntp,
                       uint32_t rtp_ts, uint32_t sent_packets, uint32_t sent_octets,
                       cvx__rtp_src_t *src, uint64_t now_ns);
/* Parses a compound RTCP packet (first SR or RR found).  Returns 0 or CVX_EPROTO. */
int cvx__rtcp_parse(const uint8_t *buf, size_t len, cvx__rtcp_info_t *out);

#endif

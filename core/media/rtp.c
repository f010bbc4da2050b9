/*
 * RTP sessions (see cvx/rtp.h): sockets, the per-tick send and receive work, source latching,
 * DTMF in both directions and the upward events.
 *
 * Everything a session does happens in its media clock tick: it first sends this period's
 * packet (so that send lateness is the clock's lateness plus nothing), then drains its RTP and
 * RTCP sockets without blocking, then plays one frame out of the jitter buffer upward.  No
 * socket is registered with the loop: 1,000 calls cost 50,000 ticks a second and no extra
 * wake-ups.  A packet waits at most one period in the socket before it is read, which the
 * jitter buffer absorbs.
 *
 * Re-entrancy: events go up synchronously, and a handler may hang the call up, which makes the
 * driver destroy the session from inside the tick.  The session counts such nesting (busy)
 * and only marks itself dead; the tick frees it on the way out.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <spandsp.h>

#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "cvx/rtp.h"
#include "media/rtp_impl.h"
#include "media/media_impl.h"

#define OUTQ_SAMPLES  1280 /* 160 ms of audio waiting to be sent */
#define MAX_PKT       1500
#define RECV_BATCH    8
#define RECV_MAX_TICK 64 /* packets read per socket per tick, at most */
#define DTMF_QUEUE    32
#define RTCP_INTERVAL 5000000000ull
#define LATE_BUCKETS  512 /* 10 us each, as the media clock's histogram */
#define TE_VOLUME     10  /* -10 dBm0 */

typedef struct dtmf_req {
    char digit;
    unsigned duration_ms;
} dtmf_req_t;

struct cvx_rtp {
    cvx_rtp_t *next, *prev; /* every live session */
    uv_loop_t *loop;
    cvx_drv_inst_t *inst;
    cvx_chan_t *chan; /* referenced */
    cvx_mclock_t *clock;
    cvx_mclock_sub_t sub;
    char bind_addr[INET6_ADDRSTRLEN];
    int family;
    int fd, rtcp_fd;
    uint16_t port;
    long long media_timeout_ms;
    unsigned pkt_samples;

    cvx_rtp_remote_t remote;
    int have_remote;
    int started, held, dead, busy, timed_out;
    unsigned ticks;

    /* sending */
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts;
    int marker;
    int16_t outq[OUTQ_SAMPLES];
    unsigned out_head, out_len;
    uint64_t out_overflow;
    dtmf_req_t dq[DTMF_QUEUE];
    unsigned dq_head, dq_len;
    struct {
        int active;
        int event;
        uint32_t ts;
        unsigned dur, total; /* samples sent so far, samples wanted */
        int ends_left;       /* end packets still to send (3 in all) */
    } te_tx;
    dtmf_tx_state_t *dtmf_gen; /* in-band sending, created when first needed */
    uint32_t sent_octets_rtcp;

    /* receiving */
    int latched;
    struct sockaddr_storage peer; /* the latched source, or the candidate in probation */
    int have_src;
    cvx__rtp_src_t src;
    cvx__jb_t jb;
    cvx__te_rx_t te_rx;
    dtmf_rx_state_t *dtmf_det; /* in-band detection when telephone-event is not negotiated */
    uint64_t last_rx_ns;
    uint64_t start_ns;
    uint64_t play_ts;

    /* RTCP */
    uint64_t next_rtcp_ns;
    int rtcp_latched;
    struct sockaddr_storage rtcp_peer;

    /* statistics */
    cvx_rtp_stats_t st;
    uint32_t late_hist[LATE_BUCKETS];
    uint64_t late_max_ns;
};

static cvx_rtp_t *sessions;
static unsigned session_count;

/* Sessions by channel, for cvx_rtp_of_chan() ("show calls media" looks up every call): open
 * addressing on the channel pointer, tombstones on removal, rebuilt when it fills up. */
#define BY_CHAN_DEAD ((cvx_rtp_t *)1)
static cvx_rtp_t **by_chan;
static size_t by_chan_size, by_chan_used; /* used counts live entries and tombstones */

static size_t chan_hash(const cvx_chan_t *c, size_t size)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & (size - 1);
}

static int by_chan_grow(void)
{
    size_t nsize = by_chan_size ? by_chan_size : 64;
    while (nsize < 4 * (size_t)(session_count + 1))
        nsize *= 2;
    cvx_rtp_t **t = calloc(nsize, sizeof(*t));
    if (t == NULL)
        return CVX_ENOMEM;
    free(by_chan);
    by_chan = t;
    by_chan_size = nsize;
    by_chan_used = 0;
    for (cvx_rtp_t *r = sessions; r != NULL; r = r->next) {
        size_t i = chan_hash(r->chan, nsize);
        while (by_chan[i] != NULL)
            i = (i + 1) & (nsize - 1);
        by_chan[i] = r;
        by_chan_used++;
    }
    return 0;
}

/* Call after linking rtp into sessions. */
static int by_chan_add(cvx_rtp_t *rtp)
{
    if (2 * (by_chan_used + 1) > by_chan_size)
        return by_chan_grow(); /* rebuilds from the session list, rtp included */
    size_t i = chan_hash(rtp->chan, by_chan_size);
    while (by_chan[i] != NULL && by_chan[i] != BY_CHAN_DEAD)
        i = (i + 1) & (by_chan_size - 1);
    if (by_chan[i] == NULL)
        by_chan_used++;
    by_chan[i] = rtp;
    return 0;
}

static void by_chan_remove(cvx_rtp_t *rtp)
{
    if (by_chan_size == 0)
        return;
    size_t i = chan_hash(rtp->chan, by_chan_size);
    while (by_chan[i] != NULL) {
        if (by_chan[i] == rtp) {
            by_chan[i] = BY_CHAN_DEAD;
            return;
        }
        i = (i + 1) & (by_chan_size - 1);
    }
}
static uint16_t port_cursor;
static cvx_mclock_stats_t send_late; /* process-wide send lateness */

/* Shared receive buffers: one loop thread, and packets are handled before the next read. */
static uint8_t rx_buf[RECV_BATCH][MAX_PKT];

static cvx_log_ctx_t rtp_ctx(const cvx_rtp_t *rtp, const char *doing)
{
    return cvx_chan_log_ctx(rtp->chan, doing);
}

static uint8_t silence_byte(cvx_codec_t codec)
{
    return codec == CVX_CODEC_PCMA ? 0xd5 : 0xff;
}

/* --- sockets ---------------------------------------------------------------------------- */

static int parse_bind(const char *addr, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return 0;
    }
    return CVX_EINVAL;
}

static int open_bound(const char *addr, uint16_t port, int *fd_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_bind(addr, port, &ss, &len) != 0)
        return CVX_EINVAL;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cvx_from_errno(errno);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(fd);
        return e == EADDRINUSE || e == EACCES ? CVX_EBUSY : cvx_from_errno(e);
    }
    /* Expedited forwarding, as telephony networks expect for voice. */
    int tos = 0xb8;
    if (ss.ss_family == AF_INET)
        setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    else
        setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
    *fd_out = fd;
    return 0;
}

/* Binds an even port and the next one from [min, max]. */
static int alloc_ports(cvx_rtp_t *rtp, uint16_t pmin, uint16_t pmax)
{
    unsigned first = (pmin + 1u) & ~1u;
    if (pmax < first + 1)
        return CVX_EINVAL;
    unsigned n = (pmax - first + 1) / 2;
    for (unsigned i = 0; i < n; i++) {
        unsigned port = first + 2 * ((port_cursor + i) % n);
        int fd, rfd;
        int rc = open_bound(rtp->bind_addr, (uint16_t)port, &fd);
        if (rc == CVX_EBUSY)
            continue;
        if (rc != 0)
            return rc;
        rc = open_bound(rtp->bind_addr, (uint16_t)(port + 1), &rfd);
        if (rc == CVX_EBUSY) {
            close(fd);
            continue;
        }
        if (rc != 0) {
            close(fd);
            return rc;
        }
        rtp->fd = fd;
        rtp->rtcp_fd = rfd;
        rtp->port = (uint16_t)port;
        port_cursor = (uint16_t)((port_cursor + i + 1) % n);
        return 0;
    }
    return CVX_EBUSY;
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b,
                     int with_port)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_addr.s_addr == y->sin_addr.s_addr &&
               (!with_port || x->sin_port == y->sin_port);
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0 &&
               (!with_port || x->sin6_port == y->sin6_port);
    }
    return 0;
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
}

static const char *addr_str(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
    else if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
    snprintf(buf, size, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, addr_port(ss));
    return buf;
}

/* --- sending ---------------------------------------------------------------------------- */

static const struct sockaddr_storage *send_dest(const cvx_rtp_t *rtp)
{
    return rtp->latched ? &rtp->peer : &rtp->remote.addr;
}

static void send_packet(cvx_rtp_t *rtp, const uint8_t *pkt, size_t len)
{
    const struct sockaddr_storage *to = send_dest(rtp);
    ssize_t n = sendto(rtp->fd, pkt, len, 0, (const struct sockaddr *)to, addr_len(to));
    if (n == (ssize_t)len) {
        rtp->st.packets_out++;
        rtp->st.bytes_out += len - 12;
        rtp->sent_octets_rtcp += (uint32_t)(len - 12);
    }
}

static void encode(cvx_codec_t codec, const int16_t *in, uint8_t *out, unsigned n)
{
    cvx__g711_encode(codec == CVX_CODEC_PCMA, in, out, n);
}

/* Starts the next queued digit, RFC 4733 or in-band. */
static void dtmf_next(cvx_rtp_t *rtp)
{
    if (rtp->dq_len == 0 || rtp->te_tx.active)
        return;
    dtmf_req_t r = rtp->dq[rtp->dq_head];
    rtp->dq_head = (rtp->dq_head + 1) % DTMF_QUEUE;
    rtp->dq_len--;
    if (rtp->remote.te_payload_type >= 0) {
        rtp->te_tx.active = 1;
        rtp->te_tx.event = cvx__te_event(r.digit);
        rtp->te_tx.ts = rtp->ts;
        rtp->te_tx.dur = 0;
        rtp->te_tx.total = r.duration_ms * 8;
        if (rtp->te_tx.total < rtp->pkt_samples)
            rtp->te_tx.total = rtp->pkt_samples;
        rtp->te_tx.ends_left = 3;
        return;
    }
    if (rtp->dtmf_gen == NULL) {
        rtp->dtmf_gen = dtmf_tx_init(NULL);
        if (rtp->dtmf_gen == NULL)
            return;
    }
    dtmf_tx_set_timing(rtp->dtmf_gen, (int)r.duration_ms, 60);
    char d[2] = {r.digit, 0};
    dtmf_tx_put(rtp->dtmf_gen, d, 1);
}

/* One RFC 4733 packet of the event in progress. */
static void send_te(cvx_rtp_t *rtp)
{
    uint8_t pkt[16];
    int first = rtp->te_tx.dur == 0;
    if (rtp->te_tx.dur < rtp->te_tx.total)
        rtp->te_tx.dur += rtp->pkt_samples;
    int end = rtp->te_tx.dur >= rtp->te_tx.total;
    unsigned dur = rtp->te_tx.dur > 0xffff ? 0xffff : rtp->te_tx.dur;
    cvx__rtp_put_hdr(pkt, first, rtp->remote.te_payload_type, rtp->seq++, rtp->te_tx.ts, rtp->ssrc);
    pkt[12] = (uint8_t)rtp->te_tx.event;
    pkt[13] = (uint8_t)((end ? 0x80 : 0) | TE_VOLUME);
    pkt[14] = (uint8_t)(dur >> 8);
    pkt[15] = (uint8_t)dur;
    send_packet(rtp, pkt, sizeof(pkt));
    if (end && --rtp->te_tx.ends_left == 0) {
        rtp->te_tx.active = 0;
        rtp->marker = 1; /* audio after an event starts a talkspurt */
    }
}

static void send_audio(cvx_rtp_t *rtp)
{
    int16_t lin[CVX__JB_MAX_PKT];
    uint8_t pkt[12 + CVX__JB_MAX_PKT];
    unsigned n = rtp->pkt_samples;
    cvx__rtp_put_hdr(pkt, rtp->marker, rtp->remote.payload_type, rtp->seq++, rtp->ts, rtp->ssrc);
    rtp->marker = 0;
    if (rtp->out_len == 0 && rtp->dtmf_gen == NULL) {
        /* Nothing to say (a call being recorded): the codec's silence, without encoding. */
        memset(pkt + 12, silence_byte(rtp->remote.codec), n);
        send_packet(rtp, pkt, 12 + n);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        if (rtp->out_len > 0) {
            lin[i] = rtp->outq[rtp->out_head];
            rtp->out_head = (rtp->out_head + 1) % OUTQ_SAMPLES;
            rtp->out_len--;
        } else {
            lin[i] = 0;
        }
    }
    if (rtp->dtmf_gen != NULL) {
        int16_t tone[CVX__JB_MAX_PKT];
        int got = dtmf_tx(rtp->dtmf_gen, tone, (int)n);
        if (got > 0) {
            memcpy(lin, tone, (size_t)got * sizeof(int16_t));
        } else if (rtp->dq_len == 0) {
            /* The in-band digits are all out: back to the silence fast path. */
            dtmf_tx_free(rtp->dtmf_gen);
            rtp->dtmf_gen = NULL;
        }
    }
    encode(rtp->remote.codec, lin, pkt + 12, n);
    send_packet(rtp, pkt, 12 + n);
}

static void send_tick(cvx_rtp_t *rtp)
{
    if (rtp->have_remote && !rtp->held) {
        dtmf_next(rtp);
        if (rtp->te_tx.active)
            send_te(rtp);
        else
            send_audio(rtp);
    }
    rtp->ts += rtp->pkt_samples;
}

/* --- receiving -------------------------------------------------------------------------- */

static void report_dtmf(cvx_rtp_t *rtp, char digit, cvx_dtmf_source_t source, unsigned ms)
{
    cvx_log_ctx_t ctx = rtp_ctx(rtp, "receiving media");
    cvx_log_ctx(CVX_LOG_DEBUG, &ctx, "rtp: DTMF %c (%s)", digit,
                source == CVX_DTMF_RFC4733 ? "RFC 4733" : "in-band");
    cvx_event_t ev = {.type = CVX_EV_DTMF, .u.dtmf = {digit, source, ms}};
    cvx_drv_event(rtp->inst, rtp->chan, &ev);
}

static void inband_digits(void *data, const char *digits, int len)
{
    cvx_rtp_t *rtp = data;
    for (int i = 0; i < len && !rtp->dead; i++)
        report_dtmf(rtp, digits[i], CVX_DTMF_INBAND, 0);
}

/* Decides whether a packet from `from` with header h may be used: latching and RFC 3550
 * validation.  Returns 1 to use it. */
static int accept_source(cvx_rtp_t *rtp, const struct sockaddr_storage *from,
                         const cvx__rtp_hdr_t *h)
{
    if (rtp->latched) {
        if (!same_addr(from, &rtp->peer, 1)) {
            rtp->st.foreign++;
            return 0;
        }
        if (h->ssrc != rtp->src.ssrc) {
            /* The latched peer changed its SSRC (a new stream after a re-INVITE or a
             * different media file): validate the new source afresh. */
            cvx__rtp_src_init(&rtp->src, h->ssrc, h->seq);
            cvx__jb_init(&rtp->jb, silence_byte(rtp->remote.codec), rtp->jb.min_target,
                         rtp->jb.max_target);
            memset(&rtp->te_rx, 0, sizeof(rtp->te_rx));
        }
        return cvx__rtp_src_update(&rtp->src, h->seq);
    }
    /* Not latched yet: follow one candidate source until it passes probation. */
    if (!rtp->have_src || h->ssrc != rtp->src.ssrc || !same_addr(from, &rtp->peer, 1)) {
        cvx__rtp_src_init(&rtp->src, h->ssrc, h->seq);
        rtp->peer = *from;
        rtp->have_src = 1;
    }
    if (!cvx__rtp_src_update(&rtp->src, h->seq))
        return 0;
    rtp->latched = 1;
    char a[64], b[64];
    cvx_log_ctx_t ctx = rtp_ctx(rtp, "receiving media");
    cvx_log_ctx(CVX_LOG_DEBUG, &ctx, "rtp: media source latched: %s ssrc %08x (SDP said %s)",
                addr_str(from, a, sizeof(a)), h->ssrc, addr_str(&rtp->remote.addr, b, sizeof(b)));
    return 1;
}

static void handle_packet(cvx_rtp_t *rtp, const uint8_t *buf, size_t len,
                          const struct sockaddr_storage *from, uint64_t now)
{
    cvx__rtp_hdr_t h;
    if (cvx__rtp_parse(buf, len, &h) != 0) {
        rtp->st.malformed++;
        return;
    }
    int is_te = rtp->remote.te_payload_type >= 0 && h.pt == rtp->remote.te_payload_type;
    int is_audio = h.pt == rtp->remote.payload_type;
    if (!is_te && !is_audio && h.pt != 13) {
        rtp->st.malformed++; /* a payload type nobody negotiated */
        return;
    }
    if (is_audio && (h.len == 0 || h.len > CVX__JB_MAX_PKT)) {
        rtp->st.malformed++;
        return;
    }
    if (!accept_source(rtp, from, &h))
        return;
    rtp->st.packets_in++;
    rtp->st.bytes_in += h.len;
    rtp->last_rx_ns = now;
    if (is_te) {
        char digit;
        unsigned dur;
        int r = cvx__te_rx_packet(&rtp->te_rx, &h, &digit, &dur);
        if (r < 0)
            rtp->st.malformed++;
        else if (r == 1)
            report_dtmf(rtp, digit, CVX_DTMF_RFC4733, dur / 8);
        return;
    }
    if (!is_audio)
        return; /* comfort noise: the jitter buffer plays silence */
    uint32_t arrival = (uint32_t)((now - rtp->start_ns) / 125000ull); /* 8 kHz units */
    cvx__rtp_src_jitter(&rtp->src, h.ts, arrival);
    cvx__jb_put(&rtp->jb, h.seq, h.payload, h.len);
    cvx__jb_set_jitter(&rtp->jb, rtp->src.jitter, (unsigned)h.len);
}

static void handle_rtcp(cvx_rtp_t *rtp, const uint8_t *buf, size_t len,
                        const struct sockaddr_storage *from, uint64_t now)
{
    cvx__rtcp_info_t info;
    if (cvx__rtcp_parse(buf, len, &info) != 0) {
        rtp->st.malformed++;
        return;
    }
    if (rtp->latched && !same_addr(from, &rtp->peer, 0)) {
        rtp->st.foreign++;
        return;
    }
    if (!rtp->rtcp_latched && rtp->latched) {
        rtp->rtcp_latched = 1;
        rtp->rtcp_peer = *from;
    }
    if (info.is_sr && rtp->latched && info.ssrc == rtp->src.ssrc) {
        rtp->src.last_sr_ntp_mid = info.ntp_mid;
        rtp->src.last_sr_recv_ns = now;
    }
}

/* Reads what is waiting on fd (at most RECV_MAX_TICK datagrams). */
static void drain(cvx_rtp_t *rtp, int fd, int is_rtcp, uint64_t now)
{
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_storage from[RECV_BATCH];
    unsigned total = 0;
    while (total < RECV_MAX_TICK && !rtp->dead) {
        memset(msgs, 0, sizeof(msgs));
        for (unsigned i = 0; i < RECV_BATCH; i++) {
            iov[i].iov_base = rx_buf[i];
            iov[i].iov_len = MAX_PKT;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
        }
        int n = recvmmsg(fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return;
        for (int i = 0; i < n && !rtp->dead; i++) {
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                rtp->st.malformed++;
                continue;
            }
            if (is_rtcp)
                handle_rtcp(rtp, rx_buf[i], msgs[i].msg_len, &from[i], now);
            else
                handle_packet(rtp, rx_buf[i], msgs[i].msg_len, &from[i], now);
        }
        total += (unsigned)n;
        if (n < RECV_BATCH)
            return;
    }
}

static void decode(cvx_codec_t codec, const uint8_t *in, int16_t *out, unsigned n)
{
    cvx__g711_decode(codec == CVX_CODEC_PCMA, in, out, n);
}

/* Plays one frame out of the jitter buffer, upward. */
static void play_tick(cvx_rtp_t *rtp)
{
    uint8_t enc[CVX__JB_MAX_PKT];
    int16_t lin[CVX__JB_MAX_PKT];
    unsigned n = rtp->pkt_samples;
    cvx__jb_pop(&rtp->jb, enc, n);
    decode(rtp->remote.codec, enc, lin, n);
    if (rtp->dtmf_det != NULL)
        dtmf_rx(rtp->dtmf_det, lin, (int)n);
    if (rtp->dead)
        return;
    cvx_frame_t f = {.rate = 8000,
                     .codec = CVX_CODEC_L16,
                     .samples = n,
                     .len = n * 2,
                     .ts = rtp->play_ts,
                     .data = (const uint8_t *)lin};
    rtp->play_ts += n;
    cvx_event_t ev = {.type = CVX_EV_FRAME, .u.frame = &f};
    cvx_drv_event(rtp->inst, rtp->chan, &ev);
}

/* --- RTCP and timeouts ------------------------------------------------------------------ */

static uint64_t ntp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t sec = (uint64_t)ts.tv_sec + 2208988800ull;
    uint64_t frac = ((uint64_t)ts.tv_nsec << 32) / 1000000000ull;
    return (sec << 32) | frac;
}

static void rtcp_tick(cvx_rtp_t *rtp, uint64_t now)
{
    if (now < rtp->next_rtcp_ns || !rtp->have_remote || rtp->held)
        return;
    /* RFC 3550 6.3.1: randomise the interval over [0.5, 1.5] times the nominal one. */
    rtp->next_rtcp_ns =
        now + RTCP_INTERVAL / 2 + (uint64_t)(cvx__media_random32() % 1000) * (RTCP_INTERVAL / 1000);
    uint8_t buf[256];
    size_t len = cvx__rtcp_build(buf, sizeof(buf), rtp->ssrc, cvx_chan_id(rtp->chan), ntp_now(),
                                 rtp->ts, (uint32_t)rtp->st.packets_out, rtp->sent_octets_rtcp,
                                 rtp->latched ? &rtp->src : NULL, now);
    if (len == 0)
        return;
    struct sockaddr_storage to;
    if (rtp->rtcp_latched) {
        to = rtp->rtcp_peer;
    } else {
        to = *send_dest(rtp);
        set_port(&to, (uint16_t)(addr_port(&to) + 1));
    }
    sendto(rtp->rtcp_fd, buf, len, 0, (const struct sockaddr *)&to, addr_len(&to));
}

static void timeout_tick(cvx_rtp_t *rtp, uint64_t now)
{
    if (rtp->media_timeout_ms <= 0 || rtp->held || rtp->timed_out)
        return;
    if (now - rtp->last_rx_ns < (uint64_t)rtp->media_timeout_ms * 1000000ull)
        return;
    rtp->timed_out = 1;
    cvx_log_ctx_t ctx = rtp_ctx(rtp, "watching media");
    cvx_log_ctx(CVX_LOG_NOTICE, &ctx, "rtp: no media for %lld ms; hanging up",
                rtp->media_timeout_ms);
    /* Down through the driver, which ends the call with the peer and reports the hangup. */
    cvx_chan_hangup(rtp->chan, CVX_CAUSE_MEDIA_TIMEOUT);
}

static void record_late(cvx_rtp_t *rtp, uint64_t late)
{
    uint64_t b = late / 10000;
    if (b >= LATE_BUCKETS)
        b = LATE_BUCKETS - 1;
    rtp->late_hist[b]++;
    if (late > rtp->late_max_ns)
        rtp->late_max_ns = late;
    send_late.hist[b]++;
    send_late.ticks++;
    if (late > send_late.late_max_ns)
        send_late.late_max_ns = late;
}

static void rtp_free(cvx_rtp_t *rtp);

static void rtp_tick(cvx_mclock_sub_t *sub, uint64_t deadline)
{
    cvx_rtp_t *rtp = sub->data;
    rtp->busy++;
    send_tick(rtp);
    uint64_t now = uv_hrtime();
    if (rtp->have_remote && !rtp->held)
        record_late(rtp, now > deadline ? now - deadline : 0);
    drain(rtp, rtp->fd, 0, now);
    /* RTCP comes every few seconds: looking every 25th tick (0.5 s) saves a system call per
     * call and tick. */
    if (!rtp->dead && ++rtp->ticks % 25 == 0)
        drain(rtp, rtp->rtcp_fd, 1, now);
    if (!rtp->dead && !rtp->held && rtp->have_remote)
        play_tick(rtp);
    if (!rtp->dead)
        rtcp_tick(rtp, now);
    if (!rtp->dead)
        timeout_tick(rtp, now);
    rtp->busy--;
    if (rtp->dead && rtp->busy == 0)
        rtp_free(rtp);
}

/* --- the interface ---------------------------------------------------------------------- */

int cvx_rtp_create(uv_loop_t *loop, cvx_drv_inst_t *inst, cvx_chan_t *chan,
                   const cvx_rtp_params_t *params, cvx_rtp_t **out)
{
    if (loop == NULL || chan == NULL || params == NULL || out == NULL)
        return CVX_EINVAL;
    unsigned ptime = params->ptime_ms ? params->ptime_ms : 20;
    if (ptime % 10 != 0 || ptime * 8 > CVX__JB_MAX_PKT)
        return CVX_EINVAL;
    cvx_mclock_t *clock = cvx_media_clock(loop);
    if (clock == NULL)
        return CVX_EIO;
    cvx_rtp_t *rtp = calloc(1, sizeof(*rtp));
    if (rtp == NULL)
        return CVX_ENOMEM;
    rtp->fd = rtp->rtcp_fd = -1;
    snprintf(rtp->bind_addr, sizeof(rtp->bind_addr), "%s",
             params->bind_addr ? params->bind_addr : "0.0.0.0");
    int rc = alloc_ports(rtp, params->port_min, params->port_max);
    if (rc != 0) {
        free(rtp);
        return rc;
    }
    rtp->loop = loop;
    rtp->inst = inst;
    rtp->chan = cvx_chan_ref(chan);
    rtp->clock = clock;
    rtp->media_timeout_ms = params->media_timeout_ms;
    rtp->pkt_samples = ptime * 8;
    rtp->remote.te_payload_type = -1;
    rtp->remote.codec = CVX_CODEC_PCMU;
    rtp->ssrc = cvx__media_random32();
    rtp->seq = (uint16_t)cvx__media_random32();
    rtp->ts = cvx__media_random32();
    rtp->marker = 1;
    rtp->sub.tick = rtp_tick;
    rtp->sub.data = rtp;
    cvx__jb_init(&rtp->jb, 0xff, 2, 10);
    rtp->next = sessions;
    if (sessions)
        sessions->prev = rtp;
    sessions = rtp;
    session_count++;
    if (by_chan_add(rtp) != 0) {
        cvx_rtp_destroy(rtp);
        return CVX_ENOMEM;
    }
    *out = rtp;
    return 0;
}

uint16_t cvx_rtp_local_port(const cvx_rtp_t *rtp)
{
    return rtp->port;
}

const char *cvx_rtp_local_addr(const cvx_rtp_t *rtp)
{
    return rtp->bind_addr;
}

int cvx_rtp_codec(const cvx_rtp_t *rtp)
{
    return rtp->have_remote ? (int)rtp->remote.codec : -1;
}

int cvx_rtp_set_remote(cvx_rtp_t *rtp, const cvx_rtp_remote_t *remote)
{
    if (remote->codec != CVX_CODEC_PCMU && remote->codec != CVX_CODEC_PCMA)
        return CVX_ENOTSUP;
    if (remote->payload_type < 0 || remote->payload_type > 127 || remote->te_payload_type > 127)
        return CVX_EINVAL;
    if (remote->addr.ss_family != AF_INET && remote->addr.ss_family != AF_INET6)
        return CVX_EINVAL;
    int moved = !rtp->have_remote || !same_addr(&remote->addr, &rtp->remote.addr, 1);
    int recodec = rtp->have_remote && remote->codec != rtp->remote.codec;
    rtp->remote = *remote;
    rtp->have_remote = 1;
    if (moved) {
        /* The signalling moved the media (a re-INVITE): latch again. */
        rtp->latched = 0;
        rtp->have_src = 0;
        rtp->rtcp_latched = 0;
    }
    if (moved || recodec || rtp->jb.silence != silence_byte(remote->codec))
        cvx__jb_init(&rtp->jb, silence_byte(remote->codec), 2, 10);
    if (remote->te_payload_type < 0 && rtp->dtmf_det == NULL) {
        rtp->dtmf_det = dtmf_rx_init(NULL, inband_digits, rtp);
        if (rtp->dtmf_det == NULL)
            return CVX_ENOMEM;
    } else if (remote->te_payload_type >= 0 && rtp->dtmf_det != NULL) {
        dtmf_rx_free(rtp->dtmf_det);
        rtp->dtmf_det = NULL;
    }
    return 0;
}

int cvx_rtp_start(cvx_rtp_t *rtp)
{
    if (!rtp->have_remote)
        return CVX_ESTATE;
    if (rtp->started)
        return 0;
    rtp->started = 1;
    rtp->start_ns = uv_hrtime();
    rtp->last_rx_ns = rtp->start_ns;
    rtp->next_rtcp_ns = rtp->start_ns + RTCP_INTERVAL;
    cvx_mclock_add(rtp->clock, &rtp->sub);
    return 0;
}

void cvx_rtp_hold(cvx_rtp_t *rtp, int on)
{
    if (rtp->held == !!on)
        return;
    rtp->held = !!on;
    if (!on) {
        rtp->last_rx_ns = uv_hrtime(); /* the timeout starts again on resume */
        rtp->marker = 1;
        /* What was buffered before the hold is stale: start playout afresh. */
        cvx__jb_init(&rtp->jb, silence_byte(rtp->remote.codec), rtp->jb.min_target,
                     rtp->jb.max_target);
    }
}

int cvx_rtp_write(cvx_rtp_t *rtp, const cvx_frame_t *frame)
{
    if (frame->rate != 8000)
        return CVX_ENOTSUP;
    unsigned n = frame->samples;
    unsigned need = frame->codec == CVX_CODEC_L16 ? n * 2 : n;
    if (frame->len < need)
        return CVX_EINVAL;
    if (frame->codec != CVX_CODEC_L16 && frame->codec != CVX_CODEC_PCMU &&
        frame->codec != CVX_CODEC_PCMA)
        return CVX_ENOTSUP;
    for (unsigned i = 0; i < n; i++) {
        int16_t s;
        if (frame->codec == CVX_CODEC_L16)
            memcpy(&s, frame->data + 2 * i, 2);
        else if (frame->codec == CVX_CODEC_PCMU)
            s = ulaw_to_linear(frame->data[i]);
        else
            s = alaw_to_linear(frame->data[i]);
        if (rtp->out_len == OUTQ_SAMPLES) {
            /* Full: the writer runs ahead of the clock.  Drop the oldest sample. */
            rtp->out_head = (rtp->out_head + 1) % OUTQ_SAMPLES;
            rtp->out_len--;
            rtp->out_overflow++;
        }
        rtp->outq[(rtp->out_head + rtp->out_len) % OUTQ_SAMPLES] = s;
        rtp->out_len++;
    }
    return 0;
}

int cvx_rtp_send_dtmf(cvx_rtp_t *rtp, char digit, unsigned duration_ms)
{
    if (cvx__te_event(digit) < 0)
        return CVX_EINVAL;
    if (rtp->dq_len == DTMF_QUEUE)
        return CVX_EBUSY;
    if (duration_ms == 0)
        duration_ms = 100;
    if (duration_ms > 5000)
        duration_ms = 5000;
    dtmf_req_t *r = &rtp->dq[(rtp->dq_head + rtp->dq_len) % DTMF_QUEUE];
    r->digit = (char)cvx__te_digit(cvx__te_event(digit));
    r->duration_ms = duration_ms;
    rtp->dq_len++;
    return 0;
}

static uint64_t hist_quantile(const uint32_t *hist, uint64_t max, double q)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < LATE_BUCKETS; i++)
        total += hist[i];
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;
    if (want >= total)
        want = total - 1;
    for (unsigned i = 0; i < LATE_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want)
            return i == LATE_BUCKETS - 1 ? max : (uint64_t)(i + 1) * 10000;
    }
    return max;
}

void cvx_rtp_get_stats(const cvx_rtp_t *rtp, cvx_rtp_stats_t *out)
{
    *out = rtp->st;
    int64_t lost = rtp->latched ? cvx__rtp_src_lost(&rtp->src) : 0;
    out->lost = lost > 0 ? (uint64_t)lost : 0;
    out->jitter_ms = rtp->src.jitter / 8.0;
    out->late_p99_ns = hist_quantile(rtp->late_hist, rtp->late_max_ns, 0.99);
}

static void rtp_free(cvx_rtp_t *rtp)
{
    if (rtp->fd >= 0)
        close(rtp->fd);
    if (rtp->rtcp_fd >= 0)
        close(rtp->rtcp_fd);
    if (rtp->dtmf_det != NULL)
        dtmf_rx_free(rtp->dtmf_det);
    if (rtp->dtmf_gen != NULL)
        dtmf_tx_free(rtp->dtmf_gen);
    cvx_chan_unref(rtp->chan);
    free(rtp);
}

void cvx_rtp_destroy(cvx_rtp_t *rtp)
{
    if (rtp == NULL || rtp->dead)
        return;
    rtp->dead = 1;
    if (rtp->sub.active)
        cvx_mclock_remove(rtp->clock, &rtp->sub);
    by_chan_remove(rtp);
    if (rtp->prev)
        rtp->prev->next = rtp->next;
    else
        sessions = rtp->next;
    if (rtp->next)
        rtp->next->prev = rtp->prev;
    session_count--;
    if (rtp->busy == 0)
        rtp_free(rtp);
}

/* --- for the media core and the shell --------------------------------------------------- */

cvx_rtp_t *cvx_rtp_of_chan(const cvx_chan_t *chan)
{
    if (by_chan_size == 0)
        return NULL;
    size_t i = chan_hash(chan, by_chan_size);
    while (by_chan[i] != NULL) {
        if (by_chan[i] != BY_CHAN_DEAD && by_chan[i]->chan == chan)
            return by_chan[i];
        i = (i + 1) & (by_chan_size - 1);
    }
    return NULL;
}

unsigned cvx_rtp_count(void)
{
    return session_count;
}

void cvx_rtp_send_lateness(cvx_mclock_stats_t *out)
{
    *out = send_late;
}

void cvx_rtp_reset_lateness(void)
{
    memset(&send_late, 0, sizeof(send_late));
}

void cvx__rtp_remote_str(const cvx_rtp_t *rtp, char *buf, size_t size)
{
    if (!rtp->have_remote) {
        snprintf(buf, size, "-");
        return;
    }
    addr_str(send_dest(rtp), buf, size);
    if (rtp->latched && size > strlen(buf) + 10)
        strcat(buf, " latched");
}

/*
 * SDP offer/answer: parse with Sofia's SDP parser, choose G.711 and telephone-event, write the
 * answer ourselves.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/sdp.h>
#include <sofia-sip/su_alloc.h>

#include "sip_sdp.h"

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static int mode_of(const sdp_media_t *m, const sdp_connection_t *c)
{
    int mode = m->m_mode;
    /* RFC 2543 style hold: a connection address of 0.0.0.0. */
    if (c != NULL && c->c_address != NULL && strcmp(c->c_address, "0.0.0.0") == 0)
        mode &= ~SIP_SDP_RECVONLY;
    return mode;
}

/* Picks the first offered format we can carry; records telephone-event. */
static int choose(const sdp_media_t *m, sip_sdp_t *out)
{
    out->te_payload_type = -1;
    int chosen = -1;
    for (const sdp_rtpmap_t *rm = m->m_rtpmaps; rm != NULL; rm = rm->rm_next) {
        if (rm->rm_encoding == NULL)
            continue;
        if (strcasecmp(rm->rm_encoding, "telephone-event") == 0 && rm->rm_rate == 8000) {
            if (out->te_payload_type < 0)
                out->te_payload_type = rm->rm_pt;
            continue;
        }
        if (chosen >= 0 || rm->rm_rate != 8000)
            continue;
        if (strcasecmp(rm->rm_encoding, "PCMU") == 0) {
            out->codec = CVX_CODEC_PCMU;
            chosen = rm->rm_pt;
        } else if (strcasecmp(rm->rm_encoding, "PCMA") == 0) {
            out->codec = CVX_CODEC_PCMA;
            chosen = rm->rm_pt;
        }
    }
    out->payload_type = chosen;
    return chosen >= 0;
}

int sip_sdp_parse(const char *body, size_t len, sip_sdp_t *out)
{
    memset(out, 0, sizeof(*out));
    out->te_payload_type = -1;
    out->payload_type = -1;
    if (body == NULL || len == 0 || len > 65536) {
        copy(out->error, sizeof(out->error), "no session description");
        return -1;
    }
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sdp_parser_t *p = sdp_parse(home, body, (issize_t)len, sdp_f_c_missing);
    sdp_session_t *s = p ? sdp_session(p) : NULL;
    if (s == NULL) {
        /* Be liberal in what we accept (an o= missing, an rtpmap of a video format without a
         * rate, as in RFC 4475's bodies): what we need is checked below anyway. */
        if (p)
            sdp_parser_free(p);
        p = sdp_parse(home, body, (issize_t)len, sdp_f_c_missing | sdp_f_insane | sdp_f_anynet);
        s = p ? sdp_session(p) : NULL;
    }
    char *clean = NULL;
    if (s == NULL && (clean = malloc(len + 1)) != NULL) {
        /* Last try without the rtpmap lines that have no clock rate ("a=rtpmap:31 LPC"). */
        size_t k = 0;
        for (size_t i = 0; i < len;) {
            size_t e = i;
            while (e < len && body[e] != '\n')
                e++;
            size_t llen = e < len ? e - i + 1 : e - i;
            int bad = llen > 9 && strncmp(body + i, "a=rtpmap:", 9) == 0 &&
                      memchr(body + i, '/', llen) == NULL;
            if (!bad) {
                memcpy(clean + k, body + i, llen);
                k += llen;
            }
            i += llen;
        }
        if (p)
            sdp_parser_free(p);
        p = sdp_parse(home, clean, (issize_t)k, sdp_f_c_missing | sdp_f_insane | sdp_f_anynet);
        s = p ? sdp_session(p) : NULL;
    }
    int rc = 0;
    if (s == NULL) {
        snprintf(out->error, sizeof(out->error), "not a session description: %s",
                 p && sdp_parsing_error(p) ? sdp_parsing_error(p) : "parse error");
        rc = -1;
        goto done;
    }
    for (const sdp_media_t *m = s->sdp_media; m != NULL; m = m->m_next) {
        if (m->m_port > 65535) {
            snprintf(out->error, sizeof(out->error), "m= port %lu is out of range", m->m_port);
            rc = -1;
            goto done;
        }
    }
    unsigned i = 0;
    for (const sdp_media_t *m = s->sdp_media; m != NULL; m = m->m_next, i++) {
        if (i < SIP_SDP_MAX_MEDIA) {
            copy(out->media[i].type, sizeof(out->media[i].type), m->m_type_name);
            copy(out->media[i].proto, sizeof(out->media[i].proto), m->m_proto_name);
            if (m->m_rtpmaps != NULL)
                snprintf(out->media[i].fmt, sizeof(out->media[i].fmt), "%u",
                         (unsigned)m->m_rtpmaps->rm_pt);
            else
                copy(out->media[i].fmt, sizeof(out->media[i].fmt),
                     m->m_format && m->m_format->l_text ? m->m_format->l_text : "0");
        }
        if (out->usable || i >= SIP_SDP_MAX_MEDIA)
            continue;
        if (m->m_type != sdp_media_audio || m->m_proto != sdp_proto_rtp || m->m_port == 0 ||
            m->m_rejected || m->m_port > 65535)
            continue;
        const sdp_connection_t *c = m->m_connections ? m->m_connections : s->sdp_connection;
        /* A voicemail call is unicast: a multicast group is no stream to answer. */
        if (c == NULL || c->c_address == NULL || c->c_nettype != sdp_net_in || c->c_mcast)
            continue;
        if (!choose(m, out))
            continue;
        out->usable = 1;
        out->chosen = i;
        out->port = (uint16_t)m->m_port;
        copy(out->addr, sizeof(out->addr), c->c_address);
        out->family = c->c_addrtype == sdp_addr_ip6 ? AF_INET6 : AF_INET;
        out->direction = mode_of(m, c);
        out->hold = out->direction != SIP_SDP_SENDRECV;
    }
    out->nmedia = i < SIP_SDP_MAX_MEDIA ? i : SIP_SDP_MAX_MEDIA;
    if (!out->usable)
        copy(out->error, sizeof(out->error), "no audio stream offers PCMU or PCMA over RTP/AVP");
done:
    if (p)
        sdp_parser_free(p);
    free(clean);
    su_home_deinit(home);
    return rc;
}

int sip_sdp_remote_addr(const sip_sdp_t *sdp, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof(*addr));
    if (sdp->family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(sdp->port);
        return inet_pton(AF_INET6, sdp->addr, &a6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
    a4->sin_family = AF_INET;
    a4->sin_port = htons(sdp->port);
    return inet_pton(AF_INET, sdp->addr, &a4->sin_addr) == 1 ? 0 : -1;
}

static const char *ipver(const char *addr)
{
    return strchr(addr, ':') ? "IP6" : "IP4";
}

/* Appends to buf; returns -1 once it no longer fits. */
static int put(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int put(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len >= size)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *len) {
        *len = size;
        return -1;
    }
    *len += (size_t)n;
    return 0;
}

static const char *dir_name(int d)
{
    switch (d) {
    case SIP_SDP_INACTIVE:
        return "inactive";
    case SIP_SDP_SENDONLY:
        return "sendonly";
    case SIP_SDP_RECVONLY:
        return "recvonly";
    default:
        return "sendrecv";
    }
}

static void header(char *buf, size_t size, size_t *len, const char *addr, uint64_t id,
                   uint64_t version)
{
    put(buf, size, len, "v=0\r\no=callvox %" PRIu64 " %" PRIu64 " IN %s %s\r\ns=callvox\r\n", id,
        version, ipver(addr), addr);
    put(buf, size, len, "c=IN %s %s\r\nt=0 0\r\n", ipver(addr), addr);
}

int sip_sdp_answer(const sip_sdp_t *offer, const char *local_addr, uint16_t port, uint64_t sess_id,
                   uint64_t version, char *buf, size_t size)
{
    size_t len = 0;
    header(buf, size, &len, local_addr, sess_id, version);
    for (unsigned i = 0; i < offer->nmedia; i++) {
        if (i != offer->chosen) {
            put(buf, size, &len, "m=%s 0 %s %s\r\n", offer->media[i].type, offer->media[i].proto,
                offer->media[i].fmt);
            continue;
        }
        const char *name = offer->codec == CVX_CODEC_PCMA ? "PCMA" : "PCMU";
        put(buf, size, &len, "m=audio %u RTP/AVP %d", port, offer->payload_type);
        if (offer->te_payload_type >= 0)
            put(buf, size, &len, " %d", offer->te_payload_type);
        put(buf, size, &len, "\r\na=rtpmap:%d %s/8000\r\n", offer->payload_type, name);
        if (offer->te_payload_type >= 0)
            put(buf, size, &len, "a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n",
                offer->te_payload_type, offer->te_payload_type);
        /* Our direction mirrors theirs (RFC 3264 section 6.1). */
        int mine = ((offer->direction & SIP_SDP_SENDONLY) ? SIP_SDP_RECVONLY : 0) |
                   ((offer->direction & SIP_SDP_RECVONLY) ? SIP_SDP_SENDONLY : 0);
        put(buf, size, &len, "a=ptime:20\r\na=%s\r\n", dir_name(mine));
    }
    return len < size ? (int)len : -1;
}

int sip_sdp_offer(const char *local_addr, uint16_t port, uint64_t sess_id, uint64_t version,
                  int hold, char *buf, size_t size)
{
    size_t len = 0;
    header(buf, size, &len, local_addr, sess_id, version);
    put(buf, size, &len,
        "m=audio %u RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=%s\r\n",
        port, hold ? "sendonly" : "sendrecv");
    return len < size ? (int)len : -1;
}

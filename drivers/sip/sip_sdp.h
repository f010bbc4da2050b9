/*
 * SDP offer/answer for the SIP driver: G.711 (PCMU, PCMA) and telephone-event (RFC 4733).
 *
 * The driver runs Sofia-SIP with its own media handling off (no soa): offers are parsed here
 * with Sofia's SDP parser and answers are written here, so the choice of codec, the 488 for an
 * offer without a usable codec and the hold state are ours and testable.
 * Thread: any (no shared state).
 */
#ifndef SIP_SDP_H
#define SIP_SDP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cvx/frame.h"

#define SIP_SDP_MAX_MEDIA 8

/* Directions as RFC 3264 names them. */
enum { SIP_SDP_INACTIVE = 0, SIP_SDP_SENDONLY = 1, SIP_SDP_RECVONLY = 2, SIP_SDP_SENDRECV = 3 };

typedef struct sip_sdp_media {
    char type[16];  /* "audio", "video" */
    char proto[24]; /* "RTP/AVP" */
    char fmt[16];   /* first format, to echo in a rejected line */
} sip_sdp_media_t;

typedef struct sip_sdp {
    int usable;          /* an audio stream we can take */
    unsigned chosen;     /* its m= line */
    cvx_codec_t codec;   /* CVX_CODEC_PCMU or CVX_CODEC_PCMA */
    int payload_type;    /* as offered */
    int te_payload_type; /* telephone-event/8000, or -1 */
    char addr[64];       /* the connection address of the stream */
    int family;          /* AF_INET or AF_INET6 */
    uint16_t port;
    int direction; /* the far end's, SIP_SDP_* */
    int hold;      /* the far end put us on hold (sendonly, inactive, 0.0.0.0) */
    unsigned nmedia;
    sip_sdp_media_t media[SIP_SDP_MAX_MEDIA];
    char error[128]; /* why it is not usable */
} sip_sdp_t;

/* Parses an offer or answer.  Returns 0 (check out->usable) or -1 when the body is not SDP
 * (out->error says why). */
int sip_sdp_parse(const char *body, size_t len, sip_sdp_t *out);

/* Fills addr (for cvx_rtp_remote_t) from a parsed description.  Returns 0 or -1. */
int sip_sdp_remote_addr(const sip_sdp_t *sdp, struct sockaddr_storage *addr);

/* Writes the answer to a usable offer: our stream on the chosen line, the other lines
 * rejected (port 0).  local_addr is an IPv4 or IPv6 literal.  Returns the length, or -1 when
 * buf is too small. */
int sip_sdp_answer(const sip_sdp_t *offer, const char *local_addr, uint16_t port, uint64_t sess_id,
                   uint64_t version, char *buf, size_t size);

/* Writes an offer (PCMU, PCMA, telephone-event 101); hold offers sendonly. */
int sip_sdp_offer(const char *local_addr, uint16_t port, uint64_t sess_id, uint64_t version,
                  int hold, char *buf, size_t size);

#endif

/*
 * Declarations shared by the media core's own files (core/media/); not for modules.
 */
#ifndef CVX_MEDIA_IMPL_H
#define CVX_MEDIA_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* A random 32-bit number for SSRCs, initial sequence numbers and timestamps (RFC 3550 5.1):
 * from getrandom() once, then a xorshift generator.  Not for secrets. */
uint32_t cvx__media_random32(void);

/* G.711 (alaw 1: A-law, 0: mu-law) by table, exactly as spandsp converts. */
void cvx__g711_encode(int alaw, const int16_t *in, uint8_t *out, unsigned n);
void cvx__g711_decode(int alaw, const uint8_t *in, int16_t *out, unsigned n);

/* Options of [media]; defaults in force when there is no daemon (tests). */
typedef struct cvx__media_conf {
    long long silence_threshold_dbm0;
    long long silence_hangover_ms;
    int loop_priority; /* 0 normal, 1 high, 2 realtime */
} cvx__media_conf_t;
extern cvx__media_conf_t cvx__media_conf;

/* Registers the [media] section, the media core's shutdown hook and its shell commands
 * ("show media", "show calls media").  callvoxd's main() calls it before cvx_daemon_main(). */
int cvx__media_setup(void);

struct cvx_rtp;
/* "addr:port" of the media source (latched) or of the SDP address; for "show calls media". */
void cvx__rtp_remote_str(const struct cvx_rtp *rtp, char *buf, size_t size);

#endif

/*
 * Declarations shared by the media core's own files (core/media/); not for modules.
 */
#ifndef CVX_MEDIA_IMPL_H
#define CVX_MEDIA_IMPL_H

#include <stdint.h>

/* A random 32-bit number for SSRCs, initial sequence numbers and timestamps (RFC 3550 5.1):
 * from getrandom() once, then a xorshift generator.  Not for secrets. */
uint32_t cvx__media_random32(void);

#endif

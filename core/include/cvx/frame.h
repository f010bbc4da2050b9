/*
 * Media frames.  Inside the core, media moves in frames of (usually) 20 ms that carry their
 * own sample rate and encoding, so that wideband (16 kHz, G.722) can be added without
 * changing any interface.
 */
#ifndef CVX_FRAME_H
#define CVX_FRAME_H

#include <stdint.h>

typedef enum cvx_codec {
    CVX_CODEC_L16 = 0, /* signed 16-bit linear, host byte order */
    CVX_CODEC_PCMU = 1,
    CVX_CODEC_PCMA = 2,
} cvx_codec_t;

typedef struct cvx_frame {
    uint32_t rate; /* samples per second: 8000 today */
    cvx_codec_t codec;
    uint32_t samples;    /* samples in this frame (160 for 20 ms at 8 kHz) */
    uint32_t len;        /* bytes at data */
    uint64_t ts;         /* media timestamp in samples, from the sender's clock */
    const uint8_t *data; /* valid only during the call that passes the frame */
} cvx_frame_t;

const char *cvx_codec_name(cvx_codec_t codec);

#endif

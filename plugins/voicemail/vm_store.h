/*
 * The store's interface for the voicemail module.
 *
 * cvx/store.h and cvx/frame.h both declare a type named cvx_codec_t (the store's codecs of
 * stored audio, the media core's codecs of frames), so one translation unit cannot include
 * both as they are.  The enumerators differ (CVX_CODEC_PCM16/ULAW/ALAW against
 * CVX_CODEC_L16/PCMU/PCMA), so renaming the store's type while its header is read is enough.
 */
#ifndef VM_STORE_H
#define VM_STORE_H

#define cvx_codec   cvx_store_codec
#define cvx_codec_t cvx_store_codec_t
#include "cvx/store.h"
#undef cvx_codec
#undef cvx_codec_t

#endif

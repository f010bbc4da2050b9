/*
 * The store's interface for the attendant.
 *
 * cvx/store.h and cvx/frame.h both declare a type named cvx_codec_t; as in the voicemail
 * module (vm_store.h), the store's type is renamed while its header is read.
 */
#ifndef ATT_STORE_H
#define ATT_STORE_H

#define cvx_codec   cvx_store_codec
#define cvx_codec_t cvx_store_codec_t
#include "cvx/store.h"
#undef cvx_codec
#undef cvx_codec_t

#endif

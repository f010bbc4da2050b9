/* callvox-license: what the subcommands share. */
#ifndef CVX_LICENSE_TOOL_H
#define CVX_LICENSE_TOOL_H

#include <stddef.h>

#include "cvx/license.h"

/* Reads a file (at most 64 KiB) into a NUL-terminated buffer; prints why it cannot. */
char *lt_read_file(const char *path, size_t *len);
/* Reads a secret key file; prints why it cannot.  Returns 0 or -1. */
int lt_load_secret(const char *path, unsigned char sk[CVX_LICENSE_SK_BYTES]);
/* callvox-license serve ... */
int lt_serve(int argc, char **argv);

#endif

/* The one table of callvox error texts. */
#include <errno.h>
#include <string.h>

#include "cvx/error.h"

const char *cvx_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define CVX_ERR_CASE(name, val, text)                                                              \
    case val:                                                                                      \
        return text;
        CVX_ERRNO_MAP(CVX_ERR_CASE)
#undef CVX_ERR_CASE
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

int cvx_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return 0;
    case ENOMEM:
        return CVX_ENOMEM;
    case ENOENT:
        return CVX_ENOTFOUND;
    case EEXIST:
        return CVX_EEXIST;
    case EACCES:
    case EPERM:
        return CVX_EPERM;
    case ENOSPC:
    case EDQUOT:
        return CVX_EFULL;
    case EINVAL:
        return CVX_EINVAL;
    case EBUSY:
    case EADDRINUSE:
        return CVX_EBUSY;
    case ETIMEDOUT:
        return CVX_ETIMEOUT;
    default:
        return CVX_EIO;
    }
}

/*
 * callvox error codes.
 *
 * Every function that can fail returns 0 or one negative CVX_E* code from this table.
 * Library errors (errno, libuv, LMDB, Sofia-SIP) are translated at the boundary of the code
 * that calls the library; they never travel further.  cvx_strerror() never returns NULL.
 */
#ifndef CVX_ERROR_H
#define CVX_ERROR_H

#define CVX_ERRNO_MAP(X)                                                                           \
    X(INVAL, -20001, "invalid argument")                                                           \
    X(NOMEM, -20002, "out of memory")                                                              \
    X(NOTFOUND, -20003, "not found")                                                               \
    X(UNAVAIL, -20004, "service unavailable")                                                      \
    X(FULL, -20005, "storage full")                                                                \
    X(EXIST, -20006, "already exists")                                                             \
    X(IO, -20007, "input/output error")                                                            \
    X(PARSE, -20008, "syntax error")                                                               \
    X(RANGE, -20009, "value out of range")                                                         \
    X(ABI, -20010, "incompatible module ABI")                                                      \
    X(DECLINED, -20011, "module declined to load")                                                 \
    X(NOTSUP, -20012, "operation not supported")                                                   \
    X(BUSY, -20013, "resource busy")                                                               \
    X(PERM, -20014, "permission denied")                                                           \
    X(STATE, -20015, "wrong state for this operation")                                             \
    X(TIMEOUT, -20016, "timed out")                                                                \
    X(CLOSED, -20017, "closed")                                                                    \
    X(PROTO, -20018, "protocol error")                                                             \
    X(LIMIT, -20019, "limit reached")                                                              \
    X(CORRUPT, -20020, "data corrupt")

enum {
#define CVX_ERR_ENUM(name, val, text) CVX_E##name = (val),
    CVX_ERRNO_MAP(CVX_ERR_ENUM)
#undef CVX_ERR_ENUM
};

/* Returns a static English description of err (a CVX_E* code, or a negative errno). */
const char *cvx_strerror(int err);

/* Translates a positive errno value to a CVX_E* code. */
int cvx_from_errno(int errnum);

#endif

/* Display names of the enumerations in the public headers. */
#include "cvx/chan.h"
#include "cvx/frame.h"

const char *cvx_codec_name(cvx_codec_t codec)
{
    switch (codec) {
    case CVX_CODEC_L16:
        return "L16";
    case CVX_CODEC_PCMU:
        return "PCMU";
    case CVX_CODEC_PCMA:
        return "PCMA";
    }
    return "?";
}

const char *cvx_redirect_name(cvx_redirect_t r)
{
    static const char *const names[] = {"none",          "unknown",    "busy",        "no-answer",
                                        "unconditional", "deflection", "unavailable", "dnd",
                                        "time-of-day",   "away"};
    if ((unsigned)r < sizeof(names) / sizeof(names[0]))
        return names[r];
    return "?";
}

const char *cvx_cause_name(cvx_cause_t c)
{
    switch (c) {
    case CVX_CAUSE_NORMAL:
        return "normal";
    case CVX_CAUSE_BUSY:
        return "busy";
    case CVX_CAUSE_NO_ANSWER:
        return "no-answer";
    case CVX_CAUSE_REJECTED:
        return "rejected";
    case CVX_CAUSE_UNALLOCATED:
        return "unallocated";
    case CVX_CAUSE_NO_ROUTE:
        return "no-route";
    case CVX_CAUSE_CONGESTION:
        return "congestion";
    case CVX_CAUSE_TEMP_FAILURE:
        return "temporary-failure";
    case CVX_CAUSE_MEDIA_TIMEOUT:
        return "media-timeout";
    case CVX_CAUSE_SHUTDOWN:
        return "shutdown";
    }
    return "other";
}

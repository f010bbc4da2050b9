/*
 * Local time in a named zone (cvx/localtime.h), as plugins/voicemail first did it for its
 * envelopes: TZ switched around localtime_r() on the loop thread and put back.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/localtime.h"

void cvx_localtime(time_t t, const char *tz, struct tm *out)
{
    if (tz == NULL || *tz == '\0') {
        localtime_r(&t, out);
        return;
    }
    const char *old = getenv("TZ");
    char *saved = old ? strdup(old) : NULL;
    setenv("TZ", tz, 1);
    tzset();
    localtime_r(&t, out);
    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);
    } else {
        unsetenv("TZ");
    }
    tzset();
}

/*
 * Local time in a named time zone ("Europe/Paris"), for call flows that speak or pick by
 * local time (the attendant's schedules, voicemail's envelopes).
 *
 * glibc has no per-call time zone: TZ is switched around localtime_r() and put back.  Thread:
 * the loop thread only (the only thread of the process that converts local times; the log
 * writes UTC).
 */
#ifndef CVX_LOCALTIME_H
#define CVX_LOCALTIME_H

#include <time.h>

/* The local time of t in zone tz ("" or NULL: the process's zone). */
void cvx_localtime(time_t t, const char *tz, struct tm *out);

#endif

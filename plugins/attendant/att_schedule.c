/*
 * Business hours and holidays: which menu a schedule picks at a given local time.
 *
 * A holiday (a date, or a day of the month every year) takes the holiday menu all day;
 * otherwise the open menu inside an opening period, the closed menu outside.  Periods are
 * minutes of the day in the schedule's time zone, "from" included, "to" excluded; a period
 * that ends at 24:00 covers the rest of the day.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "att.h"
#include "cvx/error.h"
#include "cvx/localtime.h"

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static int day_index(const char *s, size_t n)
{
    for (int i = 0; i < 7; i++)
        if (n == 3 && strncasecmp(s, day_names[i], 3) == 0)
            return i;
    return -1;
}

/* "HH:MM" (00:00 to 24:00) as minutes. */
static int parse_hhmm(const char *s, size_t n)
{
    if (n != 5 || !isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
        !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
        return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

/* Days: "mon-fri", "sat", "mon,wed,fri", "fri-mon" (wrapping over the week end). */
static int parse_days(const char *s, size_t n, unsigned *days)
{
    *days = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        const char *dash = memchr(s + i, '-', j - i);
        if (dash) {
            int a = day_index(s + i, (size_t)(dash - (s + i)));
            int b = day_index(dash + 1, (size_t)(s + j - dash - 1));
            if (a < 0 || b < 0)
                return CVX_EINVAL;
            for (int d = a;; d = (d + 1) % 7) {
                *days |= 1u << d;
                if (d == b)
                    break;
            }
        } else {
            int a = day_index(s + i, j - i);
            if (a < 0)
                return CVX_EINVAL;
            *days |= 1u << a;
        }
        i = j + 1;
    }
    return *days ? 0 : CVX_EINVAL;
}

int att_parse_period(const char *s, att_period_t *out)
{
    const char *sp = strchr(s, ' ');
    if (sp == NULL)
        return CVX_EINVAL;
    if (parse_days(s, (size_t)(sp - s), &out->days) != 0)
        return CVX_EINVAL;
    while (*sp == ' ')
        sp++;
    const char *dash = strchr(sp, '-');
    if (dash == NULL)
        return CVX_EINVAL;
    out->from = parse_hhmm(sp, (size_t)(dash - sp));
    out->to = parse_hhmm(dash + 1, strlen(dash + 1));
    if (out->from < 0 || out->to < 0 || out->to <= out->from)
        return CVX_EINVAL;
    return 0;
}

int att_parse_holiday(const char *s, att_holiday_t *out)
{
    int y = 0, m = 0, d = 0, n = 0;
    size_t len = strlen(s);
    if (len == 10 && sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) == 3 && n == 10) {
        out->year = y;
    } else if (len == 5 && sscanf(s, "%2d-%2d%n", &m, &d, &n) == 2 && n == 5) {
        out->year = 0;
    } else {
        return CVX_EINVAL;
    }
    if (m < 1 || m > 12 || d < 1 || d > 31 || (out->year != 0 && out->year < 1970))
        return CVX_EINVAL;
    out->month = m;
    out->day = d;
    return 0;
}

int att_schedule_pick(const att_schedule_t *s, const struct tm *tm)
{
    for (size_t i = 0; i < s->nholidays; i++) {
        const att_holiday_t *h = &s->holidays[i];
        if ((h->year == 0 || h->year == tm->tm_year + 1900) && h->month == tm->tm_mon + 1 &&
            h->day == tm->tm_mday)
            return s->holiday_menu;
    }
    int minute = tm->tm_hour * 60 + tm->tm_min;
    for (size_t i = 0; i < s->nperiods; i++) {
        const att_period_t *p = &s->periods[i];
        if ((p->days & (1u << tm->tm_wday)) && minute >= p->from && minute < p->to)
            return s->open_menu;
    }
    return s->closed_menu;
}

void att_local_time(time_t t, const char *tz, struct tm *out)
{
    cvx_localtime(t, tz, out);
}

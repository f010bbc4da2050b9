/*
 * The attendant's schedule logic: periods, holidays, which menu a local time picks, and
 * local time in a zone other than the process's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "att.h"
#include "cvx/error.h"

enum { OPEN = 1, CLOSED = 2, HOLIDAY = 3 };

static struct tm local(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_isdst = -1;
    time_t t = timegm(&tm);
    gmtime_r(&t, &tm); /* fills tm_wday */
    return tm;
}

static void test_periods(void **state)
{
    (void)state;
    att_period_t p;
    assert_int_equal(att_parse_period("mon-fri 08:00-17:30", &p), 0);
    assert_int_equal(p.days, 0x3e);
    assert_int_equal(p.from, 480);
    assert_int_equal(p.to, 1050);
    assert_int_equal(att_parse_period("sat 09:00-24:00", &p), 0);
    assert_int_equal(p.days, 0x40);
    assert_int_equal(p.to, 1440);
    assert_int_equal(att_parse_period("sun,tue 10:00-11:00", &p), 0);
    assert_int_equal(p.days, 0x05);
    assert_int_equal(att_parse_period("fri-mon 10:00-11:00", &p), 0); /* over the week end */
    assert_int_equal(p.days, 0x63);
    assert_int_equal(att_parse_period("MON 10:00-11:00", &p), 0);
    assert_int_equal(p.days, 0x02);
    assert_int_equal(att_parse_period("someday 08:00-09:00", &p), CVX_EINVAL);
    assert_int_equal(att_parse_period("mon 09:00-08:00", &p), CVX_EINVAL);
    assert_int_equal(att_parse_period("mon 9:00-10:00", &p), CVX_EINVAL);
    assert_int_equal(att_parse_period("mon 08:60-10:00", &p), CVX_EINVAL);
    assert_int_equal(att_parse_period("mon 24:01-24:30", &p), CVX_EINVAL);
    assert_int_equal(att_parse_period("mon", &p), CVX_EINVAL);
}

static void test_holidays(void **state)
{
    (void)state;
    att_holiday_t h;
    assert_int_equal(att_parse_holiday("2026-12-25", &h), 0);
    assert_int_equal(h.year, 2026);
    assert_int_equal(h.month, 12);
    assert_int_equal(h.day, 25);
    assert_int_equal(att_parse_holiday("01-01", &h), 0);
    assert_int_equal(h.year, 0);
    assert_int_equal(att_parse_holiday("2026-13-01", &h), CVX_EINVAL);
    assert_int_equal(att_parse_holiday("12/25", &h), CVX_EINVAL);
    assert_int_equal(att_parse_holiday("2026-12-25x", &h), CVX_EINVAL);
}

static void test_pick(void **state)
{
    (void)state;
    att_period_t periods[2];
    assert_int_equal(att_parse_period("mon-fri 08:00-12:00", &periods[0]), 0);
    assert_int_equal(att_parse_period("mon-fri 13:00-17:30", &periods[1]), 0);
    att_holiday_t hol[2];
    assert_int_equal(att_parse_holiday("12-25", &hol[0]), 0);
    assert_int_equal(att_parse_holiday("2026-11-26", &hol[1]), 0);
    att_schedule_t s = {0};
    s.periods = periods;
    s.nperiods = 2;
    s.holidays = hol;
    s.nholidays = 2;
    s.open_menu = OPEN;
    s.closed_menu = CLOSED;
    s.holiday_menu = HOLIDAY;

    struct tm tm = local(2026, 11, 25, 8, 0); /* Wednesday, opening minute */
    assert_int_equal(att_schedule_pick(&s, &tm), OPEN);
    tm = local(2026, 11, 25, 7, 59);
    assert_int_equal(att_schedule_pick(&s, &tm), CLOSED);
    tm = local(2026, 11, 25, 12, 30); /* lunch */
    assert_int_equal(att_schedule_pick(&s, &tm), CLOSED);
    tm = local(2026, 11, 25, 17, 29);
    assert_int_equal(att_schedule_pick(&s, &tm), OPEN);
    tm = local(2026, 11, 25, 17, 30); /* the end is excluded */
    assert_int_equal(att_schedule_pick(&s, &tm), CLOSED);
    tm = local(2026, 11, 28, 10, 0); /* Saturday */
    assert_int_equal(att_schedule_pick(&s, &tm), CLOSED);
    tm = local(2026, 11, 26, 10, 0); /* a dated holiday on a Thursday */
    assert_int_equal(att_schedule_pick(&s, &tm), HOLIDAY);
    tm = local(2027, 11, 26, 10, 0); /* the same date a year later is a working Friday */
    assert_int_equal(att_schedule_pick(&s, &tm), OPEN);
    tm = local(2031, 12, 25, 10, 0); /* every year */
    assert_int_equal(att_schedule_pick(&s, &tm), HOLIDAY);
}

static void test_local_time(void **state)
{
    (void)state;
    time_t t = 1795617000; /* 2026-11-25 14:30 UTC */
    struct tm tm;
    att_local_time(t, "America/New_York", &tm);
    assert_int_equal(tm.tm_hour, 9);
    assert_int_equal(tm.tm_min, 30);
    att_local_time(t, "Asia/Tokyo", &tm);
    assert_int_equal(tm.tm_hour, 23);
    assert_int_equal(tm.tm_mday, 25);
    att_local_time(t, "Pacific/Kiritimati", &tm); /* UTC+14: already the next day */
    assert_int_equal(tm.tm_mday, 26);
    assert_int_equal(tm.tm_hour, 4);
    /* The process's zone is put back. */
    setenv("TZ", "UTC", 1);
    att_local_time(t, "Europe/Paris", &tm);
    assert_string_equal(getenv("TZ"), "UTC");
    att_local_time(t, NULL, &tm);
    assert_int_equal(tm.tm_hour, 14);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_periods),
        cmocka_unit_test(test_holidays),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_local_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

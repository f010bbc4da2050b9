/*
 * English: numbers, digits, dates, times and durations as lists of prompts.
 *
 * Other languages get a file of their own with the same functions (word order and
 * agreement differ too much to share code); the mailbox's language picks it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvx/localtime.h"
#include "vm.h"

void vm_say_number(vm_list_t *l, unsigned long n)
{
    char name[16];
    if (n >= 1000000) { /* mailbox counts never get there; say the digits */
        char num[24];
        snprintf(num, sizeof(num), "%lu", n);
        vm_say_digits(l, num);
        return;
    }
    if (n >= 1000) {
        vm_say_number(l, n / 1000);
        vm_add(l, "thousand");
        n %= 1000;
        if (n == 0)
            return;
    }
    if (n >= 100) {
        snprintf(name, sizeof(name), "digit-%lu", n / 100);
        vm_add(l, name);
        vm_add(l, "hundred");
        n %= 100;
        if (n == 0)
            return;
    }
    if (n >= 20) {
        snprintf(name, sizeof(name), "digit-%lu", n / 10 * 10);
        vm_add(l, name);
        n %= 10;
        if (n == 0)
            return;
    }
    snprintf(name, sizeof(name), "digit-%lu", n);
    vm_add(l, name);
}

void vm_say_digits(vm_list_t *l, const char *digits)
{
    for (const char *p = digits; *p; p++) {
        char name[16];
        if (*p >= '0' && *p <= '9') {
            snprintf(name, sizeof(name), "digit-%c", *p);
            vm_add(l, name);
        } else if (*p == '*') {
            vm_add(l, "star");
        } else if (*p == '#') {
            vm_add(l, "pound");
        }
    }
}

/* Local time of t in time zone tz ("" or NULL: the site's, vm_conf.timezone, else the
 * process's); cvx/localtime.h switches TZ around localtime_r on the loop thread. */
static void local_tm(time_t t, const char *tz, struct tm *out)
{
    if ((tz == NULL || *tz == '\0') && vm_conf.timezone)
        tz = vm_conf.timezone;
    cvx_localtime(t, tz, out);
}

static void say_time(vm_list_t *l, const struct tm *tm)
{
    int h = tm->tm_hour % 12;
    vm_say_number(l, (unsigned long)(h == 0 ? 12 : h));
    if (tm->tm_min == 0) {
        vm_add(l, "oclock");
    } else {
        if (tm->tm_min < 10)
            vm_add(l, "oh");
        vm_say_number(l, (unsigned long)tm->tm_min);
    }
    vm_add(l, tm->tm_hour < 12 ? "a-m" : "p-m");
}

void vm_say_datetime(vm_list_t *l, uint64_t utc_ms, uint64_t now_ms, const char *tz)
{
    struct tm when, now;
    local_tm((time_t)(utc_ms / 1000), tz, &when);
    local_tm((time_t)(now_ms / 1000), tz, &now);
    struct tm yest;
    local_tm((time_t)(now_ms / 1000) - 86400, tz, &yest);
    char name[16];
    if (when.tm_year == now.tm_year && when.tm_yday == now.tm_yday) {
        vm_add(l, "today");
    } else if (when.tm_year == yest.tm_year && when.tm_yday == yest.tm_yday) {
        vm_add(l, "yesterday");
    } else {
        snprintf(name, sizeof(name), "day-%d", when.tm_wday);
        vm_add(l, name);
        snprintf(name, sizeof(name), "mon-%d", when.tm_mon);
        vm_add(l, name);
        vm_say_number(l, (unsigned long)when.tm_mday);
    }
    vm_add(l, "at");
    say_time(l, &when);
}

void vm_say_duration(vm_list_t *l, uint32_t ms)
{
    uint32_t s = (ms + 500) / 1000;
    uint32_t m = s / 60;
    s %= 60;
    if (m > 0) {
        vm_say_number(l, m);
        vm_add(l, m == 1 ? "minute" : "minutes");
    }
    if (s > 0 || m == 0) {
        vm_say_number(l, s);
        vm_add(l, s == 1 ? "second" : "seconds");
    }
}

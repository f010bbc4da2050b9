/*
 * Redirect information: Diversion, History-Info and RFC 4458 voicemail URIs.
 *
 * The parser works on borrowed slices of the header text (pointer and length) and copies only
 * into the caller's fixed-size fields, so a hostile value can make it give up but never
 * overrun anything.  See sip_redirect.h for the precedence rules.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sip_redirect.h"

typedef struct slice {
    const char *p;
    size_t n;
} slice_t;

/* One name-addr with its header parameters. */
typedef struct entry {
    slice_t uri;    /* inside <...>, or the addr-spec */
    slice_t params; /* after the URI: ";a=b;c" */
} entry_t;

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static slice_t trim(slice_t s)
{
    while (s.n > 0 && is_ws(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n > 0 && is_ws(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* Skips a quoted string starting at s[i] == '"'; returns the index after its closing quote, or
 * n when it never closes. */
static size_t skip_quoted(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n)
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

/* Splits a header value at commas outside quotes and angle brackets.  Returns the count. */
static size_t split_values(const char *s, size_t n, slice_t *out, size_t max)
{
    size_t count = 0, start = 0, i = 0;
    int angle = 0;
    while (i < n && count < max) {
        char c = s[i];
        if (c == '"') {
            i = skip_quoted(s, i, n);
            continue;
        }
        if (c == '<')
            angle = 1;
        else if (c == '>')
            angle = 0;
        else if (c == ',' && !angle) {
            slice_t v = trim((slice_t){s + start, i - start});
            if (v.n > 0)
                out[count++] = v;
            start = i + 1;
        }
        i++;
    }
    if (count < max) {
        slice_t v = trim((slice_t){s + start, (i < n ? i : n) - start});
        if (v.n > 0)
            out[count++] = v;
    }
    return count;
}

/* Parses [display-name] <uri> *(;param) or a bare addr-spec.  Returns 0 or -1. */
static int parse_entry(slice_t v, entry_t *e)
{
    const char *s = v.p;
    size_t n = v.n, i = 0;
    while (i < n && is_ws(s[i]))
        i++;
    if (i < n && s[i] == '"')
        i = skip_quoted(s, i, n);
    /* Look for '<' before any ';' (a display name made of tokens may precede it). */
    size_t lt = i;
    while (lt < n && s[lt] != '<' && s[lt] != ';')
        lt++;
    if (lt < n && s[lt] == '<') {
        size_t gt = lt + 1;
        while (gt < n && s[gt] != '>')
            gt++;
        if (gt >= n)
            return -1;
        e->uri = trim((slice_t){s + lt + 1, gt - lt - 1});
        e->params = (slice_t){s + gt + 1, n - gt - 1};
    } else {
        size_t semi = i;
        while (semi < n && s[semi] != ';')
            semi++;
        e->uri = trim((slice_t){s + i, semi - i});
        e->params = (slice_t){s + semi, n - semi};
    }
    return e->uri.n > 0 ? 0 : -1;
}

static void copy_unquoted(slice_t v, char *out, size_t size)
{
    v = trim(v);
    if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
        v.p++;
        v.n -= 2;
    }
    size_t k = 0;
    for (size_t i = 0; i < v.n && k + 1 < size; i++) {
        if (v.p[i] == '\\' && i + 1 < v.n)
            i++;
        out[k++] = v.p[i];
    }
    out[k] = '\0';
}

/* Finds ";name[=value]" in a parameter list; returns 1 with the value copied ("" when the
 * parameter has none), 0 when absent. */
static int get_param(slice_t params, char sep, const char *name, char *out, size_t size)
{
    const char *s = params.p;
    size_t n = params.n, i = 0, nlen = strlen(name);
    out[0] = '\0';
    while (i < n) {
        while (i < n && (s[i] == sep || is_ws(s[i])))
            i++;
        size_t start = i;
        while (i < n && s[i] != sep) {
            if (s[i] == '"')
                i = skip_quoted(s, i, n);
            else
                i++;
        }
        slice_t p = trim((slice_t){s + start, i - start});
        size_t eq = 0;
        while (eq < p.n && p.p[eq] != '=')
            eq++;
        slice_t key = trim((slice_t){p.p, eq});
        if (key.n == nlen && strncasecmp(key.p, name, nlen) == 0) {
            if (eq < p.n)
                copy_unquoted((slice_t){p.p + eq + 1, p.n - eq - 1}, out, size);
            return 1;
        }
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* %-unescapes in place; an escaped NUL ends nothing (it is dropped). */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r != '\0'; r++) {
        if (r[0] == '%' && r[1] != '\0' && r[2] != '\0' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            char c = (char)(hexval(r[1]) * 16 + hexval(r[2]));
            r += 2;
            if (c != '\0')
                *w++ = c;
            continue;
        }
        *w++ = *r;
    }
    *w = '\0';
}

static size_t scheme_len(const char *u, size_t n)
{
    if (n >= 4 && strncasecmp(u, "sip:", 4) == 0)
        return 4;
    if (n >= 5 && strncasecmp(u, "sips:", 5) == 0)
        return 5;
    if (n >= 4 && strncasecmp(u, "tel:", 4) == 0)
        return 4;
    return 0;
}

int sip_uri_number(const char *uri, size_t len, char *out, size_t size)
{
    if (size == 0)
        return -1;
    out[0] = '\0';
    slice_t u = trim((slice_t){uri, len});
    size_t sl = scheme_len(u.p, u.n);
    if (sl == 0)
        return -1;
    int tel = sl == 4 && strncasecmp(u.p, "tel:", 4) == 0;
    size_t i = sl;
    while (i < u.n && is_ws(u.p[i]))
        i++;
    size_t end;
    if (tel) {
        end = i;
        while (end < u.n && u.p[end] != ';' && u.p[end] != '?')
            end++;
    } else {
        /* The user part ends at '@'; without one there is no user (a host-only URI). */
        size_t at = i;
        while (at < u.n && u.p[at] != '@' && u.p[at] != '?' && u.p[at] != '>')
            at++;
        if (at >= u.n || u.p[at] != '@')
            return 0;
        end = i;
        while (end < at && u.p[end] != ';')
            end++;
    }
    char buf[CVX_NUMBER_MAX * 3];
    size_t n = end - i;
    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, u.p + i, n);
    buf[n] = '\0';
    unescape(buf);
    /* Visual separators of telephone numbers (RFC 3966) are not part of the number. */
    int phone = buf[0] == '+' || isdigit((unsigned char)buf[0]);
    size_t k = 0;
    for (size_t j = 0; buf[j] != '\0' && k + 1 < size; j++) {
        char c = buf[j];
        if (phone && (c == '-' || c == '.' || c == '(' || c == ')'))
            continue;
        if ((unsigned char)c < 0x20 || c == 0x7f)
            continue;
        out[k++] = c;
    }
    out[k] = '\0';
    return 0;
}

/* The parameters of a URI (after the host, before '?') or its headers (after '?'). */
static slice_t uri_params(slice_t u)
{
    size_t i = 0;
    for (size_t j = 0; j < u.n && u.p[j] != '?'; j++)
        if (u.p[j] == '@')
            i = j;
    while (i < u.n && u.p[i] != ';' && u.p[i] != '?')
        i++;
    size_t end = i;
    while (end < u.n && u.p[end] != '?')
        end++;
    return (slice_t){u.p + i, end - i};
}

static slice_t uri_headers(slice_t u)
{
    size_t q = 0;
    while (q < u.n && u.p[q] != '?')
        q++;
    if (q >= u.n)
        return (slice_t){u.p + u.n, 0};
    return (slice_t){u.p + q + 1, u.n - q - 1};
}

static int parse_status(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 100 || v > 699)
        return 0;
    return (int)v;
}

/* The cause of a "Reason=SIP;cause=302;text=..." URI header, or 0. */
static int uri_reason_cause(slice_t u)
{
    char reason[256];
    if (!get_param(uri_headers(u), '&', "Reason", reason, sizeof(reason)))
        return 0;
    unescape(reason);
    if (strncasecmp(reason, "SIP", 3) != 0)
        return 0;
    char cause[16];
    slice_t p = {reason + 3, strlen(reason + 3)};
    if (!get_param(p, ';', "cause", cause, sizeof(cause)))
        return 0;
    return parse_status(cause);
}

cvx_redirect_t sip_diversion_reason(const char *token, size_t len)
{
    static const struct {
        const char *name;
        cvx_redirect_t r;
    } map[] = {
        {"unknown", CVX_REDIRECT_UNKNOWN},
        {"user-busy", CVX_REDIRECT_BUSY},
        {"no-answer", CVX_REDIRECT_NO_ANSWER},
        {"unavailable", CVX_REDIRECT_UNAVAILABLE},
        {"unconditional", CVX_REDIRECT_UNCONDITIONAL},
        {"time-of-day", CVX_REDIRECT_TIME_OF_DAY},
        {"do-not-disturb", CVX_REDIRECT_DND},
        {"deflection", CVX_REDIRECT_DEFLECTION},
        {"follow-me", CVX_REDIRECT_UNCONDITIONAL},
        {"out-of-service", CVX_REDIRECT_UNAVAILABLE},
        {"away", CVX_REDIRECT_AWAY},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i].name) == len && strncasecmp(map[i].name, token, len) == 0)
            return map[i].r;
    return CVX_REDIRECT_UNKNOWN;
}

cvx_redirect_t sip_cause_redirect(int cause)
{
    switch (cause) {
    case 404:
        return CVX_REDIRECT_UNKNOWN;
    case 486:
    case 600:
        return CVX_REDIRECT_BUSY;
    case 408:
        return CVX_REDIRECT_NO_ANSWER;
    case 302:
        return CVX_REDIRECT_UNCONDITIONAL;
    case 487:
    case 480:
        return CVX_REDIRECT_DEFLECTION;
    case 503:
        return CVX_REDIRECT_UNAVAILABLE;
    default:
        /* RFC 4458 section 2: anything without a mapping counts as unconditional. */
        return CVX_REDIRECT_UNCONDITIONAL;
    }
}

/* Collects the entries of several header values. */
static size_t collect(const char *const *vals, size_t nvals, entry_t *out, size_t max)
{
    size_t count = 0;
    for (size_t h = 0; h < nvals && count < max; h++) {
        if (vals[h] == NULL)
            continue;
        size_t len = strnlen(vals[h], SIP_REDIR_MAX_VALUE);
        slice_t parts[SIP_REDIR_MAX_ENTRIES];
        size_t np = split_values(vals[h], len, parts, SIP_REDIR_MAX_ENTRIES);
        for (size_t i = 0; i < np && count < max; i++)
            if (parse_entry(parts[i], &out[count]) == 0)
                count++;
    }
    return count;
}

static int from_diversion(const sip_redirect_in_t *in, cvx_call_info_t *info)
{
    entry_t e[SIP_REDIR_MAX_ENTRIES];
    size_t n = collect(in->diversion, in->ndiversion, e, SIP_REDIR_MAX_ENTRIES);
    if (n == 0)
        return 0;
    /* The top-most entry is the last diversion, the bottom-most the first. */
    const entry_t *pick = in->pick_last ? &e[0] : &e[n - 1];
    char num[CVX_NUMBER_MAX];
    if (sip_uri_number(pick->uri.p, pick->uri.n, num, sizeof(num)) != 0) {
        /* Liberal: "user@host" without a scheme. */
        size_t at = 0;
        while (at < pick->uri.n && pick->uri.p[at] != '@')
            at++;
        size_t k = at < sizeof(num) ? at : sizeof(num) - 1;
        memcpy(num, pick->uri.p, k);
        num[k] = '\0';
    }
    snprintf(info->original_called, sizeof(info->original_called), "%s", num);
    char reason[64];
    if (get_param(pick->params, ';', "reason", reason, sizeof(reason)))
        info->redirect = sip_diversion_reason(reason, strlen(reason));
    else
        info->redirect = CVX_REDIRECT_UNKNOWN;
    unsigned count = 0;
    for (size_t i = 0; i < n; i++) {
        char c[8];
        long v = 1;
        if (get_param(e[i].params, ';', "counter", c, sizeof(c))) {
            v = strtol(c, NULL, 10);
            if (v < 1 || v > 99)
                v = 1;
        }
        count += (unsigned)v;
    }
    info->redirect_count = count;
    return 1;
}

/* RFC 4458: "target=" and "cause=" in a URI.  Returns 1 when target is there. */
static int from_target(slice_t uri, cvx_call_info_t *info)
{
    char target[512];
    if (!get_param(uri_params(uri), ';', "target", target, sizeof(target)) || target[0] == '\0')
        return 0;
    unescape(target);
    char num[CVX_NUMBER_MAX];
    if (sip_uri_number(target, strlen(target), num, sizeof(num)) != 0) {
        /* A bare user ("helpdesk@example.com") or number. */
        size_t at = strcspn(target, "@;");
        target[at] = '\0';
        snprintf(num, sizeof(num), "%.*s", (int)sizeof(num) - 1, target);
    }
    snprintf(info->original_called, sizeof(info->original_called), "%s", num);
    char cause[16];
    int c =
        get_param(uri_params(uri), ';', "cause", cause, sizeof(cause)) ? parse_status(cause) : 0;
    info->redirect = c ? sip_cause_redirect(c) : CVX_REDIRECT_UNKNOWN;
    info->redirect_count = 1;
    return 1;
}

typedef struct hi_entry {
    entry_t e;
    char index[64];
    int rc; /* an "rc" entry: the same target reached at a contact */
} hi_entry_t;

static int index_descends(const char *idx, const char *parent)
{
    size_t n = strlen(parent);
    return n > 0 && strncmp(idx, parent, n) == 0 && idx[n] == '.';
}

static int from_history(const sip_redirect_in_t *in, cvx_call_info_t *info)
{
    entry_t raw[SIP_REDIR_MAX_ENTRIES];
    size_t n = collect(in->history, in->nhistory, raw, SIP_REDIR_MAX_ENTRIES);
    if (n == 0)
        return 0;
    hi_entry_t hi[SIP_REDIR_MAX_ENTRIES];
    size_t targets[SIP_REDIR_MAX_ENTRIES], nt = 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[8];
        hi[i].e = raw[i];
        get_param(raw[i].params, ';', "index", hi[i].index, sizeof(hi[i].index));
        hi[i].rc = get_param(raw[i].params, ';', "rc", tmp, sizeof(tmp));
        if (!hi[i].rc)
            targets[nt++] = i;
    }
    if (nt == 0)
        return 0;
    /* The last target entry is the one that reached us. */
    const hi_entry_t *us = &hi[targets[nt - 1]];
    if (!in->pick_last && from_target(us->e.uri, info))
        return 1;
    if (nt < 2)
        return from_target(us->e.uri, info);
    size_t xi = in->pick_last ? nt - 2 : 0;
    const hi_entry_t *x = &hi[targets[xi]];
    char num[CVX_NUMBER_MAX];
    if (sip_uri_number(x->e.uri.p, x->e.uri.n, num, sizeof(num)) != 0)
        num[0] = '\0';
    snprintf(info->original_called, sizeof(info->original_called), "%s", num);
    /* Why it left x: a Reason in x or in an entry below it, else the cause= of the entry it
     * was retargeted to. */
    int cause = 0;
    for (size_t i = targets[xi]; i < n && cause == 0; i++)
        if (&hi[i] == x || index_descends(hi[i].index, x->index))
            cause = uri_reason_cause(hi[i].e.uri);
    if (cause == 0) {
        char c[16];
        const hi_entry_t *next = &hi[targets[xi + 1]];
        if (get_param(uri_params(next->e.uri), ';', "cause", c, sizeof(c)))
            cause = parse_status(c);
    }
    info->redirect = cause ? sip_cause_redirect(cause) : CVX_REDIRECT_UNKNOWN;
    info->redirect_count = (unsigned)(nt - 1);
    return 1;
}

sip_redirect_source_t sip_redirect_parse(const sip_redirect_in_t *in, cvx_call_info_t *info)
{
    info->original_called[0] = '\0';
    info->redirect = CVX_REDIRECT_NONE;
    info->redirect_count = 0;
    if (in->ndiversion > 0 && from_diversion(in, info))
        return SIP_REDIR_SRC_DIVERSION;
    /* The first redirection: an RFC 4458 voicemail URI names it explicitly.  The last one is
     * only in History-Info. */
    slice_t u = {in->ruri, in->ruri ? strnlen(in->ruri, SIP_REDIR_MAX_VALUE) : 0};
    if (!in->pick_last && in->ruri != NULL && from_target(u, info))
        return SIP_REDIR_SRC_RURI;
    if (in->nhistory > 0 && from_history(in, info))
        return SIP_REDIR_SRC_HISTORY;
    if (in->ruri != NULL && from_target(u, info))
        return SIP_REDIR_SRC_RURI;
    info->original_called[0] = '\0';
    info->redirect = CVX_REDIRECT_NONE;
    info->redirect_count = 0;
    return SIP_REDIR_SRC_NONE;
}

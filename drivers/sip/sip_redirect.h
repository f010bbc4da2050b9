/*
 * Redirect information from SIP requests: Diversion (RFC 5806), History-Info (RFC 7044, with
 * the voicemail conventions of RFC 7131) and the RFC 4458 voicemail URI parameters
 * (target= and cause= in the Request-URI).
 *
 * Pure string code with no Sofia-SIP dependency, so the unit tests can feed it the RFC
 * examples directly.  Every input is treated as hostile: values are bounded (at most
 * SIP_REDIR_MAX_ENTRIES entries, SIP_REDIR_MAX_VALUE bytes per header value are looked at),
 * nothing is written past the output buffers, and a value that does not parse is skipped.
 */
#ifndef SIP_REDIRECT_H
#define SIP_REDIRECT_H

#include <stddef.h>

#include "cvx/chan.h"

#define SIP_REDIR_MAX_ENTRIES 32
#define SIP_REDIR_MAX_VALUE   4096

typedef struct sip_redirect_in {
    const char *ruri;             /* the Request-URI as text; may be NULL */
    const char *const *diversion; /* Diversion header values, top-most first */
    size_t ndiversion;
    const char *const *history; /* History-Info header values, in message order */
    size_t nhistory;
    int pick_last; /* 0: the first redirection picks the mailbox; 1: the last */
} sip_redirect_in_t;

/* Which source gave the answer (for logs and tests). */
typedef enum sip_redirect_source {
    SIP_REDIR_SRC_NONE = 0,
    SIP_REDIR_SRC_DIVERSION,
    SIP_REDIR_SRC_HISTORY,
    SIP_REDIR_SRC_RURI,
} sip_redirect_source_t;

/*
 * Fills info->original_called, info->redirect and info->redirect_count from in.  Diversion
 * wins; then, for the first redirection, the Request-URI's RFC 4458 target/cause and then
 * History-Info; for the last, History-Info and then the target/cause.  A direct call leaves
 * the three fields at "", CVX_REDIRECT_NONE and 0.  Returns the source used.
 */
sip_redirect_source_t sip_redirect_parse(const sip_redirect_in_t *in, cvx_call_info_t *info);

/* The number (user part) of a sip:, sips: or tel: URI, %-unescaped, with tel visual
 * separators removed; "" when there is none.  Returns 0, or -1 when uri is no such URI. */
int sip_uri_number(const char *uri, size_t len, char *out, size_t size);

/* Diversion reason token (unquoted) to a redirect reason. */
cvx_redirect_t sip_diversion_reason(const char *token, size_t len);

/* RFC 4458 cause (a SIP status) to a redirect reason. */
cvx_redirect_t sip_cause_redirect(int cause);

#endif

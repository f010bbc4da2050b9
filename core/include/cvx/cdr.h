/*
 * Call records: one record per call, written when the call's channel is freed (so that what
 * a flow finishes after the hang-up, such as a message committed after the caller left, is
 * in it).  The core fills start, answer, end, numbers, redirect information, the driver
 * instance and the hangup cause; call flows add what only they know (which application took
 * the call, the mailbox, the outcome, where the call was transferred).
 *
 * Records are formatted on the loop thread and written by a writer thread of their own (no
 * file I/O on the loop), to a CSV file ([cdr] csv) and/or a JSON-lines file ([cdr] json).
 * A reload (SIGHUP, "reload") reopens both files, so a log rotator may move them away first.
 *
 * Thread: the setters run on the loop thread only.
 */
#ifndef CVX_CDR_H
#define CVX_CDR_H

#include "cvx/chan.h"

/* Outcomes a flow reports (the last one set wins); any short word is accepted. */
#define CVX_CDR_MESSAGE_LEFT    "message-left"   /* a message was committed to a mailbox */
#define CVX_CDR_MESSAGE_FAILED  "message-failed" /* the caller recorded, the store refused */
#define CVX_CDR_LOGIN           "login"          /* a subscriber logged in */
#define CVX_CDR_TRANSFER        "transfer"       /* blind transfer accepted by the PBX */
#define CVX_CDR_TRANSFER_FAILED "transfer-failed"
#define CVX_CDR_OPERATOR        "operator" /* transferred to the operator (asked for, or fallback) */
#define CVX_CDR_VOICEMAIL       "voicemail" /* handed to voicemail (which may set its own outcome) */
#define CVX_CDR_HANGUP          "hangup"    /* the flow ended the call (goodbye) */
/* When no flow set an outcome: "abandoned" (answered, caller left) or "unanswered". */

/* The application that took the call ("voicemail", "attendant"); a call handed on to
 * another application records both ("attendant>voicemail"). */
void cvx_cdr_set_app(cvx_chan_t *chan, const char *app);
/* The mailbox the call was about. */
void cvx_cdr_set_mailbox(cvx_chan_t *chan, const char *mailbox);
void cvx_cdr_set_outcome(cvx_chan_t *chan, const char *outcome);
/* Where the call was transferred to. */
void cvx_cdr_set_transfer(cvx_chan_t *chan, const char *dest);

/* The CSV header line (the documented column order), without the newline. */
const char *cvx_cdr_csv_header(void);

#endif

/*
 * The SIP driver's internals, shared by its files:
 *   sip.c          module descriptor, options, instances, listeners, the nua event dispatch
 *   sip_reactor.c  Sofia-SIP's su_root on the libuv loop (one thread, epoll port)
 *   sip_call.c     calls: INVITE in and out, offer/answer, hold, BYE, CANCEL, REFER, INFO
 *   sip_trust.c    trusted addresses, digest authentication, number mapping
 *   sip_reg.c      registration to a trunk
 *   sip_mwi.c      MWI: NOTIFY (unsolicited or in a subscription), SUBSCRIBE for message-summary
 *   sip_sdp.c, sip_redirect.c  pure parsers (unit-tested)
 *
 * Thread: everything runs on the loop thread; Sofia-SIP runs there too (su_root_threading 0).
 */
#ifndef SIP_INT_H
#define SIP_INT_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct sip_listener;
struct sip_hm;
#define NUA_MAGIC_T     struct sip_listener
#define NUA_HMAGIC_T    struct sip_hm
#define SU_ROOT_MAGIC_T void

#include <sofia-sip/nua.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/su_wait.h>

#include "cvx/driver.h"
#include "cvx/rtp.h"
#include "sip_sdp.h"

#define SIP_MAX_LISTENERS 8
#define SIP_MAX_TRUSTED   32

typedef struct sip_conf {
    cvx_strlist_t listen;
    char *tls_cert_dir;
    cvx_strlist_t trusted;
    cvx_strlist_t auth_users; /* "user:password" */
    char *realm;
    char *registrar; /* sip:host[:port]; NULL or "": no registration */
    char *register_user;
    char *register_password;
    long long register_expiry_ms;
    long long register_retry_ms;
    char *proxy;              /* where outbound calls and MWI go when given a bare number */
    cvx_strlist_t number_map; /* "FROM>TO" prefix rules */
    int redirect_pick;        /* 0 first, 1 last */
    char *rtp_address;
    long long rtp_port_min, rtp_port_max;
    long long media_timeout_ms;
    long long max_calls;
} sip_conf_t;

extern const cvx_option_t sip_options[];

/* --- the reactor ---------------------------------------------------------------------- */

typedef struct sip_reactor sip_reactor_t;

/* Creates the process's su_root on loop (first caller) or takes another reference. */
int sip_reactor_get(uv_loop_t *loop, sip_reactor_t **out, char *err, size_t errsize);
void sip_reactor_put(sip_reactor_t *r);
su_root_t *sip_reactor_root(sip_reactor_t *r);
/* Runs Sofia's queue soon: call after any nua_*() made outside a nua callback. */
void sip_reactor_kick(sip_reactor_t *r);
/* Runs fn(arg) from the loop (not from inside a Sofia callback): for nua_destroy(). */
void sip_reactor_defer(sip_reactor_t *r, void (*fn)(void *arg), void *arg);

/* --- instances ------------------------------------------------------------------------ */

typedef struct sip_inst sip_inst_t;

typedef struct sip_listener {
    sip_inst_t *si;
    nua_t *nua;
    char url[200];  /* "sip:127.0.0.1:5060" (with ;transport= when limited) */
    char label[96]; /* "udp+tcp 127.0.0.1:5060" for show sip */
    char host[64];  /* the address, for SDP and Contact */
    int family;
    int tls;
    int shut; /* nua_r_shutdown seen */
} sip_listener_t;

typedef struct sip_net {
    int family;
    uint8_t addr[16];
    unsigned prefix;
} sip_net_t;

typedef struct sip_counters {
    uint64_t invites, answered, rejected_untrusted, challenged, auth_failed, no_codec, bad_sdp;
    uint64_t cancelled, bye_in, bye_out, reinvites, refer, mwi_sent, mwi_failed, originated;
    uint64_t busy, dropped_defensive;
    uint64_t subscribes, subscribes_refused, subscriptions_expired;
} sip_counters_t;

/* What a nua handle is bound to: every bound struct starts with this. */
typedef enum { SIP_HM_CALL = 1, SIP_HM_REG, SIP_HM_MWI, SIP_HM_SUB } sip_hm_kind_t;
typedef struct sip_hm {
    sip_hm_kind_t kind;
} sip_hm_t;

typedef struct sip_call sip_call_t;

typedef struct sip_reg {
    sip_hm_t hm;
    sip_inst_t *si;
    nua_handle_t *nh;
    int registered;
    int auth_tries;
    char state[96];    /* "registered", "failed: 403 Forbidden", ... */
    su_timer_t *retry; /* after a failure */
    uint64_t attempts, successes;
} sip_reg_t;

typedef struct sip_mwi {
    sip_hm_t hm;
    struct sip_mwi *next;
    sip_inst_t *si;
    nua_handle_t *nh;
    uint64_t request_id;
    int auth_tries;
} sip_mwi_t;

/* The last lamp state asked for per device (set_mwi), so that a device that subscribes is
 * told the current state at once.  Keyed by the device's user part ("2001"). */
typedef struct sip_lamp {
    struct sip_lamp *next;
    char user[64];
    char mailbox[64];
    int on;
    unsigned new_msgs, old_msgs, new_urgent, old_urgent;
} sip_lamp_t;

/* A message-summary subscription we accepted (RFC 3265/6665 notifier, RFC 3842). */
typedef struct sip_sub {
    sip_hm_t hm;
    struct sip_sub *next;
    sip_inst_t *si;
    nua_handle_t *nh;
    char user[64];       /* the Request-URI's user: the mailbox or device subscribed to */
    char from[128];      /* who subscribed, for show sip and the log */
    uint64_t expires_ms; /* uv time */
    uint64_t request_id; /* a set_mwi sent in this dialog, awaiting its response; 0: none */
    int terminated;      /* the final NOTIFY is sent or the dialog is gone */
} sip_sub_t;

struct sip_inst {
    cvx_drv_inst_t *inst;
    sip_conf_t conf; /* a deep copy: the core's copy may change on reload */
    sip_reactor_t *reactor;
    sip_listener_t listeners[SIP_MAX_LISTENERS];
    unsigned nlisteners;
    sip_net_t trusted[SIP_MAX_TRUSTED];
    unsigned ntrusted;
    sip_call_t *calls;
    unsigned ncalls;
    sip_reg_t reg;
    sip_mwi_t *mwis;
    sip_lamp_t *lamps;
    sip_sub_t *subs;
    su_timer_t *sub_timer; /* expires subscriptions */
    sip_counters_t counters;
    uint8_t nonce_key[16];
    uint64_t sdp_session;
    int started, dead;
    unsigned shut_pending;
};

/* The first live instance, or NULL; every live instance into out (for show sip). */
sip_inst_t *sip_inst_first(void);
size_t sip_inst_list(sip_inst_t **out, size_t max);

/* Shell commands (sip_cmd.c), registered from the module's load(). */
int sip_cmds_register(void);
void sip_cmds_unregister(void);

/* --- calls ---------------------------------------------------------------------------- */

typedef enum {
    SIP_CALL_OFFERED = 0, /* INVITE received, no final answer yet */
    SIP_CALL_DIALING,     /* our INVITE sent */
    SIP_CALL_UP,          /* 200 sent or received */
    SIP_CALL_ENDING,      /* final error sent, BYE sent or received */
    SIP_CALL_DONE,        /* hangup reported */
} sip_call_state_t;

struct sip_call {
    sip_hm_t hm;
    sip_call_t *next, *prev;
    sip_inst_t *si;
    sip_listener_t *l;
    nua_handle_t *nh;
    cvx_chan_t *chan; /* our reference, until the hangup is reported; NULL for rejects */
    cvx_rtp_t *rtp;
    sip_call_state_t state;
    cvx_cause_t cause; /* the cause to report when the call ends */
    sip_sdp_t remote;
    int have_remote;
    int need_answer_in_ack; /* we offered in the 200 (no SDP in the INVITE) */
    int hold;
    char local_addr[64];
    uint16_t local_port;
    uint64_t sdp_version;
    int transfer_pending;
    int auth_tries;
};

void sip_nua_callback(nua_event_t event, int status, char const *phrase, nua_t *nua,
                      sip_listener_t *l, nua_handle_t *nh, sip_hm_t *hm, sip_t const *sip,
                      tagi_t tags[]);

void sip_call_incoming(sip_listener_t *l, nua_handle_t *nh, sip_t const *sip);
void sip_call_event(sip_call_t *c, nua_event_t event, int status, char const *phrase,
                    sip_t const *sip, tagi_t tags[]);
/* Ends every call (stop): hangups are reported with cause. */
void sip_call_end_all(sip_inst_t *si, cvx_cause_t cause);
/* Frees what is left when the instance is destroyed (no events any more). */
void sip_call_free_all(sip_inst_t *si);
/* "PCMU+te hold": the media of a call, for show sip calls. */
size_t sip_call_describe(const sip_call_t *c, char *buf, size_t size);

int sip_op_answer(void *priv, cvx_chan_t *chan);
int sip_op_hangup(void *priv, cvx_chan_t *chan, cvx_cause_t cause);
int sip_op_originate(void *priv, cvx_chan_t *chan);
int sip_op_transfer(void *priv, cvx_chan_t *chan, const char *dest, int supervised);
int sip_op_send_dtmf(void *priv, cvx_chan_t *chan, char digit, unsigned duration_ms);
int sip_op_write_frame(void *priv, cvx_chan_t *chan, const cvx_frame_t *frame);

/* --- trust, auth, numbers --------------------------------------------------------------- */

int sip_net_parse(const char *text, sip_net_t *out);
int sip_net_match(const sip_net_t *nets, unsigned n, const struct sockaddr *sa);
/* Checks the digest credentials of a request: 1 valid, 0 none or wrong, -1 stale nonce. */
int sip_auth_check(sip_inst_t *si, sip_t const *sip, char *user, size_t usize);
/* A fresh WWW-Authenticate value. */
void sip_auth_challenge(sip_inst_t *si, int stale, char *buf, size_t size);
/* Applies the first matching "FROM>TO" rule to number in place. */
void sip_number_map(const cvx_strlist_t *rules, char *number, size_t size);

/* --- registration and MWI -------------------------------------------------------------- */

void sip_reg_start(sip_inst_t *si);
void sip_reg_event(sip_reg_t *r, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[]);
void sip_reg_stop(sip_inst_t *si);
/* Answers a 401/407 to a request we sent with register_user's credentials: 1 when retried. */
int sip_authenticate(sip_inst_t *si, nua_handle_t *nh, sip_t const *sip, int *tries);
int sip_op_set_mwi(void *priv, const cvx_mwi_req_t *req);
void sip_mwi_event(sip_mwi_t *m, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[]);
void sip_mwi_free_all(sip_inst_t *si);
/* A SUBSCRIBE outside any subscription (nh is nua's new handle), and events of one. */
void sip_sub_incoming(sip_listener_t *l, nua_handle_t *nh, sip_t const *sip);
void sip_sub_event(sip_sub_t *sub, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[]);
/* Live subscriptions, for show sip. */
unsigned sip_sub_count(const sip_inst_t *si);

/* The listener used for requests we start (registration, calls, MWI) toward uri. */
sip_listener_t *sip_listener_for(sip_inst_t *si, const char *uri);
/* "sip:NUMBER@proxy" for a bare number, or dest itself when it is a URI. */
int sip_dest_uri(sip_inst_t *si, const char *dest, char *buf, size_t size);

/* The media engine: present when core/media is built (SIP_HAVE_RTP). */
int sip_media_available(void);

#endif

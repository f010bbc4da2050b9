/*
 * The message store and its asynchronous service interface.
 *
 * Everything a call flow or the shell needs from the store goes through the functions below:
 * mailbox lookup, PIN check, deposit as a stream, message lists, audio in chunks, folder
 * moves, greetings and recorded names, directory search, MWI state.  The interface is shaped
 * so that it can be served over the call-server link later without changing its callers:
 *
 *  - requests take plain data (fixed-size strings and integers, no pointers to keep);
 *  - results come back through a completion callback on the loop thread, never from inside
 *    the request (a function that returns an error never calls its callback; one that returns
 *    0 calls it exactly once, later);
 *  - a pointer handed to a callback is valid only during that callback: nothing points into
 *    LMDB, and nothing outlives the callback;
 *  - errors are CVX_E* codes (cvx/error.h), never LMDB codes:
 *      CVX_ENOTFOUND   no such mailbox, message or greeting;
 *      CVX_EUNAVAIL    the store cannot be reached (closed, or, later, the link is down);
 *      CVX_EFULL       the store is full (LMDB map or disk): that operation is refused and
 *                      the store stays usable;
 *      CVX_ELIMIT      a mailbox quota is reached;
 *      CVX_EEXIST      the mailbox exists already;
 *      CVX_ECORRUPT    stored audio fails its SHA-256 check (that message only);
 *      CVX_EINVAL      malformed request (bad number, id, folder...);
 *      CVX_EBUSY       the writer's queue is over its memory limit: retry later.
 *      CVX_EPERM       (deposits) the licence does not allow new messages now (see
 *                      cvx_license_accepting_messages); the reason is logged.
 *
 * Writes go to one writer thread that groups queued operations into one LMDB transaction
 * (group commit); a write's callback runs only after its transaction is durable on disk.
 * Reads run on the loop thread in short read transactions; audio chunks are prefetched on
 * the libuv thread pool; PIN hashing (libsodium crypto_pwhash, interactive limits) runs on
 * the thread pool too.
 *
 * Thread: every function here is for the loop thread that opened the store.
 */
#ifndef CVX_STORE_H
#define CVX_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cvx/config.h"

/* Sizes of the fixed strings, including the terminating NUL. */
#define CVX_STORE_ID_MAX     65  /* message id: 1..64 of [A-Za-z0-9._-] */
#define CVX_STORE_NUMBER_MAX 33  /* mailbox or telephone number: 1..32 of [0-9*#+] */
#define CVX_STORE_NAME_MAX   65  /* person's name, any UTF-8 */
#define CVX_STORE_TEXT_MAX   129 /* e-mail address, time zone, device */
#define CVX_STORE_PIN_MIN    4
#define CVX_STORE_PIN_MAX    16
#define CVX_STORE_CHUNK_MAX  (256 * 1024) /* largest single append */

typedef struct cvx_store cvx_store_t;
typedef struct cvx_store_stream cvx_store_stream_t;
typedef struct cvx_store_reader cvx_store_reader_t;

/* --- data ---------------------------------------------------------------------------------- */

typedef enum cvx_folder {
    CVX_FOLDER_NEW = 0,
    CVX_FOLDER_SAVED = 1,
    CVX_FOLDER_DELETED = 2,
    CVX_FOLDER_ANY = 255, /* message lists only */
} cvx_folder_t;

typedef enum cvx_greeting {
    CVX_GREETING_STANDARD = 0,
    CVX_GREETING_BUSY = 1,
    CVX_GREETING_NOANSWER = 2,
    CVX_GREETING_EXTENDED = 3,  /* extended absence; may refuse messages */
    CVX_GREETING_TEMPORARY = 4, /* with an expiry time */
    CVX_GREETING_NAME = 5,      /* the subscriber's recorded name */
    CVX_GREETING_COUNT
} cvx_greeting_t;

/* Codecs of stored audio; the sample rate is kept beside. */
typedef enum cvx_codec {
    CVX_CODEC_PCM16 = 0, /* signed 16-bit little-endian linear */
    CVX_CODEC_ULAW = 1,
    CVX_CODEC_ALAW = 2,
} cvx_codec_t;

enum {
    CVX_MSG_URGENT = 1 << 0,
    CVX_MSG_PRIVATE = 1 << 1,
    CVX_MSG_EXPIRING = 1 << 2, /* saved, and its retention class deletes it soon (set by the
                                  store, cleared when the message is saved again) */
};

#define CVX_STORE_RETENTION_CLASSES 4

enum {
    CVX_GREETING_REFUSE = 1 << 0, /* extended absence: callers may not leave messages */
};

/* A mailbox.  The fields after "state" are kept by the store and ignored by put. */
typedef struct cvx_mailbox {
    char number[CVX_STORE_NUMBER_MAX];
    char first_name[CVX_STORE_NAME_MAX];
    char last_name[CVX_STORE_NAME_MAX];
    char language[17];                   /* "en", "fr-CA"; "" for the site's */
    char timezone[CVX_STORE_TEXT_MAX];   /* "Europe/Paris"; "" for the site's */
    char email[CVX_STORE_TEXT_MAX];      /* for notifications; may be "" */
    char mwi_device[CVX_STORE_TEXT_MAX]; /* "sip:pbx1/2001"; "" for the number itself */
    uint32_t max_message_s;              /* longest message a caller may leave; 0: site */
    uint32_t quota_messages;             /* 0: no limit */
    uint32_t quota_minutes;              /* 0: no limit */
    uint8_t retention_class;             /* 0: site default */
    uint8_t listed;                      /* in the dial-by-name directory */
    /* state */
    uint8_t has_pin;
    uint32_t failed_logins;
    uint64_t locked_until_ms; /* UTC ms; 0: not locked */
    uint64_t pin_changed_ms;
    uint64_t created_ms;
    uint32_t greetings;          /* bit (1 << cvx_greeting_t) per recorded greeting */
    uint32_t greeting_flags;     /* of the extended-absence greeting: CVX_GREETING_REFUSE */
    uint64_t temporary_until_ms; /* expiry of the temporary greeting */
    uint32_t msgs_new, msgs_saved, msgs_deleted;
    uint32_t urgent_new;
    uint64_t total_ms; /* recorded time of the messages not deleted */
} cvx_mailbox_t;

typedef struct cvx_message {
    char id[CVX_STORE_ID_MAX];
    char mailbox[CVX_STORE_NUMBER_MAX];
    uint8_t folder; /* cvx_folder_t */
    char caller_number[CVX_STORE_NUMBER_MAX];
    char caller_name[CVX_STORE_NAME_MAX];
    char called_number[CVX_STORE_NUMBER_MAX];
    uint8_t redirect_reason; /* as the driver reported it (cvx/driver.h) */
    uint64_t received_ms;    /* UTC ms */
    uint32_t duration_ms;
    uint32_t flags; /* CVX_MSG_* */
    uint64_t folder_changed_ms;
    uint8_t codec; /* cvx_codec_t */
    uint32_t rate;
    uint64_t bytes;
    uint8_t sha256[32];
} cvx_message_t;

/* What a deposit or a greeting recording commits. */
typedef struct cvx_deposit_result {
    char id[CVX_STORE_ID_MAX];
    int duplicate;    /* the id was committed before: nothing new was stored */
    int shared_audio; /* identical audio was stored already; this message shares it */
    uint64_t bytes;
    uint8_t sha256[32];
} cvx_deposit_result_t;

/* Message-waiting state of one mailbox: what the lamp should show and what was last sent. */
typedef struct cvx_mwi {
    char mailbox[CVX_STORE_NUMBER_MAX];
    uint32_t msgs_new, urgent_new, msgs_saved;
    uint8_t lamp;        /* 1: the lamp should be on */
    uint8_t sent_lamp;   /* what was last sent successfully */
    uint8_t sent_ok;     /* the last attempt succeeded */
    uint64_t generation; /* bumped whenever lamp changes */
    uint64_t sent_ms;
} cvx_mwi_t;

typedef struct cvx_dir_entry {
    char number[CVX_STORE_NUMBER_MAX];
    char first_name[CVX_STORE_NAME_MAX];
    char last_name[CVX_STORE_NAME_MAX];
} cvx_dir_entry_t;

/* Which recording to play. */
typedef struct cvx_audio_ref {
    int is_greeting;
    char id[CVX_STORE_ID_MAX];          /* the message, when !is_greeting */
    char mailbox[CVX_STORE_NUMBER_MAX]; /* the greeting's mailbox */
    cvx_greeting_t greeting;
} cvx_audio_ref_t;

typedef struct cvx_audio_info {
    uint8_t codec;
    uint32_t rate;
    uint64_t bytes;
    uint32_t chunks;
} cvx_audio_info_t;

typedef enum cvx_pin_verdict {
    CVX_PIN_OK = 0,
    CVX_PIN_WRONG = 1,  /* attempts_left says how many remain before the lock */
    CVX_PIN_LOCKED = 2, /* locked_until_ms says until when */
    CVX_PIN_UNSET = 3,  /* the mailbox has no PIN yet */
} cvx_pin_verdict_t;

typedef struct cvx_pin_result {
    cvx_pin_verdict_t verdict;
    uint32_t attempts_left;
    uint64_t locked_until_ms;
} cvx_pin_result_t;

typedef struct cvx_store_stats {
    uint64_t file_bytes; /* data.mdb on disk */
    uint64_t map_bytes;  /* current map size */
    uint64_t map_max_bytes;
    uint64_t used_bytes; /* pages in use */
    uint32_t readers, max_readers;
    uint64_t mailboxes, messages, blobs, blob_bytes, chunks;
    uint64_t blobs_shared; /* blobs referenced by more than one message or greeting */
    uint64_t references;   /* sum of blob reference counts */
    uint64_t open_streams; /* deposits being recorded */
    uint64_t commits, transactions, full_refusals; /* since open */
    uint32_t schema;
} cvx_store_stats_t;

/* --- configuration --------------------------------------------------------------------- */

typedef struct cvx_store_conf {
    const char *path;      /* the store's directory (created if missing) */
    uint64_t map_size;     /* initial map size in bytes */
    uint64_t map_max;      /* the map grows up to this on MDB_MAP_FULL (>= map_size) */
    uint32_t batch_max;    /* most operations in one transaction (group commit) */
    uint64_t queue_max;    /* bytes of audio queued for the writer before appends get EBUSY */
    uint32_t pin_attempts; /* failed PIN checks before the mailbox locks */
    uint64_t pin_lockout_ms;
    uint32_t pin_history; /* a new PIN may not repeat one of the last N */
    uint32_t prefetch;    /* chunks read ahead during playback */
    /* How long a saved message is kept, per mailbox retention class (0: forever), and how
     * long before that it is flagged CVX_MSG_EXPIRING (the subscriber is warned). */
    uint64_t retention_ms[CVX_STORE_RETENTION_CLASSES];
    uint64_t retention_warning_ms;
    int group_commit; /* 0: one transaction per operation (benchmarks only) */
    /* Most mailboxes the store holds; creating one more fails with CVX_ELIMIT.  0: no limit.
     * The daemon sets the licence's (cvx_license_max_mailboxes). */
    uint32_t max_mailboxes;
} cvx_store_conf_t;

/* Fills conf with the defaults ([store] section defaults); path is left NULL. */
void cvx_store_conf_defaults(cvx_store_conf_t *conf);

/* --- life ------------------------------------------------------------------------------- */

/*
 * Opens (creating if needed) the store in conf->path, checks its schema version (a newer one
 * is refused with CVX_ENOTSUP, an older one is upgraded in one transaction), removes
 * recordings left unfinished by a crash and starts the writer thread.  Blocks on file I/O:
 * call it at start-up, before the loop serves calls.  On failure, err (if not NULL) holds a
 * one-line explanation.  Returns 0 or CVX_E*.
 */
int cvx_store_open(uv_loop_t *loop, const cvx_store_conf_t *conf, cvx_store_t **out, char *err,
                   size_t errlen);

/*
 * Stops accepting requests (they fail with CVX_EUNAVAIL), lets the writer finish what is
 * queued (every pending callback is still called), waits for thread-pool work, then frees
 * the store and calls on_closed (may be NULL) on the loop.  Open streams are aborted and
 * must not be used afterwards; close every audio reader before closing the store.
 */
void cvx_store_close(cvx_store_t *st, void (*on_closed)(void *arg), void *arg);

/* The store the daemon runs: the local one (role system or all), the system server's over the
 * link (role call), or NULL. */
cvx_store_t *cvx_store_default(void);

/* 1 when requests can reach st now: the local store unless it is closing; a call server's
 * remote store while its link to the system server is up.  A hint for call flows (whether to
 * start a conversation that needs the store); a request may still fail with CVX_EUNAVAIL. */
int cvx_store_reachable(const cvx_store_t *st);

/* Registers the [store] section and the daemon hooks; callvoxd's main calls it. */
int cvx_store_register(void);

/* A fresh message id: 32 lowercase hex digits, time-ordered, 80 random bits.  Any thread. */
void cvx_store_make_id(char id[CVX_STORE_ID_MAX]);

/* Returns 1 when s is a valid mailbox number, message id. */
int cvx_store_valid_number(const char *s);
int cvx_store_valid_id(const char *s);

/* Keypad digits of a name ("O'Brien" -> "627436"): letters only, other characters skipped.
 * out must hold strlen(name) + 1 bytes. */
void cvx_store_keypad(const char *name, char *out);

const char *cvx_folder_name(cvx_folder_t f);
int cvx_folder_from_name(const char *name); /* -1 when unknown */
const char *cvx_greeting_name(cvx_greeting_t g);
int cvx_greeting_from_name(const char *name);

/* --- callbacks --------------------------------------------------------------------------- */

typedef void (*cvx_store_done_cb)(void *arg, int status);
typedef void (*cvx_store_mailbox_cb)(void *arg, int status, const cvx_mailbox_t *mb);
typedef void (*cvx_store_pin_cb)(void *arg, int status, const cvx_pin_result_t *r);
typedef void (*cvx_store_list_cb)(void *arg, int status, const cvx_message_t *msgs, size_t n);
typedef void (*cvx_store_message_cb)(void *arg, int status, const cvx_message_t *msg);
typedef void (*cvx_store_commit_cb)(void *arg, int status, const cvx_deposit_result_t *r);
typedef void (*cvx_store_dir_cb)(void *arg, int status, const cvx_dir_entry_t *e, size_t n);
typedef void (*cvx_store_mwi_cb)(void *arg, int status, const cvx_mwi_t *mwi);
typedef void (*cvx_store_audio_cb)(void *arg, int status, const cvx_audio_info_t *info);
/* data is valid during the callback only; status 0 with len 0 is the end of the audio. */
typedef void (*cvx_store_chunk_cb)(void *arg, int status, const void *data, size_t len);
typedef void (*cvx_store_stats_cb)(void *arg, int status, const cvx_store_stats_t *s);

/* --- mailboxes ------------------------------------------------------------------------- */

int cvx_store_mailbox_get(cvx_store_t *st, const char *number, cvx_store_mailbox_cb cb, void *arg);

enum {
    CVX_PUT_CREATE = 1, /* fails with CVX_EEXIST when the mailbox exists */
    CVX_PUT_UPDATE = 2, /* fails with CVX_ENOTFOUND when it does not */
};
/* Creates or updates the settable fields of mb (number to options). */
int cvx_store_mailbox_put(cvx_store_t *st, const cvx_mailbox_t *mb, int mode, cvx_store_done_cb cb,
                          void *arg);
/* Deletes the mailbox with its messages, greetings, name, directory entry and MWI state. */
int cvx_store_mailbox_del(cvx_store_t *st, const char *number, cvx_store_done_cb cb, void *arg);
/* Mailboxes in number order starting after `after` ("" for the first), at most max. */
typedef void (*cvx_store_mailboxes_cb)(void *arg, int status, const cvx_mailbox_t *mbs, size_t n);
int cvx_store_mailbox_list(cvx_store_t *st, const char *after, size_t max,
                           cvx_store_mailboxes_cb cb, void *arg);

/* Sets the PIN (4..16 digits).  Fails with CVX_EINVAL for a malformed PIN and CVX_EEXIST
 * when it repeats one of the last pin_history PINs. */
int cvx_store_pin_set(cvx_store_t *st, const char *number, const char *pin, cvx_store_done_cb cb,
                      void *arg);
/* Checks a PIN; status 0 means the check ran and r says its verdict.  Failed attempts are
 * counted; pin_attempts in a row lock the mailbox for pin_lockout. */
int cvx_store_pin_check(cvx_store_t *st, const char *number, const char *pin, cvx_store_pin_cb cb,
                        void *arg);
/* Clears failed attempts and the lock. */
int cvx_store_mailbox_unlock(cvx_store_t *st, const char *number, cvx_store_done_cb cb, void *arg);

/* --- deposits ------------------------------------------------------------------------------ */

/*
 * Starts recording a message into msg->mailbox with the id msg->id (chosen by the recorder,
 * see cvx_store_make_id) and the metadata in msg (folder, duration, sha256 and bytes are
 * ignored).  The stream belongs to the caller until commit or abort.
 */
int cvx_store_deposit_open(cvx_store_t *st, const cvx_message_t *msg, cvx_store_stream_t **out);
/* Starts recording a greeting or name of mailbox.  expires_ms: temporary greeting's expiry;
 * flags: CVX_GREETING_REFUSE for the extended absence greeting. */
int cvx_store_greeting_open(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                            uint8_t codec, uint32_t rate, uint64_t expires_ms, uint32_t flags,
                            cvx_store_stream_t **out);
/* Queues len bytes (1..CVX_STORE_CHUNK_MAX) of audio, copied.  No callback: a write that
 * fails makes the commit fail.  CVX_EBUSY when the writer's queue is over its limit. */
int cvx_store_stream_append(cvx_store_stream_t *s, const void *data, size_t len);
/*
 * Commits: the message (or greeting) exists, durably, when cb reports 0.  Committing an id
 * that was committed before stores nothing and reports duplicate = 1 (idempotent).  The
 * stream is freed after cb returns (and also when commit returns an error).
 */
int cvx_store_stream_commit(cvx_store_stream_t *s, uint32_t duration_ms, cvx_store_commit_cb cb,
                            void *arg);
/* Drops the recording; the stream is freed now; its chunks are removed in the background. */
void cvx_store_stream_abort(cvx_store_stream_t *s);

/* --- messages ------------------------------------------------------------------------------ */

/* Messages of mailbox in folder (or CVX_FOLDER_ANY), oldest first. */
int cvx_store_message_list(cvx_store_t *st, const char *mailbox, int folder, cvx_store_list_cb cb,
                           void *arg);
int cvx_store_message_get(cvx_store_t *st, const char *id, cvx_store_message_cb cb, void *arg);
/* Moves a message to another folder. */
int cvx_store_message_move(cvx_store_t *st, const char *id, cvx_folder_t folder,
                           cvx_store_done_cb cb, void *arg);
/* Removes a message for good; its audio goes with its last reference. */
int cvx_store_message_purge(cvx_store_t *st, const char *id, cvx_store_done_cb cb, void *arg);
/* Forwards (copies) a message to another mailbox under a new id; the audio is shared. */
int cvx_store_message_copy(cvx_store_t *st, const char *id, const char *new_id, const char *mailbox,
                           cvx_store_commit_cb cb, void *arg);
/* Purges messages in the deleted folder since before older_than_ms (UTC); cb's status is the
 * number purged (>= 0) or CVX_E*. */
int cvx_store_expire(cvx_store_t *st, uint64_t older_than_ms, cvx_store_done_cb cb, void *arg);

/* Applies the retention classes as of now_ms (UTC): saved messages older than their
 * mailbox class's retention move to the deleted folder; those within retention_warning of it
 * are flagged CVX_MSG_EXPIRING.  cb's status is the number moved (>= 0) or CVX_E*. */
int cvx_store_retain(cvx_store_t *st, uint64_t now_ms, cvx_store_done_cb cb, void *arg);

/* --- greetings ------------------------------------------------------------------------------ */

int cvx_store_greeting_del(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                           cvx_store_done_cb cb, void *arg);

/* --- audio ------------------------------------------------------------------------------ */

/*
 * Opens a recording for playback.  The whole recording is read and its SHA-256 checked on
 * the thread pool before cb reports 0; a recording that fails the check reports
 * CVX_ECORRUPT (and is logged with the message id), so the flow can skip that message.
 * On success *out is the reader, to be closed with cvx_store_audio_close (also after
 * errors: the reader exists as soon as open returns 0).
 */
int cvx_store_audio_open(cvx_store_t *st, const cvx_audio_ref_t *ref, cvx_store_audio_cb cb,
                         void *arg, cvx_store_reader_t **out);
/* Delivers the next chunk; the following ones are read ahead on the thread pool.  One
 * request at a time per reader. */
int cvx_store_audio_next(cvx_store_reader_t *r, cvx_store_chunk_cb cb, void *arg);
/* Closes the reader; a pending callback is not called.  Any time after open. */
void cvx_store_audio_close(cvx_store_reader_t *r);
/* Writes a message's audio to a WAV file (libsndfile) on the thread pool. */
int cvx_store_message_export(cvx_store_t *st, const char *id, const char *path,
                             cvx_store_done_cb cb, void *arg);

/* --- directory and MWI --------------------------------------------------------------------- */

/* Listed mailboxes whose keypad digits of last name then first name start with digits. */
int cvx_store_dir_search(cvx_store_t *st, const char *digits, size_t max, cvx_store_dir_cb cb,
                         void *arg);
int cvx_store_mwi_get(cvx_store_t *st, const char *mailbox, cvx_store_mwi_cb cb, void *arg);
/* Records the outcome of sending the lamp state of generation gen to the device. */
int cvx_store_mwi_report(cvx_store_t *st, const char *mailbox, uint64_t gen, int lamp, int ok,
                         cvx_store_done_cb cb, void *arg);
/* Called on the loop whenever a committed write changes a mailbox's lamp or its counts of new,
 * urgent new or saved messages (what an RFC 3842 NOTIFY shows); one at a time.  Retention
 * and purges of deleted messages do not call it. */
typedef void (*cvx_store_mwi_watch_fn)(void *arg, const cvx_mwi_t *mwi);
void cvx_store_mwi_watch(cvx_store_t *st, cvx_store_mwi_watch_fn fn, void *arg);

/* --- administration ----------------------------------------------------------------------- */

/* Gathers the figures on the thread pool (they include a scan of the blob table). */
int cvx_store_stats(cvx_store_t *st, cvx_store_stats_cb cb, void *arg);
/* A consistent compacted copy of the store into dir (which must exist and hold no
 * data.mdb), made on the thread pool while the store keeps running. */
int cvx_store_backup(cvx_store_t *st, const char *dir, cvx_store_done_cb cb, void *arg);
/*
 * Checks the whole store on the thread pool: every blob's reference count matches its
 * references, every blob's chunks hash to its SHA-256, no orphaned chunk.  cb's status is the
 * number of problems found (>= 0) or CVX_E*; each problem is logged, and passed to line
 * (may be NULL) on the loop as text.
 */
typedef void (*cvx_store_line_fn)(void *arg, const char *line);
int cvx_store_verify(cvx_store_t *st, cvx_store_line_fn line, cvx_store_done_cb cb, void *arg);

/*
 * Imports mailboxes from CSV text: a header line naming columns (number, first_name,
 * last_name, pin, language, timezone, email, mwi_device, quota_messages, quota_minutes,
 * max_message_s, listed), then one mailbox per line.  Each line is reported to line as
 * "line N: added 2001" or "line N: rejected: <why>"; cb's status is the number of lines
 * rejected (>= 0) or CVX_E* when the text cannot be read at all.
 */
int cvx_store_import_csv(cvx_store_t *st, const char *text, size_t len, cvx_store_line_fn line,
                         cvx_store_done_cb cb, void *arg);

/* --- settings ------------------------------------------------------------------------------ */

/*
 * Small named values other parts of callvox keep in the store (the licence's last successful
 * phone-home check).  key: "ext." then up to 60 characters; value: up to
 * CVX_STORE_SETTING_MAX bytes.  get reports CVX_ENOTFOUND for a key never put; value is valid
 * during the callback only.  put is durable when cb reports 0.
 */
#define CVX_STORE_SETTING_MAX 1024
typedef void (*cvx_store_setting_cb)(void *arg, int status, const void *value, size_t len);
int cvx_store_setting_get(cvx_store_t *st, const char *key, cvx_store_setting_cb cb, void *arg);
int cvx_store_setting_put(cvx_store_t *st, const char *key, const void *value, size_t len,
                          cvx_store_done_cb cb, void *arg);

/* The [store] section of the configuration. */
extern const cvx_section_def_t cvx_store_section;

#endif

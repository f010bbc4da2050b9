/*
 * The voicemail application's internal interface: one call's state, the prompt table, the
 * English language module, the deposit flow and the subscriber conversation.
 *
 * Thread: everything here runs on the loop thread.  Nothing blocks: prompts are loaded on the
 * libuv thread pool at start, the store is reached only through its asynchronous interface.
 */
#ifndef VM_H
#define VM_H

#include <stddef.h>
#include <stdint.h>

#include "cvx/cdr.h"
#include "cvx/chan.h"
#include "cvx/config.h"
#include "cvx/media.h"
#include "cvx/prompts.h"
#include "vm_store.h"

/* --- the key map (vm_keys.c) ------------------------------------------------------------------ */

/* The menus whose keys a system may remap; keys must differ within one menu. */
enum { VM_MENU_MESSAGE, VM_MENU_PLAYBACK, VM_MENU_REPLY, VM_MENU_OPTIONS, VM_MENU_COUNT };

/*
 * Every remappable action: X(ACTION, option, menu, default keys, prompt that introduces its
 * key in the spoken menu (NULL: not spoken), help).  The option is "key_" option in
 * [voicemail]; its value is one key or several ("6#": either).  The spoken menus name the
 * first key of each action.
 */
#define VM_KEYS(X)                                                                                 \
    X(REPLAY, "replay", VM_MENU_MESSAGE, "1", "k-replay", "replay the message")                    \
    X(ENVELOPE, "envelope", VM_MENU_MESSAGE, "2", "k-envelope", "hear the envelope")               \
    X(SAVE, "save", VM_MENU_MESSAGE, "3", "k-save", "save the message")                            \
    X(FORWARD, "forward", VM_MENU_MESSAGE, "5", "k-forward",                                       \
      "forward it to a mailbox with an introduction")                                              \
    X(PREVIOUS, "previous", VM_MENU_MESSAGE, "4", "k-previous", "go to the previous message")      \
    X(NEXT, "next", VM_MENU_MESSAGE, "6#", "k-next", "go to the next message")                     \
    X(DELETE, "delete", VM_MENU_MESSAGE, "7", "k-delete", "delete the message")                    \
    X(UNDELETE, "undelete", VM_MENU_MESSAGE, "8", "k-undelete", "undelete the message")            \
    X(MORE, "reply_menu", VM_MENU_MESSAGE, "*", "k-more",                                          \
      "open the reply menu (reply to a local sender, call the sender back)")                       \
    X(OPTIONS, "options", VM_MENU_MESSAGE, "9", "k-options", "open the mailbox options")           \
    X(END, "end", VM_MENU_MESSAGE, "0", "k-end", "end the call")                                   \
    X(REWIND, "rewind", VM_MENU_PLAYBACK, "*", NULL, "go back 5 s while a message plays")          \
    X(FFWD, "fast_forward", VM_MENU_PLAYBACK, "#", NULL, "go on 5 s while a message plays")        \
    X(PAUSE, "pause", VM_MENU_PLAYBACK, "2", NULL,                                                 \
      "pause while a message plays (any key resumes)")                                             \
    X(REPLY, "reply", VM_MENU_REPLY, "1", "k-reply",                                               \
      "record a reply into the sender's mailbox (reply menu)")                                     \
    X(CALLBACK, "call_sender", VM_MENU_REPLY, "2", "k-callback",                                   \
      "call the sender, by a blind transfer (reply menu)")                                         \
    X(BACK, "back", VM_MENU_REPLY, "*", "k-back", "go back to the message menu (reply menu)")      \
    X(STANDARD, "greeting_standard", VM_MENU_OPTIONS, "1", "k-standard",                           \
      "record the standard greeting (mailbox options)")                                            \
    X(BUSY, "greeting_busy", VM_MENU_OPTIONS, "2", "k-busy",                                       \
      "record the busy greeting (mailbox options)")                                                \
    X(NOANSWER, "greeting_no_answer", VM_MENU_OPTIONS, "3", "k-noanswer",                          \
      "record the no-answer greeting (mailbox options)")                                           \
    X(TEMPORARY, "greeting_temporary", VM_MENU_OPTIONS, "4", "k-temporary",                        \
      "record the temporary greeting, with an end date (mailbox options)")                         \
    X(TEMP_OFF, "temporary_off", VM_MENU_OPTIONS, "5", "k-tempoff",                                \
      "turn the temporary greeting off (mailbox options)")                                         \
    X(NAME, "name", VM_MENU_OPTIONS, "6", "k-name", "record the name (mailbox options)")           \
    X(PIN, "pin", VM_MENU_OPTIONS, "7", "k-pin", "change the PIN (mailbox options)")               \
    X(EXTENDED, "greeting_extended", VM_MENU_OPTIONS, "8", "k-extended",                           \
      "record or turn off the extended absence greeting (mailbox options)")                        \
    X(MESSAGES, "messages", VM_MENU_OPTIONS, "9", "k-messages",                                    \
      "go back to the messages (mailbox options)")                                                 \
    X(OPT_END, "options_end", VM_MENU_OPTIONS, "0", "k-end", "end the call (mailbox options)")

#define VM_KEY_ENUM(a, o, m, d, p, h) VM_K_##a,
typedef enum vm_action { VM_KEYS(VM_KEY_ENUM) VM_K_COUNT } vm_action_t;
#undef VM_KEY_ENUM

/* --- configuration ([voicemail]) ------------------------------------------------------------ */

enum { VM_UNKNOWN_NOT_IN_SERVICE = 0, VM_UNKNOWN_OPERATOR = 1, VM_UNKNOWN_ATTENDANT = 2 };

typedef struct vm_conf {
    cvx_strlist_t pilots;         /* called numbers of the voicemail pilot */
    cvx_strlist_t dialed_mailbox; /* prefixes of dialed numbers that are mailboxes */
    char *prompt_dir;             /* the recorded prompt set */
    char *generated_dir;          /* prompts generated at build time */
    char *operator_number;        /* blind transfer target of 0; "" or NULL: no operator */
    char *attendant_number;       /* where unknown mailboxes go with unknown_mailbox = attendant */
    int unknown_mailbox;          /* VM_UNKNOWN_* */
    long long max_message_ms;     /* when the mailbox does not say */
    long long min_message_ms;     /* shorter recordings are dropped */
    long long silence_ms;         /* end the recording after this much silence */
    long long pin_min_length;     /* shortest PIN a subscriber may choose */
    char *timezone;               /* the site's time zone for mailboxes without one */
    char *keys[VM_K_COUNT];       /* the key map: keys of each action */
} vm_conf_t;

extern vm_conf_t vm_conf;

/* --- prompts (vm_prompts.c) ----------------------------------------------------------------- */

/* Checks that every prompt of the table exists (start-up; names the first missing one in err)
 * and starts loading them all through the media core's cache.  Returns 0 or CVX_E*. */
int vm_prompts_load(void *loop, char *err, size_t errlen);
void vm_prompts_unload(void);
/* The loaded audio of a prompt (not referenced), or NULL when not loaded (yet) or unknown. */
cvx_audio_t *vm_prompt(const char *name);
/* 1 when every prompt is loaded. */
int vm_prompts_ready(void);

/* The rate of everything voicemail records and plays (8 kHz linear frames). */
#define VM_RATE 8000

/* Barge-in by any key (the media core matches barge-in digits one by one). */
#define VM_ANY_DIGIT "0123456789*#"

/* A list of audio to play in order. */
#define VM_LIST_MAX CVX_PLAYLIST_MAX
typedef cvx_playlist_t vm_list_t;
void vm_add(vm_list_t *l, const char *name);
void vm_add_audio(vm_list_t *l, cvx_audio_t *a);

/* --- the key map (vm_keys.c), continued ------------------------------------------------------- */

/* The action of key in menu, or -1. */
int vm_key_action(int menu, char key);
/* The first key of action (what the spoken menu names). */
char vm_key(vm_action_t action);
/* Adds the spoken menu of menu: for every action with a prompt, its prompt then its key. */
void vm_say_menu(vm_list_t *l, int menu);
struct cvx_conf_section;
/* Checks vm_conf.keys (valid keys, no two actions of a menu on one key); errors name the file
 * and line of the option (or "default").  Returns 0 or CVX_EINVAL. */
int vm_keys_check(const struct cvx_conf_section *sec, cvx_diag_t *diag);

/* --- English (vm_lang_en.c) ------------------------------------------------------------------ */

void vm_say_number(vm_list_t *l, unsigned long n);
void vm_say_digits(vm_list_t *l, const char *digits);
/* "today at 3 45 p m", "yesterday at ...", "Monday, March 3rd at ..." in time zone tz. */
void vm_say_datetime(vm_list_t *l, uint64_t utc_ms, uint64_t now_ms, const char *tz);
/* "2 minutes 5 seconds". */
void vm_say_duration(vm_list_t *l, uint32_t ms);

/* --- a call ---------------------------------------------------------------------------------- */

typedef struct vm_call vm_call_t;
struct vm_call {
    cvx_chan_t *chan;
    cvx_media_t *media;
    int hung_up;
    unsigned pending; /* store requests and media operations whose callbacks are due */
    char mailbox[CVX_STORE_NUMBER_MAX];
    cvx_mailbox_t mb;
    /* deposit */
    cvx_store_stream_t *stream;
    char msg_id[CVX_STORE_ID_MAX];
    int16_t *rec;
    size_t rec_n, rec_cap, rec_sent;
    uint32_t flags;
    int attempts;
    int committing;
    /* subscriber */
    int pin_tries;
    int own_phone;                     /* only the PIN is asked */
    cvx_media_done_fn collected;       /* where the digits collected after a prompt go */
    const char *said;                  /* the prompt that confirms a folder move */
    char fwd_to[CVX_STORE_NUMBER_MAX]; /* forwarding to this mailbox */
    size_t play_pos;                   /* sample of the message where the current play started */
    size_t audio_msg;                  /* the message whose audio is in audio */
    int greeting_kind;                 /* cvx_greeting_t being recorded */
    int greeting_open;                 /* the stream is a greeting (dropped at hang-up) */
    char new_pin[CVX_STORE_PIN_MAX + 2];
    cvx_message_t *msgs;
    size_t nmsgs, cur;
    cvx_audio_t *audio; /* a greeting or message fetched from the store */
    cvx_store_reader_t *reader;
    uint8_t *fetch;
    size_t fetch_n, fetch_cap;
    uint8_t fetch_codec;
    int fetch_is_name;            /* the greeting being fetched is the recorded name */
    int refuse;                   /* the greeting is an extended absence refusing messages */
    char xfer_to[256];            /* where the transfer in progress goes */
    uint64_t greeting_expires_ms; /* of the temporary greeting being recorded; 0: none */
    uint32_t greeting_flags;      /* of the extended absence greeting being recorded */
    int replying;                 /* the recording is a reply (not a forward's introduction) */
    void (*fetched)(vm_call_t *c, int status, cvx_audio_t *a);
};

cvx_log_ctx_t vm_ctx(vm_call_t *c, const char *doing);
/* Frees the call once it has hung up and nothing is pending. */
void vm_call_maybe_free(vm_call_t *c);
/* Plays the list; done as for cvx_media_play.  On failure hangs up. */
int vm_play(vm_call_t *c, vm_list_t *l, const char *barge, cvx_media_done_fn done);
/* Plays then hangs up. */
void vm_play_and_hangup(vm_call_t *c, vm_list_t *l);
void vm_hangup(vm_call_t *c);
/* Waits up to timeout_ms for one key, then calls done; hangs up when the media core cannot
 * start collecting.  The menus of the conversation all take their choice this way. */
void vm_collect_key(vm_call_t *c, unsigned timeout_ms, cvx_media_done_fn done);
/* The same for a mailbox number ended by # (6 s for the first digit, 4 s between digits). */
void vm_collect_number(vm_call_t *c, cvx_media_done_fn done);
/* Appends a recorded frame (8 kHz linear) to c->rec, growing it; CVX_ENOTSUP for another
 * format, CVX_ENOMEM. */
int vm_rec_append(vm_call_t *c, const cvx_frame_t *f);

/* Reads a recording from the store and decodes it; fetched(c, 0, audio) with audio
 * referenced for the callee, or an error.  Not called when the call hangs up meanwhile. */
int vm_fetch(vm_call_t *c, const cvx_audio_ref_t *ref,
             void (*fetched)(vm_call_t *c, int status, cvx_audio_t *a));
uint64_t vm_now_ms(void);

/* The deposit flow (vm_deposit.c) for mailbox; calls vm_login_start on '*'. */
void vm_deposit_start(vm_call_t *c, const char *mailbox);
/* The call hung up: commits the message being recorded (or drops one too short). */
void vm_deposit_hangup(vm_call_t *c);
/* Mailbox options (vm_options.c), after the prompts in before (may be NULL). */
void vm_options_start(vm_call_t *c, vm_list_t *before);
/* 1 when pin is trivial: one digit repeated, or a run up or down (1234, 8765, 8901). */
int vm_pin_trivial(const char *pin);
/* Forwarding the current message with an introduction (vm_forward.c). */
void vm_forward_start(vm_call_t *c);
/* The reply menu of the current message: reply to a local sender, call the sender back
 * (vm_forward.c). */
void vm_reply_menu(vm_call_t *c);
/* Blind transfer to dest after "please hold" (vm_deposit.c); "no operator" then goodbye when
 * dest is empty or the transfer cannot start.  The call ends once the transfer is done. */
void vm_transfer(vm_call_t *c, const char *dest);
/* Plays before (may be NULL), then the message menu (vm_login.c). */
void vm_back_to_menu(vm_call_t *c, vm_list_t *before);
/* Back from the options to the messages (vm_login.c). */
void vm_messages_again(vm_call_t *c);

/* The subscriber conversation (vm_login.c); mailbox "" asks for it. */
void vm_login_start(vm_call_t *c, const char *mailbox);

#endif

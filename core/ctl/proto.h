/*
 * The control socket's wire format, shared by the daemon (core/ctl) and the shell
 * (tools/shell, which compiles proto.c itself and does not link libcallvox).
 *
 * A stream of frames: a 4-byte big-endian body length L (1 <= L <= the receiver's limit),
 * then the body: one type byte and L - 1 bytes of payload.
 *
 *   client -> daemon
 *     'Q' command    flags byte (CVX__CTL_JSON) + the command line, as typed
 *     'C' complete   the line up to the cursor; answered by 'M'
 *     'A' attach     a level name: stream log lines at that level and above; "off" stops
 *   daemon -> client
 *     'H' hello      "key=value" lines: version, name, role, user, access, level
 *     'R' reply      status byte (CVX__CTL_OK...) + text, or a JSON document with --json
 *     'M' matches    completion candidates, one per line
 *     'L' log line   level byte + the line
 *     'X' goodbye    why the daemon is closing this connection (then it closes)
 *
 * Everything here is plain C with no libuv and no logging, so that it is unit-testable.
 */
#ifndef CVX_CTL_PROTO_H
#define CVX_CTL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define CVX__CTL_HDR 4

/* Frame types. */
#define CVX__CTL_COMMAND  'Q'
#define CVX__CTL_COMPLETE 'C'
#define CVX__CTL_ATTACH   'A'
#define CVX__CTL_HELLO    'H'
#define CVX__CTL_REPLY    'R'
#define CVX__CTL_MATCHES  'M'
#define CVX__CTL_LOG      'L'
#define CVX__CTL_GOODBYE  'X'

/* Flags of a command frame. */
#define CVX__CTL_JSON 0x01

/* Reply status; the shell's one-shot exit status is the same number. */
enum {
    CVX__CTL_OK = 0,     /* the command succeeded */
    CVX__CTL_FAILED = 1, /* the command ran and failed */
    CVX__CTL_USAGE = 2,  /* unknown command, wrong arguments */
    CVX__CTL_DENIED = 3, /* the caller may not run it */
};
/* The shell's exit status when it cannot talk to the daemon at all. */
#define CVX__CTL_EXIT_UNREACHABLE 4

typedef struct cvx__ctl_frame {
    uint8_t type;
    const uint8_t *payload; /* valid until the next cvx__ctl_dec_next() or _feed() */
    size_t len;
} cvx__ctl_frame_t;

/*
 * An incoming byte stream cut into frames.  max_body bounds a frame's body (a longer length
 * prefix is garbage); max_buffer bounds the bytes held (a peer that sends faster than its
 * frames are taken is flooding).
 */
typedef struct cvx__ctl_dec {
    uint8_t *buf;
    size_t off, len, cap; /* frames start at buf + off; len bytes are held after off */
    size_t max_body, max_buffer;
    char error[128]; /* why cvx__ctl_dec_next() returned CVX_EPROTO */
} cvx__ctl_dec_t;

void cvx__ctl_dec_init(cvx__ctl_dec_t *d, size_t max_body, size_t max_buffer);
void cvx__ctl_dec_free(cvx__ctl_dec_t *d);
/* Appends bytes.  Returns 0, CVX_ELIMIT (more than max_buffer would be held; nothing is
 * appended) or CVX_ENOMEM. */
int cvx__ctl_dec_feed(cvx__ctl_dec_t *d, const void *data, size_t n);
/* Takes the next complete frame: 1 (f is filled), 0 (incomplete; wait for more bytes) or
 * CVX_EPROTO (the stream is garbage from here on; d->error says why). */
int cvx__ctl_dec_next(cvx__ctl_dec_t *d, cvx__ctl_frame_t *f);
/* Bytes held that have not been taken as frames (non-zero: something is unfinished). */
size_t cvx__ctl_dec_held(const cvx__ctl_dec_t *d);
/* How many complete frames are held, not yet taken (a peer that sends many requests ahead of
 * their replies is flooding).  Stops counting at the first incomplete or invalid one. */
size_t cvx__ctl_dec_complete(const cvx__ctl_dec_t *d);

/* Writes a frame's header into hdr (CVX__CTL_HDR + 1 bytes: length and type). */
void cvx__ctl_header(uint8_t *hdr, uint8_t type, size_t payload_len);
/* A whole frame in one malloc'ed buffer (header, prefix bytes, then payload); *out_len is its
 * size.  Returns NULL when out of memory. */
uint8_t *cvx__ctl_frame(uint8_t type, const void *prefix, size_t prefix_len, const void *payload,
                        size_t len, size_t *out_len);

/*
 * Splits a command line into words: blanks separate words; double quotes keep blanks inside
 * a word, and within them \" and \\ stand for " and \.  Returns the number of words (at most
 * max), or CVX_EPARSE with a message in err ("unterminated quote", "too many words").
 * words[i] point into buf, a copy of line the caller provides (at least strlen(line) + 1).
 */
int cvx__ctl_split(const char *line, char *buf, char **words, int max, char *err, size_t errlen);

#endif

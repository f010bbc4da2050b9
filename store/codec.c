/*
 * Stored records and keys.
 *
 * A record is a version-free list of fields, each "tag (1 byte), length (2 bytes LE),
 * bytes".  Decoding skips tags it does not know and leaves missing fields zero, so a field
 * can be added without a schema upgrade; only changes of meaning need one.  The field tables
 * below map tags to struct members; a tag is never reused.
 */
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "store_impl.h"

typedef enum ftype { F_STR, F_U8, F_U32, F_U64, F_BIN } ftype_t;

typedef struct field {
    uint8_t tag;
    ftype_t type;
    size_t offset;
    size_t size; /* F_STR: buffer size including NUL; F_BIN: exact length */
} field_t;

#define S(tag, st, m)                                                                              \
    {                                                                                              \
        tag, F_STR, offsetof(st, m), sizeof(((st *)0)->m)                                          \
    }
#define U8(tag, st, m)                                                                             \
    {                                                                                              \
        tag, F_U8, offsetof(st, m), 1                                                              \
    }
#define U32(tag, st, m)                                                                            \
    {                                                                                              \
        tag, F_U32, offsetof(st, m), 4                                                             \
    }
#define U64(tag, st, m)                                                                            \
    {                                                                                              \
        tag, F_U64, offsetof(st, m), 8                                                             \
    }
#define BIN(tag, st, m)                                                                            \
    {                                                                                              \
        tag, F_BIN, offsetof(st, m), sizeof(((st *)0)->m)                                          \
    }

static const field_t mailbox_fields[] = {
    S(1, mbrec_t, pub.number),
    S(2, mbrec_t, pub.first_name),
    S(3, mbrec_t, pub.last_name),
    S(4, mbrec_t, pub.language),
    S(5, mbrec_t, pub.timezone),
    S(6, mbrec_t, pub.email),
    S(7, mbrec_t, pub.mwi_device),
    U32(8, mbrec_t, pub.max_message_s),
    U32(9, mbrec_t, pub.quota_messages),
    U32(10, mbrec_t, pub.quota_minutes),
    U8(11, mbrec_t, pub.retention_class),
    U8(12, mbrec_t, pub.listed),
    U32(13, mbrec_t, pub.failed_logins),
    U64(14, mbrec_t, pub.locked_until_ms),
    U64(15, mbrec_t, pub.pin_changed_ms),
    U64(16, mbrec_t, pub.created_ms),
    S(17, mbrec_t, pin_hash),
    S(20, mbrec_t, history[0]),
    S(21, mbrec_t, history[1]),
    S(22, mbrec_t, history[2]),
    S(23, mbrec_t, history[3]),
    S(24, mbrec_t, history[4]),
    S(25, mbrec_t, history[5]),
    S(26, mbrec_t, history[6]),
    S(27, mbrec_t, history[7]),
    {0, 0, 0, 0},
};

static const field_t message_fields[] = {
    S(1, cvx_message_t, id),
    S(2, cvx_message_t, mailbox),
    U8(3, cvx_message_t, folder),
    S(4, cvx_message_t, caller_number),
    S(5, cvx_message_t, caller_name),
    S(6, cvx_message_t, called_number),
    U8(7, cvx_message_t, redirect_reason),
    U64(8, cvx_message_t, received_ms),
    U32(9, cvx_message_t, duration_ms),
    U32(10, cvx_message_t, flags),
    U64(11, cvx_message_t, folder_changed_ms),
    U8(12, cvx_message_t, codec),
    U32(13, cvx_message_t, rate),
    U64(14, cvx_message_t, bytes),
    BIN(15, cvx_message_t, sha256),
    {0, 0, 0, 0},
};

static const field_t blob_fields[] = {
    U64(1, blobrec_t, refs),
    U64(2, blobrec_t, sid),
    U32(3, blobrec_t, chunks),
    U64(4, blobrec_t, bytes),
    U8(5, blobrec_t, codec),
    U32(6, blobrec_t, rate),
    {0, 0, 0, 0},
};

static const field_t greeting_fields[] = {
    BIN(1, greetrec_t, sha256),
    U64(2, greetrec_t, expires_ms),
    U32(3, greetrec_t, flags),
    U64(4, greetrec_t, recorded_ms),
    {0, 0, 0, 0},
};

static const field_t mwi_fields[] = {
    S(1, mwirec_t, pub.mailbox),      U32(2, mwirec_t, pub.msgs_new),
    U32(3, mwirec_t, pub.urgent_new), U32(4, mwirec_t, pub.msgs_saved),
    U8(5, mwirec_t, pub.lamp),        U8(6, mwirec_t, pub.sent_lamp),
    U8(7, mwirec_t, pub.sent_ok),     U64(8, mwirec_t, pub.generation),
    U64(9, mwirec_t, pub.sent_ms),    U32(10, mwirec_t, msgs_deleted),
    U64(11, mwirec_t, total_ms),      {0, 0, 0, 0},
};

static const field_t *const tables[] = {mailbox_fields, message_fields, blob_fields,
                                        greeting_fields, mwi_fields};
static const size_t sizes[] = {sizeof(mbrec_t), sizeof(cvx_message_t), sizeof(blobrec_t),
                               sizeof(greetrec_t), sizeof(mwirec_t)};

size_t store__encode(rectype_t type, const void *obj, uint8_t *buf, size_t size)
{
    const uint8_t *base = obj;
    size_t len = 0;
    for (const field_t *f = tables[type]; f->tag != 0; f++) {
        const uint8_t *p = base + f->offset;
        size_t n;
        uint8_t tmp[8];
        switch (f->type) {
        case F_STR:
            n = strnlen((const char *)p, f->size - 1);
            if (n == 0)
                continue; /* empty strings are absent */
            break;
        case F_U8:
            n = 1;
            if (*p == 0)
                continue;
            break;
        case F_U32: {
            uint32_t v;
            memcpy(&v, p, 4);
            if (v == 0)
                continue;
            for (int i = 0; i < 4; i++)
                tmp[i] = (uint8_t)(v >> (8 * i));
            p = tmp;
            n = 4;
            break;
        }
        case F_U64: {
            uint64_t v;
            memcpy(&v, p, 8);
            if (v == 0)
                continue;
            for (int i = 0; i < 8; i++)
                tmp[i] = (uint8_t)(v >> (8 * i));
            p = tmp;
            n = 8;
            break;
        }
        default:
            n = f->size;
            break;
        }
        if (len + 3 + n > size)
            return SIZE_MAX;
        buf[len] = f->tag;
        buf[len + 1] = (uint8_t)(n & 0xff);
        buf[len + 2] = (uint8_t)(n >> 8);
        memcpy(buf + len + 3, p, n);
        len += 3 + n;
    }
    return len;
}

int store__decode(rectype_t type, const void *data, size_t len, void *obj)
{
    const uint8_t *d = data;
    uint8_t *base = obj;
    memset(obj, 0, sizes[type]);
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 3)
            return CVX_ECORRUPT;
        uint8_t tag = d[pos];
        size_t n = (size_t)d[pos + 1] | ((size_t)d[pos + 2] << 8);
        pos += 3;
        if (n > len - pos)
            return CVX_ECORRUPT;
        const uint8_t *p = d + pos;
        pos += n;
        const field_t *f = tables[type];
        while (f->tag != 0 && f->tag != tag)
            f++;
        if (f->tag == 0)
            continue; /* a field from a later version */
        uint8_t *dst = base + f->offset;
        switch (f->type) {
        case F_STR:
            if (n >= f->size)
                return CVX_ECORRUPT;
            memcpy(dst, p, n);
            dst[n] = '\0';
            break;
        case F_U8:
            if (n != 1)
                return CVX_ECORRUPT;
            *dst = *p;
            break;
        case F_U32: {
            if (n != 4)
                return CVX_ECORRUPT;
            uint32_t v = 0;
            for (int i = 0; i < 4; i++)
                v |= (uint32_t)p[i] << (8 * i);
            memcpy(dst, &v, 4);
            break;
        }
        case F_U64: {
            if (n != 8)
                return CVX_ECORRUPT;
            uint64_t v = 0;
            for (int i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
            memcpy(dst, &v, 8);
            break;
        }
        default:
            if (n != f->size)
                return CVX_ECORRUPT;
            memcpy(dst, p, n);
            break;
        }
    }
    return 0;
}

void store__be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t store__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void store__be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint32_t store__get_be32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = (v << 8) | p[i];
    return v;
}

uint64_t store__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int store__copy(char *dst, const char *src, size_t n)
{
    size_t len = strlen(src);
    if (len >= n) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return 0;
    }
    memcpy(dst, src, len + 1);
    return 1;
}

void store__hex(const uint8_t *bin, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = '\0';
}

size_t store__dir_key(const cvx_mailbox_t *mb, uint8_t *key)
{
    char digits[2 * CVX_STORE_NAME_MAX];
    cvx_store_keypad(mb->last_name, digits);
    size_t n = strlen(digits);
    cvx_store_keypad(mb->first_name, digits + n);
    n = strlen(digits);
    memcpy(key, digits, n);
    key[n++] = '\0';
    size_t m = strlen(mb->number);
    memcpy(key + n, mb->number, m);
    return n + m;
}

size_t store__idx_key(const char *number, uint64_t received_ms, const char *id, uint8_t *key)
{
    size_t n = strlen(number);
    memcpy(key, number, n);
    key[n++] = '\0';
    store__be64(key + n, received_ms);
    n += 8;
    size_t m = strlen(id);
    memcpy(key + n, id, m);
    return n + m;
}

/* --- public helpers ------------------------------------------------------------------- */

void cvx_store_keypad(const char *name, char *out)
{
    /* ITU E.161: ABC 2, DEF 3, GHI 4, JKL 5, MNO 6, PQRS 7, TUV 8, WXYZ 9. */
    static const char map[26] = {'2', '2', '2', '3', '3', '3', '4', '4', '4', '5', '5', '5', '6',
                                 '6', '6', '7', '7', '7', '7', '8', '8', '8', '9', '9', '9', '9'};
    size_t n = 0;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        if (c >= 'a' && c <= 'z')
            out[n++] = map[c - 'a'];
        else if (c >= 'A' && c <= 'Z')
            out[n++] = map[c - 'A'];
    }
    out[n] = '\0';
}

int cvx_store_valid_number(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= CVX_STORE_NUMBER_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '*' || s[i] == '#' || s[i] == '+'))
            return 0;
    return 1;
}

int cvx_store_valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= CVX_STORE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

void cvx_store_make_id(char id[CVX_STORE_ID_MAX])
{
    uint8_t bin[16];
    uint64_t ms = store__now_ms();
    for (int i = 5; i >= 0; i--, ms >>= 8)
        bin[i] = (uint8_t)ms;
    randombytes_buf(bin + 6, 10);
    store__hex(bin, 16, id);
}

static const char *const folder_names[] = {"new", "saved", "deleted"};
static const char *const greeting_names[] = {"standard", "busy",      "noanswer",
                                             "extended", "temporary", "name"};

const char *cvx_folder_name(cvx_folder_t f)
{
    return (unsigned)f < 3 ? folder_names[f] : f == CVX_FOLDER_ANY ? "any" : "?";
}

int cvx_folder_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, folder_names[i]) == 0)
            return i;
    return strcmp(name, "any") == 0 ? CVX_FOLDER_ANY : -1;
}

const char *cvx_greeting_name(cvx_greeting_t g)
{
    return (unsigned)g < CVX_GREETING_COUNT ? greeting_names[g] : "?";
}

int cvx_greeting_from_name(const char *name)
{
    for (int i = 0; i < CVX_GREETING_COUNT; i++)
        if (strcmp(name, greeting_names[i]) == 0)
            return i;
    return -1;
}

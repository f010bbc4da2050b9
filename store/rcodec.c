/*
 * Conversions between the store's C structs (cvx/store.h) and the link's protobuf messages
 * (store.proto).  Strings from the peer are copied with truncation into the fixed C sizes;
 * a missing sub-message reads as zeros.
 */
#include <string.h>

#include "remote.h"
#include "store.pb-c.h"
#include "store_impl.h"

#define CP(dst, src) store__copy((dst), (src) != NULL ? (src) : "", sizeof(dst))
/* protobuf-c keeps string fields non-const; the encoder only reads them. */
#define S(x) ((char *)(x))

void store__pb_from_mailbox(Cvxstore__Mailbox *p, const cvx_mailbox_t *m)
{
    cvxstore__mailbox__init(p);
    p->number = S(m->number);
    p->first_name = S(m->first_name);
    p->last_name = S(m->last_name);
    p->language = S(m->language);
    p->timezone = S(m->timezone);
    p->email = S(m->email);
    p->mwi_device = S(m->mwi_device);
    p->max_message_s = m->max_message_s;
    p->quota_messages = m->quota_messages;
    p->quota_minutes = m->quota_minutes;
    p->retention_class = m->retention_class;
    p->listed = m->listed;
    p->has_pin = m->has_pin;
    p->failed_logins = m->failed_logins;
    p->locked_until_ms = m->locked_until_ms;
    p->pin_changed_ms = m->pin_changed_ms;
    p->created_ms = m->created_ms;
    p->greetings = m->greetings;
    p->greeting_flags = m->greeting_flags;
    p->temporary_until_ms = m->temporary_until_ms;
    p->msgs_new = m->msgs_new;
    p->msgs_saved = m->msgs_saved;
    p->msgs_deleted = m->msgs_deleted;
    p->urgent_new = m->urgent_new;
    p->total_ms = m->total_ms;
}

void store__pb_to_mailbox(const Cvxstore__Mailbox *p, cvx_mailbox_t *m)
{
    memset(m, 0, sizeof(*m));
    if (p == NULL)
        return;
    CP(m->number, p->number);
    CP(m->first_name, p->first_name);
    CP(m->last_name, p->last_name);
    CP(m->language, p->language);
    CP(m->timezone, p->timezone);
    CP(m->email, p->email);
    CP(m->mwi_device, p->mwi_device);
    m->max_message_s = p->max_message_s;
    m->quota_messages = p->quota_messages;
    m->quota_minutes = p->quota_minutes;
    m->retention_class = (uint8_t)p->retention_class;
    m->listed = p->listed ? 1 : 0;
    m->has_pin = p->has_pin ? 1 : 0;
    m->failed_logins = p->failed_logins;
    m->locked_until_ms = p->locked_until_ms;
    m->pin_changed_ms = p->pin_changed_ms;
    m->created_ms = p->created_ms;
    m->greetings = p->greetings;
    m->greeting_flags = p->greeting_flags;
    m->temporary_until_ms = p->temporary_until_ms;
    m->msgs_new = p->msgs_new;
    m->msgs_saved = p->msgs_saved;
    m->msgs_deleted = p->msgs_deleted;
    m->urgent_new = p->urgent_new;
    m->total_ms = p->total_ms;
}

void store__pb_from_message(Cvxstore__Message *p, const cvx_message_t *m)
{
    cvxstore__message__init(p);
    p->id = S(m->id);
    p->mailbox = S(m->mailbox);
    p->folder = m->folder;
    p->caller_number = S(m->caller_number);
    p->caller_name = S(m->caller_name);
    p->called_number = S(m->called_number);
    p->redirect_reason = m->redirect_reason;
    p->received_ms = m->received_ms;
    p->duration_ms = m->duration_ms;
    p->flags = m->flags;
    p->folder_changed_ms = m->folder_changed_ms;
    p->codec = m->codec;
    p->rate = m->rate;
    p->bytes = m->bytes;
    p->sha256.data = (uint8_t *)m->sha256;
    p->sha256.len = sizeof(m->sha256);
}

void store__pb_to_message(const Cvxstore__Message *p, cvx_message_t *m)
{
    memset(m, 0, sizeof(*m));
    if (p == NULL)
        return;
    CP(m->id, p->id);
    CP(m->mailbox, p->mailbox);
    m->folder = (uint8_t)p->folder;
    CP(m->caller_number, p->caller_number);
    CP(m->caller_name, p->caller_name);
    CP(m->called_number, p->called_number);
    m->redirect_reason = (uint8_t)p->redirect_reason;
    m->received_ms = p->received_ms;
    m->duration_ms = p->duration_ms;
    m->flags = p->flags;
    m->folder_changed_ms = p->folder_changed_ms;
    m->codec = (uint8_t)p->codec;
    m->rate = p->rate;
    m->bytes = p->bytes;
    if (p->sha256.len == sizeof(m->sha256))
        memcpy(m->sha256, p->sha256.data, sizeof(m->sha256));
}

void store__pb_from_mwi(Cvxstore__Mwi *p, const cvx_mwi_t *m)
{
    cvxstore__mwi__init(p);
    p->mailbox = S(m->mailbox);
    p->msgs_new = m->msgs_new;
    p->urgent_new = m->urgent_new;
    p->msgs_saved = m->msgs_saved;
    p->lamp = m->lamp;
    p->sent_lamp = m->sent_lamp;
    p->sent_ok = m->sent_ok;
    p->generation = m->generation;
    p->sent_ms = m->sent_ms;
}

void store__pb_to_mwi(const Cvxstore__Mwi *p, cvx_mwi_t *m)
{
    memset(m, 0, sizeof(*m));
    if (p == NULL)
        return;
    CP(m->mailbox, p->mailbox);
    m->msgs_new = p->msgs_new;
    m->urgent_new = p->urgent_new;
    m->msgs_saved = p->msgs_saved;
    m->lamp = p->lamp ? 1 : 0;
    m->sent_lamp = p->sent_lamp ? 1 : 0;
    m->sent_ok = p->sent_ok ? 1 : 0;
    m->generation = p->generation;
    m->sent_ms = p->sent_ms;
}

void store__pb_from_dir(Cvxstore__DirEntry *p, const cvx_dir_entry_t *e)
{
    cvxstore__dir_entry__init(p);
    p->number = S(e->number);
    p->first_name = S(e->first_name);
    p->last_name = S(e->last_name);
}

void store__pb_to_dir(const Cvxstore__DirEntry *p, cvx_dir_entry_t *e)
{
    memset(e, 0, sizeof(*e));
    if (p == NULL)
        return;
    CP(e->number, p->number);
    CP(e->first_name, p->first_name);
    CP(e->last_name, p->last_name);
}

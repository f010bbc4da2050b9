/*
 * The adaptive jitter buffer (see rtp_impl.h).
 *
 * Packets are stored by sequence number in a ring of CVX__JB_SLOTS.  Playout starts once the
 * buffer holds the target number of packets; from then on every pop takes samples from the
 * expected packet.  A packet missing at its turn while later ones are present is lost: its
 * time is filled with silence (the size of the last packet) so that the timeline of the
 * recording stays right.  An empty buffer is an underrun: the buffer refills to a deeper
 * target.  A buffer that has stayed deeper than needed for 50 pops drops one packet.
 */
#include <string.h>

#include "cvx/error.h"
#include "media/rtp_impl.h"

void cvx__jb_init(cvx__jb_t *jb, uint8_t silence, unsigned min_target, unsigned max_target)
{
    memset(jb, 0, sizeof(*jb));
    if (min_target < 1)
        min_target = 1;
    if (max_target > CVX__JB_SLOTS / 2)
        max_target = CVX__JB_SLOTS / 2;
    if (max_target < min_target)
        max_target = min_target;
    jb->silence = silence;
    jb->min_target = min_target;
    jb->max_target = max_target;
    jb->target = min_target;
    jb->last_n = 160;
}

static void jb_flush(cvx__jb_t *jb)
{
    for (unsigned i = 0; i < CVX__JB_SLOTS; i++)
        jb->slot[i].used = 0;
    jb->count = 0;
    jb->playing = 0;
    jb->offset = 0;
}

/* The lowest sequence number held (count > 0), relative to ref. */
static uint16_t jb_lowest(const cvx__jb_t *jb, uint16_t ref)
{
    int best = 0, found = 0;
    for (unsigned i = 0; i < CVX__JB_SLOTS; i++) {
        if (!jb->slot[i].used)
            continue;
        int d = (int16_t)(uint16_t)(jb->slot[i].seq - ref);
        if (!found || d < best) {
            best = d;
            found = 1;
        }
    }
    return (uint16_t)(ref + best);
}

int cvx__jb_put(cvx__jb_t *jb, uint16_t seq, const uint8_t *data, size_t n)
{
    if (n > CVX__JB_MAX_PKT || n == 0)
        return CVX_ERANGE;
    if (jb->playing) {
        int d = (int16_t)(uint16_t)(seq - jb->next_seq);
        if (d < 0 || (d == 0 && jb->offset > 0)) {
            jb->late++;
            return CVX_ERANGE;
        }
        if (d >= CVX__JB_SLOTS) {
            /* Far ahead: the sender jumped.  Start again from this packet. */
            jb->resets++;
            jb_flush(jb);
        }
    } else if (jb->count > 0) {
        uint16_t low = jb_lowest(jb, seq);
        int d = (int16_t)(uint16_t)(seq - low);
        if (d >= CVX__JB_SLOTS || d <= -CVX__JB_SLOTS) {
            jb->resets++;
            jb_flush(jb);
        }
    }
    cvx__jb_slot_t *s = &jb->slot[seq % CVX__JB_SLOTS];
    if (s->used) {
        if (s->seq == seq) {
            jb->dup++;
            return CVX_ERANGE;
        }
        /* An old packet still in the slot: it will never be played. */
        jb->dropped++;
        jb->count--;
    }
    s->used = 1;
    s->seq = seq;
    s->n = (uint16_t)n;
    memcpy(s->data, data, n);
    jb->count++;
    return 0;
}

/* Gives up the packet at next_seq (played, lost or dropped). */
static void jb_advance(cvx__jb_t *jb)
{
    cvx__jb_slot_t *s = &jb->slot[jb->next_seq % CVX__JB_SLOTS];
    if (s->used && s->seq == jb->next_seq) {
        s->used = 0;
        jb->count--;
    }
    jb->next_seq++;
    jb->offset = 0;
}

unsigned cvx__jb_pop(cvx__jb_t *jb, uint8_t *out, unsigned n)
{
    unsigned got = 0, filled = 0;
    if (!jb->playing) {
        if (jb->count < jb->target) {
            memset(out, jb->silence, n);
            return 0;
        }
        jb->playing = 1;
        /* jb_lowest needs a reference near the packets: use any packet held. */
        for (unsigned i = 0; i < CVX__JB_SLOTS; i++) {
            if (jb->slot[i].used) {
                jb->next_seq = jb_lowest(jb, jb->slot[i].seq);
                break;
            }
        }
        jb->offset = 0;
    }
    /* Too deep for a while: drop the oldest packet to bring the delay down. */
    if (jb->count > jb->target + 1) {
        if (++jb->deep_ticks >= 50 && jb->offset == 0) {
            jb->deep_ticks = 0;
            jb->dropped++;
            jb_advance(jb);
        }
    } else {
        jb->deep_ticks = 0;
    }
    while (filled < n) {
        cvx__jb_slot_t *s = &jb->slot[jb->next_seq % CVX__JB_SLOTS];
        if (s->used && s->seq == jb->next_seq) {
            unsigned take = s->n - jb->offset;
            if (take > n - filled)
                take = n - filled;
            memcpy(out + filled, s->data + jb->offset, take);
            filled += take;
            got += take;
            jb->offset += take;
            jb->last_n = s->n;
            if (jb->offset >= s->n)
                jb_advance(jb);
            continue;
        }
        if (jb->count == 0) {
            /* Underrun: nothing left.  Refill, to a deeper target. */
            jb->underruns++;
            jb->playing = 0;
            jb->offset = 0;
            if (jb->target < jb->max_target)
                jb->target++;
            memset(out + filled, jb->silence, n - filled);
            return got;
        }
        /* The expected packet is missing but later ones are here: it is lost.  Fill its
         * duration (as long as the last packet's) with silence. */
        unsigned take = jb->last_n - jb->offset;
        if (take > n - filled)
            take = n - filled;
        memset(out + filled, jb->silence, take);
        filled += take;
        jb->offset += take;
        if (jb->offset >= jb->last_n) {
            jb->lost++;
            jb->next_seq++;
            jb->offset = 0;
        }
    }
    return got;
}

void cvx__jb_set_jitter(cvx__jb_t *jb, double jitter_samples, unsigned pkt_samples)
{
    if (pkt_samples == 0)
        return;
    /* Enough depth for about three times the mean deviation, plus the packet being played. */
    unsigned want = 1 + (unsigned)((3.0 * jitter_samples + pkt_samples - 1) / pkt_samples);
    if (want < jb->min_target)
        want = jb->min_target;
    if (want > jb->max_target)
        want = jb->max_target;
    /* Grow at once; shrink only by the deep-buffer rule in pop. */
    if (want > jb->target)
        jb->target = want;
    else if (want < jb->target && jb->count <= want)
        jb->target = want;
}

/*
 * Prompt sets (cvx/prompts.h): the mechanism plugins/voicemail introduced (vm_prompts.c),
 * made a core service so that every flow (attendant, voicemail) maps its prompts the same
 * way.
 *
 * A set lives until destroyed; each load in flight holds the set (pending), so a destroyed
 * set is freed only when its last load has reported back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/prompts.h"

typedef struct slot {
    cvx_prompt_set_t *set;
    size_t index;
} slot_t;

struct cvx_prompt_set {
    const cvx_prompt_def_t *defs;
    size_t n;
    char owner[32];
    cvx_audio_t **audio;
    char (*path)[512];
    slot_t *slots;
    cvx_audio_t *tail_silence;
    size_t loaded, pending;
    int dead;
};

static void set_free(cvx_prompt_set_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->audio[i])
            cvx_audio_unref(s->audio[i]);
    if (s->tail_silence)
        cvx_audio_unref(s->tail_silence);
    free(s->audio);
    free(s->path);
    free(s->slots);
    free(s);
}

static void on_loaded(cvx_audio_t *audio, int err, void *arg)
{
    slot_t *slot = arg;
    cvx_prompt_set_t *s = slot->set;
    s->pending--;
    if (s->dead) {
        if (audio)
            cvx_audio_unref(audio);
        if (s->pending == 0)
            set_free(s);
        return;
    }
    size_t i = slot->index;
    if (err != 0) {
        cvx_error("%s: prompt '%s' (%s) cannot be used: %s", s->owner, s->defs[i].name, s->path[i],
                  cvx_strerror(err));
        return;
    }
    s->audio[i] = audio;
    if (++s->loaded == s->n)
        cvx_info("%s: %zu prompts loaded", s->owner, s->n);
}

int cvx_prompt_set_create(uv_loop_t *loop, const char *owner, const cvx_prompt_def_t *defs,
                          size_t n, const char *rec_dir, const char *gen_dir, char *err,
                          size_t errlen, cvx_prompt_set_t **out)
{
    cvx_prompt_set_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->audio = calloc(n ? n : 1, sizeof(*s->audio))) == NULL ||
        (s->path = calloc(n ? n : 1, sizeof(*s->path))) == NULL ||
        (s->slots = calloc(n ? n : 1, sizeof(*s->slots))) == NULL) {
        if (s)
            set_free(s);
        snprintf(err, errlen, "out of memory");
        return CVX_ENOMEM;
    }
    s->defs = defs;
    s->n = n;
    snprintf(s->owner, sizeof(s->owner), "%s", owner);
    for (size_t i = 0; i < n; i++) {
        const char *dir = defs[i].generated ? gen_dir : rec_dir;
        snprintf(s->path[i], sizeof(s->path[i]), "%s/%s", dir, defs[i].file);
        /* Start-up, before calls are served: a plain access() is fine here. */
        if (access(s->path[i], R_OK) != 0) {
            snprintf(err, errlen, "prompt '%s' is missing: %s (%s)", defs[i].name, s->path[i],
                     defs[i].generated ? "generated at build time with espeak-ng and sox"
                                       : "install asterisk-core-sounds-en-wav");
            set_free(s);
            return CVX_ENOTFOUND;
        }
    }
    /* Half a second of silence after the last prompt of a call, so that it has left before
     * the hang-up tears the media down. */
    int16_t zeros[4000] = {0};
    s->tail_silence = cvx_audio_from_samples(zeros, 4000, 8000);
    if (s->tail_silence == NULL) {
        set_free(s);
        snprintf(err, errlen, "out of memory");
        return CVX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        s->slots[i].set = s;
        s->slots[i].index = i;
        int rc = cvx_audio_load(loop, s->path[i], on_loaded, &s->slots[i]);
        if (rc != 0) {
            snprintf(err, errlen, "prompt '%s' (%s) cannot be loaded: %s", defs[i].name, s->path[i],
                     cvx_strerror(rc));
            cvx_prompt_set_destroy(s);
            return rc;
        }
        s->pending++;
    }
    *out = s;
    return 0;
}

void cvx_prompt_set_destroy(cvx_prompt_set_t *s)
{
    if (s == NULL)
        return;
    s->dead = 1;
    if (s->pending == 0)
        set_free(s);
}

int cvx_prompt_set_ready(const cvx_prompt_set_t *s)
{
    return s != NULL && s->loaded == s->n;
}

cvx_audio_t *cvx_prompt_get(const cvx_prompt_set_t *s, const char *name)
{
    if (s == NULL)
        return NULL;
    if (strcmp(name, "tail-silence") == 0)
        return s->tail_silence;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->defs[i].name, name) == 0)
            return s->audio[i];
    return NULL;
}

void cvx_playlist_add(cvx_playlist_t *l, const cvx_prompt_set_t *s, const char *name)
{
    cvx_audio_t *a = cvx_prompt_get(s, name);
    if (a == NULL) {
        cvx_warn("%s: prompt '%s' is not loaded", s ? s->owner : "prompts", name);
        l->missing = 1;
        return;
    }
    cvx_playlist_add_audio(l, a);
}

void cvx_playlist_add_audio(cvx_playlist_t *l, cvx_audio_t *a)
{
    if (l->n < CVX_PLAYLIST_MAX && a != NULL)
        l->a[l->n++] = a;
}

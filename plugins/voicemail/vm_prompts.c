/*
 * The prompt table (generated from prompts.tsv) and its loading.
 *
 * At load the module checks that every prompt's file exists (a missing one stops the module
 * with a line naming it), then asks the media core to load each through its cache: the files
 * are read on the libuv thread pool, never on the loop thread.  A prompt that fails to decode
 * (not 8 kHz mono) is logged with its name and path.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "vm.h"

typedef struct vm_prompt_def {
    const char *name;
    int generated; /* 1: made at build time, in generated_dir; 0: in prompt_dir */
    const char *file;
} vm_prompt_def_t;

#define VM_PROMPT(name, gen, file) {name, gen, file},
static const vm_prompt_def_t prompt_defs[] = {
#include "vm_prompt_table.h"
};
#undef VM_PROMPT
#define NPROMPTS (sizeof(prompt_defs) / sizeof(prompt_defs[0]))

static cvx_audio_t *prompt_audio[NPROMPTS];
static char prompt_path[NPROMPTS][512];
static cvx_audio_t *tail_silence;
static unsigned loaded, failed;
static int generation; /* tells late callbacks of an unloaded module's loads apart */

static void on_loaded(cvx_audio_t *audio, int err, void *arg)
{
    size_t i = (size_t)(uintptr_t)arg % NPROMPTS;
    int gen = (int)((size_t)(uintptr_t)arg / NPROMPTS);
    if (gen != generation) {
        if (audio)
            cvx_audio_unref(audio);
        return;
    }
    if (err != 0) {
        failed++;
        cvx_error("voicemail: prompt '%s' (%s) cannot be used: %s", prompt_defs[i].name,
                  prompt_path[i], cvx_strerror(err));
        return;
    }
    prompt_audio[i] = audio;
    if (++loaded == NPROMPTS)
        cvx_info("voicemail: %zu prompts loaded", NPROMPTS);
}

int vm_prompts_load(void *loop, char *err, size_t errlen)
{
    for (size_t i = 0; i < NPROMPTS; i++) {
        const char *dir = prompt_defs[i].generated ? vm_conf.generated_dir : vm_conf.prompt_dir;
        snprintf(prompt_path[i], sizeof(prompt_path[i]), "%s/%s", dir, prompt_defs[i].file);
        /* Start-up, before calls are served: a plain access() is fine here. */
        if (access(prompt_path[i], R_OK) != 0) {
            snprintf(err, errlen, "prompt '%s' is missing: %s (%s)", prompt_defs[i].name,
                     prompt_path[i],
                     prompt_defs[i].generated ? "generated at build time with espeak-ng and sox"
                                              : "install asterisk-core-sounds-en-wav");
            return CVX_ENOTFOUND;
        }
    }
    generation++;
    loaded = failed = 0;
    /* Half a second of silence after the last prompt of a call, so that it has left before
     * the hang-up tears the media down. */
    int16_t zeros[4000] = {0};
    tail_silence = cvx_audio_from_samples(zeros, 4000, 8000);
    if (tail_silence == NULL) {
        snprintf(err, errlen, "out of memory");
        return CVX_ENOMEM;
    }
    for (size_t i = 0; i < NPROMPTS; i++) {
        int rc = cvx_audio_load(loop, prompt_path[i], on_loaded,
                                (void *)(uintptr_t)(i + (size_t)generation * NPROMPTS));
        if (rc != 0) {
            snprintf(err, errlen, "prompt '%s' (%s) cannot be loaded: %s", prompt_defs[i].name,
                     prompt_path[i], cvx_strerror(rc));
            return rc;
        }
    }
    return 0;
}

void vm_prompts_unload(void)
{
    generation++;
    if (tail_silence)
        cvx_audio_unref(tail_silence);
    tail_silence = NULL;
    for (size_t i = 0; i < NPROMPTS; i++) {
        if (prompt_audio[i])
            cvx_audio_unref(prompt_audio[i]);
        prompt_audio[i] = NULL;
    }
}

int vm_prompts_ready(void)
{
    return loaded == NPROMPTS;
}

cvx_audio_t *vm_prompt(const char *name)
{
    if (strcmp(name, "tail-silence") == 0)
        return tail_silence;
    for (size_t i = 0; i < NPROMPTS; i++)
        if (strcmp(prompt_defs[i].name, name) == 0)
            return prompt_audio[i];
    return NULL;
}

void vm_add(vm_list_t *l, const char *name)
{
    cvx_audio_t *a = vm_prompt(name);
    if (a == NULL) {
        cvx_warn("voicemail: prompt '%s' is not loaded", name);
        l->missing = 1;
        return;
    }
    vm_add_audio(l, a);
}

void vm_add_audio(vm_list_t *l, cvx_audio_t *a)
{
    if (l->n < VM_LIST_MAX && a != NULL)
        l->a[l->n++] = a;
}

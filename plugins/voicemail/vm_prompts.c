/*
 * The voicemail prompt table (generated from prompts.tsv by cvx_prompt_table()) on the media
 * core's prompt sets (cvx/prompts.h): every file is checked at load (a missing one stops the
 * module with a line naming it) and read through the media cache on the thread pool.
 */
#include "cvx/prompts.h"
#include "vm.h"

#define CVX_PROMPT(name, gen, file) {name, gen, file},
static const cvx_prompt_def_t prompt_defs[] = {
#include "vm_prompt_table.h"
};
#undef CVX_PROMPT
#define NPROMPTS (sizeof(prompt_defs) / sizeof(prompt_defs[0]))

static cvx_prompt_set_t *prompts;

int vm_prompts_load(void *loop, char *err, size_t errlen)
{
    return cvx_prompt_set_create(loop, "voicemail", prompt_defs, NPROMPTS, vm_conf.prompt_dir,
                                 vm_conf.generated_dir, err, errlen, &prompts);
}

void vm_prompts_unload(void)
{
    if (prompts != NULL)
        cvx_prompt_set_destroy(prompts);
    prompts = NULL;
}

int vm_prompts_ready(void)
{
    return prompts != NULL && cvx_prompt_set_ready(prompts);
}

cvx_audio_t *vm_prompt(const char *name)
{
    return prompts != NULL ? cvx_prompt_get(prompts, name) : NULL;
}

void vm_add(vm_list_t *l, const char *name)
{
    cvx_playlist_add(l, prompts, name);
}

void vm_add_audio(vm_list_t *l, cvx_audio_t *a)
{
    cvx_playlist_add_audio(l, a);
}

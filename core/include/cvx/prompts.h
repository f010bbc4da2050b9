/*
 * Prompt sets: a call flow's table of named prompts (recorded ones from an installed set,
 * generated ones made at build time), checked and loaded at start, and lists of audio to
 * play built from them.
 *
 * A flow describes its prompts in a prompts.tsv (NAME<TAB>rec:PATH or NAME<TAB>tts:TEXT);
 * the CMake function cvx_prompt_table() (plugins/CMakeLists.txt) generates the tts prompts
 * with espeak-ng and sox and writes a header of CVX_PROMPT(name, generated, file) lines that
 * the flow turns into its cvx_prompt_def_t table.
 *
 * Thread: loop thread only.  Files are read on the libuv thread pool (cvx_audio_load()).
 */
#ifndef CVX_PROMPTS_H
#define CVX_PROMPTS_H

#include <stddef.h>
#include <uv.h>

#include "cvx/media.h"

typedef struct cvx_prompt_def {
    const char *name;
    int generated;    /* 1: made at build time, in the generated directory; 0: recorded */
    const char *file; /* relative to its directory */
} cvx_prompt_def_t;

typedef struct cvx_prompt_set cvx_prompt_set_t;

/*
 * Checks that every prompt's file exists (a missing one: CVX_ENOTFOUND and err names the
 * prompt, its path and where it comes from) and starts loading them all through the media
 * core's cache.  owner names the flow in log lines.  defs must outlive the set.  Returns 0
 * and the set in *out, or CVX_E*.
 */
int cvx_prompt_set_create(uv_loop_t *loop, const char *owner, const cvx_prompt_def_t *defs,
                          size_t n, const char *rec_dir, const char *gen_dir, char *err,
                          size_t errlen, cvx_prompt_set_t **out);
/* Frees the set (loads still in progress finish and are dropped). */
void cvx_prompt_set_destroy(cvx_prompt_set_t *s);
/* The loaded audio of a prompt (not referenced: valid while the set lives), or NULL when not
 * loaded (yet) or unknown.  "tail-silence" is half a second of silence. */
cvx_audio_t *cvx_prompt_get(const cvx_prompt_set_t *s, const char *name);
/* 1 when every prompt is loaded. */
int cvx_prompt_set_ready(const cvx_prompt_set_t *s);

/* A list of audio to play in order (cvx_media_play()). */
#define CVX_PLAYLIST_MAX 96
typedef struct cvx_playlist {
    cvx_audio_t *a[CVX_PLAYLIST_MAX];
    size_t n;
    int missing; /* a prompt was not loaded */
} cvx_playlist_t;

/* Appends the prompt name of s (a warning and l->missing when it is not loaded). */
void cvx_playlist_add(cvx_playlist_t *l, const cvx_prompt_set_t *s, const char *name);
/* Appends audio (not referenced: it must outlive the play); NULL is ignored. */
void cvx_playlist_add_audio(cvx_playlist_t *l, cvx_audio_t *a);

#endif

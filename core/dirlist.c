/* Listing a directory's files by suffix, in name order (conf.d/, the module directory). */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "internal.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cvx__dir_list(const char *dir, const char *suffix, char ***names_out, size_t *n_out)
{
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return cvx_from_errno(errno);
    size_t slen = strlen(suffix), n = 0;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l <= slen || de->d_name[0] == '.' || strcmp(de->d_name + l - slen, suffix) != 0)
            continue;
        char **nv = realloc(names, (n + 1) * sizeof(*nv));
        if (nv == NULL)
            break;
        names = nv;
        names[n] = strdup(de->d_name);
        if (names[n] != NULL)
            n++;
    }
    closedir(d);
    if (n > 1) /* names is NULL when the directory has none: qsort(NULL) is undefined */
        qsort(names, n, sizeof(*names), by_name);
    *names_out = names;
    *n_out = n;
    return 0;
}

void cvx__dir_list_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

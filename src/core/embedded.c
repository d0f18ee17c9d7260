#include "core/embedded.h"

#include <string.h>

const struct hd_embedded_file *hd_embedded_find(const char *path)
{
    for (const struct hd_embedded_file *f = hd_embedded_files; f->path; f++) {
        if (strcmp(f->path, path) == 0)
            return f;
    }
    return NULL;
}

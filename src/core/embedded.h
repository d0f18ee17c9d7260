/* Data files compiled into the binary by cmake/embed.cmake. */
#ifndef HERALD_CORE_EMBEDDED_H
#define HERALD_CORE_EMBEDDED_H

#include <stddef.h>

struct hd_embedded_file {
    const char *path; /* relative to the source root, e.g. "configs/herald.example.json" */
    const char *data; /* NUL-terminated */
    size_t len;
};

/** Terminated by an entry whose path is NULL. */
extern const struct hd_embedded_file hd_embedded_files[];

/** Returns the embedded file at @path, or NULL. */
const struct hd_embedded_file *hd_embedded_find(const char *path);

#endif

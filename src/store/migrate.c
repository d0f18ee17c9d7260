#include "store/migrate.h"

#include "core/embedded.h"
#include "herald/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATIONS_DIR "src/store/migrations/"
#define MAX_MIGRATIONS 256

/* Parses "src/store/migrations/0001_init.pg.sql" for @dialect. */
static bool parse_name(const char *path, const char *dialect, struct hd_migration *m)
{
    size_t dl = strlen(MIGRATIONS_DIR);
    if (strncmp(path, MIGRATIONS_DIR, dl) != 0)
        return false;
    const char *base = path + dl;
    char suffix[32];
    snprintf(suffix, sizeof(suffix), ".%s.sql", dialect);
    size_t bl = strlen(base), sl = strlen(suffix);
    if (bl <= sl || strcmp(base + bl - sl, suffix) != 0)
        return false;
    char *end;
    long v = strtol(base, &end, 10);
    if (end == base || *end != '_' || v <= 0 || bl - sl >= sizeof(m->name))
        return false;
    m->version = (int)v;
    memcpy(m->name, base, bl - sl);
    m->name[bl - sl] = '\0';
    return true;
}

static int by_version(const void *a, const void *b)
{
    return ((const struct hd_migration *)a)->version - ((const struct hd_migration *)b)->version;
}

size_t hd__migrations_for(const char *dialect, struct hd_migration *out, size_t cap)
{
    size_t n = 0;
    for (const struct hd_embedded_file *f = hd_embedded_files; f->path; f++) {
        struct hd_migration m;
        if (n < cap && parse_name(f->path, dialect, &m)) {
            m.sql = f->data;
            out[n++] = m;
        }
    }
    qsort(out, n, sizeof(*out), by_version);
    return n;
}

static bool contains(const int *v, size_t n, int x)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == x)
            return true;
    }
    return false;
}

int hd__migration_status(const struct hd_store_backend *b, struct hd_store_conn *c, bool print,
                         struct hd_migration_status *st, char *err, size_t cap)
{
    struct hd_migration ms[MAX_MIGRATIONS];
    size_t n = hd__migrations_for(b->dialect, ms, MAX_MIGRATIONS);
    int *applied = NULL;
    size_t na = 0;
    if (b->applied_migrations(c, &applied, &na, err, cap) != 0)
        return -1;
    memset(st, 0, sizeof(*st));
    st->latest = n ? ms[n - 1].version : 0;
    for (size_t i = 0; i < n; i++) {
        bool done = contains(applied, na, ms[i].version);
        done ? st->applied++ : st->pending++;
        if (print)
            printf("%-8s %s\n", done ? "applied" : "pending", ms[i].name);
    }
    for (size_t i = 0; i < na; i++) {
        bool known = false;
        for (size_t k = 0; k < n; k++)
            known = known || ms[k].version == applied[i];
        if (!known) {
            st->unknown++;
            if (print)
                printf("%-8s %04d (not known to this binary)\n", "unknown", applied[i]);
        }
    }
    free(applied);
    return 0;
}

int hd__migrate(const struct hd_store_backend *b, struct hd_store_conn *c, char *err, size_t cap)
{
    struct hd_migration ms[MAX_MIGRATIONS];
    size_t n = hd__migrations_for(b->dialect, ms, MAX_MIGRATIONS);
    int *applied = NULL;
    size_t na = 0;
    if (b->applied_migrations(c, &applied, &na, err, cap) != 0)
        return -1;
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        if (contains(applied, na, ms[i].version))
            continue;
        if (b->apply_migration(c, ms[i].version, ms[i].name, ms[i].sql, err, cap) != 0) {
            free(applied);
            return -1;
        }
        hd_log(HD_LOG_INFO, "migration applied", "migration", ms[i].name, "backend", b->name, NULL);
        count++;
    }
    free(applied);
    return count;
}

#include "herald/health.h"

#include "herald/buf.h"
#include "herald/core.h"
#include "herald/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COMPONENTS 16

struct component {
    const char *name;
    bool ok;
    bool degraded; /* ok, but serving without it */
    char detail[160];
};

/* Written when a dependency changes state, read by /readyz: never hot. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct component components[MAX_COMPONENTS];
static int n_components;

static void set(const char *name, bool ok, bool degraded, const char *detail)
{
    pthread_mutex_lock(&lock);
    struct component *c = NULL;
    for (int i = 0; i < n_components; i++) {
        if (strcmp(components[i].name, name) == 0)
            c = &components[i];
    }
    if (!c) {
        HD_ASSERT(n_components < MAX_COMPONENTS);
        c = &components[n_components++];
        c->name = name;
    }
    c->ok = ok;
    c->degraded = degraded;
    snprintf(c->detail, sizeof(c->detail), "%s", detail ? detail : "");
    pthread_mutex_unlock(&lock);
}

void hd_health_set(const char *name, bool ok, const char *detail)
{
    set(name, ok, false, detail);
}

void hd_health_set_degraded(const char *name, const char *detail)
{
    set(name, true, true, detail);
}

static void append_json_string(struct hd_buf *out, const char *s)
{
    size_t n = strlen(s);
    hd_buf_reserve(out, n * 6 + 2);
    out->data[out->len++] = '"';
    out->len += hd_json_escape(out->data + out->len, n * 6, s, n);
    out->data[out->len++] = '"';
}

/* Appends the names of the components that are down (@degraded false) or
 * degraded (@degraded true) as JSON array items. Lock held. */
static void append_names(struct hd_buf *out, bool degraded)
{
    bool first = true;
    for (int i = 0; i < n_components; i++) {
        const struct component *c = &components[i];
        if (degraded ? !(c->ok && c->degraded) : c->ok)
            continue;
        if (!first)
            hd_buf_puts(out, ",");
        first = false;
        append_json_string(out, c->name);
    }
}

bool hd_health_render(struct hd_buf *out)
{
    bool all_ok = true;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_components; i++)
        all_ok = all_ok && components[i].ok;
    hd_buf_puts(out, all_ok ? "{\"status\":\"ready\",\"down\":["
                            : "{\"status\":\"unavailable\",\"down\":[");
    append_names(out, false);
    hd_buf_puts(out, "],\"degraded\":[");
    append_names(out, true);
    hd_buf_puts(out, "],\"checks\":{");
    for (int i = 0; i < n_components; i++) {
        const struct component *c = &components[i];
        if (i)
            hd_buf_puts(out, ",");
        append_json_string(out, c->name);
        hd_buf_puts(out, c->ok ? ":{\"ok\":true" : ":{\"ok\":false");
        hd_buf_puts(out, c->ok && c->degraded ? ",\"degraded\":true,\"detail\":"
                                              : ",\"degraded\":false,\"detail\":");
        append_json_string(out, c->detail);
        hd_buf_puts(out, "}");
    }
    hd_buf_puts(out, "}}");
    pthread_mutex_unlock(&lock);
    return all_ok;
}

#include "herald/metrics.h"

#include "herald/buf.h"
#include "herald/core.h"
#include "herald/inbox.h"

#include <pthread.h>

#define MAX_COLLECTORS 32

struct collector {
    hd_metrics_collector_fn fn;
    void *ctx;
};

/* Changed at start-up and shutdown, read per scrape: a mutex is fine here. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct collector collectors[MAX_COLLECTORS];
static int n_collectors;

void hd_metrics_register(hd_metrics_collector_fn fn, void *ctx)
{
    pthread_mutex_lock(&lock);
    HD_ASSERT(n_collectors < MAX_COLLECTORS);
    collectors[n_collectors++] = (struct collector){fn, ctx};
    pthread_mutex_unlock(&lock);
}

void hd_metrics_unregister(hd_metrics_collector_fn fn, void *ctx)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_collectors; i++) {
        if (collectors[i].fn == fn && collectors[i].ctx == ctx) {
            collectors[i] = collectors[--n_collectors];
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

static void render_inbox(void *arg, const struct hd_inbox *inbox)
{
    hd_buf_appendf(arg, "herald_inbox_depth{inbox=\"%s\"} %zu\n", hd_inbox_name(inbox),
                   hd_inbox_depth(inbox));
}

void hd_metrics_render(struct hd_buf *out)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_collectors; i++)
        collectors[i].fn(collectors[i].ctx, out);
    pthread_mutex_unlock(&lock);
    hd_buf_puts(out, "# HELP herald_inbox_depth Messages queued for an actor or I/O thread.\n"
                     "# TYPE herald_inbox_depth gauge\n");
    hd_inbox_foreach(render_inbox, out);
}

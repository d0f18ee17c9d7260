/* Outage windows that always end: see outage.h. */
#include "outage.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

/* The start command of an outage whose start has not succeeded yet. */
static const char *g_pending_start;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

int hd_test_services(const char *what)
{
    char script[1024];
    const char *s = getenv("HERALD_SERVICES");
    const char *root = getenv("HERALD_SOURCE_DIR");
    if (s && *s)
        snprintf(script, sizeof(script), "%s", s);
    else if (root && *root)
        snprintf(script, sizeof(script), "%s/scripts/services", root);
    else
        return -1;
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' %s", script, what);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void start_again(const char *start)
{
    if (hd_test_services(start) == 0) {
        pthread_mutex_lock(&g_mu);
        if (g_pending_start == start)
            g_pending_start = NULL;
        pthread_mutex_unlock(&g_mu);
    }
}

static void *watchdog_main(void *arg)
{
    struct hd_test_outage *o = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += o->watchdog_s;
    pthread_mutex_lock(&o->mu);
    int rc = 0;
    while (!o->done && rc == 0)
        rc = pthread_cond_timedwait(&o->cv, &o->mu, &until);
    bool fire = !o->done;
    pthread_mutex_unlock(&o->mu);
    if (fire) {
        fprintf(stderr, "outage test: the watchdog runs `%s`\n", o->start);
        start_again(o->start);
    }
    return NULL;
}

void hd_test_outage_begin(struct hd_test_outage *o, const char *stop, const char *start,
                          int watchdog_s)
{
    *o = (struct hd_test_outage){
        .stop_rc = -1, .start_rc = -1, .start = start, .watchdog_s = watchdog_s};
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->have_watchdog = pthread_create(&o->watchdog, NULL, watchdog_main, o) == 0;
    pthread_mutex_lock(&g_mu);
    g_pending_start = start;
    pthread_mutex_unlock(&g_mu);
    o->stop_rc = hd_test_services(stop);
}

void hd_test_outage_end(struct hd_test_outage *o)
{
    o->start_rc = hd_test_services(o->start);
    if (o->start_rc == 0) {
        pthread_mutex_lock(&g_mu);
        if (g_pending_start == o->start)
            g_pending_start = NULL;
        pthread_mutex_unlock(&g_mu);
    }
    if (o->have_watchdog) {
        pthread_mutex_lock(&o->mu);
        o->done = true;
        pthread_cond_signal(&o->cv);
        pthread_mutex_unlock(&o->mu);
        pthread_join(o->watchdog, NULL);
    }
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
}

void hd_test_outage_fini(void)
{
    pthread_mutex_lock(&g_mu);
    const char *start = g_pending_start;
    pthread_mutex_unlock(&g_mu);
    if (start)
        start_again(start);
}

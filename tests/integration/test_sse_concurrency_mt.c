/* SSE under concurrency (also run against a ThreadSanitizer-built herald by
 * the TSan build): publishes, streams opening and closing, resumes and
 * session ends all at once, over two I/O threads. The broadcaster writes the
 * RCU registry while I/O threads read it; frames are shared across threads.
 * Steady streams must still get every event exactly once, in order, and the
 * server must log no sanitizer report and exit cleanly. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_client.h"
#include "harness.h"
#include "http_client.h"
#include "sse_client.h"

#define N_EVENTS  40
#define N_STEADY  4
#define N_CHURN   25
#define N_LOGOUTS 8
#define WAIT_MS   20000

struct shared {
    int port;
    struct hd_test_auth_tokens admin;
};

static void expect_no_sanitizer_report(const struct hd_test_server *s)
{
    static const char *const markers[] = {"ThreadSanitizer", "AddressSanitizer", "LeakSanitizer",
                                          "runtime error:", "Segmentation"};
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        cr_assert(!hd_test_log_contains(s, markers[i]), "the server log shows %s", markers[i]);
}

static long long publish(const struct shared *sh, int i)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"organization_id\":\"%s\",\"type\":\"mt.test\",\"title\":\"event %d\"}",
             sh->admin.org_id, i);
    struct hd_http_response r;
    int rc = hd_test_auth_post(sh->port, "/api/notifications", body, sh->admin.access, &r);
    long long id = -1;
    if (rc == 0 && r.status == 201) {
        json_t *j = hd_http_response_json(&r);
        id = j ? (long long)json_integer_value(json_object_get(j, "id")) : -1;
        json_decref(j);
    }
    hd_http_response_free(&r);
    return id;
}

static void *publisher(void *arg)
{
    const struct shared *sh = arg;
    long long *ids = calloc(N_EVENTS, sizeof(*ids));
    for (int i = 0; i < N_EVENTS; i++)
        ids[i] = publish(sh, i);
    return ids;
}

/* Opens and drops streams (some resuming) while events flow. */
static void *churner(void *arg)
{
    const struct shared *sh = arg;
    long opened = 0;
    for (int i = 0; i < N_CHURN; i++) {
        struct hd_sse_client c;
        struct hd_sse_opts o = {
            .bearer = sh->admin.access, .last_event_id = i % 2 ? "0" : NULL, .timeout_ms = 10000};
        if (hd_sse_open(&c, sh->port, &o) == 0 && hd_sse_status(&c) == 200) {
            opened++;
            struct hd_sse_event ev;
            (void)hd_sse_next(&c, &ev, 50); /* the retry: block, maybe an event */
            hd_sse_event_free(&ev);
        }
        hd_sse_close(&c);
    }
    return (void *)opened;
}

/* A login without asserts (this runs off the test's thread). */
static bool login(const struct shared *sh, struct hd_test_auth_tokens *t)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"email\":\"%s\",\"password\":\"%s\"}", sh->admin.email,
             HD_TEST_AUTH_PASSWORD);
    struct hd_http_response r;
    int rc = hd_test_auth_post(sh->port, "/api/auth/login", body, NULL, &r);
    bool ok = rc == 0 && r.status == 200 && hd_test_auth_tokens_parse(&r, t) == 0;
    hd_http_response_free(&r);
    return ok;
}

/* Logs in, opens a stream on that session, logs out: the stream must end
 * with session_ended. Returns how many did. */
static void *session_ender(void *arg)
{
    const struct shared *sh = arg;
    long ended = 0;
    for (int i = 0; i < N_LOGOUTS; i++) {
        struct hd_test_auth_tokens t;
        if (!login(sh, &t))
            continue;
        struct hd_sse_client c;
        struct hd_sse_opts o = {.bearer = t.access, .timeout_ms = 10000};
        if (hd_sse_open(&c, sh->port, &o) != 0 || hd_sse_status(&c) != 200) {
            hd_sse_close(&c);
            continue;
        }
        if (hd_test_auth_status(sh->port, "POST", "/api/auth/logout", t.access) != 204) {
            hd_sse_close(&c);
            continue;
        }
        uint64_t until = hd_sse_now_ms() + WAIT_MS;
        while (hd_sse_now_ms() < until) {
            struct hd_sse_event ev;
            int rc = hd_sse_next(&c, &ev, 500);
            bool done = rc == 0 && ev.event && strcmp(ev.event, "session_ended") == 0;
            hd_sse_event_free(&ev);
            if (done) {
                ended++;
                break;
            }
            if (rc != 0 && hd_sse_closed(&c))
                break;
        }
        hd_sse_close(&c);
    }
    return (void *)ended;
}

Test(sse_concurrency, steady_streams_get_every_event_while_everything_else_moves, .timeout = 300)
{
    struct hd_test_server s;
    hd_test_server_start(&s, "{\"server\":{\"io_threads\":2},"
                             "\"sse\":{\"max_streams_per_user\":200},"
                             "\"session\":{\"max_per_user\":100}}");
    struct shared sh = {.port = s.port};
    char email[256];
    hd_test_auth_unique_email(email, sizeof(email), "sse-mt");
    hd_test_auth_register(s.port, email, HD_TEST_AUTH_PASSWORD, NULL, &sh.admin);

    struct hd_sse_client steady[N_STEADY];
    for (int i = 0; i < N_STEADY; i++) {
        struct hd_sse_opts o = {.bearer = sh.admin.access};
        cr_assert_eq(hd_sse_open(&steady[i], s.port, &o), 0);
        cr_assert_eq(hd_sse_status(&steady[i]), 200);
    }
    pthread_t tp, tc, te;
    cr_assert_eq(pthread_create(&tp, NULL, publisher, &sh), 0);
    cr_assert_eq(pthread_create(&tc, NULL, churner, &sh), 0);
    cr_assert_eq(pthread_create(&te, NULL, session_ender, &sh), 0);

    /* read the steady streams while the threads run */
    long long got[N_STEADY][N_EVENTS];
    size_t n_got[N_STEADY] = {0};
    uint64_t until = hd_sse_now_ms() + 4 * WAIT_MS;
    size_t complete = 0;
    while (complete < N_STEADY && hd_sse_now_ms() < until) {
        complete = 0;
        for (int i = 0; i < N_STEADY; i++) {
            if (n_got[i] == N_EVENTS) {
                complete++;
                continue;
            }
            struct hd_sse_event ev;
            if (hd_sse_next(&steady[i], &ev, 20) == 0 && hd_sse_is_notification(&ev))
                got[i][n_got[i]++] = hd_sse_event_id(&ev);
            hd_sse_event_free(&ev);
        }
    }
    void *ret;
    pthread_join(tp, &ret);
    long long *ids = ret;
    pthread_join(tc, &ret);
    long opened = (long)ret;
    pthread_join(te, &ret);
    long ended = (long)ret;

    for (int i = 0; i < N_EVENTS; i++)
        cr_expect_gt(ids[i], 0, "publish %d failed", i);
    for (int i = 0; i < N_STEADY; i++) {
        cr_expect_eq(n_got[i], N_EVENTS, "steady stream %d got %zu of %d events", i, n_got[i],
                     N_EVENTS);
        for (size_t k = 0; k < n_got[i]; k++)
            cr_expect_eq(got[i][k], ids[k], "steady stream %d: event %zu is id %lld, want %lld", i,
                         k, got[i][k], ids[k]);
        cr_expect(!hd_sse_closed(&steady[i]), "steady stream %d was closed", i);
        hd_sse_close(&steady[i]);
    }
    free(ids);
    cr_expect_eq(opened, N_CHURN, "only %ld of %d churned streams opened", opened, N_CHURN);
    cr_expect_eq(ended, N_LOGOUTS, "only %ld of %d logouts ended their stream", ended, N_LOGOUTS);
    expect_no_sanitizer_report(&s);
    cr_assert_eq(hd_test_server_stop(&s), 0);
    expect_no_sanitizer_report(&s);
}

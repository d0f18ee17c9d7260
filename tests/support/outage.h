/* Outage tests stop a service every test shares (Postgres, Redis) and must
 * always bring it back, even when the test fails or hangs in between:
 *
 *   struct hd_test_outage o;
 *   hd_test_outage_begin(&o, "redis-stop", "redis-start", 30);
 *   ... observe, without asserts ...
 *   hd_test_outage_end(&o);        // starts it again; o.start_rc
 *   ... assert on what was observed ...
 *
 * with `.fini = hd_test_outage_fini` on the Test, which starts the service
 * again if an outage was left open. A watchdog thread starts it after
 * @watchdog_s should the window itself hang. Functions here never assert. */
#ifndef HERALD_TEST_OUTAGE_H
#define HERALD_TEST_OUTAGE_H

#include <pthread.h>
#include <stdbool.h>

/** Runs `scripts/services @what` ($HERALD_SERVICES, else
 * $HERALD_SOURCE_DIR/scripts/services). Returns its exit code, or -1 when it
 * did not run (neither variable set). Any thread. */
int hd_test_services(const char *what);

/** One outage window. Fields are the helper's, but stop_rc / start_rc. */
struct hd_test_outage {
    int stop_rc;  /* of the stop command */
    int start_rc; /* of the start command, after hd_test_outage_end */
    const char *start;
    pthread_t watchdog;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, have_watchdog;
    int watchdog_s;
};

/** Starts the watchdog, then runs `scripts/services @stop`. @start must stay
 * valid until hd_test_outage_end (a string literal). */
void hd_test_outage_begin(struct hd_test_outage *o, const char *stop, const char *start,
                          int watchdog_s);

/** Runs `scripts/services @start` and stops the watchdog. */
void hd_test_outage_end(struct hd_test_outage *o);

/** For a Test's .fini: starts the service again if the last outage's
 * start has not succeeded. */
void hd_test_outage_fini(void);

#endif

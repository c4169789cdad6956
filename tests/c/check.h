/*
 * check.h: the minimal test harness shared by lamina's C tests (no framework).
 *
 * CHECK/CHECKF count passes and failures (thread-safe: tests call them from worker threads);
 * failures are printed on stderr with file and line. EXPECT_ERROR checks a status code AND that
 * lamina_last_error_message() is non-empty and mentions a given substring, so a stale message
 * from an earlier failure cannot pass for a fresh one. A test program ends with
 * check_summary(), which prints the one line "N passed, M failed" and returns the exit code.
 *
 * Include once, from the test program's single translation unit (it defines statics).
 */
#ifndef LAMINA_TEST_CHECK_H
#define LAMINA_TEST_CHECK_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lamina.h"

static int g_passed = 0;
static int g_failed = 0;
static pthread_mutex_t g_harness_lock = PTHREAD_MUTEX_INITIALIZER;

static void record_at(int ok, const char *file, int line, const char *what) {
    const char *base = strrchr(file, '/');
    pthread_mutex_lock(&g_harness_lock);
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        fprintf(stderr, "FAIL (%s:%d): %s\n", base != NULL ? base + 1 : file, line, what);
    }
    pthread_mutex_unlock(&g_harness_lock);
}

#define record(ok, line, what) record_at((ok), __FILE__, (line), (what))

#define CHECK(cond) record((cond) ? 1 : 0, __LINE__, #cond)

/* CHECK with a formatted explanation printed on failure. */
#define CHECKF(cond, ...)                                          \
    do {                                                           \
        if (cond) {                                                \
            record(1, __LINE__, #cond);                            \
        } else {                                                   \
            char why_[1024];                                       \
            snprintf(why_, sizeof why_, __VA_ARGS__);              \
            record(0, __LINE__, why_);                             \
        }                                                          \
    } while (0)

/* A call that must fail with `want`, leaving a message on this thread that contains
 * `needle` (case-sensitive; NULL = only non-empty). */
static void expect_error(const char *file, int line, const char *call, lamina_status got, lamina_status want,
                         const char *needle) {
    const char *msg = lamina_last_error_message();
    char why[1024];
    snprintf(why, sizeof why, "%s: expected %s, got %s (message: \"%s\")", call, lamina_status_name(want),
             lamina_status_name(got), msg != NULL ? msg : "(NULL)");
    record_at(got == want, file, line, why);
    snprintf(why, sizeof why, "%s: lamina_last_error_message() is empty", call);
    record_at(msg != NULL && msg[0] != '\0', file, line, why);
    if (needle != NULL) {
        snprintf(why, sizeof why, "%s: message \"%s\" does not mention \"%s\"", call, msg != NULL ? msg : "(NULL)",
                 needle);
        record_at(msg != NULL && strstr(msg, needle) != NULL, file, line, why);
    }
}

#define EXPECT_ERROR(call, want, needle) expect_error(__FILE__, __LINE__, #call, (call), (want), (needle))

static void expect_ok(const char *file, int line, const char *call, lamina_status got) {
    char why[1024];
    snprintf(why, sizeof why, "%s: expected LAMINA_STATUS_OK, got %s (message: \"%s\")", call,
             lamina_status_name(got), lamina_last_error_message());
    record_at(got == LAMINA_STATUS_OK, file, line, why);
}

#define EXPECT_OK(call) expect_ok(__FILE__, __LINE__, #call, (call))

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Print the summary line and return the process exit code. */
static int check_summary(void) {
    printf("%d passed, %d failed\n", g_passed, g_failed);
    fflush(stdout); /* before any exit-time checker (LeakSanitizer) ends the process */
    return g_failed > 0 ? 1 : 0;
}

#endif

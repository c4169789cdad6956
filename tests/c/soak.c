/*
 * soak: lamina under concurrent load through the C ABI, without a test framework.
 *
 * One model; N worker threads (default 8), each looping for S seconds (default 60) over
 * random operations on its own session: a greedy generation of one of four prompts, a chat
 * turn after a reset, a switch between the base model and a LoRA adapter, freeing and
 * recreating the session, and a perplexity evaluation. A canceller thread meanwhile calls
 * lamina_session_cancel on a random worker's session every 50-300 ms, so any of those
 * operations may be cancelled at any moment, including while idle, and on sessions that were
 * just freed (the handle registry must answer INVALID_HANDLE, never crash).
 *
 * Checks: every finished greedy result equals its reference, computed sequentially before
 * the threads start, for the session's adapter state; a cancelled one is a prefix of it;
 * every call returns OK (or INVALID_HANDLE for a cancel of a freed session); no crash, no
 * deadlock (a watchdog aborts after S + 120 s); the peak resident memory of the last quarter
 * of the run exceeds that of the second quarter (after warm-up) by less than 5% in a run of
 * 5 minutes or more. A shorter run has not reached its plateau (a 10-minute run's resident
 * size rises for about two minutes, as sessions, caches and the allocator's arenas reach
 * their working size, then stays flat), so one of 1 minute is held to 25%, which still
 * catches a leak of anything the size of a session. `--rss-check off` skips the check, for
 * sanitizer builds whose allocator keeps freed memory in quarantine.
 *
 * Usage: soak [--seconds S] [--threads N] [--rss-check on|off]   (model: scripts/fetch-model.sh)
 * Build: cc -std=c99 -pthread -I include tests/c/soak.c -L target/release -llamina_ffi
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"
#include "gguf_adapter.h"

#define MAX_THREADS 64
#define N_PROMPTS 4
#define MAX_TOKENS 12

static const char *PROMPTS[N_PROMPTS] = {
    "The capital of France is",
    "Once upon a time, there was a little",
    "The three primary colors are",
    "To make a cup of tea, first",
};
static const char *SYSTEM = "You are a helpful assistant. Answer briefly.";
static const char *CHAT_MESSAGE = "Name one fruit.";
static const char *EVAL_DATA = "tests/data/prose.txt";

/* References, [0] for the base model and [1] with the adapter. */
static char *g_ref_gen[2][N_PROMPTS];
static char *g_ref_chat[2];
static char g_ref_ppl[2][64];

static lamina_model *g_model;
static lamina_adapter *g_adapter;
static double g_end;

enum { OP_GENERATE, OP_CHAT, OP_ADAPTER, OP_RECREATE, OP_EVAL, N_OPS };
static const char *OP_NAMES[N_OPS] = {"generate", "chat", "adapter switch", "session free+new", "evaluate"};

typedef struct {
    pthread_mutex_t lock; /* guards `session` for the canceller */
    lamina_session *session;
    int adapted;
    uint64_t rng;
    long ops[N_OPS];
    long cancelled;
} worker;

static worker g_workers[MAX_THREADS];
static int g_n_workers = 8;
static int g_check_rss = 1;
static long g_cancels_sent, g_cancels_of_freed;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

static lamina_session *new_session(void) {
    lamina_session_params p;
    lamina_session_params_init(&p, sizeof p);
    p.n_ctx = 512;
    p.n_threads = 1;
    lamina_session *s = NULL;
    EXPECT_OK(lamina_session_new(g_model, &p, &s));
    return s;
}

static int set_adapted(lamina_session *s, int adapted) {
    const float scale = 1.0f;
    const lamina_adapter *set[1] = {g_adapter};
    return lamina_session_set_adapters(s, adapted ? set : NULL, adapted ? &scale : NULL, adapted ? 1 : 0) == LAMINA_STATUS_OK;
}

typedef enum { TURN_GENERATE, TURN_CHAT } turn_kind;

/* After a reset, a greedy generation of prompt i or a chat turn from a fresh history; the
 * text (caller frees), with the stop reason in `reason`. The reset makes the reference well
 * defined: a prompt decoded partly from the cache can round differently from one decoded
 * whole (llama.cpp's kernels depend on the batch size), which may flip a near-tie between
 * two tokens. */
static char *greedy_turn(lamina_session *s, turn_kind kind, int i, lamina_stop_reason *reason) {
    lamina_sampling_params sp;
    lamina_sampling_params_init(&sp, sizeof sp);
    sp.max_tokens = MAX_TOKENS;
    char *text = NULL;
    lamina_generation_info info = {sizeof info, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_OK(lamina_session_reset(s));
    if (kind == TURN_GENERATE) {
        EXPECT_OK(lamina_session_generate(s, PROMPTS[i], &sp, NULL, NULL, &text, &info));
    } else {
        EXPECT_OK(lamina_session_set_system_prompt(s, SYSTEM));
        EXPECT_OK(lamina_session_chat(s, CHAT_MESSAGE, &sp, NULL, NULL, &text, &info));
    }
    *reason = info.stop_reason;
    return text;
}

/* The perplexity of EVAL_DATA as the report prints it, into out; returns 1 when it ran to
 * the end, 0 when cancelled. */
static int perplexity(lamina_session *s, char *out, size_t cap) {
    lamina_eval_params ep;
    lamina_eval_params_init(&ep, sizeof ep);
    ep.perplexity_ctx = 128;
    ep.limit = 2;
    char *report = NULL;
    EXPECT_OK(lamina_evaluate(s, "perplexity", EVAL_DATA, &ep, NULL, NULL, &report));
    int finished = 0;
    out[0] = '\0';
    if (report != NULL) {
        finished = strstr(report, "\"cancelled\": true") == NULL && strstr(report, "\"cancelled\":true") == NULL;
        const char *at = strstr(report, "\"ppl\":");
        if (finished && at != NULL) {
            size_t n = strcspn(at + 6, ",}");
            snprintf(out, cap, "%.*s", (int)n, at + 6);
        }
        lamina_string_free(report);
    }
    return finished;
}

/* A result against its reference: equal when finished, a prefix when cancelled. */
static void check_text(const char *what, const char *got, const char *want, lamina_stop_reason reason, worker *w) {
    if (got == NULL) {
        CHECKF(0, "%s: no text", what);
        return;
    }
    if (reason == LAMINA_STOP_REASON_CANCELLED) {
        w->cancelled++;
        CHECKF(strncmp(got, want, strlen(got)) == 0, "%s (cancelled): \"%s\" is not a prefix of \"%s\"", what, got, want);
    } else {
        CHECKF(strcmp(got, want) == 0, "%s: \"%s\" != reference \"%s\"", what, got, want);
    }
}

static void *work(void *arg) {
    worker *w = (worker *)arg;
    while (now_s() < g_end) {
        int op = (int)(next_rand(&w->rng) % N_OPS);
        lamina_session *s = w->session;
        lamina_stop_reason reason = LAMINA_STOP_REASON_END_OF_GENERATION;
        w->ops[op]++;
        if (op == OP_GENERATE) {
            int i = (int)(next_rand(&w->rng) % N_PROMPTS);
            char *text = greedy_turn(s, TURN_GENERATE, i, &reason);
            check_text(w->adapted ? "generate, adapted" : "generate, base", text, g_ref_gen[w->adapted][i], reason, w);
            lamina_string_free(text);
        } else if (op == OP_CHAT) {
            char *text = greedy_turn(s, TURN_CHAT, 0, &reason);
            check_text(w->adapted ? "chat, adapted" : "chat, base", text, g_ref_chat[w->adapted], reason, w);
            lamina_string_free(text);
        } else if (op == OP_ADAPTER) {
            CHECK(set_adapted(s, !w->adapted));
            w->adapted = !w->adapted;
        } else if (op == OP_RECREATE) {
            pthread_mutex_lock(&w->lock);
            w->session = NULL;
            pthread_mutex_unlock(&w->lock);
            lamina_session_free(s);
            s = new_session();
            if (s == NULL) {
                return NULL;
            }
            CHECK(set_adapted(s, w->adapted));
            pthread_mutex_lock(&w->lock);
            w->session = s;
            pthread_mutex_unlock(&w->lock);
        } else {
            char ppl[64];
            if (perplexity(s, ppl, sizeof ppl)) {
                CHECKF(strcmp(ppl, g_ref_ppl[w->adapted]) == 0, "perplexity %s != reference %s", ppl, g_ref_ppl[w->adapted]);
            } else {
                w->cancelled++;
            }
        }
    }
    return NULL;
}

/* Cancels a random worker's session every 50-300 ms; sometimes one that was just freed. */
static void *cancel_randomly(void *arg) {
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    lamina_session *freed_earlier = NULL;
    (void)arg;
    while (now_s() < g_end) {
        struct timespec ts = {0, (long)(50 + next_rand(&rng) % 250) * 1000000L};
        nanosleep(&ts, NULL);
        worker *w = &g_workers[next_rand(&rng) % (uint64_t)g_n_workers];
        pthread_mutex_lock(&w->lock);
        lamina_session *s = w->session;
        pthread_mutex_unlock(&w->lock);
        if (s == NULL) {
            continue;
        }
        /* The worker may free `s` at any moment: a stale handle must be refused, not crash. */
        lamina_status st = lamina_session_cancel(s);
        CHECKF(st == LAMINA_STATUS_OK || st == LAMINA_STATUS_ERROR_INVALID_HANDLE, "cancel: %s", lamina_status_name(st));
        if (st == LAMINA_STATUS_ERROR_INVALID_HANDLE) {
            g_cancels_of_freed++;
        }
        g_cancels_sent++;
        if (freed_earlier != NULL && freed_earlier != s && next_rand(&rng) % 8 == 0) {
            st = lamina_session_cancel(freed_earlier);
            CHECKF(st == LAMINA_STATUS_OK || st == LAMINA_STATUS_ERROR_INVALID_HANDLE, "cancel (old): %s", lamina_status_name(st));
        }
        freed_earlier = s;
    }
    return NULL;
}

static void *watchdog(void *arg) {
    double limit = *(double *)arg;
    while (now_s() < limit) {
        sleep(1);
    }
    fprintf(stderr, "soak: FAIL: still running %.0f s after the planned end: deadlock?\n", limit - g_end);
    abort();
    return NULL;
}

static void compute_references(void) {
    lamina_session *s = new_session();
    if (s == NULL) {
        exit(1);
    }
    for (int a = 0; a < 2; a++) {
        CHECK(set_adapted(s, a));
        lamina_stop_reason reason;
        for (int i = 0; i < N_PROMPTS; i++) {
            g_ref_gen[a][i] = greedy_turn(s, TURN_GENERATE, i, &reason);
            CHECK(g_ref_gen[a][i] != NULL && reason == LAMINA_STOP_REASON_MAX_TOKENS);
        }
        g_ref_chat[a] = greedy_turn(s, TURN_CHAT, 0, &reason);
        CHECK(g_ref_chat[a] != NULL);
        CHECK(perplexity(s, g_ref_ppl[a], sizeof g_ref_ppl[a]) && g_ref_ppl[a][0] != '\0');
        printf("references %s: \"%s\" ... chat \"%s\", ppl %s\n", a ? "with the adapter" : "base", g_ref_gen[a][0] ? g_ref_gen[a][0] : "",
               g_ref_chat[a] ? g_ref_chat[a] : "", g_ref_ppl[a]);
    }
    CHECKF(strcmp(g_ref_gen[0][0], g_ref_gen[1][0]) != 0 || strcmp(g_ref_gen[0][1], g_ref_gen[1][1]) != 0,
           "the adapter changes no greedy text: the adapter switches test nothing");
    lamina_session_free(s);
}

int main(int argc, char **argv) {
    double seconds = 60;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        } else if (strcmp(argv[i], "--threads") == 0) {
            g_n_workers = atoi(argv[i + 1]);
        } else if (strcmp(argv[i], "--rss-check") == 0) {
            g_check_rss = strcmp(argv[i + 1], "off") != 0;
        }
    }
    if (g_n_workers < 1 || g_n_workers > MAX_THREADS || !(seconds > 0)) {
        fprintf(stderr, "usage: soak [--seconds S] [--threads 1..%d] [--rss-check on|off]\n", MAX_THREADS);
        return 2;
    }
    char *model_path = NULL;
    EXPECT_OK(lamina_default_model_path(&model_path));
    EXPECT_OK(lamina_model_load(model_path, NULL, &g_model));
    char adapter_path[] = "/tmp/lamina-soak-XXXXXX";
    if (g_model == NULL || mkdtemp(adapter_path) == NULL) {
        fprintf(stderr, "soak: setup failed: %s\n", lamina_last_error_message());
        return check_summary();
    }
    char file[64];
    snprintf(file, sizeof file, "%s/a.gguf", adapter_path);
    CHECK(write_adapter(file, N_LAYER, ALPHA_F32, 0, 7) == 0);
    EXPECT_OK(lamina_model_load_adapter(g_model, file, &g_adapter));
    if (g_adapter == NULL) {
        return check_summary();
    }
    compute_references();

    double start = now_s();
    g_end = start + seconds;
    double watchdog_at = g_end + 120;
    pthread_t threads[MAX_THREADS], canceller, dog;
    pthread_create(&dog, NULL, watchdog, &watchdog_at);
    for (int t = 0; t < g_n_workers; t++) {
        worker *w = &g_workers[t];
        pthread_mutex_init(&w->lock, NULL);
        w->session = new_session();
        w->rng = 0x2545F4914F6CDD1DULL * (uint64_t)(t + 1);
        if (w->session == NULL) {
            return check_summary();
        }
    }
    for (int t = 0; t < g_n_workers; t++) {
        pthread_create(&threads[t], NULL, work, &g_workers[t]);
    }
    pthread_create(&canceller, NULL, cancel_randomly, NULL);
    /* Resident memory once a second. It swings by tens of MiB with what the 8 sessions are
     * doing at the moment, so the check compares envelopes: the largest sample of the second
     * quarter of the run (after warm-up: sessions, caches and the allocator's arenas at their
     * working size) with the largest of the last quarter. A leak raises the second. */
    enum { MAX_SAMPLES = 4096 };
    static long rss[MAX_SAMPLES];
    static double rss_at[MAX_SAMPLES];
    int n_rss = 0;
    while (now_s() < g_end && n_rss < MAX_SAMPLES) {
        sleep(1);
        rss_at[n_rss] = (now_s() - start) / seconds;
        rss[n_rss++] = rss_kib();
    }
    long rss_warm = 0, rss_end = 0;
    for (int k = 0; k < n_rss; k++) {
        if (rss_at[k] >= 0.25 && rss_at[k] < 0.5 && rss[k] > rss_warm) {
            rss_warm = rss[k];
        }
        if (rss_at[k] >= 0.75 && rss[k] > rss_end) {
            rss_end = rss[k];
        }
    }
    for (int t = 0; t < g_n_workers; t++) {
        pthread_join(threads[t], NULL);
    }
    pthread_join(canceller, NULL);

    long total = 0, cancelled = 0;
    long per_op[N_OPS] = {0};
    for (int t = 0; t < g_n_workers; t++) {
        for (int o = 0; o < N_OPS; o++) {
            per_op[o] += g_workers[t].ops[o];
            total += g_workers[t].ops[o];
        }
        cancelled += g_workers[t].cancelled;
        lamina_session_free(g_workers[t].session);
    }
    /* Handles are never reused: a freed session stays refused after all that churn. */
    EXPECT_ERROR(lamina_session_cancel(g_workers[0].session), LAMINA_STATUS_ERROR_INVALID_HANDLE, "session");
    printf("soak: %d threads, %.1f s: %ld operations (", g_n_workers, now_s() - start, total);
    for (int o = 0; o < N_OPS; o++) {
        printf("%s%s %ld", o ? ", " : "", OP_NAMES[o], per_op[o]);
    }
    printf("); %ld cancelled; %ld cancels sent, %ld to freed sessions\n", cancelled, g_cancels_sent, g_cancels_of_freed);
    double growth = rss_warm > 0 && rss_end > 0 ? (double)(rss_end - rss_warm) / (double)rss_warm : 0;
    printf("soak: peak resident memory %ld KiB in the second quarter, %ld KiB in the last (%+.2f%%); over the run (MiB):", rss_warm, rss_end, growth * 100);
    for (int k = 0; k < 12 && n_rss > 0; k++) {
        printf(" %ld", rss[(size_t)k * (size_t)(n_rss - 1) / 11] / 1024);
    }
    printf("\n");
    if (g_check_rss) {
        double limit = seconds >= 300 ? 0.05 : 0.25;
        CHECKF(growth < limit, "peak resident memory grew by %.2f%% after warm-up (%ld -> %ld KiB; the limit for a %.0f s run is %.0f%%)",
               growth * 100, rss_warm, rss_end, seconds, limit * 100);
        CHECKF(rss_warm > 0 && rss_end > 0, "too short a run to sample the resident memory (%d samples)", n_rss);
    }
    CHECK(per_op[OP_GENERATE] > 0 && per_op[OP_CHAT] > 0 && per_op[OP_EVAL] > 0);

    for (int a = 0; a < 2; a++) {
        for (int i = 0; i < N_PROMPTS; i++) {
            lamina_string_free(g_ref_gen[a][i]);
        }
        lamina_string_free(g_ref_chat[a]);
    }
    lamina_adapter_free(g_adapter);
    lamina_model_free(g_model);
    lamina_string_free(model_path);
    unlink(file);
    rmdir(adapter_path);
    return check_summary();
}

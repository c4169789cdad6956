/*
 * test_abi: C-level tests of lamina's ABI (include/lamina.h), without a test framework.
 *
 * Every error case checks the status code AND that lamina_last_error_message() is non-empty
 * and says something relevant (a substring), so a stale message from an earlier failure does
 * not pass for a fresh one. Prints failures on stderr and one summary line on stdout,
 * "N passed, M failed"; exits 1 if anything failed.
 *
 * Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL overrides the path).
 * Build: cc -std=c99 -pthread -I include tests/c/test_abi.c -L target/release -llamina_ffi
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"

/* Sentinels for "out-parameters are unchanged on failure". */
static char g_sentinel_storage[4];
#define SENTINEL_MODEL ((lamina_model *)(void *)&g_sentinel_storage[0])
#define SENTINEL_SESSION ((lamina_session *)(void *)&g_sentinel_storage[1])
#define SENTINEL_STRING ((char *)&g_sentinel_storage[2])

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */

static const char *const PROMPT = "The capital of France is";

/* Greedy sampling with at most `max_tokens`. */
static lamina_sampling_params greedy(uint32_t max_tokens) {
    lamina_sampling_params s;
    memset(&s, 0, sizeof s);
    lamina_status st = lamina_sampling_params_init(&s, sizeof s);
    if (st != LAMINA_STATUS_OK) {
        record(0, __LINE__, "lamina_sampling_params_init failed");
    }
    s.max_tokens = max_tokens;
    return s;
}

/* Sessions for the tests: one thread each. The model is small enough, results do not depend
 * on it, and llama.cpp's spinning worker threads slow to a crawl when a busy 2-core machine is
 * oversubscribed (two sessions at once, other jobs). */
static lamina_session_params session_params(uint32_t n_ctx) {
    lamina_session_params p;
    memset(&p, 0, sizeof p);
    lamina_status st = lamina_session_params_init(&p, sizeof p);
    if (st != LAMINA_STATUS_OK) {
        record(0, __LINE__, "lamina_session_params_init failed");
    }
    p.n_ctx = n_ctx;
    p.n_threads = 1;
    return p;
}

/* Generate greedily into a malloc'd string (NULL on failure, reported as a test failure). */
static char *generate_text(lamina_session *session, const char *prompt, uint32_t max_tokens,
                           lamina_generation_info *info) {
    lamina_sampling_params s = greedy(max_tokens);
    char *text = NULL;
    lamina_status st = lamina_session_generate(session, prompt, &s, NULL, NULL, &text, info);
    if (st != LAMINA_STATUS_OK) {
        char why[512];
        snprintf(why, sizeof why, "generate \"%s\": %s: %s", prompt, lamina_status_name(st), lamina_last_error_message());
        record(0, __LINE__, why);
        return NULL;
    }
    char *copy = (char *)malloc(strlen(text) + 1);
    if (copy != NULL) {
        strcpy(copy, text);
    }
    lamina_string_free(text);
    return copy;
}

/* Write `len` bytes of `data` to a new temporary file; returns its malloc'd path. */
static char *temp_file_with(const void *data, size_t len) {
    char tmpl[] = "/tmp/lamina-test-XXXXXX";
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        perror("mkstemp");
        return NULL;
    }
    const char *p = (const char *)data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("write");
            close(fd);
            unlink(tmpl);
            return NULL;
        }
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    char *path = (char *)malloc(sizeof tmpl);
    if (path != NULL) {
        memcpy(path, tmpl, sizeof tmpl);
    }
    return path;
}

/* ---------------------------------------------------------------------------------------- */
/* Log callback                                                                               */

typedef struct {
    pthread_mutex_t lock;
    int lines;
    int bad_user_data;
    int bad_message;
} log_counter;

static log_counter g_log = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};

static void on_log(lamina_log_level level, const char *message, void *user_data) {
    log_counter *c = (log_counter *)user_data;
    if (c != &g_log) {
        /* Cannot lock what we were not given: count it in the global instead. */
        pthread_mutex_lock(&g_log.lock);
        g_log.bad_user_data++;
        pthread_mutex_unlock(&g_log.lock);
        return;
    }
    pthread_mutex_lock(&c->lock);
    c->lines++;
    if (message == NULL || level < LAMINA_LOG_LEVEL_DEBUG || level > LAMINA_LOG_LEVEL_ERROR) {
        c->bad_message++;
    }
    pthread_mutex_unlock(&c->lock);
}

static int log_lines(void) {
    pthread_mutex_lock(&g_log.lock);
    int n = g_log.lines;
    pthread_mutex_unlock(&g_log.lock);
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Token callbacks                                                                            */

typedef struct {
    char text[4096];
    size_t len;
    int pieces;
    int stop_after; /* return false after this many pieces; 0 = never */
    int bad_piece;  /* a piece that is not NUL-terminated at len */
} collector;

static bool collect(const char *piece, size_t len, void *user_data) {
    collector *c = (collector *)user_data;
    if (piece[len] != '\0') {
        c->bad_piece++;
    }
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, piece, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    c->pieces++;
    return c->stop_after == 0 || c->pieces < c->stop_after;
}

/* ---------------------------------------------------------------------------------------- */
/* Tests                                                                                      */

static void test_version(void) {
    CHECK(strcmp(LAMINA_VERSION_STRING, lamina_version()) == 0);
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", LAMINA_VERSION_MAJOR, LAMINA_VERSION_MINOR, LAMINA_VERSION_PATCH);
    CHECK(strcmp(expected, lamina_version()) == 0);
    CHECK(strcmp(lamina_status_name(LAMINA_STATUS_OK), "LAMINA_STATUS_OK") == 0);
    CHECK(strcmp(lamina_status_name(LAMINA_STATUS_ERROR_NOT_GGUF), "LAMINA_STATUS_ERROR_NOT_GGUF") == 0);
    CHECK(strcmp(lamina_status_name(LAMINA_STATUS_ERROR_PANIC), "LAMINA_STATUS_ERROR_PANIC") == 0);
    /* A code this library does not define (from a newer header, or garbage) is safe to name. */
    CHECK(strcmp(lamina_status_name(42), "LAMINA_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(lamina_status_name(-1), "LAMINA_STATUS_UNKNOWN") == 0);
    CHECK(strcmp(lamina_status_name(INT32_MAX), "LAMINA_STATUS_UNKNOWN") == 0);
    /* The numbers are ABI: they must never change. */
    CHECK(LAMINA_STATUS_ERROR_NULL_ARGUMENT == 1 && LAMINA_STATUS_ERROR_INVALID_HANDLE == 15 &&
          LAMINA_STATUS_ERROR_PANIC == 100);
    CHECK(LAMINA_STOP_REASON_END_OF_GENERATION == 0 && LAMINA_STOP_REASON_CANCELLED == 5);
}

static void test_free_null(void) {
    /* Every _free function accepts NULL (and must not crash). */
    lamina_model_free(NULL);
    lamina_session_free(NULL);
    lamina_string_free(NULL);
    CHECK(1);
}

static void test_default_path(char **out_path) {
    EXPECT_ERROR(lamina_default_model_path(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_path");
    char *path = NULL;
    EXPECT_OK(lamina_default_model_path(&path));
    CHECK(path != NULL && path[0] != '\0');
    *out_path = path;
}

static void test_model_load_errors(const char *model_path) {
    lamina_model *model = SENTINEL_MODEL;
    lamina_model_params params;
    memset(&params, 0xAB, sizeof params);
    EXPECT_OK(lamina_model_params_init(&params, sizeof params));
    CHECK(params.struct_size == sizeof(lamina_model_params));
    CHECK(params.use_mmap == true && params.use_mlock == false && params.n_gpu_layers == 0);

    /* NULL path, NULL out pointer. */
    EXPECT_ERROR(lamina_model_load(NULL, &params, &model), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");
    CHECK(model == SENTINEL_MODEL);
    EXPECT_ERROR(lamina_model_load(model_path, &params, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_model");

    /* A file that does not exist. */
    const char *missing = "/nonexistent/lamina/no-such-model.gguf";
    EXPECT_ERROR(lamina_model_load(missing, &params, &model), LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, missing);
    CHECK(model == SENTINEL_MODEL);

    /* A file that is not GGUF. */
    const char text[] = "this is a text file, not a GGUF model\n";
    char *not_gguf = temp_file_with(text, sizeof text - 1);
    CHECK(not_gguf != NULL);
    if (not_gguf != NULL) {
        EXPECT_ERROR(lamina_model_load(not_gguf, &params, &model), LAMINA_STATUS_ERROR_NOT_GGUF, "not a GGUF");
        CHECK(model == SENTINEL_MODEL);
        unlink(not_gguf);
        free(not_gguf);
    }

    /* An empty file. */
    char *empty = temp_file_with("", 0);
    CHECK(empty != NULL);
    if (empty != NULL) {
        EXPECT_ERROR(lamina_model_load(empty, &params, &model), LAMINA_STATUS_ERROR_NOT_GGUF, "not a GGUF");
        CHECK(model == SENTINEL_MODEL);
        unlink(empty);
        free(empty);
    }

    /* A truncated copy of the real model: a valid GGUF header, then nothing. */
    const size_t head_len = 1024 * 1024;
    char *head = (char *)malloc(head_len);
    FILE *f = fopen(model_path, "rb");
    size_t got = 0;
    if (head != NULL && f != NULL) {
        got = fread(head, 1, head_len, f);
    }
    if (f != NULL) {
        fclose(f);
    }
    CHECK(got == head_len);
    if (got == head_len) {
        char *truncated = temp_file_with(head, head_len);
        CHECK(truncated != NULL);
        if (truncated != NULL) {
            EXPECT_ERROR(lamina_model_load(truncated, &params, &model), LAMINA_STATUS_ERROR_MODEL_LOAD,
                         "could not load");
            CHECK(model == SENTINEL_MODEL);
            unlink(truncated);
            free(truncated);
        }
    }
    free(head);

    /* A directory. */
    char dir[] = "/tmp/lamina-test-dir-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    EXPECT_ERROR(lamina_model_load(dir, &params, &model), LAMINA_STATUS_ERROR_NOT_GGUF, "directory");
    CHECK(model == SENTINEL_MODEL);
    rmdir(dir);

    /* A path that is not UTF-8. */
    EXPECT_ERROR(lamina_model_load("/tmp/\xff\xfe.gguf", &params, &model), LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");
    CHECK(model == SENTINEL_MODEL);

    /* struct_size not set (0) or too small to even hold struct_size. */
    params.struct_size = 0;
    EXPECT_ERROR(lamina_model_load(model_path, &params, &model), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(model == SENTINEL_MODEL);
    params.struct_size = 4;
    EXPECT_ERROR(lamina_model_load(model_path, &params, &model), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(model == SENTINEL_MODEL);
}

static void test_model_load_and_logging(const char *model_path, lamina_model **out_model) {
    /* With a log callback, loading a model produces lines. */
    lamina_set_log_callback(on_log, &g_log, LAMINA_LOG_LEVEL_INFO);
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &model));
    CHECK(model != NULL);
    int after_first = log_lines();
    CHECKF(after_first > 0, "the log callback got %d lines while loading a model", after_first);
    CHECK(g_log.bad_user_data == 0 && g_log.bad_message == 0);

    /* Levels outside the enum are safe: above ERROR counts as ERROR (a good load logs no
     * errors), below DEBUG as DEBUG. */
    lamina_set_log_callback(on_log, &g_log, 99);
    lamina_model *extra = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &extra));
    lamina_model_free(extra);
    CHECKF(log_lines() == after_first, "min level 99: %d lines logged on a good load", log_lines() - after_first);
    lamina_set_log_callback(on_log, &g_log, -7);
    extra = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &extra));
    lamina_model_free(extra);
    CHECKF(log_lines() > after_first, "min level -7 (DEBUG): no lines");
    after_first = log_lines();

    /* A NULL callback silences it. */
    lamina_set_log_callback(NULL, NULL, LAMINA_LOG_LEVEL_DEBUG);
    lamina_model *second = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &second));
    CHECKF(log_lines() == after_first, "log lines went from %d to %d after lamina_set_log_callback(NULL)",
           after_first, log_lines());

    /* An "old caller": struct_size covers only n_gpu_layers; use_mmap/use_mlock beyond it hold
     * garbage that must be ignored. */
    lamina_model_params old;
    EXPECT_OK(lamina_model_params_init(&old, sizeof old));
    old.struct_size = offsetof(lamina_model_params, n_gpu_layers) + sizeof old.n_gpu_layers;
    old.n_gpu_layers = 0;
    old.use_mmap = false;
    old.use_mlock = true;
    lamina_model *third = NULL;
    EXPECT_OK(lamina_model_load(model_path, &old, &third));
    CHECK(third != NULL);
    lamina_model_free(third);

    /* Loading without mmap works too. */
    lamina_model_params no_mmap;
    EXPECT_OK(lamina_model_params_init(&no_mmap, sizeof no_mmap));
    no_mmap.use_mmap = false;
    third = NULL;
    EXPECT_OK(lamina_model_load(model_path, &no_mmap, &third));
    lamina_model_free(third);

    /* Metadata and info. */
    char *value = SENTINEL_STRING;
    EXPECT_OK(lamina_model_meta(second, "general.architecture", &value));
    CHECK(value != SENTINEL_STRING && value != NULL && strcmp(value, "llama") == 0);
    lamina_string_free(value);
    value = SENTINEL_STRING;
    EXPECT_ERROR(lamina_model_meta(second, "no.such.key", &value), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no.such.key");
    CHECK(value == SENTINEL_STRING);
    EXPECT_ERROR(lamina_model_meta(second, NULL, &value), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "key");
    EXPECT_ERROR(lamina_model_meta(second, "general.name", NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_value");
    CHECK(value == SENTINEL_STRING);
    char *json = NULL;
    EXPECT_OK(lamina_model_info_json(second, &json));
    CHECK(json != NULL && json[0] == '{' && strstr(json, "\"architecture\":\"llama\"") != NULL);
    lamina_string_free(json);
    EXPECT_ERROR(lamina_model_info_json(NULL, &json), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "model");
    EXPECT_ERROR(lamina_model_info_json(second, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_json");

    /* A freed model: used again, freed again. */
    lamina_model_free(second);
    json = SENTINEL_STRING;
    EXPECT_ERROR(lamina_model_info_json(second, &json), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(json == SENTINEL_STRING);
    lamina_session *session = SENTINEL_SESSION;
    EXPECT_ERROR(lamina_session_new(second, NULL, &session), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(session == SENTINEL_SESSION);
    lamina_model_free(second); /* double free: ignored, reported */
    CHECK(strstr(lamina_last_error_message(), "freed twice") != NULL);
    /* A pointer that was never a handle. */
    EXPECT_ERROR(lamina_model_info_json(SENTINEL_MODEL, &json), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");

    *out_model = model;
}

static void test_session_errors(lamina_model *model) {
    lamina_session *session = SENTINEL_SESSION;
    lamina_session_params p = session_params(256);
    CHECK(p.struct_size == sizeof(lamina_session_params));

    EXPECT_ERROR(lamina_session_new(NULL, &p, &session), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "model");
    CHECK(session == SENTINEL_SESSION);
    EXPECT_ERROR(lamina_session_new(model, &p, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_session");
    p.struct_size = 0;
    EXPECT_ERROR(lamina_session_new(model, &p, &session), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(session == SENTINEL_SESSION);
    p = session_params(256);
    p.n_batch = 0;
    EXPECT_ERROR(lamina_session_new(model, &p, &session), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_batch");
    CHECK(session == SENTINEL_SESSION);
    p = session_params(256);
    p.n_threads = 100000;
    EXPECT_ERROR(lamina_session_new(model, &p, &session), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_threads");
    CHECK(session == SENTINEL_SESSION);
    p = session_params(256);
    p.n_threads_batch = 0xFFFFFFFFu;
    EXPECT_ERROR(lamina_session_new(model, &p, &session), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_threads_batch");
    CHECK(session == SENTINEL_SESSION);

    /* A session used after it was freed, and freed twice. */
    lamina_session *s = NULL;
    p = session_params(128);
    EXPECT_OK(lamina_session_new(model, &p, &s));
    lamina_session_free(s);
    lamina_sampling_params sampling = greedy(4);
    char *text = SENTINEL_STRING;
    EXPECT_ERROR(lamina_session_generate(s, PROMPT, &sampling, NULL, NULL, &text, NULL),
                 LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(text == SENTINEL_STRING);
    EXPECT_ERROR(lamina_session_chat(s, "Hello", &sampling, NULL, NULL, &text, NULL),
                 LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_cancel(s), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_reset(s), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_set_system_prompt(s, "You are terse."), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_translate(s, "Hello", "en", "de", &text), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_answer(s, "Why?", NULL, &text), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(text == SENTINEL_STRING);
    uint32_t n_ctx = 0;
    EXPECT_ERROR(lamina_session_n_ctx(s, &n_ctx), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(n_ctx == 0);
    lamina_session_free(s); /* double free: ignored, reported */
    CHECK(strstr(lamina_last_error_message(), "freed twice") != NULL);

    /* A new session never gets the handle of a freed one, so the stale handle stays invalid
     * (and a double free cannot free someone else's session). */
    lamina_session *fresh = NULL;
    p = session_params(128);
    EXPECT_OK(lamina_session_new(model, &p, &fresh));
    CHECK(fresh != NULL && fresh != s);
    EXPECT_ERROR(lamina_session_reset(s), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    lamina_session_free(s);
    EXPECT_OK(lamina_session_reset(fresh));
    /* A session handle is not a model handle, and vice versa. */
    EXPECT_ERROR(lamina_model_info_json((const lamina_model *)(const void *)fresh, &text),
                 LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_reset((lamina_session *)(void *)model), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    lamina_session_free(fresh);
    CHECK(text == SENTINEL_STRING);

    EXPECT_ERROR(lamina_session_cancel(SENTINEL_SESSION), LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    EXPECT_ERROR(lamina_session_cancel(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "session");
    EXPECT_ERROR(lamina_session_reset(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "session");
}

static void test_generate_errors(lamina_session *session) {
    lamina_sampling_params s = greedy(8);
    CHECK(s.struct_size == sizeof(lamina_sampling_params));
    CHECK(s.temperature == 0.0f && s.max_tokens == 8 && s.stop == NULL && s.n_stop == 0);
    lamina_sampling_params d;
    EXPECT_OK(lamina_sampling_params_init(&d, sizeof d));
    CHECK(d.max_tokens == 256 && d.temperature == 0.0f && d.top_k == 40 && d.repeat_penalty == 1.0f);

    char *text = SENTINEL_STRING;
    lamina_generation_info info;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    lamina_generation_info untouched = info;

    EXPECT_ERROR(lamina_session_generate(NULL, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "session");
    EXPECT_ERROR(lamina_session_generate(session, NULL, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "prompt");
    EXPECT_ERROR(lamina_session_generate(session, "", &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_EMPTY_PROMPT, "empty");
    EXPECT_ERROR(lamina_session_generate(session, "\xff\xfe", &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");
    EXPECT_ERROR(lamina_session_generate(session, "Caf\xc3", &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");

    s = greedy(8);
    s.temperature = NAN;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "temperature");
    s.temperature = INFINITY;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "temperature");
    s.temperature = -0.5f;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "temperature");
    s = greedy(8);
    s.top_p = 0.0f;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "top_p");
    s = greedy(8);
    s.top_k = -1;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "top_k");
    s = greedy(8);
    s.min_p = NAN;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "min_p");
    s = greedy(8);
    s.repeat_penalty = 0.0f;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "repeat_penalty");
    s = greedy(0);
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_tokens");
    s = greedy(8);
    s.struct_size = 0;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");

    /* Stop strings: a count without an array, a NULL entry, an empty entry, bad UTF-8. */
    s = greedy(8);
    s.n_stop = 1;
    s.stop = NULL;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "stop");
    const char *with_null[2] = {".", NULL};
    s.stop = with_null;
    s.n_stop = 2;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "stop");
    const char *with_empty[1] = {""};
    s.stop = with_empty;
    s.n_stop = 1;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "stop");
    const char *with_bad_utf8[1] = {"\xff"};
    s.stop = with_bad_utf8;
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");

    /* Chat. */
    s = greedy(8);
    EXPECT_ERROR(lamina_session_chat(session, "", &s, NULL, NULL, &text, &info), LAMINA_STATUS_ERROR_EMPTY_PROMPT, "empty");
    EXPECT_ERROR(lamina_session_chat(session, " \n\t ", &s, NULL, NULL, &text, &info), LAMINA_STATUS_ERROR_EMPTY_PROMPT,
                 "empty");
    EXPECT_ERROR(lamina_session_chat(session, NULL, &s, NULL, NULL, &text, &info), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "user_message");
    EXPECT_ERROR(lamina_session_chat(session, "\xff\xfe", &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");
    s.max_tokens = 0;
    EXPECT_ERROR(lamina_session_chat(session, "Hello", &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_tokens");
    EXPECT_ERROR(lamina_session_set_system_prompt(session, "\xff\xfe"), LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");

    /* Tasks. */
    EXPECT_ERROR(lamina_session_translate(session, "Good morning", "en", "klingon", &text), LAMINA_STATUS_ERROR_UNKNOWN_LANGUAGE,
                 "klingon");
    EXPECT_ERROR(lamina_session_translate(session, "Good morning", "xx", "de", &text), LAMINA_STATUS_ERROR_UNKNOWN_LANGUAGE,
                 "xx");
    EXPECT_ERROR(lamina_session_translate(session, "  ", "en", "de", &text), LAMINA_STATUS_ERROR_EMPTY_PROMPT, "empty");
    EXPECT_ERROR(lamina_session_translate(session, "Good morning", NULL, "de", &text), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "from");
    EXPECT_ERROR(lamina_session_translate(session, "Good morning", "en", "de", NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "out_text");
    EXPECT_ERROR(lamina_session_answer(session, "", NULL, &text), LAMINA_STATUS_ERROR_EMPTY_PROMPT, "empty");
    EXPECT_ERROR(lamina_session_answer(session, "Why?", "\xff", &text), LAMINA_STATUS_ERROR_INVALID_UTF8, "UTF-8");
    EXPECT_ERROR(lamina_session_answer(session, "Why?", NULL, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_text");

    /* Nothing was written through the out-parameters by any failed call. */
    CHECK(text == SENTINEL_STRING);
    CHECK(memcmp(&info, &untouched, sizeof info) == 0);
}

/* `words` copies of "word " in a malloc'd string: about one token per word. */
static char *words_prompt(int words) {
    char *p = (char *)malloc((size_t)words * 5 + 1);
    if (p == NULL) {
        return NULL;
    }
    for (int i = 0; i < words; i++) {
        memcpy(p + (size_t)i * 5, "word ", 5);
    }
    p[(size_t)words * 5] = '\0';
    return p;
}

static void test_prompt_too_long(lamina_model *model) {
    lamina_session *small = NULL;
    lamina_session_params p = session_params(32);
    EXPECT_OK(lamina_session_new(model, &p, &small));
    if (small == NULL) {
        return;
    }
    /* The window is what was asked for, not llama.cpp's padded KV cache (256). */
    uint32_t n_ctx = 0;
    EXPECT_OK(lamina_session_n_ctx(small, &n_ctx));
    CHECKF(n_ctx == 32, "lamina_session_n_ctx: %u, expected 32", (unsigned)n_ctx);
    EXPECT_ERROR(lamina_session_n_ctx(small, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_n_ctx");

    char *hundred = words_prompt(100);
    lamina_sampling_params s = greedy(4);
    char *text = SENTINEL_STRING;
    lamina_generation_info info;
    memset(&info, 0xAB, sizeof info);
    info.struct_size = sizeof info;
    lamina_generation_info untouched = info;
    EXPECT_ERROR(lamina_session_generate(small, hundred, &s, NULL, NULL, &text, &info),
                 LAMINA_STATUS_ERROR_PROMPT_TOO_LONG, "32");
    CHECK(text == SENTINEL_STRING);
    CHECK(memcmp(&info, &untouched, sizeof info) == 0);
    EXPECT_ERROR(lamina_session_chat(small, hundred, &s, NULL, NULL, &text, NULL), LAMINA_STATUS_ERROR_PROMPT_TOO_LONG,
                 "context");
    CHECK(text == SENTINEL_STRING);

    /* The small session still works with a prompt that fits... */
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(small, PROMPT, &s, NULL, NULL, &text, &info));
    CHECK(text != SENTINEL_STRING && text != NULL && strstr(text, "Paris") != NULL);
    CHECK(info.generated_tokens <= 4 && info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS);
    lamina_string_free(text);
    /* ...and generation that runs into the end of the window stops with CONTEXT_FULL. */
    s = greedy(200);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(small, PROMPT, &s, NULL, NULL, NULL, &info));
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CONTEXT_FULL, "stop reason %d, expected CONTEXT_FULL",
           (int)info.stop_reason);
    CHECKF(info.prompt_tokens + info.generated_tokens <= 32 && info.generated_tokens > 0,
           "%u prompt + %u generated tokens in a 32-token window", (unsigned)info.prompt_tokens,
           (unsigned)info.generated_tokens);
    lamina_session_free(small);
    free(hundred);

    /* The default window: min(4096, the model's training context). */
    lamina_session *dflt = NULL;
    EXPECT_OK(lamina_session_new(model, NULL, &dflt));
    n_ctx = 0;
    EXPECT_OK(lamina_session_n_ctx(dflt, &n_ctx));
    CHECKF(n_ctx == 4096, "default n_ctx %u, expected 4096", (unsigned)n_ctx);
    lamina_session_free(dflt);
}

/* The _init functions, as an old (shorter struct) or new (longer struct) program calls them. */
typedef struct { /* lamina_sampling_params as a program built against an older header saw it */
    size_t struct_size;
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint32_t seed;
    uint32_t max_tokens;
} old_sampling_params;

static void test_params_init(lamina_model *model) {
    /* NULL and too-small sizes. */
    EXPECT_ERROR(lamina_sampling_params_init(NULL, sizeof(lamina_sampling_params)), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "lamina_sampling_params");
    EXPECT_ERROR(lamina_session_params_init(NULL, sizeof(lamina_session_params)), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "lamina_session_params");
    EXPECT_ERROR(lamina_model_params_init(NULL, sizeof(lamina_model_params)), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "lamina_model_params");
    lamina_sampling_params s;
    memset(&s, 0xAB, sizeof s);
    lamina_sampling_params pattern = s;
    EXPECT_ERROR(lamina_sampling_params_init(&s, 0), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    EXPECT_ERROR(lamina_sampling_params_init(&s, 4), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(memcmp(&s, &pattern, sizeof s) == 0);

    /* An older, shorter struct: init writes exactly its bytes, nothing after them. */
    struct {
        old_sampling_params params;
        unsigned char after[32];
    } old;
    memset(&old, 0xAB, sizeof old);
    CHECK(sizeof old.params == offsetof(lamina_sampling_params, stop));
    EXPECT_OK(lamina_sampling_params_init((lamina_sampling_params *)(void *)&old.params, sizeof old.params));
    CHECK(old.params.struct_size == sizeof old.params);
    CHECK(old.params.max_tokens == 256 && old.params.temperature == 0.0f && old.params.top_k == 40);
    int intact = 1;
    for (size_t i = 0; i < sizeof old.after; i++) {
        intact = intact && old.after[i] == 0xAB;
    }
    CHECKF(intact, "lamina_sampling_params_init wrote past an old caller's %u-byte struct",
           (unsigned)sizeof old.params);

    /* That old struct works for generation: the library reads no further than struct_size. */
    lamina_session *session = NULL;
    lamina_session_params sp = session_params(256);
    EXPECT_OK(lamina_session_new(model, &sp, &session));
    old.params.max_tokens = 3;
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, (const lamina_sampling_params *)(const void *)&old.params, NULL,
                                      NULL, NULL, &info));
    CHECKF(info.generated_tokens == 3 && info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS,
           "old sampling struct: %u tokens, stop reason %d", (unsigned)info.generated_tokens, (int)info.stop_reason);

    /* A newer, longer struct: init fills what it knows, zeroes the rest, keeps the size. */
    struct {
        lamina_sampling_params base;
        uint64_t field_from_the_future;
    } newer;
    memset(&newer, 0xAB, sizeof newer);
    EXPECT_OK(lamina_sampling_params_init(&newer.base, sizeof newer));
    CHECK(newer.base.struct_size == sizeof newer);
    CHECK(newer.field_from_the_future == 0);
    CHECK(newer.base.max_tokens == 256 && newer.base.stop == NULL && newer.base.n_stop == 0);
    newer.base.max_tokens = 2;
    newer.field_from_the_future = 0xDEADBEEFu; /* ignored by this library */
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &newer.base, NULL, NULL, NULL, &info));
    CHECK(info.generated_tokens == 2);

    lamina_session_free(session);
}

static void test_versioned_structs(lamina_model *model) {
    /* An old caller's session params: struct_size ends before n_threads_batch, which holds a
     * value that would be rejected if it were read (0xFFFFFFFF threads). */
    lamina_session_params old;
    EXPECT_OK(lamina_session_params_init(&old, sizeof old));
    old.struct_size = offsetof(lamina_session_params, n_threads) + sizeof old.n_threads;
    old.n_ctx = 256;
    old.n_threads = 1;
    old.n_threads_batch = 0xFFFFFFFFu;
    lamina_session *session = NULL;
    EXPECT_OK(lamina_session_new(model, &old, &session));
    if (session == NULL) {
        return;
    }
    /* n_ctx = 256 was honoured (the default is 4096). */
    uint32_t n_ctx = 0;
    EXPECT_OK(lamina_session_n_ctx(session, &n_ctx));
    CHECK(n_ctx == 256);
    char *long_prompt = words_prompt(300);
    lamina_sampling_params s = greedy(4);
    EXPECT_ERROR(lamina_session_generate(session, long_prompt, &s, NULL, NULL, NULL, NULL),
                 LAMINA_STATUS_ERROR_PROMPT_TOO_LONG, "256");
    free(long_prompt);

    /* An old caller's sampling params, up to max_tokens; n_stop = 3 with stop = NULL lies
     * beyond struct_size and must be ignored (it would be NULL_ARGUMENT if read). */
    lamina_sampling_params olds = greedy(3);
    olds.struct_size = offsetof(lamina_sampling_params, max_tokens) + sizeof olds.max_tokens;
    olds.n_stop = 3;
    olds.stop = NULL;
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &olds, NULL, NULL, NULL, &info));
    CHECKF(info.generated_tokens == 3 && info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS,
           "old sampling params: %u tokens, stop reason %d", (unsigned)info.generated_tokens, (int)info.stop_reason);

    /* Even older: only temperature. max_tokens = 0 and top_p = -1 beyond struct_size are
     * ignored (the defaults apply); the callback stops it after 2 pieces. */
    olds = greedy(0);
    olds.struct_size = offsetof(lamina_sampling_params, temperature) + sizeof olds.temperature;
    olds.top_p = -1.0f;
    collector c;
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &olds, collect, &c, NULL, &info));
    CHECK(c.pieces == 2 && info.stop_reason == LAMINA_STOP_REASON_CALLBACK_STOPPED);

    /* An old caller's generation info: only the fields up to prompt_tokens are written. */
    lamina_generation_info small;
    memset(&small, 0xAB, sizeof small);
    small.struct_size = offsetof(lamina_generation_info, prompt_tokens) + sizeof small.prompt_tokens;
    lamina_generation_info pattern;
    memset(&pattern, 0xAB, sizeof pattern);
    s = greedy(2);
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, NULL, &small));
    CHECK(small.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS && small.prompt_tokens > 0);
    CHECK(small.struct_size == offsetof(lamina_generation_info, prompt_tokens) + sizeof small.prompt_tokens);
    CHECK(memcmp((const char *)&small + offsetof(lamina_generation_info, reused_tokens),
                 (const char *)&pattern + offsetof(lamina_generation_info, reused_tokens),
                 sizeof small - offsetof(lamina_generation_info, reused_tokens)) == 0);

    /* An info struct whose struct_size was never set is an argument error; the check should
     * come before any work is done (no streamed text, no chat turn committed). */
    EXPECT_OK(lamina_session_reset(session));
    memset(&c, 0, sizeof c);
    memset(&info, 0, sizeof info);
    char *text = SENTINEL_STRING;
    EXPECT_ERROR(lamina_session_chat(session, "Hello!", &s, collect, &c, &text, &info),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(text == SENTINEL_STRING);
    /* Was the failed turn added to the history? Compare the next turn's prompt with the same
     * turn on a clean session. */
    lamina_generation_info after_failure, clean;
    memset(&after_failure, 0, sizeof after_failure);
    after_failure.struct_size = sizeof after_failure;
    clean = after_failure;
    s = greedy(1);
    EXPECT_OK(lamina_session_chat(session, "Hi", &s, NULL, NULL, NULL, &after_failure));
    EXPECT_OK(lamina_session_reset(session));
    EXPECT_OK(lamina_session_chat(session, "Hi", &s, NULL, NULL, NULL, &clean));
    /* A chat call with out_info->struct_size = 0 fails before generating or touching history. */
    CHECK(c.pieces == 0 && after_failure.prompt_tokens == clean.prompt_tokens);
    lamina_session_free(session);
}

static void test_callbacks_and_stops(lamina_session *session) {
    /* Streamed pieces add up to the returned text. */
    collector c;
    memset(&c, 0, sizeof c);
    lamina_sampling_params s = greedy(16);
    char *text = NULL;
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, collect, &c, &text, &info));
    CHECK(text != NULL && strcmp(text, c.text) == 0);
    CHECK(c.bad_piece == 0 && c.pieces > 0);
    CHECK(info.struct_size == sizeof info);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS && info.generated_tokens == 16,
           "stop reason %d, %u tokens", (int)info.stop_reason, (unsigned)info.generated_tokens);
    CHECK(info.prompt_tokens > 0 && info.prompt_tokens < 16);
    CHECK(info.prompt_ms >= 0.0 && info.generation_ms >= 0.0 && info.time_to_first_token_ms >= 0.0);
    CHECK(strncmp(text, " Paris", 6) == 0);
    lamina_string_free(text);

    /* The same prompt again reuses the cache (all but the last prompt token). */
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    s = greedy(2);
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, NULL, &info));
    CHECKF(info.reused_tokens + 1 == info.prompt_tokens, "reused %u of %u prompt tokens", (unsigned)info.reused_tokens,
           (unsigned)info.prompt_tokens);

    /* A callback that returns false stops generation: success, CALLBACK_STOPPED. */
    memset(&c, 0, sizeof c);
    c.stop_after = 1;
    s = greedy(16);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    text = NULL;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, collect, &c, &text, &info));
    CHECK(c.pieces == 1);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CALLBACK_STOPPED, "stop reason %d", (int)info.stop_reason);
    CHECK(text != NULL && strcmp(text, c.text) == 0);
    lamina_string_free(text);

    /* Stop strings: the greedy continuation is " Paris.\n\n..."; "." stops before the period. */
    const char *stops[2] = {"London", "."};
    s = greedy(16);
    s.stop = stops;
    s.n_stop = 2;
    memset(&c, 0, sizeof c);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    text = NULL;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, collect, &c, &text, &info));
    CHECKF(text != NULL && strcmp(text, " Paris") == 0, "text with stop \".\" is \"%s\"", text != NULL ? text : "(NULL)");
    CHECKF(strcmp(c.text, " Paris") == 0, "streamed text with stop \".\" is \"%.200s\"", c.text);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_STOP_STRING, "stop reason %d", (int)info.stop_reason);
    lamina_string_free(text);

    /* A multi-token stop string spanning pieces: stop at "\n\nThe"; text is " Paris." */
    const char *stops2[1] = {"\n\nThe"};
    s = greedy(16);
    s.stop = stops2;
    s.n_stop = 1;
    text = NULL;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info));
    CHECKF(text != NULL && strcmp(text, " Paris.") == 0, "text with stop \"\\n\\nThe\" is \"%s\"",
           text != NULL ? text : "(NULL)");
    CHECK(info.stop_reason == LAMINA_STOP_REASON_STOP_STRING);
    lamina_string_free(text);

    /* out_text, out_info and callback may be NULL; sampling NULL means the defaults (256
     * tokens: the callback cuts it short). */
    s = greedy(2);
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, NULL, NULL));
    memset(&c, 0, sizeof c);
    c.stop_after = 2;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, NULL, collect, &c, NULL, &info));
    CHECK(c.pieces == 2 && info.stop_reason == LAMINA_STOP_REASON_CALLBACK_STOPPED);
    CHECK(strncmp(c.text, " Paris", 6) == 0);
}

/* --- cancellation and BUSY from another thread ------------------------------------------ */

typedef struct {
    lamina_session *session;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pieces;
    double started;
    double cancelled_at;
    lamina_status busy_status;
    char busy_message[256];
    /* A const getter on the busy session: const means it runs concurrently, never BUSY. */
    lamina_status n_ctx_status;
    uint32_t n_ctx;
    lamina_status cancel_status;
} cancel_state;

static bool count_pieces(const char *piece, size_t len, void *user_data) {
    cancel_state *st = (cancel_state *)user_data;
    (void)piece;
    (void)len;
    pthread_mutex_lock(&st->lock);
    st->pieces++;
    pthread_cond_broadcast(&st->cond);
    pthread_mutex_unlock(&st->lock);
    /* Safety net: if cancellation is broken, do not run 4000 tokens. */
    return now_s() - st->started < 15.0;
}

static void *canceller(void *arg) {
    cancel_state *st = (cancel_state *)arg;
    pthread_mutex_lock(&st->lock);
    while (st->pieces < 5) {
        pthread_cond_wait(&st->cond, &st->lock);
    }
    pthread_mutex_unlock(&st->lock);
    /* The session is generating on the main thread: a second call on it is BUSY. */
    lamina_sampling_params s = greedy(2);
    st->busy_status = lamina_session_generate(st->session, PROMPT, &s, NULL, NULL, NULL, NULL);
    snprintf(st->busy_message, sizeof st->busy_message, "%s", lamina_last_error_message());
    st->n_ctx_status = lamina_session_n_ctx(st->session, &st->n_ctx);
    st->cancelled_at = now_s();
    st->cancel_status = lamina_session_cancel(st->session);
    return NULL;
}

/* A token callback that calls back into lamina on its own session: cancel works from inside
 * the callback; any other call on the session is BUSY (the session is in use). */
typedef struct {
    lamina_session *session;
    int pieces;
    lamina_status cancel_status;
    lamina_status reentrant_status;
} reentrant_state;

static bool cancel_from_callback(const char *piece, size_t len, void *user_data) {
    reentrant_state *st = (reentrant_state *)user_data;
    (void)piece;
    (void)len;
    if (++st->pieces == 2) {
        st->cancel_status = lamina_session_cancel(st->session);
        st->reentrant_status = lamina_session_reset(st->session);
    }
    return true;
}

/* Keeps cancelling a session every 20 ms until told to stop. A cancel while the session is
 * idle does nothing, so this cannot race with the start of the generation it targets. */
typedef struct {
    lamina_session *session;
    pthread_mutex_t lock;
    int done;
} repeat_cancel;

static void *cancel_repeatedly(void *arg) {
    repeat_cancel *rc = (repeat_cancel *)arg;
    for (;;) {
        struct timespec delay = {0, 20 * 1000 * 1000};
        nanosleep(&delay, NULL);
        pthread_mutex_lock(&rc->lock);
        int done = rc->done;
        pthread_mutex_unlock(&rc->lock);
        if (done) {
            return NULL;
        }
        lamina_session_cancel(rc->session);
    }
}

/* --- several prompts at once ------------------------------------------------------------ */

typedef struct {
    int pieces[3];
    size_t stop_index; /* the prompt whose sequence the callback stops after one piece */
} batch_stream;

static bool count_batch_pieces(size_t index, const char *piece, size_t len, void *user_data) {
    batch_stream *bs = (batch_stream *)user_data;
    (void)piece;
    (void)len;
    if (index < 3) {
        bs->pieces[index]++;
    }
    return index != bs->stop_index;
}

static void test_generate_batch(lamina_model *model) {
    static const char *const prompts[3] = {"The capital of France is", "Once upon a time, there was a little",
                                           "The three primary colors are"};
    lamina_session *single = NULL;
    lamina_session_params p = session_params(256);
    EXPECT_OK(lamina_session_new(model, &p, &single));
    char *expected[3];
    for (int i = 0; i < 3; i++) {
        expected[i] = generate_text(single, prompts[i], 12, NULL);
    }
    lamina_session_free(single);

    lamina_session *batch = NULL;
    p.n_sequences = 3;
    EXPECT_OK(lamina_session_new(model, &p, &batch));
    lamina_sampling_params g = greedy(12);
    const lamina_sampling_params *sampling[3] = {&g, &g, &g};
    char *texts[3] = {NULL, NULL, NULL};
    lamina_generation_info infos[3];
    lamina_generation_info *info_ptrs[3] = {&infos[0], &infos[1], &infos[2]};
    for (int i = 0; i < 3; i++) {
        memset(&infos[i], 0, sizeof infos[i]);
        infos[i].struct_size = sizeof infos[i];
    }
    EXPECT_OK(lamina_session_generate_batch(batch, prompts, 3, sampling, NULL, NULL, texts, info_ptrs));
    for (int i = 0; i < 3; i++) {
        CHECKF(texts[i] != NULL && expected[i] != NULL && strcmp(texts[i], expected[i]) == 0,
               "batch text %d \"%s\" differs from one at a time \"%s\"", i, texts[i] ? texts[i] : "(null)",
               expected[i] ? expected[i] : "(null)");
        CHECK(infos[i].stop_reason == LAMINA_STOP_REASON_MAX_TOKENS && infos[i].generated_tokens == 12);
        lamina_string_free(texts[i]);
        texts[i] = NULL;
    }
    printf("batch of 3: \"%s\" / \"%s\" / \"%s\"\n", expected[0], expected[1], expected[2]);

    /* A callback that returns false stops its own sequence only; sampling NULL means the
     * defaults for every prompt, and the outputs may be NULL. */
    batch_stream bs;
    memset(&bs, 0, sizeof bs);
    bs.stop_index = 1;
    EXPECT_OK(lamina_session_generate_batch(batch, prompts, 3, NULL, count_batch_pieces, &bs, NULL, info_ptrs));
    CHECKF(bs.pieces[1] == 1 && infos[1].stop_reason == LAMINA_STOP_REASON_CALLBACK_STOPPED,
           "stopped sequence: %d pieces, stop reason %d", bs.pieces[1], (int)infos[1].stop_reason);
    CHECK(bs.pieces[0] > 1 && bs.pieces[2] > 1);

    /* Bad input: each gets its status and a message; nothing is written. */
    EXPECT_ERROR(lamina_session_generate_batch(batch, prompts, 0, NULL, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_prompts");
    EXPECT_ERROR(lamina_session_generate_batch(batch, NULL, 2, NULL, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "prompts");
    static const char *const four[4] = {"a", "b", "c", "d"};
    EXPECT_ERROR(lamina_session_generate_batch(batch, four, 4, NULL, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "at most 3");
    const char *with_null[2] = {"a", NULL};
    EXPECT_ERROR(lamina_session_generate_batch(batch, with_null, 2, NULL, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "prompts[i]");
    const char *with_empty[2] = {"a", ""};
    EXPECT_ERROR(lamina_session_generate_batch(batch, with_empty, 2, NULL, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_EMPTY_PROMPT, "prompt");
    lamina_sampling_params bad = greedy(4);
    bad.temperature = -1.0f;
    const lamina_sampling_params *bad_sampling[2] = {NULL, &bad};
    EXPECT_ERROR(lamina_session_generate_batch(batch, prompts, 2, bad_sampling, NULL, NULL, texts, NULL),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "request 1");
    CHECK(texts[0] == NULL && texts[1] == NULL);
    EXPECT_ERROR(lamina_session_generate_batch(NULL, prompts, 1, NULL, NULL, NULL, NULL, NULL),
                 LAMINA_STATUS_ERROR_NULL_ARGUMENT, "session");
    lamina_session_params too_many = session_params(256);
    too_many.n_sequences = 0;
    lamina_session *none = NULL;
    EXPECT_ERROR(lamina_session_new(model, &too_many, &none), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_sequences");
    too_many.n_sequences = 257;
    EXPECT_ERROR(lamina_session_new(model, &too_many, &none), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_sequences");
    CHECK(none == NULL);

    /* The session generates normally afterwards. */
    char *after = generate_text(batch, prompts[0], 12, NULL);
    CHECK(after != NULL && expected[0] != NULL && strcmp(after, expected[0]) == 0);
    free(after);
    for (int i = 0; i < 3; i++) {
        free(expected[i]);
    }
    lamina_session_free(batch);
}

/* Cancels a session once, after a delay, and records when. */
typedef struct {
    lamina_session *session;
    long delay_ms;
    double sent_at;
} delayed_cancel;

static void *cancel_after_delay(void *arg) {
    delayed_cancel *dc = (delayed_cancel *)arg;
    struct timespec delay = {dc->delay_ms / 1000, (dc->delay_ms % 1000) * 1000 * 1000};
    nanosleep(&delay, NULL);
    dc->sent_at = now_s();
    lamina_session_cancel(dc->session);
    return NULL;
}

static void test_cancel(lamina_model *model) {
    lamina_session *session = NULL;
    lamina_session_params p = session_params(4096 + 64);
    EXPECT_OK(lamina_session_new(model, &p, &session));
    if (session == NULL) {
        return;
    }
    cancel_state st;
    memset(&st, 0, sizeof st);
    st.session = session;
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.cond, NULL);
    st.started = now_s();
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, canceller, &st) == 0);

    lamina_sampling_params s = greedy(4000);
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    lamina_status status = lamina_session_generate(session, "Once upon a time", &s, count_pieces, &st, NULL, &info);
    double returned = now_s();
    pthread_join(thread, NULL);

    expect_ok(__FILE__, __LINE__, "lamina_session_generate (cancelled)", status);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CANCELLED, "stop reason %d, expected CANCELLED", (int)info.stop_reason);
    CHECKF(returned - st.cancelled_at < 2.0, "cancel took %.3f s to take effect", returned - st.cancelled_at);
    CHECKF(info.generated_tokens < 4000 && info.generated_tokens >= 5, "%u tokens generated",
           (unsigned)info.generated_tokens);
    CHECK(st.cancel_status == LAMINA_STATUS_OK);
    CHECKF(st.busy_status == LAMINA_STATUS_ERROR_BUSY, "concurrent call on one session: %s, expected BUSY",
           lamina_status_name(st.busy_status));
    CHECKF(st.busy_message[0] != '\0' && strstr(st.busy_message, "busy") != NULL, "BUSY message: \"%s\"",
           st.busy_message);
    CHECKF(st.n_ctx_status == LAMINA_STATUS_OK && st.n_ctx == 4096 + 64, "n_ctx of a busy session: %s, %u",
           lamina_status_name(st.n_ctx_status), (unsigned)st.n_ctx);

    /* The session works normally afterwards (the cancel request was consumed). */
    char *text = generate_text(session, PROMPT, 4, &info);
    CHECK(text != NULL && strstr(text, "Paris") != NULL);
    CHECK(info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS);
    free(text);

    /* Cancel from inside the token callback; a re-entrant call on the same session is BUSY. */
    reentrant_state rs;
    memset(&rs, 0, sizeof rs);
    rs.session = session;
    rs.reentrant_status = LAMINA_STATUS_OK;
    s = greedy(20);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, cancel_from_callback, &rs, NULL, &info));
    CHECK(rs.cancel_status == LAMINA_STATUS_OK);
    CHECKF(rs.reentrant_status == LAMINA_STATUS_ERROR_BUSY, "re-entrant call: %s", lamina_status_name(rs.reentrant_status));
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CANCELLED && info.generated_tokens == 2,
           "cancel in callback: stop reason %d after %u tokens", (int)info.stop_reason, (unsigned)info.generated_tokens);

    /* Cancel while a long prompt is being processed in many small chunks (n_batch 32), from
     * a thread that keeps cancelling: the first cancel that finds the prompt running stops it. */
    lamina_session *chunked = NULL;
    lamina_session_params cp = session_params(1024);
    cp.n_batch = 32;
    EXPECT_OK(lamina_session_new(model, &cp, &chunked));
    char *long_prompt = words_prompt(1000);
    repeat_cancel rc;
    rc.session = chunked;
    rc.done = 0;
    pthread_mutex_init(&rc.lock, NULL);
    pthread_t late;
    CHECK(pthread_create(&late, NULL, cancel_repeatedly, &rc) == 0);
    double t_start = now_s();
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(chunked, long_prompt, &s, NULL, NULL, NULL, &info));
    double t_prompt = now_s() - t_start;
    pthread_mutex_lock(&rc.lock);
    rc.done = 1;
    pthread_mutex_unlock(&rc.lock);
    pthread_join(late, NULL);
    pthread_mutex_destroy(&rc.lock);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CANCELLED && info.generated_tokens == 0,
           "cancel during the prompt: stop reason %d, %u tokens", (int)info.stop_reason,
           (unsigned)info.generated_tokens);
    CHECKF(t_prompt < 2.0, "cancel during the prompt took %.2f s", t_prompt);
    free(long_prompt);
    lamina_session_free(chunked);

    /* Cancel in the middle of one long prompt chunk (the whole prompt is one decode call):
     * llama.cpp's abort callback stops the computation within milliseconds, and the call
     * reports the time it did spend on the prompt. */
    lamina_session *one_chunk = NULL;
    lamina_session_params op = session_params(2048);
    op.n_batch = 2048;
    EXPECT_OK(lamina_session_new(model, &op, &one_chunk));
    char *big_prompt = words_prompt(1500);
    delayed_cancel dc;
    dc.session = one_chunk;
    dc.delay_ms = 300;
    dc.sent_at = 0.0;
    pthread_t delayed;
    CHECK(pthread_create(&delayed, NULL, cancel_after_delay, &dc) == 0);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_OK(lamina_session_generate(one_chunk, big_prompt, &s, NULL, NULL, NULL, &info));
    double returned_at = now_s();
    pthread_join(delayed, NULL);
    double latency_ms = (returned_at - dc.sent_at) * 1e3;
    printf("cancel inside a %u-token prompt chunk: returned after %.1f ms, prompt_ms %.1f\n",
           (unsigned)info.prompt_tokens, latency_ms, info.prompt_ms);
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_CANCELLED && info.generated_tokens == 0,
           "cancel inside a chunk: stop reason %d, %u tokens", (int)info.stop_reason, (unsigned)info.generated_tokens);
    /* 50 ms is the contract; the bound leaves room for a loaded machine while staying far
     * below the seconds one chunk takes. */
    CHECKF(latency_ms < 250.0, "cancel inside a chunk took %.1f ms", latency_ms);
    CHECKF(info.prompt_ms >= 250.0, "prompt_ms %.1f does not count the time spent", info.prompt_ms);
    char *after = generate_text(one_chunk, PROMPT, 4, &info);
    CHECK(after != NULL && strstr(after, "Paris") != NULL);
    free(after);
    free(big_prompt);
    lamina_session_free(one_chunk);

    /* A cancel while nothing runs does nothing: a late cancel never stops a later generation. */
    EXPECT_OK(lamina_session_cancel(session));
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    s = greedy(4);
    text = NULL;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, &info));
    CHECKF(info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS && info.generated_tokens == 4,
           "generation after an idle cancel: stop reason %d, %u tokens", (int)info.stop_reason,
           (unsigned)info.generated_tokens);
    CHECK(text != NULL && strstr(text, "Paris") != NULL);
    lamina_string_free(text);

    pthread_mutex_destroy(&st.lock);
    pthread_cond_destroy(&st.cond);
    lamina_session_free(session);
}

/* --- two sessions over one model on two threads ----------------------------------------- */

typedef struct {
    lamina_session *session;
    const char *prompt;
    lamina_status status;
    char text[2048];
    char error[256];
    pthread_barrier_t *start;
} worker;

static void *work(void *arg) {
    worker *w = (worker *)arg;
    lamina_sampling_params s = greedy(24);
    char *text = NULL;
    pthread_barrier_wait(w->start);
    w->status = lamina_session_generate(w->session, w->prompt, &s, NULL, NULL, &text, NULL);
    if (w->status == LAMINA_STATUS_OK) {
        snprintf(w->text, sizeof w->text, "%s", text);
        lamina_string_free(text);
    } else {
        snprintf(w->error, sizeof w->error, "%s", lamina_last_error_message());
    }
    /* Errors are per thread: make one here; the main thread's message must not change. */
    (void)lamina_session_generate(w->session, "", &s, NULL, NULL, NULL, NULL);
    return NULL;
}

static void test_concurrent_sessions(lamina_model *model) {
    const char *prompts[2] = {PROMPT, "The three primary colors are"};
    char *sequential[2] = {NULL, NULL};
    lamina_session_params p = session_params(256);

    for (int i = 0; i < 2; i++) {
        lamina_session *s = NULL;
        EXPECT_OK(lamina_session_new(model, &p, &s));
        sequential[i] = generate_text(s, prompts[i], 24, NULL);
        lamina_session_free(s);
    }

    /* A known message on this thread, to check that the workers' errors stay on theirs. */
    EXPECT_ERROR(lamina_session_reset(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "session");
    char before[256];
    snprintf(before, sizeof before, "%s", lamina_last_error_message());

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    worker w[2];
    pthread_t threads[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++) {
        EXPECT_OK(lamina_session_new(model, &p, &w[i].session));
        w[i].prompt = prompts[i];
        w[i].start = &start;
    }
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_create(&threads[i], NULL, work, &w[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++) {
        CHECKF(w[i].status == LAMINA_STATUS_OK, "thread %d: %s: %s", i, lamina_status_name(w[i].status), w[i].error);
        CHECKF(sequential[i] != NULL && strcmp(sequential[i], w[i].text) == 0,
               "thread %d: concurrent text \"%.200s\" differs from sequential \"%.200s\"", i, w[i].text,
               sequential[i] != NULL ? sequential[i] : "(NULL)");
        lamina_session_free(w[i].session);
        free(sequential[i]);
    }
    CHECK(strstr(w[0].text, "Paris") != NULL);
    CHECK(strcmp(before, lamina_last_error_message()) == 0);
}

static void test_chat_and_tasks(lamina_session *session) {
    EXPECT_OK(lamina_session_reset(session));
    EXPECT_OK(lamina_session_set_system_prompt(session, "You are a helpful assistant. Answer briefly."));
    lamina_sampling_params s = greedy(16);
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    char *reply = NULL;
    EXPECT_OK(lamina_session_chat(session, "What is the capital of France?", &s, NULL, NULL, &reply, &info));
    CHECK(reply != NULL && reply[0] != '\0');
    CHECK(info.generated_tokens >= 1 && info.generated_tokens <= 16);
    lamina_string_free(reply);
    uint32_t first_prompt = info.prompt_tokens;

    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    reply = NULL;
    EXPECT_OK(lamina_session_chat(session, "And of Germany?", &s, NULL, NULL, &reply, &info));
    CHECK(reply != NULL && reply[0] != '\0');
    lamina_string_free(reply);
    CHECKF(info.reused_tokens >= first_prompt && info.prompt_tokens > first_prompt,
           "second turn: %u prompt tokens, %u reused (first turn had %u)", (unsigned)info.prompt_tokens,
           (unsigned)info.reused_tokens, (unsigned)first_prompt);
    EXPECT_OK(lamina_session_set_system_prompt(session, NULL));

    char *translation = NULL;
    EXPECT_OK(lamina_session_translate(session, "Good morning", "en", "German", &translation));
    CHECK(translation != NULL && translation[0] != '\0');
    lamina_string_free(translation);

    char *answer = NULL;
    EXPECT_OK(lamina_session_answer(session, "What colour is the car?", "The car in front of the house is red.", &answer));
    CHECKF(answer != NULL && (strstr(answer, "red") != NULL || strstr(answer, "Red") != NULL), "answer: \"%s\"",
           answer != NULL ? answer : "(NULL)");
    lamina_string_free(answer);
}

/* Structured output through the C ABI: a grammar and a JSON schema constrain the text, bad ones
 * are INVALID_ARGUMENT with a message naming the field, both at once is refused, and the
 * session generates free text afterwards. (bindings/python/tests/test_structured.py validates
 * the outputs of many schemas with a JSON-schema validator.) */
static void test_structured_output(lamina_session *session) {
    EXPECT_OK(lamina_session_reset(session));
    lamina_sampling_params s = greedy(8);
    s.grammar = "root ::= \" \" (\"yes\" | \"no\")";
    char *text = NULL;
    EXPECT_OK(lamina_session_generate(session, "Is water wet? Answer:", &s, NULL, NULL, &text, NULL));
    CHECKF(text != NULL && (strcmp(text, " yes") == 0 || strcmp(text, " no") == 0), "grammar output: \"%s\"",
           text != NULL ? text : "(NULL)");
    lamina_string_free(text);

    s = greedy(64);
    s.json_schema = "{\"type\": \"object\", \"properties\": {\"ok\": {\"type\": \"boolean\"}}, "
                    "\"required\": [\"ok\"], \"additionalProperties\": false}";
    text = NULL;
    EXPECT_OK(lamina_session_generate(session, "JSON:", &s, NULL, NULL, &text, NULL));
    CHECKF(text != NULL && text[0] == '{' && strstr(text, "\"ok\"") != NULL &&
               (strstr(text, "true") != NULL || strstr(text, "false") != NULL) && text[strlen(text) - 1] == '}',
           "schema output: \"%s\"", text != NULL ? text : "(NULL)");
    lamina_string_free(text);

    char *sentinel = SENTINEL_STRING;
    s = greedy(8);
    s.json_schema = "{\"type\": \"foo\"}";
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &sentinel, NULL), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "unrecognized type foo");
    s.json_schema = "{\"type\": \"number\", \"maximum\": 3}";
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &sentinel, NULL), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "`maximum`");
    s.json_schema = NULL;
    s.grammar = "root ::= undefined-rule";
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &sentinel, NULL), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "grammar");
    s.json_schema = "{\"type\": \"string\"}";
    s.grammar = "root ::= \"x\"";
    EXPECT_ERROR(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &sentinel, NULL), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "not both");
    CHECK(sentinel == SENTINEL_STRING);

    s = greedy(4);
    text = NULL;
    EXPECT_OK(lamina_session_generate(session, PROMPT, &s, NULL, NULL, &text, NULL));
    CHECK(text != NULL && text[0] != '\0');
    lamina_string_free(text);
}

static double dot(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += (double)a[i] * (double)b[i];
    }
    return d;
}

/* Embeddings through the C ABI: unit vectors of the reported width, a similar pair closer than
 * an unrelated one, several texts per call equal to one at a time, and every bad argument. */
static void test_embeddings(lamina_model *model) {
    lamina_embedder_params p;
    memset(&p, 0, sizeof p);
    EXPECT_OK(lamina_embedder_params_init(&p, sizeof p));
    CHECK(p.pooling == LAMINA_POOLING_MEAN && p.normalize);
    p.n_threads = 1;
    lamina_embedder *e = NULL;
    EXPECT_OK(lamina_embedder_new(model, &p, &e));
    if (e == NULL) {
        return;
    }
    size_t dims = 0;
    EXPECT_OK(lamina_embedder_dimensions(e, &dims));
    CHECK(dims > 0 && dims < 100000);
    const char *texts[3] = {"The cat sat on the mat.", "A cat is sitting on a rug.", "Interest rates rose sharply."};
    float *v = calloc(3 * dims, sizeof *v);
    float *one = calloc(dims, sizeof *one);
    if (v == NULL || one == NULL) {
        record(0, __LINE__, "calloc");
        free(v);
        free(one);
        lamina_embedder_free(e);
        return;
    }
    EXPECT_OK(lamina_embedder_embed(e, texts, 3, v, 3 * dims));
    for (int i = 0; i < 3; i++) {
        double norm = dot(v + i * dims, v + i * dims, dims);
        CHECKF(norm > 0.9999 && norm < 1.0001, "vector %d has squared norm %f", i, norm);
    }
    double similar = dot(v, v + dims, dims), unrelated = dot(v, v + 2 * dims, dims);
    CHECKF(similar > unrelated, "similar pair %f, unrelated pair %f", similar, unrelated);
    EXPECT_OK(lamina_embedder_embed(e, &texts[1], 1, one, dims));
    CHECKF(dot(one, v + dims, dims) > 0.999999, "alone vs batched: cosine %f", dot(one, v + dims, dims));

    EXPECT_ERROR(lamina_embedder_embed(e, texts, 3, v, 3 * dims - 1), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "out_len");
    const char *with_empty[2] = {"fine", ""};
    EXPECT_ERROR(lamina_embedder_embed(e, with_empty, 2, v, 2 * dims), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "text 1 is empty");
    const char *with_null[2] = {"fine", NULL};
    EXPECT_ERROR(lamina_embedder_embed(e, with_null, 2, v, 2 * dims), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "texts");
    EXPECT_ERROR(lamina_embedder_embed(e, NULL, 1, v, dims), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "texts");
    EXPECT_OK(lamina_embedder_embed(e, NULL, 0, NULL, 0));
    EXPECT_ERROR(lamina_embedder_dimensions(e, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_dimensions");
    lamina_embedder_params bad = p;
    bad.pooling = 7;
    lamina_embedder *sentinel = (lamina_embedder *)(void *)&g_sentinel_storage[3];
    EXPECT_ERROR(lamina_embedder_new(model, &bad, &sentinel), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "pooling");
    bad = p;
    bad.max_texts = 0;
    EXPECT_ERROR(lamina_embedder_new(model, &bad, &sentinel), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_texts");
    CHECK(sentinel == (lamina_embedder *)(void *)&g_sentinel_storage[3]);
    EXPECT_ERROR(lamina_embedder_new(NULL, &p, &sentinel), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "model");
    lamina_embedder_free(e);
    EXPECT_ERROR(lamina_embedder_embed(e, texts, 1, v, dims), LAMINA_STATUS_ERROR_INVALID_HANDLE, "embedder");
    lamina_embedder_free(NULL);
    free(v);
    free(one);
}

/* Saved sessions: a chat saved to a buffer and to a file, restored into new sessions, continues
 * byte for byte and reuses its cache; bad states are INVALID_ARGUMENT and the session works. */
static void test_saved_sessions(lamina_model *model) {
    lamina_session_params sp = session_params(1024);
    lamina_session *a = NULL, *b = NULL, *c = NULL;
    EXPECT_OK(lamina_session_new(model, &sp, &a));
    EXPECT_OK(lamina_session_new(model, &sp, &b));
    EXPECT_OK(lamina_session_new(model, &sp, &c));
    if (a == NULL || b == NULL || c == NULL) {
        lamina_session_free(a);
        lamina_session_free(b);
        lamina_session_free(c);
        return;
    }
    lamina_sampling_params s = greedy(12);
    char *text = NULL;
    EXPECT_OK(lamina_session_chat(a, "My name is Ada.", &s, NULL, NULL, &text, NULL));
    lamina_string_free(text);
    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_OK(lamina_session_save_state(a, &data, &len));
    CHECK(data != NULL && len > 1000);
    const char *path = "tests/c/build/test_abi.lamina-session";
    EXPECT_OK(lamina_session_save_state_file(a, path));

    char *expected = NULL;
    lamina_generation_info info_a, info_b;
    memset(&info_a, 0, sizeof info_a);
    info_a.struct_size = sizeof info_a;
    info_b = info_a;
    EXPECT_OK(lamina_session_chat(a, "What is my name?", &s, NULL, NULL, &expected, &info_a));
    EXPECT_OK(lamina_session_restore_state(b, data, len));
    char *got = NULL;
    EXPECT_OK(lamina_session_chat(b, "What is my name?", &s, NULL, NULL, &got, &info_b));
    CHECKF(expected != NULL && got != NULL && strcmp(expected, got) == 0, "restored: \"%s\" vs \"%s\"",
           got != NULL ? got : "(NULL)", expected != NULL ? expected : "(NULL)");
    CHECKF(info_b.reused_tokens == info_a.reused_tokens && info_b.reused_tokens > 0, "reused %u vs %u",
           (unsigned)info_b.reused_tokens, (unsigned)info_a.reused_tokens);
    lamina_string_free(got);
    got = NULL;
    EXPECT_OK(lamina_session_restore_state_file(c, path));
    EXPECT_OK(lamina_session_chat(c, "What is my name?", &s, NULL, NULL, &got, NULL));
    CHECK(expected != NULL && got != NULL && strcmp(expected, got) == 0);
    lamina_string_free(got);
    lamina_string_free(expected);

    data[len / 2] ^= 1;
    EXPECT_ERROR(lamina_session_restore_state(b, data, len), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "checksum");
    EXPECT_ERROR(lamina_session_restore_state(b, data, 10), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "truncated");
    EXPECT_ERROR(lamina_session_restore_state(b, (const uint8_t *)"not a state at all", 18), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "not a lamina session state");
    EXPECT_ERROR(lamina_session_restore_state(b, NULL, 5), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "data");
    EXPECT_ERROR(lamina_session_restore_state_file(b, "tests/c/build/no-such-state"), LAMINA_STATUS_ERROR_IO, "no-such-state");
    EXPECT_ERROR(lamina_session_save_state(b, NULL, &len), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_data");
    lamina_bytes_free(data, len);
    lamina_bytes_free(NULL, 0);
    got = NULL;
    EXPECT_OK(lamina_session_generate(b, PROMPT, &s, NULL, NULL, &got, NULL));
    CHECK(got != NULL && got[0] != '\0');
    lamina_string_free(got);
    remove(path);
    lamina_session_free(a);
    lamina_session_free(b);
    lamina_session_free(c);
}

static void test_session_outlives_model(const char *model_path) {
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &model));
    lamina_session *session = NULL;
    lamina_session_params p = session_params(128);
    EXPECT_OK(lamina_session_new(model, &p, &session));
    lamina_model_free(model); /* the session keeps the weights alive */
    char *text = generate_text(session, PROMPT, 4, NULL);
    CHECK(text != NULL && strstr(text, "Paris") != NULL);
    free(text);
    lamina_session_free(session);
}

/* ---------------------------------------------------------------------------------------- */
/* Training from scratch: corpus, tokenizer, a model initialised and loaded                  */

static const char *const PT_SUBJECTS[] = {"The river",  "A small boat", "The old miller", "Our teacher",
                                          "The market", "A grey heron", "The night train", "My neighbour",
                                          "The orchard", "A lighthouse keeper", "The baker", "An old map"};
static const char *const PT_VERBS[] = {"watched", "carried", "remembered", "painted", "followed",
                                       "answered", "counted", "opened", "repaired", "described"};
static const char *const PT_OBJECTS[] = {"the morning light", "seven wooden crates", "a song about winter",
                                         "the northern hills", "every letter twice", "the broken gate",
                                         "a basket of apples", "the quiet harbour", "the numbers 12 and 40",
                                         "a long story"};

/* Document `i` of the made-up corpus: five sentences on one line, different for each i. */
static void pt_document(int i, char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (int j = 0; j < 5 && used < n; j++) {
        int written = snprintf(out + used, n - used, "%s%s %s %s.", j > 0 ? " " : "", PT_SUBJECTS[(i * 5 + j) % 12],
                               PT_VERBS[(i * 3 + j * 7) % 10], PT_OBJECTS[(i * 7 + j * 3 + i / 10) % 10]);
        if (written < 0) {
            return;
        }
        used += (size_t)written;
    }
}

/* Write documents first..last-1 (blank-line separated) to `path`, then document `repeat` again
 * when it is not negative (an exact duplicate for the corpus to remove). */
static int pt_write_docs(const char *path, int first, int last, int repeat) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return 0;
    }
    char doc[1024];
    for (int i = first; i < last; i++) {
        pt_document(i, doc, sizeof doc);
        fprintf(f, "%s\n\n", doc);
    }
    if (repeat >= 0) {
        pt_document(repeat, doc, sizeof doc);
        fprintf(f, "%s\n", doc);
    }
    return fclose(f) == 0;
}

typedef struct {
    int calls;
    int cancel_at; /* return false on this call (0 = never) */
    int bad_stage;
    int bad_user_data;
} pt_progress;

static bool pt_on_corpus(const char *stage, size_t done, size_t total, void *user_data) {
    pt_progress *p = (pt_progress *)user_data;
    p->calls++;
    if (stage == NULL || stage[0] == '\0' || done > total) {
        p->bad_stage++;
    }
    return p->cancel_at == 0 || p->calls < p->cancel_at;
}

static bool pt_on_init(size_t done, size_t total, void *user_data) {
    pt_progress *p = (pt_progress *)user_data;
    p->calls++;
    if (done == 0 || done > total) {
        p->bad_stage++;
    }
    return p->cancel_at == 0 || p->calls < p->cancel_at;
}

/* A file in the test's directory. */
static void pt_path(char *out, size_t n, const char *dir, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static int pt_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* The number after `"key":` in `json`, or -1. */
static long pt_number(const char *json, const char *key) {
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *at = json != NULL ? strstr(json, needle) : NULL;
    return at != NULL ? strtol(at + strlen(needle), NULL, 10) : -1;
}

/* The number `key` of the flat JSON object of `json` that holds `marker` (such as
 * "\"step\":\"exact_duplicates\""), whatever the order of its fields; -1 if none. */
static long pt_field(const char *json, const char *marker, const char *key) {
    const char *at = strstr(json, marker);
    if (at == NULL) {
        return -1;
    }
    const char *open = at;
    while (open > json && *open != '{') {
        open--;
    }
    const char *close = strchr(at, '}');
    char object[1024];
    size_t n = close != NULL ? (size_t)(close - open) : 0;
    if (n == 0 || n >= sizeof object) {
        return -1;
    }
    memcpy(object, open, n);
    object[n] = '\0';
    return pt_number(object, key);
}

static void test_corpus_build(const char *dir, const char *corpus_dir) {
    char a[512], b[512];
    pt_path(a, sizeof a, dir, "a.txt");
    pt_path(b, sizeof b, dir, "b.md.txt");
    CHECK(pt_write_docs(a, 0, 10, -1));
    CHECK(pt_write_docs(b, 10, 16, 3)); /* document 3 again: an exact duplicate */
    const char *inputs[2] = {a, b};

    lamina_corpus_params p;
    memset(&p, 0, sizeof p);
    EXPECT_OK(lamina_corpus_params_init(&p, sizeof p));
    CHECK(p.struct_size == sizeof p && p.normalization == NULL && p.dedup_documents && p.near_dedup && !p.lowercase);
    CHECK(p.train_fraction > 0.89 && p.train_fraction < 0.91 && p.seed == 0);
    p.train_fraction = 0.8;
    p.validation_fraction = 0.1;
    p.test_fraction = 0.1;
    p.normalization = "NFKC";

    /* Cancelled at the first progress call: OK, a "cancelled" report, nothing written. */
    pt_progress cancel = {0, 1, 0, 0};
    char *report = NULL;
    EXPECT_OK(lamina_corpus_build(inputs, 2, corpus_dir, &p, pt_on_corpus, &cancel, &report));
    CHECKF(report != NULL && strstr(report, "\"cancelled\":true") != NULL, "cancelled report: %s", report ? report : "(NULL)");
    CHECK(cancel.calls == 1);
    char train[512];
    pt_path(train, sizeof train, corpus_dir, "train.jsonl");
    CHECK(!pt_exists(train));
    lamina_string_free(report);

    pt_progress seen = {0, 0, 0, 0};
    report = NULL;
    EXPECT_OK(lamina_corpus_build(inputs, 2, corpus_dir, &p, pt_on_corpus, &seen, &report));
    CHECKF(seen.calls >= 4 && seen.bad_stage == 0, "%d progress calls, %d bad", seen.calls, seen.bad_stage);
    CHECK(report != NULL);
    if (report == NULL) {
        return;
    }
    CHECKF(pt_number(report, "files") == 2, "report: %s", report);
    CHECKF(pt_number(strstr(report, "\"input\":"), "documents") == 17, "input documents in %s", report);
    CHECKF(pt_field(report, "\"step\":\"exact_duplicates\"", "documents_removed") == 1, "report: %s", report);
    CHECKF(pt_number(strstr(report, "\"output\":"), "documents") == 16, "output documents in %s", report);
    CHECKF(pt_field(report, "\"name\":\"train\"", "documents") >= 10, "train set in %s", report);
    CHECK(strstr(report, "\"normalization\":\"nfkc\"") != NULL && strstr(report, "\"cancelled\":false") != NULL);
    CHECK(pt_exists(train));
    lamina_string_free(report);

    /* Bad input: a specific status and message each, the out-parameter untouched. */
    char *out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_corpus_build(NULL, 2, corpus_dir, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "inputs");
    const char *with_null[2] = {a, NULL};
    EXPECT_ERROR(lamina_corpus_build(with_null, 2, corpus_dir, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "inputs[1]");
    const char *not_utf8[1] = {"/tmp/\xff\xfe.txt"};
    EXPECT_ERROR(lamina_corpus_build(not_utf8, 1, corpus_dir, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_UTF8,
                 "inputs[0]");
    EXPECT_ERROR(lamina_corpus_build(inputs, 0, corpus_dir, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "no input");
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, NULL, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_dir");
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, corpus_dir, &p, NULL, NULL, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "out_report_json");
    const char *missing[1] = {"tests/c/build/no-such-corpus.txt"};
    EXPECT_ERROR(lamina_corpus_build(missing, 1, corpus_dir, &p, NULL, NULL, &out), LAMINA_STATUS_ERROR_DATA,
                 "no-such-corpus.txt");
    lamina_corpus_params bad = p;
    bad.train_fraction = 0.5;
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, corpus_dir, &bad, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "sum to");
    bad = p;
    bad.normalization = "nfd";
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, corpus_dir, &bad, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "normalization");
    bad = p;
    bad.near_dedup_threshold = 0.0;
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, corpus_dir, &bad, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "near_dedup_threshold");
    bad.struct_size = 0;
    EXPECT_ERROR(lamina_corpus_build(inputs, 2, corpus_dir, &bad, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "struct_size");
    CHECK(out == SENTINEL_STRING);
    EXPECT_ERROR(lamina_corpus_params_init(NULL, sizeof p), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "lamina_corpus_params");
}

static void test_tokenizer_train(const char *corpus_dir, const char *tokenizer_dir) {
    char train[512];
    pt_path(train, sizeof train, corpus_dir, "train.jsonl");
    const char *inputs[1] = {train};
    lamina_tokenizer_train_params p;
    memset(&p, 0, sizeof p);
    EXPECT_OK(lamina_tokenizer_train_params_init(&p, sizeof p));
    CHECK(p.vocab_size == 8192 && p.min_frequency == 2 && !p.add_bos_token && p.n_special_tokens == 0);
    CHECK(p.bos_token != NULL && strcmp(p.bos_token, "<s>") == 0 && p.eos_token != NULL && strcmp(p.eos_token, "</s>") == 0);
    CHECK(p.pad_token != NULL && strcmp(p.pad_token, "<pad>") == 0 && p.chat_template == NULL);
    p.vocab_size = 320;
    const char *extra[2] = {"<|im_start|>", "<|im_end|>"};
    p.special_tokens = extra;
    p.n_special_tokens = 2;

    char *report = NULL;
    EXPECT_OK(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &p, &report));
    CHECKF(report != NULL && pt_number(report, "vocab_size") == 320, "report: %s", report ? report : "(NULL)");
    CHECK(report != NULL && pt_number(report, "n_merges") == 320 - 256 - 5);
    CHECK(report != NULL && strstr(report, "\"special_tokens\":[\"<s>\",\"</s>\",\"<pad>\",\"<|im_start|>\",\"<|im_end|>\"]"));
    lamina_string_free(report);
    char file[512];
    pt_path(file, sizeof file, tokenizer_dir, "tokenizer.json");
    CHECK(pt_exists(file));

    char *out = SENTINEL_STRING;
    lamina_tokenizer_train_params bad = p;
    bad.vocab_size = 100;
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &bad, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "vocab_size");
    bad = p;
    bad.vocab_size = 100000;
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &bad, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "vocab_size");
    bad = p;
    bad.special_tokens = NULL;
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &bad, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "special_tokens");
    bad = p;
    extra[1] = "<s>";
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &bad, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "special_tokens");
    extra[1] = "<|im_end|>";
    bad.pad_token = "\xff";
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &bad, &out), LAMINA_STATUS_ERROR_INVALID_UTF8,
                 "pad_token");
    EXPECT_ERROR(lamina_tokenizer_train(NULL, 1, tokenizer_dir, &p, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "inputs");
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, NULL, &p, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_dir");
    EXPECT_ERROR(lamina_tokenizer_train(inputs, 1, tokenizer_dir, &p, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "out_report_json");
    CHECK(out == SENTINEL_STRING);
}

static void test_init_model(const char *dir, const char *tokenizer_dir) {
    lamina_model_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    EXPECT_OK(lamina_model_spec_preset("1m", 320, &spec));
    CHECK(spec.struct_size == sizeof spec && spec.n_layers == 3 && spec.width == 128 && spec.n_heads == 4);
    CHECK(spec.n_kv_heads == 2 && spec.ffn_width == 384 && spec.context_length == 256 && spec.vocab_size == 320);
    CHECK(spec.tied_embeddings && spec.rope_base == 10000.0f && spec.rms_norm_eps > 0.0f);

    lamina_model_spec untouched = spec;
    EXPECT_ERROR(lamina_model_spec_preset("3b", 320, &spec), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "preset");
    EXPECT_ERROR(lamina_model_spec_preset("1m", 0, &spec), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "vocab_size");
    EXPECT_ERROR(lamina_model_spec_preset(NULL, 320, &spec), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "name");
    EXPECT_ERROR(lamina_model_spec_preset("1m", 320, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_spec");
    CHECK(memcmp(&untouched, &spec, sizeof spec) == 0);
    lamina_model_spec unsized = spec;
    unsized.struct_size = 0;
    EXPECT_ERROR(lamina_model_spec_preset("1m", 320, &unsized), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");

    lamina_init_params ip;
    memset(&ip, 0, sizeof ip);
    EXPECT_OK(lamina_init_params_init(&ip, sizeof ip));
    CHECK(ip.seed == 0 && ip.std > 0.0199f && ip.std < 0.0201f && ip.embeddings_from == NULL);
    ip.seed = 7;

    char hf[512], gguf[512], file[512];
    pt_path(hf, sizeof hf, dir, "hf");
    pt_path(gguf, sizeof gguf, dir, "model.gguf");

    /* Cancelled after the third tensor: OK, a "cancelled" report, no weights file. */
    pt_progress cancel = {0, 3, 0, 0};
    char *report = NULL;
    EXPECT_OK(lamina_init_model(&spec, tokenizer_dir, hf, gguf, &ip, pt_on_init, &cancel, &report));
    CHECKF(report != NULL && strstr(report, "\"cancelled\":true") != NULL, "report: %s", report ? report : "(NULL)");
    CHECK(cancel.calls == 3);
    pt_path(file, sizeof file, hf, "model.safetensors");
    CHECK(!pt_exists(file) && !pt_exists(gguf));
    lamina_string_free(report);

    pt_progress seen = {0, 0, 0, 0};
    report = NULL;
    EXPECT_OK(lamina_init_model(&spec, tokenizer_dir, hf, gguf, &ip, pt_on_init, &seen, &report));
    CHECKF(seen.calls > 6 && seen.bad_stage == 0, "%d progress calls, %d bad", seen.calls, seen.bad_stage);
    CHECKF(report != NULL && pt_number(report, "n_params") > 500000 && pt_number(report, "vocab_size") == 320,
           "report: %s", report ? report : "(NULL)");
    CHECK(report != NULL && strstr(report, "model.gguf") != NULL && strstr(report, "\"cancelled\":false") != NULL);
    lamina_string_free(report);
    CHECK(pt_exists(file) && pt_exists(gguf));

    /* llama.cpp loads the new model and generates from it. */
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(gguf, NULL, &model));
    if (model != NULL) {
        char *info = NULL;
        EXPECT_OK(lamina_model_info_json(model, &info));
        CHECKF(info != NULL && pt_number(info, "n_vocab") == 320 && pt_number(info, "n_layer") == 3, "info: %s",
               info ? info : "(NULL)");
        lamina_string_free(info);
        lamina_session *session = NULL;
        lamina_session_params sp = session_params(64);
        EXPECT_OK(lamina_session_new(model, &sp, &session));
        lamina_generation_info gi;
        memset(&gi, 0, sizeof gi);
        gi.struct_size = sizeof gi;
        char *text = session != NULL ? generate_text(session, "The river watched", 4, &gi) : NULL;
        CHECKF(text != NULL && (gi.generated_tokens >= 1 || gi.stop_reason == LAMINA_STOP_REASON_END_OF_GENERATION),
               "generated %u tokens (stop reason %d)", gi.generated_tokens, (int)gi.stop_reason);
        free(text);
        lamina_session_free(session);
        lamina_model_free(model);
    }

    /* Bad input. */
    char *out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_init_model(NULL, tokenizer_dir, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "spec");
    lamina_model_spec bad = spec;
    bad.n_heads = 3;
    EXPECT_ERROR(lamina_init_model(&bad, tokenizer_dir, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "n_heads");
    bad = spec;
    bad.vocab_size = 0;
    EXPECT_ERROR(lamina_init_model(&bad, tokenizer_dir, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "vocab_size");
    bad.vocab_size = 300;
    EXPECT_ERROR(lamina_init_model(&bad, tokenizer_dir, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "vocab_size");
    bad = spec;
    bad.struct_size = 0;
    EXPECT_ERROR(lamina_init_model(&bad, tokenizer_dir, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "struct_size");
    lamina_init_params bad_ip = ip;
    bad_ip.std = -1.0f;
    EXPECT_ERROR(lamina_init_model(&spec, tokenizer_dir, hf, NULL, &bad_ip, NULL, NULL, &out),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "std");
    EXPECT_ERROR(lamina_init_model(&spec, "tests/c/build/no-such-tokenizer", hf, NULL, &ip, NULL, NULL, &out),
                 LAMINA_STATUS_ERROR_IO, "no-such-tokenizer");
    EXPECT_ERROR(lamina_init_model(&spec, NULL, hf, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "tokenizer_dir");
    EXPECT_ERROR(lamina_init_model(&spec, tokenizer_dir, NULL, NULL, &ip, NULL, NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "hf_dir");
    EXPECT_ERROR(lamina_init_model(&spec, tokenizer_dir, hf, "\xff.gguf", &ip, NULL, NULL, &out),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "gguf_path");
    EXPECT_ERROR(lamina_init_model(&spec, tokenizer_dir, hf, NULL, &ip, NULL, NULL, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "out_report_json");
    CHECK(out == SENTINEL_STRING);
}

/* Run one test function; with LAMINA_TEST_VERBOSE set, show how long it took. */
#define TIMED(call)                                                   \
    do {                                                              \
        double t_ = now_s();                                          \
        call;                                                         \
        if (getenv("LAMINA_TEST_VERBOSE") != NULL) {                  \
            fprintf(stderr, "  %-40s %6.2f s\n", #call, now_s() - t_); \
        }                                                             \
    } while (0)

/* Pretraining ------------------------------------------------------------------------------ */

typedef struct {
    int steps;              /* progress calls */
    int cancel_at;          /* return false at this step (0 = never) */
    int bad;                /* calls with a non-finite loss, a wrong struct_size or steps out of order */
    int evaluated;          /* calls with a finite validation loss */
    uint64_t last_step;
    uint64_t total_steps;
    volatile int started;   /* set at the first step, for the cancelling thread */
} pt_run;

static bool pt_on_step(const lamina_pretrain_progress *p, void *user_data) {
    pt_run *r = (pt_run *)user_data;
    r->steps++;
    if (p == NULL || p->struct_size != sizeof *p || !isfinite(p->loss) || p->loss <= 0.0 || p->step != r->last_step + 1 ||
        !isfinite(p->learning_rate) || p->tokens_seen == 0 || p->tokens_per_second <= 0.0) {
        r->bad++;
    }
    if (p != NULL) {
        if (isfinite(p->val_loss)) {
            r->evaluated++;
            if (!(p->val_perplexity > 1.0 && fabs(log(p->val_perplexity) - p->val_loss) < 1e-6)) {
                r->bad++;
            }
        } else if (!isnan(p->val_perplexity)) {
            r->bad++;
        }
        r->last_step = p->step;
        r->total_steps = p->total_steps;
    }
    r->started = 1;
    return r->cancel_at == 0 || (int)p->step < r->cancel_at;
}

/* Params of a tiny run: the `1m` preset at the tokenizer's 320 tokens, sequences of 32 tokens,
 * 2 per step, one engine thread, a budget of `steps` steps, into dir/`out`. `spec` and
 * `out_dir` must outlive the params. */
static lamina_pretrain_params pt_params(const char *corpus_dir, const char *tokenizer_dir, const lamina_model_spec *spec,
                                        char *out_dir, size_t n, const char *dir, const char *out, uint64_t steps) {
    lamina_pretrain_params p;
    memset(&p, 0, sizeof p);
    lamina_status st = lamina_pretrain_params_init(&p, sizeof p);
    if (st != LAMINA_STATUS_OK) {
        record(0, __LINE__, "lamina_pretrain_params_init failed");
    }
    pt_path(out_dir, n, dir, out);
    p.corpus_dir = corpus_dir;
    p.output_dir = out_dir;
    p.spec = spec;
    p.tokenizer_dir = tokenizer_dir;
    p.seq_len = 32;
    p.batch_size = 2;
    p.warmup_steps = 1;
    p.eval_every = 2;
    p.eval_sequences = 4;
    p.budget_steps = steps;
    p.n_threads = 1;
    return p;
}

/* The report of a pretrainer that ran (NULL, recorded as a failure, if none). */
static char *pt_report(lamina_pretrainer *t) {
    char *report = NULL;
    EXPECT_OK(lamina_pretrainer_report_json(t, &report));
    CHECK(report != NULL);
    return report;
}

/* A tiny run to the end of its budget: the loss is finite, the report filled, the trained GGUF
 * loads and generates; a second run and a report before any are refused. */
static void test_pretrain_run(const char *dir, const char *corpus_dir, const char *tokenizer_dir,
                              const lamina_model_spec *spec, char *trained, size_t trained_n) {
    char out[512];
    lamina_pretrain_params p = pt_params(corpus_dir, tokenizer_dir, spec, out, sizeof out, dir, "pt-run", 4);
    lamina_pretrainer *t = NULL;
    EXPECT_OK(lamina_pretrainer_create(&p, &t));
    if (t == NULL) {
        return;
    }
    char *report = SENTINEL_STRING;
    EXPECT_ERROR(lamina_pretrainer_report_json(t, &report), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "not run yet");
    CHECK(report == SENTINEL_STRING);
    pt_run r;
    memset(&r, 0, sizeof r);
    EXPECT_OK(lamina_pretrainer_run(t, pt_on_step, &r));
    CHECKF(r.steps == 4 && r.bad == 0 && r.total_steps == 4, "%d steps (%d bad), total %llu", r.steps, r.bad,
           (unsigned long long)r.total_steps);
    CHECKF(r.evaluated == 2, "validations at steps 2 and 4: %d", r.evaluated);
    report = pt_report(t);
    if (report != NULL) {
        CHECKF(strstr(report, "\"summary\":{\"end\":\"finished\",\"cancelled\":false,\"steps\":4,") != NULL, "report: %.400s", report);
        CHECKF(pt_number(report, "tokens_seen") == 4 * 2 * 32, "report: %.400s", report);
        const char *loss = strstr(report, "\"final_loss\":");
        double final_loss = loss != NULL ? strtod(loss + strlen("\"final_loss\":"), NULL) : -1.0;
        CHECKF(final_loss > 0.0 && final_loss < 10.0, "final loss %g", final_loss);
        const char *before = strstr(report, "\"val_perplexity_before\":");
        const char *after = strstr(report, "\"val_perplexity_after\":");
        double ppl0 = before != NULL ? strtod(before + strlen("\"val_perplexity_before\":"), NULL) : -1.0;
        double ppl1 = after != NULL ? strtod(after + strlen("\"val_perplexity_after\":"), NULL) : -1.0;
        /* The untrained model guesses about uniformly over 320 tokens; 4 steps already help. */
        CHECKF(ppl0 > 100.0 && ppl1 > 1.0 && ppl1 < ppl0, "validation perplexity %g -> %g", ppl0, ppl1);
        CHECKF(strstr(report, "\"test_perplexity\":null") == NULL && strstr(report, "\"test_accuracy\":") != NULL,
               "report: %.600s", report);
        CHECK(strstr(report, "pt-run/model.gguf") != NULL && strstr(report, "\"wall_seconds\":") != NULL);
        lamina_string_free(report);
    }
    pt_path(trained, trained_n, out, "model.gguf");
    char file[512];
    pt_path(file, sizeof file, out, "log.json");
    CHECK(pt_exists(trained) && pt_exists(file));

    EXPECT_ERROR(lamina_pretrainer_run(t, NULL, NULL), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "already ran");
    lamina_pretrainer_free(t);

    /* The trained model loads in llama.cpp and generates. */
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(trained, NULL, &model));
    if (model != NULL) {
        lamina_session *session = NULL;
        lamina_session_params sp = session_params(64);
        EXPECT_OK(lamina_session_new(model, &sp, &session));
        lamina_generation_info gi;
        memset(&gi, 0, sizeof gi);
        gi.struct_size = sizeof gi;
        char *text = session != NULL ? generate_text(session, "The river", 4, &gi) : NULL;
        CHECKF(text != NULL && (gi.generated_tokens >= 1 || gi.stop_reason == LAMINA_STOP_REASON_END_OF_GENERATION),
               "generated %u tokens", gi.generated_tokens);
        free(text);
        lamina_session_free(session);
        lamina_model_free(model);
    }
}

typedef struct {
    lamina_pretrainer *trainer;
    pt_run *run;
    lamina_status busy;
    lamina_status cancelled;
} pt_canceller;

/* Waits for the run's first step, checks that the busy pretrainer refuses another call, then
 * cancels it. */
static void *pt_cancel_thread(void *arg) {
    pt_canceller *c = (pt_canceller *)arg;
    struct timespec delay = {0, 2000000};
    for (int i = 0; i < 10000 && !c->run->started; i++) {
        nanosleep(&delay, NULL);
    }
    char *report = NULL;
    c->busy = lamina_pretrainer_report_json(c->trainer, &report);
    lamina_string_free(report);
    c->cancelled = lamina_pretrainer_cancel(c->trainer);
    return NULL;
}

/* Cancelled from the progress callback, from another thread during the run, and before it. */
static void test_pretrain_cancel(const char *dir, const char *corpus_dir, const char *tokenizer_dir,
                                 const lamina_model_spec *spec) {
    char out[512], file[512];
    lamina_pretrain_params p = pt_params(corpus_dir, tokenizer_dir, spec, out, sizeof out, dir, "pt-cancel", 50);
    lamina_pretrainer *t = NULL;
    EXPECT_OK(lamina_pretrainer_create(&p, &t));
    pt_run r;
    memset(&r, 0, sizeof r);
    r.cancel_at = 2;
    EXPECT_OK(lamina_pretrainer_run(t, pt_on_step, &r));
    CHECKF(r.steps == 2 && r.bad == 0, "%d steps, %d bad", r.steps, r.bad);
    char *report = t != NULL ? pt_report(t) : NULL;
    CHECKF(report != NULL && strstr(report, "\"end\":\"cancelled\",\"cancelled\":true,\"steps\":2,") != NULL,
           "report: %.300s", report != NULL ? report : "(NULL)");
    CHECK(report != NULL && strstr(report, "\"gguf\":null") != NULL);
    lamina_string_free(report);
    pt_path(file, sizeof file, out, "model.gguf");
    CHECK(!pt_exists(file));
    lamina_pretrainer_free(t);

    /* From a second thread, while the run is in progress; the budget is far off. */
    p = pt_params(corpus_dir, tokenizer_dir, spec, out, sizeof out, dir, "pt-thread", 100000);
    p.budget_seconds = 60.0; /* only if the cancel were lost */
    t = NULL;
    EXPECT_OK(lamina_pretrainer_create(&p, &t));
    memset(&r, 0, sizeof r);
    pt_canceller c = {t, &r, LAMINA_STATUS_OK, LAMINA_STATUS_ERROR_PANIC};
    pthread_t thread;
    double t0 = now_s();
    CHECK(pthread_create(&thread, NULL, pt_cancel_thread, &c) == 0);
    EXPECT_OK(lamina_pretrainer_run(t, pt_on_step, &r));
    pthread_join(thread, NULL);
    CHECKF(c.busy == LAMINA_STATUS_ERROR_BUSY, "report during the run: %s", lamina_status_name(c.busy));
    CHECK(c.cancelled == LAMINA_STATUS_OK);
    CHECKF(r.steps >= 1 && r.steps < 1000 && r.bad == 0 && now_s() - t0 < 30.0, "%d steps in %.1f s", r.steps, now_s() - t0);
    report = t != NULL ? pt_report(t) : NULL;
    CHECK(report != NULL && strstr(report, "\"cancelled\":true") != NULL);
    lamina_string_free(report);
    lamina_pretrainer_free(t);

    /* A cancel before the run stops it after its first step. */
    p = pt_params(corpus_dir, tokenizer_dir, spec, out, sizeof out, dir, "pt-early", 50);
    t = NULL;
    EXPECT_OK(lamina_pretrainer_create(&p, &t));
    EXPECT_OK(lamina_pretrainer_cancel(t));
    EXPECT_OK(lamina_pretrainer_run(t, NULL, NULL));
    report = t != NULL ? pt_report(t) : NULL;
    CHECKF(report != NULL && strstr(report, "\"cancelled\":true,\"steps\":1,") != NULL, "report: %.300s",
           report != NULL ? report : "(NULL)");
    lamina_string_free(report);
    lamina_pretrainer_free(t);
    EXPECT_ERROR(lamina_pretrainer_cancel(t), LAMINA_STATUS_ERROR_INVALID_HANDLE, "trainer");
    EXPECT_ERROR(lamina_pretrainer_run(t, NULL, NULL), LAMINA_STATUS_ERROR_INVALID_HANDLE, "trainer");
    EXPECT_ERROR(lamina_pretrainer_cancel(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "trainer");
    lamina_pretrainer_free(NULL);
}

/* Continued pretraining: the trained GGUF as the starting point, with its own tokenizer. */
static void test_pretrain_continue(const char *dir, const char *corpus_dir, const char *trained) {
    char out[512];
    lamina_pretrain_params p = pt_params(corpus_dir, NULL, NULL, out, sizeof out, dir, "pt-continue", 2);
    p.init_gguf = trained;
    lamina_pretrainer *t = NULL;
    EXPECT_OK(lamina_pretrainer_create(&p, &t));
    pt_run r;
    memset(&r, 0, sizeof r);
    EXPECT_OK(lamina_pretrainer_run(t, pt_on_step, &r));
    CHECKF(r.steps == 2 && r.bad == 0, "%d steps, %d bad", r.steps, r.bad);
    char *report = t != NULL ? pt_report(t) : NULL;
    CHECKF(report != NULL && strstr(report, "\"end\":\"finished\"") != NULL && strstr(report, "\"init\":null") != NULL,
           "report: %.300s", report != NULL ? report : "(NULL)");
    lamina_string_free(report);
    lamina_pretrainer_free(t);
}

/* Bad input: the specific status and a message naming the problem; *out_trainer untouched. */
static void test_pretrain_errors(const char *dir, const char *corpus_dir, const char *tokenizer_dir,
                                 const lamina_model_spec *spec) {
    char out[512];
    const lamina_pretrain_params good = pt_params(corpus_dir, tokenizer_dir, spec, out, sizeof out, dir, "pt-bad", 4);
    lamina_pretrainer *sentinel = (lamina_pretrainer *)(void *)&g_sentinel_storage[3];
    lamina_pretrainer *t = sentinel;
    EXPECT_ERROR(lamina_pretrainer_create(NULL, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "params");
    EXPECT_ERROR(lamina_pretrainer_create(&good, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_trainer");
    lamina_pretrain_params p = good;
    p.budget_steps = 0;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "budget");
    p.budget_seconds = -1.0;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "seconds");
    lamina_model_spec bad_spec = *spec;
    bad_spec.n_heads = 3;
    p = good;
    p.spec = &bad_spec;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_heads");
    bad_spec = *spec;
    bad_spec.vocab_size = 300; /* the tokenizer has 320 */
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "vocab_size");
    bad_spec = *spec;
    bad_spec.struct_size = 0;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    p = good;
    p.seq_len = 1000;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "context length");
    p = good;
    p.dropout = 1.5f;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "dropout");
    p = good;
    p.schedule = 9;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "schedule");
    p = good;
    p.precision = "f16";
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "precision");
    p = good;
    p.struct_size = 0;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    p = good;
    p.corpus_dir = NULL;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "corpus_dir");
    p = good;
    p.output_dir = NULL;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "output_dir");
    p = good;
    p.spec = NULL;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "init_gguf");
    p = good;
    p.init_gguf = "tests/c/build/no-such-model.gguf";
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "both");
    p.spec = NULL;
    p.tokenizer_dir = NULL;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, "no-such-model.gguf");
    p = good;
    p.tokenizer_dir = NULL;
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "tokenizer_dir");
    p.tokenizer_dir = "tests/c/build/no-such-tokenizer";
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_IO, "no-such-tokenizer");
    p = good;
    p.corpus_dir = "tests/c/build/no-such-corpus";
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_DATA, "no-such-corpus");
    p = good;
    p.hf_dir = "\xff";
    EXPECT_ERROR(lamina_pretrainer_create(&p, &t), LAMINA_STATUS_ERROR_INVALID_UTF8, "hf_dir");
    CHECK(t == sentinel);
    EXPECT_ERROR(lamina_pretrain_params_init(NULL, sizeof p), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "lamina_pretrain_params");
    EXPECT_ERROR(lamina_pretrain_params_init(&p, 3), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    char *report = SENTINEL_STRING;
    EXPECT_ERROR(lamina_pretrainer_report_json(NULL, &report), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "trainer");
    CHECK(report == SENTINEL_STRING);
}

/* The defaults of lamina_pretrain_params and the whole pretraining API on the corpus and the
 * tokenizer made above. */
static void test_pretrain(const char *dir, const char *corpus_dir, const char *tokenizer_dir) {
    lamina_pretrain_params d;
    memset(&d, 0xAB, sizeof d);
    EXPECT_OK(lamina_pretrain_params_init(&d, sizeof d));
    CHECK(d.struct_size == sizeof d && d.corpus_dir == NULL && d.output_dir == NULL && d.spec == NULL);
    CHECK(d.tokenizer_dir == NULL && d.init_gguf == NULL && d.gguf_path == NULL && d.hf_dir == NULL);
    CHECK(d.seq_len == 256 && d.batch_size == 8 && d.grad_accum == 1 && d.warmup_steps == 100 && d.eval_every == 100);
    CHECK(d.budget_steps == 0 && d.budget_tokens == 0 && d.budget_seconds == 0.0 && d.precision == NULL);
    CHECK(d.schedule == LAMINA_TRAIN_SCHEDULE_COSINE && d.init_std > 0.0199f && d.init_std < 0.0201f && !d.resume);

    lamina_model_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.struct_size = sizeof spec;
    EXPECT_OK(lamina_model_spec_preset("1m", 320, &spec));
    char trained[512];
    trained[0] = '\0';
    TIMED(test_pretrain_run(dir, corpus_dir, tokenizer_dir, &spec, trained, sizeof trained));
    TIMED(test_pretrain_cancel(dir, corpus_dir, tokenizer_dir, &spec));
    if (trained[0] != '\0') {
        TIMED(test_pretrain_continue(dir, corpus_dir, trained));
    }
    TIMED(test_pretrain_errors(dir, corpus_dir, tokenizer_dir, &spec));
}

/* Corpus -> tokenizer -> a new model, through the C ABI, in a temporary directory. */
static void test_training_from_scratch(void) {
    char dir[] = "/tmp/lamina-test-scratch-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        record(0, __LINE__, "mkdtemp");
        return;
    }
    char corpus_dir[512], tokenizer_dir[512];
    pt_path(corpus_dir, sizeof corpus_dir, dir, "corpus");
    pt_path(tokenizer_dir, sizeof tokenizer_dir, dir, "tokenizer");
    test_corpus_build(dir, corpus_dir);
    test_tokenizer_train(corpus_dir, tokenizer_dir);
    test_init_model(dir, tokenizer_dir);
    test_pretrain(dir, corpus_dir, tokenizer_dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_abi: could not remove %s\n", dir);
    }
}


int main(void) {
    double t0 = now_s();
    test_version();
    test_free_null();

    char *model_path = NULL;
    test_default_path(&model_path);
    struct stat st;
    if (model_path == NULL || stat(model_path, &st) != 0) {
        fprintf(stderr, "test_abi: the default model (%s) is missing; run scripts/fetch-model.sh\n",
                model_path != NULL ? model_path : "?");
        record(0, __LINE__, "default model present");
        return check_summary();
    }

    TIMED(test_model_load_errors(model_path));
    lamina_model *model = NULL;
    TIMED(test_model_load_and_logging(model_path, &model));
    if (model == NULL) {
        return check_summary();
    }

    lamina_session *session = NULL;
    lamina_session_params p = session_params(512);
    EXPECT_OK(lamina_session_new(model, &p, &session));
    if (session == NULL) {
        return check_summary();
    }

    TIMED(test_session_errors(model));
    TIMED(test_generate_errors(session));
    TIMED(test_prompt_too_long(model));
    TIMED(test_params_init(model));
    TIMED(test_versioned_structs(model));
    TIMED(test_callbacks_and_stops(session));
    TIMED(test_cancel(model));
    TIMED(test_generate_batch(model));
    TIMED(test_concurrent_sessions(model));
    TIMED(test_chat_and_tasks(session));
    TIMED(test_structured_output(session));
    TIMED(test_embeddings(model));
    TIMED(test_saved_sessions(model));
    TIMED(test_session_outlives_model(model_path));
    TIMED(test_training_from_scratch());

    /* After all of the above, the same model and session still produce "Paris". */
    EXPECT_OK(lamina_session_reset(session));
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    char *text = generate_text(session, PROMPT, 8, &info);
    CHECKF(text != NULL && strstr(text, "Paris") != NULL, "final generation: \"%s\"", text != NULL ? text : "(NULL)");
    CHECK(info.reused_tokens == 0);
    free(text);

    /* Frees in any order; a freed model is not needed by anything any more. */
    lamina_model_free(model);
    lamina_session_free(session);
    lamina_string_free(model_path);

    fprintf(stderr, "test_abi: %.1f s\n", now_s() - t0);
    return check_summary();
}

/*
 * test_backends: C-level tests of lamina's backend ABI (lamina_backends_json,
 * lamina_backends_load, LAMINA_STATUS_ERROR_BACKEND) and of n_gpu_layers on a machine without
 * a GPU, without a test framework.
 *
 * Works against both kinds of build, told apart by the "dynamic" field of
 * lamina_backends_json: with backends compiled in (the default), lamina_backends_load always
 * fails with LAMINA_STATUS_ERROR_BACKEND ("compiled in"); with dynamic backends, a missing
 * path is an invalid argument, a broken library file (a libggml-bogus.so of garbage bytes
 * written into a temporary directory) is a backend error naming the file, and that directory
 * loads fine with the file listed under "skipped". Then, in both builds, the default model
 * loads with n_gpu_layers = 99, reports "gpu_layers":0 when no GPU device is listed, and
 * generates greedily.
 *
 * Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL overrides the path).
 * Build: cc -std=c99 -I include tests/c/test_backends.c -L target/release -llamina_ffi
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"

static char g_dir[] = "/tmp/lamina-c-backends-XXXXXX";
static char g_sentinel_storage[1];
#define SENTINEL_STRING ((char *)&g_sentinel_storage[0])

/* The backends JSON (caller frees with lamina_string_free), or NULL (reported). */
static char *backends_json(void) {
    char *json = NULL;
    lamina_status st = lamina_backends_json(&json);
    expect_ok(__FILE__, __LINE__, "lamina_backends_json(&json)", st);
    return st == LAMINA_STATUS_OK ? json : NULL;
}

/* Whether `json` lists a device of kind `kind` ("cpu", "gpu", ...). */
static int has_device_kind(const char *json, const char *kind) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"kind\":\"%s\"", kind);
    const char *devices = json != NULL ? strstr(json, "\"devices\":[") : NULL;
    return devices != NULL && strstr(devices, needle) != NULL;
}

static void test_status_name(void) {
    CHECK(LAMINA_STATUS_ERROR_BACKEND == 17);
    CHECKF(strcmp(lamina_status_name(17), "LAMINA_STATUS_ERROR_BACKEND") == 0, "lamina_status_name(17) = \"%s\"",
           lamina_status_name(17));
    CHECK(strcmp(lamina_status_name(LAMINA_STATUS_ERROR_BACKEND), "LAMINA_STATUS_ERROR_BACKEND") == 0);
}

/* The report's shape; returns whether this build loads its backends at run time (-1 if the
 * JSON does not say). */
static int test_backends_json(void) {
    EXPECT_ERROR(lamina_backends_json(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_json");
    char *json = backends_json();
    if (json == NULL) {
        return -1;
    }
    printf("backends: %s\n", json);
    CHECKF(json[0] == '{', "not a JSON object: %s", json);
    const char *keys[] = {"\"searched\":[", "\"loaded\":[", "\"skipped\":[", "\"devices\":["};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        CHECKF(strstr(json, keys[i]) != NULL, "no %s in %s", keys[i], json);
    }
    CHECKF(has_device_kind(json, "cpu"), "no CPU device in %s", json);
    CHECKF(strstr(json, "\"name\":") != NULL && strstr(json, "\"memory_total\":") != NULL &&
               strstr(json, "\"memory_free\":") != NULL && strstr(json, "\"backend\":") != NULL,
           "device fields missing in %s", json);
    int dynamic = -1;
    if (strstr(json, "\"dynamic\":true") != NULL) {
        dynamic = 1;
    } else if (strstr(json, "\"dynamic\":false") != NULL) {
        dynamic = 0;
        /* Compiled-in backends have no library path. */
        CHECKF(strstr(json, "\"path\":null") != NULL, "a compiled-in backend with a path: %s", json);
    }
    CHECKF(dynamic != -1, "no boolean \"dynamic\" in %s", json);
    lamina_string_free(json);
    return dynamic;
}

static void test_load_null_arguments(void) {
    char *out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_backends_load(NULL, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");
    CHECK(out == SENTINEL_STRING);
    EXPECT_ERROR(lamina_backends_load(NULL, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");
}

/* Backends compiled in: every load fails, whatever the path, before looking at it. */
static void test_load_static(const char *missing) {
    char *out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_backends_load(g_dir, &out), LAMINA_STATUS_ERROR_BACKEND, "compiled in");
    CHECK(out == SENTINEL_STRING);
    CHECKF(strstr(lamina_last_error_message(), g_dir) != NULL, "message does not name %s: \"%s\"", g_dir,
           lamina_last_error_message());
    EXPECT_ERROR(lamina_backends_load(g_dir, NULL), LAMINA_STATUS_ERROR_BACKEND, "compiled in");
    EXPECT_ERROR(lamina_backends_load(missing, &out), LAMINA_STATUS_ERROR_BACKEND, "compiled in");
    CHECK(out == SENTINEL_STRING);
}

/* Dynamic backends: a missing path, a broken library file, a directory holding it. */
static void test_load_dynamic(const char *missing, const char *bogus) {
    char *out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_backends_load(missing, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, missing);
    CHECK(out == SENTINEL_STRING);

    /* The directory: nothing in it loads, which is not an error; the file is skipped. */
    out = NULL;
    EXPECT_OK(lamina_backends_load(g_dir, &out));
    CHECK(out != NULL && out[0] == '{');
    if (out != NULL) {
        printf("after loading %s: %s\n", g_dir, out);
        const char *skipped = strstr(out, "\"skipped\":[");
        char needle[512];
        snprintf(needle, sizeof needle, "\"path\":\"%s\"", bogus);
        CHECKF(skipped != NULL && strstr(skipped, needle) != NULL, "%s not listed under \"skipped\": %s", bogus,
               out);
        CHECKF(strstr(out, "\"dynamic\":true") != NULL, "\"dynamic\" changed: %s", out);
        lamina_string_free(out);
    }
    EXPECT_OK(lamina_backends_load(g_dir, NULL));

    /* The file itself: an error with the system's reason. */
    out = SENTINEL_STRING;
    EXPECT_ERROR(lamina_backends_load(bogus, &out), LAMINA_STATUS_ERROR_BACKEND, bogus);
    CHECK(out == SENTINEL_STRING);

    /* The CPU backend is still there. */
    char *json = backends_json();
    CHECKF(has_device_kind(json, "cpu"), "no CPU device after the failed loads: %s", json != NULL ? json : "(NULL)");
    lamina_string_free(json);
}

/* The number after `"key":` in `json`, or -1. */
static long json_number(const char *json, const char *key) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = json != NULL ? strstr(json, needle) : NULL;
    if (p == NULL) {
        return -1;
    }
    char *end = NULL;
    long v = strtol(p + strlen(needle), &end, 10);
    return end == p + strlen(needle) ? -1 : v;
}

/* n_gpu_layers = 99 loads; without a GPU device nothing is offloaded; generation works. */
static void test_model_with_gpu_layers(const char *model_path, int has_gpu) {
    lamina_model_params mp;
    EXPECT_OK(lamina_model_params_init(&mp, sizeof mp));
    mp.n_gpu_layers = 99;
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(model_path, &mp, &model));
    if (model == NULL) {
        return;
    }
    char *info = NULL;
    EXPECT_OK(lamina_model_info_json(model, &info));
    long gpu_layers = json_number(info, "gpu_layers");
    if (has_gpu) {
        CHECKF(gpu_layers > 0, "a GPU is listed but \"gpu_layers\" is %ld: %s", gpu_layers,
               info != NULL ? info : "(NULL)");
    } else {
        CHECKF(info != NULL && strstr(info, "\"gpu_layers\":0") != NULL, "no \"gpu_layers\":0 in %s",
               info != NULL ? info : "(NULL)");
    }
    printf("model info: gpu_layers %ld, n_layer %ld\n", gpu_layers, json_number(info, "n_layer"));
    lamina_string_free(info);

    lamina_session_params sp;
    EXPECT_OK(lamina_session_params_init(&sp, sizeof sp));
    CHECK(sp.flash_attention == -1);
    sp.n_ctx = 256;
    sp.n_threads = 1;
    lamina_session *session = NULL;
    /* FlashAttention accepts -1 (auto), 0 (off) and 1 (on), nothing else. */
    sp.flash_attention = 2;
    CHECK(lamina_session_new(model, &sp, &session) == LAMINA_STATUS_ERROR_INVALID_ARGUMENT);
    CHECK(session == NULL);
    CHECK(strstr(lamina_last_error_message(), "flash_attention") != NULL);
    sp.flash_attention = 0;
    EXPECT_OK(lamina_session_new(model, &sp, &session));
    if (session != NULL) {
        lamina_sampling_params s;
        EXPECT_OK(lamina_sampling_params_init(&s, sizeof s));
        s.max_tokens = 8;
        char *text = NULL;
        lamina_generation_info gi;
        memset(&gi, 0, sizeof gi);
        gi.struct_size = sizeof gi;
        EXPECT_OK(lamina_session_generate(session, "The capital of France is", &s, NULL, NULL, &text, &gi));
        CHECKF(text != NULL && strstr(text, "Paris") != NULL, "greedy text: \"%s\"", text != NULL ? text : "(NULL)");
        CHECK(gi.generated_tokens > 0);
        printf("generated: %s\n", text != NULL ? text : "");
        lamina_string_free(text);
        lamina_session_free(session);
    }
    lamina_model_free(model);
}

int main(void) {
    double t0 = now_s();
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        record(0, __LINE__, "temporary directory");
        return check_summary();
    }
    char bogus[sizeof g_dir + 32], missing[sizeof g_dir + 32];
    snprintf(bogus, sizeof bogus, "%s/libggml-bogus.so", g_dir);
    snprintf(missing, sizeof missing, "%s/no-such-dir", g_dir);
    FILE *f = fopen(bogus, "wb");
    if (f != NULL) {
        static const unsigned char garbage[] = {0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 'n', 'o', 't',
                                                ' ',  'a',  'n',  ' ',  'E',  'L',  'F',  0xff, 0x7f, 0x01};
        CHECK(fwrite(garbage, 1, sizeof garbage, f) == sizeof garbage);
        CHECK(fclose(f) == 0);
    } else {
        perror(bogus);
        record(0, __LINE__, "write libggml-bogus.so");
    }

    test_status_name();
    int dynamic = test_backends_json();
    printf("build: %s backends\n", dynamic == 1 ? "dynamic" : dynamic == 0 ? "compiled-in" : "unknown");
    test_load_null_arguments();
    if (dynamic == 1) {
        test_load_dynamic(missing, bogus);
    } else if (dynamic == 0) {
        test_load_static(missing);
    }

    char *json = backends_json();
    int has_gpu = has_device_kind(json, "gpu") || has_device_kind(json, "igpu");
    lamina_string_free(json);

    char *model_path = NULL;
    EXPECT_OK(lamina_default_model_path(&model_path));
    struct stat st;
    if (model_path == NULL || stat(model_path, &st) != 0) {
        fprintf(stderr, "test_backends: the default model (%s) is missing; run scripts/fetch-model.sh\n",
                model_path != NULL ? model_path : "?");
        record(0, __LINE__, "default model present");
    } else {
        test_model_with_gpu_layers(model_path, has_gpu);
    }
    lamina_string_free(model_path);

    remove(bogus);
    rmdir(g_dir);
    fprintf(stderr, "test_backends: %.1f s\n", now_s() - t0);
    return check_summary();
}

/*
 * test_adapters: C-level tests of lamina's LoRA adapter ABI (lamina_model_load_adapter,
 * lamina_session_set_adapters, lamina_adapter_info, lamina_session_n_adapters,
 * lamina_adapter_free), without a test framework.
 *
 * The adapters are written by this program: write_adapter() (gguf_adapter.h) lays out a
 * minimal GGUF LoRA adapter by hand, with seeded pseudo-random weights on attn_q and ffn_up
 * of every layer of the default model. The same writer makes the malformed files (alpha
 * stored as a u32, a lora_a without its lora_b). The numerical
 * correctness of llama.cpp's application is tested in the runtime (runtime/tests/integration/adapters.rs);
 * here: scale 0 = the base model, an adapter changes the greedy text, a set of two applies,
 * the empty set restores the base, and every bad input is a specific status with a message.
 *
 * Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL must be the same model).
 * Build: cc -std=c99 -I include tests/c/test_adapters.c -L target/release -llamina_ffi
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"
#include "gguf_adapter.h"

static char g_dir[] = "/tmp/lamina-c-adapters-XXXXXX";

/* ---------------------------------------------------------------------------------------- */

static const char *PROMPT = "The quick brown fox jumps over the lazy dog. Paris is the capital of";

/* Greedy text of PROMPT after a reset (caller frees), or NULL. */
static char *greedy(lamina_session *s) {
    lamina_sampling_params sp;
    lamina_sampling_params_init(&sp, sizeof sp);
    sp.max_tokens = 16;
    char *text = NULL;
    if (lamina_session_reset(s) != LAMINA_STATUS_OK ||
        lamina_session_generate(s, PROMPT, &sp, NULL, NULL, &text, NULL) != LAMINA_STATUS_OK) {
        return NULL;
    }
    return text;
}

static char *path_in_dir(const char *name) {
    char *p = malloc(strlen(g_dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", g_dir, name);
    return p;
}

int main(void) {
    double t0 = now_s();
    char *model_path = NULL;
    EXPECT_OK(lamina_default_model_path(&model_path));
    lamina_model *model = NULL, *other = NULL;
    lamina_session *s = NULL;
    lamina_session_params p;
    lamina_session_params_init(&p, sizeof p);
    p.n_ctx = 256;
    p.n_threads = 1;
    EXPECT_OK(lamina_model_load(model_path, NULL, &model));
    EXPECT_OK(lamina_session_new(model, &p, &s));
    if (model == NULL || s == NULL || mkdtemp(g_dir) == NULL) {
        fprintf(stderr, "setup failed: %s\n", lamina_last_error_message());
        return check_summary();
    }
    char *a1_path = path_in_dir("a1.gguf"), *a2_path = path_in_dir("a2.gguf");
    char *u32_path = path_in_dir("alpha-u32.gguf"), *no_b_path = path_in_dir("no-b.gguf");
    char *text_path = path_in_dir("text.gguf"), *missing_path = path_in_dir("missing.gguf");
    CHECK(write_adapter(a1_path, N_LAYER, ALPHA_F32, 0, 1) == 0);
    CHECK(write_adapter(a2_path, N_LAYER, ALPHA_F32, 0, 2) == 0);
    CHECK(write_adapter(u32_path, 1, ALPHA_U32, 0, 3) == 0);
    CHECK(write_adapter(no_b_path, 1, ALPHA_F32, 1, 4) == 0);
    FILE *f = fopen(text_path, "w");
    if (f != NULL) {
        fputs("this is not a gguf file", f);
        fclose(f);
    }

    /* Loading and info. */
    lamina_adapter *a1 = NULL, *a2 = NULL;
    EXPECT_OK(lamina_model_load_adapter(model, a1_path, &a1));
    EXPECT_OK(lamina_model_load_adapter(model, a2_path, &a2));
    uint32_t rank = 0;
    float alpha = 0.0f;
    EXPECT_OK(lamina_adapter_info(a1, &rank, &alpha));
    CHECKF(rank == RANK && alpha == 8.0f, "rank %u alpha %g", rank, (double)alpha);

    /* Scale 0 is the base model; scale 1 changes the greedy text; the empty set restores it. */
    char *base = greedy(s);
    const lamina_adapter *one[1] = {a1};
    float zero[1] = {0.0f}, unit[1] = {1.0f};
    EXPECT_OK(lamina_session_set_adapters(s, one, zero, 1));
    char *scaled0 = greedy(s);
    CHECKF(base != NULL && scaled0 != NULL && strcmp(base, scaled0) == 0, "scale 0: \"%s\" vs base \"%s\"",
           scaled0 ? scaled0 : "(null)", base ? base : "(null)");
    EXPECT_OK(lamina_session_set_adapters(s, one, unit, 1));
    char *adapted = greedy(s);
    CHECKF(base != NULL && adapted != NULL && strcmp(base, adapted) != 0, "adapter did not change \"%s\"",
           base ? base : "(null)");
    size_t n_set = 99;
    EXPECT_OK(lamina_session_n_adapters(s, &n_set));
    CHECK(n_set == 1);
    const lamina_adapter *two[2] = {a1, a2};
    float scales2[2] = {0.7f, -0.5f};
    EXPECT_OK(lamina_session_set_adapters(s, two, scales2, 2));
    char *merged = greedy(s);
    CHECK(merged != NULL);
    EXPECT_OK(lamina_session_n_adapters(s, &n_set));
    CHECK(n_set == 2);
    EXPECT_OK(lamina_session_set_adapters(s, NULL, NULL, 0));
    char *restored = greedy(s);
    CHECKF(base != NULL && restored != NULL && strcmp(base, restored) == 0, "empty set: \"%s\"",
           restored ? restored : "(null)");
    printf("base:    %s\nadapted: %s\nmerged:  %s\n", base ? base : "", adapted ? adapted : "",
           merged ? merged : "");

    /* Bad files: a specific status, a message naming the problem, the out-parameter untouched. */
    lamina_adapter *bad = (lamina_adapter *)(uintptr_t)0x1;
    EXPECT_ERROR(lamina_model_load_adapter(model, missing_path, &bad), LAMINA_STATUS_ERROR_IO, "missing.gguf");
    EXPECT_ERROR(lamina_model_load_adapter(model, text_path, &bad), LAMINA_STATUS_ERROR_DATA, "not a GGUF");
    EXPECT_ERROR(lamina_model_load_adapter(model, model_path, &bad), LAMINA_STATUS_ERROR_DATA, "not a LoRA adapter");
    EXPECT_ERROR(lamina_model_load_adapter(model, u32_path, &bad), LAMINA_STATUS_ERROR_DATA, "adapter.lora.alpha");
    EXPECT_ERROR(lamina_model_load_adapter(model, no_b_path, &bad), LAMINA_STATUS_ERROR_DATA, "lora_b");
    EXPECT_ERROR(lamina_model_load_adapter(model, g_dir, &bad), LAMINA_STATUS_ERROR_DATA, "adapter_config.json");
    CHECK(bad == (lamina_adapter *)(uintptr_t)0x1);
    EXPECT_ERROR(lamina_model_load_adapter(model, NULL, &bad), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");
    EXPECT_ERROR(lamina_model_load_adapter(model, a1_path, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_adapter");

    /* Bad sets: NaN scale, another model's adapter, NULL arrays, a freed handle. */
    float nan_scale[1] = {(float)NAN};
    EXPECT_ERROR(lamina_session_set_adapters(s, one, nan_scale, 1), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "NaN");
    lamina_adapter *foreign = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &other));
    EXPECT_OK(lamina_model_load_adapter(other, a1_path, &foreign));
    const lamina_adapter *foreign_set[1] = {foreign};
    EXPECT_ERROR(lamina_session_set_adapters(s, foreign_set, unit, 1), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "another model");
    EXPECT_ERROR(lamina_session_set_adapters(s, NULL, unit, 1), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "adapters");
    EXPECT_ERROR(lamina_session_set_adapters(s, one, NULL, 1), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "scales");
    lamina_adapter_free(a2);
    const lamina_adapter *freed[1] = {a2};
    EXPECT_ERROR(lamina_session_set_adapters(s, freed, unit, 1), LAMINA_STATUS_ERROR_INVALID_HANDLE, "lamina_adapter");
    lamina_adapter_free(NULL);

    /* The session still works, still on the base model. */
    char *after = greedy(s);
    CHECKF(base != NULL && after != NULL && strcmp(base, after) == 0, "after errors: \"%s\"", after ? after : "(null)");

    /* Freeing the adapter while a session applies it is fine: the session keeps applying it. */
    EXPECT_OK(lamina_session_set_adapters(s, one, unit, 1));
    lamina_adapter_free(a1);
    char *kept = greedy(s);
    CHECKF(adapted != NULL && kept != NULL && strcmp(adapted, kept) == 0, "after free: \"%s\"", kept ? kept : "(null)");

    lamina_adapter_free(foreign);
    lamina_session_free(s);
    lamina_model_free(model);
    lamina_model_free(other);
    lamina_string_free(base);
    lamina_string_free(scaled0);
    lamina_string_free(adapted);
    lamina_string_free(merged);
    lamina_string_free(restored);
    lamina_string_free(after);
    lamina_string_free(kept);
    lamina_string_free(model_path);
    const char *files[] = {a1_path, a2_path, u32_path, no_b_path, text_path};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        remove(files[i]);
        free((void *)files[i]);
    }
    free(missing_path);
    rmdir(g_dir);
    fprintf(stderr, "test_adapters: %.1f s\n", now_s() - t0);
    return check_summary();
}

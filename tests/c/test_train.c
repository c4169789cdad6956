/*
 * test_train: C-level tests of lamina's LoRA training ABI (lamina_train_params_init,
 * lamina_trainer_create/_resume/_run/_step/_evaluate/_steps/_cancel/_save_adapter/
 * _save_model/_save_checkpoint/_free), without a test framework.
 *
 * Everything runs on a tiny budget (rank 2 on q and v, two sequences per step, a handful of
 * steps) on tests/data/made_up_facts.jsonl with the default model: the point is the contract,
 * not what the adapter learns (runtime/tests/integration/lora_learns.rs tests that). Covered: the
 * defaults; every bad input is a specific status with a message (NULL pointers, bad params
 * fields, a missing model or data file, a bad record named by its line); the progress
 * callback's fields; stopping by returning false, by lamina_trainer_cancel from inside the
 * callback and from another thread; BUSY for other calls during a run; checkpoint and resume;
 * saving GGUF and PEFT adapters, which lamina_model_load_adapter then loads; a full fine-tune
 * (params.full) saved as a model that lamina_model_load loads; handle checks.
 *
 * Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL must be the same model).
 * Build: cc -std=c99 -pthread -I include tests/c/test_train.c -L target/release -llamina_ffi -lm
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"

#define DATA "tests/data/made_up_facts.jsonl"

static char g_dir[] = "/tmp/lamina-c-train-XXXXXX";
static char *g_model = NULL;

static void tiny_params(lamina_train_params *p, uint32_t steps) {
    EXPECT_OK(lamina_train_params_init(p, sizeof *p));
    p->rank = 2;
    p->alpha = 4.0f;
    p->targets = "q,v";
    p->batch_size = 2;
    p->steps = steps;
    p->max_len = 256;
    p->val_fraction = 0.1f;
    p->learning_rate = 3e-3f;
    p->n_threads = 0;
}

static void path_in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static uint64_t steps_done(lamina_trainer *t) {
    uint64_t step = 0;
    EXPECT_OK(lamina_trainer_steps(t, &step, NULL));
    return step;
}

/* ---------------------------------------------------------------------------------------- */

static void test_defaults(void) {
    lamina_train_params p;
    memset(&p, 0xAB, sizeof p);
    EXPECT_OK(lamina_train_params_init(&p, sizeof p));
    CHECK(p.struct_size == sizeof p);
    CHECK(p.rank == 8);
    CHECK(p.alpha == 16.0f);
    CHECK(p.dropout == 0.0f);
    CHECK(!p.rslora);
    CHECK(p.targets == NULL);
    CHECK(p.learning_rate == 1e-3f);
    CHECK(p.beta1 == 0.9f && p.beta2 == 0.999f);
    CHECK(p.schedule == LAMINA_TRAIN_SCHEDULE_COSINE);
    CHECK(p.max_grad_norm == 1.0f);
    CHECK(p.batch_size == 4 && p.grad_accum == 1 && p.steps == 100);
    CHECK(p.max_len == 2048 && !p.pack && p.val_fraction == 0.0f);
    CHECK(!p.full && p.activation_memory_mib == 768);
    EXPECT_ERROR(lamina_train_params_init(&p, 3), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    EXPECT_ERROR(lamina_train_params_init(NULL, sizeof p), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "lamina_train_params");
}

static void expect_create_error(const lamina_train_params *p, const char *data, lamina_status want, const char *needle,
                                int line) {
    lamina_trainer *t = (lamina_trainer *)(uintptr_t)0x1; /* must stay untouched */
    lamina_status got = lamina_trainer_create(g_model, data, p, &t);
    expect_error(__FILE__, line, "lamina_trainer_create", got, want, needle);
    record_at(t == (lamina_trainer *)(uintptr_t)0x1, __FILE__, line, "out_trainer was written on failure");
}

static void test_bad_inputs(void) {
    lamina_train_params p;
    lamina_trainer *t = NULL;
    tiny_params(&p, 2);
    EXPECT_ERROR(lamina_trainer_create(NULL, DATA, &p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "model_path");
    EXPECT_ERROR(lamina_trainer_create(g_model, NULL, &p, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "data_path");
    EXPECT_ERROR(lamina_trainer_create(g_model, DATA, &p, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_trainer");
    EXPECT_ERROR(lamina_trainer_create("/nonexistent/model.gguf", DATA, &p, &t), LAMINA_STATUS_ERROR_MODEL_NOT_FOUND,
                 "/nonexistent/model.gguf");
    CHECK(t == NULL);

    expect_create_error(&p, "/nonexistent/data.jsonl", LAMINA_STATUS_ERROR_DATA, "file not found", __LINE__);

    /* A bad record is named by its line. */
    char bad[512];
    path_in_dir(bad, sizeof bad, "bad.jsonl");
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("{\"prompt\": \"Q\", \"completion\": \"A\"}\n{\"prompt\": 3}\n", f);
        fclose(f);
    }
    expect_create_error(&p, bad, LAMINA_STATUS_ERROR_DATA, "bad.jsonl:2:", __LINE__);

    lamina_train_params q = p;
    q.rank = 0;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "rank", __LINE__);
    q = p;
    q.targets = "q,x";
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "`x`", __LINE__);
    q = p;
    q.targets = " , ";
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "targets", __LINE__);
    q = p;
    q.schedule = 7;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "schedule", __LINE__);
    q = p;
    q.learning_rate = NAN;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "learning_rate", __LINE__);
    q = p;
    q.dropout = 1.0f;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "dropout", __LINE__);
    q = p;
    q.steps = 0;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "steps", __LINE__);
    q = p;
    q.val_fraction = 1.5f;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "val_fraction", __LINE__);
    q = p;
    q.max_len = 1;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_len", __LINE__);
    q = p;
    q.max_len = 4; /* every record is longer */
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_DATA, "made_up_facts.jsonl:1:", __LINE__);
    q = p;
    q.struct_size = 2;
    expect_create_error(&q, DATA, LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size", __LINE__);

    char ckpt[512];
    path_in_dir(ckpt, sizeof ckpt, "no-checkpoint");
    EXPECT_ERROR(lamina_trainer_resume(g_model, DATA, &p, ckpt, &t), LAMINA_STATUS_ERROR_IO, "no-checkpoint");
    EXPECT_ERROR(lamina_trainer_resume(g_model, DATA, &p, NULL, &t), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "checkpoint_dir");
    CHECK(t == NULL);

    double loss = 0.0;
    EXPECT_ERROR(lamina_trainer_step(NULL, &loss), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "trainer");
    EXPECT_ERROR(lamina_trainer_cancel(NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "trainer");
    EXPECT_ERROR(lamina_trainer_run((lamina_trainer *)(uintptr_t)0x10, NULL, NULL, NULL), LAMINA_STATUS_ERROR_INVALID_HANDLE,
                 "lamina_trainer");
    lamina_trainer_free(NULL);
}

/* ---------------------------------------------------------------------------------------- */

typedef struct {
    int calls;
    int stop_at;         /* return false at this step (0 = never) */
    int cancel_at;       /* call lamina_trainer_cancel at this step (0 = never) */
    lamina_trainer *self;
    int fields_ok;
    int busy_ok;
    int saw_val_loss;
    uint64_t last_step;
} progress_log;

static bool on_progress(const lamina_train_progress *p, void *user_data) {
    progress_log *log = (progress_log *)user_data;
    log->calls++;
    if (!(p->struct_size == sizeof *p && p->step >= 1 && p->step <= p->total_steps && isfinite(p->loss) && p->loss > 0.0 &&
          p->learning_rate >= 0.0 && isfinite(p->grad_norm) && p->tokens_per_second > 0.0 && p->eta_seconds >= 0.0)) {
        log->fields_ok = 0;
    }
    if (!isnan(p->val_loss)) {
        log->saw_val_loss++;
    }
    log->last_step = p->step;
    if (log->self != NULL) {
        double v;
        log->busy_ok &= lamina_trainer_evaluate(log->self, &v) == LAMINA_STATUS_ERROR_BUSY;
    }
    if (log->cancel_at != 0 && (int)p->step == log->cancel_at) {
        CHECK(lamina_trainer_cancel(log->self) == LAMINA_STATUS_OK);
    }
    return !(log->stop_at != 0 && (int)p->step == log->stop_at);
}

static void test_run_cancel_resume_save(void) {
    lamina_train_params p;
    tiny_params(&p, 3);
    lamina_trainer *t = NULL;
    EXPECT_OK(lamina_trainer_create(g_model, DATA, &p, &t));
    if (t == NULL) {
        return;
    }
    uint64_t step = 99, total = 0;
    EXPECT_OK(lamina_trainer_steps(t, &step, &total));
    CHECK(step == 0 && total == 3);

    double before = 0.0;
    EXPECT_OK(lamina_trainer_evaluate(t, &before));
    CHECKF(isfinite(before) && before > 0.0, "validation loss before training: %f", before);

    /* The callback returning false stops after that step; OK, and the run can go on. */
    progress_log log = {0, 1, 0, t, 1, 1, 0, 0};
    EXPECT_OK(lamina_trainer_run(t, on_progress, &log, NULL));
    CHECK(log.calls == 1 && log.fields_ok && log.busy_ok);
    CHECK(steps_done(t) == 1);

    /* lamina_trainer_cancel from inside the callback stops the run too. */
    progress_log log2 = {0, 0, 2, t, 1, 1, 0, 0};
    EXPECT_OK(lamina_trainer_run(t, on_progress, &log2, NULL));
    CHECK(log2.calls == 1 && log2.last_step == 2 && log2.fields_ok);
    CHECK(steps_done(t) == 2);

    /* Checkpoint at step 2, then the last step: the validation loss comes at the end. */
    char ckpt[512];
    path_in_dir(ckpt, sizeof ckpt, "checkpoint");
    progress_log log3 = {0, 0, 0, NULL, 1, 1, 0, 0};
    EXPECT_OK(lamina_trainer_save_checkpoint(t, ckpt));
    EXPECT_OK(lamina_trainer_run(t, on_progress, &log3, NULL));
    CHECK(log3.calls == 1 && log3.last_step == 3 && log3.saw_val_loss == 1);
    CHECK(steps_done(t) == 3);
    /* A finished run returns at once. */
    progress_log log4 = {0, 0, 0, NULL, 1, 1, 0, 0};
    EXPECT_OK(lamina_trainer_run(t, on_progress, &log4, NULL));
    CHECK(log4.calls == 0);

    double loss = 0.0;
    EXPECT_OK(lamina_trainer_step(t, &loss));
    CHECKF(isfinite(loss) && loss > 0.0, "step loss %f", loss);
    CHECK(steps_done(t) == 4);
    EXPECT_ERROR(lamina_trainer_step(t, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_loss");
    EXPECT_ERROR(lamina_trainer_evaluate(t, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_val_loss");

    /* Adapters: GGUF file and PEFT directory, both loadable by llama.cpp through lamina. */
    char gguf[512], peft[512], file[600];
    path_in_dir(gguf, sizeof gguf, "adapter.gguf");
    path_in_dir(peft, sizeof peft, "adapter-peft");
    EXPECT_OK(lamina_trainer_save_adapter(t, gguf, LAMINA_ADAPTER_FORMAT_GGUF));
    EXPECT_OK(lamina_trainer_save_adapter(t, peft, LAMINA_ADAPTER_FORMAT_PEFT));
    CHECK(exists(gguf));
    snprintf(file, sizeof file, "%s/adapter_config.json", peft);
    CHECK(exists(file));
    snprintf(file, sizeof file, "%s/adapter_model.safetensors", peft);
    CHECK(exists(file));
    EXPECT_ERROR(lamina_trainer_save_adapter(t, gguf, 2), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "format");
    EXPECT_ERROR(lamina_trainer_save_adapter(t, NULL, LAMINA_ADAPTER_FORMAT_GGUF), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");

    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(g_model, NULL, &model));
    if (model != NULL) {
        lamina_adapter *a = NULL, *b = NULL;
        uint32_t rank = 0;
        EXPECT_OK(lamina_model_load_adapter(model, gguf, &a));
        EXPECT_OK(lamina_adapter_info(a, &rank, NULL));
        CHECK(rank == 2);
        EXPECT_OK(lamina_model_load_adapter(model, peft, &b));
        lamina_adapter_free(a);
        lamina_adapter_free(b);
        lamina_model_free(model);
    }

    /* Resume from the step-2 checkpoint: the planned total is kept (NULL params) or raised. */
    lamina_trainer *r = NULL;
    /* NULL params mean the default data options: no validation split, 30 training examples
     * instead of the checkpoint's 27. */
    EXPECT_ERROR(lamina_trainer_resume(g_model, DATA, NULL, ckpt, &r), LAMINA_STATUS_ERROR_DATA, "27 examples");
    p.steps = 0;
    EXPECT_OK(lamina_trainer_resume(g_model, DATA, &p, ckpt, &r));
    if (r != NULL) {
        EXPECT_OK(lamina_trainer_steps(r, &step, &total));
        CHECK(step == 2 && total == 3);
        lamina_trainer_free(r);
        r = NULL;
    }
    p.steps = 4;
    EXPECT_OK(lamina_trainer_resume(g_model, DATA, &p, ckpt, &r));
    if (r != NULL) {
        EXPECT_OK(lamina_trainer_steps(r, &step, &total));
        CHECK(step == 2 && total == 4);
        /* The run writes a checkpoint at its end. */
        char ckpt2[512], state[600];
        path_in_dir(ckpt2, sizeof ckpt2, "checkpoint2");
        progress_log log5 = {0, 3, 0, NULL, 1, 1, 0, 0};
        EXPECT_OK(lamina_trainer_run(r, on_progress, &log5, ckpt2));
        CHECK(log5.calls == 1 && log5.last_step == 3);
        snprintf(state, sizeof state, "%s/checkpoint-00000003.safetensors", ckpt2);
        CHECK(exists(state));
        lamina_trainer_free(r);
    }

    /* Handle checks. */
    lamina_trainer_free(t);
    EXPECT_ERROR(lamina_trainer_step(t, &loss), LAMINA_STATUS_ERROR_INVALID_HANDLE, "lamina_trainer");
    EXPECT_ERROR(lamina_trainer_cancel(t), LAMINA_STATUS_ERROR_INVALID_HANDLE, "lamina_trainer");
    lamina_trainer_free(t);
    CHECK(strstr(lamina_last_error_message(), "freed twice") != NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Cancellation from another thread while the run is in progress.                            */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int first_step_done;
    lamina_trainer *trainer;
    lamina_status cancel_status;
} cancel_ctx;

static bool on_progress_signal(const lamina_train_progress *p, void *user_data) {
    cancel_ctx *c = (cancel_ctx *)user_data;
    (void)p;
    pthread_mutex_lock(&c->lock);
    c->first_step_done = 1;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return true;
}

static void *canceller(void *arg) {
    cancel_ctx *c = (cancel_ctx *)arg;
    pthread_mutex_lock(&c->lock);
    while (!c->first_step_done) {
        pthread_cond_wait(&c->cond, &c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    c->cancel_status = lamina_trainer_cancel(c->trainer);
    return NULL;
}

static void test_cancel_from_another_thread(void) {
    lamina_train_params p;
    tiny_params(&p, 1000);
    p.val_fraction = 0.0f;
    lamina_trainer *t = NULL;
    EXPECT_OK(lamina_trainer_create(g_model, DATA, &p, &t));
    if (t == NULL) {
        return;
    }
    cancel_ctx c;
    pthread_mutex_init(&c.lock, NULL);
    pthread_cond_init(&c.cond, NULL);
    c.first_step_done = 0;
    c.trainer = t;
    c.cancel_status = LAMINA_STATUS_ERROR_PANIC;
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, canceller, &c) == 0);
    double start = now_s();
    EXPECT_OK(lamina_trainer_run(t, on_progress_signal, &c, NULL));
    pthread_join(thread, NULL);
    CHECK(c.cancel_status == LAMINA_STATUS_OK);
    uint64_t done = steps_done(t);
    /* The step in progress when the cancel arrived finishes; no more. */
    CHECKF(done >= 1 && done <= 3, "cancelled after %llu of 1000 steps", (unsigned long long)done);
    printf("cancelled from another thread after %llu steps (%.1f s)\n", (unsigned long long)done, now_s() - start);
    lamina_trainer_free(t);
    pthread_cond_destroy(&c.cond);
    pthread_mutex_destroy(&c.lock);
}

/* params.full: one step over every weight, the model saved as GGUF and loaded back; the
 * adapter and model savers refuse the other kind of trainer. */
static void test_full_fine_tune(void) {
    lamina_train_params p;
    tiny_params(&p, 1);
    p.full = true;
    p.learning_rate = 1e-5f;
    lamina_trainer *t = NULL;
    EXPECT_OK(lamina_trainer_create(g_model, DATA, &p, &t));
    if (t == NULL) {
        return;
    }
    double loss = 0.0;
    EXPECT_OK(lamina_trainer_step(t, &loss));
    CHECK(isfinite(loss) && loss > 0.0);
    char out[512];
    path_in_dir(out, sizeof out, "full.gguf");
    EXPECT_ERROR(lamina_trainer_save_adapter(t, out, LAMINA_ADAPTER_FORMAT_GGUF), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "save_model");
    EXPECT_ERROR(lamina_trainer_save_model(t, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "path");
    EXPECT_OK(lamina_trainer_save_model(t, out));
    lamina_trainer_free(t);
    lamina_model *m = NULL;
    EXPECT_OK(lamina_model_load(out, NULL, &m));
    lamina_model_free(m);

    tiny_params(&p, 1);
    t = NULL;
    EXPECT_OK(lamina_trainer_create(g_model, DATA, &p, &t));
    EXPECT_ERROR(lamina_trainer_save_model(t, out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "save_adapter");
    lamina_trainer_free(t);
}

int main(void) {
    if (mkdtemp(g_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    if (lamina_default_model_path(&g_model) != LAMINA_STATUS_OK || !exists(g_model)) {
        fprintf(stderr, "test_train: the default model is missing; run scripts/fetch-model.sh\n");
        return 1;
    }
    test_defaults();
    test_bad_inputs();
    test_run_cancel_resume_save();
    test_cancel_from_another_thread();
    test_full_fine_tune();
    lamina_string_free(g_model);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_train: could not remove %s\n", g_dir);
    }
    return check_summary();
}

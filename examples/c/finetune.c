/*
 * finetune: train a LoRA adapter on the device through the C API, save it, and use it.
 *
 *   finetune [--model PATH] [--data FILE] [--threads N] [--steps N] [--rank N] ADAPTER.gguf
 *
 * Trains on the chat records of FILE (default tests/data/made_up_facts.jsonl: 30 invented
 * facts) with a rank-N adapter (default 16) on q and v, printing one progress line per step
 * and the validation loss before and after (10% of the records are held out). Saves the
 * adapter as a llama.cpp GGUF LoRA file at ADAPTER.gguf, then loads it into the model with
 * lamina_model_load_adapter, applies it to a chat session and asks one of the questions.
 * A few dozen steps teach most of the facts; a handful only show the mechanics.
 *
 * Build: cc -std=c99 -I include examples/c/finetune.c -L target/release -llamina_ffi -lm
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina.h"

static int fail(const char *what, lamina_status status) {
    fprintf(stderr, "finetune: %s: %s: %s\n", what, lamina_status_name(status), lamina_last_error_message());
    return 1;
}

static int parse_count(const char *flag, const char *text, unsigned long max, unsigned long *out) {
    char *end = NULL;
    unsigned long v = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || v > max) {
        fprintf(stderr, "finetune: %s needs a number up to %lu, got \"%s\"\n", flag, max, text);
        return 0;
    }
    *out = v;
    return 1;
}

/* One line per optimizer step. Returning false would stop the run after this step. */
static bool on_progress(const lamina_train_progress *p, void *user_data) {
    (void)user_data;
    printf("step %3llu/%llu  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  eta %.0fs",
           (unsigned long long)p->step, (unsigned long long)p->total_steps, p->loss, p->learning_rate, p->grad_norm,
           p->tokens_per_second, p->eta_seconds);
    if (!isnan(p->val_loss)) {
        printf("  val %.4f", p->val_loss);
    }
    putchar('\n');
    fflush(stdout);
    return true;
}

/* Print the streamed reply. */
static bool on_piece(const char *piece, size_t len, void *user_data) {
    fwrite(piece, 1, len, (FILE *)user_data);
    fflush((FILE *)user_data);
    return true;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL;
    const char *data = "tests/data/made_up_facts.jsonl";
    const char *out = NULL;
    unsigned long threads = 0, steps = 30, rank = 16;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model_arg = argv[++i];
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            data = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!parse_count("--threads", argv[++i], 1024, &threads)) {
                return 2;
            }
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            if (!parse_count("--steps", argv[++i], 1000000, &steps) || steps == 0) {
                return 2;
            }
        } else if (strcmp(argv[i], "--rank") == 0 && i + 1 < argc) {
            if (!parse_count("--rank", argv[++i], 1024, &rank) || rank == 0) {
                return 2;
            }
        } else if (argv[i][0] != '-' && out == NULL) {
            out = argv[i];
        } else {
            out = NULL;
            break;
        }
    }
    if (out == NULL) {
        fputs("usage: finetune [--model PATH] [--data FILE] [--threads N] [--steps N] [--rank N] ADAPTER.gguf\n", stderr);
        return 2;
    }

    char *default_path = NULL;
    lamina_status status;
    if (model_arg == NULL) {
        status = lamina_default_model_path(&default_path);
        if (status != LAMINA_STATUS_OK) {
            return fail("lamina_default_model_path", status);
        }
    }
    const char *model_path = model_arg != NULL ? model_arg : default_path;

    /* 1. Train. */
    lamina_train_params params;
    status = lamina_train_params_init(&params, sizeof params);
    if (status != LAMINA_STATUS_OK) {
        lamina_string_free(default_path);
        return fail("lamina_train_params_init", status);
    }
    params.rank = (uint32_t)rank;
    params.alpha = 2.0f * (float)rank;
    params.targets = "q,v";
    params.learning_rate = 3e-3f;
    params.warmup_steps = steps >= 10 ? 3 : 0;
    params.batch_size = 6;
    params.steps = (uint32_t)steps;
    params.max_len = 256;
    params.val_fraction = 0.1f;
    params.seed = 1;
    params.n_threads = (uint32_t)threads;
    lamina_trainer *trainer = NULL;
    status = lamina_trainer_create(model_path, data, &params, &trainer);
    if (status != LAMINA_STATUS_OK) {
        lamina_string_free(default_path);
        return fail("lamina_trainer_create", status);
    }
    int rc = 0;
    double before = NAN, after = NAN;
    status = lamina_trainer_evaluate(trainer, &before);
    if (status == LAMINA_STATUS_OK) {
        printf("validation loss before: %.4f\n", before);
        status = lamina_trainer_run(trainer, on_progress, NULL, NULL);
    }
    if (status == LAMINA_STATUS_OK) {
        status = lamina_trainer_evaluate(trainer, &after);
    }
    if (status == LAMINA_STATUS_OK) {
        printf("validation loss after: %.4f\n", after);
        status = lamina_trainer_save_adapter(trainer, out, LAMINA_ADAPTER_FORMAT_GGUF);
    }
    if (status != LAMINA_STATUS_OK) {
        rc = fail("training", status);
    } else {
        printf("saved the adapter to %s\n", out);
    }
    lamina_trainer_free(trainer); /* frees the training copy of the model */
    if (rc != 0) {
        lamina_string_free(default_path);
        return rc;
    }

    /* 2. Serve: load the adapter into llama.cpp's model and ask one of the questions. */
    lamina_model *model = NULL;
    status = lamina_model_load(model_path, NULL, &model);
    lamina_string_free(default_path);
    if (status != LAMINA_STATUS_OK) {
        return fail("lamina_model_load", status);
    }
    lamina_adapter *adapter = NULL;
    lamina_session *session = NULL;
    lamina_session_params session_params;
    lamina_sampling_params sampling;
    status = lamina_model_load_adapter(model, out, &adapter);
    if (status != LAMINA_STATUS_OK) {
        rc = fail("lamina_model_load_adapter", status);
    }
    if (rc == 0) {
        status = lamina_session_params_init(&session_params, sizeof session_params);
        if (status == LAMINA_STATUS_OK) {
            session_params.n_ctx = 512;
            session_params.n_threads = (uint32_t)threads;
            status = lamina_session_new(model, &session_params, &session);
        }
        if (status != LAMINA_STATUS_OK) {
            rc = fail("lamina_session_new", status);
        }
    }
    if (rc == 0) {
        const lamina_adapter *set[1] = {adapter};
        const float scales[1] = {1.0f};
        status = lamina_session_set_adapters(session, set, scales, 1);
        if (status != LAMINA_STATUS_OK) {
            rc = fail("lamina_session_set_adapters", status);
        }
    }
    if (rc == 0) {
        status = lamina_sampling_params_init(&sampling, sizeof sampling); /* greedy */
        if (status == LAMINA_STATUS_OK) {
            sampling.max_tokens = 24;
            const char *question = "What is the capital of Vorlandia?";
            printf("Q: %s\nA: ", question);
            fflush(stdout);
            status = lamina_session_chat(session, question, &sampling, on_piece, stdout, NULL, NULL);
            putchar('\n');
        }
        if (status != LAMINA_STATUS_OK) {
            rc = fail("lamina_session_chat", status);
        }
    }
    lamina_session_free(session);
    lamina_adapter_free(adapter);
    lamina_model_free(model);
    return rc;
}

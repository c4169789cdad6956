/*
 * pretrain: train a tiny language model from scratch through the C API: text in, a GGUF
 * model out, a few greedy tokens from it at the end.
 *
 *   pretrain [--steps N] [--threads N] [--vocab N] OUT_DIR INPUT...
 *
 * INPUT: .txt files (documents separated by blank lines), .md files (one document each),
 * .jsonl files of {"text": ...} records, or directories of those. The corpus (cleaned,
 * deduplicated, split 80/10/10 into train/validation/test) goes to OUT_DIR/corpus, a
 * byte-level BPE tokenizer of N tokens (default 512) trained on the train set to
 * OUT_DIR/tokenizer; then the "1m" preset is initialised and pretrained for N steps (default
 * 200) into OUT_DIR/run (init.gguf, model.gguf, log.json, loss.svg), printing one line per
 * step; then the trained model is loaded with lamina_model_load and continues "The" greedily.
 * A few steps show the mechanics in seconds; a few hundred on a few hundred KB of text make
 * the model babble in the corpus's words.
 *
 * Build: cc -std=c99 -I include examples/c/pretrain.c -L target/release -llamina_ffi -lm
 */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina.h"

static int fail(const char *what, lamina_status status) {
    fprintf(stderr, "pretrain: %s: %s: %s\n", what, lamina_status_name(status), lamina_last_error_message());
    return 1;
}

static int parse_count(const char *flag, const char *text, unsigned long max, unsigned long *out) {
    char *end = NULL;
    unsigned long v = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || v == 0 || v > max) {
        fprintf(stderr, "pretrain: %s needs a number from 1 to %lu, got \"%s\"\n", flag, max, text);
        return 0;
    }
    *out = v;
    return 1;
}

/* One line per optimizer step; the validation perplexity on the steps that computed it. */
static bool on_step(const lamina_pretrain_progress *p, void *user_data) {
    (void)user_data;
    printf("step %4llu/%llu  loss %.3f  lr %.1e  %.0f tok/s", (unsigned long long)p->step,
           (unsigned long long)p->total_steps, p->loss, p->learning_rate, p->tokens_per_second);
    if (!isnan(p->val_perplexity)) {
        printf("  validation perplexity %.1f", p->val_perplexity);
    }
    putchar('\n');
    fflush(stdout);
    return true; /* false would stop the run after this step, as lamina_pretrainer_cancel does */
}

static bool on_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* The flat JSON object after `key` in `json` (the report's "summary" holds no nested object). */
static void print_object(const char *json, const char *key) {
    const char *at = strstr(json, key);
    const char *end = at != NULL ? strchr(at, '}') : NULL;
    if (end != NULL) {
        printf("%.*s\n", (int)(end - at + 1), at);
    }
}

int main(int argc, char **argv) {
    unsigned long steps = 200, threads = 0, vocab = 512;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *flag = argv[i];
        unsigned long *target = strcmp(flag, "--steps") == 0 ? &steps
                                : strcmp(flag, "--threads") == 0 ? &threads
                                : strcmp(flag, "--vocab") == 0 ? &vocab
                                : NULL;
        if (target == NULL || i + 1 >= argc || !parse_count(flag, argv[++i], 100000000, target)) {
            fprintf(stderr, "usage: pretrain [--steps N] [--threads N] [--vocab N] OUT_DIR INPUT...\n");
            return 2;
        }
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: pretrain [--steps N] [--threads N] [--vocab N] OUT_DIR INPUT...\n");
        return 2;
    }
    const char *out = argv[i];
    const char *const *inputs = (const char *const *)&argv[i + 1];
    size_t n_inputs = (size_t)(argc - i - 1);
    char corpus[1024], tokenizer[1024], train[1100], run[1024], gguf[1100];
    snprintf(corpus, sizeof corpus, "%s/corpus", out);
    snprintf(tokenizer, sizeof tokenizer, "%s/tokenizer", out);
    snprintf(train, sizeof train, "%s/train.jsonl", corpus);
    snprintf(run, sizeof run, "%s/run", out);

    /* 1. The corpus: a tenth each for validation and test, so that a small input still gives
     *    both sets a document. */
    lamina_corpus_params cp;
    lamina_status st = lamina_corpus_params_init(&cp, sizeof cp);
    cp.train_fraction = 0.8;
    cp.validation_fraction = 0.1;
    cp.test_fraction = 0.1;
    char *report = NULL;
    if (st != LAMINA_STATUS_OK || (st = lamina_corpus_build(inputs, n_inputs, corpus, &cp, NULL, NULL, &report))) {
        return fail("lamina_corpus_build", st);
    }
    printf("corpus: %s\n", corpus);
    lamina_string_free(report);

    /* 2. The tokenizer, trained on the training set only. */
    lamina_tokenizer_train_params tp;
    st = lamina_tokenizer_train_params_init(&tp, sizeof tp);
    tp.vocab_size = (uint32_t)vocab;
    const char *train_inputs[1] = {train};
    if (st != LAMINA_STATUS_OK || (st = lamina_tokenizer_train(train_inputs, 1, tokenizer, &tp, &report))) {
        return fail("lamina_tokenizer_train", st);
    }
    printf("tokenizer: %s, %lu tokens\n", tokenizer, vocab);
    lamina_string_free(report);

    /* 3. Pretraining: the smallest preset at the tokenizer's vocabulary, short sequences, a
     *    warmup of a tenth of the steps and a validation every quarter of the run. */
    lamina_model_spec spec;
    spec.struct_size = sizeof spec;
    if ((st = lamina_model_spec_preset("1m", (uint32_t)vocab, &spec)) != LAMINA_STATUS_OK) {
        return fail("lamina_model_spec_preset", st);
    }
    lamina_pretrain_params p;
    if ((st = lamina_pretrain_params_init(&p, sizeof p)) != LAMINA_STATUS_OK) {
        return fail("lamina_pretrain_params_init", st);
    }
    p.corpus_dir = corpus;
    p.output_dir = run;
    p.spec = &spec;
    p.tokenizer_dir = tokenizer;
    p.seq_len = 64;
    p.batch_size = 4;
    p.learning_rate = 2e-3f;
    p.warmup_steps = (uint32_t)(steps / 10 > 0 ? steps / 10 : 1);
    p.eval_every = (uint32_t)(steps / 4 > 0 ? steps / 4 : 1);
    p.budget_steps = steps;
    p.n_threads = (uint32_t)threads;
    lamina_pretrainer *trainer = NULL;
    if ((st = lamina_pretrainer_create(&p, &trainer)) != LAMINA_STATUS_OK) {
        return fail("lamina_pretrainer_create", st);
    }
    if ((st = lamina_pretrainer_run(trainer, on_step, NULL)) != LAMINA_STATUS_OK ||
        (st = lamina_pretrainer_report_json(trainer, &report)) != LAMINA_STATUS_OK) {
        lamina_pretrainer_free(trainer);
        return fail("lamina_pretrainer_run", st);
    }
    print_object(report, "\"summary\":");
    lamina_string_free(report);
    lamina_pretrainer_free(trainer);

    /* 4. The trained GGUF is an ordinary llama.cpp model: sample a few greedy tokens. */
    snprintf(gguf, sizeof gguf, "%s/model.gguf", run);
    lamina_model *model = NULL;
    if ((st = lamina_model_load(gguf, NULL, &model)) != LAMINA_STATUS_OK) {
        return fail("lamina_model_load", st);
    }
    lamina_session_params sp;
    lamina_sampling_params greedy;
    lamina_session *session = NULL;
    st = lamina_session_params_init(&sp, sizeof sp);
    sp.n_ctx = 128;
    sp.n_threads = (uint32_t)threads;
    if (st == LAMINA_STATUS_OK) {
        st = lamina_sampling_params_init(&greedy, sizeof greedy);
    }
    if (st != LAMINA_STATUS_OK || (st = lamina_session_new(model, &sp, &session)) != LAMINA_STATUS_OK) {
        lamina_model_free(model);
        return fail("lamina_session_new", st);
    }
    greedy.max_tokens = 16;
    printf("sample: The");
    st = lamina_session_generate(session, "The", &greedy, on_piece, NULL, NULL, NULL);
    putchar('\n');
    lamina_session_free(session);
    lamina_model_free(model);
    return st == LAMINA_STATUS_OK ? 0 : fail("lamina_session_generate", st);
}

/*
 * generate: continue a prompt with lamina's C API, streaming the text to stdout.
 *
 *   generate [--model PATH] [--max-tokens N] [--threads N] PROMPT
 *
 * Greedy (temperature 0), default sampling otherwise, at most 256 tokens unless --max-tokens
 * says otherwise, on all cores unless --threads says otherwise. Prints the continuation as it
 * is generated, then one newline: the same bytes as
 * `lamina generate --prompt PROMPT --temperature 0`.
 *
 * Build: cc -std=c99 -I include examples/c/generate.c -L target/release -llamina_ffi
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina.h"

static void usage(FILE *to) {
    fputs("usage: generate [--model PATH] [--max-tokens N] [--threads N] PROMPT\n", to);
}

/* Parse a decimal number in [min, 0xFFFFFFFF]; false if `text` is not one. */
static bool parse_u32(const char *text, unsigned long min, uint32_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v < min || v > 0xFFFFFFFFul) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Print the failed call's status and message, and say the program should exit 1. */
static int fail(lamina_status status) {
    fprintf(stderr, "generate: %s: %s\n", lamina_status_name(status), lamina_last_error_message());
    return 1;
}

/* Token callback: write each piece as soon as it arrives. Stop generating if stdout is gone
 * (for example `generate ... | head -c 10`). */
static bool on_piece(const char *piece, size_t len, void *user_data) {
    FILE *out = (FILE *)user_data;
    if (fwrite(piece, 1, len, out) != len) {
        return false;
    }
    return fflush(out) == 0;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL;
    const char *prompt = NULL;
    uint32_t max_tokens = 256;
    uint32_t threads = 0; /* 0 = all cores */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model_arg = argv[++i];
        } else if (strcmp(argv[i], "--max-tokens") == 0 && i + 1 < argc) {
            if (!parse_u32(argv[++i], 1, &max_tokens)) {
                fprintf(stderr, "generate: --max-tokens needs a positive integer, got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!parse_u32(argv[++i], 0, &threads)) {
                fprintf(stderr, "generate: --threads needs a number (0 = all cores), got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--") == 0 && i + 2 == argc && prompt == NULL) {
            prompt = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "generate: unknown or incomplete option \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (prompt == NULL) {
            prompt = argv[i];
        } else {
            fputs("generate: give the prompt as one argument (quote it)\n", stderr);
            usage(stderr);
            return 2;
        }
    }
    if (prompt == NULL) {
        usage(stderr);
        return 2;
    }

    /* The model: --model, or lamina's default path (which honours $LAMINA_MODEL). */
    char *default_path = NULL;
    lamina_status status;
    if (model_arg == NULL) {
        status = lamina_default_model_path(&default_path);
        if (status != LAMINA_STATUS_OK) {
            return fail(status);
        }
    }
    const char *model_path = model_arg != NULL ? model_arg : default_path;

    /* Params structs are filled by lamina_*_params_init(&p, sizeof p) before any field is
     * changed, so this program keeps working with later libraries whose structs are longer. */
    lamina_model_params model_params;
    status = lamina_model_params_init(&model_params, sizeof model_params);
    if (status != LAMINA_STATUS_OK) {
        lamina_string_free(default_path);
        return fail(status);
    }
    lamina_model *model = NULL;
    status = lamina_model_load(model_path, &model_params, &model);
    lamina_string_free(default_path); /* NULL when --model was given: fine */
    if (status != LAMINA_STATUS_OK) {
        return fail(status);
    }

    lamina_session *session = NULL;
    lamina_session_params session_params;
    status = lamina_session_params_init(&session_params, sizeof session_params);
    if (status == LAMINA_STATUS_OK) {
        session_params.n_threads = threads;
        status = lamina_session_new(model, &session_params, &session);
    }
    if (status != LAMINA_STATUS_OK) {
        int rc = fail(status);
        lamina_model_free(model);
        return rc;
    }

    lamina_sampling_params sampling;
    status = lamina_sampling_params_init(&sampling, sizeof sampling); /* greedy, 256 tokens */
    if (status == LAMINA_STATUS_OK) {
        sampling.temperature = 0.0f;
        sampling.max_tokens = max_tokens;
        status = lamina_session_generate(session, prompt, &sampling, on_piece, stdout, NULL, NULL);
    }
    int rc = 0;
    if (status == LAMINA_STATUS_OK) {
        fputs("\n", stdout);
        fflush(stdout);
    } else {
        rc = fail(status);
    }

    /* Any order works: the session keeps the model alive. */
    lamina_session_free(session);
    lamina_model_free(model);
    return rc;
}

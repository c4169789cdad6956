/*
 * chat: a multi-turn conversation with lamina's C API.
 *
 *   chat [--model PATH] [--max-tokens N] [--threads N] [--system TEXT] [MESSAGE...]
 *
 * With MESSAGE arguments, each one is a user turn; without, user turns are read from stdin,
 * one per line (empty lines are skipped). Replies stream to stdout, each followed by a
 * newline. From the second turn on, stderr shows how many prompt tokens the session reused
 * from its KV cache instead of decoding them again (the conversation so far).
 *
 * Build: cc -std=c99 -I include examples/c/chat.c -L target/release -llamina_ffi
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina.h"

static int fail(const char *what, lamina_status status) {
    fprintf(stderr, "chat: %s: %s: %s\n", what, lamina_status_name(status), lamina_last_error_message());
    return 1;
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

static bool on_piece(const char *piece, size_t len, void *user_data) {
    FILE *out = (FILE *)user_data;
    if (fwrite(piece, 1, len, out) != len) {
        return false;
    }
    return fflush(out) == 0;
}

/* Read one line of any length from `in` into *buf (grown as needed), without the newline.
 * Returns false at end of input. */
static bool read_line(FILE *in, char **buf, size_t *cap) {
    size_t len = 0;
    int c;
    if (*buf == NULL) {
        *cap = 256;
        *buf = (char *)malloc(*cap);
        if (*buf == NULL) {
            return false;
        }
    }
    while ((c = fgetc(in)) != EOF && c != '\n') {
        if (len + 1 >= *cap) {
            char *bigger = (char *)realloc(*buf, *cap * 2);
            if (bigger == NULL) {
                return false;
            }
            *buf = bigger;
            *cap *= 2;
        }
        (*buf)[len++] = (char)c;
    }
    if (c == EOF && len == 0) {
        return false;
    }
    if (len > 0 && (*buf)[len - 1] == '\r') {
        len--;
    }
    (*buf)[len] = '\0';
    return true;
}

static bool is_blank(const char *s) {
    for (; *s != '\0'; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') {
            return false;
        }
    }
    return true;
}

/* One chat turn. Returns 0, or 1 after printing the error. */
static int turn(lamina_session *session, const lamina_sampling_params *sampling, const char *message, int index) {
    lamina_generation_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;

    lamina_status status = lamina_session_chat(session, message, sampling, on_piece, stdout, NULL, &info);
    if (status != LAMINA_STATUS_OK) {
        return fail("lamina_session_chat", status);
    }
    fputs("\n", stdout);
    fflush(stdout);
    if (index > 0) {
        fprintf(stderr, "[turn %d: %u prompt tokens, %u reused from the cache, %u generated]\n", index + 1,
                (unsigned)info.prompt_tokens, (unsigned)info.reused_tokens, (unsigned)info.generated_tokens);
    }
    if (info.stop_reason == LAMINA_STOP_REASON_CONTEXT_FULL) {
        fputs("chat: the context window is full; the conversation cannot go on\n", stderr);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL;
    const char *system_prompt = NULL;
    uint32_t max_tokens = 256;
    uint32_t threads = 0; /* 0 = all cores */
    int first_message = argc; /* index of the first MESSAGE argument */

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model_arg = argv[++i];
        } else if (strcmp(argv[i], "--system") == 0 && i + 1 < argc) {
            system_prompt = argv[++i];
        } else if (strcmp(argv[i], "--max-tokens") == 0 && i + 1 < argc) {
            if (!parse_u32(argv[++i], 1, &max_tokens)) {
                fprintf(stderr, "chat: --max-tokens needs a positive integer, got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (!parse_u32(argv[++i], 0, &threads)) {
                fprintf(stderr, "chat: --threads needs a number (0 = all cores), got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--") == 0) {
            first_message = i + 1;
            break;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "chat: unknown or incomplete option \"%s\"\n", argv[i]);
            fputs("usage: chat [--model PATH] [--max-tokens N] [--threads N] [--system TEXT] [MESSAGE...]\n", stderr);
            return 2;
        } else {
            first_message = i;
            break;
        }
    }

    char *default_path = NULL;
    lamina_status status;
    if (model_arg == NULL) {
        status = lamina_default_model_path(&default_path);
        if (status != LAMINA_STATUS_OK) {
            return fail("lamina_default_model_path", status);
        }
    }
    lamina_model *model = NULL;
    status = lamina_model_load(model_arg != NULL ? model_arg : default_path, NULL, &model);
    lamina_string_free(default_path);
    if (status != LAMINA_STATUS_OK) {
        return fail("lamina_model_load", status);
    }

    lamina_session *session = NULL;
    lamina_session_params session_params;
    status = lamina_session_params_init(&session_params, sizeof session_params);
    if (status == LAMINA_STATUS_OK) {
        session_params.n_threads = threads;
        status = lamina_session_new(model, &session_params, &session);
    }
    /* The session holds its own reference to the model: the model handle can go now. */
    lamina_model_free(model);
    if (status != LAMINA_STATUS_OK) {
        return fail("lamina_session_new", status);
    }
    if (system_prompt != NULL) {
        status = lamina_session_set_system_prompt(session, system_prompt);
        if (status != LAMINA_STATUS_OK) {
            int rc = fail("lamina_session_set_system_prompt", status);
            lamina_session_free(session);
            return rc;
        }
    }

    lamina_sampling_params sampling;
    status = lamina_sampling_params_init(&sampling, sizeof sampling); /* greedy, 256 tokens */
    if (status != LAMINA_STATUS_OK) {
        int rc = fail("lamina_sampling_params_init", status);
        lamina_session_free(session);
        return rc;
    }
    sampling.max_tokens = max_tokens;

    int rc = 0;
    int turns = 0;
    if (first_message < argc) {
        for (int i = first_message; i < argc && rc == 0; i++) {
            if (is_blank(argv[i])) {
                continue;
            }
            rc = turn(session, &sampling, argv[i], turns++);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        while (rc == 0 && read_line(stdin, &line, &cap)) {
            if (is_blank(line)) {
                continue;
            }
            rc = turn(session, &sampling, line, turns++);
        }
        free(line);
    }

    lamina_session_free(session);
    return rc;
}

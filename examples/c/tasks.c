/*
 * tasks: lamina's ready-made tasks through the C API: translation and question answering.
 *
 *   tasks [--model PATH] [--threads N]
 *
 * Translates an English sentence into German, then answers a question from a context
 * passage, printing both. Both tasks are greedy and leave the session's chat history alone,
 * so one session serves both.
 *
 * Build: cc -std=c99 -I include examples/c/tasks.c -L target/release -llamina_ffi
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lamina.h"

static int fail(const char *what, lamina_status status) {
    fprintf(stderr, "tasks: %s: %s: %s\n", what, lamina_status_name(status), lamina_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_arg = NULL;
    unsigned long threads = 0; /* 0 = all cores */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model_arg = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end = NULL;
            threads = strtoul(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || argv[i][0] == '-' || threads > 1024) {
                fprintf(stderr, "tasks: --threads needs a number (0 = all cores), got \"%s\"\n", argv[i]);
                return 2;
            }
        } else {
            fputs("usage: tasks [--model PATH] [--threads N]\n", stderr);
            return 2;
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
        session_params.n_threads = (uint32_t)threads;
        status = lamina_session_new(model, &session_params, &session);
    }
    if (status != LAMINA_STATUS_OK) {
        int rc = fail("lamina_session_new", status);
        lamina_model_free(model);
        return rc;
    }

    int rc = 0;

    /* Translation: ISO 639-1 codes or English language names. */
    const char *sentence = "The weather is nice today.";
    char *translation = NULL;
    status = lamina_session_translate(session, sentence, "en", "de", &translation);
    if (status == LAMINA_STATUS_OK) {
        printf("translate en->de\n  %s\n  %s\n", sentence, translation);
        lamina_string_free(translation);
    } else {
        rc = fail("lamina_session_translate", status);
    }

    /* Question answering from a context passage (pass NULL as context to ask the model). */
    const char *context =
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
        "It was designed by Gustave Eiffel's company and completed in 1889.";
    const char *question = "In which year was the Eiffel Tower completed?";
    char *answer = NULL;
    status = lamina_session_answer(session, question, context, &answer);
    if (status == LAMINA_STATUS_OK) {
        printf("answer\n  Q: %s\n  A: %s\n", question, answer);
        lamina_string_free(answer);
    } else {
        rc = fail("lamina_session_answer", status);
    }

    lamina_session_free(session);
    lamina_model_free(model);
    return rc;
}

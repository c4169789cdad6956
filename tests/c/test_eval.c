/*
 * test_eval: C-level tests of lamina's evaluation ABI (the metrics lamina_bleu, lamina_chrf,
 * lamina_squad_exact_match, lamina_squad_f1, and the harness lamina_evaluate), without a test
 * framework.
 *
 * The metrics are checked by their properties and by hand-worked cases (their agreement with
 * sacreBLEU and the official SQuAD script is tested in the runtime's own tests). The harness runs
 * on small made-up data files written to a temporary directory. Every error case checks the
 * status code and that lamina_last_error_message() says something relevant (a substring).
 * Prints failures on stderr and one summary line on stdout, "N passed, M failed"; exits 1 if
 * anything failed.
 *
 * Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL overrides the path).
 * Build: cc -std=c99 -I include tests/c/test_eval.c -L target/release -llamina_ffi
 */

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lamina.h"

#include "check.h"

#define TIMED(call)                                                         \
    do {                                                                    \
        double t_ = now_s();                                                \
        call;                                                               \
        fprintf(stderr, "  %-40s %6.2f s\n", #call, now_s() - t_);          \
    } while (0)

#define N_OF(array) (sizeof(array) / sizeof((array)[0]))

static int near(double a, double b) {
    return fabs(a - b) < 1e-9;
}

/* ---------------------------------------------------------------------------------------- */
/* Metrics                                                                                    */

static double bleu_of(const char *const *hyps, size_t n, const char *const *refs, size_t streams) {
    lamina_bleu_score s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    lamina_status st = lamina_bleu(hyps, n, refs, streams, &s);
    if (st != LAMINA_STATUS_OK) {
        char why[512];
        snprintf(why, sizeof why, "lamina_bleu: %s: %s", lamina_status_name(st), lamina_last_error_message());
        record(0, __LINE__, why);
        return -1.0;
    }
    return s.score;
}

static double chrf_of(const char *const *hyps, size_t n, const char *const *refs, size_t streams) {
    double score = -1.0;
    lamina_status st = lamina_chrf(hyps, n, refs, streams, &score);
    if (st != LAMINA_STATUS_OK) {
        char why[512];
        snprintf(why, sizeof why, "lamina_chrf: %s: %s", lamina_status_name(st), lamina_last_error_message());
        record(0, __LINE__, why);
        return -1.0;
    }
    return score;
}

static void test_status(void) {
    /* The number is ABI. */
    CHECK(LAMINA_STATUS_ERROR_DATA == 16);
    CHECK(strcmp(lamina_status_name(LAMINA_STATUS_ERROR_DATA), "LAMINA_STATUS_ERROR_DATA") == 0);
    CHECK(strcmp(lamina_status_name(99), "LAMINA_STATUS_UNKNOWN") == 0);
}

static const char *const HYPS[] = {
    "The quick brown fox jumps over the lazy dog.",
    "A small village lies at the foot of the green hills.",
    "She reads a long book every evening before sleeping.",
};
static const char *const DISJOINT[] = {
    "Zebras quietly painted seven purple umbrellas yesterday",
    "Nine orbiting kettles hummed under heavy marble",
    "Wizards juggle frozen cucumbers near Oslo",
};
static const char *const PARTIAL[] = {
    "The quick brown fox jumped over a sleepy dog.",
    "A little village lies at the foot of green mountains.",
    "She reads a book each evening before she sleeps.",
};

static void test_bleu(void) {
    lamina_bleu_score s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    /* Identical hypotheses and references: 100, every statistic perfect. */
    EXPECT_OK(lamina_bleu(HYPS, N_OF(HYPS), HYPS, 1, &s));
    CHECKF(near(s.score, 100.0), "identical BLEU = %f", s.score);
    CHECK(s.struct_size == sizeof s);
    CHECK(near(s.brevity_penalty, 1.0));
    CHECK(s.sys_len == s.ref_len && s.sys_len > 0);
    for (int n = 0; n < 4; n++) {
        CHECKF(near(s.precisions[n], 100.0) && s.counts[n] == s.totals[n] && s.totals[n] > 0,
               "order %d: precision %f, %llu/%llu", n + 1, s.precisions[n], (unsigned long long)s.counts[n],
               (unsigned long long)s.totals[n]);
    }
    /* 13a tokenization splits off the final periods: 10 + 12 + 10 tokens, 32 - 3 bigrams. */
    CHECKF(s.sys_len == 32 && s.totals[1] == 29, "sys_len %llu, bigrams %llu", (unsigned long long)s.sys_len,
           (unsigned long long)s.totals[1]);

    /* Nothing in common: 0. */
    double disjoint = bleu_of(DISJOINT, N_OF(DISJOINT), HYPS, 1);
    CHECKF(near(disjoint, 0.0), "disjoint BLEU = %f", disjoint);
    /* Some overlap: strictly between. */
    double partial = bleu_of(PARTIAL, N_OF(PARTIAL), HYPS, 1);
    CHECKF(partial > 0.0 && partial < 100.0, "partial BLEU = %f", partial);

    /* A second reference stream can only help (clipping takes the best reference). The layout
     * is stream-major: stream 0 = HYPS, stream 1 = PARTIAL. */
    const char *two_streams[6];
    for (size_t i = 0; i < 3; i++) {
        two_streams[i] = PARTIAL[i];
        two_streams[3 + i] = HYPS[i];
    }
    const char *const half[] = {HYPS[0], HYPS[1], HYPS[2]};
    double single = bleu_of(half, 3, PARTIAL, 1);
    double multi = bleu_of(half, 3, two_streams, 2);
    CHECKF(multi >= single && near(multi, 100.0), "multi-reference BLEU %f < single %f", multi, single);

    /* An older caller's shorter struct (up to `precisions`): only its bytes are written. */
    struct {
        lamina_bleu_score score;
        unsigned char after[32];
    } old;
    memset(&old, 0xAB, sizeof old);
    const size_t old_size = offsetof(lamina_bleu_score, brevity_penalty);
    old.score.struct_size = old_size;
    EXPECT_OK(lamina_bleu(HYPS, 3, HYPS, 1, &old.score));
    CHECK(old.score.struct_size == old_size);
    CHECK(near(old.score.score, 100.0) && near(old.score.precisions[3], 100.0));
    const unsigned char *bytes = (const unsigned char *)&old;
    int intact = 1;
    for (size_t i = old_size; i < sizeof old; i++) {
        intact = intact && bytes[i] == 0xAB;
    }
    CHECKF(intact, "lamina_bleu wrote past an old caller's %u-byte struct", (unsigned)old_size);
}

static void test_chrf(void) {
    double identical = chrf_of(HYPS, 3, HYPS, 1);
    CHECKF(near(identical, 100.0), "identical chrF = %f", identical);
    /* No character n-gram in common (disjoint alphabets). */
    const char *const digits[] = {"123 456", "7890"};
    const char *const letters[] = {"abc def", "ghij"};
    double disjoint = chrf_of(digits, 2, letters, 1);
    CHECKF(near(disjoint, 0.0), "disjoint chrF = %f", disjoint);
    double partial = chrf_of(PARTIAL, 3, HYPS, 1);
    CHECKF(partial > 0.0 && partial < 100.0, "partial chrF = %f", partial);
    /* Whitespace does not count. */
    const char *const spaced[] = {"T h e  quick brownfox jumps over the lazydog."};
    double ws = chrf_of(spaced, 1, HYPS, 1);
    CHECKF(near(ws, 100.0), "chrF ignoring whitespace = %f", ws);
    /* More references: at least as good as the best single one. */
    const char *two_streams[6];
    for (size_t i = 0; i < 3; i++) {
        two_streams[i] = DISJOINT[i];
        two_streams[3 + i] = PARTIAL[i];
    }
    double single = chrf_of(HYPS, 3, PARTIAL, 1);
    double multi = chrf_of(HYPS, 3, two_streams, 2);
    CHECKF(multi >= single - 1e-9, "multi-reference chrF %f < single %f", multi, single);
}

static double squad(int f1, const char *pred, const char *const *golds, size_t n) {
    double out = -1.0;
    lamina_status st = f1 ? lamina_squad_f1(pred, golds, n, &out) : lamina_squad_exact_match(pred, golds, n, &out);
    if (st != LAMINA_STATUS_OK) {
        char why[512];
        snprintf(why, sizeof why, "squad(%s): %s: %s", pred, lamina_status_name(st), lamina_last_error_message());
        record(0, __LINE__, why);
    }
    return out;
}

static void test_squad(void) {
    const char *const paris[] = {"paris"};
    CHECK(near(squad(0, "The Paris", paris, 1), 1.0)); /* article and case are normalised away */
    CHECK(near(squad(1, "The Paris", paris, 1), 1.0));
    CHECK(near(squad(0, "Paris, France", paris, 1), 0.0));
    /* 1 shared token of 2 predicted and 1 gold: P = 1/2, R = 1, F1 = 2/3. */
    CHECK(near(squad(1, "Paris, France", paris, 1), 2.0 / 3.0));
    /* Bags of tokens: "red big dog" vs "big red cat" share 2 of 3 each way: F1 = 2/3. */
    const char *const cat[] = {"big red cat"};
    CHECK(near(squad(1, "red big dog", cat, 1), 2.0 / 3.0));
    CHECK(near(squad(0, "red big dog", cat, 1), 0.0));
    /* The best gold counts. */
    const char *const several[] = {"a cat", "the big red dog", "dog"};
    CHECK(near(squad(0, "Dog!", several, 3), 1.0));
    CHECK(near(squad(1, "big red dog", several, 3), 1.0));
    /* Nothing shared. */
    CHECK(near(squad(1, "seven", paris, 1), 0.0));
    /* Unicode lowercasing. */
    const char *const zurich[] = {"zürich"};
    CHECK(near(squad(0, "ZÜRICH", zurich, 1), 1.0));
}

static void test_metric_errors(void) {
    lamina_bleu_score s;
    memset(&s, 0x5A, sizeof s);
    s.struct_size = sizeof s;
    lamina_bleu_score pattern = s;
    double out = 42.0;

    /* NULL arrays with a count > 0. */
    EXPECT_ERROR(lamina_bleu(NULL, 2, HYPS, 1, &s), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "hypotheses");
    EXPECT_ERROR(lamina_bleu(HYPS, 2, NULL, 1, &s), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "references");
    EXPECT_ERROR(lamina_chrf(NULL, 1, HYPS, 1, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "hypotheses");
    EXPECT_ERROR(lamina_squad_f1("x", NULL, 1, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "golds");
    EXPECT_ERROR(lamina_squad_exact_match(NULL, HYPS, 1, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "prediction");
    /* A NULL entry is named by its index. */
    const char *const with_null[] = {"fine", NULL};
    EXPECT_ERROR(lamina_bleu(with_null, 2, HYPS, 1, &s), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "hypotheses[1]");
    EXPECT_ERROR(lamina_chrf(HYPS, 2, with_null, 1, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "references[1]");
    EXPECT_ERROR(lamina_squad_f1("x", with_null, 2, &out), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "golds[1]");
    /* NULL out-parameters. */
    EXPECT_ERROR(lamina_bleu(HYPS, 1, HYPS, 1, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_score");
    EXPECT_ERROR(lamina_chrf(HYPS, 1, HYPS, 1, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_score");
    EXPECT_ERROR(lamina_squad_exact_match("x", HYPS, 1, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "out_score");

    /* Counts of zero: no hypotheses, no reference streams, no gold answers (NULL arrays are
     * fine with a count of 0; the count is what is wrong). */
    EXPECT_ERROR(lamina_bleu(NULL, 0, NULL, 1, &s), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no hypotheses");
    EXPECT_ERROR(lamina_bleu(HYPS, 3, NULL, 0, &s), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no reference streams");
    EXPECT_ERROR(lamina_chrf(HYPS, 0, HYPS, 1, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no hypotheses");
    EXPECT_ERROR(lamina_chrf(HYPS, 3, HYPS, 0, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no reference streams");
    EXPECT_ERROR(lamina_squad_exact_match("x", NULL, 0, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no gold");
    EXPECT_ERROR(lamina_squad_f1("x", HYPS, 0, &out), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no gold");
    /* n_hypotheses * n_reference_streams overflows: refused before `references` is read. */
    EXPECT_ERROR(lamina_bleu(HYPS, 2, HYPS, SIZE_MAX, &s), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "overflow");

    /* Invalid UTF-8 anywhere. */
    const char *const bad_utf8[] = {"fine", "caf\xc3" "e"};
    EXPECT_ERROR(lamina_bleu(bad_utf8, 2, HYPS, 1, &s), LAMINA_STATUS_ERROR_INVALID_UTF8, "hypotheses[1]");
    EXPECT_ERROR(lamina_chrf(HYPS, 2, bad_utf8, 1, &out), LAMINA_STATUS_ERROR_INVALID_UTF8, "references[1]");
    EXPECT_ERROR(lamina_squad_exact_match("\xff", HYPS, 1, &out), LAMINA_STATUS_ERROR_INVALID_UTF8, "prediction");
    EXPECT_ERROR(lamina_squad_f1("x", bad_utf8, 2, &out), LAMINA_STATUS_ERROR_INVALID_UTF8, "golds[1]");

    /* struct_size not set. */
    lamina_bleu_score unset;
    memset(&unset, 0, sizeof unset);
    EXPECT_ERROR(lamina_bleu(HYPS, 1, HYPS, 1, &unset), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
    CHECK(unset.score == 0.0);

    /* Out-parameters untouched by all of the failures above. */
    CHECK(memcmp(&s, &pattern, sizeof s) == 0);
    CHECK(out == 42.0);
}

/* ---------------------------------------------------------------------------------------- */
/* lamina_evaluate                                                                            */

/* The temporary directory of the data files. */
static char g_dir[64];

static char *data_file(const char *name, const char *content) {
    size_t len = strlen(g_dir) + 1 + strlen(name) + 1;
    char *path = (char *)malloc(len);
    if (path == NULL) {
        return NULL;
    }
    snprintf(path, len, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        free(path);
        return NULL;
    }
    fputs(content, f);
    fclose(f);
    return path;
}

static const char *const QA_JSONL =
    "{\"id\": \"q1\", \"context\": \"The village of Brenmoor has a blue lighthouse, built in 1872 by the engineer "
    "Tomas Vell.\", \"question\": \"Who built the blue lighthouse of Brenmoor?\", \"answers\": [\"Tomas Vell\"]}\n"
    "\n"
    "{\"id\": \"q2\", \"context\": \"Kira's bakery in Oldport sells forty loaves of rye bread every morning.\", "
    "\"question\": \"How many loaves of rye bread does Kira's bakery sell every morning?\", "
    "\"answers\": [\"forty\", \"40\"]}\n"
    "{\"id\": \"q3\", \"context\": \"The river Olna flows from the Serat mountains into Lake Pim.\", "
    "\"question\": \"Into which lake does the river Olna flow?\", \"answer\": \"Lake Pim\"}\n";

static const char *const TRANSLATE_JSONL =
    "{\"id\": 1, \"source\": \"The cat is sleeping.\", \"reference\": \"Le chat dort.\"}\n"
    "{\"id\": 2, \"source\": \"I like apples.\", \"references\": [\"J'aime les pommes.\", \"J'adore les pommes.\"]}\n";

static const char *const CHOICE_JSONL =
    "{\"question\": \"The sun rises in the\", \"choices\": [\"east\", \"banana\"], \"label\": 0}\n"
    "{\"question\": \"Two plus two equals\", \"choices\": [\"purple\", \"four\"], \"label\": 1}\n"
    "{\"question\": \"Water freezes when it gets very\", \"choices\": [\"cold\", \"loud\", \"polite\"], \"label\": 0}\n";

static const char *const PROSE =
    "The town of Hallow Creek sits in a narrow valley between two old forests. Every spring, the river that runs "
    "through its center swells with melted snow, and the children gather on the stone bridge to watch the water "
    "rush past. The baker opens his shop before sunrise, and the smell of fresh bread drifts down the main street "
    "long before the first shutters are raised. In the afternoon, farmers bring their carts to the square and sell "
    "apples, cheese and honey to anyone who passes by.\n\n"
    "Most of the people who live in Hallow Creek have known each other for their whole lives. They meet at the "
    "market, at the small library next to the post office, and at the long wooden tables of the inn on Friday "
    "evenings. Visitors are rare, but when a stranger does arrive, the news travels from house to house faster than "
    "the wind. The innkeeper always offers newcomers a bowl of soup and asks where they came from and where they "
    "plan to go next.\n\n"
    "In the autumn, the forests turn red and gold, and the whole valley smells of wood smoke. The school holds a "
    "festival at the end of the harvest, with music, games and a large bonfire on the hill above the town. Old "
    "stories are told around the fire, about travellers who lost their way in the woods and about the wolf that "
    "once followed a shepherd home. When the winter comes, the roads are often closed by snow for weeks, and the "
    "town waits patiently for the first warm days of the next year.\n";

typedef struct {
    int calls;
    size_t first_done, last_done, last_total;
    int bad;            /* done went backwards, exceeded total, or total changed */
    size_t stop_at;     /* return false once done >= stop_at; SIZE_MAX = never */
    lamina_session *session;
    lamina_status reentrant; /* status of a call on the same session from inside the callback */
    lamina_status reentrant_const; /* status of a const getter on it from there */
} progress_state;

static progress_state progress_init(size_t stop_at, lamina_session *session) {
    progress_state p;
    memset(&p, 0, sizeof p);
    p.stop_at = stop_at;
    p.session = session;
    p.reentrant = LAMINA_STATUS_OK;
    p.reentrant_const = LAMINA_STATUS_ERROR_PANIC; /* not called yet */
    return p;
}

static bool on_progress(size_t done, size_t total, void *user_data) {
    progress_state *p = (progress_state *)user_data;
    if (p->calls == 0) {
        p->first_done = done;
    } else if (done < p->last_done || total != p->last_total) {
        p->bad++;
    }
    if (done > total) {
        p->bad++;
    }
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    if (p->session != NULL && p->calls == 1) {
        /* A call that takes the session is BUSY; a const getter runs concurrently. */
        size_t n_adapters = 0;
        p->reentrant = lamina_session_n_adapters(p->session, &n_adapters);
        uint32_t n_ctx = 0;
        p->reentrant_const = lamina_session_n_ctx(p->session, &n_ctx);
    }
    return done < p->stop_at;
}

/* The number after "name": inside the report's "metrics" object, or NAN if it is not there. */
static double metric(const char *json, const char *name) {
    const char *m = strstr(json, "\"metrics\":{");
    if (m == NULL) {
        return NAN;
    }
    m += strlen("\"metrics\":{");
    const char *end = strchr(m, '}'); /* the values are numbers: no nested braces */
    if (end == NULL) {
        return NAN;
    }
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *k = strstr(m, key);
    if (k == NULL || k > end) {
        return NAN;
    }
    return strtod(k + strlen(key), NULL);
}

static int has(const char *json, const char *needle) {
    return json != NULL && strstr(json, needle) != NULL;
}

/* Run lamina_evaluate and return the report (to free with lamina_string_free), or NULL. */
static char *run_eval(lamina_session *session, const char *task, const char *path, const lamina_eval_params *params,
                      progress_state *progress) {
    char *json = NULL;
    lamina_status st = lamina_evaluate(session, task, path, params, progress != NULL ? on_progress : NULL, progress,
                                       &json);
    if (st != LAMINA_STATUS_OK) {
        char why[1024];
        snprintf(why, sizeof why, "lamina_evaluate(%s, %s): %s: %s", task, path, lamina_status_name(st),
                 lamina_last_error_message());
        record(0, __LINE__, why);
        return NULL;
    }
    CHECK(json != NULL && json[0] == '{');
    return json;
}

static void test_eval_params(void) {
    lamina_eval_params p;
    memset(&p, 0xAB, sizeof p);
    EXPECT_OK(lamina_eval_params_init(&p, sizeof p));
    CHECK(p.struct_size == sizeof p);
    CHECK(p.limit == 0 && p.perplexity_ctx == 0 && p.source_lang == NULL && p.target_lang == NULL);
    EXPECT_ERROR(lamina_eval_params_init(NULL, sizeof p), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "lamina_eval_params");
    EXPECT_ERROR(lamina_eval_params_init(&p, 2), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "struct_size");
}

static void test_eval_errors(lamina_session *session, const char *qa_path) {
    char *json = (char *)(void *)&g_dir; /* a sentinel: must stay unchanged on failure */
    char *const sentinel = json;
    EXPECT_ERROR(lamina_evaluate(session, "summarize", qa_path, NULL, NULL, NULL, &json),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "unknown task `summarize`");
    EXPECT_ERROR(lamina_evaluate(session, "qa", "/nonexistent/lamina/qa.jsonl", NULL, NULL, NULL, &json),
                 LAMINA_STATUS_ERROR_DATA, "file not found");
    {
        const char *msg = lamina_last_error_message();
        CHECKF(strstr(msg, "/nonexistent/lamina/qa.jsonl") != NULL, "message does not name the file: %s", msg);
    }
    /* Line 3 is broken (line 2 is blank and skipped, line 1 is fine). */
    char *bad = data_file("bad.jsonl",
                          "{\"question\": \"Q?\", \"answers\": [\"a\"]}\n\n{\"question\": \"R?\", \"answers\": [\"b\"\n");
    EXPECT_ERROR(lamina_evaluate(session, "qa", bad, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_DATA,
                 "bad.jsonl:3: invalid JSON");
    char *missing = data_file("missing.jsonl", "{\"question\": \"Q?\", \"answers\": [\"a\"]}\n{\"question\": \"R?\"}\n");
    EXPECT_ERROR(lamina_evaluate(session, "qa", missing, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_DATA,
                 "missing.jsonl:2: missing `answers`");
    char *label = data_file("label.jsonl", "{\"question\": \"Q\", \"choices\": [\"a\", \"b\"], \"label\": 5}\n");
    EXPECT_ERROR(lamina_evaluate(session, "choice", label, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_DATA,
                 "label.jsonl:1:");
    /* Translation records without languages, and none given. */
    char *tr = data_file("nolang.jsonl", "{\"source\": \"Hello.\", \"reference\": \"Bonjour.\"}\n");
    EXPECT_ERROR(lamina_evaluate(session, "translate", tr, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_DATA,
                 "source_lang");
    /* A perplexity context larger than the session's. */
    lamina_eval_params p;
    EXPECT_OK(lamina_eval_params_init(&p, sizeof p));
    p.perplexity_ctx = 100000;
    EXPECT_ERROR(lamina_evaluate(session, "perplexity", qa_path, &p, NULL, NULL, &json),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "perplexity_ctx");
    /* Params whose struct_size was never set. */
    memset(&p, 0, sizeof p);
    EXPECT_ERROR(lamina_evaluate(session, "qa", qa_path, &p, NULL, NULL, &json), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "struct_size");
    /* NULLs, invalid UTF-8, a dead handle. */
    EXPECT_ERROR(lamina_evaluate(NULL, "qa", qa_path, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "session");
    EXPECT_ERROR(lamina_evaluate(session, NULL, qa_path, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "task");
    EXPECT_ERROR(lamina_evaluate(session, "qa", NULL, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "data_path");
    EXPECT_ERROR(lamina_evaluate(session, "qa", qa_path, NULL, NULL, NULL, NULL), LAMINA_STATUS_ERROR_NULL_ARGUMENT,
                 "out_report_json");
    EXPECT_ERROR(lamina_evaluate(session, "q\xff", qa_path, NULL, NULL, NULL, &json), LAMINA_STATUS_ERROR_INVALID_UTF8,
                 "task");
    EXPECT_ERROR(lamina_evaluate(session, "qa", "/tmp/\xff.jsonl", NULL, NULL, NULL, &json),
                 LAMINA_STATUS_ERROR_INVALID_UTF8, "data_path");
    EXPECT_ERROR(lamina_evaluate((lamina_session *)(void *)&g_dir[1], "qa", qa_path, NULL, NULL, NULL, &json),
                 LAMINA_STATUS_ERROR_INVALID_HANDLE, "not a live");
    CHECK(json == sentinel);
    free(bad);
    free(missing);
    free(label);
    free(tr);
}

static void test_eval_qa(lamina_session *session, const char *path) {
    progress_state pr = progress_init(SIZE_MAX, session);
    char *json = run_eval(session, "qa", path, NULL, &pr);
    if (json == NULL) {
        return;
    }
    double em = metric(json, "exact_match");
    double f1 = metric(json, "f1");
    CHECKF(em >= 0.0 && em <= 100.0, "exact_match %f in %s", em, json);
    CHECKF(f1 >= em - 1e-9 && f1 <= 100.0, "f1 %f (exact_match %f)", f1, em);
    CHECK(has(json, "\"task\":\"qa\""));
    CHECK(has(json, "\"cancelled\":false"));
    CHECK(has(json, "\"evaluated\":3") && has(json, "\"total\":3"));
    CHECK(has(json, "\"id\":\"q3\"") && has(json, "\"prediction\":"));
    /* Progress: 0 first, monotonic, done == total at the end; one call per example plus the
     * final one. */
    CHECKF(pr.calls == 4 && pr.first_done == 0 && pr.last_done == 3 && pr.last_total == 3 && pr.bad == 0,
           "progress: %d calls, first %zu, last %zu/%zu, %d bad", pr.calls, pr.first_done, pr.last_done,
           pr.last_total, pr.bad);
    /* The session is busy (held by the evaluation) inside the callback. */
    CHECKF(pr.reentrant == LAMINA_STATUS_ERROR_BUSY, "re-entrant call: %s", lamina_status_name(pr.reentrant));
    CHECKF(pr.reentrant_const == LAMINA_STATUS_OK, "re-entrant const call: %s", lamina_status_name(pr.reentrant_const));
    fprintf(stderr, "    qa: exact_match %.1f, f1 %.1f\n", em, f1);
    lamina_string_free(json);
}

static void test_eval_cancel(lamina_session *session, const char *qa_path, const char *choice_path) {
    /* Stop after one example of two (limit = 2): a success, marked cancelled, scored on one. */
    lamina_eval_params p;
    EXPECT_OK(lamina_eval_params_init(&p, sizeof p));
    p.limit = 2;
    progress_state pr = progress_init(1, NULL);
    char *json = run_eval(session, "qa", qa_path, &p, &pr);
    if (json != NULL) {
        CHECKF(has(json, "\"cancelled\":true") && has(json, "\"evaluated\":1") && has(json, "\"total\":2"),
               "cancelled qa report: %s", json);
        CHECK(!isnan(metric(json, "exact_match")));
        CHECKF(pr.calls == 2 && pr.last_done == 1, "progress: %d calls, last %zu", pr.calls, pr.last_done);
        lamina_string_free(json);
    }
    /* Stop before the first: nothing evaluated, no metrics. */
    pr = progress_init(0, NULL);
    json = run_eval(session, "choice", choice_path, NULL, &pr);
    if (json != NULL) {
        CHECKF(has(json, "\"cancelled\":true") && has(json, "\"evaluated\":0") && has(json, "\"metrics\":{}"),
               "cancelled choice report: %s", json);
        CHECK(pr.calls == 1);
        lamina_string_free(json);
    }
}

static void test_eval_translate(lamina_session *session, const char *path) {
    lamina_eval_params p;
    EXPECT_OK(lamina_eval_params_init(&p, sizeof p));
    p.source_lang = "en";
    p.target_lang = "French";
    progress_state pr = progress_init(SIZE_MAX, NULL);
    char *json = run_eval(session, "translate", path, &p, &pr);
    if (json == NULL) {
        return;
    }
    double bleu = metric(json, "bleu");
    double chrf = metric(json, "chrf");
    CHECKF(bleu >= 0.0 && bleu <= 100.0, "bleu %f in %s", bleu, json);
    CHECKF(chrf >= 0.0 && chrf <= 100.0, "chrf %f", chrf);
    CHECK(!isnan(metric(json, "bleu_p1")) && !isnan(metric(json, "brevity_penalty")) && metric(json, "ref_len") > 0);
    CHECK(has(json, "\"cancelled\":false") && has(json, "\"evaluated\":2"));
    CHECK(pr.last_done == 2 && pr.last_total == 2 && pr.bad == 0);
    fprintf(stderr, "    translate: bleu %.1f, chrf %.1f\n", bleu, chrf);
    lamina_string_free(json);
}

static void test_eval_choice(lamina_session *session, const char *path) {
    progress_state pr = progress_init(SIZE_MAX, NULL);
    char *json = run_eval(session, "choice", path, NULL, &pr);
    if (json == NULL) {
        return;
    }
    double acc = metric(json, "accuracy");
    double norm = metric(json, "accuracy_norm");
    /* Three examples: the accuracies are multiples of 100/3. */
    double thirds = acc * 3.0 / 100.0;
    CHECKF(acc >= 0.0 && acc <= 100.0 && fabs(thirds - floor(thirds + 0.5)) < 1e-6, "accuracy %f in %s", acc, json);
    CHECKF(norm >= 0.0 && norm <= 100.0, "accuracy_norm %f", norm);
    CHECK(has(json, "\"evaluated\":3") && has(json, "\"logprob_sums\":["));
    CHECK(pr.calls == 4 && pr.last_done == 3 && pr.last_total == 3 && pr.bad == 0);
    fprintf(stderr, "    choice: accuracy %.1f, accuracy_norm %.1f\n", acc, norm);
    lamina_string_free(json);
}

static void test_eval_perplexity(lamina_session *session, const char *path) {
    lamina_eval_params p;
    EXPECT_OK(lamina_eval_params_init(&p, sizeof p));
    p.perplexity_ctx = 64;
    progress_state pr = progress_init(SIZE_MAX, NULL);
    char *json = run_eval(session, "perplexity", path, &p, &pr);
    if (json == NULL) {
        return;
    }
    double ppl = metric(json, "ppl");
    CHECKF(ppl > 1.0 && ppl < 1000.0, "ppl %f in %s", ppl, json);
    CHECK(metric(json, "ppl_stderr") >= 0.0);
    CHECKF(fabs(exp(metric(json, "mean_nll")) - ppl) < 1e-6 * ppl, "exp(mean_nll) != ppl");
    CHECK(has(json, "\"task\":\"perplexity\"") && has(json, "\"n_ctx\":64") && has(json, "\"cancelled\":false"));
    CHECKF(pr.last_total >= 2 && pr.last_done == pr.last_total && pr.calls == (int)pr.last_total + 1 && pr.bad == 0,
           "progress: %d calls, last %zu/%zu", pr.calls, pr.last_done, pr.last_total);
    fprintf(stderr, "    perplexity: %.2f over %zu chunks of 64 tokens\n", ppl, pr.last_total);
    lamina_string_free(json);

    /* Too short a text for two chunks: a data error naming the file. */
    char *shortp = data_file("short.txt", "Just a few words.\n");
    char *out = NULL;
    EXPECT_ERROR(lamina_evaluate(session, "perplexity", shortp, &p, NULL, NULL, &out),
                 LAMINA_STATUS_ERROR_DATA, "short.txt");
    CHECK(out == NULL);
    free(shortp);
}

int main(void) {
    double t0 = now_s();
    test_status();
    TIMED(test_bleu());
    TIMED(test_chrf());
    TIMED(test_squad());
    TIMED(test_metric_errors());
    TIMED(test_eval_params());

    char *model_path = NULL;
    EXPECT_OK(lamina_default_model_path(&model_path));
    struct stat st;
    if (model_path == NULL || stat(model_path, &st) != 0) {
        fprintf(stderr, "test_eval: the default model (%s) is missing; run scripts/fetch-model.sh\n",
                model_path != NULL ? model_path : "?");
        record(0, __LINE__, "default model present");
        return check_summary();
    }
    lamina_model *model = NULL;
    EXPECT_OK(lamina_model_load(model_path, NULL, &model));
    lamina_session_params sp;
    EXPECT_OK(lamina_session_params_init(&sp, sizeof sp));
    sp.n_ctx = 1024;
    sp.n_threads = 1; /* robust on a busy 2-core machine; see test_abi.c */
    lamina_session *session = NULL;
    if (model != NULL) {
        EXPECT_OK(lamina_session_new(model, &sp, &session));
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina-eval-XXXXXX");
    if (session == NULL || mkdtemp(g_dir) == NULL) {
        record(0, __LINE__, "a session and a temporary directory");
        return check_summary();
    }
    char *qa = data_file("qa.jsonl", QA_JSONL);
    char *translate = data_file("translate.jsonl", TRANSLATE_JSONL);
    char *choice = data_file("choice.jsonl", CHOICE_JSONL);
    char *prose = data_file("prose.txt", PROSE);
    if (qa != NULL && translate != NULL && choice != NULL && prose != NULL) {
        TIMED(test_eval_errors(session, qa));
        TIMED(test_eval_qa(session, qa));
        TIMED(test_eval_cancel(session, qa, choice));
        TIMED(test_eval_translate(session, translate));
        TIMED(test_eval_choice(session, choice));
        TIMED(test_eval_perplexity(session, prose));
    } else {
        record(0, __LINE__, "writing the data files");
    }

    /* The session still generates normally after evaluations. */
    lamina_sampling_params s;
    EXPECT_OK(lamina_sampling_params_init(&s, sizeof s));
    s.max_tokens = 4;
    char *text = NULL;
    EXPECT_OK(lamina_session_generate(session, "The capital of France is", &s, NULL, NULL, &text, NULL));
    CHECKF(text != NULL && strstr(text, "Paris") != NULL, "after evaluation: \"%s\"", text != NULL ? text : "(NULL)");
    lamina_string_free(text);

    const char *names[] = {"qa.jsonl",    "translate.jsonl", "choice.jsonl", "prose.txt", "bad.jsonl",
                           "missing.jsonl", "label.jsonl",   "nolang.jsonl", "short.txt"};
    for (size_t i = 0; i < N_OF(names); i++) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
    free(qa);
    free(translate);
    free(choice);
    free(prose);
    lamina_session_free(session);
    lamina_model_free(model);
    lamina_string_free(model_path);

    fprintf(stderr, "test_eval: %.1f s\n", now_s() - t0);
    return check_summary();
}

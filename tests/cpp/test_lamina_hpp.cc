// test_lamina_hpp: tests of the C++ interface include/lamina.hpp, without a test framework.
//
// What the header promises over the C ABI: RAII handles that are move-only and free exactly
// once; lamina::Error with the status and lamina_last_error_message() for every failure; text
// returned as std::string, equal to the concatenation of the streamed pieces; a callable that
// returns false stops the call; an exception thrown by a callable reaches the caller unchanged
// and leaves the object usable; options whose defaults are the library's. Every error case
// checks the status AND a substring of the message, so a stale message cannot pass.
//
// Prints failures on stderr and "N passed, M failed" on stdout; exits 1 if anything failed.
// Needs the default model (scripts/fetch-model.sh; $LAMINA_MODEL overrides the path).
//
//   test_lamina_hpp [DATA_DIR]     DATA_DIR: tests/data (default; run from the repository root)
//
// Build: c++ -std=c++17 -pthread -I include tests/cpp/test_lamina_hpp.cc -L target/release -llamina_ffi

#include "lamina.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

int g_passed = 0;
int g_failed = 0;

void record(bool ok, int line, const std::string &what) {
    if (ok) {
        g_passed++;
    } else {
        g_failed++;
        std::fprintf(stderr, "FAIL (test_lamina_hpp.cc:%d): %s\n", line, what.c_str());
    }
}

#define CHECK(cond) record((cond), __LINE__, #cond)
#define CHECKF(cond, why) record((cond), __LINE__, std::string(#cond) + ": " + (why))

// `body` must throw lamina::Error with `status` and a message containing `needle`.
template <typename F>
void expect_error(int line, const char *what, F &&body, lamina_status status, const char *needle) {
    try {
        body();
        record(false, line, std::string(what) + ": no exception, expected " + lamina::status_name(status));
    } catch (const lamina::Error &e) {
        const std::string message = e.what();
        const bool ok = e.status() == status && !message.empty() && message.find(needle) != std::string::npos &&
                        std::strcmp(e.status_name(), lamina::status_name(status)) == 0;
        record(ok, line,
               std::string(what) + ": got " + e.status_name() + " \"" + message + "\", expected " +
                   lamina::status_name(status) + " mentioning \"" + needle + "\"");
    } catch (const std::exception &e) {
        record(false, line, std::string(what) + ": threw something else: " + e.what());
    }
}

#define EXPECT_ERROR(expr, status, needle) \
    expect_error(__LINE__, #expr, [&] { (void)(expr); }, (status), (needle))

// Thrown by the tests' callables: not a std::exception, so the test sees that the wrapper
// rethrows whatever the callable threw, not a translation of it.
struct Boom {
    int piece;
};

const char *const PROMPT = "The capital of France is";
std::string g_model_path;
std::string g_data_dir = "tests/data";

// Sessions of one thread over a 512-token context: results do not depend on the thread count,
// and llama.cpp's spinning worker threads crawl on an oversubscribed machine.
lamina::SessionParams small_session(uint32_t n_sequences = 1) {
    lamina::SessionParams p;
    p.n_ctx = 512;
    p.n_threads = 1;
    p.n_sequences = n_sequences;
    return p;
}

template <typename T>
void self_move_assign(T &a, T &b) {
    a = std::move(b);
}

// ------------------------------------------------------------------------------------------
// Without a model

// Each options struct mirrors its C struct field by field: when the C struct gains a field (at
// its end, as the ABI rules say), this fails until lamina.hpp mirrors it too.
constexpr std::size_t round_up(std::size_t n, std::size_t align) { return (n + align - 1) / align * align; }
#define LAST_FIELD_IS(T, field) \
    static_assert(sizeof(T) == round_up(offsetof(T, field) + sizeof(T::field), alignof(T)), \
                  #T " has a field after " #field ": mirror it in lamina.hpp")
LAST_FIELD_IS(lamina_model_params, use_mlock);
LAST_FIELD_IS(lamina_session_params, n_sequences);
LAST_FIELD_IS(lamina_sampling_params, json_schema);
LAST_FIELD_IS(lamina_train_params, checkpoint_every);
LAST_FIELD_IS(lamina_eval_params, target_lang);
LAST_FIELD_IS(lamina_corpus_params, seed);
LAST_FIELD_IS(lamina_tokenizer_train_params, add_bos_token);
LAST_FIELD_IS(lamina_init_params, embeddings_from);
LAST_FIELD_IS(lamina_model_spec, vocab_size);

static_assert(std::is_base_of<std::runtime_error, lamina::Error>::value, "lamina::Error is a std::runtime_error");
static_assert(!std::is_copy_constructible<lamina::Model>::value && !std::is_copy_assignable<lamina::Model>::value,
              "handles are move-only");
static_assert(!std::is_copy_constructible<lamina::Session>::value, "handles are move-only");
static_assert(!std::is_copy_constructible<lamina::Adapter>::value, "handles are move-only");
static_assert(!std::is_copy_constructible<lamina::Trainer>::value, "handles are move-only");
static_assert(!std::is_copy_constructible<lamina::Pretrainer>::value, "handles are move-only");
static_assert(std::is_nothrow_move_constructible<lamina::Session>::value &&
                  std::is_nothrow_move_assignable<lamina::Session>::value,
              "handles move without throwing");

void test_basics() {
    CHECK(std::strcmp(lamina::version(), LAMINA_VERSION_STRING) == 0);
    CHECK(std::strcmp(lamina::status_name(LAMINA_STATUS_ERROR_BUSY), "LAMINA_STATUS_ERROR_BUSY") == 0);

    const lamina::Error e(LAMINA_STATUS_ERROR_DATA, "x.jsonl:3: bad");
    CHECK(e.status() == LAMINA_STATUS_ERROR_DATA && std::string(e.what()) == "x.jsonl:3: bad");
    CHECK(std::strcmp(e.status_name(), "LAMINA_STATUS_ERROR_DATA") == 0);

    // Defaults come from the library's _init functions.
    lamina_sampling_params cs;
    CHECK(lamina_sampling_params_init(&cs, sizeof cs) == LAMINA_STATUS_OK);
    const lamina::Sampling s;
    CHECK(s.temperature == cs.temperature && s.top_k == cs.top_k && s.top_p == cs.top_p && s.min_p == cs.min_p &&
          s.repeat_penalty == cs.repeat_penalty && s.repeat_last_n == cs.repeat_last_n && s.seed == cs.seed &&
          s.max_tokens == cs.max_tokens && s.stop.empty() && s.grammar.empty() && s.json_schema.empty());
    CHECK(s.max_tokens == 256 && s.temperature == 0.0f);
    const lamina::Sampling g = lamina::Sampling::greedy(5);
    CHECK(g.max_tokens == 5 && g.temperature == 0.0f && g.top_k == cs.top_k);

    const lamina::SessionParams sp;
    CHECK(sp.n_batch == 512 && sp.n_ctx == 0 && sp.n_threads == 0 && sp.n_sequences == 1 && sp.flash_attention == -1);
    const lamina_session_params csp = sp.to_c();
    CHECK(csp.struct_size == sizeof(lamina_session_params) && csp.n_batch == 512);
    const lamina::ModelParams mp;
    CHECK(mp.n_gpu_layers == 0 && mp.use_mmap && !mp.use_mlock);
    lamina::TrainParams tp;
    CHECK(tp.rank == 8 && tp.steps == 100 && tp.batch_size == 4 && tp.targets.empty() &&
          tp.schedule == LAMINA_TRAIN_SCHEDULE_COSINE);
    CHECK(tp.to_c().targets == nullptr);
    tp.targets = "q,v";
    const lamina_train_params ctp = tp.to_c();
    CHECK(ctp.targets != nullptr && std::strcmp(ctp.targets, "q,v") == 0 && ctp.rank == 8);
    lamina::EvalParams ep;
    CHECK(ep.limit == 0 && ep.source_lang.empty() && ep.to_c().source_lang == nullptr);
    ep.target_lang = "de";
    CHECK(ep.to_c().target_lang != nullptr && std::strcmp(ep.to_c().target_lang, "de") == 0);

    // Stop strings go to C as an array and come back from it.
    lamina::Sampling with_stop;
    with_stop.stop = {"\n", "END"};
    const lamina::detail::CSampling c(with_stop);
    CHECK(c.params.n_stop == 2 && std::strcmp(c.params.stop[0], "\n") == 0 && std::strcmp(c.params.stop[1], "END") == 0);
    CHECK(lamina::Sampling(c.params).stop == with_stop.stop);
    const lamina::detail::CSampling none(s);
    CHECK(none.params.n_stop == 0 && none.params.stop == nullptr && none.params.grammar == nullptr &&
          none.params.json_schema == nullptr);
    lamina::Sampling with_grammar;
    with_grammar.grammar = "root ::= \"x\"";
    const lamina::detail::CSampling cg(with_grammar);
    CHECK(cg.params.grammar != nullptr && std::strcmp(cg.params.grammar, "root ::= \"x\"") == 0 &&
          cg.params.json_schema == nullptr && lamina::Sampling(cg.params).grammar == with_grammar.grammar);
    with_stop.stop.push_back(std::string("a\0b", 3));
    EXPECT_ERROR(lamina::detail::CSampling(with_stop), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "NUL");

    // Metrics.
    const std::vector<std::string> hyps = {"the cat sat on the mat", "a dog barked loudly"};
    const lamina::BleuScore b = lamina::bleu(hyps, hyps);
    CHECKF(std::fabs(b.score - 100.0) < 1e-9, std::to_string(b.score));
    CHECK(b.struct_size == sizeof(lamina_bleu_score) && b.sys_len == b.ref_len && b.sys_len == 10);
    const lamina::BleuScore b2 = lamina::bleu(hyps, std::vector<std::vector<std::string>>{{"x", "y"}, hyps});
    CHECKF(std::fabs(b2.score - 100.0) < 1e-9, std::to_string(b2.score));
    CHECKF(std::fabs(lamina::chrf(hyps, hyps) - 100.0) < 1e-9, std::to_string(lamina::chrf(hyps, hyps)));
    CHECK(lamina::squad_exact_match("The Paris.", {"paris", "Lyon"}) == 1.0);
    CHECK(lamina::squad_exact_match("Lyon", {"paris"}) == 0.0);
    CHECK(std::fabs(lamina::squad_f1("big red house", {"red house"}) - 0.8) < 1e-9);
    EXPECT_ERROR(lamina::bleu(hyps, std::vector<std::string>{"only one"}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "reference stream has 1 segments");
    EXPECT_ERROR(lamina::bleu({}, std::vector<std::string>{}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
    EXPECT_ERROR(lamina::chrf(hyps, std::vector<std::vector<std::string>>{}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
    EXPECT_ERROR(lamina::squad_f1("x", {}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");

    // Loading errors.
    EXPECT_ERROR(lamina::Model("/nonexistent/no-such-model.gguf"), LAMINA_STATUS_ERROR_MODEL_NOT_FOUND,
                 "no-such-model.gguf");
    EXPECT_ERROR(lamina::Model(std::string("/tmp/a\0b.gguf", 13)), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "model path contains a NUL byte");
    EXPECT_ERROR(lamina::Trainer::create("/nonexistent/no-such-model.gguf", g_data_dir + "/made_up_facts.jsonl"),
                 LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, "no-such-model.gguf");

    CHECK(!lamina::default_model_path().empty());
    const std::string backends = lamina::backends_json();
    CHECK(backends.find("\"devices\"") != std::string::npos);
    EXPECT_ERROR(lamina::backends_load("/nonexistent/backends"), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
}

// ------------------------------------------------------------------------------------------
// A model and a session

void test_model(const lamina::Model &model) {
    CHECK(static_cast<bool>(model));
    const std::string info = model.info_json();
    CHECK(!info.empty() && info.front() == '{');
    CHECK(!model.meta("general.architecture").empty());
    EXPECT_ERROR(model.meta("no.such.key"), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no.such.key");
    EXPECT_ERROR(model.load_adapter("/nonexistent/adapter.gguf"), LAMINA_STATUS_ERROR_IO, "adapter.gguf");
    EXPECT_ERROR(lamina::Session(model, [] {
                     lamina::SessionParams p = small_session();
                     p.n_batch = 0;
                     return p;
                 }()),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_batch");
}

void test_generate(lamina::Session &session) {
    CHECK(session.n_ctx() == 512);
    const lamina::Sampling greedy = lamina::Sampling::greedy(8);

    // Greedy is deterministic: the same text twice.
    lamina::GenerationInfo info;
    const std::string ref = session.generate(PROMPT, greedy, nullptr, &info);
    CHECK(!ref.empty());
    CHECK(info.generated_tokens >= 1 && info.generated_tokens <= 8 && info.prompt_tokens > 0);
    CHECK(info.stop_reason == LAMINA_STOP_REASON_MAX_TOKENS || info.stop_reason == LAMINA_STOP_REASON_END_OF_GENERATION);
    CHECKF(session.generate(PROMPT, greedy) == ref, ref);
    std::printf("greedy continuation: \"%s\"\n", ref.c_str());

    // Streaming: the pieces concatenate to the returned text.
    std::string streamed;
    int pieces = 0;
    const std::string text = session.generate(PROMPT, greedy, [&](std::string_view piece) {
        streamed.append(piece);
        pieces++;
        return true;
    });
    CHECKF(text == ref && streamed == ref, streamed);
    CHECK(pieces >= 2);

    // A callable returning false stops after that piece.
    std::string first;
    int calls = 0;
    lamina::GenerationInfo stopped;
    const std::string cut = session.generate(
        PROMPT, greedy,
        [&](std::string_view piece) {
            calls++;
            first = std::string(piece);
            return false;
        },
        &stopped);
    CHECK(calls == 1 && cut == first && !cut.empty());
    CHECK(cut.size() < ref.size() && ref.compare(0, cut.size(), cut) == 0);
    CHECK(stopped.stop_reason == LAMINA_STOP_REASON_CALLBACK_STOPPED && stopped.generated_tokens < 8);

    // A callable that throws: the exception reaches the caller unchanged, the callable is not
    // called again, `info` is left alone, and the session works afterwards.
    calls = 0;
    lamina::GenerationInfo untouched;
    untouched.generated_tokens = 12345;
    bool caught = false;
    try {
        session.generate(
            PROMPT, greedy,
            [&](std::string_view) -> bool {
                calls++;
                if (calls == 2) {
                    throw Boom{calls};
                }
                return true;
            },
            &untouched);
    } catch (const Boom &b) {
        caught = b.piece == 2;
    }
    CHECK(caught && calls == 2 && untouched.generated_tokens == 12345);
    CHECK(session.generate(PROMPT, greedy) == ref);
    // Also a std::exception, thrown by the first piece.
    std::string message;
    try {
        session.generate(PROMPT, greedy, [](std::string_view) -> bool { throw std::out_of_range("from the callable"); });
    } catch (const std::out_of_range &e) {
        message = e.what();
    }
    CHECK(message == "from the callable");
    CHECK(session.generate(PROMPT, greedy) == ref);

    // Stop strings: generation ends before the first occurrence.
    const std::size_t at = ref.find(' ', 2);
    if (at != std::string::npos && at + 3 <= ref.size()) {
        lamina::Sampling with_stop = greedy;
        with_stop.stop = {ref.substr(at, 3)};
        lamina::GenerationInfo si;
        const std::string before = session.generate(PROMPT, with_stop, nullptr, &si);
        CHECKF(before == ref.substr(0, ref.find(with_stop.stop[0])), before);
        CHECK(si.stop_reason == LAMINA_STOP_REASON_STOP_STRING);
    } else {
        record(false, __LINE__, "the reference text has no second word to stop at: \"" + ref + "\"");
    }

    // Structured output: a grammar constrains the text; a grammar and a schema together are
    // refused by lamina.
    lamina::Sampling yes_no = greedy;
    yes_no.grammar = "root ::= \"yes\" | \"no\"";
    const std::string yn = session.generate("Is Paris in France? Answer:", yes_no);
    CHECKF(yn == "yes" || yn == "no", yn);
    yes_no.json_schema = "{\"type\": \"boolean\"}";
    EXPECT_ERROR(session.generate(PROMPT, yes_no), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "not both");

    // cancel() from the callable (it may be called from any thread, this one included).
    lamina::GenerationInfo ci;
    session.generate(
        PROMPT, greedy,
        [&](std::string_view) {
            session.cancel();
            return true;
        },
        &ci);
    CHECK(ci.stop_reason == LAMINA_STOP_REASON_CANCELLED);

    // cancel() from another thread while a long generation runs.
    std::atomic<bool> started{false};
    std::atomic<bool> finished{false};
    std::thread canceller([&] {
        while (!started.load() && !finished.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (!finished.load()) {
            session.cancel();
        }
    });
    lamina::GenerationInfo ti;
    try {
        session.generate(
            PROMPT, lamina::Sampling::greedy(400),
            [&](std::string_view) {
                started.store(true);
                return true;
            },
            &ti);
    } catch (...) {
        finished.store(true);
        canceller.join();
        throw;
    }
    finished.store(true);
    canceller.join();
    CHECK(ti.stop_reason == LAMINA_STOP_REASON_CANCELLED && ti.generated_tokens < 400);

    // Bad input: lamina::Error with the status and message, and the session stays usable.
    lamina::Sampling bad = greedy;
    bad.temperature = -0.5f;
    EXPECT_ERROR(session.generate(PROMPT, bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "temperature");
    bad = greedy;
    bad.max_tokens = 0;
    EXPECT_ERROR(session.chat("Hi", bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_tokens");
    bad = greedy;
    bad.top_p = 2.0f;
    EXPECT_ERROR(session.generate(PROMPT, bad, [](std::string_view) { return true; }),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "top_p");
    EXPECT_ERROR(session.generate("", greedy), LAMINA_STATUS_ERROR_EMPTY_PROMPT, "");
    EXPECT_ERROR(session.generate(std::string("a\0b", 3), greedy), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "prompt contains a NUL byte");
    EXPECT_ERROR(session.generate(std::string(4000, 'x') + " y", greedy), LAMINA_STATUS_ERROR_PROMPT_TOO_LONG, "");
    CHECK(session.generate(PROMPT, greedy) == ref);
}

void test_chat_and_tasks(lamina::Session &session) {
    const lamina::Sampling greedy = lamina::Sampling::greedy(8);
    session.set_system_prompt("You are a helpful assistant.");
    std::string streamed;
    lamina::GenerationInfo info;
    const std::string reply = session.chat(
        "What is the capital of France?", greedy,
        [&](std::string_view piece) {
            streamed.append(piece);
            return true;
        },
        &info);
    CHECK(!reply.empty() && reply == streamed);
    std::printf("chat reply: \"%s\"\n", reply.c_str());
    // The second turn reuses the first from the KV cache.
    lamina::GenerationInfo second;
    CHECK(!session.chat("And of Germany?", greedy, nullptr, &second).empty());
    CHECK(second.reused_tokens > 0);
    lamina::GenerationInfo third;
    CHECK(!session.chat("And of Italy?", greedy, nullptr, &third).empty());
    const uint32_t prompt_after_two = third.prompt_tokens;

    // The same conversation again with one more turn before the third: the third turn's
    // prompt is longer exactly when that extra turn stayed in the history.
    const auto third_turn_after = [&](const lamina::TokenCallback &in_between) {
        session.reset();
        session.set_system_prompt("You are a helpful assistant.");
        session.chat("What is the capital of France?", greedy);
        session.chat("And of Germany?", greedy);
        session.chat("Tell me a long story about dragons.", greedy, in_between);
        lamina::GenerationInfo i;
        session.chat("And of Italy?", greedy, nullptr, &i);
        return i.prompt_tokens;
    };
    // A turn whose callable throws is cancelled: the history stays as it was.
    bool caught = false;
    try {
        third_turn_after([](std::string_view) -> bool { throw Boom{3}; });
    } catch (const Boom &b) {
        caught = b.piece == 3;
    }
    CHECK(caught);
    lamina::GenerationInfo after_throw;
    CHECK(!session.chat("And of Italy?", greedy, nullptr, &after_throw).empty());
    CHECKF(after_throw.prompt_tokens == prompt_after_two,
           std::to_string(after_throw.prompt_tokens) + " vs " + std::to_string(prompt_after_two));
    // A turn stopped by its callable returning false is kept (partly).
    const uint32_t after_stop = third_turn_after([](std::string_view) { return false; });
    CHECKF(after_stop > prompt_after_two, std::to_string(after_stop) + " vs " + std::to_string(prompt_after_two));

    session.clear_system_prompt();
    session.reset();
    EXPECT_ERROR(session.chat("", greedy), LAMINA_STATUS_ERROR_EMPTY_PROMPT, "");

    const std::string answer = session.answer("What is the capital of Zorbland?",
                                              "Zorbland is an island. Its capital city is Quellport.");
    CHECKF(answer.find("Quellport") != std::string::npos, answer);
    CHECK(!session.answer("What is two plus two?").empty());
    const std::string de = session.translate("Good morning.", "en", "de");
    CHECK(!de.empty());
    std::printf("answer: \"%s\", translation: \"%s\"\n", answer.c_str(), de.c_str());
    EXPECT_ERROR(session.translate("Good morning.", "en", "xx-klingon"), LAMINA_STATUS_ERROR_UNKNOWN_LANGUAGE,
                 "xx-klingon");

    // Adapters: none applied; the lists are checked here before lamina is called.
    CHECK(session.n_adapters() == 0);
    session.clear_adapters();
    session.set_adapters({}, {});
    CHECK(session.n_adapters() == 0);
    EXPECT_ERROR(session.set_adapters({nullptr}, {}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "1 adapters but 0 scales");
    EXPECT_ERROR(session.set_adapters({nullptr}, {1.0f}), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");

    // Evaluation, with a progress callable that counts, stops, throws.
    lamina::EvalParams ep;
    ep.limit = 2;
    std::size_t last_done = 0, last_total = 0;
    const std::string report =
        session.evaluate("choice", g_data_dir + "/choice.jsonl", ep, [&](std::size_t done, std::size_t total) {
            last_done = done;
            last_total = total;
            return true;
        });
    CHECKF(report.find("\"accuracy\"") != std::string::npos, report);
    CHECK(last_done == 2 && last_total == 2);
    int calls = 0;
    caught = false;
    const std::string stopped = session.evaluate("choice", g_data_dir + "/choice.jsonl", ep,
                                                 [&](std::size_t, std::size_t) { return ++calls < 2; });
    CHECK(calls == 2 && stopped.find("\"cancelled\"") != std::string::npos);
    try {
        session.evaluate("choice", g_data_dir + "/choice.jsonl", ep,
                         [](std::size_t, std::size_t) -> bool { throw Boom{7}; });
    } catch (const Boom &b) {
        caught = b.piece == 7;
    }
    CHECK(caught);
    EXPECT_ERROR(session.evaluate("no-such-task", g_data_dir + "/choice.jsonl"), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "no-such-task");
    EXPECT_ERROR(session.evaluate("qa", g_data_dir + "/no-such-file.jsonl"), LAMINA_STATUS_ERROR_DATA,
                 "no-such-file.jsonl");
}

void test_batch(const lamina::Model &model, const std::string &ref) {
    lamina::Session session(model, small_session(2));
    const lamina::Sampling greedy = lamina::Sampling::greedy(8);
    const std::vector<std::string> prompts = {PROMPT, "Once upon a time"};
    std::vector<std::string> streamed(2);
    std::vector<lamina::GenerationInfo> infos;
    const std::vector<std::string> texts = session.generate_batch(
        prompts, greedy,
        [&](std::size_t i, std::string_view piece) {
            streamed.at(i).append(piece);
            return true;
        },
        &infos);
    CHECK(texts.size() == 2 && infos.size() == 2);
    CHECKF(texts.at(0) == ref, texts.at(0));
    CHECK(!texts.at(1).empty() && streamed == texts);
    CHECK(infos.at(0).generated_tokens >= 1 && infos.at(1).generated_tokens >= 1);

    // Per-prompt options; false stops one sequence only.
    const std::vector<std::string> per =
        session.generate_batch(prompts, std::vector<lamina::Sampling>{greedy, lamina::Sampling::greedy(4)},
                               [](std::size_t i, std::string_view) { return i != 1; });
    CHECK(per.at(0) == ref && !per.at(1).empty() && per.at(1).size() < texts.at(1).size());

    // An exception stops the whole batch and reaches the caller.
    int calls = 0;
    bool caught = false;
    try {
        session.generate_batch(prompts, greedy, [&](std::size_t, std::string_view) -> bool {
            if (++calls == 3) {
                throw Boom{calls};
            }
            return true;
        });
    } catch (const Boom &b) {
        caught = b.piece == 3;
    }
    CHECK(caught && calls == 3);
    CHECK(session.generate_batch(prompts, greedy) == texts);

    EXPECT_ERROR(session.generate_batch(prompts, std::vector<lamina::Sampling>{greedy}),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "2 prompts but 1 sampling options");
    EXPECT_ERROR(session.generate_batch({}, greedy), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
    EXPECT_ERROR(session.generate_batch({PROMPT, PROMPT, PROMPT}, greedy), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
}

// ------------------------------------------------------------------------------------------
// Ownership

// lamina's _free functions report a handle that is not live (freed twice) through
// lamina_last_error_message(): a known message set just before objects are destroyed must
// survive their destruction.
const char *const SENTINEL = "sentinel-for-frees.gguf";
void set_sentinel() {
    EXPECT_ERROR(lamina::Model(std::string("/nonexistent/") + SENTINEL), LAMINA_STATUS_ERROR_MODEL_NOT_FOUND, SENTINEL);
}
bool sentinel_intact() { return std::strstr(lamina_last_error_message(), SENTINEL) != nullptr; }

void test_moves(const std::string &ref) {
    const lamina::Sampling greedy = lamina::Sampling::greedy(8);
    {
        lamina::Model a(g_model_path);
        lamina_model *raw = a.get();
        lamina::Model b(std::move(a));
        CHECK(!a && a.get() == nullptr && b.get() == raw);
        lamina::Model c;
        CHECK(!c);
        c = std::move(b);
        CHECK(!b && c.get() == raw);
        self_move_assign(c, c);
        CHECK(c.get() == raw);
        EXPECT_ERROR(a.info_json(), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");
        EXPECT_ERROR(lamina::Session(a), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");

        lamina::Session s(c, small_session());
        lamina::Session t(std::move(s));
        CHECK(!s && static_cast<bool>(t));
        CHECK(t.generate(PROMPT, greedy) == ref);
        EXPECT_ERROR(s.generate(PROMPT, greedy), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");
        // Assigning onto a live session frees the old one.
        lamina::Session u(c, small_session());
        u = std::move(t);
        CHECK(!t && u.generate(PROMPT, greedy) == ref);

        // release() hands the handle over; the explicit constructor adopts it back.
        lamina_session *released = u.release();
        CHECK(!u && released != nullptr);
        lamina::Session adopted(released);
        CHECK(adopted.generate(PROMPT, greedy) == ref);
        lamina::Adapter no_adapter;
        CHECK(!no_adapter);
        EXPECT_ERROR(no_adapter.info(), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");
        lamina::Trainer no_trainer;
        EXPECT_ERROR(no_trainer.steps(), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "");
        set_sentinel();
        // Destroyed here: empty a, b, s, t, u, no_adapter, no_trainer; live c and adopted.
    }
    CHECKF(sentinel_intact(), lamina_last_error_message());

    // A session keeps its model alive: the model object may go first.
    lamina::Session outlives;
    {
        lamina::Model m(g_model_path);
        outlives = lamina::Session(m, small_session());
    }
    CHECK(outlives.generate(PROMPT, greedy) == ref);
    set_sentinel();
    outlives = lamina::Session();
    CHECKF(sentinel_intact(), lamina_last_error_message());
    // The check itself works: a handle freed twice is reported.
    lamina::Session twice(lamina::Model(g_model_path), small_session());
    lamina_session_free(twice.get());
    set_sentinel();
    twice = lamina::Session();
    CHECK(!sentinel_intact());
}

// ------------------------------------------------------------------------------------------
// Logging and training

void test_log() {
    static std::atomic<int> lines{0};
    lamina::set_log_callback([](lamina_log_level, std::string_view message) {
        if (!message.empty()) {
            lines++;
        }
    },
                             LAMINA_LOG_LEVEL_DEBUG);
    { lamina::Model m(g_model_path); }
    const int seen = lines.load();
    CHECKF(seen > 0, std::to_string(seen));
    // A throwing log callable cannot take the process down: its exceptions are swallowed.
    lamina::set_log_callback([](lamina_log_level, std::string_view) { throw Boom{1}; }, LAMINA_LOG_LEVEL_DEBUG);
    { lamina::Model m(g_model_path); }
    lamina::clear_log_callback();
    { lamina::Model m(g_model_path); }
    CHECK(lines.load() == seen);
}

void test_train() {
    lamina::TrainParams p;
    p.rank = 2;
    p.alpha = 4.0f;
    p.targets = "q,v";
    p.batch_size = 2;
    p.steps = 3;
    p.max_len = 256;
    p.val_fraction = 0.1f;
    p.n_threads = 2;
    lamina::TrainParams bad = p;
    bad.batch_size = 0;
    EXPECT_ERROR(lamina::Trainer::create(g_model_path, g_data_dir + "/made_up_facts.jsonl", bad),
                 LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "batch_size");
    lamina::Trainer trainer = lamina::Trainer::create(g_model_path, g_data_dir + "/made_up_facts.jsonl", p);
    CHECK(trainer.steps().step == 0 && trainer.steps().total_steps == 3);

    // The progress callable's exception stops the run after that step and reaches the caller.
    bool caught = false;
    try {
        trainer.run([](const lamina_train_progress &progress) -> bool {
            throw Boom{static_cast<int>(progress.step)};
        });
    } catch (const Boom &b) {
        caught = b.piece == 1;
    }
    CHECK(caught && trainer.steps().step == 1);
    // The trainer goes on: one explicit step, then a run to the end that cancels itself.
    const double loss = trainer.step();
    CHECK(std::isfinite(loss) && loss > 0.0);
    uint64_t seen = 0;
    trainer.run([&](const lamina_train_progress &progress) {
        seen = progress.step;
        trainer.cancel();
        return true;
    });
    CHECK(seen == 3 && trainer.steps().step == 3);
    CHECK(std::isfinite(trainer.evaluate()));
    EXPECT_ERROR(trainer.save_adapter("/nonexistent/dir/adapter.gguf"), LAMINA_STATUS_ERROR_IO, "");
    EXPECT_ERROR(trainer.save_model("/tmp/never-written.gguf"), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "");
}

// Saved sessions: a chat saved and restored (bytes and file) continues byte for byte; a
// corrupted state throws with the reason and leaves the session usable.
void test_saved_sessions(const lamina::Model &model) {
    const lamina::Sampling greedy = lamina::Sampling::greedy(10);
    lamina::Session a(model, small_session());
    a.chat("My name is Ada.", greedy);
    const std::vector<uint8_t> state = a.save_state();
    CHECK(state.size() > 1000);
    const std::string path = "target/cpp-tests/saved.lamina-session";
    a.save_state_file(path);
    const std::string expected = a.chat("What is my name?", greedy);
    lamina::Session b(model, small_session());
    b.restore_state(state);
    CHECK(b.chat("What is my name?", greedy) == expected);
    lamina::Session c(model, small_session());
    c.restore_state_file(path);
    CHECK(c.chat("What is my name?", greedy) == expected);
    std::vector<uint8_t> corrupt = state;
    corrupt[corrupt.size() / 2] ^= 1;
    EXPECT_ERROR(b.restore_state(corrupt), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "checksum");
    EXPECT_ERROR(b.restore_state(std::vector<uint8_t>()), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "not a lamina session state");
    CHECK(!b.generate(PROMPT, greedy).empty());
    std::remove(path.c_str());
}

// Embeddings: unit vectors of the model's width, related texts closer than unrelated ones,
// bad input with its index.
void test_embeddings(const lamina::Model &model) {
    lamina::EmbedderParams p;
    CHECK(p.pooling == LAMINA_POOLING_MEAN && p.normalize && p.max_texts > 0);
    p.n_threads = 1;
    lamina::Embedder e(model, p);
    const size_t dims = e.dimensions();
    const std::vector<std::vector<float>> v =
        e.embed({"The cat sat on the mat.", "A cat is sitting on a rug.", "Interest rates rose sharply."});
    CHECK(v.size() == 3 && v[0].size() == dims && dims > 0);
    auto dot = [](const std::vector<float> &x, const std::vector<float> &y) {
        double d = 0.0;
        for (size_t i = 0; i < x.size(); i++) {
            d += static_cast<double>(x[i]) * static_cast<double>(y[i]);
        }
        return d;
    };
    CHECK(std::fabs(dot(v[0], v[0]) - 1.0) < 1e-4);
    CHECK(dot(v[0], v[1]) > dot(v[0], v[2]));
    CHECK(e.embed({}).empty());
    EXPECT_ERROR(e.embed({"fine", ""}), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "text 1 is empty");
    lamina::EmbedderParams bad = p;
    bad.max_texts = 0;
    EXPECT_ERROR(lamina::Embedder(model, bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "max_texts");
    lamina::Embedder moved = std::move(e);
    CHECK(!e && moved && moved.dimensions() == dims);
}

// ------------------------------------------------------------------------------------------
// Training from scratch: corpus, tokenizer, a new model that loads and generates

// Made-up document i: five sentences on one line, different for each i.
std::string scratch_document(int i) {
    static const char *const subjects[] = {"The river",       "A small boat", "The old miller", "Our teacher",
                                           "The market",      "A grey heron", "The night train", "My neighbour",
                                           "The orchard",     "A lighthouse keeper", "The baker", "An old map"};
    static const char *const verbs[] = {"watched",  "carried", "remembered", "painted",  "followed",
                                        "answered", "counted", "opened",     "repaired", "described"};
    static const char *const objects[] = {"the morning light",  "seven wooden crates", "a song about winter",
                                          "the northern hills", "every letter twice",  "the broken gate",
                                          "a basket of apples", "the quiet harbour",   "the numbers 12 and 40",
                                          "a long story"};
    std::string doc;
    for (int j = 0; j < 5; j++) {
        doc += std::string(j > 0 ? " " : "") + subjects[(i * 5 + j) % 12] + " " + verbs[(i * 3 + j * 7) % 10] + " " +
               objects[(i * 7 + j * 3 + i / 10) % 10] + ".";
    }
    return doc;
}

void write_documents(const std::filesystem::path &path, int first, int last, int repeat) {
    std::ofstream out(path);
    for (int i = first; i < last; i++) {
        out << scratch_document(i) << "\n\n";
    }
    if (repeat >= 0) {
        out << scratch_document(repeat) << "\n";
    }
}

bool has(const std::string &json, const std::string &needle) { return json.find(needle) != std::string::npos; }

// Pretraining through lamina::Pretrainer: a tiny run whose model loads, cancel from the
// callable, a callable's exception, and bad params.
void test_pretrainer(const std::filesystem::path &dir, const std::string &corpus, const std::string &tokenizer,
                     const lamina::ModelSpec &spec) {
    const lamina::PretrainParams defaults;
    CHECK(defaults.corpus_dir.empty() && !defaults.spec && defaults.seq_len == 256 && defaults.budget_steps == 0 &&
          defaults.precision.empty() && defaults.schedule == LAMINA_TRAIN_SCHEDULE_COSINE);
    lamina::PretrainParams p;
    p.corpus_dir = corpus;
    p.output_dir = (dir / "pt").string();
    p.spec = spec;
    p.tokenizer_dir = tokenizer;
    p.seq_len = 32;
    p.batch_size = 2;
    p.warmup_steps = 1;
    p.eval_sequences = 4;
    p.budget_steps = 3;
    p.n_threads = 1;
    CHECK(lamina::PretrainParams(p.to_c()).spec->width == spec.width);

    lamina::Pretrainer trainer = lamina::Pretrainer::create(p);
    std::vector<double> losses;
    const std::string report = trainer.run([&](const lamina_pretrain_progress &progress) {
        losses.push_back(progress.loss);
        return true;
    });
    CHECKF(losses.size() == 3 && std::isfinite(losses.back()), report);
    CHECKF(has(report, "\"summary\":{\"end\":\"finished\",\"cancelled\":false,\"steps\":3,") && report == trainer.report(),
           report);
    EXPECT_ERROR(trainer.run(), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "already ran");
    {
        lamina::Model model((dir / "pt" / "model.gguf").string());
        CHECK(model.get() != nullptr);
    }

    // false, cancel() from the callable, and an exception each stop a run after its step.
    p.budget_steps = 50;
    p.output_dir = (dir / "pt-false").string();
    CHECK(has(lamina::Pretrainer::create(p).run([](const lamina_pretrain_progress &) { return false; }),
              "\"cancelled\":true,\"steps\":1,"));
    p.output_dir = (dir / "pt-cancel").string();
    lamina::Pretrainer cancelled = lamina::Pretrainer::create(p);
    const std::string cancelled_report = cancelled.run([&](const lamina_pretrain_progress &progress) {
        if (progress.step == 2) {
            cancelled.cancel();
        }
        return true;
    });
    CHECKF(has(cancelled_report, "\"cancelled\":true,\"steps\":2,"), cancelled_report);
    p.output_dir = (dir / "pt-throw").string();
    lamina::Pretrainer throwing = lamina::Pretrainer::create(p);
    bool caught = false;
    try {
        throwing.run([](const lamina_pretrain_progress &progress) -> bool { throw Boom{static_cast<int>(progress.step)}; });
    } catch (const Boom &b) {
        caught = b.piece == 1;
    }
    CHECK(caught && has(throwing.report(), "\"steps\":1,"));

    lamina::PretrainParams bad = p;
    bad.budget_steps = 0;
    EXPECT_ERROR(lamina::Pretrainer::create(bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "budget");
    bad = p;
    bad.spec->n_heads = 3;
    EXPECT_ERROR(lamina::Pretrainer::create(bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_heads");
    bad = p;
    bad.spec.reset();
    EXPECT_ERROR(lamina::Pretrainer::create(bad), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "init_gguf");
    bad = p;
    bad.corpus_dir = std::string("a\0b", 3);
    EXPECT_ERROR(lamina::Pretrainer::create(bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "NUL");
    lamina::Pretrainer empty;
    EXPECT_ERROR(empty.cancel(), LAMINA_STATUS_ERROR_NULL_ARGUMENT, "trainer");
}

void test_training_from_scratch() {
    // Defaults are the library's.
    const lamina::CorpusParams cp;
    CHECK(cp.normalization.empty() && cp.dedup_documents && cp.near_dedup && !cp.lowercase && cp.min_line_chars == 40);
    CHECK(cp.train_fraction > 0.89 && cp.train_fraction < 0.91 && cp.to_c().normalization == nullptr);
    const lamina::TokenizerTrainParams tp0;
    CHECK(tp0.vocab_size == 8192 && tp0.bos_token == "<s>" && tp0.eos_token == "</s>" && tp0.pad_token == "<pad>" &&
          tp0.special_tokens.empty() && tp0.chat_template.empty() && !tp0.add_bos_token);
    const lamina::InitParams ip0;
    CHECK(ip0.seed == 0 && ip0.std > 0.0199f && ip0.std < 0.0201f && ip0.embeddings_from.empty());

    char tmpl[] = "/tmp/lamina-hpp-scratch-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
        record(false, __LINE__, "mkdtemp");
        return;
    }
    const std::filesystem::path dir(tmpl);
    write_documents(dir / "a.txt", 0, 10, -1);
    write_documents(dir / "b.txt", 10, 16, 3);  // document 3 again: an exact duplicate
    const std::vector<std::string> inputs = {(dir / "a.txt").string(), (dir / "b.txt").string()};
    const std::string corpus = (dir / "corpus").string();

    lamina::CorpusParams p;
    p.train_fraction = 0.8;
    p.validation_fraction = 0.1;
    p.test_fraction = 0.1;
    std::vector<std::string> stages;
    const std::string report = lamina::build_corpus(inputs, corpus, p, [&](std::string_view stage, size_t, size_t) {
        stages.emplace_back(stage);
        return true;
    });
    CHECKF(has(report, "\"files\":2") && has(report, "\"cancelled\":false"), report);
    CHECKF(has(report, "\"output\":{\"documents\":16,"), report);
    CHECK(!stages.empty() && stages.front() == "read" && stages.back() == "write");
    CHECK(std::filesystem::is_regular_file(dir / "corpus" / "train.jsonl"));

    // false cancels; a callable's exception stops the call and reaches the caller.
    const std::string other = (dir / "other").string();
    CHECK(lamina::build_corpus(inputs, other, p, [](std::string_view, size_t, size_t) { return false; }) ==
          "{\"cancelled\":true}");
    bool caught = false;
    try {
        lamina::build_corpus(inputs, other, p, [](std::string_view, size_t done, size_t) -> bool {
            throw Boom{static_cast<int>(done)};
        });
    } catch (const Boom &) {
        caught = true;
    }
    CHECK(caught && !std::filesystem::exists(dir / "other" / "train.jsonl"));

    lamina::TokenizerTrainParams tp;
    tp.vocab_size = 320;
    tp.special_tokens = {"<|im_start|>", "<|im_end|>"};
    const std::string tokenizer = (dir / "tokenizer").string();
    const std::string tok_report = lamina::train_tokenizer({corpus + "/train.jsonl"}, tokenizer, tp);
    CHECKF(has(tok_report, "\"vocab_size\":320") && has(tok_report, "\"<|im_end|>\"]"), tok_report);

    lamina::ModelSpec spec = lamina::ModelSpec::preset("1m", 320);
    CHECK(spec.struct_size == sizeof(lamina_model_spec) && spec.n_layers == 3 && spec.width == 128 &&
          spec.vocab_size == 320 && spec.tied_embeddings);
    lamina::InitParams ip;
    ip.seed = 5;
    const std::string gguf = (dir / "model.gguf").string();
    size_t calls = 0;
    const std::string init_report =
        lamina::init_model(spec, tokenizer, (dir / "hf").string(), gguf, ip, [&](size_t done, size_t total) {
            calls++;
            return done <= total;
        });
    CHECKF(has(init_report, "\"n_params\":") && has(init_report, "model.gguf") && calls > 6, init_report);
    {
        lamina::Model model(gguf);
        lamina::SessionParams sp;
        sp.n_ctx = 64;
        sp.n_threads = 1;
        lamina::Session session(model, sp);
        lamina::GenerationInfo info;
        session.generate("The river watched", lamina::Sampling::greedy(4), nullptr, &info);
        CHECK(info.generated_tokens >= 1 || info.stop_reason == LAMINA_STOP_REASON_END_OF_GENERATION);
    }

    // Errors.
    EXPECT_ERROR(lamina::build_corpus({}, corpus), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "no input");
    lamina::CorpusParams bad = p;
    bad.normalization = "nfd";
    EXPECT_ERROR(lamina::build_corpus(inputs, corpus, bad), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "normalization");
    EXPECT_ERROR(lamina::build_corpus({std::string("a\0b", 3)}, corpus), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "NUL");
    lamina::TokenizerTrainParams small = tp;
    small.vocab_size = 100;
    EXPECT_ERROR(lamina::train_tokenizer({corpus + "/train.jsonl"}, tokenizer, small), LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                 "vocab_size");
    EXPECT_ERROR(lamina::ModelSpec::preset("3b", 320), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "preset");
    EXPECT_ERROR(lamina::ModelSpec::preset("1m", 0), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "vocab_size");
    lamina::ModelSpec odd = spec;
    odd.n_heads = 3;
    EXPECT_ERROR(lamina::init_model(odd, tokenizer, (dir / "hf2").string()), LAMINA_STATUS_ERROR_INVALID_ARGUMENT, "n_heads");
    EXPECT_ERROR(lamina::init_model(spec, (dir / "no-such-tokenizer").string(), (dir / "hf2").string()),
                 LAMINA_STATUS_ERROR_IO, "no-such-tokenizer");
    test_pretrainer(dir, corpus, tokenizer, spec);
    std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc > 2) {
        std::fprintf(stderr, "usage: test_lamina_hpp [DATA_DIR]\n");
        return 2;
    }
    if (argc == 2) {
        g_data_dir = argv[1];
    }
    try {
        test_basics();
        g_model_path = lamina::default_model_path();
        std::printf("lamina %s, model %s\n", lamina::version(), g_model_path.c_str());
        lamina::Model model(g_model_path);
        test_model(model);
        std::string ref;
        {
            lamina::Session session(model, small_session());
            test_generate(session);
            ref = session.generate(PROMPT, lamina::Sampling::greedy(8));
            test_chat_and_tasks(session);
        }
        test_batch(model, ref);
        test_saved_sessions(model);
        test_embeddings(model);
        test_moves(ref);
        test_log();
        test_train();
        test_training_from_scratch();
    } catch (const lamina::Error &e) {
        record(false, __LINE__, std::string("unexpected lamina::Error ") + e.status_name() + ": " + e.what());
    } catch (const std::exception &e) {
        record(false, __LINE__, std::string("unexpected exception: ") + e.what());
    } catch (const Boom &) {
        record(false, __LINE__, "unexpected Boom");
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

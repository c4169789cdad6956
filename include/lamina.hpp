/*
 * lamina.hpp: a header-only C++17 interface to lamina, over the C ABI of lamina.h.
 *
 * Nothing here is compiled into liblamina_ffi: include this header and link the same library
 * as a C program does (`pkg-config --cflags --libs lamina`, or CMake's `lamina::lamina` with
 * `target_compile_features(app PRIVATE cxx_std_17)`).
 *
 *   #include "lamina.hpp"
 *
 *   lamina::Model model(lamina::default_model_path());
 *   lamina::SessionParams sp;            // the library's defaults (lamina_session_params_init)
 *   sp.n_threads = 2;
 *   lamina::Session session(model, sp);
 *   lamina::Sampling greedy;             // greedy, 256 tokens (lamina_sampling_params_init)
 *   greedy.max_tokens = 16;
 *   std::string text = session.generate("The capital of France is", greedy,
 *       [](std::string_view piece) { std::cout << piece << std::flush; return true; });
 *
 * Handles. lamina::Model, Session, Adapter, Trainer and Pretrainer each own one C handle and free it in
 * their destructor. They are move-only; a moved-from object is empty (get() == nullptr,
 * `bool(obj)` is false) and destroying it frees nothing. A call on an empty object reaches the
 * C function with a NULL handle and throws lamina::Error with LAMINA_STATUS_ERROR_NULL_ARGUMENT.
 * get() lends the C handle (for calls this header does not wrap); release() gives it up to the
 * caller, who then frees it with the C _free function; the explicit pointer constructors adopt
 * a handle from C. As in C, a session, adapter or trainer keeps its model alive, so objects may
 * be destroyed in any order.
 *
 * Errors. Every non-OK status becomes a lamina::Error (a std::runtime_error): status() is the
 * lamina_status, what() the text of lamina_last_error_message(), copied on the failing thread
 * right after the failing call. A few checks are made here before lamina is called, also
 * reported as lamina::Error: strings with an embedded NUL byte (C would silently cut them) and
 * arrays of mismatched lengths (LAMINA_STATUS_ERROR_INVALID_ARGUMENT). Apart from lamina::Error
 * only std::bad_alloc, and whatever your own callables throw, comes out of this header. No
 * exception ever crosses the C boundary: an exception thrown by a callable you pass (token,
 * batch, progress callbacks) is caught inside the C callback, which stops the call, and is
 * rethrown, unchanged, once the C function has returned and everything it gave back is freed;
 * the callable is not called again in between. Generations and batches are stopped with
 * lamina_session_cancel, so a chat turn whose callable threw leaves the history as it was;
 * evaluations and training runs stop as when their callback returns false (a training run after
 * the current step). The object stays usable afterwards. Exceptions from a log callable are
 * swallowed (it may run on any thread, where nobody could catch them). Every string and handle
 * lamina returns is owned by a RAII holder from the moment the C call returns, so no exception
 * path leaks.
 *
 * Threads: the rules of lamina.h, unchanged. A Model or an Adapter may be used from any number
 * of threads at once (all their methods are const). A Session or a Trainer serves one call at a
 * time: a second thread calling while one is inside gets lamina::Error with
 * LAMINA_STATUS_ERROR_BUSY; the const methods (Session::cancel, Session::n_ctx,
 * Trainer::cancel) may be called from any thread at any time, including from inside a callable
 * of a call on the same object. Moving, assigning or destroying a C++ object while another
 * thread uses it is a data race, as for any C++ object. Token, batch and progress callables run
 * on the thread that made the call, during the call; a std::string_view they receive is valid
 * only during that invocation. The log callable runs on any thread, possibly several at once,
 * and must not call back into lamina.
 *
 * Options. Sampling, SessionParams, ModelParams, TrainParams, EvalParams, CorpusParams,
 * TokenizerTrainParams, InitParams and PretrainParams are plain C++ structs whose default constructors take
 * their values from the library's lamina_*_params_init functions, so a default-constructed one
 * means "the library's defaults". Their fields are those of the C structs, with the C names;
 * strings are std::string, where an empty string stands for the C NULL (no grammar, all
 * targets, no default language, no padding token), and stop strings and special tokens a
 * std::vector<std::string>. They are converted to the C structs (initialised with the _init
 * functions, then overwritten field by field) for each call. GenerationInfo, BleuScore and
 * ModelSpec are the C output structs, with struct_size already set.
 *
 * Examples: examples/cmake/main.cpp (built with find_package(lamina)); tests/cpp/ exercises
 * every promise above.
 */

#ifndef LAMINA_HPP
#define LAMINA_HPP

#include "lamina.h"

#if !defined(__cplusplus) || (__cplusplus < 201703L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 201703L))
#error "lamina.hpp needs C++17 or later (e.g. -std=c++17); C programs include lamina.h"
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lamina {

// ============================================================================================
// Errors
// ============================================================================================

// A lamina call failed: the status it returned and lamina_last_error_message() at that moment.
class Error : public std::runtime_error {
public:
    Error(lamina_status status, const std::string &message) : std::runtime_error(message), status_(status) {}

    // The status code the C function returned (never LAMINA_STATUS_OK).
    lamina_status status() const noexcept { return status_; }

    // Its constant name, "LAMINA_STATUS_ERROR_..." (static storage).
    const char *status_name() const noexcept { return lamina_status_name(static_cast<int32_t>(status_)); }

private:
    lamina_status status_;
};

// Throws lamina::Error for any status but LAMINA_STATUS_OK. Call it right after the C call,
// on the same thread and before any other lamina call, so that the message is that call's.
inline void check(lamina_status status) {
    if (status != LAMINA_STATUS_OK) {
        throw Error(status, lamina_last_error_message());
    }
}

// The library's version, "MAJOR.MINOR.PATCH" (LAMINA_VERSION_STRING is the header's).
inline const char *version() noexcept { return lamina_version(); }

// The constant name of a status code, "LAMINA_STATUS_UNKNOWN" for one this library lacks.
inline const char *status_name(lamina_status status) noexcept {
    return lamina_status_name(static_cast<int32_t>(status));
}

// ============================================================================================
// Callables and output structs
// ============================================================================================

// Receives generated text as it is produced (whole UTF-8 characters). Return true to go on,
// false to stop (the call then returns normally, stop reason
// LAMINA_STOP_REASON_CALLBACK_STOPPED, and its text ends with this piece).
using TokenCallback = std::function<bool(std::string_view piece)>;

// Receives text of prompt `index` of a batch. false stops that prompt's sequence only.
using BatchCallback = std::function<bool(std::size_t index, std::string_view piece)>;

// An evaluation's progress: `done` of `total` examples (perplexity: chunks). false stops it.
using ProgressCallback = std::function<bool(std::size_t done, std::size_t total)>;

// Corpus preparation's progress (build_corpus): `done` of `total` files (stage "read") or
// documents (the other stages) in `stage`. false cancels.
using CorpusProgressCallback = std::function<bool(std::string_view stage, std::size_t done, std::size_t total)>;

// A training run's progress after each optimizer step. false stops after this step. The
// struct's struct_size is the library's: check it before reading a field a newer header added.
using TrainProgressCallback = std::function<bool(const lamina_train_progress &progress)>;

// A pretraining run's progress after each optimizer step (lamina_pretrain_progress; its
// val_loss is NaN where no validation ran). false stops after this step. Check struct_size
// before reading a field a newer header added.
using PretrainProgressCallback = std::function<bool(const lamina_pretrain_progress &progress)>;

// One log message (no trailing newline). Runs on any thread; must not call into lamina.
using LogCallback = std::function<void(lamina_log_level level, std::string_view message)>;

// Facts about a finished generation (lamina_generation_info with struct_size set).
struct GenerationInfo : lamina_generation_info {
    GenerationInfo() noexcept : lamina_generation_info() { struct_size = sizeof(lamina_generation_info); }
};

// A corpus BLEU score and its statistics (lamina_bleu_score with struct_size set).
struct BleuScore : lamina_bleu_score {
    BleuScore() noexcept : lamina_bleu_score() { struct_size = sizeof(lamina_bleu_score); }
};

// Where a trainer stands (lamina_trainer_steps).
struct TrainSteps {
    uint64_t step = 0;
    uint64_t total_steps = 0;
};

// The rank and alpha of an adapter (lamina_adapter_info).
struct AdapterInfo {
    uint32_t rank = 0;
    float alpha = 0.0f;
};

// ============================================================================================
// Internals: owned strings, C strings, callback trampolines, handles
// ============================================================================================

namespace detail {

struct StringDeleter {
    void operator()(char *s) const noexcept { lamina_string_free(s); }
};
// A string lamina returned through `char **`, freed with lamina_string_free.
using UniqueString = std::unique_ptr<char, StringDeleter>;

// Takes ownership of a string lamina returned and gives back a copy (freeing it even when the
// copy throws).
inline std::string take_string(char *s) {
    UniqueString owned(s);
    return owned ? std::string(owned.get()) : std::string();
}

// The NUL-terminated form of `s` for lamina, refusing embedded NUL bytes: C would read only
// the part before the first one.
inline const char *c_str(const std::string &s, const char *what) {
    if (s.find('\0') != std::string::npos) {
        throw Error(LAMINA_STATUS_ERROR_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    }
    return s.c_str();
}

// NULL for an absent optional string, else as c_str.
inline const char *c_str_or_null(const std::optional<std::string> &s, const char *what) {
    return s ? c_str(*s, what) : nullptr;
}

// NULL for an empty string (the C "none"), else as c_str.
inline const char *c_str_or_null(const std::string &s, const char *what) {
    return s.empty() ? nullptr : c_str(s, what);
}

// `strings` as an array of C strings, valid while `strings` is unchanged. Never empty, so that
// data() is never NULL and lamina reports a count of zero as the count it is.
inline std::vector<const char *> c_strs(const std::vector<std::string> &strings, const char *what) {
    std::vector<const char *> out;
    out.reserve(strings.empty() ? 1 : strings.size());
    for (const std::string &s : strings) {
        out.push_back(c_str(s, what));
    }
    if (strings.empty()) {
        out.push_back("");
    }
    return out;
}

// What a C callback's user_data points to: the caller's callable, and the exception it threw,
// kept until the C function returns. Once an exception is stashed the callable is not called
// again.
template <typename F>
struct CallbackState {
    const F *fn;
    std::exception_ptr error;
    // A generation's session, cancelled when the callable throws. A chat turn stopped by its
    // callback stays in the history, a cancelled one does not: so a turn whose callable threw
    // leaves the history as it was. A batch is cancelled as a whole, where false would stop
    // one sequence only.
    const lamina_session *cancel_on_error = nullptr;
    // What the C callback answers once the callable has thrown. With cancel_on_error a token
    // callback answers true and lets the cancel end the call (false would turn it into a
    // callback stop); elsewhere false stops the call.
    bool answer_after_error = false;

    explicit CallbackState(const F &f) : fn(f ? &f : nullptr) {}

    template <typename... Args>
    bool call(Args &&...args) noexcept {
        if (error) {
            return answer_after_error;
        }
        try {
            return (*fn)(std::forward<Args>(args)...);
        } catch (...) {
            error = std::current_exception();
            if (cancel_on_error != nullptr) {
                lamina_session_cancel(cancel_on_error);
            }
            return answer_after_error;
        }
    }

    // The C callback to pass: `trampoline` when there is a callable, else NULL.
    template <typename T>
    T pick(T trampoline) const noexcept {
        return fn != nullptr ? trampoline : nullptr;
    }

    // After the C call: the callable's exception first (it is what stopped the call), then
    // the status.
    void finish(lamina_status status) const {
        if (error) {
            std::rethrow_exception(error);
        }
        check(status);
    }
};

inline bool token_trampoline(const char *piece, std::size_t len, void *user_data) noexcept {
    return static_cast<CallbackState<TokenCallback> *>(user_data)->call(std::string_view(piece, len));
}

inline bool batch_trampoline(std::size_t index, const char *piece, std::size_t len, void *user_data) noexcept {
    return static_cast<CallbackState<BatchCallback> *>(user_data)->call(index, std::string_view(piece, len));
}

inline bool progress_trampoline(std::size_t done, std::size_t total, void *user_data) noexcept {
    return static_cast<CallbackState<ProgressCallback> *>(user_data)->call(done, total);
}

inline bool train_trampoline(const lamina_train_progress *progress, void *user_data) noexcept {
    return static_cast<CallbackState<TrainProgressCallback> *>(user_data)->call(*progress);
}

inline bool pretrain_trampoline(const lamina_pretrain_progress *progress, void *user_data) noexcept {
    return static_cast<CallbackState<PretrainProgressCallback> *>(user_data)->call(*progress);
}

inline void log_trampoline(lamina_log_level level, const char *message, void *user_data) noexcept {
    try {
        (*static_cast<const LogCallback *>(user_data))(level, message != nullptr ? std::string_view(message)
                                                                                 : std::string_view());
    } catch (...) {
        // Nobody to report to: this runs on whichever thread logged.
    }
}

// Log callables ever installed. lamina cannot say when no thread is inside a replaced callback
// any more, so each stays alive until the process exits (reachable, not leaked).
inline std::mutex &log_mutex() {
    static std::mutex m;
    return m;
}
inline std::vector<std::unique_ptr<LogCallback>> &log_callbacks() {
    static auto *kept = new std::vector<std::unique_ptr<LogCallback>>();
    return *kept;
}

// One owned C handle: move-only, freed with Free in the destructor (every _free accepts NULL).
template <typename T, void (*Free)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *owned) noexcept : p_(owned) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            T *old = std::exchange(p_, std::exchange(other.p_, nullptr));
            Free(old);
        }
        return *this;
    }
    ~Handle() { Free(p_); }

    // The C handle, still owned by this object (NULL when empty).
    T *get() const noexcept { return p_; }
    // Gives the C handle up: the caller frees it with the C _free function; this becomes empty.
    T *release() noexcept { return std::exchange(p_, nullptr); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    T *p_ = nullptr;
};

}  // namespace detail

// ============================================================================================
// Strings, logging, default model path, backends
// ============================================================================================

// The path of lamina's default model ($LAMINA_MODEL, else in lamina's cache). The file exists
// only once scripts/fetch-model.sh has run.
inline std::string default_model_path() {
    char *path = nullptr;
    check(lamina_default_model_path(&path));
    return detail::take_string(path);
}

// Send llama.cpp's and lamina's log lines at `min_level` and above to `callback`; an empty
// callback silences them (the default). Process-wide. The callable must be safe to call from
// several threads at once and must not call into lamina; its exceptions are swallowed. Each
// callable installed is kept until the process exits (lamina cannot tell when the last thread
// has left a replaced one), so install one once rather than per call.
inline void set_log_callback(LogCallback callback, lamina_log_level min_level = LAMINA_LOG_LEVEL_WARN) {
    std::lock_guard<std::mutex> lock(detail::log_mutex());
    if (!callback) {
        lamina_set_log_callback(nullptr, nullptr, static_cast<int32_t>(min_level));
        return;
    }
    auto &kept = detail::log_callbacks();
    kept.push_back(std::make_unique<LogCallback>(std::move(callback)));
    lamina_set_log_callback(&detail::log_trampoline, kept.back().get(), static_cast<int32_t>(min_level));
}

// Silence logging again (the default).
inline void clear_log_callback() { set_log_callback(LogCallback()); }

// A JSON object describing this process's compute backends (lamina_backends_json).
inline std::string backends_json() {
    char *json = nullptr;
    check(lamina_backends_json(&json));
    return detail::take_string(json);
}

// Load compute backends from a directory or one library file (lamina_backends_load); returns
// the same JSON as backends_json().
inline std::string backends_load(const std::string &path) {
    char *json = nullptr;
    check(lamina_backends_load(detail::c_str(path, "backend path"), &json));
    return detail::take_string(json);
}

// ============================================================================================
// Options
// ============================================================================================

// How to load a model (lamina_model_params).
struct ModelParams {
    uint32_t n_gpu_layers;  // layers offloaded to a GPU backend; 0 = CPU only
    bool use_mmap;          // memory-map the weights
    bool use_mlock;         // lock the weights in RAM

    ModelParams() : ModelParams(defaults()) {}
    explicit ModelParams(const lamina_model_params &c)
        : n_gpu_layers(c.n_gpu_layers), use_mmap(c.use_mmap), use_mlock(c.use_mlock) {}

    lamina_model_params to_c() const {
        lamina_model_params c = defaults();
        c.n_gpu_layers = n_gpu_layers;
        c.use_mmap = use_mmap;
        c.use_mlock = use_mlock;
        return c;
    }

private:
    static lamina_model_params defaults() {
        lamina_model_params c;
        check(lamina_model_params_init(&c, sizeof c));
        return c;
    }
};

// How to create a session (lamina_session_params).
struct SessionParams {
    uint32_t n_ctx;            // context window; 0 = min(4096, the model's)
    uint32_t n_batch;          // most tokens per decode call
    uint32_t n_threads;        // generation threads; 0 = all cores
    uint32_t n_threads_batch;  // prompt threads; 0 = n_threads
    int32_t flash_attention;   // -1 = where supported, 0 = off, 1 = on
    uint32_t n_sequences;      // most sequences of generate_batch, 1..=256

    SessionParams() : SessionParams(defaults()) {}
    explicit SessionParams(const lamina_session_params &c)
        : n_ctx(c.n_ctx),
          n_batch(c.n_batch),
          n_threads(c.n_threads),
          n_threads_batch(c.n_threads_batch),
          flash_attention(c.flash_attention),
          n_sequences(c.n_sequences) {}

    lamina_session_params to_c() const {
        lamina_session_params c = defaults();
        c.n_ctx = n_ctx;
        c.n_batch = n_batch;
        c.n_threads = n_threads;
        c.n_threads_batch = n_threads_batch;
        c.flash_attention = flash_attention;
        c.n_sequences = n_sequences;
        return c;
    }

private:
    static lamina_session_params defaults() {
        lamina_session_params c;
        check(lamina_session_params_init(&c, sizeof c));
        return c;
    }
};

// How tokens are chosen and when generation stops (lamina_sampling_params). The defaults are
// greedy, 256 tokens, no stop strings.
struct Sampling {
    float temperature;      // 0 = greedy; > 0 samples at that temperature
    int32_t top_k;          // 0 = off
    float top_p;            // in (0, 1]; 1 = off
    float min_p;            // in [0, 1]; 0 = off
    float repeat_penalty;   // > 0; 1 = off
    int32_t repeat_last_n;  // -1 = whole context
    uint32_t seed;          // same seed, same output
    uint32_t max_tokens;    // >= 1
    std::vector<std::string> stop;  // generation ends before the first occurrence of any
    std::string grammar;            // a GBNF grammar the text must follow; empty = free text
    std::string json_schema;        // a JSON schema the text must be a value of; empty = none

    Sampling() : Sampling(defaults()) {}
    explicit Sampling(const lamina_sampling_params &c)
        : temperature(c.temperature),
          top_k(c.top_k),
          top_p(c.top_p),
          min_p(c.min_p),
          repeat_penalty(c.repeat_penalty),
          repeat_last_n(c.repeat_last_n),
          seed(c.seed),
          max_tokens(c.max_tokens),
          grammar(c.grammar != nullptr ? c.grammar : ""),
          json_schema(c.json_schema != nullptr ? c.json_schema : "") {
        for (std::size_t i = 0; c.stop != nullptr && i < c.n_stop; i++) {
            stop.emplace_back(c.stop[i]);
        }
    }

    // Greedy with at most `max_tokens` tokens, the library's defaults otherwise.
    static Sampling greedy(uint32_t max_tokens) {
        Sampling s;
        s.temperature = 0.0f;
        s.max_tokens = max_tokens;
        return s;
    }

private:
    static lamina_sampling_params defaults() {
        lamina_sampling_params c;
        check(lamina_sampling_params_init(&c, sizeof c));
        return c;
    }
};

// What to fine-tune and how (lamina_train_params); numbers are checked when the trainer is
// created. See lamina.h for each field's range and default.
struct TrainParams {
    uint32_t rank;
    float alpha;
    float dropout;
    bool rslora;
    std::string targets;  // comma-separated projections; empty = all seven (C NULL)
    float learning_rate;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    uint32_t warmup_steps;
    int32_t schedule;  // a lamina_train_schedule value
    float max_grad_norm;
    uint32_t batch_size;
    uint32_t grad_accum;
    uint32_t steps;
    bool checkpointing;
    uint64_t seed;
    uint32_t eval_every;
    uint32_t max_len;
    bool pack;
    float val_fraction;
    uint64_t data_seed;
    bool truncate;
    uint32_t n_threads;
    bool full;
    uint32_t activation_memory_mib;
    uint32_t checkpoint_every;

    TrainParams() : TrainParams(defaults()) {}
    explicit TrainParams(const lamina_train_params &c)
        : rank(c.rank),
          alpha(c.alpha),
          dropout(c.dropout),
          rslora(c.rslora),
          targets(c.targets != nullptr ? c.targets : ""),
          learning_rate(c.learning_rate),
          beta1(c.beta1),
          beta2(c.beta2),
          eps(c.eps),
          weight_decay(c.weight_decay),
          warmup_steps(c.warmup_steps),
          schedule(c.schedule),
          max_grad_norm(c.max_grad_norm),
          batch_size(c.batch_size),
          grad_accum(c.grad_accum),
          steps(c.steps),
          checkpointing(c.checkpointing),
          seed(c.seed),
          eval_every(c.eval_every),
          max_len(c.max_len),
          pack(c.pack),
          val_fraction(c.val_fraction),
          data_seed(c.data_seed),
          truncate(c.truncate),
          n_threads(c.n_threads),
          full(c.full),
          activation_memory_mib(c.activation_memory_mib),
          checkpoint_every(c.checkpoint_every) {}

    // The C struct; its `targets` points into this object, so keep this alive during the call.
    lamina_train_params to_c() const {
        lamina_train_params c = defaults();
        c.rank = rank;
        c.alpha = alpha;
        c.dropout = dropout;
        c.rslora = rslora;
        c.targets = detail::c_str_or_null(targets, "targets");
        c.learning_rate = learning_rate;
        c.beta1 = beta1;
        c.beta2 = beta2;
        c.eps = eps;
        c.weight_decay = weight_decay;
        c.warmup_steps = warmup_steps;
        c.schedule = schedule;
        c.max_grad_norm = max_grad_norm;
        c.batch_size = batch_size;
        c.grad_accum = grad_accum;
        c.steps = steps;
        c.checkpointing = checkpointing;
        c.seed = seed;
        c.eval_every = eval_every;
        c.max_len = max_len;
        c.pack = pack;
        c.val_fraction = val_fraction;
        c.data_seed = data_seed;
        c.truncate = truncate;
        c.n_threads = n_threads;
        c.full = full;
        c.activation_memory_mib = activation_memory_mib;
        c.checkpoint_every = checkpoint_every;
        return c;
    }

private:
    static lamina_train_params defaults() {
        lamina_train_params c;
        check(lamina_train_params_init(&c, sizeof c));
        return c;
    }
};

// Options of Session::evaluate (lamina_eval_params).
struct EvalParams {
    uint32_t limit;           // first `limit` examples only; 0 = all
    uint32_t perplexity_ctx;  // perplexity chunk size; 0 = 512
    std::string source_lang;  // for translation records without one; empty = none (C NULL)
    std::string target_lang;  // likewise

    EvalParams() : EvalParams(defaults()) {}
    explicit EvalParams(const lamina_eval_params &c)
        : limit(c.limit),
          perplexity_ctx(c.perplexity_ctx),
          source_lang(c.source_lang != nullptr ? c.source_lang : ""),
          target_lang(c.target_lang != nullptr ? c.target_lang : "") {}

    // The C struct; its strings point into this object, so keep this alive during the call.
    lamina_eval_params to_c() const {
        lamina_eval_params c = defaults();
        c.limit = limit;
        c.perplexity_ctx = perplexity_ctx;
        c.source_lang = detail::c_str_or_null(source_lang, "source_lang");
        c.target_lang = detail::c_str_or_null(target_lang, "target_lang");
        return c;
    }

private:
    static lamina_eval_params defaults() {
        lamina_eval_params c;
        check(lamina_eval_params_init(&c, sizeof c));
        return c;
    }
};

namespace detail {

// A Sampling as the C struct, with the array of stop strings it points to. Not copyable or
// movable: `params.stop` points into `stops`, and its strings into the Sampling, which must
// outlive it.
struct CSampling {
    lamina_sampling_params params;
    std::vector<const char *> stops;

    explicit CSampling(const Sampling &s) {
        check(lamina_sampling_params_init(&params, sizeof params));
        params.temperature = s.temperature;
        params.top_k = s.top_k;
        params.top_p = s.top_p;
        params.min_p = s.min_p;
        params.repeat_penalty = s.repeat_penalty;
        params.repeat_last_n = s.repeat_last_n;
        params.seed = s.seed;
        params.max_tokens = s.max_tokens;
        stops.reserve(s.stop.size());
        for (const std::string &stop : s.stop) {
            stops.push_back(c_str(stop, "stop string"));
        }
        params.stop = stops.empty() ? nullptr : stops.data();
        params.n_stop = stops.size();
        params.grammar = c_str_or_null(s.grammar, "grammar");
        params.json_schema = c_str_or_null(s.json_schema, "json_schema");
    }
    CSampling(const CSampling &) = delete;
    CSampling &operator=(const CSampling &) = delete;
};

}  // namespace detail

// ============================================================================================
// Models and adapters
// ============================================================================================

class Model;

// A LoRA adapter loaded into a model (lamina_adapter). Thread-safe; keeps its model alive.
// Its weights stay in memory until the model is freed (llama.cpp frees adapters with their
// model).
class Adapter : public detail::Handle<lamina_adapter, &lamina_adapter_free> {
public:
    Adapter() noexcept = default;
    // Adopts a handle from C.
    explicit Adapter(lamina_adapter *owned) noexcept : Handle(owned) {}
    // Loads a GGUF adapter file or a PEFT directory for `model` (lamina_model_load_adapter).
    inline Adapter(const Model &model, const std::string &path);

    // Rank (largest over its targets) and alpha.
    AdapterInfo info() const {
        AdapterInfo out;
        check(lamina_adapter_info(get(), &out.rank, &out.alpha));
        return out;
    }

private:
    static inline lamina_adapter *load(const Model &model, const std::string &path);
};

// A loaded GGUF model (lamina_model). Thread-safe: any number of threads and sessions may use
// one model at once.
class Model : public detail::Handle<lamina_model, &lamina_model_free> {
public:
    Model() noexcept = default;
    // Adopts a handle from C.
    explicit Model(lamina_model *owned) noexcept : Handle(owned) {}
    // Loads the GGUF model at `path` (lamina_model_load).
    explicit Model(const std::string &path, const ModelParams &params = ModelParams()) : Handle(load(path, params)) {}

    // A JSON object describing the model (architecture, parameters, layers, context, ...).
    std::string info_json() const {
        char *json = nullptr;
        check(lamina_model_info_json(get(), &json));
        return detail::take_string(json);
    }

    // The GGUF metadata value under `key`, as text (LAMINA_STATUS_ERROR_INVALID_ARGUMENT when
    // there is no such key).
    std::string meta(const std::string &key) const {
        char *value = nullptr;
        check(lamina_model_meta(get(), detail::c_str(key, "metadata key"), &value));
        return detail::take_string(value);
    }

    // Loads a LoRA adapter for this model.
    Adapter load_adapter(const std::string &path) const { return Adapter(*this, path); }

private:
    static lamina_model *load(const std::string &path, const ModelParams &params) {
        const lamina_model_params c = params.to_c();
        lamina_model *model = nullptr;
        check(lamina_model_load(detail::c_str(path, "model path"), &c, &model));
        return model;
    }
};

inline Adapter::Adapter(const Model &model, const std::string &path) : Handle(load(model, path)) {}

inline lamina_adapter *Adapter::load(const Model &model, const std::string &path) {
    lamina_adapter *adapter = nullptr;
    check(lamina_model_load_adapter(model.get(), detail::c_str(path, "adapter path"), &adapter));
    return adapter;
}

// ============================================================================================
// Sessions
// ============================================================================================

// A context (KV cache) and chat history over a model (lamina_session). One call at a time;
// cancel() and n_ctx() from any thread. Keeps its model (and applied adapters) alive.
class Session : public detail::Handle<lamina_session, &lamina_session_free> {
public:
    Session() noexcept = default;
    // Adopts a handle from C.
    explicit Session(lamina_session *owned) noexcept : Handle(owned) {}
    // Creates a session over `model` (lamina_session_new).
    explicit Session(const Model &model, const SessionParams &params = SessionParams())
        : Handle(create(model, params)) {}

    // The context window in tokens.
    uint32_t n_ctx() const {
        uint32_t n = 0;
        check(lamina_session_n_ctx(get(), &n));
        return n;
    }

    // Continues `prompt` (raw text, no chat template) and returns the generated text, the
    // concatenation of the pieces given to `on_piece`. `info`, if given, receives the
    // generation's facts. A callback that returned false or a cancel() is a normal return;
    // an exception from `on_piece` cancels the generation and is rethrown (`info` untouched).
    std::string generate(const std::string &prompt, const Sampling &sampling = Sampling(),
                         const TokenCallback &on_piece = nullptr, GenerationInfo *info = nullptr) {
        return text_call(&lamina_session_generate, detail::c_str(prompt, "prompt"), sampling, on_piece, info);
    }

    // One chat turn: adds `user_message` to the history, generates the reply (also added) and
    // returns it. Arguments as for generate. A cancelled turn, and so one whose `on_piece`
    // threw, leaves the history unchanged; one stopped by `on_piece` returning false is kept.
    std::string chat(const std::string &user_message, const Sampling &sampling = Sampling(),
                     const TokenCallback &on_piece = nullptr, GenerationInfo *info = nullptr) {
        return text_call(&lamina_session_chat, detail::c_str(user_message, "message"), sampling, on_piece, info);
    }

    // Sets the chat's system prompt; the rest of the history is kept.
    void set_system_prompt(const std::string &system_prompt) {
        check(lamina_session_set_system_prompt(get(), detail::c_str(system_prompt, "system prompt")));
    }

    // Removes the system prompt.
    void clear_system_prompt() { check(lamina_session_set_system_prompt(get(), nullptr)); }

    // Clears the chat history and the KV cache (lamina_session_reset; the handle is kept).
    void reset() { check(lamina_session_reset(get())); }

    // The session's state: the KV cache of its conversation, the chat history and the adapters
    // in use (lamina_session_save_state). restore_state() puts it into a session over the same
    // model, which then continues without processing the conversation again.
    std::vector<uint8_t> save_state() {
        uint8_t *data = nullptr;
        size_t len = 0;
        check(lamina_session_save_state(get(), &data, &len));
        // Freed on every path, also when the copy throws std::bad_alloc.
        struct Owned {
            uint8_t *data;
            size_t len;
            ~Owned() { lamina_bytes_free(data, len); }
        } owned{data, len};
        return std::vector<uint8_t>(owned.data, owned.data + owned.len);
    }

    // Replaces the conversation with a saved state (lamina_session_restore_state). Throws
    // lamina::Error (LAMINA_STATUS_ERROR_INVALID_ARGUMENT, with the reason) for a corrupted
    // state or one of another model; the session is then empty.
    void restore_state(const std::vector<uint8_t> &state) {
        check(lamina_session_restore_state(get(), state.empty() ? nullptr : state.data(), state.size()));
    }

    // save_state() into a file, written atomically (lamina_session_save_state_file).
    void save_state_file(const std::string &path) {
        check(lamina_session_save_state_file(get(), detail::c_str(path, "path")));
    }

    // restore_state() from a file (lamina_session_restore_state_file).
    void restore_state_file(const std::string &path) {
        check(lamina_session_restore_state_file(get(), detail::c_str(path, "path")));
    }

    // Continues every prompt at once, one sequence each (the session needs n_sequences >=
    // prompts.size()), all with `sampling`. Returns the texts in prompt order; `infos`, if
    // given, receives one GenerationInfo per prompt. `on_piece` gets (prompt index, piece);
    // false stops that prompt's sequence only, an exception stops the whole batch.
    std::vector<std::string> generate_batch(const std::vector<std::string> &prompts,
                                            const Sampling &sampling = Sampling(),
                                            const BatchCallback &on_piece = nullptr,
                                            std::vector<GenerationInfo> *infos = nullptr) {
        const detail::CSampling c(sampling);
        const std::vector<const lamina_sampling_params *> each(prompts.size(), &c.params);
        return batch_call(prompts, each, on_piece, infos);
    }

    // As above with one Sampling per prompt (`per_prompt.size()` must equal `prompts.size()`).
    std::vector<std::string> generate_batch(const std::vector<std::string> &prompts,
                                            const std::vector<Sampling> &per_prompt,
                                            const BatchCallback &on_piece = nullptr,
                                            std::vector<GenerationInfo> *infos = nullptr) {
        if (per_prompt.size() != prompts.size()) {
            throw Error(LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                        "generate_batch: " + std::to_string(prompts.size()) + " prompts but " +
                            std::to_string(per_prompt.size()) + " sampling options");
        }
        std::vector<std::unique_ptr<detail::CSampling>> c;
        std::vector<const lamina_sampling_params *> each;
        c.reserve(per_prompt.size());
        each.reserve(per_prompt.size());
        for (const Sampling &s : per_prompt) {
            c.push_back(std::make_unique<detail::CSampling>(s));
            each.push_back(&c.back()->params);
        }
        return batch_call(prompts, each, on_piece, infos);
    }

    // Translates `text` from `from` to `to` (ISO 639-1 codes or English names); greedy. The
    // chat history is not changed.
    std::string translate(const std::string &text, const std::string &from, const std::string &to) {
        char *out = nullptr;
        check(lamina_session_translate(get(), detail::c_str(text, "text"), detail::c_str(from, "source language"),
                                       detail::c_str(to, "target language"), &out));
        return detail::take_string(out);
    }

    // A short greedy answer to `question`. The chat history is not changed.
    std::string answer(const std::string &question) { return answer_impl(question, nullptr); }

    // A short greedy answer to `question`, with `context` as its source.
    std::string answer(const std::string &question, const std::string &context) {
        return answer_impl(question, detail::c_str(context, "context"));
    }

    // Stops the generation running on this session now (it returns normally with stop reason
    // LAMINA_STOP_REASON_CANCELLED); does nothing when none runs. Any thread, any time.
    void cancel() const { check(lamina_session_cancel(get())); }

    // Applies `adapters[i]` with `scales[i]` (1 = as trained); an empty list returns to the
    // base model. On error the previous adapters stay.
    void set_adapters(const std::vector<const Adapter *> &adapters, const std::vector<float> &scales) {
        if (adapters.size() != scales.size()) {
            throw Error(LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                        "set_adapters: " + std::to_string(adapters.size()) + " adapters but " +
                            std::to_string(scales.size()) + " scales");
        }
        std::vector<const lamina_adapter *> handles;
        handles.reserve(adapters.size());
        for (const Adapter *a : adapters) {
            handles.push_back(a != nullptr ? a->get() : nullptr);
        }
        check(lamina_session_set_adapters(get(), handles.empty() ? nullptr : handles.data(),
                                          scales.empty() ? nullptr : scales.data(), handles.size()));
    }

    // Applies one adapter (replacing any others).
    void set_adapter(const Adapter &adapter, float scale = 1.0f) { set_adapters({&adapter}, {scale}); }

    // Returns to the base model.
    void clear_adapters() { check(lamina_session_set_adapters(get(), nullptr, nullptr, 0)); }

    // The number of adapters last set (0 = the base model).
    std::size_t n_adapters() {
        std::size_t n = 0;
        check(lamina_session_n_adapters(get(), &n));
        return n;
    }

    // Evaluates the model on a data set (task "perplexity", "qa", "translate" or "choice"; see
    // lamina_evaluate) and returns the JSON report. `progress` false stops early (a report
    // with "cancelled": true).
    std::string evaluate(const std::string &task, const std::string &data_path, const EvalParams &params = EvalParams(),
                         const ProgressCallback &progress = nullptr) {
        const lamina_eval_params c = params.to_c();
        detail::CallbackState<ProgressCallback> state(progress);
        char *report = nullptr;
        const lamina_status status =
            lamina_evaluate(get(), detail::c_str(task, "task"), detail::c_str(data_path, "data path"), &c,
                            state.pick<lamina_progress_callback>(&detail::progress_trampoline), &state, &report);
        detail::UniqueString owned(report);
        state.finish(status);
        return owned ? std::string(owned.get()) : std::string();
    }

private:
    static lamina_session *create(const Model &model, const SessionParams &params) {
        const lamina_session_params c = params.to_c();
        lamina_session *session = nullptr;
        check(lamina_session_new(model.get(), &c, &session));
        return session;
    }

    using TextFn = lamina_status (*)(lamina_session *, const char *, const lamina_sampling_params *,
                                     lamina_token_callback, void *, char **, lamina_generation_info *);

    std::string text_call(TextFn fn, const char *input, const Sampling &sampling, const TokenCallback &on_piece,
                          GenerationInfo *info) {
        const detail::CSampling c(sampling);
        detail::CallbackState<TokenCallback> state(on_piece);
        state.cancel_on_error = get();
        state.answer_after_error = true;
        GenerationInfo local;
        char *text = nullptr;
        const lamina_status status = fn(get(), input, &c.params,
                                        state.pick<lamina_token_callback>(&detail::token_trampoline), &state, &text,
                                        info != nullptr ? &local : nullptr);
        detail::UniqueString owned(text);
        state.finish(status);
        std::string out = owned ? std::string(owned.get()) : std::string();
        if (info != nullptr) {
            *info = local;  // only on success, as in C
        }
        return out;
    }

    std::vector<std::string> batch_call(const std::vector<std::string> &prompts,
                                        const std::vector<const lamina_sampling_params *> &sampling,
                                        const BatchCallback &on_piece, std::vector<GenerationInfo> *infos) {
        const std::vector<const char *> c_prompts = detail::c_strs(prompts, "prompt");
        std::vector<char *> texts(prompts.size(), nullptr);
        std::vector<detail::UniqueString> owned;
        owned.reserve(prompts.size());  // so that taking ownership after the call cannot throw
        std::vector<GenerationInfo> local(infos != nullptr ? prompts.size() : 0);
        std::vector<lamina_generation_info *> info_ptrs;
        info_ptrs.reserve(local.size());
        for (GenerationInfo &i : local) {
            info_ptrs.push_back(&i);
        }
        detail::CallbackState<BatchCallback> state(on_piece);
        state.cancel_on_error = get();
        const lamina_status status = lamina_session_generate_batch(
            get(), c_prompts.data(), prompts.size(), sampling.empty() ? nullptr : sampling.data(),
            state.pick<lamina_batch_callback>(&detail::batch_trampoline), &state,
            texts.empty() ? nullptr : texts.data(), info_ptrs.empty() ? nullptr : info_ptrs.data());
        for (char *t : texts) {
            owned.emplace_back(t);
        }
        state.finish(status);
        std::vector<std::string> out;
        out.reserve(owned.size());
        for (const detail::UniqueString &t : owned) {
            out.emplace_back(t ? t.get() : "");
        }
        if (infos != nullptr) {
            *infos = std::move(local);
        }
        return out;
    }

    std::string answer_impl(const std::string &question, const char *context) {
        char *out = nullptr;
        check(lamina_session_answer(get(), detail::c_str(question, "question"), context, &out));
        return detail::take_string(out);
    }
};

// ============================================================================================
// Embeddings
// ============================================================================================

// How to create an Embedder (lamina_embedder_params), with the library's defaults: mean
// pooling, normalised vectors, 512 tokens and 16 texts per call, all cores.
struct EmbedderParams {
    EmbedderParams() {
        lamina_embedder_params c{};
        check(lamina_embedder_params_init(&c, sizeof c));
        pooling = static_cast<lamina_pooling>(c.pooling);
        normalize = c.normalize;
        n_batch = c.n_batch;
        max_texts = c.max_texts;
        n_threads = c.n_threads;
    }
    lamina_pooling pooling;
    bool normalize;
    uint32_t n_batch;
    uint32_t max_texts;
    uint32_t n_threads;

    lamina_embedder_params to_c() const {
        lamina_embedder_params c{};
        check(lamina_embedder_params_init(&c, sizeof c));
        c.pooling = static_cast<int32_t>(pooling);
        c.normalize = normalize;
        c.n_batch = n_batch;
        c.max_texts = max_texts;
        c.n_threads = n_threads;
        return c;
    }
};

// Text embeddings over a model (lamina_embedder): one vector of dimensions() floats per text,
// pooled over the text's own tokens. One call at a time; dimensions() from any thread. Keeps
// its model alive.
class Embedder : public detail::Handle<lamina_embedder, &lamina_embedder_free> {
public:
    Embedder() noexcept = default;
    // Adopts a handle from C.
    explicit Embedder(lamina_embedder *owned) noexcept : Handle(owned) {}
    // Creates an embedder over `model` (lamina_embedder_new).
    explicit Embedder(const Model &model, const EmbedderParams &params = EmbedderParams())
        : Handle(create(model, params)) {}

    // The length of every vector (the model's width).
    size_t dimensions() const {
        size_t n = 0;
        check(lamina_embedder_dimensions(get(), &n));
        return n;
    }

    // One vector per text, in order (lamina_embedder_embed).
    std::vector<std::vector<float>> embed(const std::vector<std::string> &texts) {
        std::vector<const char *> c_texts;
        c_texts.reserve(texts.size());
        for (const std::string &t : texts) {
            c_texts.push_back(detail::c_str(t, "text"));
        }
        const size_t dims = dimensions();
        std::vector<float> flat(texts.size() * dims);
        check(lamina_embedder_embed(get(), c_texts.empty() ? nullptr : c_texts.data(), texts.size(),
                                    flat.empty() ? nullptr : flat.data(), flat.size()));
        std::vector<std::vector<float>> out;
        out.reserve(texts.size());
        for (size_t i = 0; i < texts.size(); i++) {
            out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(i * dims),
                             flat.begin() + static_cast<std::ptrdiff_t>((i + 1) * dims));
        }
        return out;
    }

private:
    static lamina_embedder *create(const Model &model, const EmbedderParams &params) {
        lamina_embedder *e = nullptr;
        const lamina_embedder_params c = params.to_c();
        check(lamina_embedder_new(model.get(), &c, &e));
        return e;
    }
};

// ============================================================================================
// Training
// ============================================================================================

// A fine-tuning run (lamina_trainer): a LoRA adapter, or every weight with TrainParams::full.
// One call at a time; cancel() from any thread, also from the progress callable.
class Trainer : public detail::Handle<lamina_trainer, &lamina_trainer_free> {
public:
    Trainer() noexcept = default;
    // Adopts a handle from C.
    explicit Trainer(lamina_trainer *owned) noexcept : Handle(owned) {}

    // Loads the model, reads and splits the data, initialises a fresh adapter
    // (lamina_trainer_create).
    static Trainer create(const std::string &model_path, const std::string &data_path,
                          const TrainParams &params = TrainParams()) {
        const lamina_train_params c = params.to_c();
        lamina_trainer *trainer = nullptr;
        check(lamina_trainer_create(detail::c_str(model_path, "model path"), detail::c_str(data_path, "data path"), &c,
                                    &trainer));
        return Trainer(trainer);
    }

    // Continues from the newest sound checkpoint in `checkpoint_dir` (lamina_trainer_resume).
    // Without `params` the checkpoint's settings and the default data options are kept; with
    // them, a non-zero `steps` replaces the planned total and the data fields must be the
    // original run's.
    static Trainer resume(const std::string &model_path, const std::string &data_path,
                          const std::string &checkpoint_dir, const std::optional<TrainParams> &params = std::nullopt) {
        std::optional<lamina_train_params> c;
        if (params) {
            c = params->to_c();
        }
        lamina_trainer *trainer = nullptr;
        check(lamina_trainer_resume(detail::c_str(model_path, "model path"), detail::c_str(data_path, "data path"),
                                    c ? &*c : nullptr, detail::c_str(checkpoint_dir, "checkpoint directory"),
                                    &trainer));
        return Trainer(trainer);
    }

    // Trains to the planned number of steps or until cancelled (progress false, or cancel());
    // a cancelled run is a normal return and run() continues it. With `checkpoint_dir`,
    // checkpoints are written there (every checkpoint_every steps and at the end).
    void run(const TrainProgressCallback &progress = nullptr,
             const std::optional<std::string> &checkpoint_dir = std::nullopt) {
        detail::CallbackState<TrainProgressCallback> state(progress);
        const lamina_status status =
            lamina_trainer_run(get(), state.pick<lamina_train_progress_callback>(&detail::train_trampoline), &state,
                               detail::c_str_or_null(checkpoint_dir, "checkpoint directory"));
        state.finish(status);
    }

    // Stops a run in progress after its current step. Any thread, any time.
    void cancel() const { check(lamina_trainer_cancel(get())); }

    // One optimizer step outside of a run; returns its mean loss per target token.
    double step() {
        double loss = 0.0;
        check(lamina_trainer_step(get(), &loss));
        return loss;
    }

    // The validation loss with the current adapter (NaN without a validation set).
    double evaluate() {
        double loss = 0.0;
        check(lamina_trainer_evaluate(get(), &loss));
        return loss;
    }

    // Steps done and the planned total.
    TrainSteps steps() {
        TrainSteps out;
        check(lamina_trainer_steps(get(), &out.step, &out.total_steps));
        return out;
    }

    // Saves the adapter as trained so far: a GGUF file or a PEFT directory at `path`.
    void save_adapter(const std::string &path, lamina_adapter_format format = LAMINA_ADAPTER_FORMAT_GGUF) {
        check(lamina_trainer_save_adapter(get(), detail::c_str(path, "adapter path"), static_cast<int32_t>(format)));
    }

    // Writes the model of a full-parameter trainer as a GGUF file.
    void save_model(const std::string &path) {
        check(lamina_trainer_save_model(get(), detail::c_str(path, "model path")));
    }

    // Writes a checkpoint into `dir` for resume().
    void save_checkpoint(const std::string &dir) {
        check(lamina_trainer_save_checkpoint(get(), detail::c_str(dir, "checkpoint directory")));
    }
};

// ============================================================================================
// Training from scratch
// ============================================================================================

// Options of build_corpus (lamina_corpus_params); checked by the call. See lamina.h for each
// field's meaning and default.
struct CorpusParams {
    bool strip_markup;
    std::string normalization;  // "nfc", "nfkc" or "none"; empty = the default, "nfc" (C NULL)
    bool lowercase;
    bool strip_control;
    bool normalize_whitespace;
    bool dedup_documents;
    bool near_dedup;
    double near_dedup_threshold;
    bool dedup_lines;
    std::size_t min_line_chars;
    std::size_t min_chars;
    std::size_t max_chars;
    std::size_t min_words;
    double train_fraction;
    double validation_fraction;
    double test_fraction;
    uint64_t seed;

    CorpusParams() : CorpusParams(defaults()) {}
    explicit CorpusParams(const lamina_corpus_params &c)
        : strip_markup(c.strip_markup),
          normalization(c.normalization != nullptr ? c.normalization : ""),
          lowercase(c.lowercase),
          strip_control(c.strip_control),
          normalize_whitespace(c.normalize_whitespace),
          dedup_documents(c.dedup_documents),
          near_dedup(c.near_dedup),
          near_dedup_threshold(c.near_dedup_threshold),
          dedup_lines(c.dedup_lines),
          min_line_chars(c.min_line_chars),
          min_chars(c.min_chars),
          max_chars(c.max_chars),
          min_words(c.min_words),
          train_fraction(c.train_fraction),
          validation_fraction(c.validation_fraction),
          test_fraction(c.test_fraction),
          seed(c.seed) {}

    // The C struct; its `normalization` points into this object, so keep this alive during
    // the call.
    lamina_corpus_params to_c() const {
        lamina_corpus_params c = defaults();
        c.strip_markup = strip_markup;
        c.normalization = detail::c_str_or_null(normalization, "normalization");
        c.lowercase = lowercase;
        c.strip_control = strip_control;
        c.normalize_whitespace = normalize_whitespace;
        c.dedup_documents = dedup_documents;
        c.near_dedup = near_dedup;
        c.near_dedup_threshold = near_dedup_threshold;
        c.dedup_lines = dedup_lines;
        c.min_line_chars = min_line_chars;
        c.min_chars = min_chars;
        c.max_chars = max_chars;
        c.min_words = min_words;
        c.train_fraction = train_fraction;
        c.validation_fraction = validation_fraction;
        c.test_fraction = test_fraction;
        c.seed = seed;
        return c;
    }

private:
    static lamina_corpus_params defaults() {
        lamina_corpus_params c;
        check(lamina_corpus_params_init(&c, sizeof c));
        return c;
    }
};

// Options of train_tokenizer (lamina_tokenizer_train_params). See lamina.h for each field.
struct TokenizerTrainParams {
    uint32_t vocab_size;
    uint64_t min_frequency;
    std::string bos_token;                    // passed as it is (an empty token is an error)
    std::string eos_token;                    // likewise
    std::string pad_token;                    // empty = no padding token (C NULL)
    std::vector<std::string> special_tokens;  // more special tokens, such as chat markers
    std::string chat_template;                // empty = none (C NULL)
    bool add_bos_token;

    TokenizerTrainParams() : TokenizerTrainParams(defaults()) {}
    explicit TokenizerTrainParams(const lamina_tokenizer_train_params &c)
        : vocab_size(c.vocab_size),
          min_frequency(c.min_frequency),
          bos_token(c.bos_token != nullptr ? c.bos_token : ""),
          eos_token(c.eos_token != nullptr ? c.eos_token : ""),
          pad_token(c.pad_token != nullptr ? c.pad_token : ""),
          chat_template(c.chat_template != nullptr ? c.chat_template : ""),
          add_bos_token(c.add_bos_token) {
        for (std::size_t i = 0; i < c.n_special_tokens && c.special_tokens != nullptr; i++) {
            special_tokens.emplace_back(c.special_tokens[i] != nullptr ? c.special_tokens[i] : "");
        }
    }

    static lamina_tokenizer_train_params defaults() {
        lamina_tokenizer_train_params c;
        check(lamina_tokenizer_train_params_init(&c, sizeof c));
        return c;
    }
};

// How init_model draws the weights (lamina_init_params).
struct InitParams {
    uint64_t seed;
    float std;                    // standard deviation of the embeddings and projections, > 0
    std::string embeddings_from;  // a GGUF model to copy the token embeddings from; empty = draw them

    InitParams() : InitParams(defaults()) {}
    explicit InitParams(const lamina_init_params &c)
        : seed(c.seed), std(c.std), embeddings_from(c.embeddings_from != nullptr ? c.embeddings_from : "") {}

    // The C struct; its `embeddings_from` points into this object, so keep this alive during
    // the call.
    lamina_init_params to_c() const {
        lamina_init_params c = defaults();
        c.seed = seed;
        c.std = std;
        c.embeddings_from = detail::c_str_or_null(embeddings_from, "embeddings_from");
        return c;
    }

private:
    static lamina_init_params defaults() {
        lamina_init_params c;
        check(lamina_init_params_init(&c, sizeof c));
        return c;
    }
};

// The shape of a model to train from scratch (lamina_model_spec with struct_size set): start
// from preset() and change fields.
struct ModelSpec : lamina_model_spec {
    ModelSpec() noexcept : lamina_model_spec() { struct_size = sizeof(lamina_model_spec); }

    // The preset `name` ("1m", "5m", "20m") with `vocab_size` tokens (lamina_model_spec_preset).
    static ModelSpec preset(const std::string &name, uint32_t vocab_size) {
        ModelSpec spec;
        check(lamina_model_spec_preset(detail::c_str(name, "preset name"), vocab_size, &spec));
        return spec;
    }
};

namespace detail {

// TokenizerTrainParams as the C struct, with the array of special tokens it points to. Not
// copyable or movable: `params.special_tokens` points into `specials`, and its strings into the
// TokenizerTrainParams, which must outlive it.
struct CTokenizerTrainParams {
    lamina_tokenizer_train_params params;
    std::vector<const char *> specials;

    explicit CTokenizerTrainParams(const TokenizerTrainParams &p) : params(TokenizerTrainParams::defaults()) {
        params.vocab_size = p.vocab_size;
        params.min_frequency = p.min_frequency;
        params.bos_token = c_str(p.bos_token, "bos_token");
        params.eos_token = c_str(p.eos_token, "eos_token");
        params.pad_token = c_str_or_null(p.pad_token, "pad_token");
        specials.reserve(p.special_tokens.size());
        for (const std::string &token : p.special_tokens) {
            specials.push_back(c_str(token, "special token"));
        }
        params.special_tokens = specials.empty() ? nullptr : specials.data();
        params.n_special_tokens = specials.size();
        params.chat_template = c_str_or_null(p.chat_template, "chat_template");
        params.add_bos_token = p.add_bos_token;
    }
    CTokenizerTrainParams(const CTokenizerTrainParams &) = delete;
    CTokenizerTrainParams &operator=(const CTokenizerTrainParams &) = delete;
};

inline bool corpus_trampoline(const char *stage, std::size_t done, std::size_t total, void *user_data) noexcept {
    return static_cast<CallbackState<CorpusProgressCallback> *>(user_data)->call(std::string_view(stage), done, total);
}

// The JSON report a lamina call returned, or the callable's exception, or the status's Error.
template <typename F>
std::string report_or_throw(const CallbackState<F> &state, lamina_status status, char *report) {
    UniqueString owned(report);
    state.finish(status);
    return owned ? std::string(owned.get()) : std::string();
}

}  // namespace detail

// Prepares a text corpus for training from scratch (lamina_corpus_build): reads `inputs`
// (files or directories), cleans, deduplicates, filters and splits the documents, writes
// train.jsonl, validation.jsonl, test.jsonl and report.json into `out_dir`, and returns the
// JSON report. `progress` false cancels: nothing is written and the report is
// {"cancelled":true}.
inline std::string build_corpus(const std::vector<std::string> &inputs, const std::string &out_dir,
                                const CorpusParams &params = CorpusParams(),
                                const CorpusProgressCallback &progress = nullptr) {
    const std::vector<const char *> c_inputs = detail::c_strs(inputs, "input path");
    const lamina_corpus_params c = params.to_c();
    detail::CallbackState<CorpusProgressCallback> state(progress);
    char *report = nullptr;
    const lamina_status status =
        lamina_corpus_build(c_inputs.data(), inputs.size(), detail::c_str(out_dir, "output directory"), &c,
                            state.pick<lamina_corpus_progress_callback>(&detail::corpus_trampoline), &state, &report);
    return detail::report_or_throw(state, status, report);
}

// Trains a byte-level BPE tokenizer on `inputs` (lamina_tokenizer_train), writes
// tokenizer.json and tokenizer_config.json into `out_dir`, and returns the JSON report.
inline std::string train_tokenizer(const std::vector<std::string> &inputs, const std::string &out_dir,
                                   const TokenizerTrainParams &params = TokenizerTrainParams()) {
    const std::vector<const char *> c_inputs = detail::c_strs(inputs, "input path");
    const detail::CTokenizerTrainParams c(params);
    char *report = nullptr;
    check(lamina_tokenizer_train(c_inputs.data(), inputs.size(), detail::c_str(out_dir, "output directory"), &c.params,
                                 &report));
    return detail::take_string(report);
}

// Initialises a model of shape `spec` with the tokenizer in `tokenizer_dir` (lamina_init_model),
// writes it as a Hugging Face directory `hf_dir` and, with `gguf_path`, as a GGUF file, and
// returns the JSON report. `progress` (tensors written) false cancels: the report is
// {"cancelled":true}.
inline std::string init_model(const ModelSpec &spec, const std::string &tokenizer_dir, const std::string &hf_dir,
                              const std::optional<std::string> &gguf_path = std::nullopt,
                              const InitParams &params = InitParams(), const ProgressCallback &progress = nullptr) {
    const lamina_init_params c = params.to_c();
    detail::CallbackState<ProgressCallback> state(progress);
    char *report = nullptr;
    const lamina_status status = lamina_init_model(
        &spec, detail::c_str(tokenizer_dir, "tokenizer directory"), detail::c_str(hf_dir, "output directory"),
        detail::c_str_or_null(gguf_path, "GGUF path"), &c,
        state.pick<lamina_progress_callback>(&detail::progress_trampoline), &state, &report);
    return detail::report_or_throw(state, status, report);
}

// Options of a pretraining run (lamina_pretrain_params); checked by Pretrainer::create. See
// lamina.h for each field's meaning and default. Set corpus_dir, output_dir, a budget, and
// either spec and tokenizer_dir (a new model) or init_gguf (continued pretraining).
struct PretrainParams {
    std::string corpus_dir;
    std::string output_dir;
    std::optional<ModelSpec> spec;  // a new model's shape; empty = continue init_gguf (C NULL)
    std::string tokenizer_dir;      // empty = C NULL
    float init_std;
    std::string init_gguf;  // empty = C NULL
    std::string gguf_path;  // empty = output_dir/model.gguf (C NULL)
    std::string hf_dir;     // empty = no Hugging Face directory (C NULL)
    uint32_t seq_len;
    uint32_t batch_size;
    uint32_t grad_accum;
    float learning_rate;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    bool decay_norms_and_embeddings;
    uint32_t warmup_steps;
    int32_t schedule;  // a lamina_train_schedule value
    float max_grad_norm;
    float dropout;
    float attention_dropout;
    uint64_t budget_steps;   // 0 = no step budget
    uint64_t budget_tokens;  // 0 = no token budget
    double budget_seconds;   // 0 = no time budget
    uint32_t eval_every;
    uint32_t eval_sequences;
    std::string checkpoint_dir;  // empty = no checkpoints (C NULL)
    uint32_t checkpoint_every;
    bool resume;
    uint64_t seed;
    uint32_t activation_memory_mib;
    bool checkpointing;
    uint32_t n_threads;
    std::string precision;  // "auto", "f32" or "bf16"; empty = "auto" (C NULL)

    PretrainParams() : PretrainParams(defaults()) {}
    explicit PretrainParams(const lamina_pretrain_params &c)
        : corpus_dir(c.corpus_dir != nullptr ? c.corpus_dir : ""),
          output_dir(c.output_dir != nullptr ? c.output_dir : ""),
          tokenizer_dir(c.tokenizer_dir != nullptr ? c.tokenizer_dir : ""),
          init_std(c.init_std),
          init_gguf(c.init_gguf != nullptr ? c.init_gguf : ""),
          gguf_path(c.gguf_path != nullptr ? c.gguf_path : ""),
          hf_dir(c.hf_dir != nullptr ? c.hf_dir : ""),
          seq_len(c.seq_len),
          batch_size(c.batch_size),
          grad_accum(c.grad_accum),
          learning_rate(c.learning_rate),
          beta1(c.beta1),
          beta2(c.beta2),
          eps(c.eps),
          weight_decay(c.weight_decay),
          decay_norms_and_embeddings(c.decay_norms_and_embeddings),
          warmup_steps(c.warmup_steps),
          schedule(c.schedule),
          max_grad_norm(c.max_grad_norm),
          dropout(c.dropout),
          attention_dropout(c.attention_dropout),
          budget_steps(c.budget_steps),
          budget_tokens(c.budget_tokens),
          budget_seconds(c.budget_seconds),
          eval_every(c.eval_every),
          eval_sequences(c.eval_sequences),
          checkpoint_dir(c.checkpoint_dir != nullptr ? c.checkpoint_dir : ""),
          checkpoint_every(c.checkpoint_every),
          resume(c.resume),
          seed(c.seed),
          activation_memory_mib(c.activation_memory_mib),
          checkpointing(c.checkpointing),
          n_threads(c.n_threads),
          precision(c.precision != nullptr ? c.precision : "") {
        if (c.spec != nullptr) {
            spec = ModelSpec();
            static_cast<lamina_model_spec &>(*spec) = *c.spec;
        }
    }

    // The C struct; its strings and spec point into this object, so keep this alive during the
    // call.
    lamina_pretrain_params to_c() const {
        lamina_pretrain_params c = defaults();
        c.corpus_dir = detail::c_str_or_null(corpus_dir, "corpus_dir");
        c.output_dir = detail::c_str_or_null(output_dir, "output_dir");
        c.spec = spec ? &*spec : nullptr;
        c.tokenizer_dir = detail::c_str_or_null(tokenizer_dir, "tokenizer_dir");
        c.init_std = init_std;
        c.init_gguf = detail::c_str_or_null(init_gguf, "init_gguf");
        c.gguf_path = detail::c_str_or_null(gguf_path, "gguf_path");
        c.hf_dir = detail::c_str_or_null(hf_dir, "hf_dir");
        c.seq_len = seq_len;
        c.batch_size = batch_size;
        c.grad_accum = grad_accum;
        c.learning_rate = learning_rate;
        c.beta1 = beta1;
        c.beta2 = beta2;
        c.eps = eps;
        c.weight_decay = weight_decay;
        c.decay_norms_and_embeddings = decay_norms_and_embeddings;
        c.warmup_steps = warmup_steps;
        c.schedule = schedule;
        c.max_grad_norm = max_grad_norm;
        c.dropout = dropout;
        c.attention_dropout = attention_dropout;
        c.budget_steps = budget_steps;
        c.budget_tokens = budget_tokens;
        c.budget_seconds = budget_seconds;
        c.eval_every = eval_every;
        c.eval_sequences = eval_sequences;
        c.checkpoint_dir = detail::c_str_or_null(checkpoint_dir, "checkpoint_dir");
        c.checkpoint_every = checkpoint_every;
        c.resume = resume;
        c.seed = seed;
        c.activation_memory_mib = activation_memory_mib;
        c.checkpointing = checkpointing;
        c.n_threads = n_threads;
        c.precision = detail::c_str_or_null(precision, "precision");
        return c;
    }

private:
    static lamina_pretrain_params defaults() {
        lamina_pretrain_params c;
        check(lamina_pretrain_params_init(&c, sizeof c));
        return c;
    }
};

// A pretraining run (lamina_pretrainer): checked when created, run once. One call at a time;
// cancel() from any thread, also from the progress callable.
class Pretrainer : public detail::Handle<lamina_pretrainer, &lamina_pretrainer_free> {
public:
    Pretrainer() noexcept = default;
    // Adopts a handle from C.
    explicit Pretrainer(lamina_pretrainer *owned) noexcept : Handle(owned) {}

    // Checks the options and what the files allow before any work (lamina_pretrainer_create).
    static Pretrainer create(const PretrainParams &params) {
        const lamina_pretrain_params c = params.to_c();
        lamina_pretrainer *trainer = nullptr;
        check(lamina_pretrainer_create(&c, &trainer));
        return Pretrainer(trainer);
    }

    // Runs to the end of the budget, or until cancelled (progress false, or cancel(): a normal
    // return, the report's summary says "cancelled":true), and returns report().
    std::string run(const PretrainProgressCallback &progress = nullptr) {
        detail::CallbackState<PretrainProgressCallback> state(progress);
        const lamina_status status =
            lamina_pretrainer_run(get(), state.pick<lamina_pretrain_progress_callback>(&detail::pretrain_trampoline), &state);
        state.finish(status);
        return report();
    }

    // Stops a run in progress after its current step. Any thread, any time.
    void cancel() const { check(lamina_pretrainer_cancel(get())); }

    // What the run did, as JSON (lamina_pretrainer_report_json): {"summary": {...}, ...}.
    std::string report() {
        char *json = nullptr;
        check(lamina_pretrainer_report_json(get(), &json));
        return detail::take_string(json);
    }
};

// ============================================================================================
// Metrics
// ============================================================================================

namespace detail {

// The hypotheses' reference streams laid out stream-major, as lamina_bleu and lamina_chrf
// read them; every stream must have one reference per hypothesis.
inline std::vector<const char *> reference_array(const std::vector<std::string> &hypotheses,
                                                 const std::vector<std::vector<std::string>> &streams) {
    std::vector<const char *> out;
    out.reserve(hypotheses.size() * streams.size() + 1);
    for (const std::vector<std::string> &stream : streams) {
        if (stream.size() != hypotheses.size()) {
            throw Error(LAMINA_STATUS_ERROR_INVALID_ARGUMENT,
                        "a reference stream has " + std::to_string(stream.size()) + " segments, the hypotheses " +
                            std::to_string(hypotheses.size()));
        }
        for (const std::string &r : stream) {
            out.push_back(c_str(r, "reference"));
        }
    }
    if (out.empty()) {
        out.push_back("");  // a count of zero is reported as such, not as a NULL array
    }
    return out;
}

}  // namespace detail

// Corpus BLEU as sacreBLEU computes it; `reference_streams[k][i]` is stream k's reference of
// hypothesis i.
inline BleuScore bleu(const std::vector<std::string> &hypotheses,
                      const std::vector<std::vector<std::string>> &reference_streams) {
    const std::vector<const char *> hyps = detail::c_strs(hypotheses, "hypothesis");
    const std::vector<const char *> refs = detail::reference_array(hypotheses, reference_streams);
    BleuScore score;
    check(lamina_bleu(hyps.data(), hypotheses.size(), refs.data(), reference_streams.size(), &score));
    return score;
}

// Corpus BLEU with one reference per hypothesis.
inline BleuScore bleu(const std::vector<std::string> &hypotheses, const std::vector<std::string> &references) {
    return bleu(hypotheses, std::vector<std::vector<std::string>>{references});
}

// Corpus chrF2 as sacreBLEU computes it, 0 to 100.
inline double chrf(const std::vector<std::string> &hypotheses,
                   const std::vector<std::vector<std::string>> &reference_streams) {
    const std::vector<const char *> hyps = detail::c_strs(hypotheses, "hypothesis");
    const std::vector<const char *> refs = detail::reference_array(hypotheses, reference_streams);
    double score = 0.0;
    check(lamina_chrf(hyps.data(), hypotheses.size(), refs.data(), reference_streams.size(), &score));
    return score;
}

// Corpus chrF2 with one reference per hypothesis.
inline double chrf(const std::vector<std::string> &hypotheses, const std::vector<std::string> &references) {
    return chrf(hypotheses, std::vector<std::vector<std::string>>{references});
}

// SQuAD v1.1 exact match of one prediction against its gold answers: 1.0 or 0.0.
inline double squad_exact_match(const std::string &prediction, const std::vector<std::string> &golds) {
    const std::vector<const char *> g = detail::c_strs(golds, "gold answer");
    double score = 0.0;
    check(lamina_squad_exact_match(detail::c_str(prediction, "prediction"), g.data(), golds.size(), &score));
    return score;
}

// SQuAD v1.1 token F1 of one prediction against its gold answers, 0.0 to 1.0.
inline double squad_f1(const std::string &prediction, const std::vector<std::string> &golds) {
    const std::vector<const char *> g = detail::c_strs(golds, "gold answer");
    double score = 0.0;
    check(lamina_squad_f1(detail::c_str(prediction, "prediction"), g.data(), golds.size(), &score));
    return score;
}

}  // namespace lamina

#endif  // LAMINA_HPP

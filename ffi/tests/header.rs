//! include/lamina.h is generated from this crate by cbindgen and committed.
//!
//! `LAMINA_UPDATE_HEADER=1 cargo test -p lamina-ffi --test header` rewrites it; without the
//! variable this test fails when the committed header differs from what the code generates,
//! so a stale header cannot land. The version macros come from Cargo.toml here, never by hand.
//!
//! The same run writes (or checks) the Python binding's status module,
//! bindings/python/lamina/_status.py, from the header's `lamina_status` enum, and checks that
//! `lamina_status_name` gives the header's name for every status: C, Rust and Python read
//! one list of statuses (the enum in ffi/src/status.rs).

use std::path::PathBuf;

const PREAMBLE: &str = r#"/*
 * lamina: an embeddable LLM runtime (llama.cpp kernels, on-device LoRA, evaluation).
 *
 * API conventions
 * - Every fallible function returns a lamina_status. LAMINA_STATUS_OK (0) is success; on any
 *   other status, lamina_last_error_message() holds a human-readable message for this thread.
 * - Out-parameters come last and are written only on success; on failure they are unmodified.
 * - Every pointer argument is checked: NULL where a value is required gives
 *   LAMINA_STATUS_ERROR_NULL_ARGUMENT. Strings are NUL-terminated UTF-8.
 * - Ownership: lamina never takes ownership of arguments. Handles (lamina_model,
 *   lamina_session) and strings returned through `char **` are owned by the caller and freed
 *   with the matching _free function; every _free function accepts NULL.
 * - Handles are validated: using or freeing a handle that was already freed gives
 *   LAMINA_STATUS_ERROR_INVALID_HANDLE (or is ignored by _free) instead of a crash.
 * - Params structs start with `size_t struct_size`. Initialise them with the matching
 *   lamina_*_params_init(&params, sizeof params) call and then change fields: a program
 *   compiled against this header keeps working with later versions of the library, which may
 *   append fields. Output structs (lamina_generation_info, lamina_bleu_score) start with it
 *   too: the caller sets it to sizeof the struct and lamina writes only the fields that fit.
 *   For both kinds, a struct_size smaller than sizeof(size_t) is
 *   LAMINA_STATUS_ERROR_INVALID_ARGUMENT, before any work is done.
 * - lamina never aborts or exits the host process and never lets a Rust panic cross this
 *   boundary: an internal error becomes LAMINA_STATUS_ERROR_PANIC.
 *
 * Threads
 * - A lamina_model and a lamina_adapter may be used from any number of threads at once.
 * - A lamina_session, lamina_trainer or lamina_pretrainer serves one call at a time; a call
 *   made while another thread is inside one gets LAMINA_STATUS_ERROR_BUSY.
 *   lamina_session_cancel(), lamina_trainer_cancel() and lamina_pretrainer_cancel() may be
 *   called from any thread at any time.
 * - Many sessions over one model may generate concurrently on different threads.
 * - `const` on a handle parameter means exactly this: the function may run concurrently with
 *   any other call on that handle. Functions that take the handle's lock take it non-const.
 * - Callbacks run on the thread that made the call (token, progress callbacks) or on any
 *   thread (log callback).
 *
 * Each function's comment ends with its contract, one line each: Ownership (what the caller
 * owns and frees afterwards), NULL (which pointers may be NULL), Errors (the statuses it
 * returns besides LAMINA_STATUS_OK, short names meaning LAMINA_STATUS_ERROR_...; every
 * function may also return LAMINA_STATUS_ERROR_PANIC), Threads (its thread rule).
 *
 * Sections, in reading order: version; errors, strings and logging; models; sessions;
 * adapters; training; evaluation; backends. Types come first, as C needs them.
 *
 * Logging: lamina prints nothing. Install lamina_set_log_callback() to see llama.cpp's log.
 */"#;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("ffi/ has a parent").to_path_buf()
}

fn version_number() -> u64 {
    let part = |s: &str| s.parse::<u64>().expect("Cargo.toml's version parts are numbers");
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 10000 + part(env!("CARGO_PKG_VERSION_MINOR")) * 100 + part(env!("CARGO_PKG_VERSION_PATCH"))
}

/// The header's function sections, in reading order: (title, what the section is for, its
/// functions in order). Every exported function is in exactly one section; the header test
/// fails on one that is missing, so a new function must be placed here.
const SECTIONS: &[(&str, &str, &[&str])] = &[
    ("Version", "The library's version (the header's is in the LAMINA_VERSION_* macros).", &["lamina_version"]),
    (
        "Errors, strings and logging",
        "What went wrong, freeing the strings lamina returns, and where log lines go.",
        &["lamina_last_error_message", "lamina_status_name", "lamina_string_free", "lamina_set_log_callback"],
    ),
    (
        "Models",
        "Loading a GGUF model (memory-mapped) and reading its metadata.",
        &[
            "lamina_default_model_path",
            "lamina_model_params_init",
            "lamina_model_load",
            "lamina_model_free",
            "lamina_model_info_json",
            "lamina_model_meta",
        ],
    ),
    (
        "Sessions",
        "A context (KV cache) over a model: generation, chat, batches, tasks and cancellation.",
        &[
            "lamina_session_params_init",
            "lamina_sampling_params_init",
            "lamina_session_new",
            "lamina_session_free",
            "lamina_session_n_ctx",
            "lamina_session_generate",
            "lamina_session_chat",
            "lamina_session_set_system_prompt",
            "lamina_session_reset",
            "lamina_session_generate_batch",
            "lamina_session_translate",
            "lamina_session_answer",
            "lamina_session_cancel",
        ],
    ),
    (
        "Saved sessions",
        "A session's conversation (KV cache, history, adapters) saved to a buffer or a file and restored.",
        &[
            "lamina_session_save_state",
            "lamina_session_restore_state",
            "lamina_session_save_state_file",
            "lamina_session_restore_state_file",
            "lamina_bytes_free",
        ],
    ),
    (
        "Embeddings",
        "Pooled, normalised text embeddings from a model, several texts per call.",
        &[
            "lamina_embedder_params_init",
            "lamina_embedder_new",
            "lamina_embedder_free",
            "lamina_embedder_dimensions",
            "lamina_embedder_embed",
        ],
    ),
    (
        "Adapters",
        "LoRA adapters (GGUF or PEFT) loaded into a model and applied to sessions.",
        &[
            "lamina_model_load_adapter",
            "lamina_adapter_free",
            "lamina_adapter_info",
            "lamina_session_set_adapters",
            "lamina_session_n_adapters",
        ],
    ),
    (
        "Training",
        "Fine-tuning on the native engine: a LoRA adapter or every weight, with checkpoints.",
        &[
            "lamina_train_params_init",
            "lamina_trainer_create",
            "lamina_trainer_resume",
            "lamina_trainer_run",
            "lamina_trainer_cancel",
            "lamina_trainer_step",
            "lamina_trainer_evaluate",
            "lamina_trainer_steps",
            "lamina_trainer_save_adapter",
            "lamina_trainer_save_model",
            "lamina_trainer_save_checkpoint",
            "lamina_trainer_free",
        ],
    ),
    (
        "Training from scratch",
        "Corpus preparation, BPE tokenizer training, a new model's initialisation, and pretraining it.",
        &[
            "lamina_corpus_params_init",
            "lamina_corpus_build",
            "lamina_tokenizer_train_params_init",
            "lamina_tokenizer_train",
            "lamina_model_spec_preset",
            "lamina_init_params_init",
            "lamina_init_model",
            "lamina_pretrain_params_init",
            "lamina_pretrainer_create",
            "lamina_pretrainer_run",
            "lamina_pretrainer_cancel",
            "lamina_pretrainer_report_json",
            "lamina_pretrainer_free",
        ],
    ),
    (
        "Evaluation",
        "Metrics equal to their references, and a session run over a data set.",
        &["lamina_bleu", "lamina_chrf", "lamina_squad_exact_match", "lamina_squad_f1", "lamina_eval_params_init", "lamina_evaluate"],
    ),
    ("Backends", "The compute backends (CPU variants, GPUs) this process runs on.", &["lamina_backends_json", "lamina_backends_load"]),
];

/// What every function's comment states, each on a line of its own that starts with the label.
const REQUIRED_LABELS: [&str; 4] = ["Ownership:", "NULL:", "Errors:", "Threads:"];

/// The handle types whose `const` pointer promises "safe to call concurrently".
const HANDLES: [&str; 6] = ["lamina_model", "lamina_session", "lamina_adapter", "lamina_trainer", "lamina_embedder", "lamina_pretrainer"];

/// One function declaration of the header: its comment and its declaration lines.
struct Declaration {
    name: String,
    text: String,
}

/// Split cbindgen's function block (declarations separated by blank lines) into declarations.
fn declarations(block: &str) -> Vec<Declaration> {
    block
        .split("\n\n")
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let code = chunk
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
                .unwrap_or_else(|| panic!("no declaration in {chunk}"));
            Declaration { name: function_name(code).to_string(), text: chunk.trim_matches('\n').to_string() }
        })
        .collect()
}

/// The name in a declaration's first line: the identifier just before the parameter list.
fn function_name(code: &str) -> &str {
    let open = code.find('(').unwrap_or_else(|| panic!("not a function declaration: {code}"));
    let name = code[..open].rsplit(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
    assert!(name.starts_with("lamina_"), "not a lamina function: {code}");
    name
}

/// cbindgen's header with its function declarations grouped into [`SECTIONS`], each under a
/// banner.
fn with_sections(raw: &str) -> String {
    const OPEN: &str = "#endif // __cplusplus\n";
    const CLOSE: &str = "#ifdef __cplusplus\n}  // extern \"C\"";
    let start = raw.find("extern \"C\" {\n").and_then(|i| raw[i..].find(OPEN).map(|j| i + j + OPEN.len())).expect("extern C block");
    let end = raw.rfind(CLOSE).expect("end of the extern C block");
    let mut found: Vec<Declaration> = declarations(&raw[start..end]);
    let mut out = String::from(&raw[..start]);
    for (title, about, names) in SECTIONS {
        let rule = "=".repeat(93);
        out.push_str(&format!("\n// {rule}\n// {title}\n// {about}\n// {rule}\n"));
        for name in names.iter() {
            let at = found.iter().position(|d| d.name == *name).unwrap_or_else(|| panic!("SECTIONS names {name}, which is not exported"));
            out.push('\n');
            out.push_str(&found.remove(at).text);
            out.push('\n');
        }
    }
    let unplaced: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
    assert!(unplaced.is_empty(), "exported functions in no section of ffi/tests/header.rs's SECTIONS: {unplaced:?}");
    out.push('\n');
    out.push_str(&raw[end..]);
    out
}

fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    config.header = Some(PREAMBLE.to_string());
    config.after_includes = Some(format!(
        "\n/* Version of this header, from Cargo.toml. lamina_version() gives the library's. */\n\
         #define LAMINA_VERSION_MAJOR {}\n#define LAMINA_VERSION_MINOR {}\n#define LAMINA_VERSION_PATCH {}\n\
         #define LAMINA_VERSION_STRING \"{}\"\n\
         /* One number that grows with every release, for #if: MAJOR * 10000 + MINOR * 100 + PATCH. */\n\
         #define LAMINA_VERSION_NUMBER {}\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
        version_number(),
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new().with_crate(&crate_dir).with_config(config).generate().expect("cbindgen generates the header").write(&mut out);
    with_sections(&String::from_utf8(out).expect("the header is UTF-8"))
}

/// Every function's comment states its ownership, NULL handling, errors and thread rule, and
/// `const` on the handle a function works on (its first parameter) means what the preamble
/// says: the function may run concurrently with any other call on that handle.
#[test]
fn every_function_documents_its_contract() {
    let header = generate();
    let start = header.find("// ====").expect("the header has sections");
    let end = header.rfind("#ifdef __cplusplus").unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    // Chunks are the section banners (comment only, skipped) and the declarations.
    for chunk in header[start..end].split("\n\n") {
        let Some(code_line) = chunk.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//")) else { continue };
        let name = function_name(code_line);
        let comment: Vec<&str> = chunk.lines().filter_map(|l| l.trim_start().strip_prefix("//")).map(str::trim).collect();
        let code: String = chunk.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join(" ");
        for label in REQUIRED_LABELS {
            if !comment.iter().any(|l| l.starts_with(label)) {
                problems.push(format!("{name}: no `{label}` line"));
            }
        }
        // The thread rule, from its label to the next label.
        let threads: String = comment
            .iter()
            .skip_while(|l| !l.starts_with("Threads:"))
            .enumerate()
            .take_while(|(i, l)| *i == 0 || !REQUIRED_LABELS.iter().any(|label| l.starts_with(label)))
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join(" ");
        // The handle a function works on is its first parameter.
        let first_parameter = code[code.find('(').unwrap() + 1..].split([',', ')']).next().unwrap_or("").trim();
        let const_handle = HANDLES.iter().any(|h| first_parameter.starts_with(&format!("const {h} *")));
        if const_handle && !threads.contains("concurrently") {
            problems.push(format!("{name}: takes a const handle, so its Threads: line must say it runs concurrently"));
        }
        if const_handle && threads.contains("_BUSY") {
            problems.push(format!("{name}: takes a const handle but can be busy: make the handle non-const"));
        }
        checked += 1;
    }
    println!("checked the comments of {checked} functions");
    assert!(checked >= 49, "found only {checked} functions");
    assert!(problems.is_empty(), "functions whose header comment lacks part of its contract:\n{}", problems.join("\n"));
}

#[test]
fn header_is_current() {
    let path = workspace_root().join("include").join("lamina.h");
    let generated = generate();
    if std::env::var_os("LAMINA_UPDATE_HEADER").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/lamina.h is stale: run `LAMINA_UPDATE_HEADER=1 cargo test --release -p lamina-ffi --test header`"
    );
}

#[test]
fn version_macros_match_cargo_toml() {
    let generated = generate();
    let want = format!("#define LAMINA_VERSION_STRING \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(generated.contains(&want), "missing {want}");
    assert!(generated.contains(&format!("#define LAMINA_VERSION_MAJOR {}", env!("CARGO_PKG_VERSION_MAJOR"))));
}

/// `(name, number)` of every entry of the header's `lamina_status` enum.
fn header_statuses(header: &str) -> Vec<(String, i32)> {
    let end = header.find("} lamina_status;").expect("the header defines lamina_status");
    let start = header[..end].rfind("typedef enum {").expect("lamina_status is a typedef enum");
    header[start..end]
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().strip_suffix(',')?.split_once(" = ")?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// bindings/python/lamina/_status.py for these statuses.
fn python_status_module(statuses: &[(String, i32)]) -> String {
    let mut out = String::from(
        "\"\"\"lamina's status codes, generated from include/lamina.h by ffi/tests/header.rs: do not edit.\n\n\
         `LAMINA_UPDATE_HEADER=1 cargo test --release -p lamina-ffi --test header` rewrites it with the header.\n\
         \"\"\"\n\nfrom typing import Dict\n\n",
    );
    for (name, value) in statuses {
        out.push_str(&format!("{name} = {value}\n"));
    }
    out.push_str("\n#: The header's name of every status, by number.\nNAMES: Dict[int, str] = {\n");
    for (name, value) in statuses {
        out.push_str(&format!("    {value}: \"{name}\",\n"));
    }
    out.push_str("}\n");
    out
}

#[test]
fn python_statuses_are_the_headers() {
    let statuses = header_statuses(&generate());
    assert!(statuses.len() >= 19, "found only {} statuses in the header", statuses.len());
    let path = workspace_root().join("bindings").join("python").join("lamina").join("_status.py");
    let generated = python_status_module(&statuses);
    if std::env::var_os("LAMINA_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `LAMINA_UPDATE_HEADER=1 cargo test --release -p lamina-ffi --test header`",
        path.display()
    );
}

#[test]
fn status_names_are_the_headers() {
    let statuses = header_statuses(&generate());
    let name_of = |code: i32| unsafe { std::ffi::CStr::from_ptr(lamina_ffi::lamina_status_name(code)) }.to_str().unwrap().to_string();
    for (name, value) in &statuses {
        assert_eq!(&name_of(*value), name, "lamina_status_name({value})");
    }
    let defined: std::collections::HashSet<i32> = statuses.iter().map(|(_, v)| *v).collect();
    for code in (-3..=300).chain([i32::MIN, i32::MAX]) {
        if !defined.contains(&code) {
            assert_eq!(name_of(code), "LAMINA_STATUS_UNKNOWN", "lamina_status_name({code})");
        }
    }
}

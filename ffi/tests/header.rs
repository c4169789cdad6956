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
 * - A lamina_model may be used from any number of threads at once.
 * - A lamina_session must be used by one thread at a time; a concurrent call gets
 *   LAMINA_STATUS_ERROR_BUSY. lamina_session_cancel() may be called from any thread.
 * - Many sessions over one model may generate concurrently on different threads.
 * - Callbacks run on the thread that made the call (token callbacks) or on any thread (log
 *   callback).
 *
 * Evaluation: lamina_bleu, lamina_chrf and lamina_squad_* compute metrics equal to sacreBLEU's
 * and the official SQuAD script's; lamina_evaluate runs a session over a data file (see
 * docs/datasets.md for the formats) with a progress callback that can cancel.
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
    String::from_utf8(out).expect("the header is UTF-8")
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

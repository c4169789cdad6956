//! The import rules of ARCHITECTURE.md, checked on the source: the two engines never import
//! each other nor what is built on them (evaluation, tasks), and the layers below them
//! (weights, adapter formats, chat templates, data files, logits arithmetic, the log sink,
//! errors) import neither engine nor anything built on them.
//!
//! A source-level check, not a type-level one: Rust has no visibility rule that says "this
//! module may not name that one", and a check that reads `use` paths catches a new upward
//! import in the commit that adds it.

use std::path::{Path, PathBuf};

/// A module of the crate and the top-level modules it must not name.
struct Rule {
    /// Path below runtime/src: a directory or a single file.
    module: &'static str,
    forbidden: &'static [&'static str],
}

const ABOVE_THE_LOWER_LAYERS: &[&str] = &["engine", "native", "eval", "tasks"];

const RULES: &[Rule] = &[
    Rule { module: "engine", forbidden: &["native", "eval", "tasks"] },
    Rule { module: "native", forbidden: &["engine", "eval", "tasks"] },
    Rule { module: "weights", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "adapters", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "chat.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "chat_template.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "log.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "logits.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "data_file.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "error.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "atomic_file.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
    Rule { module: "paths.rs", forbidden: ABOVE_THE_LOWER_LAYERS },
];

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules a line of code names through `crate::`, in both the `crate::x::...`
/// and the `crate::{x, y::z}` forms. Comment lines are skipped: a doc link is not an import.
fn crate_modules_named(line: &str) -> Vec<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return Vec::new();
    }
    let mut named = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: the first path segment of each comma-separated item.
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if !first.is_empty() {
                    named.push(first.to_string());
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            named.push(name);
        }
    }
    named
}

#[test]
fn the_parser_sees_both_import_forms() {
    assert_eq!(crate_modules_named("use crate::engine::ChatTemplate;"), ["engine"]);
    assert_eq!(crate_modules_named("use crate::{error::Result, native::lora::X};"), ["error", "native"]);
    assert_eq!(crate_modules_named("    let x = crate::native::vexp::exp(y);"), ["native"]);
    assert!(crate_modules_named("/// See [`crate::engine::Model`].").is_empty());
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let root = source_root();
    let mut violations = Vec::new();
    let mut checked = 0;
    for rule in RULES {
        let mut files = Vec::new();
        rust_files(&root.join(rule.module), &mut files);
        assert!(!files.is_empty(), "{}: no source found (was it moved? update this rule)", rule.module);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                for module in crate_modules_named(line) {
                    if rule.forbidden.contains(&module.as_str()) {
                        let shown = file.strip_prefix(&root).unwrap().display();
                        violations.push(format!("{shown}:{}: names crate::{module}: {}", number + 1, line.trim()));
                    }
                }
            }
            checked += 1;
        }
    }
    println!("checked {checked} files against {} rules", RULES.len());
    assert!(violations.is_empty(), "imports against the layering of ARCHITECTURE.md:\n{}", violations.join("\n"));
}

//! ffi/ stays thin: every exported function's body is at most 25 lines. A longer body is logic
//! that belongs in the runtime, or conversion that belongs in a helper of its own.

use std::path::Path;

const MAX_BODY_LINES: usize = 25;

/// (name, lines of body) of every `extern "C" fn` in `source`.
fn extern_bodies(source: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let Some(rest) = line.strip_prefix("pub unsafe extern \"C\" fn ").or_else(|| line.strip_prefix("pub extern \"C\" fn ")) else {
            i += 1;
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The body starts after the line that opens it and ends at the matching brace.
        let mut open = i;
        while !lines[open].trim_end().ends_with('{') {
            open += 1;
        }
        let mut depth = 0i32;
        let mut close = open;
        loop {
            depth += lines[close].matches('{').count() as i32 - lines[close].matches('}').count() as i32;
            if depth == 0 {
                break;
            }
            close += 1;
        }
        found.push((name, close - open - 1));
        i = close + 1;
    }
    found
}

#[test]
fn the_counter_sees_a_body() {
    let source = "pub extern \"C\" fn lamina_x(a: i32) -> i32 {\n    let b = a;\n    b\n}\n";
    assert_eq!(extern_bodies(source), [("lamina_x".to_string(), 2)]);
}

#[test]
fn every_exported_body_is_short() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    let mut checked = 0;
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for file in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        for (name, lines) in extern_bodies(&std::fs::read_to_string(file).unwrap()) {
            checked += 1;
            if lines > MAX_BODY_LINES {
                long.push(format!("{name} ({}): {lines} lines", file.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    println!("checked {checked} exported functions");
    assert!(checked >= 49, "found only {checked} exported functions");
    assert!(
        long.is_empty(),
        "exported bodies over {MAX_BODY_LINES} lines (move the logic to the runtime or a helper):\n{}",
        long.join("\n")
    );
}

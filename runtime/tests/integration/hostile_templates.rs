//! A GGUF's `tokenizer.chat_template` is untrusted input. Copies of the default model whose
//! template loops without end, recurses without end, prints or builds a huge string, or calls
//! a function that does not exist: each chat turn ends with a clear `ChatTemplate` error in
//! bounded time, and the session still generates afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lamina::weights::gguf::{Gguf, GgufWriter, MetaValue};
use lamina::{ErrorKind, Model, ModelParams, Sampling, Session, SessionParams};

/// The default model with its chat template replaced by `template`, written to `path`.
fn with_template(path: &Path, template: &str) {
    let source = Gguf::open(lamina::paths::default_model_path()).expect("the default model is fetched (scripts/fetch-model.sh)");
    let mut w = GgufWriter::new();
    w.set_alignment(source.alignment()).unwrap();
    for (key, value) in source.metadata() {
        if key == "tokenizer.chat_template" || key == "general.alignment" {
            continue;
        }
        w.add_metadata(key.clone(), value.clone()).unwrap();
    }
    w.add_metadata("tokenizer.chat_template", MetaValue::from(template)).unwrap();
    for info in source.tensors() {
        let t = source.tensor(&info.name).unwrap();
        w.add_tensor(t.name(), t.ggml_type(), t.dims(), t.data().to_vec()).unwrap();
    }
    w.write(path).unwrap();
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lamina-hostile-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn hostile_templates_end_with_clear_errors_and_the_session_keeps_working() {
    let cases: [(&str, &str, &str); 5] = [
        ("loop", "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}", "instructions"),
        ("recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        ("output", "{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}", "output passed"),
        // minijinja 2 refused the repetition itself ("too large"); 3 charges fuel by length.
        ("repeat", "{{ 'x' * 1000000000000 }}", "was stopped"),
        ("unknown", "{{ no_such_function(messages) }}", "unknown function"),
    ];
    let dir = temp_dir();
    for (name, template, needle) in cases {
        let path = dir.join(format!("{name}.gguf"));
        with_template(&path, template);
        let model = Model::load(&path, &ModelParams::default()).unwrap();
        let mut session = Session::new(&model, &SessionParams { n_ctx: 512, n_threads: 2, ..SessionParams::default() }).unwrap();
        for attempt in 0..2 {
            let start = Instant::now();
            let err = session.chat("Hello", &Sampling::greedy(4), |_| true).expect_err(name);
            let took = start.elapsed();
            println!("{name} (attempt {attempt}): {:.3} s: {err}", took.as_secs_f64());
            assert_eq!(err.kind(), ErrorKind::ChatTemplate, "{name}: {err}");
            assert!(err.to_string().contains(needle), "{name}: {err}");
            assert!(took < Duration::from_secs(20), "{name}: the render took {took:?}");
        }
        assert!(session.history().is_empty(), "{name}: a failed turn entered the history");
        let out = session.generate("The capital of France is", &Sampling::greedy(4), |_| true).unwrap();
        assert!(!out.text.is_empty(), "{name}: the session no longer generates");
        drop(session);
        drop(model);
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

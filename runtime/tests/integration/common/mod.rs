//! Shared helpers for the integration tests: they run on the real default model.

#![allow(dead_code)]

pub mod pretrain;

use std::sync::OnceLock;

use lamina::{Model, ModelParams, Session, SessionParams};

/// The default model, loaded once per test binary. Fails loudly when it was not fetched.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = lamina::paths::default_model_path();
        assert!(path.exists(), "the default model is missing at {}: run scripts/fetch-model.sh", path.display());
        Model::load(&path, &ModelParams::default()).expect("the default model loads")
    })
}

/// A session with a small context (fast to create) and 2 threads.
pub fn session() -> Session {
    session_with_ctx(1024)
}

pub fn session_with_ctx(n_ctx: u32) -> Session {
    Session::new(model(), &SessionParams { n_ctx, n_threads: 2, ..SessionParams::default() }).expect("session")
}

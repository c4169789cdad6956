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

/// An analytic gradient to check against an f64 reference model `M`: its name, its values,
/// where the same tensor's entries live in the reference, and the stride of the entries
/// checked.
pub type GradCase<M> = (String, Vec<f32>, Box<dyn Fn(&mut M, usize) -> &mut f64>, usize);

/// Checks every case's analytic gradient against central finite differences (step 1e-5) of
/// `loss` on `probe`, each entry restored after its two evaluations. Panics naming the entry
/// whose relative error (scaled by the larger magnitude, at least 1e-2) reaches 2e-3; returns
/// the largest relative error and the number of entries checked.
pub fn check_central_differences<M>(probe: &mut M, cases: &[GradCase<M>], loss: impl Fn(&M) -> f64) -> (f64, usize) {
    let h = 1e-5;
    let (mut worst, mut checked) = (0.0f64, 0usize);
    for (name, g, slot, stride) in cases {
        for idx in (0..g.len()).step_by(*stride) {
            let orig = *slot(probe, idx);
            *slot(probe, idx) = orig + h;
            let plus = loss(probe);
            *slot(probe, idx) = orig - h;
            let minus = loss(probe);
            *slot(probe, idx) = orig;
            let fd = (plus - minus) / (2.0 * h);
            let ga = f64::from(g[idx]);
            let err = (ga - fd).abs() / (fd.abs() + ga.abs()).max(1e-2);
            worst = worst.max(err);
            checked += 1;
            assert!(err < 2e-3, "{name}[{idx}]: analytic {ga} vs finite difference {fd}");
        }
    }
    (worst, checked)
}

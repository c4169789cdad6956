//! Greedy generation, chat, translation and QA from Rust.
//!
//! cargo run --release -p lamina --example generate -- "The capital of France is"

use lamina::tasks::{answer, translate};
use lamina::{Model, ModelParams, Sampling, Session, SessionParams};

fn main() -> Result<(), lamina::Error> {
    let prompt = std::env::args().nth(1).unwrap_or_else(|| "The capital of France is".to_string());
    let model = Model::load(lamina::paths::default_model_path(), &ModelParams::default())?;
    let mut session = Session::new(&model, &SessionParams::default())?;

    // Stream a greedy continuation.
    session.generate(&prompt, &Sampling::greedy(32), |piece| {
        print!("{piece}");
        true
    })?;
    println!();

    // Two chat turns; the second reuses the KV cache of the first.
    for message in ["Hi! Please remember the number 42.", "What number did I ask you to remember?"] {
        let reply = session.chat(message, &Sampling::greedy(48), |_| true)?;
        println!("user: {message}\nassistant: {}\n({} of {} prompt tokens reused)", reply.text, reply.reused_tokens, reply.prompt_tokens);
    }

    println!("fr: {}", translate(&mut session, "Good morning!", "en", "fr", &Default::default())?);
    println!("answer: {}", answer(&mut session, "Where does Mira live?", Some("Mira lives in Lisbon."), &Default::default())?);
    Ok(())
}

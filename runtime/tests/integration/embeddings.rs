//! Text embeddings (`Embedder`): normalised vectors of the model's width, in which related
//! sentences score higher than unrelated ones, for both poolings; a batch of texts gives the
//! vectors the texts give one at a time; bad input is refused by index before any work.

use crate::common;

use lamina::engine::embed::cosine;
use lamina::{EmbedParams, Embedder, Error, Pooling};

fn embedder(pooling: Pooling) -> Embedder {
    Embedder::new(common::model(), &EmbedParams { pooling, n_threads: 2, ..EmbedParams::default() }).unwrap()
}

/// (a, b similar to a, c unrelated to both)
const TRIPLES: [[&str; 3]; 4] = [
    ["The cat sat on the mat.", "A cat is sitting on a rug.", "Interest rates rose sharply in the bond market."],
    ["How do I bake bread at home?", "What is a simple recipe for homemade bread?", "The spacecraft entered orbit around Mars."],
    ["The football match ended in a draw.", "The soccer game finished with a tie.", "Photosynthesis converts light into chemical energy."],
    ["Paris is the capital of France.", "France's capital city is Paris.", "My laptop battery drains too quickly."],
];

#[test]
fn similar_sentences_score_higher_than_unrelated_ones() {
    for pooling in [Pooling::Mean, Pooling::Last] {
        let mut e = embedder(pooling);
        let texts: Vec<&str> = TRIPLES.iter().flatten().copied().collect();
        let v = e.embed(&texts).unwrap();
        assert_eq!(v.len(), texts.len());
        for x in &v {
            assert_eq!(x.len(), e.dimensions());
            let norm: f64 = x.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
        let mut wins = 0;
        for t in 0..TRIPLES.len() {
            let (a, b, c) = (&v[3 * t], &v[3 * t + 1], &v[3 * t + 2]);
            let (sim, un_a, un_b) = (cosine(a, b), cosine(a, c), cosine(b, c));
            println!("{pooling:?} {t}: similar {sim:.4}, unrelated {un_a:.4} / {un_b:.4}");
            if sim > un_a && sim > un_b {
                wins += 1;
            }
        }
        assert_eq!(wins, TRIPLES.len(), "{pooling:?}: similar pairs won {wins} of {}", TRIPLES.len());
    }
}

#[test]
fn a_batch_gives_the_vectors_of_one_text_at_a_time() {
    let mut e = embedder(Pooling::Mean);
    let texts = ["Short.", "A somewhat longer sentence about the weather today.", "Third text, in the middle length."];
    let together = e.embed(&texts).unwrap();
    let mut worst = 0.0f64;
    for (text, v) in texts.iter().zip(&together) {
        let alone = e.embed(&[text]).unwrap().remove(0);
        worst = worst.max(1.0 - cosine(&alone, v));
    }
    println!("batched vs alone: largest 1 - cosine {worst:.2e}");
    // Texts of different lengths in one call: each is pooled over all of its own tokens.
    assert!(worst < 1e-6, "batching changed a vector: 1 - cosine = {worst}");
    // More texts than one call holds: split over several calls, in order.
    let mut small = Embedder::new(common::model(), &EmbedParams { max_texts: 2, n_threads: 2, ..EmbedParams::default() }).unwrap();
    let split = small.embed(&texts).unwrap();
    for (a, b) in split.iter().zip(&together) {
        assert!(1.0 - cosine(a, b) < 1e-4);
    }
    assert!(e.embed::<&str>(&[]).unwrap().is_empty());
}

#[test]
fn bad_input_is_refused_by_index() {
    let mut e = Embedder::new(common::model(), &EmbedParams { n_batch: 16, n_threads: 2, ..EmbedParams::default() }).unwrap();
    let long = "word ".repeat(40);
    for (texts, needle) in [(vec!["fine", ""], "text 1 is empty"), (vec![long.as_str()], "text 0 has")] {
        match e.embed(&texts) {
            Err(Error::InvalidArgument { name: "texts", reason }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
    assert_eq!(e.embed(&["still works"]).unwrap().len(), 1);
    for params in [EmbedParams { n_batch: 0, ..Default::default() }, EmbedParams { max_texts: 0, ..Default::default() }] {
        assert!(matches!(Embedder::new(common::model(), &params), Err(Error::InvalidArgument { .. })));
    }
    assert!(matches!(Pooling::parse("max"), Err(Error::InvalidArgument { name: "pooling", .. })));
}

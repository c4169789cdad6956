//! SQuAD v1.1 exact match and token F1, as the official evaluation script computes them.
//!
//! The official `evaluate-v1.1.py` (also what torchmetrics' `SQuAD` and Hugging Face's `squad`
//! metric run) normalises both strings with [`normalize_answer`], then:
//!
//! - exact match is 1 when the normalised strings are equal, else 0;
//! - F1 compares the bags of whitespace tokens: `num_same` is the size of the multiset
//!   intersection, precision `num_same / |prediction|`, recall `num_same / |gold|`, and
//!   F1 `2PR / (P + R)`; when `num_same` is 0 the F1 is 0;
//! - with several gold answers, each metric takes its maximum over them (independently: the best
//!   exact match and the best F1 may come from different golds);
//! - over a data set, both are averaged and reported as percentages ([`squad_scores`]).
//!
//! Consequences worth knowing, all as in the official v1.1 script (and tested):
//!
//! - a prediction and a gold that both normalise to the empty string (for example `"The"` and
//!   `"."`) have exact match 1 but F1 0, because `num_same` is 0. (SQuAD *v2.0*'s script gives
//!   F1 1 there; this module follows v1.1.)
//! - an empty list of gold answers is an error: the official script's `max()` over no scores
//!   raises, and there is no meaningful score.

use std::collections::HashMap;

use super::bleu::py_split;
use crate::error::{Error, Result};

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The official SQuAD v1.1 `normalize_answer`: lowercase, remove ASCII punctuation
/// (`string.punctuation`), replace the whole words `a`, `an`, `the` by a space, and collapse
/// whitespace to single spaces with none at the ends.
///
/// Lowercasing is Unicode's full lowercase mapping, as Python's `str.lower()`. A word here is a
/// maximal run of alphanumeric characters or `_`, which is Python's `\b` boundary; the one
/// difference from Python's `re` is that Rust counts a few combining marks and circled letters
/// with the Other_Alphabetic property as alphanumeric, which matters only for an article written
/// directly against such a character.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered.chars().filter(|&c| !PUNCTUATION.contains(c)).collect();

    // re.sub(r'\b(a|an|the)\b', ' ', text): a match is always a whole maximal word.
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut no_articles = String::with_capacity(no_punct.len());
    let mut rest = no_punct.as_str();
    while let Some(c) = rest.chars().next() {
        let len = if is_word(c) { rest.find(|c: char| !is_word(c)).unwrap_or(rest.len()) } else { c.len_utf8() };
        let piece = &rest[..len];
        if matches!(piece, "a" | "an" | "the") {
            no_articles.push(' ');
        } else {
            no_articles.push_str(piece);
        }
        rest = &rest[len..];
    }

    py_split(&no_articles).collect::<Vec<_>>().join(" ")
}

/// Exact match of `prediction` against the best of `golds`: 1.0 when the normalised prediction
/// equals some normalised gold answer, else 0.0.
///
/// Errors ([`Error::InvalidArgument`]) when `golds` is empty.
pub fn exact_match(prediction: &str, golds: &[impl AsRef<str>]) -> Result<f64> {
    check_golds(golds.len())?;
    let p = normalize_answer(prediction);
    Ok(if golds.iter().any(|g| normalize_answer(g.as_ref()) == p) { 1.0 } else { 0.0 })
}

/// Token F1 of `prediction` against the best of `golds`, 0.0 to 1.0 (see the module
/// documentation for the definition; two answers that both normalise to nothing score 0).
///
/// Errors ([`Error::InvalidArgument`]) when `golds` is empty.
pub fn f1(prediction: &str, golds: &[impl AsRef<str>]) -> Result<f64> {
    check_golds(golds.len())?;
    let p = normalize_answer(prediction);
    let p_tokens: Vec<&str> = py_split(&p).collect();
    let mut best = 0.0f64;
    for g in golds {
        let g = normalize_answer(g.as_ref());
        let g_tokens: Vec<&str> = py_split(&g).collect();
        best = best.max(token_f1(&p_tokens, &g_tokens));
    }
    Ok(best)
}

/// Dataset-level SQuAD scores as the official script prints them.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadScores {
    /// Mean exact match, 0 to 100.
    pub exact_match: f64,
    /// Mean F1, 0 to 100.
    pub f1: f64,
    /// Number of questions.
    pub count: usize,
}

/// Mean exact match and F1 over a data set, as percentages (the official `evaluate()`).
///
/// `golds[i]` holds the gold answers of question `i`. Errors when there are no predictions, when
/// `golds` is not as long as `predictions`, or when a question has no gold answer.
pub fn squad_scores<P, G, S>(predictions: &[P], golds: &[G]) -> Result<SquadScores>
where
    P: AsRef<str>,
    G: AsRef<[S]>,
    S: AsRef<str>,
{
    if predictions.is_empty() {
        return Err(Error::invalid("predictions", "there are no predictions (need at least one)"));
    }
    if golds.len() != predictions.len() {
        return Err(Error::invalid(
            "golds",
            format!("there are {} predictions but {} lists of gold answers; each prediction needs one", predictions.len(), golds.len()),
        ));
    }
    let (mut em, mut f) = (0.0, 0.0);
    for (i, (p, g)) in predictions.iter().zip(golds).enumerate() {
        let g = g.as_ref();
        if g.is_empty() {
            return Err(Error::invalid("golds", format!("question {i} has no gold answer")));
        }
        em += exact_match(p.as_ref(), g)?;
        f += f1(p.as_ref(), g)?;
    }
    let n = predictions.len() as f64;
    Ok(SquadScores { exact_match: 100.0 * em / n, f1: 100.0 * f / n, count: predictions.len() })
}

fn check_golds(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("golds", "there are no gold answers (need at least one)"));
    }
    Ok(())
}

/// The official `f1_score` on already-normalised tokens.
fn token_f1(prediction: &[&str], gold: &[&str]) -> f64 {
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in gold {
        *gold_counts.entry(t).or_insert(0) += 1;
    }
    let mut num_same = 0usize;
    for t in prediction {
        if let Some(c) = gold_counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / prediction.len() as f64;
    let recall = 1.0 * num_same as f64 / gold.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_answer("The  Quick, brown fox!"), "quick brown fox");
        assert_eq!(normalize_answer("an apple a day"), "apple day");
        assert_eq!(normalize_answer("theatre ant"), "theatre ant");
        assert_eq!(normalize_answer("A-B"), "ab");
        assert_eq!(normalize_answer("the_end"), "theend");
        assert_eq!(normalize_answer(""), "");
        assert_eq!(normalize_answer("  \t\n "), "");
        assert_eq!(normalize_answer("Éclair À LA crème"), "éclair à la crème");
    }

    #[test]
    fn punctuation_removed_before_articles() {
        // "the." -> "the" -> removed; "a's" -> "as" stays.
        assert_eq!(normalize_answer("the. a's"), "as");
    }

    #[test]
    fn no_golds_is_an_error() {
        let none: [&str; 0] = [];
        assert!(exact_match("x", &none).is_err());
        assert!(f1("x", &none).is_err());
    }
}

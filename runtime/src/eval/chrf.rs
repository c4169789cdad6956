//! Corpus chrF, equal to sacreBLEU 2.x with its defaults.
//!
//! [`corpus_chrf`] gives the same numbers as `sacrebleu.corpus_chrf(hyps, refs)` (sacreBLEU 2.x,
//! checked against 2.6.0 by `runtime/tests/integration/metrics.rs`), that is chrF2:
//!
//! - character n-grams of orders 1 to 6 (`char_order=6`), no word n-grams (`word_order=0`,
//!   plain chrF, not chrF++), over code points, after all whitespace is removed
//!   (`whitespace=False`); case-sensitive; no tokenization;
//! - `beta = 2` (recall weighs more than precision);
//! - sacreBLEU's default smoothing, `eps_smoothing=False`: precision and recall are averaged over
//!   the *effective* orders only (those where both hypothesis and reference have n-grams), and
//!   the F-score is taken of the averages; with no effective order the score is 0;
//! - per segment, the hypothesis n-grams of an order are not counted when the reference has no
//!   n-grams of that order (sacreBLEU's `_get_match_statistics`);
//! - several references: for each segment the reference with the highest segment-level chrF is
//!   used (the first one on a tie), and its statistics go into the corpus sums;
//! - statistics (hypothesis, reference and matching n-grams per order) summed over the corpus
//!   before precision, recall and F are taken.

use std::collections::HashMap;
use std::fmt;

use super::bleu::{check_corpus, is_py_space};
use crate::error::Result;

/// Character n-gram order (sacreBLEU's `CHRF.CHAR_ORDER`).
pub const CHAR_ORDER: usize = 6;

/// The recall weight of chrF (sacreBLEU's `CHRF.BETA`).
pub const BETA: u32 = 2;

/// A corpus chrF score and the statistics it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Chrf {
    /// chrF2, 0 to 100.
    pub score: f64,
    /// Hypothesis character n-grams counted, orders 1 to 6.
    pub hyp_ngrams: [u64; CHAR_ORDER],
    /// Reference character n-grams (of the chosen references), orders 1 to 6.
    pub ref_ngrams: [u64; CHAR_ORDER],
    /// Matching character n-grams (clipped), orders 1 to 6.
    pub matches: [u64; CHAR_ORDER],
    /// Character n-gram precision averaged over the effective orders, 0 to 100.
    pub precision: f64,
    /// Character n-gram recall averaged over the effective orders, 0 to 100.
    pub recall: f64,
    /// Number of orders with both hypothesis and reference n-grams.
    pub effective_order: usize,
}

impl fmt::Display for Chrf {
    /// sacreBLEU's one-line form, for example `chrF2 = 52.37`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chrF{BETA} = {:.2}", self.score)
    }
}

/// Per-order `[hyp, ref, match]` counts.
type Stats = [[u64; 3]; CHAR_ORDER];

/// Corpus chrF of `hypotheses` against one or more reference streams, with sacreBLEU's defaults.
///
/// `references` has sacreBLEU's layout, as in [`corpus_bleu`](super::bleu::corpus_bleu): a list
/// of reference streams, each as long as `hypotheses`; `references[k][i]` is the k-th reference
/// of segment `i`.
///
/// Errors ([`Error::InvalidArgument`](crate::Error::InvalidArgument)) when there are no
/// hypotheses, no reference streams, or a stream whose length differs from the number of
/// hypotheses. Any text is valid.
pub fn corpus_chrf<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<Chrf>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_corpus(hypotheses.len(), references)?;

    let mut sums: Stats = [[0; 3]; CHAR_ORDER];
    for (i, hyp) in hypotheses.iter().enumerate() {
        let hyp_chars = strip_whitespace(hyp.as_ref());
        let hyp_ngrams = char_ngrams(&hyp_chars);

        let mut best: Option<(f64, Stats)> = None;
        for stream in references {
            let ref_chars = strip_whitespace(stream.as_ref()[i].as_ref());
            let ref_ngrams = char_ngrams(&ref_chars);
            let mut stats: Stats = [[0; 3]; CHAR_ORDER];
            for n in 0..CHAR_ORDER {
                stats[n] = match_statistics(&hyp_ngrams[n], &ref_ngrams[n]);
            }
            let f = f_score(&stats).0;
            // sacreBLEU starts from -1.0 and keeps a strictly better one.
            if best.as_ref().is_none_or(|(best_f, _)| f > *best_f) {
                best = Some((f, stats));
            }
        }

        // `check_corpus` guarantees at least one stream, so `best` is always set.
        let stats = best.map_or([[0; 3]; CHAR_ORDER], |(_, stats)| stats);
        for n in 0..CHAR_ORDER {
            for j in 0..3 {
                sums[n][j] += stats[n][j];
            }
        }
    }

    let (score, precision, recall, effective_order) = f_score(&sums);
    Ok(Chrf {
        score,
        hyp_ngrams: sums.map(|s| s[0]),
        ref_ngrams: sums.map(|s| s[1]),
        matches: sums.map(|s| s[2]),
        precision: 100.0 * precision,
        recall: 100.0 * recall,
        effective_order,
    })
}

/// `''.join(line.split())` as code points.
fn strip_whitespace(line: &str) -> Vec<char> {
    line.chars().filter(|&c| !is_py_space(c)).collect()
}

/// Counts of the character n-grams of each order 1 to 6.
fn char_ngrams(chars: &[char]) -> Vec<HashMap<&[char], u64>> {
    (1..=CHAR_ORDER)
        .map(|n| {
            let mut counts = HashMap::new();
            for g in chars.windows(n) {
                *counts.entry(g).or_insert(0) += 1;
            }
            counts
        })
        .collect()
}

/// sacreBLEU's `_get_match_statistics`: `[hyp count (0 if the reference has none of this order),
/// ref count, clipped matches]`.
fn match_statistics(hyp: &HashMap<&[char], u64>, reference: &HashMap<&[char], u64>) -> [u64; 3] {
    let mut matches = 0;
    let mut hyp_count = 0;
    for (g, &count) in hyp {
        hyp_count += count;
        if let Some(&r) = reference.get(g) {
            matches += count.min(r);
        }
    }
    let ref_count = reference.values().sum();
    [if reference.is_empty() { 0 } else { hyp_count }, ref_count, matches]
}

/// sacreBLEU's `_compute_f_score` with `eps_smoothing=False`: returns (score 0..100, average
/// precision 0..1, average recall 0..1, effective order).
fn f_score(stats: &Stats) -> (f64, f64, f64, usize) {
    let factor = f64::from(BETA * BETA);
    let mut avg_prec = 0.0f64;
    let mut avg_rec = 0.0f64;
    let mut effective_order = 0usize;
    for &[n_hyp, n_ref, n_match] in stats {
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += n_match as f64 / n_hyp as f64;
            avg_rec += n_match as f64 / n_ref as f64;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        return (0.0, 0.0, 0.0, 0);
    }
    avg_prec /= effective_order as f64;
    avg_rec /= effective_order as f64;
    if avg_prec + avg_rec == 0.0 {
        return (0.0, avg_prec, avg_rec, effective_order);
    }
    let mut score = (1.0 + factor) * avg_prec * avg_rec;
    score /= (factor * avg_prec) + avg_rec;
    (100.0 * score, avg_prec, avg_rec, effective_order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_100() {
        let hyp = ["Grüße aus Köln", "東京は大きい"];
        let c = corpus_chrf(&hyp, &[hyp]).unwrap();
        assert!((c.score - 100.0).abs() < 1e-9, "{c}");
    }

    #[test]
    fn whitespace_is_ignored() {
        let c = corpus_chrf(&["a b c d e f g"], &[["abcdefg"]]).unwrap();
        assert!((c.score - 100.0).abs() < 1e-9, "{c}");
    }

    #[test]
    fn empty_lines_give_zero() {
        let c = corpus_chrf(&["", " "], &[["", "x"]]).unwrap();
        assert_eq!(c.score, 0.0);
        assert_eq!(c.effective_order, 0);
    }

    #[test]
    fn best_reference_is_chosen() {
        let one = corpus_chrf(&["the cat"], &[["the cat"]]).unwrap();
        let two = corpus_chrf(&["the cat"], &[["a dog"], ["the cat"]]).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn errors() {
        assert!(corpus_chrf(&[] as &[&str], &[[] as [&str; 0]]).is_err());
        assert!(corpus_chrf(&["a"], &[] as &[[&str; 1]]).is_err());
        assert!(corpus_chrf(&["a"], &[vec!["a", "b"]]).is_err());
    }
}

//! The seeded, document-level split into train, validation and test sets.

use crate::error::{Error, Result};

const SET_NAMES: [&str; 3] = ["train", "validation", "test"];
const FRACTION_NAMES: [&str; 3] = ["train_fraction", "validation_fraction", "test_fraction"];

/// How many of `n` documents each set gets: the fractions' shares rounded by largest
/// remainder (so they sum to `n`), then at least one for every set with a non-zero fraction,
/// taken from the largest set. An error when `n` is smaller than the number of such sets.
pub(super) fn split_counts(n: usize, fractions: [f64; 3]) -> Result<[usize; 3]> {
    let wanted: Vec<usize> = (0..3).filter(|&i| fractions[i] > 0.0).collect();
    if n < wanted.len() {
        let names: Vec<&str> = wanted.iter().map(|&i| SET_NAMES[i]).collect();
        // Name the fraction the caller is most likely to give up: test, then validation.
        let culprit = *wanted.iter().rev().find(|&&i| i > 0).unwrap_or(&0);
        return Err(Error::invalid(
            FRACTION_NAMES[culprit],
            format!(
                "the corpus has {n} document(s) after cleaning, too few to give each of the {} sets one; \
                 add documents, or set the fraction of a set you do not need to 0",
                names.join(", ")
            ),
        ));
    }
    // A share within rounding error of an integer counts as that integer (0.05 · 20 is 1).
    let exact: [f64; 3] = fractions.map(|f| f * n as f64);
    let mut counts: [usize; 3] = exact.map(|e| (if (e - e.round()).abs() < 1e-6 { e.round() } else { e.floor() }) as usize);
    while counts.iter().sum::<usize>() > n {
        let largest = (0..3).max_by_key(|&i| (counts[i], 3 - i)).unwrap_or(0);
        counts[largest] -= 1;
    }
    let mut by_remainder: Vec<usize> = (0..3).collect();
    by_remainder.sort_by(|&a, &b| (exact[b] - counts[b] as f64).total_cmp(&(exact[a] - counts[a] as f64)).then(a.cmp(&b)));
    let left = n - counts.iter().sum::<usize>();
    for &i in by_remainder.iter().filter(|&&i| fractions[i] > 0.0).cycle().take(left) {
        counts[i] += 1;
    }
    for &i in &wanted {
        if counts[i] == 0 {
            // Some set holds at least two: n >= wanted.len() and this one holds none.
            let largest = (0..3).max_by_key(|&j| (counts[j], 3 - j)).unwrap_or(0);
            counts[largest] -= 1;
            counts[i] += 1;
        }
    }
    Ok(counts)
}

/// The set (0 train, 1 validation, 2 test) of each of `n` documents: a seeded shuffle, the
/// first `counts[0]` positions to train, the next `counts[1]` to validation, the rest to test.
pub(super) fn assign(n: usize, counts: [usize; 3], seed: u64) -> Vec<usize> {
    let mut sets = vec![2; n];
    for (position, &doc) in shuffled_order(n, seed).iter().enumerate() {
        sets[doc] = if position < counts[0] {
            0
        } else if position < counts[0] + counts[1] {
            1
        } else {
            2
        };
    }
    sets
}

/// The seeded permutation of `0..n` (Fisher-Yates).
fn shuffled_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// SplitMix64, as the native trainer uses it; kept here so that corpus preparation needs no
/// engine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_fractions_and_sum_to_the_corpus() {
        assert_eq!(split_counts(100, [0.9, 0.05, 0.05]).unwrap(), [90, 5, 5]);
        assert_eq!(split_counts(20, [0.9, 0.05, 0.05]).unwrap(), [18, 1, 1]);
        assert_eq!(split_counts(10, [0.8, 0.1, 0.1]).unwrap(), [8, 1, 1]);
        assert_eq!(split_counts(7, [0.5, 0.5, 0.0]).unwrap(), [4, 3, 0]);
        assert_eq!(split_counts(1, [1.0, 0.0, 0.0]).unwrap(), [1, 0, 0]);
        for n in 1..200 {
            for fractions in [[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0], [0.0, 0.5, 0.5]] {
                let wanted = fractions.iter().filter(|&&f| f > 0.0).count();
                if n < wanted {
                    continue;
                }
                let counts = split_counts(n, fractions).unwrap();
                assert_eq!(counts.iter().sum::<usize>(), n, "{n} {fractions:?}");
                for i in 0..3 {
                    assert_eq!(counts[i] > 0, fractions[i] > 0.0, "{n} {fractions:?} {counts:?}");
                    // Rounding is off by less than one; giving a small set its one document
                    // takes at most two from another.
                    let bound = if n >= 100 { 1.0 } else { 3.0 };
                    assert!((counts[i] as f64 - fractions[i] * n as f64).abs() < bound, "{n} {fractions:?} {counts:?}");
                }
            }
        }
    }

    #[test]
    fn a_tiny_corpus_gives_every_asked_set_one_document_or_a_clear_error() {
        assert_eq!(split_counts(3, [0.9, 0.05, 0.05]).unwrap(), [1, 1, 1]);
        assert_eq!(split_counts(2, [0.9, 0.1, 0.0]).unwrap(), [1, 1, 0]);
        let e = split_counts(2, [0.9, 0.05, 0.05]).unwrap_err().to_string();
        assert!(e.contains("test_fraction") && e.contains("2 document(s)") && e.contains("train, validation, test"), "{e}");
        let e = split_counts(1, [0.9, 0.1, 0.0]).unwrap_err().to_string();
        assert!(e.contains("validation_fraction") && e.contains("1 document(s)"), "{e}");
    }

    #[test]
    fn the_assignment_is_deterministic_for_a_seed_and_differs_for_another() {
        let counts = split_counts(100, [0.8, 0.1, 0.1]).unwrap();
        let a = assign(100, counts, 7);
        assert_eq!(a, assign(100, counts, 7));
        assert_ne!(a, assign(100, counts, 8));
        for (set, &count) in counts.iter().enumerate() {
            assert_eq!(a.iter().filter(|&&s| s == set).count(), count);
        }
    }
}

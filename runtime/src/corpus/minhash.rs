//! Near-duplicate documents by MinHash with locality-sensitive hashing.
//!
//! A document is the set of its character 5-shingles (every run of 5 consecutive characters;
//! a shorter document is one shingle). Its signature is the minimum, over its shingles, of
//! each of [`NUM_HASHES`] seeded hash functions; the share of positions where two signatures
//! agree estimates the Jaccard similarity of the two sets (standard error about 0.035 at a
//! similarity of 0.8). Signatures are cut into bands of rows, and only documents that agree
//! on a whole band are compared, so the search is close to linear in the corpus size.
//!
//! Written here rather than taken from a crate: the few that exist are small, unmaintained or
//! built for other uses, and the method is some eighty lines. Everything is seeded with fixed
//! constants, so the same corpus gives the same result on every machine and run.

use std::collections::HashMap;

use rayon::prelude::*;

use super::CHUNK;

/// Hash functions per signature.
pub const NUM_HASHES: usize = 128;

/// Characters per shingle.
pub const SHINGLE_CHARS: usize = 5;

/// A document's MinHash signature.
pub type Signature = [u32; NUM_HASHES];

/// The seeded hash functions: `h_i(x) = (a_i x + b_i) >> 32` over 64-bit shingle hashes, with
/// odd multipliers `a_i` (multiply-add-shift hashing).
pub struct Hasher {
    a: [u64; NUM_HASHES],
    b: [u64; NUM_HASHES],
}

impl Default for Hasher {
    fn default() -> Self {
        let mut state = 0x6C61_6D69_6E61_u64; // "lamina"
        let mut a = [0; NUM_HASHES];
        let mut b = [0; NUM_HASHES];
        for (a, b) in a.iter_mut().zip(&mut b) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *a = mix(state) | 1;
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            *b = mix(state);
        }
        Hasher { a, b }
    }
}

impl Hasher {
    /// The signature of `text`.
    pub fn signature(&self, text: &str) -> Signature {
        let mut sig = [u32::MAX; NUM_HASHES];
        let mut add = |shingle: &[u8]| {
            let x = mix(fnv1a(shingle));
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                *s = (*s).min((a.wrapping_mul(x).wrapping_add(b) >> 32) as u32);
            }
        };
        let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len())).collect();
        let n_chars = starts.len() - 1;
        if n_chars < SHINGLE_CHARS {
            add(text.as_bytes());
        } else {
            for i in 0..=n_chars - SHINGLE_CHARS {
                add(&text.as_bytes()[starts[i]..starts[i + SHINGLE_CHARS]]);
            }
        }
        sig
    }
}

/// The estimated Jaccard similarity of the documents of two signatures.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / NUM_HASHES as f64
}

/// Rows per band for a similarity threshold: the most rows (fewest candidate pairs) whose
/// band threshold `(1/bands)^(1/rows)`, where the chance of becoming a candidate pair rises
/// most steeply, lies at least 0.05 below `threshold`, so that pairs at the threshold are
/// found with high probability (at 0.8: 8 rows, 16 bands, 95%; at 0.85: 99%).
pub fn rows_per_band(threshold: f64) -> usize {
    let mut best = 1;
    let mut rows = 1;
    while rows <= NUM_HASHES {
        let bands = (NUM_HASHES / rows) as f64;
        if (1.0 / bands).powf(1.0 / rows as f64) <= threshold - 0.05 {
            best = rows;
        }
        rows *= 2;
    }
    best
}

/// Which documents to keep: each one whose estimated similarity to every earlier kept
/// document is below `threshold` (in (0, 1]). The first of a group of near duplicates stays.
/// `progress` is given the documents done so far; None when it returned false.
pub fn near_duplicates(docs: &[String], threshold: f64, mut progress: impl FnMut(usize) -> bool) -> Option<Vec<bool>> {
    let hasher = Hasher::default();
    let rows = rows_per_band(threshold);
    let mut buckets: HashMap<(usize, u64), Vec<u32>> = HashMap::new();
    let mut kept: Vec<Signature> = Vec::new();
    let mut keep = Vec::with_capacity(docs.len());
    let mut done = 0;
    for chunk in docs.chunks(CHUNK) {
        if !progress(done) {
            return None;
        }
        let signatures: Vec<Signature> = chunk.par_iter().map(|d| hasher.signature(d)).collect();
        for sig in signatures {
            let keys: Vec<(usize, u64)> = sig.chunks(rows).enumerate().map(|(band, rows)| (band, band_key(rows))).collect();
            let duplicate = keys
                .iter()
                .any(|key| buckets.get(key).is_some_and(|ids| ids.iter().any(|&id| similarity(&kept[id as usize], &sig) >= threshold)));
            keep.push(!duplicate);
            if !duplicate {
                let id = kept.len() as u32;
                for key in keys {
                    buckets.entry(key).or_default().push(id);
                }
                kept.push(sig);
            }
        }
        done += chunk.len();
    }
    progress(done).then_some(keep)
}

/// One band of a signature as a bucket key. Two different bands with the same key only make
/// an extra candidate pair, which the similarity check then rejects.
fn band_key(rows: &[u32]) -> u64 {
    rows.iter().fold(0xCBF2_9CE4_8422_2325, |h, &r| mix(h ^ u64::from(r)))
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` words drawn with a seeded generator from a vocabulary of 500 made-up words.
    fn words(n: usize, seed: u64) -> Vec<String> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = mix(state.wrapping_add(0x9E37_79B9_7F4A_7C15));
                let w = state % 500;
                format!("{}{}", ["ka", "lo", "mi", "ne", "su", "ta", "vo", "ri"][(w % 8) as usize], w)
            })
            .collect()
    }

    #[test]
    fn one_changed_word_in_300_is_a_near_duplicate_and_unrelated_documents_are_not() {
        let original = words(300, 1);
        let mut edited = original.clone();
        edited[150] = "different".to_string();
        let docs = vec![original.join(" "), words(300, 2).join(" "), edited.join(" "), words(300, 3).join(" ")];
        let h = Hasher::default();
        let s = similarity(&h.signature(&docs[0]), &h.signature(&docs[2]));
        assert!(s > 0.9, "one word in 300 changed: similarity {s}");
        let unrelated = similarity(&h.signature(&docs[0]), &h.signature(&docs[1]));
        assert!(unrelated < 0.3, "unrelated documents: similarity {unrelated}");
        assert_eq!(near_duplicates(&docs, 0.8, |_| true).unwrap(), [true, true, false, true]);
        // At a threshold of 1 only identical shingle sets count.
        assert_eq!(near_duplicates(&docs, 1.0, |_| true).unwrap(), [true, true, true, true]);
        assert!(near_duplicates(&docs, 0.8, |_| false).is_none());
    }

    #[test]
    fn signatures_are_deterministic_and_short_texts_are_one_shingle() {
        let h = Hasher::default();
        assert_eq!(h.signature("the same text"), Hasher::default().signature("the same text"));
        assert_eq!(similarity(&h.signature("abc"), &h.signature("abc")), 1.0);
        assert!(similarity(&h.signature("abc"), &h.signature("abd")) < 0.2);
        // Characters, not bytes: a 5-character text of multi-byte letters is one shingle.
        assert_eq!(h.signature("ééééé"), h.signature("ééééé"));
    }

    #[test]
    fn bands_narrow_as_the_threshold_rises() {
        assert_eq!(rows_per_band(0.8), 8);
        assert_eq!(rows_per_band(0.5), 4);
        assert_eq!(rows_per_band(1.0), 16);
        assert_eq!(rows_per_band(0.01), 1);
    }
}

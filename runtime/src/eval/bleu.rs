//! Corpus BLEU, equal to sacreBLEU 2.x with its defaults.
//!
//! [`corpus_bleu`] gives the same numbers as `sacrebleu.corpus_bleu(hyps, refs)` (sacreBLEU 2.x,
//! checked against 2.6.0 by `runtime/tests/integration/metrics.rs`), that is:
//!
//! - tokenizer `13a` ([`tokenize_13a`], the tokenization of WMT's `mteval-v13a.pl`), applied to
//!   each segment after trailing whitespace is stripped;
//! - case-sensitive (`lowercase=False`);
//! - n-gram orders 1 to 4, all of them counted (`use_effective_order=False`);
//! - smoothing `exp` (NIST's: the k-th order with no match, counting from the lowest, gets
//!   precision `1 / (2^k * total)`), and `log 0` floored to `-9999999999` as sacreBLEU's `my_log`
//!   does, so an order with no n-grams at all makes the score 0;
//! - several references per segment: a hypothesis n-gram is clipped to the largest count it has
//!   in any one reference, and the reference length of a segment is that of the reference
//!   closest in length to the hypothesis, the shorter one on a tie;
//! - statistics summed over the corpus before precisions and the brevity penalty are taken.
//!
//! Text is handled as sacreBLEU handles it: as Unicode code points, with Python's `str.split()`
//! and `str.rstrip()` notion of whitespace (which adds U+001C..U+001F to Unicode's White_Space).

use std::collections::HashMap;
use std::fmt;

use crate::error::{Error, Result};

/// The highest n-gram order BLEU counts (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const MAX_NGRAM_ORDER: usize = 4;

/// A corpus BLEU score with its sufficient statistics, as sacreBLEU's `BLEUScore` reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Bleu {
    /// BLEU, 0 to 100.
    pub score: f64,
    /// Clipped n-gram matches for orders 1 to 4.
    pub counts: [u64; 4],
    /// Hypothesis n-grams for orders 1 to 4.
    pub totals: [u64; 4],
    /// The (smoothed) n-gram precisions, 0 to 100. All zero when nothing matched at all; zero
    /// from the first order on which the hypotheses have no n-grams.
    pub precisions: [f64; 4],
    /// The brevity penalty, `exp(1 - ref_len / sys_len)` when the hypotheses are shorter, else 1
    /// (0 when the hypotheses are empty and the references are not).
    pub brevity_penalty: f64,
    /// Number of hypothesis tokens after 13a tokenization.
    pub sys_len: u64,
    /// Effective reference length: the sum over segments of the closest reference length.
    pub ref_len: u64,
}

impl Bleu {
    /// `sys_len / ref_len`, or 0 when `ref_len` is 0 (as sacreBLEU reports it).
    pub fn ratio(&self) -> f64 {
        if self.ref_len == 0 {
            0.0
        } else {
            self.sys_len as f64 / self.ref_len as f64
        }
    }
}

impl fmt::Display for Bleu {
    /// sacreBLEU's one-line form, for example
    /// `BLEU = 36.41 70.0/44.4/28.6/16.7 (BP = 1.000 ratio = 1.000 hyp_len = 10 ref_len = 10)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.precisions;
        write!(
            f,
            "BLEU = {:.2} {:.1}/{:.1}/{:.1}/{:.1} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})",
            self.score,
            p[0],
            p[1],
            p[2],
            p[3],
            self.brevity_penalty,
            self.ratio(),
            self.sys_len,
            self.ref_len
        )
    }
}

/// Corpus BLEU of `hypotheses` against one or more reference streams, with sacreBLEU's defaults.
///
/// `references` has sacreBLEU's layout: a list of reference *streams*, each as long as
/// `hypotheses`; `references[k][i]` is the k-th reference of segment `i`. One reference per
/// segment is `&[refs]`. An empty string is a reference of length 0 (sacreBLEU treats it the
/// same way; it has no notion of a missing reference other than Python's `None`).
///
/// Errors ([`Error::InvalidArgument`]) when there are no hypotheses, no reference streams, or a
/// stream whose length differs from the number of hypotheses. Any text is valid: empty lines,
/// whitespace-only lines and any Unicode.
pub fn corpus_bleu<H, R, S>(hypotheses: &[H], references: &[R]) -> Result<Bleu>
where
    H: AsRef<str>,
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    check_corpus(hypotheses.len(), references)?;

    let mut correct = [0u64; MAX_NGRAM_ORDER];
    let mut total = [0u64; MAX_NGRAM_ORDER];
    let mut sys_len = 0u64;
    let mut ref_len = 0u64;

    for (i, hyp) in hypotheses.iter().enumerate() {
        let ref_texts: Vec<String> = references.iter().map(|s| preprocess(s.as_ref()[i].as_ref())).collect();
        let hyp_text = preprocess(hyp.as_ref());

        // Reference n-grams, each clipped to its largest count in any one reference.
        let mut ref_ngrams: HashMap<&[&str], u64> = HashMap::new();
        let ref_tokens: Vec<Vec<&str>> = ref_texts.iter().map(|t| py_split(t).collect()).collect();
        for tokens in &ref_tokens {
            for (ngram, count) in count_ngrams(tokens) {
                let best = ref_ngrams.entry(ngram).or_insert(0);
                *best = (*best).max(count);
            }
        }

        let hyp_tokens: Vec<&str> = py_split(&hyp_text).collect();
        let hyp_len = hyp_tokens.len() as u64;
        sys_len += hyp_len;
        ref_len += closest_ref_len(hyp_len, ref_tokens.iter().map(|t| t.len() as u64));

        for (ngram, count) in count_ngrams(&hyp_tokens) {
            let n = ngram.len() - 1;
            total[n] += count;
            if let Some(&r) = ref_ngrams.get(ngram) {
                correct[n] += count.min(r);
            }
        }
    }

    Ok(compute_bleu(correct, total, sys_len, ref_len))
}

/// sacreBLEU's `13a` tokenizer (`Tokenizer13a`, the tokenization of `mteval-v13a.pl`).
///
/// Removes `<skipped>`, joins lines broken after a hyphen, turns newlines into spaces, unescapes
/// `&quot;`, `&amp;`, `&lt;` and `&gt;` (in that order, once each), then splits off ASCII
/// punctuation (except `'`, and `.`/`,` next to digits on the relevant side, and `-` unless a
/// digit precedes it) and joins the tokens with single spaces. It does not strip trailing
/// whitespace first; [`corpus_bleu`] does that before calling it, as sacreBLEU does.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    tokenize_re(&format!(" {line} "))
}

/// sacreBLEU's `TokenizerRegexp`: four regular-expression substitutions, then whitespace
/// normalisation. Each pattern matches exactly two characters (or one, for the first), so
/// Python's `re.sub` (leftmost, non-overlapping, scanning on from the end of each match) is
/// reproduced by a left-to-right scan over code points.
fn tokenize_re(line: &str) -> String {
    // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> ' \1 ': ASCII punctuation and the space, except
    // ' , - . (and no digits or letters).
    let mut out = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }

    let is_digit = |c: char| c.is_ascii_digit();
    let is_period_comma = |c: char| c == '.' || c == ',';

    // ([^0-9])([\.,]) -> '\1 \2 ': period and comma unless preceded by a digit.
    let chars: Vec<char> = out.chars().collect();
    let out = sub_pairs(
        &chars,
        |a, b| !is_digit(a) && is_period_comma(b),
        |a, b, o| {
            o.push(a);
            o.push(' ');
            o.push(b);
            o.push(' ');
        },
    );

    // ([\.,])([^0-9]) -> ' \1 \2': period and comma unless followed by a digit.
    let chars: Vec<char> = out.chars().collect();
    let out = sub_pairs(
        &chars,
        |a, b| is_period_comma(a) && !is_digit(b),
        |a, b, o| {
            o.push(' ');
            o.push(a);
            o.push(' ');
            o.push(b);
        },
    );

    // ([0-9])(-) -> '\1 \2 ': dash when preceded by a digit.
    let chars: Vec<char> = out.chars().collect();
    let out = sub_pairs(
        &chars,
        |a, b| is_digit(a) && b == '-',
        |a, b, o| {
            o.push(a);
            o.push(' ');
            o.push(b);
            o.push(' ');
        },
    );

    let mut joined = String::with_capacity(out.len());
    for token in py_split(&out) {
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(token);
    }
    joined
}

/// `re.sub` for a pattern that matches two characters `(a)(b)`: scan left to right, replace
/// each match, and resume after it.
fn sub_pairs(chars: &[char], matches: impl Fn(char, char) -> bool, replace: impl Fn(char, char, &mut String)) -> String {
    let mut out = String::with_capacity(chars.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            replace(chars[i], chars[i + 1], &mut out);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// BLEU's per-segment preprocessing: `tokenizer(sent.rstrip())`.
fn preprocess(segment: &str) -> String {
    tokenize_13a(segment.trim_end_matches(is_py_space))
}

/// Counts of all n-grams of orders 1 to 4 in `tokens`.
fn count_ngrams<'t, 'a>(tokens: &'t [&'a str]) -> HashMap<&'t [&'a str], u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_NGRAM_ORDER {
        for ngram in tokens.windows(n) {
            *counts.entry(ngram).or_insert(0) += 1;
        }
    }
    counts
}

/// The reference length closest to `hyp_len`, the shorter on a tie (sacreBLEU's
/// `_get_closest_ref_len`).
fn closest_ref_len(hyp_len: u64, ref_lens: impl Iterator<Item = u64>) -> u64 {
    let mut best: Option<(u64, u64)> = None; // (diff, len)
    for len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            None => Some((diff, len)),
            Some((d, l)) if diff < d || (diff == d && len < l) => Some((diff, len)),
            keep => keep,
        };
    }
    best.map_or(0, |(_, len)| len)
}

/// sacreBLEU's `my_log`: the natural log, with `log 0` floored to -9999999999.
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// sacreBLEU's `BLEU.compute_bleu` with `smooth_method='exp'`, `effective_order=False` and
/// order 4, operation for operation.
fn compute_bleu(correct: [u64; 4], total: [u64; 4], sys_len: u64, ref_len: u64) -> Bleu {
    let mut bp = 1.0;
    if sys_len < ref_len {
        bp = if sys_len > 0 { (1.0 - ref_len as f64 / sys_len as f64).exp() } else { 0.0 };
    }

    let mut precisions = [0.0f64; MAX_NGRAM_ORDER];
    let result = |score: f64, precisions: [f64; 4]| Bleu {
        score,
        counts: correct,
        totals: total,
        precisions,
        brevity_penalty: bp,
        sys_len,
        ref_len,
    };

    // Early stop when nothing matched (sacreBLEU #141).
    if correct.iter().all(|&c| c == 0) {
        return result(0.0, precisions);
    }

    let mut smooth_mteval = 1.0f64;
    for n in 0..MAX_NGRAM_ORDER {
        if total[n] == 0 {
            break;
        }
        if correct[n] == 0 {
            smooth_mteval *= 2.0;
            precisions[n] = 100.0 / (smooth_mteval * total[n] as f64);
        } else {
            precisions[n] = 100.0 * correct[n] as f64 / total[n] as f64;
        }
    }

    let mut log_sum = 0.0f64;
    for &p in &precisions {
        log_sum += my_log(p);
    }
    let score = bp * (log_sum / MAX_NGRAM_ORDER as f64).exp();
    result(score, precisions)
}

/// Argument checks shared by the corpus metrics: at least one hypothesis, at least one reference
/// stream, and every stream as long as the hypotheses.
pub(crate) fn check_corpus<R, S>(n_hypotheses: usize, references: &[R]) -> Result<()>
where
    R: AsRef<[S]>,
    S: AsRef<str>,
{
    if n_hypotheses == 0 {
        return Err(Error::invalid("hypotheses", "there are no hypotheses (need at least one segment)"));
    }
    if references.is_empty() {
        return Err(Error::invalid("references", "there are no reference streams (need at least one, as long as the hypotheses)"));
    }
    for (k, stream) in references.iter().enumerate() {
        let len = stream.as_ref().len();
        if len != n_hypotheses {
            return Err(Error::invalid(
                "references",
                format!(
                    "reference stream {k} has {len} segments but there are {n_hypotheses} \
                     hypotheses; each stream must have one reference per hypothesis"
                ),
            ));
        }
    }
    Ok(())
}

/// Python's `str.isspace()`: Unicode White_Space plus the information separators U+001C..U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\u{0B}'
            | '\u{0C}'
            | '\r'
            | '\u{1C}'..='\u{1F}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Python's `str.split()` with no argument: split on runs of whitespace, no empty pieces.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_basics() {
        assert_eq!(tokenize_13a("Hello, world!"), "Hello , world !");
        assert_eq!(tokenize_13a("It costs $3,000.50."), "It costs $ 3,000.50 .");
        assert_eq!(tokenize_13a("pages 10-20 and well-known"), "pages 10 - 20 and well-known");
        assert_eq!(tokenize_13a("&quot;Hi&quot; &amp;lt;b&amp;gt;"), "\" Hi \" < b >");
        assert_eq!(tokenize_13a("don't"), "don't");
        assert_eq!(tokenize_13a(""), "");
        assert_eq!(tokenize_13a(" \t "), "");
        assert_eq!(tokenize_13a("a..b"), "a . . b");
    }

    #[test]
    fn closest_length_prefers_shorter_on_tie() {
        assert_eq!(closest_ref_len(5, [7, 3].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [3, 7].into_iter()), 3);
        assert_eq!(closest_ref_len(5, [9, 6, 4].into_iter()), 4);
    }

    #[test]
    fn identical_is_100() {
        let hyp = ["the cat sat on the mat", "a dog barked loudly at night"];
        let b = corpus_bleu(&hyp, &[hyp]).unwrap();
        assert!((b.score - 100.0).abs() < 1e-9, "{b}");
        assert_eq!(b.brevity_penalty, 1.0);
    }

    #[test]
    fn empty_hypothesis_corpus_is_zero() {
        let b = corpus_bleu(&[""], &[[""]]).unwrap();
        assert_eq!(b.score, 0.0);
        let b = corpus_bleu(&[""], &[["something"]]).unwrap();
        assert_eq!((b.score, b.brevity_penalty), (0.0, 0.0));
    }

    #[test]
    fn errors() {
        let none: [&str; 0] = [];
        assert!(corpus_bleu(&none, &[none]).is_err());
        assert!(corpus_bleu(&["a"], &[] as &[Vec<String>]).is_err());
        let e = corpus_bleu(&["a", "b"], &[vec!["a".to_string()]]).unwrap_err();
        assert!(e.to_string().contains("1 segments") && e.to_string().contains("2 hypotheses"), "{e}");
    }
}

//! BLEU, chrF and SQuAD against their reference implementations.
//!
//! `fixtures/sacrebleu.json` is written by `scripts/make-metric-fixtures.py` with the PyPI
//! `sacrebleu` package (version recorded in the file): corpus BLEU and chrF with sacreBLEU's
//! defaults for made-up corpora, the 13a tokenization of tricky lines, and SQuAD v1.1 cases from
//! a transcription of the official evaluation functions. The SQuAD cases below are worked out by
//! hand on top of those.

use lamina::eval::bleu::{corpus_bleu, tokenize_13a};
use lamina::eval::chrf::corpus_chrf;
use lamina::eval::squad::{exact_match, f1, normalize_answer, squad_scores};
use lamina::ErrorKind;
use serde_json::Value;

/// Largest allowed difference from sacreBLEU, in score points (0..100).
const TOLERANCE: f64 = 0.01;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sacrebleu.json");
    let text = std::fs::read_to_string(path).expect("read fixtures/sacrebleu.json");
    serde_json::from_str(&text).expect("parse fixtures/sacrebleu.json")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// (name, hypotheses, reference streams, the case's JSON object).
type Corpus<'a> = (String, Vec<String>, Vec<Vec<String>>, &'a Value);

fn corpora(data: &Value) -> Vec<Corpus<'_>> {
    data["corpora"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let refs = c["refs"].as_array().unwrap().iter().map(strings).collect();
            (c["name"].as_str().unwrap().to_string(), strings(&c["hyps"]), refs, c)
        })
        .collect()
}

#[test]
fn bleu_matches_sacrebleu() {
    let data = fixture();
    let version = data["sacrebleu_version"].as_str().unwrap();
    let mut max_diff = 0.0f64;
    let mut n = 0;
    for (name, hyps, refs, case) in corpora(&data) {
        let want = &case["bleu"];
        let got = corpus_bleu(&hyps, &refs).unwrap_or_else(|e| panic!("{name}: {e}"));

        assert_eq!(got.counts.to_vec(), u64s(&want["counts"]), "{name}: counts");
        assert_eq!(got.totals.to_vec(), u64s(&want["totals"]), "{name}: totals");
        assert_eq!(got.sys_len, want["sys_len"].as_u64().unwrap(), "{name}: sys_len");
        assert_eq!(got.ref_len, want["ref_len"].as_u64().unwrap(), "{name}: ref_len");

        let mut diffs = vec![
            (got.score - want["score"].as_f64().unwrap()).abs(),
            // The brevity penalty is a factor; compare it in score points.
            100.0 * (got.brevity_penalty - want["bp"].as_f64().unwrap()).abs(),
        ];
        for (g, w) in got.precisions.iter().zip(f64s(&want["precisions"])) {
            diffs.push((g - w).abs());
        }
        for d in &diffs {
            assert!(*d <= TOLERANCE, "{name}: off by {d}: got {got:?}, want {want}");
            max_diff = max_diff.max(*d);
        }
        assert_eq!(got.to_string(), want["str"].as_str().unwrap(), "{name}: display");
        n += 1;
    }
    println!("BLEU: {n} corpora match sacreBLEU {version}; max abs difference {max_diff:e}");
}

#[test]
fn chrf_matches_sacrebleu() {
    let data = fixture();
    let version = data["sacrebleu_version"].as_str().unwrap();
    let mut max_diff = 0.0f64;
    let mut n = 0;
    for (name, hyps, refs, case) in corpora(&data) {
        let want = &case["chrf"];
        let got = corpus_chrf(&hyps, &refs).unwrap_or_else(|e| panic!("{name}: {e}"));

        let stats: Vec<Vec<u64>> = want["stats"].as_array().unwrap().iter().map(u64s).collect();
        for (order, s) in stats.iter().enumerate() {
            let mine = vec![got.hyp_ngrams[order], got.ref_ngrams[order], got.matches[order]];
            assert_eq!(&mine, s, "{name}: [hyp, ref, match] of character order {}", order + 1);
        }

        let d = (got.score - want["score"].as_f64().unwrap()).abs();
        assert!(d <= TOLERANCE, "{name}: off by {d}: got {got:?}, want {want}");
        max_diff = max_diff.max(d);
        assert_eq!(got.to_string(), want["str"].as_str().unwrap(), "{name}: display");
        n += 1;
    }
    println!("chrF: {n} corpora match sacreBLEU {version}; max abs difference {max_diff:e}");
}

#[test]
fn tokenizer_13a_matches_sacrebleu() {
    let data = fixture();
    let cases = data["tokenize_13a"].as_array().unwrap();
    for case in cases {
        let input = case["input"].as_str().unwrap();
        assert_eq!(tokenize_13a(input), case["output"].as_str().unwrap(), "input {input:?}");
    }
    println!("13a: {} tokenizations identical to sacreBLEU's", cases.len());
}

#[test]
fn squad_matches_official_functions() {
    let data = fixture();
    let cases = data["squad"].as_array().unwrap();
    for case in cases {
        let p = case["prediction"].as_str().unwrap();
        let golds = strings(&case["golds"]);
        assert_eq!(normalize_answer(p), case["normalized"].as_str().unwrap(), "{p:?}");
        assert_eq!(exact_match(p, &golds).unwrap(), case["exact_match"].as_f64().unwrap(), "{p:?}");
        let d = (f1(p, &golds).unwrap() - case["f1"].as_f64().unwrap()).abs();
        assert!(d < 1e-12, "{p:?}: F1 off by {d}");
    }
    println!("SQuAD: {} cases identical to the official v1.1 functions", cases.len());
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn squad_hand_worked() {
    // 1. Articles and case: "The Big Apple" -> "big apple" == "big apple".
    assert_eq!(exact_match("The Big Apple", &["big apple"]).unwrap(), 1.0);
    assert_eq!(f1("The Big Apple", &["big apple"]).unwrap(), 1.0);

    // 2. Punctuation goes before articles are looked for: "the." -> "the" -> removed, and
    //    punctuation inside a word joins it: "U.S." -> "us".
    assert_eq!(normalize_answer("the. U.S. Army!"), "us army");
    assert_eq!(exact_match("the. U.S. Army!", &["US army"]).unwrap(), 1.0);

    // 3. Articles only as whole words: "theory", "another", "cathedral" keep their letters.
    assert_eq!(normalize_answer("A theory of another cathedral"), "theory of another cathedral");

    // 4. Partial overlap. pred "the quick brown fox" -> [quick, brown, fox] (3 tokens),
    //    gold "a brown fox jumped" -> [brown, fox, jumped] (3 tokens). Common: brown, fox = 2.
    //    P = 2/3, R = 2/3, F1 = 2 * (4/9) / (4/3) = 2/3.
    assert!(close(f1("the quick brown fox", &["a brown fox jumped"]).unwrap(), 2.0 / 3.0));
    assert_eq!(exact_match("the quick brown fox", &["a brown fox jumped"]).unwrap(), 0.0);

    // 5. Unequal lengths. pred "Albert Einstein" (2 tokens), gold "physicist Albert Einstein
    //    in 1921" -> [physicist, albert, einstein, in, 1921] (5 tokens). Common 2.
    //    P = 2/2 = 1, R = 2/5, F1 = 2 * 0.4 / 1.4 = 4/7.
    assert!(close(f1("Albert Einstein", &["physicist Albert Einstein in 1921"]).unwrap(), 4.0 / 7.0));

    // 6. Multiset overlap. pred [red, red, red, blue] (4), gold [red, blue, blue] (3).
    //    Common: min(3,1) red + min(1,2) blue = 2. P = 2/4, R = 2/3,
    //    F1 = 2 * (1/3) / (7/6) = 4/7.
    assert!(close(f1("red red red blue", &["red blue blue"]).unwrap(), 4.0 / 7.0));

    // 7. Several golds: maximum over them, each metric on its own. Against "1889" the
    //    pred "in 1889" has F1 2/3 (P 1/2, R 1); against "in the year 1889" -> [in, year, 1889]
    //    it has P 1, R 2/3, F1 0.8. Neither matches exactly; a third gold "In 1889." does.
    let golds = ["1889", "in the year 1889"];
    assert!(close(f1("in 1889", &golds).unwrap(), 0.8));
    assert_eq!(exact_match("in 1889", &golds).unwrap(), 0.0);
    assert_eq!(exact_match("in 1889", &["1889", "In 1889."]).unwrap(), 1.0);

    // 8. No overlap: F1 0 (num_same = 0), EM 0.
    assert_eq!(f1("London", &["Paris"]).unwrap(), 0.0);

    // 9. Both normalise to nothing: EM 1 ("" == ""), but F1 0, since the official v1.1 script
    //    returns 0 whenever num_same is 0. (SQuAD v2.0's script would give 1 here.)
    assert_eq!(exact_match("The", &["an ..."]).unwrap(), 1.0);
    assert_eq!(f1("The", &["an ..."]).unwrap(), 0.0);

    // 10. Empty prediction against a real answer: 0 and 0.
    assert_eq!(exact_match("", &["Mount Everest"]).unwrap(), 0.0);
    assert_eq!(f1("", &["Mount Everest"]).unwrap(), 0.0);

    // 11. Non-ASCII punctuation is not removed (string.punctuation is ASCII), Unicode case is
    //     folded: "«Café»" -> "«café»", which differs from "café".
    assert_eq!(normalize_answer("«Café»"), "«café»");
    assert_eq!(exact_match("«Café»", &["café"]).unwrap(), 0.0);
    // F1 0: the only tokens are "«café»" and "café".
    assert_eq!(f1("«Café»", &["café"]).unwrap(), 0.0);

    // 12. Whitespace of any kind collapses: tabs, newlines, no-break and ideographic spaces.
    assert_eq!(normalize_answer("  New\tYork\u{a0}City\u{3000}\n"), "new york city");

    // 13. Hyphens and apostrophes are removed, not turned into spaces: "well-known" ->
    //     "wellknown", "O'Brien's" -> "obriens". pred [wellknown, obriens] vs gold
    //     [well, known, obriens]: common 1, P 1/2, R 1/3, F1 = 2 * (1/6) / (5/6) = 0.4.
    assert!(close(f1("well-known O'Brien's", &["well known OBriens"]).unwrap(), 0.4));

    // 14. Dataset level: percentages averaged over questions, as the official `evaluate()`.
    //     EM: (1 + 0) / 2 = 50 %; F1: (1 + 2/3) / 2 = 83.33... %.
    let s = squad_scores(&["Paris", "in 1889"], &[vec!["paris"], vec!["1889"]]).unwrap();
    assert_eq!(s.count, 2);
    assert!(close(s.exact_match, 50.0));
    assert!(close(s.f1, 100.0 * (1.0 + 2.0 / 3.0) / 2.0));
}

#[test]
fn error_cases() {
    let no_hyps: Vec<String> = vec![];
    let one = vec!["a cat".to_string()];

    // No hypotheses.
    let e = corpus_bleu(&no_hyps, std::slice::from_ref(&no_hyps)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("hypotheses"), "{e}");
    let e = corpus_chrf(&no_hyps, std::slice::from_ref(&no_hyps)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // No reference streams.
    let none: Vec<Vec<String>> = vec![];
    let e = corpus_bleu(&one, &none).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("no reference streams"), "{e}");
    let e = corpus_chrf(&one, &none).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // A stream of the wrong length, even when another one is right: both counts in the message.
    let hyps = ["one", "two", "three"];
    let refs = [vec!["one", "two", "three"], vec!["one", "two"]];
    let e = corpus_bleu(&hyps, &refs).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("stream 1") && msg.contains("2 segments") && msg.contains("3 hypotheses"), "{msg}");
    let e = corpus_chrf(&hyps, &refs).unwrap_err();
    assert!(e.to_string().contains("2 segments") && e.to_string().contains("3 hypotheses"), "{e}");
    assert!(corpus_bleu(&hyps, &[vec!["a", "b", "c", "d"]]).is_err());

    // SQuAD: no gold answers, and mismatched data-set lengths.
    let no_golds: [&str; 0] = [];
    assert_eq!(exact_match("x", &no_golds).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(f1("x", &no_golds).unwrap_err().kind(), ErrorKind::InvalidArgument);
    let e = squad_scores(&["a", "b"], &[vec!["a"]]).unwrap_err();
    assert!(e.to_string().contains("2 predictions") && e.to_string().contains("1 lists"), "{e}");
    assert!(squad_scores(&["a"], &[Vec::<&str>::new()]).is_err());
    assert!(squad_scores(&[] as &[&str], &[] as &[Vec<&str>]).is_err());
}

#[test]
fn odd_inputs_do_not_panic() {
    let odd = [
        "",
        " ",
        "\t\n\r\u{b}\u{c}\u{1c}\u{85}\u{a0}\u{2028}\u{3000}",
        "\u{301}\u{301}",
        "&amp;&amp;&quot;&lt;&gt;&",
        "-\n-\n-",
        "<skipped><skipped>",
        "\0\u{1}\u{7f}",
        "🙂🙂🙂🙂🙂🙂🙂",
        "ǅ İ ß ﬁ Σ",
        "1.,.,.,-1-,2",
    ];
    for h in odd {
        for r in odd {
            let b = corpus_bleu(&[h], &[[r], [h]]).unwrap();
            assert!(b.score.is_finite() && (0.0..=100.0 + 1e-9).contains(&b.score), "{h:?} {r:?} {b:?}");
            let c = corpus_chrf(&[h], &[[r]]).unwrap();
            assert!(c.score.is_finite() && (0.0..=100.0 + 1e-9).contains(&c.score), "{h:?} {r:?} {c:?}");
            let f = f1(h, &[r]).unwrap();
            assert!((0.0..=1.0).contains(&f), "{h:?} {r:?} {f}");
            exact_match(h, &[r]).unwrap();
        }
        let _ = tokenize_13a(h);
    }
}

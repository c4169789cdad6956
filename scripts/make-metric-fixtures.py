#!/usr/bin/env python3
"""Write runtime/tests/fixtures/sacrebleu.json: reference values for lamina's BLEU, chrF and SQuAD.

The BLEU and chrF numbers come from the PyPI package `sacrebleu` with its default settings
(`sacrebleu.corpus_bleu` / `sacrebleu.corpus_chrf`), the 13a tokenizations from its `Tokenizer13a`.
The SQuAD cases come from a transcription of the official SQuAD v1.1 evaluation functions below.
All texts are made up here; no public data set is used.

sacreBLEU is not installed by this script. Install it first, for example in a virtual environment:

    python3 -m venv /tmp/sbenv && /tmp/sbenv/bin/pip install sacrebleu==2.6.0
    /tmp/sbenv/bin/python scripts/make-metric-fixtures.py

and run `cargo test --release -p lamina --test metrics` to compare lamina with the new values.
"""

import json
import random
import re
import string
import sys
from collections import Counter
from pathlib import Path

try:
    import sacrebleu
    from sacrebleu.metrics import CHRF
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    from sacrebleu.utils import sum_of_lists
except ImportError:
    sys.exit("sacrebleu is not installed: pip install sacrebleu==2.6.0 (see this script's docstring)")

OUT = Path(__file__).resolve().parent.parent / "runtime" / "tests" / "fixtures" / "sacrebleu.json"


def random_corpus(seed, n_segments, n_refs):
    """A deterministic pseudo-random corpus over a small made-up vocabulary, so that n-grams repeat
    and partially match, with punctuation, numbers and the odd empty line."""
    rng = random.Random(seed)
    words = ("river stone lamp orange seven quiet garden north window paper little bright "
             "the a of and to in is was Tuesday Köln café naïve 東京 雨 🙂 well-known "
             "3.5 1,200 12-14 , . ; : ! ? ( ) \" ' - & &amp; &quot;").split()
    # Occasional whitespace oddities between words.
    gaps = [" "] * 20 + ["  ", "\t", "\u00a0", "\u3000"]

    def sentence(base):
        out = []
        for w in base:
            r = rng.random()
            if r < 0.15:
                continue  # drop a word
            if r < 0.30:
                w = rng.choice(words)  # substitute
            out.append(w)
            if rng.random() < 0.08:
                out.append(rng.choice(words))  # insert
        text = ""
        for w in out:
            text += (rng.choice(gaps) if text else "") + w
        return text

    hyps = []
    refs = [[] for _ in range(n_refs)]
    for i in range(n_segments):
        base = [rng.choice(words) for _ in range(rng.randint(1, 18))]
        if i % 17 == 5:
            hyps.append("")
        else:
            hyps.append(sentence(base))
        for k in range(n_refs):
            refs[k].append(sentence(base) if i % 23 != 7 or k > 0 else "")
    return hyps, refs


CORPORA = [
    {
        "name": "single_reference",
        "hyps": [
            "The little boat drifted slowly toward the harbour at dawn.",
            "She poured two cups of tea and sat by the window.",
            "Our neighbours painted their fence bright green last summer.",
        ],
        "refs": [[
            "The small boat drifted slowly towards the harbour at dawn.",
            "She poured two cups of tea and sat down by the window.",
            "Last summer our neighbours painted their fence a bright green.",
        ]],
    },
    {
        "name": "multiple_references",
        "hyps": [
            "The committee approved the new budget on Monday.",
            "He forgot his umbrella again.",
            "Children were playing in the snow behind the school.",
            "Nobody answered the phone.",
        ],
        "refs": [
            [
                "On Monday the committee approved the new budget.",
                "Once again he forgot his umbrella.",
                "Behind the school, children played in the snow.",
                "No one picked up the phone.",
            ],
            [
                "The committee passed the new budget on Monday.",
                "He had forgotten his umbrella again.",
                "Children were playing in the snow behind the school building.",
                "Nobody answered the telephone.",
            ],
            [
                "The new budget was approved by the committee Monday.",
                "He forgot the umbrella.",
                "Kids played in snow behind the school.",
                "Nobody answered.",
            ],
        ],
    },
    {
        "name": "reference_length_tie",
        # Hypothesis of 4 tokens, references of 3 and 5 tokens: the shorter one counts.
        "hyps": ["one two three four"],
        "refs": [["one two three four five"], ["one two three"]],
    },
    {
        "name": "punctuation_digits_dashes_entities",
        "hyps": [
            "Prices rose 3.5% to $1,200.50 on 2024-05-01, analysts said.",
            "He said &quot;no&quot; &amp; left &lt;quickly&gt;.",
            "State-of-the-art models (e.g. X-9) cost 10-20x more... really?!",
            "Call me at +1 (555) 010-9999 or e-mail a.b@c.example; thanks!",
            "It's O'Neil's \"quoted\" word: {braces} [brackets] <angles> ~tilde~ `tick` ^caret^ |pipe| \\slash/",
            "Version 2.0.1, items 1,2,3 and 4.5.6 end.",
            "<skipped> The rest of the line-\nbreak stays\nhere.",
        ],
        "refs": [[
            "Prices rose 3.5 % to $1,200.50 on 2024-05-01, analysts said.",
            "He said \"no\" & left <quickly>.",
            "State-of-the-art models (e.g. X-9) cost 10 - 20 times more... really?",
            "Call me at +1 (555) 010-9999 or e-mail a.b@c.example; thank you!",
            "It's O'Neil's 'quoted' word: {braces} [brackets] <angles> ~tilde~ `tick` ^caret^ |pipe| \\slash/",
            "Version 2.0.1, items 1, 2, 3 and 4.5.6 end.",
            "The rest of the linebreak stays here.",
        ]],
    },
    {
        "name": "unicode",
        "hyps": [
            "Die Straße über den Fluss ist schön, sagte Jürgen.",
            "L'été dernier, Hélène a mangé une crème brûlée à Noël.",
            "東京は今日、雨が降っています。",
            "Great job 🎉🎉 see you soon 🙂!",
            "Ελληνικά κείμενα ΟΔΟΣ και ὀδός.",
            "Combining: cafe\u0301 vs café, non\u00a0breaking\u2009thin\u3000ideographic.",
            "Separators\u001cbetween\u001dwords\u001eand\u001funits.",
        ],
        "refs": [[
            "Die Straße über den Fluss ist schön, sagte Jürgen.",
            "L'été dernier, Hélène a mangé une crème brûlée pour Noël.",
            "東京は今日雨が降っている。",
            "Great work 🎉 see you soon 🙂!",
            "Ελληνικά κείμενα ΟΔΟΣ και οδός.",
            "Combining: café vs cafe\u0301, non breaking thin ideographic.",
            "Separators between words and units.",
        ]],
    },
    {
        "name": "empty_hypothesis_line",
        "hyps": ["The garden gate was left open.", "", "Birds sang in the morning light."],
        "refs": [["The garden gate had been left open.", "Nothing was said.", "Birds sang in the early morning light."]],
    },
    {
        "name": "brevity_penalty",
        "hyps": ["The train left.", "We ate soup."],
        "refs": [["The evening train left the station on time.", "We ate hot tomato soup with bread for lunch."]],
    },
    {
        "name": "zero_fourgram_matches",
        # Unigram, bigram and trigram matches but no 4-gram in common: exp smoothing.
        "hyps": ["red green blue yellow red green blue", "alpha beta gamma delta epsilon"],
        "refs": [["red green blue red green yellow", "alpha beta gamma epsilon delta"]],
    },
    {
        "name": "zero_bigram_and_higher_matches",
        "hyps": ["cats dogs birds fish"],
        "refs": [["fish birds dogs cats"]],
    },
    {
        "name": "no_match_at_all",
        "hyps": ["completely different words here"],
        "refs": [["nothing in common whatsoever"]],
    },
    {
        "name": "too_short_for_fourgrams",
        # Three tokens in total: no 4-grams at all, so BLEU is 0 although words match.
        "hyps": ["Yes .", "No"],
        "refs": [["Yes .", "No"]],
    },
    {
        "name": "identical",
        "hyps": [
            "A quiet afternoon in the library, with rain against the glass.",
            "Über 3,5 Millionen Menschen — ein Rekord!",
            "雨の日の図書館。",
        ],
        "refs": [[
            "A quiet afternoon in the library, with rain against the glass.",
            "Über 3,5 Millionen Menschen — ein Rekord!",
            "雨の日の図書館。",
        ]],
    },
    {
        "name": "whitespace_only_and_trailing_space",
        "hyps": ["   ", "tabs\tand  double  spaces   ", "\n", "end of line \n"],
        "refs": [["", "tabs and double spaces", "something", "end of line"]],
    },
    {
        "name": "all_hypotheses_empty",
        "hyps": ["", ""],
        "refs": [["A reference.", "Another one."]],
    },
    {
        "name": "all_empty",
        "hyps": [""],
        "refs": [[""]],
    },
    {
        "name": "longer_hypothesis",
        "hyps": ["The cat, the very old cat, sat quietly on the warm red mat all afternoon long."],
        "refs": [["The old cat sat on the mat."], ["An old cat sat on the red mat."]],
    },
]

for seed, n, nrefs in [(11, 60, 1), (23, 40, 3)]:
    hyps, refs = random_corpus(seed, n, nrefs)
    CORPORA.append({"name": f"random_seed{seed}_{n}x{nrefs}", "hyps": hyps, "refs": refs})

TOKENIZE = [
    "Hello, world!",
    "It costs $3,000.50.",
    "pages 10-20 and well-known, 3-4-5",
    "&quot;Hi&quot; &amp;lt;b&amp;gt; AT&T &amp; &nbsp; &#39;",
    "don't won't 'single' \"double\"",
    "a..b a,,b 1.2.3 1,2,3 .5 5. ,5 5, x.5 5.x",
    "e.g. i.e. U.S.A. Mr. Smith",
    "<skipped> keep <skipped>this",
    "line-\nbreak and\nnewline",
    "(paren) [bracket] {brace} <angle> ~ ` ^ | \\ / @ # % * + = : ; ? !",
    "Straße, Jürgen! L'été; naïve—café… «guillemets» „Anführung“",
    "東京は、今日。雨！",
    "emoji🙂,🎉. end",
    "tabs\tand  spaces \u00a0nbsp\u3000ideographic\u001cfs",
    "trailing spaces   ",
    "  leading",
    "",
    "   ",
    "9-",
    "-9 -x x- 9-x",
    "...",
    ",,,",
    "12,345,678.90-12",
]


def normalize_answer(s):
    """The official SQuAD v1.1 normalisation."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(prediction, gold):
    p = normalize_answer(prediction).split()
    g = normalize_answer(gold).split()
    num_same = sum((Counter(p) & Counter(g)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(p)
    recall = num_same / len(g)
    return (2 * precision * recall) / (precision + recall)


SQUAD = [
    ("The Eiffel Tower", ["Eiffel Tower"]),
    ("an apple a day", ["apple day", "the apple"]),
    ("in 1889.", ["1889"]),
    ("Paris, France", ["Paris"]),
    ("the the the", ["the"]),
    ("The", ["."]),
    ("", ["something"]),
    ("Theatre of the Absurd", ["theater of absurd"]),
    ("ÉCOLE Normale", ["école normale"]),
    ("Dr. Jekyll & Mr. Hyde", ["dr jekyll mr hyde"]),
    ("red red blue", ["red blue blue"]),
    ("the_end", ["theend"]),
    ("A's and an's", ["as ans"]),
    ("Σίσυφος ΟΔΟΣ", ["σίσυφος οδος"]),
]


def main():
    bleu_cases = []
    chrf_metric = CHRF()
    for c in CORPORA:
        hyps, refs = c["hyps"], c["refs"]
        b = sacrebleu.corpus_bleu(hyps, refs)
        ch = sacrebleu.corpus_chrf(hyps, refs)
        stats = sum_of_lists(chrf_metric._extract_corpus_statistics(hyps, refs))
        bleu_cases.append({
            "name": c["name"],
            "hyps": hyps,
            "refs": refs,
            "bleu": {
                "score": b.score,
                "counts": list(b.counts),
                "totals": list(b.totals),
                "precisions": list(b.precisions),
                "bp": b.bp,
                "sys_len": b.sys_len,
                "ref_len": b.ref_len,
                "str": str(b),
            },
            "chrf": {
                "score": ch.score,
                # [hyp, ref, match] for each character order 1..6, summed over the corpus.
                "stats": [list(map(int, stats[3 * i: 3 * i + 3])) for i in range(6)],
                "str": str(ch),
            },
        })

    tok = Tokenizer13a()
    data = {
        "generator": "scripts/make-metric-fixtures.py",
        "sacrebleu_version": sacrebleu.__version__,
        "corpora": bleu_cases,
        "tokenize_13a": [{"input": line, "output": tok(line)} for line in TOKENIZE],
        "squad": [
            {
                "prediction": p,
                "golds": g,
                "normalized": normalize_answer(p),
                "exact_match": float(max(normalize_answer(p) == normalize_answer(x) for x in g)),
                "f1": max(squad_f1(p, x) for x in g),
            }
            for p, g in SQUAD
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(bleu_cases)} corpora, sacrebleu {sacrebleu.__version__})")


if __name__ == "__main__":
    main()

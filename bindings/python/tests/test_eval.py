"""Tests of the evaluation API of the Python binding: the metrics (lamina.bleu, chrf,
squad_exact_match, squad_f1) and Session.evaluate on small made-up data files.

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
REPO = PYTHON_DIR.parent.parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(PYTHON_DIR))

import lamina  # noqa: E402
from lamina import LaminaError  # noqa: E402

# One thread per session: robust on a busy two-core machine.
SESSION_KW = dict(n_ctx=1024, n_threads=1)


# `model`: the shared fixture of conftest.py.


@pytest.fixture(scope="module")
def session(model):
    with model.session(**SESSION_KW) as s:
        yield s


def assert_status(excinfo, name):
    err = excinfo.value
    assert isinstance(err, LaminaError)
    assert err.status_name == "LAMINA_STATUS_" + name, repr(err)
    assert err.status == getattr(lamina, "STATUS_" + name)
    assert isinstance(err.message, str) and err.message, "no error message"


# -- status codes -----------------------------------------------------------------------------


def test_status_data():
    assert lamina.STATUS_ERROR_DATA == 16
    assert lamina.status_name(16) == "LAMINA_STATUS_ERROR_DATA"
    from lamina._error import error_for

    err = error_for(16, "x.jsonl:3: invalid JSON")
    assert isinstance(err, lamina.DataError) and err.status_name == "LAMINA_STATUS_ERROR_DATA"


def test_every_header_status_is_known_to_the_binding():
    import importlib

    # (`lamina._lib` as an attribute is the loaded library; the module is in sys.modules.)
    _error = importlib.import_module("lamina._error")
    _lib = importlib.import_module("lamina._lib")

    header = (REPO / "include" / "lamina.h").read_text()
    statuses = {int(v): "LAMINA_STATUS_" + n for n, v in re.findall(r"^\s*LAMINA_STATUS_(\w+) = (\d+),", header, flags=re.M)}
    assert statuses[16] == "LAMINA_STATUS_ERROR_DATA"
    assert statuses == _error._NAMES
    for value, name in statuses.items():
        assert getattr(_lib, name) == value, name
        assert getattr(lamina, name[len("LAMINA_"):]) == value, name
        assert lamina.status_name(value) == name
        if value != 0:
            assert value in _error._CLASSES, name


# -- metrics ----------------------------------------------------------------------------------

HYPS = [
    "The quick brown fox jumps over the lazy dog.",
    "A small village lies at the foot of the green hills.",
    "She reads a long book every evening before sleeping.",
]
PARTIAL = [
    "The quick brown fox jumped over a sleepy dog.",
    "A little village lies at the foot of green mountains.",
    "She reads a book each evening before she sleeps.",
]
DISJOINT = [
    "Zebras quietly painted seven purple umbrellas yesterday",
    "Nine orbiting kettles hummed under heavy marble",
    "Wizards juggle frozen cucumbers near Oslo",
]


def test_bleu_properties():
    same = lamina.bleu(HYPS, [HYPS])
    assert isinstance(same, lamina.BleuScore)
    assert same.score == pytest.approx(100.0) and float(same) == same.score
    assert same.precisions == pytest.approx((100.0,) * 4)
    assert same.brevity_penalty == pytest.approx(1.0)
    # 13a tokenization splits off the final periods: 10 + 12 + 10 tokens.
    assert same.sys_len == same.ref_len == 32
    assert same.counts == same.totals == (32, 29, 26, 23)
    assert same.ratio == 1.0
    assert str(same).startswith("BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000")

    assert lamina.bleu(DISJOINT, [HYPS]).score == 0.0
    partial = lamina.bleu(PARTIAL, [HYPS]).score
    assert 0.0 < partial < 100.0
    # A second reference stream can only help; here it holds the hypotheses themselves.
    single = lamina.bleu(HYPS, [PARTIAL]).score
    assert single < 100.0
    assert lamina.bleu(HYPS, [PARTIAL, HYPS]).score == pytest.approx(100.0)
    assert lamina.bleu(HYPS, [PARTIAL, DISJOINT]).score >= single
    # Case-sensitive, and empty segments are fine.
    assert lamina.bleu(["THE CAT"], [["the cat"]]).score == 0.0
    assert lamina.bleu(["", "a b c d"], [["", "a b c d"]]).score == pytest.approx(100.0)
    # bytes pass through.
    assert lamina.bleu([b"a b c d e"], [[b"a b c d e"]]).score == pytest.approx(100.0)


def test_chrf_properties():
    assert lamina.chrf(HYPS, [HYPS]) == pytest.approx(100.0)
    assert lamina.chrf(["123 456", "7890"], [["abc def", "ghij"]]) == 0.0
    partial = lamina.chrf(PARTIAL, [HYPS])
    assert 0.0 < partial < 100.0
    # Whitespace is not counted.
    assert lamina.chrf(["T h e  quick brownfox"], [["The quick brown fox"]]) == pytest.approx(100.0)
    single = lamina.chrf(HYPS, [PARTIAL])
    assert lamina.chrf(HYPS, [DISJOINT, PARTIAL]) >= single - 1e-9
    assert lamina.chrf(HYPS, [PARTIAL, HYPS]) == pytest.approx(100.0)


def test_squad_cases():
    em, f1 = lamina.squad_exact_match, lamina.squad_f1
    assert em("The Paris", ["paris"]) == 1.0  # case and article are normalised away
    assert f1("The Paris", ["paris"]) == 1.0
    assert em("Paris, France", ["paris"]) == 0.0
    assert f1("Paris, France", ["paris"]) == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert f1("red big dog", ["big red cat"]) == pytest.approx(2 / 3)  # bags of tokens
    assert em("red big dog", ["big red cat"]) == 0.0
    assert em("Dog!", ["a cat", "the big red dog", "dog"]) == 1.0  # the best gold counts
    assert f1("big red dog", ["a cat", "the big red dog"]) == 1.0
    assert f1("seven", ["paris"]) == 0.0
    assert em("ZÜRICH", ["zürich"]) == 1.0
    assert em("forty", "forty") == 1.0  # one gold as a string


def test_metric_errors():
    with pytest.raises(LaminaError) as e:
        lamina.bleu([], [[]])
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    assert "no hypotheses" in e.value.message
    with pytest.raises(LaminaError) as e:
        lamina.chrf(HYPS, [])
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    assert "no reference streams" in e.value.message
    with pytest.raises(lamina.InvalidArgumentError) as e:
        lamina.bleu(HYPS, [HYPS[:2]])
    assert "reference stream 0 has 2 segments but there are 3" in e.value.message
    # The classic mistake: a flat list of references instead of a list of streams.
    with pytest.raises(TypeError, match=r"pass \[references\]"):
        lamina.bleu(HYPS, HYPS)
    with pytest.raises(TypeError):
        lamina.chrf("one hypothesis", [["one reference"]])
    with pytest.raises(LaminaError) as e:
        lamina.bleu(["fine", b"caf\xc3e"], [["a", "b"]])
    assert_status(e, "ERROR_INVALID_UTF8")
    assert "hypotheses[1]" in e.value.message
    with pytest.raises(lamina.InvalidUtf8Error) as e:
        lamina.chrf(["a"], [["\udcff"]])  # a lone surrogate reaches C as invalid UTF-8
    assert "references[0]" in e.value.message
    with pytest.raises(LaminaError) as e:
        lamina.squad_f1("x", [])
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    assert "no gold" in e.value.message
    with pytest.raises(lamina.InvalidUtf8Error):
        lamina.squad_exact_match(b"\xff", ["x"])
    with pytest.raises(lamina.InvalidArgumentError, match="NUL"):
        lamina.squad_exact_match("a\0b", ["x"])


def test_metrics_match_sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        pytest.skip("sacrebleu is not installed (python3 -m pip install sacrebleu)")
    hyps = [
        "The committee approved the new budget on Tuesday evening.",
        "Heavy rain is expected across the northern valleys tomorrow!",
        "Dr. Amsel said the bridge wasn't safe -- and he was right.",
        "Les élèves ont visité le musée d'art moderne.",
        "",
        "Prices rose by 3.5% in May, the bureau reported.",
    ]
    refs_a = [
        "On Tuesday evening the committee approved the new budget.",
        "Heavy rain is forecast across the northern valleys tomorrow.",
        "Dr. Amsel said that the bridge was not safe, and he was right.",
        "Les élèves ont visité le musée d'art moderne hier.",
        "Nothing at all.",
        "Prices rose 3.5% in May, the bureau said.",
    ]
    refs_b = [
        "The committee passed the new budget on Tuesday night.",
        "Tomorrow, heavy rain is expected in the northern valleys!",
        "The bridge was unsafe, Dr. Amsel said -- and he was right.",
        "Les étudiants ont visité le musée d'art moderne.",
        "",
        "The bureau reported that prices rose by 3.5% in May.",
    ]
    for refs in ([refs_a], [refs_a, refs_b], [refs_b, refs_a]):
        want = sacrebleu.corpus_bleu(hyps, refs)
        got = lamina.bleu(hyps, refs)
        assert got.score == pytest.approx(want.score, abs=1e-9)
        assert list(got.precisions) == pytest.approx(list(want.precisions), abs=1e-9)
        assert got.brevity_penalty == pytest.approx(want.bp, abs=1e-12)
        assert (got.sys_len, got.ref_len) == (want.sys_len, want.ref_len)
        assert list(got.counts) == list(want.counts) and list(got.totals) == list(want.totals)
        assert lamina.chrf(hyps, refs) == pytest.approx(sacrebleu.corpus_chrf(hyps, refs).score, abs=1e-9)


# -- Session.evaluate -------------------------------------------------------------------------

QA = [
    {
        "id": "q1",
        "context": "The village of Brenmoor has a blue lighthouse, built in 1872 by the engineer Tomas Vell.",
        "question": "Who built the blue lighthouse of Brenmoor?",
        "answers": ["Tomas Vell"],
    },
    {
        "id": "q2",
        "context": "Kira's bakery in Oldport sells forty loaves of rye bread every morning.",
        "question": "How many loaves of rye bread does Kira's bakery sell every morning?",
        "answers": ["forty", "40"],
    },
    {
        "id": "q3",
        "context": "The river Olna flows from the Serat mountains into Lake Pim.",
        "question": "Into which lake does the river Olna flow?",
        "answer": "Lake Pim",
    },
]
TRANSLATE = [
    {"source": "The cat is sleeping.", "reference": "Le chat dort."},
    {"source": "I like apples.", "references": ["J'aime les pommes.", "J'adore les pommes."], "source_lang": "en"},
]
CHOICE = [
    {"question": "The sun rises in the", "choices": ["east", "banana"], "label": 0},
    {"question": "Two plus two equals", "choices": ["purple", "four"], "label": 1},
    {"question": "Water freezes when it gets very", "choices": ["cold", "loud", "polite"], "label": 0},
]
PROSE = (
    "The town of Hallow Creek sits in a narrow valley between two old forests. Every spring, the river that "
    "runs through its center swells with melted snow, and the children gather on the stone bridge to watch the "
    "water rush past. The baker opens his shop before sunrise, and the smell of fresh bread drifts down the main "
    "street long before the first shutters are raised. In the afternoon, farmers bring their carts to the square "
    "and sell apples, cheese and honey to anyone who passes by.\n\n"
    "Most of the people who live in Hallow Creek have known each other for their whole lives. They meet at the "
    "market, at the small library next to the post office, and at the long wooden tables of the inn on Friday "
    "evenings. Visitors are rare, but when a stranger does arrive, the news travels from house to house faster "
    "than the wind. The innkeeper always offers newcomers a bowl of soup and asks where they came from.\n"
)


def jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


class Progress:
    def __init__(self, stop_at=None):
        self.calls = []
        self.stop_at = stop_at

    def __call__(self, done, total):
        self.calls.append((done, total))
        if self.stop_at is not None and done >= self.stop_at:
            return False
        return None  # None goes on

    def check_monotonic(self):
        assert self.calls and self.calls[0][0] == 0
        assert all(a[0] <= b[0] and a[1] == b[1] for a, b in zip(self.calls, self.calls[1:]))


def test_evaluate_qa(session, tmp_path):
    progress = Progress()
    report = session.evaluate("qa", jsonl(tmp_path / "qa.jsonl", QA), on_progress=progress)
    assert report["task"] == "qa" and report["cancelled"] is False
    assert report["evaluated"] == report["total"] == 3
    m = report["metrics"]
    assert set(m) == {"exact_match", "f1"}
    assert 0.0 <= m["exact_match"] <= m["f1"] <= 100.0
    assert [p["id"] for p in report["predictions"]] == ["q1", "q2", "q3"]
    for p in report["predictions"]:
        assert isinstance(p["prediction"], str)
        # The per-example scores are those of the metric functions.
        assert p["exact_match"] == lamina.squad_exact_match(p["prediction"], p["answers"])
        assert p["f1"] == pytest.approx(lamina.squad_f1(p["prediction"], p["answers"]))
    assert m["f1"] == pytest.approx(100 * sum(p["f1"] for p in report["predictions"]) / 3)
    progress.check_monotonic()
    assert progress.calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert report["seconds"] > 0


def test_evaluate_translate(session, tmp_path):
    path = jsonl(tmp_path / "tr.jsonl", TRANSLATE)
    report = session.evaluate("translate", str(path), source_lang="en", target_lang="fr")
    m = report["metrics"]
    for name in ("bleu", "chrf", "bleu_p1", "bleu_p4", "brevity_penalty", "hyp_len", "ref_len"):
        assert name in m, name
    assert 0.0 <= m["bleu"] <= 100.0 and 0.0 <= m["chrf"] <= 100.0
    # The corpus scores are those of lamina.bleu/chrf over the predictions (the second
    # stream repeats a segment's only reference).
    hyps = [p["prediction"] for p in report["predictions"]]
    refs = [["Le chat dort.", "J'aime les pommes."], ["Le chat dort.", "J'adore les pommes."]]
    assert m["bleu"] == pytest.approx(lamina.bleu(hyps, refs).score)
    assert m["chrf"] == pytest.approx(lamina.chrf(hyps, refs))
    # Without languages, the record that names none is a data error.
    with pytest.raises(lamina.DataError) as e:
        session.evaluate("translate", path)
    assert_status(e, "ERROR_DATA")
    assert "tr.jsonl" in e.value.message


def test_evaluate_choice(session, tmp_path):
    progress = Progress()
    report = session.evaluate("choice", jsonl(tmp_path / "choice.jsonl", CHOICE), on_progress=progress)
    m = report["metrics"]
    assert set(m) == {"accuracy", "accuracy_norm"}
    assert m["accuracy"] * 3 / 100 == pytest.approx(round(m["accuracy"] * 3 / 100))
    assert report["evaluated"] == 3
    assert all(len(p["logprob_sums"]) == len(r["choices"]) for p, r in zip(report["predictions"], CHOICE))
    assert progress.calls[-1] == (3, 3)


def test_evaluate_perplexity(session, tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(PROSE, encoding="utf-8")
    progress = Progress()
    report = session.evaluate("perplexity", path, perplexity_ctx=64, on_progress=progress)
    m = report["metrics"]
    assert 1.0 < m["ppl"] < 1000.0
    assert math.exp(m["mean_nll"]) == pytest.approx(m["ppl"])
    assert m["ppl_stderr"] >= 0.0
    chunks = report["evaluated"]
    assert chunks >= 2 and report["predictions"][-1]["n_ctx"] == 64
    progress.check_monotonic()
    assert progress.calls[-1] == (chunks, chunks) and len(progress.calls) == chunks + 1
    # limit caps the chunks (at least 2).
    report = session.evaluate("perplexity", path, perplexity_ctx=64, limit=1)
    assert report["evaluated"] == 2
    with pytest.raises(lamina.InvalidArgumentError, match="perplexity_ctx"):
        session.evaluate("perplexity", path, perplexity_ctx=100000)


def test_evaluate_cancel_via_progress(session, tmp_path):
    path = jsonl(tmp_path / "qa.jsonl", QA)
    progress = Progress(stop_at=1)
    report = session.evaluate("qa", path, limit=2, on_progress=progress)
    assert report["cancelled"] is True
    assert (report["evaluated"], report["total"]) == (1, 2)
    assert set(report["metrics"]) == {"exact_match", "f1"}
    assert progress.calls == [(0, 2), (1, 2)]
    # Stopping before the first example: nothing evaluated, no metrics.
    report = session.evaluate("choice", jsonl(tmp_path / "c.jsonl", CHOICE), on_progress=lambda d, t: False)
    assert report["cancelled"] is True and report["evaluated"] == 0 and report["metrics"] == {}


def test_evaluate_progress_exception_propagates(session, tmp_path):
    path = jsonl(tmp_path / "c.jsonl", CHOICE)

    class Boom(Exception):
        pass

    def on_progress(done, total):
        if done == 1:
            raise Boom("stop here")
        return True

    with pytest.raises(Boom, match="stop here"):
        session.evaluate("choice", path, on_progress=on_progress)
    # The session is free again, and a call from inside the callback that needs the session
    # is refused as busy, while a const getter (n_ctx) runs concurrently.
    seen = []

    def reenter(done, total):
        if not seen:
            seen.append(session.n_ctx)
            try:
                session.reset()
            except LaminaError as e:
                seen.append(e.status_name)
        return False

    session.evaluate("choice", path, on_progress=reenter)
    assert seen == [session.n_ctx, "LAMINA_STATUS_ERROR_BUSY"]
    assert session.evaluate("choice", path, limit=1)["evaluated"] == 1


def test_evaluate_errors(session, tmp_path):
    good = jsonl(tmp_path / "qa.jsonl", QA)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(QA[0]) + "\n" + '{"question": "Q?", "answers": ["a"\n', encoding="utf-8")
    with pytest.raises(LaminaError) as e:
        session.evaluate("qa", bad)
    assert_status(e, "ERROR_DATA")
    assert isinstance(e.value, lamina.DataError)
    assert "bad.jsonl:2: invalid JSON" in e.value.message
    missing_field = jsonl(tmp_path / "nofield.jsonl", [{"question": "Q?"}])
    with pytest.raises(lamina.DataError, match=r"nofield\.jsonl:1: missing `answers`"):
        session.evaluate("qa", missing_field)
    with pytest.raises(lamina.DataError, match="file not found"):
        session.evaluate("qa", tmp_path / "no-such-file.jsonl")
    with pytest.raises(LaminaError) as e:
        session.evaluate("summarize", good)
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    assert "unknown task `summarize`" in e.value.message
    with pytest.raises(lamina.InvalidArgumentError):
        session.evaluate("qa", good, limit=-1)
    with pytest.raises(TypeError):
        session.evaluate("qa", good, limit="all")


def test_evaluate_on_closed_session(model, tmp_path):
    s = model.session(**SESSION_KW)
    s.close()
    with pytest.raises(lamina.InvalidHandleError):
        s.evaluate("qa", jsonl(tmp_path / "qa.jsonl", QA))


def test_eval_params_init():
    import ctypes

    from lamina._lib import lamina_eval_params, lib
    from lamina._util import init_params

    p = init_params(lamina_eval_params, lib.lamina_eval_params_init)
    assert p.struct_size == ctypes.sizeof(lamina_eval_params)
    assert (p.limit, p.perplexity_ctx, p.source_lang, p.target_lang) == (0, 0, None, None)
    assert lib.lamina_eval_params_init(ctypes.byref(p), 4) == lamina.STATUS_ERROR_INVALID_ARGUMENT
    assert lib.lamina_eval_params_init(None, ctypes.sizeof(p)) == lamina.STATUS_ERROR_NULL_ARGUMENT

"""Training from scratch through the Python binding: a corpus prepared from two small made-up
text files, a tokenizer trained on its train set, a model initialised from a preset, which
lamina.Model loads and generates from; progress callbacks that cancel or raise; the keyword
defaults against the library's; bad input. Needs no model file: the model is made here."""

import ctypes
import dataclasses
import inspect
import json
import math
import os
import sys
from pathlib import Path

import pytest

# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lamina  # noqa: E402
from lamina._lib import lamina_corpus_params, lamina_init_params, lamina_tokenizer_train_params, lib  # noqa: E402
from lamina._util import init_params  # noqa: E402

SUBJECTS = ["The river", "A small boat", "The old miller", "Our teacher", "The market", "A grey heron",
            "The night train", "My neighbour", "The orchard", "A lighthouse keeper", "The baker", "An old map"]
VERBS = ["watched", "carried", "remembered", "painted", "followed", "answered", "counted", "opened", "repaired",
         "described"]
OBJECTS = ["the morning light", "seven wooden crates", "a song about winter", "the northern hills",
           "every letter twice", "the broken gate", "a basket of apples", "the quiet harbour",
           "the numbers 12 and 40", "a long story"]
VOCAB = 320


def document(i: int) -> str:
    """Made-up document i: five sentences, different for each i."""
    return " ".join(
        "{} {} {}.".format(SUBJECTS[(i * 5 + j) % 12], VERBS[(i * 3 + j * 7) % 10], OBJECTS[(i * 7 + j * 3 + i // 10) % 10])
        for j in range(5)
    )


def write_inputs(directory: Path):
    """Two text files of blank-line separated documents, 17 in all, one an exact duplicate."""
    a, b = directory / "a.txt", directory / "b.txt"
    a.write_text("\n\n".join(document(i) for i in range(10)) + "\n", encoding="utf-8")
    b.write_text("\n\n".join([document(i) for i in range(10, 16)] + [document(3)]) + "\n", encoding="utf-8")
    return [a, b]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(the input files, the corpus directory, its report)."""
    directory = tmp_path_factory.mktemp("corpus")
    inputs = write_inputs(directory)
    out = directory / "corpus"
    stages = []
    report = lamina.build_corpus(
        inputs, out, normalization="nfkc", train_fraction=0.8, validation_fraction=0.1, test_fraction=0.1,
        progress=lambda stage, done, total: stages.append((stage, done, total)),
    )
    assert stages and all(isinstance(s, str) and 0 <= d <= t for s, d, t in stages), stages
    assert {"read", "exact_duplicates", "split", "write"} <= {s for s, _, _ in stages}
    return inputs, out, report


@pytest.fixture(scope="module")
def tokenizer(corpus, tmp_path_factory):
    """(the tokenizer directory, its report)."""
    _, out, _ = corpus
    directory = tmp_path_factory.mktemp("tokenizer")
    report = lamina.train_tokenizer(out / "train.jsonl", directory, vocab_size=VOCAB, special_tokens=["<|im_start|>", "<|im_end|>"])
    return directory, report


def test_corpus_report_and_files(corpus):
    inputs, out, report = corpus
    assert report["cancelled"] is False
    assert report["inputs"] == [str(p) for p in inputs]
    assert report["files"] == 2
    assert report["input"]["documents"] == 17
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["exact_duplicates"]["documents_removed"] == 1
    assert steps["markup"]["enabled"] is False
    assert report["output"]["documents"] == 16
    splits = {s["name"]: s["documents"] for s in report["splits"]}
    assert sum(splits.values()) == 16 and splits["train"] >= 10 and splits["validation"] >= 1 and splits["test"] >= 1
    assert report["options"]["normalization"] == "nfkc"
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "report.json"):
        assert (out / name).is_file(), name
    lines = (out / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == splits["train"] and all("text" in json.loads(line) for line in lines)


def test_tokenizer_report(tokenizer):
    directory, report = tokenizer
    assert report["vocab_size"] == VOCAB
    assert report["n_merges"] == VOCAB - 256 - 5
    assert report["special_tokens"] == ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    assert report["cancelled"] is False
    assert (directory / "tokenizer.json").is_file() and (directory / "tokenizer_config.json").is_file()


def test_preset_init_load_and_generate(tokenizer, tmp_path):
    directory, _ = tokenizer
    spec = lamina.ModelSpec.preset("1m", VOCAB)
    assert spec == lamina.ModelSpec(n_layers=3, width=128, n_heads=4, n_kv_heads=2, ffn_width=384, context_length=256, vocab_size=VOCAB)
    assert spec.head_dim == 32 and spec.tied_embeddings and spec.rope_base == 10000.0
    assert lamina.ModelSpec.preset("5m", 4096).width == 256

    seen = []
    gguf = tmp_path / "model.gguf"
    report = lamina.init_model(spec, directory, tmp_path / "hf", gguf, seed=3, progress=lambda done, total: seen.append((done, total)))
    assert report["cancelled"] is False
    assert report["spec"]["vocab_size"] == VOCAB and report["spec"]["n_layers"] == 3
    assert 500_000 < report["n_params"] < 1_115_008
    assert report["gguf"] == str(gguf) and gguf.is_file()
    assert len(report["hf_files"]) == 4 and all(Path(f).is_file() for f in report["hf_files"])
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)

    with lamina.Model(gguf) as model, model.session(n_ctx=64, n_threads=1) as session:
        info = model.info
        assert info["n_vocab"] == VOCAB and info["n_layer"] == 3
        g = session.generate("The river watched", max_tokens=4)
        assert isinstance(g.text, str)
        assert g.generated_tokens >= 1 or g.stop_reason == "end_of_generation"

    # The same seed gives the same weights; without a GGUF only the Hugging Face files.
    again = lamina.init_model(dataclasses.replace(spec), directory, tmp_path / "hf-again", seed=3)
    assert again["gguf"] is None
    weights = [(Path(r["hf_files"][0])).read_bytes() for r in (report, again)]
    assert weights[0] == weights[1]


def test_progress_cancels(corpus, tokenizer, tmp_path):
    inputs, _, _ = corpus
    calls = []

    def stop_at_once(stage, done, total):
        calls.append(stage)
        return False

    out = tmp_path / "cancelled"
    assert lamina.build_corpus(inputs, out, progress=stop_at_once) == {"cancelled": True}
    assert calls == ["read"] and not (out / "train.jsonl").exists()

    def boom(stage, done, total):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        lamina.build_corpus(inputs, out, progress=boom)
    assert not (out / "train.jsonl").exists()

    directory, _ = tokenizer
    spec = lamina.ModelSpec.preset("1m", VOCAB)
    n = []

    def stop_after_two(done, total):
        n.append(done)
        return len(n) < 2

    hf = tmp_path / "hf"
    assert lamina.init_model(spec, directory, hf, tmp_path / "m.gguf", progress=stop_after_two) == {"cancelled": True}
    assert n == [1, 2] and not (hf / "model.safetensors").exists() and not (tmp_path / "m.gguf").exists()


def test_defaults_are_the_librarys():
    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}

    c = init_params(lamina_corpus_params, lib.lamina_corpus_params_init)
    ours = defaults(lamina.build_corpus)
    assert c.normalization is None and ours.pop("normalization") == "nfc" and ours.pop("progress") is None
    for name, value in ours.items():
        assert getattr(c, name) == pytest.approx(value), name

    t = init_params(lamina_tokenizer_train_params, lib.lamina_tokenizer_train_params_init)
    ours = defaults(lamina.train_tokenizer)
    assert ours.pop("special_tokens") == () and t.n_special_tokens == 0
    for name, value in ours.items():
        want = getattr(t, name)
        assert (want.decode() if isinstance(want, bytes) else want) == value, name

    i = init_params(lamina_init_params, lib.lamina_init_params_init)
    ours = defaults(lamina.init_model)
    assert ours["seed"] == i.seed and ours["std"] == pytest.approx(i.std) and i.embeddings_from is None
    assert lib.lamina_corpus_params_init(ctypes.byref(c), 4) == lamina.STATUS_ERROR_INVALID_ARGUMENT
    assert lib.lamina_init_params_init(None, ctypes.sizeof(i)) == lamina.STATUS_ERROR_NULL_ARGUMENT


def test_bad_input(corpus, tokenizer, tmp_path):
    inputs, out, _ = corpus
    directory, _ = tokenizer
    with pytest.raises(lamina.InvalidArgumentError, match="no input"):
        lamina.build_corpus([], tmp_path / "c")
    with pytest.raises(lamina.DataError, match="no-such-file.txt"):
        lamina.build_corpus(tmp_path / "no-such-file.txt", tmp_path / "c")
    with pytest.raises(lamina.InvalidArgumentError, match="sum to"):
        lamina.build_corpus(inputs, tmp_path / "c", train_fraction=0.5)
    with pytest.raises(lamina.InvalidArgumentError, match="normalization"):
        lamina.build_corpus(inputs, tmp_path / "c", normalization="nfd")
    with pytest.raises(lamina.InvalidArgumentError, match="near_dedup_threshold"):
        lamina.build_corpus(inputs, tmp_path / "c", near_dedup_threshold=1.5)
    with pytest.raises(lamina.InvalidArgumentError, match="min_chars"):
        lamina.build_corpus(inputs, tmp_path / "c", min_chars=-1)
    with pytest.raises(TypeError, match="lowercase"):
        lamina.build_corpus(inputs, tmp_path / "c", lowercase=1)
    with pytest.raises(TypeError):
        lamina.build_corpus(inputs, tmp_path / "c", no_such_option=True)

    train = out / "train.jsonl"
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.train_tokenizer(train, tmp_path / "t", vocab_size=100)
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.train_tokenizer(train, tmp_path / "t", vocab_size=100_000)
    with pytest.raises(lamina.InvalidArgumentError, match="special_tokens"):
        lamina.train_tokenizer(train, tmp_path / "t", vocab_size=VOCAB, special_tokens=["<s>"])
    with pytest.raises(lamina.InvalidUtf8Error, match="pad_token"):
        lamina.train_tokenizer(train, tmp_path / "t", vocab_size=VOCAB, pad_token=b"\xff")
    with pytest.raises(TypeError, match="special_tokens"):
        lamina.train_tokenizer(train, tmp_path / "t", special_tokens="<|im_end|>")

    with pytest.raises(lamina.InvalidArgumentError, match="preset"):
        lamina.ModelSpec.preset("3b", VOCAB)
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.ModelSpec.preset("1m", 0)
    spec = lamina.ModelSpec.preset("1m", VOCAB)
    with pytest.raises(lamina.InvalidArgumentError, match="n_heads"):
        lamina.init_model(dataclasses.replace(spec, n_heads=3), directory, tmp_path / "h")
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.init_model(dataclasses.replace(spec, vocab_size=300), directory, tmp_path / "h")
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.init_model(dataclasses.replace(spec, vocab_size=-1), directory, tmp_path / "h")
    with pytest.raises(lamina.InvalidArgumentError, match="std"):
        lamina.init_model(spec, directory, tmp_path / "h", std=0.0)
    with pytest.raises(lamina.LaminaIOError, match="no-such-tokenizer"):
        lamina.init_model(spec, tmp_path / "no-such-tokenizer", tmp_path / "h")
    with pytest.raises(TypeError, match="ModelSpec"):
        lamina.init_model({"n_layers": 3}, directory, tmp_path / "h")


# -- pretraining ------------------------------------------------------------------------------

#: A tiny run: the 1m preset at the tokenizer's vocabulary, sequences of 32 tokens, 2 a step,
#: one engine thread; a few steps take well under a second.
TINY = dict(seq_len=32, batch_size=2, warmup_steps=1, eval_every=2, eval_sequences=4, n_threads=1)


def tiny_spec() -> "lamina.ModelSpec":
    return lamina.ModelSpec.preset("1m", VOCAB)


def test_pretrain_tiny_run(corpus, tokenizer, tmp_path):
    _, corpus_dir, _ = corpus
    directory, _ = tokenizer
    seen = []
    with lamina.Pretrainer(corpus_dir, tmp_path / "run", spec=tiny_spec(), tokenizer_dir=directory, steps=4, **TINY) as trainer:
        assert repr(trainer) == "<lamina.Pretrainer>"
        with pytest.raises(lamina.InvalidArgumentError, match="not run yet"):
            trainer.report()
        report = trainer.run(seen.append)
        with pytest.raises(lamina.InvalidArgumentError, match="already ran"):
            trainer.run()
        assert trainer.report() == report
    assert trainer.closed and repr(trainer) == "<lamina.Pretrainer (closed)>"

    assert [p.step for p in seen] == [1, 2, 3, 4] and all(p.total_steps == 4 for p in seen)
    assert all(isinstance(p, lamina.PretrainProgress) and 0 < p.loss < 10 and p.tokens_per_second > 0 for p in seen)
    assert [p.tokens_seen for p in seen] == [64, 128, 192, 256]
    assert [p.val_loss is not None for p in seen] == [False, True, False, True]
    assert seen[1].val_perplexity == pytest.approx(math.exp(seen[1].val_loss))

    summary = report["summary"]
    assert summary["end"] == "finished" and summary["cancelled"] is False
    assert summary["steps"] == 4 and summary["planned_steps"] == 4 and summary["tokens_seen"] == 256
    assert summary["final_loss"] == pytest.approx(seen[-1].loss)
    assert summary["val_perplexity_before"] > 100 and 1 < summary["val_perplexity_after"] < summary["val_perplexity_before"]
    assert summary["test_perplexity"] > 1 and 0 <= summary["test_accuracy"] <= 1
    assert summary["gguf"] == str(tmp_path / "run" / "model.gguf") and summary["hf"] is None
    assert report["model"]["vocab_size"] == VOCAB and report["parameters"] > 500_000
    assert len(report["steps"]) == 4 and [e["step"] for e in report["evals"]] == [0, 2, 4]
    assert json.loads((tmp_path / "run" / "log.json").read_text())["end"] == "finished"

    # The trained model loads and generates; it also continues as the start of another run.
    with lamina.Model(summary["gguf"]) as model, model.session(n_ctx=64, n_threads=1) as session:
        g = session.generate("The river", max_tokens=4)
        assert g.generated_tokens >= 1 or g.stop_reason == "end_of_generation"
    again = lamina.pretrain(corpus_dir, tmp_path / "continued", init_gguf=summary["gguf"], steps=2, **TINY)
    assert again["summary"]["steps"] == 2 and again["files"]["init"] is None


def torch_python():
    """The interpreter that runs scripts/hf_perplexity.py: $LAMINA_TORCH_PYTHON when set
    (scripts/test.sh points it at the environment scripts/torch-venv.sh makes, and then a
    broken one fails the test), else this one if it has torch and transformers, else None."""
    chosen = os.environ.get("LAMINA_TORCH_PYTHON")
    if chosen:
        return chosen
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def test_hf_export_has_the_same_perplexity_in_transformers(corpus, tokenizer, tmp_path):
    """The Hugging Face export of a pretrained model, scored by transformers with the method of
    lamina's perplexity (scripts/hf_perplexity.py), against llama.cpp's perplexity of the GGUF
    export: within 0.5%. Needs an interpreter with torch and transformers (torch_python); the
    registry's torch is the CUDA build, several GB, so without one the test is skipped, saying so."""
    python = torch_python()
    if python is None:
        pytest.skip("no torch and transformers here, and LAMINA_TORCH_PYTHON is not set: the transformers perplexity is not checked")
    import subprocess

    _, corpus_dir, _ = corpus
    directory, _ = tokenizer
    hf = tmp_path / "hf"
    report = lamina.pretrain(corpus_dir, tmp_path / "run", spec=tiny_spec(), tokenizer_dir=directory, hf_dir=hf, steps=8, **TINY)
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(document(i) for i in range(16, 40)) + "\n", encoding="utf-8")
    with lamina.Model(report["summary"]["gguf"]) as model, model.session(n_ctx=64, n_threads=1) as session:
        ours = session.evaluate("perplexity", text, perplexity_ctx=32)["metrics"]["ppl"]
    script = Path(__file__).resolve().parents[3] / "scripts" / "hf_perplexity.py"
    run = subprocess.run([python, str(script), str(hf), str(text), "--chunk", "32", "--threads", "1"],
                         capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
    assert run.returncode == 0, f"{python} {script} failed:\n{run.stderr[-3000:]}"
    out = run.stdout
    theirs = float(out.split()[1])
    print(f"perplexity of the export: llama.cpp {ours:.4f}, transformers {theirs:.4f}")
    assert abs(ours - theirs) / theirs < 0.005, (ours, theirs, out)


def test_pretrain_cancel(corpus, tokenizer, tmp_path):
    _, corpus_dir, _ = corpus
    directory, _ = tokenizer
    options = dict(spec=tiny_spec(), tokenizer_dir=directory, **TINY)

    # From the progress callback.
    report = lamina.pretrain(corpus_dir, tmp_path / "a", steps=50, progress=lambda p: p.step < 2, **options)
    assert report["summary"]["cancelled"] is True and report["summary"]["steps"] == 2
    assert report["summary"]["gguf"] is None and not (tmp_path / "a" / "model.gguf").exists()

    # From another thread, during the run; the report is refused meanwhile (busy).
    import threading

    trainer = lamina.Pretrainer(corpus_dir, tmp_path / "b", steps=100_000, seconds=60, **options)
    started = threading.Event()
    busy = []

    def cancel_when_started():
        started.wait(30)
        try:
            trainer.report()
        except lamina.BusyError as e:
            busy.append(e)
        trainer.cancel()

    thread = threading.Thread(target=cancel_when_started)
    thread.start()
    report = trainer.run(lambda p: started.set())
    thread.join()
    assert busy and report["summary"]["cancelled"] is True and 1 <= report["summary"]["steps"] < 1000
    trainer.close()

    # An exception in the callback stops the run and comes out of run().
    def boom(p):
        raise RuntimeError("stop the run")

    with pytest.raises(RuntimeError, match="stop the run"):
        lamina.pretrain(corpus_dir, tmp_path / "c", steps=50, progress=boom, **options)


def test_pretrain_defaults_and_bad_input(corpus, tokenizer, tmp_path):
    _, corpus_dir, _ = corpus
    directory, _ = tokenizer
    d = lamina.Pretrainer.defaults()
    assert d["seq_len"] == 256 and d["batch_size"] == 8 and d["learning_rate"] == 1e-3 and d["schedule"] == "cosine"
    assert d["init_std"] == 0.02 and d["eval_sequences"] == 128 and d["resume"] is False and d["seed"] == 0

    spec = tiny_spec()
    out = tmp_path / "bad"
    ok = dict(spec=spec, tokenizer_dir=directory, steps=4, **TINY)
    with pytest.raises(lamina.InvalidArgumentError, match="budget"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, steps=None))
    with pytest.raises(lamina.InvalidArgumentError, match="budget"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, steps=0))
    with pytest.raises(lamina.InvalidArgumentError, match="n_heads"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, spec=dataclasses.replace(spec, n_heads=3)))
    with pytest.raises(lamina.InvalidArgumentError, match="vocab_size"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, spec=dataclasses.replace(spec, vocab_size=300)))
    with pytest.raises(lamina.InvalidArgumentError, match="context length"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, seq_len=1000))
    with pytest.raises(lamina.InvalidArgumentError, match="dropout"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, dropout=1.0))
    with pytest.raises(lamina.InvalidArgumentError, match="schedule"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, schedule="step"))
    with pytest.raises(lamina.InvalidArgumentError, match="precision"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, precision="f16"))
    with pytest.raises(lamina.InvalidArgumentError, match="both"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, init_gguf=tmp_path / "x.gguf"))
    with pytest.raises(lamina.NullArgumentError, match="init_gguf"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, spec=None))
    with pytest.raises(lamina.NullArgumentError, match="tokenizer_dir"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, tokenizer_dir=None))
    with pytest.raises(lamina.ModelNotFoundError, match="no-such.gguf"):
        lamina.Pretrainer(corpus_dir, out, init_gguf=tmp_path / "no-such.gguf", steps=4)
    with pytest.raises(lamina.LaminaIOError, match="no-such-tokenizer"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, tokenizer_dir=tmp_path / "no-such-tokenizer"))
    with pytest.raises(lamina.DataError, match="no-such-corpus"):
        lamina.Pretrainer(tmp_path / "no-such-corpus", out, **ok)
    with pytest.raises(lamina.InvalidArgumentError, match="steps"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, steps=-1))
    with pytest.raises(TypeError, match="unknown pretraining option"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, lr=1e-3))
    with pytest.raises(TypeError, match="ModelSpec"):
        lamina.Pretrainer(corpus_dir, out, **dict(ok, spec={"n_layers": 3}))
    assert not out.exists()  # nothing was written by the refused pretrainers

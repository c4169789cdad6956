"""Embeddings from Python: normalised vectors in which similar sentences score higher than
unrelated ones, several texts per call equal to one at a time, and bad input as errors.

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import math
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(HERE.parent))

import lamina  # noqa: E402

# `model`: the shared fixture of conftest.py.


PAIRS = [
    ("The cat sat on the mat.", "A cat is sitting on a rug.", "Interest rates rose sharply in the bond market."),
    ("How do I bake bread at home?", "What is a simple recipe for homemade bread?", "The spacecraft entered orbit around Mars."),
    ("Paris is the capital of France.", "France's capital city is Paris.", "My laptop battery drains too quickly."),
]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_similar_sentences_score_higher(model, pooling):
    with model.embedder(pooling=pooling, n_threads=2) as e:
        texts = [t for triple in PAIRS for t in triple]
        vectors = e.embed(texts)
        assert len(vectors) == len(texts)
        for v in vectors:
            assert len(v) == e.dimensions > 0
            assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4
        for i in range(len(PAIRS)):
            a, b, c = vectors[3 * i : 3 * i + 3]
            sim = lamina.cosine(a, b)
            assert sim > lamina.cosine(a, c) and sim > lamina.cosine(b, c), (pooling, PAIRS[i])


def test_a_batch_equals_one_text_at_a_time(model):
    with lamina.Embedder(model, n_threads=2, max_texts=2) as e:
        texts = ["Short.", "A longer sentence about today's weather.", "A third one."]
        together = e.embed(texts)
        for t, v in zip(texts, together):
            assert lamina.cosine(e.embed_one(t), v) > 1 - 1e-6
        assert e.embed([]) == []


def test_unnormalised_vectors_keep_their_length(model):
    with lamina.Embedder(model, normalize=False, n_threads=2) as e:
        v = e.embed_one("Some text.")
        assert abs(math.sqrt(sum(x * x for x in v)) - 1.0) > 1e-3


def test_bad_input(model):
    with lamina.Embedder(model, n_batch=16, n_threads=2) as e:
        with pytest.raises(lamina.InvalidArgumentError, match="text 1 is empty"):
            e.embed(["fine", ""])
        with pytest.raises(lamina.InvalidArgumentError, match="text 0 has"):
            e.embed(["word " * 40])
        assert len(e.embed_one("still works")) == e.dimensions
    with pytest.raises(ValueError):
        lamina.Embedder(model, pooling="max")
    with pytest.raises(lamina.InvalidArgumentError, match="max_texts"):
        lamina.Embedder(model, max_texts=0)
    e = lamina.Embedder(model, n_threads=2)
    e.close()
    with pytest.raises(lamina.InvalidHandleError):
        e.embed(["closed"])

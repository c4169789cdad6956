"""Evaluation metrics: corpus BLEU and chrF (sacreBLEU's), SQuAD exact match and F1."""

import ctypes
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Tuple, Union

from ._error import InvalidArgumentError
from ._lib import lamina_bleu_score, lib
from ._util import check, to_c

StrOrBytes = Union[str, bytes]


@dataclass(frozen=True)
class BleuScore:
    """A corpus BLEU score with its statistics, as sacreBLEU's ``BLEUScore`` reports them.

    ``float(score)`` is ``score.score``.
    """

    #: BLEU, 0 to 100.
    score: float
    #: The (smoothed) n-gram precisions of orders 1 to 4, 0 to 100.
    precisions: Tuple[float, float, float, float]
    #: exp(1 - ref_len / sys_len) when the hypotheses are shorter, else 1.
    brevity_penalty: float
    #: Hypothesis tokens (after 13a tokenization).
    sys_len: int
    #: Effective reference length (the closest reference's, summed over segments).
    ref_len: int
    #: Clipped n-gram matches of orders 1 to 4.
    counts: Tuple[int, int, int, int]
    #: Hypothesis n-grams of orders 1 to 4.
    totals: Tuple[int, int, int, int]

    @property
    def ratio(self) -> float:
        """``sys_len / ref_len`` (0 when ref_len is 0), as sacreBLEU prints it."""
        return self.sys_len / self.ref_len if self.ref_len else 0.0

    def __float__(self) -> float:
        return self.score

    def __str__(self) -> str:
        p = self.precisions
        return "BLEU = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})".format(
            self.score, p[0], p[1], p[2], p[3], self.brevity_penalty, self.ratio, self.sys_len, self.ref_len
        )


def _strings(values: Iterable[StrOrBytes], name: str) -> List[bytes]:
    if isinstance(values, (str, bytes)):
        raise TypeError("{} must be a list of strings, not a single string".format(name))
    return [to_c(v, "{}[{}]".format(name, i)) for i, v in enumerate(values)]


def _array(items: List[bytes]):
    """A ``const char *const *`` for C (None when empty: C accepts NULL with a count of 0)."""
    if not items:
        return None
    return (ctypes.c_char_p * len(items))(*items)


def _corpus(hypotheses: Sequence[StrOrBytes], references: Sequence[Sequence[StrOrBytes]]):
    hyps = _strings(hypotheses, "hypotheses")
    if isinstance(references, (str, bytes)):
        raise TypeError("references must be a list of reference streams, not a string")
    flat: List[bytes] = []
    streams = 0
    for k, stream in enumerate(references):
        if isinstance(stream, (str, bytes)):
            raise TypeError(
                "references is a list of reference streams (lists of strings, one per hypothesis), "
                "but references[{}] is a string; for one reference per segment pass [references]".format(k)
            )
        items = _strings(stream, "references[{}]".format(k))
        if len(items) != len(hyps):
            # C sees only the flattened array: a stream of the wrong length cannot be caught there.
            raise InvalidArgumentError(
                2,
                "reference stream {} has {} segments but there are {} hypotheses; each stream "
                "must have one reference per hypothesis".format(k, len(items), len(hyps)),
            )
        flat.extend(items)
        streams += 1
    return _array(hyps), len(hyps), _array(flat), streams


def bleu(hypotheses: Sequence[StrOrBytes], references: Sequence[Sequence[StrOrBytes]]) -> BleuScore:
    """Corpus BLEU with sacreBLEU 2.x's defaults: the numbers of
    ``sacrebleu.corpus_bleu(hypotheses, references)``.

    `references` has sacreBLEU's layout: a list of reference *streams*, each a list as long as
    `hypotheses`; ``references[k][i]`` is the k-th reference of segment i. With one reference
    per segment: ``bleu(hyps, [refs])``.
    """
    hyps, n, refs, streams = _corpus(hypotheses, references)
    out = lamina_bleu_score()
    out.struct_size = ctypes.sizeof(lamina_bleu_score)
    check(lib.lamina_bleu(hyps, n, refs, streams, ctypes.byref(out)))
    return BleuScore(
        score=out.score,
        precisions=tuple(out.precisions),
        brevity_penalty=out.brevity_penalty,
        sys_len=out.sys_len,
        ref_len=out.ref_len,
        counts=tuple(out.counts),
        totals=tuple(out.totals),
    )


def chrf(hypotheses: Sequence[StrOrBytes], references: Sequence[Sequence[StrOrBytes]]) -> float:
    """Corpus chrF (chrF2) with sacreBLEU 2.x's defaults, 0 to 100: the score of
    ``sacrebleu.corpus_chrf(hypotheses, references)``. `references` as for :func:`bleu`."""
    hyps, n, refs, streams = _corpus(hypotheses, references)
    out = ctypes.c_double()
    check(lib.lamina_chrf(hyps, n, refs, streams, ctypes.byref(out)))
    return out.value


def _squad(fn, prediction: StrOrBytes, golds: Union[StrOrBytes, Sequence[StrOrBytes]]) -> float:
    pred = to_c(prediction, "prediction")
    items = [to_c(golds, "golds")] if isinstance(golds, (str, bytes)) else _strings(golds, "golds")
    out = ctypes.c_double()
    check(fn(pred, _array(items), len(items), ctypes.byref(out)))
    return out.value


def squad_exact_match(prediction: StrOrBytes, golds: Union[StrOrBytes, Sequence[StrOrBytes]]) -> float:
    """SQuAD v1.1 exact match of one prediction: 1.0 when the normalised prediction
    (lowercased, without punctuation, articles and extra whitespace) equals some normalised
    gold answer, else 0.0. `golds` is a list of gold answers (or one string)."""
    return _squad(lib.lamina_squad_exact_match, prediction, golds)


def squad_f1(prediction: StrOrBytes, golds: Union[StrOrBytes, Sequence[StrOrBytes]]) -> float:
    """SQuAD v1.1 token F1 of one prediction, 0.0 to 1.0: the best over `golds` of the F1 of
    the bags of normalised tokens."""
    return _squad(lib.lamina_squad_f1, prediction, golds)

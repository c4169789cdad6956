"""Text embeddings: :class:`Embedder` turns texts into pooled, normalised vectors."""

import ctypes
import math
from typing import Iterable, List, Sequence

from ._lib import (
    LAMINA_POOLING_LAST,
    LAMINA_POOLING_MEAN,
    lamina_embedder_params,
    lib,
)
from ._managed import Managed
from ._util import check, defer_sigint, init_params, to_c, u32

_POOLINGS = {"mean": LAMINA_POOLING_MEAN, "last": LAMINA_POOLING_LAST}


class Embedder(Managed):
    """Embeddings of texts under `model`: one vector of :attr:`dimensions` floats per text,
    pooled over the text's tokens (``pooling="mean"``, the default, or ``"last"``: the last
    token's state) and, with ``normalize=True`` (the default), of unit length, so that
    :func:`cosine` of two vectors is their dot product.

    Texts go through the model together, as many per call as fit ``n_batch`` tokens and
    ``max_texts`` texts; each is pooled over its own tokens only. One call at a time per
    embedder (another thread calling meanwhile gets BusyError).
    """

    def __init__(
        self,
        model,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        n_batch: int = 512,
        max_texts: int = 16,
        n_threads: int = 0,
    ):
        if pooling not in _POOLINGS:
            raise ValueError("pooling must be 'mean' or 'last', got {!r}".format(pooling))
        params = init_params(lamina_embedder_params, lib.lamina_embedder_params_init)
        params.pooling = _POOLINGS[pooling]
        params.normalize = bool(normalize)
        params.n_batch = u32(n_batch, "n_batch")
        params.max_texts = u32(max_texts, "max_texts")
        params.n_threads = u32(n_threads, "n_threads")
        self.model = model  # keeps the Python object alive as long as the embedder
        self.pooling = pooling
        out = ctypes.c_void_p()
        with defer_sigint():
            status = lib.lamina_embedder_new(model._ptr(), ctypes.byref(params), ctypes.byref(out))
            if status == 0:
                self._set_handle(out.value)
        check(status)
        dims = ctypes.c_size_t()
        check(lib.lamina_embedder_dimensions(self._ptr(), ctypes.byref(dims)))
        self.dimensions: int = dims.value

    def _delete(self, handle: int) -> None:
        lib.lamina_embedder_free(handle)

    def embed(self, texts: Iterable[str]) -> List[List[float]]:
        """One vector per text, in order. An empty text, or one longer than ``n_batch``
        tokens, raises InvalidArgumentError naming its index."""
        items = [to_c(t, "texts[i]") for t in texts]
        n = len(items)
        if n == 0:
            return []
        c_texts = (ctypes.c_char_p * n)(*items)
        out = (ctypes.c_float * (n * self.dimensions))()
        check(lib.lamina_embedder_embed(self._ptr(), c_texts, n, out, len(out)))
        d = self.dimensions
        return [list(out[i * d : (i + 1) * d]) for i in range(n)]

    def embed_one(self, text: str) -> List[float]:
        """The vector of one text."""
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return "<lamina.Embedder {} pooling, {} dimensions>".format(self.pooling, getattr(self, "dimensions", "?"))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine similarity of two vectors (0.0 when either is zero)."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0

"""Model: a loaded GGUF file."""

import ctypes
import json
from typing import TYPE_CHECKING, Any, Dict

from ._lib import lamina_model_params, lib
from ._managed import Managed
from ._util import check, defer_sigint, init_params, path_to_c, take_string, to_c, u32

if TYPE_CHECKING:  # pragma: no cover
    from ._adapter import Adapter
    from ._session import Session


def default_model_path() -> str:
    """Where lamina looks for its default model (``$LAMINA_MODEL``, the cache, ...).

    The file exists only after ``scripts/fetch-model.sh`` ran.
    """
    out = ctypes.c_void_p()
    check(lib.lamina_default_model_path(ctypes.byref(out)))
    return take_string(out)


class Model(Managed):
    """A GGUF model loaded into memory (memory-mapped by default).

    ``Model()`` loads :func:`default_model_path`. A model may be used from any number of
    threads and sessions at once. Sessions keep the underlying model alive, so closing the
    model while sessions exist is safe.
    """

    def __init__(
        self,
        path=None,
        *,
        n_gpu_layers: int = 0,
        use_mmap: bool = True,
        use_mlock: bool = False,
    ):
        if path is None:
            path = default_model_path()
        c_path = path_to_c(path)
        params = init_params(lamina_model_params, lib.lamina_model_params_init)
        params.n_gpu_layers = u32(n_gpu_layers, "n_gpu_layers")
        params.use_mmap = bool(use_mmap)
        params.use_mlock = bool(use_mlock)
        self.path = c_path.decode("utf-8", "surrogateescape")
        out = ctypes.c_void_p()
        with defer_sigint():
            status = lib.lamina_model_load(c_path, ctypes.byref(params), ctypes.byref(out))
            if status == 0:
                self._set_handle(out.value)  # owned (and freed) even if Ctrl-C is raised now
        check(status)

    def _delete(self, handle: int) -> None:
        lib.lamina_model_free(handle)

    @property
    def info(self) -> Dict[str, Any]:
        """Facts about the model (architecture, n_params, n_layer, n_ctx_train, ...)."""
        out = ctypes.c_void_p()
        check(lib.lamina_model_info_json(self._ptr(), ctypes.byref(out)))
        return json.loads(take_string(out))

    def meta(self, key) -> str:
        """The GGUF metadata value under `key` (e.g. ``"general.name"``) as text.

        A missing key raises LaminaError (LAMINA_STATUS_ERROR_INVALID_ARGUMENT).
        """
        out = ctypes.c_void_p()
        check(lib.lamina_model_meta(self._ptr(), to_c(key, "key"), ctypes.byref(out)))
        return take_string(out)

    def load_adapter(self, path) -> "Adapter":
        """Load a LoRA adapter for this model: a llama.cpp GGUF adapter file or a PEFT
        directory (converted on load). The file is validated first; a bad one raises
        LaminaIOError, DataError (the message names the file and the problem) or
        ModelLoadError. The adapter's weights stay in memory until the model is freed."""
        from ._adapter import Adapter

        return Adapter(self, path)

    def embedder(self, **kwargs) -> "Embedder":
        """A new :class:`Embedder` over this model; keyword arguments as for Embedder."""
        from ._embed import Embedder

        return Embedder(self, **kwargs)

    def session(self, **kwargs) -> "Session":
        """A new :class:`Session` over this model; keyword arguments as for Session."""
        from ._session import Session

        return Session(self, **kwargs)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return "<lamina.Model {!r} ({})>".format(getattr(self, "path", None), state)


"""Adapter: a LoRA adapter loaded into a Model, applied to sessions with a scale."""

import ctypes

from ._lib import lib
from ._managed import Managed
from ._util import check, defer_sigint, path_to_c


class Adapter(Managed):
    """A LoRA adapter loaded with :meth:`Model.load_adapter` (a llama.cpp GGUF adapter file, or
    a PEFT directory with ``adapter_config.json`` and ``adapter_model.safetensors``).

    Apply it with :meth:`Session.set_adapters`. Closing the handle does not free the weights
    (llama.cpp frees adapters with their model) and sessions that apply it keep applying it.
    """

    def __init__(self, model, path):
        c_path = path_to_c(path)
        self.path = c_path.decode("utf-8", "surrogateescape")
        # Keeps the Python model object (and the loaded library) alive with the adapter.
        self._model = model
        out = ctypes.c_void_p()
        with defer_sigint():
            status = lib.lamina_model_load_adapter(model._ptr(), c_path, ctypes.byref(out))
            if status == 0:
                self._set_handle(out.value)
        check(status)
        rank = ctypes.c_uint32()
        alpha = ctypes.c_float()
        check(lib.lamina_adapter_info(self._ptr(), ctypes.byref(rank), ctypes.byref(alpha)))
        #: The largest rank over the adapted weights.
        self.rank = rank.value
        #: ``adapter.lora.alpha`` (0: the scale alone is applied).
        self.alpha = alpha.value

    def _delete(self, handle: int) -> None:
        lib.lamina_adapter_free(handle)

    @property
    def model(self):
        return self._model

    def __repr__(self) -> str:
        return "<lamina.Adapter {!r} rank={} ({})>".format(
            getattr(self, "path", None), getattr(self, "rank", None), "closed" if self.closed else "open"
        )

"""Compute backends and devices (``lamina_backends_json``, ``lamina_backends_load``)."""

import ctypes
import json
from typing import Any, Dict

from ._lib import lib
from ._util import check, path_to_c, take_string


def backends() -> Dict[str, Any]:
    """What this process computes on, as the parsed JSON of ``lamina_backends_json``.

    Keys: ``dynamic`` (whether backends are loaded at run time), ``searched`` (the directories
    and files looked at), ``loaded`` (``name``, ``path``: None when compiled in), ``skipped``
    (``path``, ``reason``: libraries that failed to load) and ``devices`` (``name``,
    ``description``, ``backend``, ``kind``: "cpu", "gpu", "igpu", "accelerator" or "other",
    ``memory_total`` and ``memory_free`` in bytes). Initialises the backends (the default
    search) if no model has been loaded yet.
    """
    out = ctypes.c_void_p()
    check(lib.lamina_backends_json(ctypes.byref(out)))
    return json.loads(take_string(out))


def load_backends(path) -> Dict[str, Any]:
    """Load compute backends from `path`, a directory (its ``libggml-*.so`` libraries) or one
    backend library file, and return the report of :func:`backends`.

    Only builds with dynamic backends load anything; call it before the first model is loaded
    to search `path` ahead of the default places. A directory in which nothing loads is not an
    error: its files are listed under ``"skipped"`` with their reasons.

    Raises InvalidArgumentError when `path` does not exist, BackendError when `path` is a
    library that cannot be loaded or when this build has its backends compiled in.
    """
    c_path = path_to_c(path)
    out = ctypes.c_void_p()
    check(lib.lamina_backends_load(c_path, ctypes.byref(out)))
    return json.loads(take_string(out))

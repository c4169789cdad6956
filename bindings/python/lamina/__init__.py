"""Python binding of lamina, an embeddable LLM runtime (pure ctypes over ``liblamina_ffi``).

    import lamina

    with lamina.Model() as model, model.session() as session:
        print(session.generate("The capital of France is", max_tokens=16).text)
        for piece in session.chat_stream("Tell me a joke."):
            print(piece, end="", flush=True)
        print(session.evaluate("qa", "qa.jsonl")["metrics"])

    print(lamina.bleu(["The cat sat."], [["The cat sat."]]).score)   # 100.0

The shared library is the copy bundled in the installed package (``lamina/_native/``), else
``$LAMINA_LIBRARY``, then ``target/release`` or ``target/debug`` above this package, then
``$CARGO_TARGET_DIR``.
"""

import atexit
import sys
import threading
import traceback
from typing import Callable, List, Optional, Union

from ._error import (
    BackendError,
    BusyError,
    ChatTemplateError,
    ContextCreationError,
    DataError,
    DecodeError,
    EmptyPromptError,
    InvalidArgumentError,
    InvalidHandleError,
    InternalError,
    InvalidUtf8Error,
    LaminaError,
    LaminaIOError,
    LibraryNotFoundError,
    ModelLoadError,
    ModelNotFoundError,
    NotGgufError,
    NullArgumentError,
    PanicError,
    PromptTooLongError,
    UnknownLanguageError,
    status_name,
)
from ._lib import (
    LAMINA_LOG_LEVEL_DEBUG,
    LAMINA_LOG_LEVEL_ERROR,
    LAMINA_LOG_LEVEL_INFO,
    LAMINA_LOG_LEVEL_WARN,
    LAMINA_STATUS_ERROR_BACKEND as STATUS_ERROR_BACKEND,
    LAMINA_STATUS_ERROR_BUSY as STATUS_ERROR_BUSY,
    LAMINA_STATUS_ERROR_CHAT_TEMPLATE as STATUS_ERROR_CHAT_TEMPLATE,
    LAMINA_STATUS_ERROR_CONTEXT_CREATION as STATUS_ERROR_CONTEXT_CREATION,
    LAMINA_STATUS_ERROR_DATA as STATUS_ERROR_DATA,
    LAMINA_STATUS_ERROR_DECODE as STATUS_ERROR_DECODE,
    LAMINA_STATUS_ERROR_EMPTY_PROMPT as STATUS_ERROR_EMPTY_PROMPT,
    LAMINA_STATUS_ERROR_INVALID_ARGUMENT as STATUS_ERROR_INVALID_ARGUMENT,
    LAMINA_STATUS_ERROR_INTERNAL as STATUS_ERROR_INTERNAL,
    LAMINA_STATUS_ERROR_INVALID_HANDLE as STATUS_ERROR_INVALID_HANDLE,
    LAMINA_STATUS_ERROR_INVALID_UTF8 as STATUS_ERROR_INVALID_UTF8,
    LAMINA_STATUS_ERROR_IO as STATUS_ERROR_IO,
    LAMINA_STATUS_ERROR_MODEL_LOAD as STATUS_ERROR_MODEL_LOAD,
    LAMINA_STATUS_ERROR_MODEL_NOT_FOUND as STATUS_ERROR_MODEL_NOT_FOUND,
    LAMINA_STATUS_ERROR_NOT_GGUF as STATUS_ERROR_NOT_GGUF,
    LAMINA_STATUS_ERROR_NULL_ARGUMENT as STATUS_ERROR_NULL_ARGUMENT,
    LAMINA_STATUS_ERROR_PANIC as STATUS_ERROR_PANIC,
    LAMINA_STATUS_ERROR_PROMPT_TOO_LONG as STATUS_ERROR_PROMPT_TOO_LONG,
    LAMINA_STATUS_ERROR_UNKNOWN_LANGUAGE as STATUS_ERROR_UNKNOWN_LANGUAGE,
    LAMINA_STATUS_OK as STATUS_OK,
    lamina_log_callback as _lamina_log_callback,
    lib as _lib,
    path as library_path,
)
from ._adapter import Adapter
from ._backends import backends, load_backends
from ._eval import BleuScore, bleu, chrf, squad_exact_match, squad_f1
from ._embed import Embedder, cosine
from ._model import Model, default_model_path
from ._pretrain import ModelSpec, PretrainProgress, Pretrainer, build_corpus, init_model, pretrain, train_tokenizer
from ._session import Generation, Session
from ._train import TrainProgress, Trainer

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "BleuScore",
    "Embedder",
    "Generation",
    "LaminaError",
    "LibraryNotFoundError",
    "Model",
    "ModelSpec",
    "PretrainProgress",
    "Pretrainer",
    "Session",
    "TrainProgress",
    "Trainer",
    "backends",
    "bleu",
    "build_corpus",
    "chrf",
    "cosine",
    "default_model_path",
    "init_model",
    "library_path",
    "load_backends",
    "pretrain",
    "set_log_callback",
    "squad_exact_match",
    "squad_f1",
    "status_name",
    "train_tokenizer",
    "version",
    "__version__",
    # per-status subclasses of LaminaError
    "BackendError",
    "BusyError",
    "ChatTemplateError",
    "ContextCreationError",
    "DataError",
    "DecodeError",
    "EmptyPromptError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "InternalError",
    "InvalidUtf8Error",
    "LaminaIOError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotGgufError",
    "NullArgumentError",
    "PanicError",
    "PromptTooLongError",
    "UnknownLanguageError",
    # lamina_status values
    "STATUS_OK",
    "STATUS_ERROR_NULL_ARGUMENT",
    "STATUS_ERROR_INVALID_ARGUMENT",
    "STATUS_ERROR_INVALID_UTF8",
    "STATUS_ERROR_EMPTY_PROMPT",
    "STATUS_ERROR_PROMPT_TOO_LONG",
    "STATUS_ERROR_UNKNOWN_LANGUAGE",
    "STATUS_ERROR_MODEL_NOT_FOUND",
    "STATUS_ERROR_NOT_GGUF",
    "STATUS_ERROR_MODEL_LOAD",
    "STATUS_ERROR_IO",
    "STATUS_ERROR_CONTEXT_CREATION",
    "STATUS_ERROR_DECODE",
    "STATUS_ERROR_CHAT_TEMPLATE",
    "STATUS_ERROR_BUSY",
    "STATUS_ERROR_INTERNAL",
    "STATUS_ERROR_INVALID_HANDLE",
    "STATUS_ERROR_DATA",
    "STATUS_ERROR_BACKEND",
    "STATUS_ERROR_PANIC",
]


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH" (``lamina_version``)."""
    return _lib.lamina_version().decode("ascii")


# -- logging ----------------------------------------------------------------------------------

_LEVELS = {
    "debug": LAMINA_LOG_LEVEL_DEBUG,
    "info": LAMINA_LOG_LEVEL_INFO,
    "warn": LAMINA_LOG_LEVEL_WARN,
    "warning": LAMINA_LOG_LEVEL_WARN,
    "error": LAMINA_LOG_LEVEL_ERROR,
}
_LEVEL_NAMES = {
    LAMINA_LOG_LEVEL_DEBUG: "debug",
    LAMINA_LOG_LEVEL_INFO: "info",
    LAMINA_LOG_LEVEL_WARN: "warn",
    LAMINA_LOG_LEVEL_ERROR: "error",
}
LogCallback = Callable[[str, str], None]

# Every ctypes callback object ever installed stays referenced: another thread may still be
# inside the previous one right after it is replaced, and freeing it would crash.
_log_callbacks: List[object] = []
_log_lock = threading.Lock()
_NO_LOG_CALLBACK = _lamina_log_callback()  # NULL
_log_atexit = False


def _log_level(level: Union[str, int]) -> int:
    if isinstance(level, str):
        try:
            return _LEVELS[level.lower()]
        except KeyError:
            raise InvalidArgumentError(
                STATUS_ERROR_INVALID_ARGUMENT,
                "unknown log level {!r} (use debug, info, warn or error)".format(level),
            ) from None
    if isinstance(level, int) and not isinstance(level, bool) and level in _LEVEL_NAMES:
        return level
    # The library would accept any int32 (clamping it to DEBUG..ERROR), but a number that is
    # not a level is more likely a mistake than a wish.
    raise InvalidArgumentError(STATUS_ERROR_INVALID_ARGUMENT, "unknown log level {!r}".format(level))


def _silence_at_exit() -> None:
    try:
        _lib.lamina_set_log_callback(_NO_LOG_CALLBACK, None, LAMINA_LOG_LEVEL_ERROR)
    except Exception:
        pass


def set_log_callback(callback: Optional[LogCallback], min_level: Union[str, int] = "info") -> None:
    """Receive llama.cpp's log lines at `min_level` and above, or silence them with None
    (the default: lamina prints nothing).

    ``callback(level, message)`` gets the level as "debug", "info", "warn" or "error" and the
    line without its trailing newline. It may be called from any thread, must not call into
    lamina, and exceptions it raises are printed and ignored.
    """
    global _log_atexit
    level = _log_level(min_level)
    with _log_lock:
        if callback is None:
            _lib.lamina_set_log_callback(_NO_LOG_CALLBACK, None, level)
            return
        if not callable(callback):
            raise TypeError("callback must be callable or None")

        def c_log(c_level, message, _user_data):
            try:
                text = message.decode("utf-8", "replace") if message else ""
                callback(_LEVEL_NAMES.get(c_level, str(c_level)), text)
            except BaseException:
                try:
                    traceback.print_exc(file=sys.stderr)
                except BaseException:
                    pass

        c_callback = _lamina_log_callback(c_log)
        _log_callbacks.append(c_callback)
        _lib.lamina_set_log_callback(c_callback, None, level)
        if not _log_atexit:
            # Do not let llama.cpp threads call into a finalising interpreter.
            atexit.register(_silence_at_exit)
            _log_atexit = True

"""LaminaError: every non-OK lamina_status becomes one of these."""

from typing import Dict, Optional, Type

from . import _status

# The names of the header's lamina_status values (generated from it), used when the library
# cannot be asked (it is not loaded yet).
_NAMES = _status.NAMES

#: Pseudo-status of :class:`LibraryNotFoundError` (not a lamina_status value).
LIBRARY_NOT_FOUND = -1


def status_name(status: int) -> str:
    """The header's name of a status code ("LAMINA_STATUS_ERROR_BUSY", ...), or
    "LAMINA_STATUS_UNKNOWN" for a number the library does not define."""
    if status == LIBRARY_NOT_FOUND:
        return "LAMINA_LIBRARY_NOT_FOUND"
    if not -(2 ** 31) <= status < 2 ** 31:  # ctypes would silently truncate it to 32 bits
        return "LAMINA_STATUS_UNKNOWN"
    try:
        from ._lib import lib
    except ImportError:  # the library is not loaded (yet): the header's names
        return _NAMES.get(status, "LAMINA_STATUS_UNKNOWN")
    # lamina_status_name takes an int32_t: any value is safe to pass.
    return lib.lamina_status_name(status).decode("utf-8", "replace")


class LaminaError(Exception):
    """A lamina call failed.

    Attributes:
        status: the ``lamina_status`` code (an int, see the ``STATUS_*`` constants).
        status_name: its name, e.g. ``"LAMINA_STATUS_ERROR_MODEL_NOT_FOUND"``.
        message: the library's explanation (``lamina_last_error_message``).
    """

    def __init__(self, status: int, message: str, status_name_: Optional[str] = None):
        self.status = int(status)
        self.status_name = status_name_ if status_name_ is not None else status_name(self.status)
        self.message = message
        super().__init__(status, message)

    def __str__(self) -> str:
        if self.message:
            return "{}: {}".format(self.status_name, self.message)
        return self.status_name

    def __repr__(self) -> str:
        return "{}(status={}, status_name={!r}, message={!r})".format(
            type(self).__name__, self.status, self.status_name, self.message
        )

    def __reduce__(self):
        return (_rebuild, (self.status, self.message, self.status_name))


def _rebuild(status: int, message: str, name: str) -> "LaminaError":
    return error_for(status, message, name)


class NullArgumentError(LaminaError):
    pass


class InvalidArgumentError(LaminaError):
    pass


class InvalidUtf8Error(LaminaError):
    pass


class EmptyPromptError(LaminaError):
    pass


class PromptTooLongError(LaminaError):
    pass


class UnknownLanguageError(LaminaError):
    pass


class ModelNotFoundError(LaminaError):
    pass


class NotGgufError(LaminaError):
    pass


class ModelLoadError(LaminaError):
    pass


class LaminaIOError(LaminaError):
    pass


class ContextCreationError(LaminaError):
    pass


class DecodeError(LaminaError):
    pass


class ChatTemplateError(LaminaError):
    pass


class BusyError(LaminaError):
    pass


class InvalidHandleError(LaminaError):
    """The object was already closed (or the handle is otherwise not live)."""


class DataError(LaminaError):
    """A data file (evaluation JSONL or text) is missing or malformed; the message names the
    file and, for one bad line, its number ("path:line: reason")."""


class BackendError(LaminaError):
    """A compute-backend problem: no CPU backend is loaded, a backend library could not be
    loaded (or this build has its backends compiled in), or the layers asked to be offloaded
    do not fit in the GPUs' free memory."""


class InternalError(LaminaError):
    """A bug in lamina rather than in the input (for example, its own state could not be
    serialised); the message says what."""


class PanicError(LaminaError):
    pass


class LibraryNotFoundError(LaminaError, ImportError):
    """The lamina shared library could not be found or loaded."""

    def __init__(self, message: str):
        LaminaError.__init__(self, LIBRARY_NOT_FOUND, message, "LAMINA_LIBRARY_NOT_FOUND")

    def __reduce__(self):
        return (LibraryNotFoundError, (self.message,))


# Every error status's class; tests/test_errors.py checks that no status of _status lacks one.
_CLASSES: Dict[int, Type[LaminaError]] = {
    _status.LAMINA_STATUS_ERROR_NULL_ARGUMENT: NullArgumentError,
    _status.LAMINA_STATUS_ERROR_INVALID_ARGUMENT: InvalidArgumentError,
    _status.LAMINA_STATUS_ERROR_INVALID_UTF8: InvalidUtf8Error,
    _status.LAMINA_STATUS_ERROR_EMPTY_PROMPT: EmptyPromptError,
    _status.LAMINA_STATUS_ERROR_PROMPT_TOO_LONG: PromptTooLongError,
    _status.LAMINA_STATUS_ERROR_UNKNOWN_LANGUAGE: UnknownLanguageError,
    _status.LAMINA_STATUS_ERROR_MODEL_NOT_FOUND: ModelNotFoundError,
    _status.LAMINA_STATUS_ERROR_NOT_GGUF: NotGgufError,
    _status.LAMINA_STATUS_ERROR_MODEL_LOAD: ModelLoadError,
    _status.LAMINA_STATUS_ERROR_IO: LaminaIOError,
    _status.LAMINA_STATUS_ERROR_CONTEXT_CREATION: ContextCreationError,
    _status.LAMINA_STATUS_ERROR_DECODE: DecodeError,
    _status.LAMINA_STATUS_ERROR_CHAT_TEMPLATE: ChatTemplateError,
    _status.LAMINA_STATUS_ERROR_BUSY: BusyError,
    _status.LAMINA_STATUS_ERROR_INVALID_HANDLE: InvalidHandleError,
    _status.LAMINA_STATUS_ERROR_DATA: DataError,
    _status.LAMINA_STATUS_ERROR_BACKEND: BackendError,
    _status.LAMINA_STATUS_ERROR_INTERNAL: InternalError,
    _status.LAMINA_STATUS_ERROR_PANIC: PanicError,
}


def error_for(status: int, message: str, name: Optional[str] = None) -> LaminaError:
    """The LaminaError subclass instance for `status`."""
    return _CLASSES.get(int(status), LaminaError)(status, message, name)

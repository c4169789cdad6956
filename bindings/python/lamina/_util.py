"""Small helpers shared by the modules: strings in and out, status checks."""

import ctypes
import os
import signal
import threading
from typing import Optional, Union

from ._error import InvalidArgumentError, error_for
from ._lib import lib

StrOrBytes = Union[str, bytes]


def to_c(value: StrOrBytes, name: str) -> bytes:
    """A str as UTF-8 bytes for C; bytes pass through unchanged (C validates them).

    Lone surrogates are passed on as the (invalid) bytes they stand for, so C reports
    LAMINA_STATUS_ERROR_INVALID_UTF8 rather than Python raising UnicodeEncodeError.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        raise TypeError("{} must be str or bytes, not {}".format(name, type(value).__name__))
    if b"\0" in data:
        raise InvalidArgumentError(2, "`{}` contains a NUL character".format(name))
    return data


def path_to_c(value, name: str = "path") -> bytes:
    """A filesystem path (str, bytes or os.PathLike) as bytes for C."""
    value = os.fspath(value)
    if isinstance(value, str):
        # surrogateescape gives back the original bytes of undecodable file names.
        data = value.encode("utf-8", "surrogateescape")
    else:
        data = bytes(value)
    if b"\0" in data:
        raise InvalidArgumentError(2, "`{}` contains a NUL character".format(name))
    return data


def opt_to_c(value: Optional[StrOrBytes], name: str) -> Optional[bytes]:
    return None if value is None else to_c(value, name)


def last_error() -> str:
    msg = lib.lamina_last_error_message()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status: int) -> None:
    """Raise the LaminaError for a non-OK status (message read on this thread)."""
    if status != 0:
        raise error_for(status, last_error())


def init_params(struct_type, init):
    """A new params struct filled with the library's defaults by `init`, one of the
    ``lamina_*_params_init(&params, sizeof params)`` functions (which also sets struct_size).
    """
    params = struct_type()
    check(init(ctypes.byref(params), ctypes.sizeof(params)))
    return params


def take_string(ptr: ctypes.c_void_p) -> str:
    """Copy a string lamina returned through `char **` and free it."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8", "replace")
    finally:
        lib.lamina_string_free(ptr.value)
        ptr.value = None


def u32(value, name: str) -> int:
    value = _int(value, name)
    if not 0 <= value <= 0xFFFFFFFF:
        raise InvalidArgumentError(2, "`{}` must be in [0, 2**32), got {}".format(name, value))
    return value


def i32(value, name: str) -> int:
    value = _int(value, name)
    if not -(2 ** 31) <= value < 2 ** 31:
        raise InvalidArgumentError(2, "`{}` must fit in a 32-bit int, got {}".format(name, value))
    return value


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError("{} must be an int, not {}".format(name, type(value).__name__))
    return value.__index__()


def f32(value, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError("{} must be a number, not bool".format(name))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError("{} must be a number, not {}".format(name, type(value).__name__)) from None


class _Interrupt:
    __slots__ = ("signum", "frame", "stops")

    def __init__(self, stops: bool) -> None:
        self.signum = None
        self.frame = None
        self.stops = stops  # the held-back signal will raise KeyboardInterrupt

    @property
    def pending(self) -> bool:
        """A Ctrl-C arrived that will raise KeyboardInterrupt: stop working."""
        return self.stops and self.signum is not None


class defer_sigint:
    """Hold back Ctrl-C (SIGINT) during a lamina call on the main thread, then deliver it.

    While the main thread is inside lamina, Python runs a signal handler only when it next
    runs Python code there: at the entry of a ctypes callback (token or log), where an
    exception cannot be caught and ctypes would swallow it, leaving the callback's return
    value undefined. Instead the handler installed here only records the signal, and the
    original handler runs once the call is over. When that is Python's default handler (which
    raises KeyboardInterrupt), token callbacks see ``state.pending`` and stop the generation
    first; a custom handler is only delayed.

    ``with defer_sigint() as state``: `state` is None when nothing was changed (not the main
    thread, or SIGINT not handled by Python).
    """

    __slots__ = ("_original", "_state")

    def __enter__(self) -> Optional[_Interrupt]:
        self._state = None
        if threading.current_thread() is not threading.main_thread():
            return None
        try:
            original = signal.getsignal(signal.SIGINT)
        except (ValueError, OSError):
            return None
        if not callable(original):  # SIG_IGN, SIG_DFL or set outside Python
            return None
        state = _Interrupt(stops=original is signal.default_int_handler)

        def handler(signum, frame):
            state.signum = signum
            state.frame = frame

        try:
            signal.signal(signal.SIGINT, handler)
        except (ValueError, OSError):
            return None
        self._original = original
        self._state = state
        return state

    def __exit__(self, exc_type, exc, tb) -> None:
        state = self._state
        if state is None:
            return
        self._state = None
        signal.signal(signal.SIGINT, self._original)
        if state.signum is not None:
            self._original(state.signum, state.frame)  # KeyboardInterrupt by default

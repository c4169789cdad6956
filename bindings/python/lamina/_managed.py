"""Ownership of a C handle by a Python object (after wasmtime-py's ``_managed.py``).

A :class:`Managed` object owns exactly one handle. ``close()`` frees it (idempotent), the
object is a context manager, and ``__del__`` frees it if the user did not. Using a closed
object raises :class:`~lamina.LaminaError` with ``LAMINA_STATUS_ERROR_INVALID_HANDLE`` and
never hands a dangling pointer to C.
"""

import threading
from typing import Optional, TypeVar

from ._error import InvalidHandleError

_Self = TypeVar("_Self", bound="Managed")


class Managed:
    """Base class of objects that own a lamina handle."""

    #: The handle (an opaque int the library never reuses), None once closed or if
    #: construction failed.
    _handle: Optional[int] = None
    _close_lock: Optional[threading.Lock] = None

    def _set_handle(self, handle: int) -> None:
        if self._handle is not None:
            raise ValueError("handle already set")
        if not handle:
            raise ValueError("NULL handle")
        self._close_lock = threading.Lock()
        self._handle = handle

    def _delete(self, handle: int) -> None:
        """Free `handle` (the matching ``lamina_*_free``)."""
        raise NotImplementedError

    def _ptr(self) -> int:
        """The live handle, or raise if the object is closed."""
        handle = self._handle
        if handle is None:
            raise InvalidHandleError(
                15,
                "this {} is closed".format(type(self).__name__),
                "LAMINA_STATUS_ERROR_INVALID_HANDLE",
            )
        return handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _before_close(self) -> None:
        """Hook run once, before the handle is freed."""

    def close(self) -> None:
        """Free the C object. Safe to call more than once."""
        lock = self._close_lock
        if lock is None:  # never initialised (constructor failed)
            return
        with lock:
            handle = self._handle
            if handle is None:
                return
            self._before_close()
            self._handle = None
        self._delete(handle)

    def __enter__(self: _Self) -> _Self:  # typed, so that `with Model() as m` keeps m's type
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

"""Trainer: LoRA fine-tuning on the native engine (``lamina_trainer_*``).

The C declarations of this module live here rather than in ``_lib.PROTOTYPES``, declared on
the same loaded library in the same way, so that the training ABI is one self-contained unit.
"""

import ctypes
import math
from ctypes import CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_double, c_float, c_int32, c_size_t, c_uint32, c_uint64, c_void_p
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from ._error import InvalidArgumentError, LibraryNotFoundError
from ._lib import lamina_status, lib
from ._managed import Managed
from ._model import default_model_path
from ._util import check, defer_sigint, f32, init_params, path_to_c, to_c, u32

# -- the C ABI -------------------------------------------------------------------------------

LAMINA_TRAIN_SCHEDULE_COSINE = 0
LAMINA_TRAIN_SCHEDULE_LINEAR = 1
LAMINA_TRAIN_SCHEDULE_CONSTANT = 2
LAMINA_ADAPTER_FORMAT_GGUF = 0
LAMINA_ADAPTER_FORMAT_PEFT = 1

_SCHEDULES = {
    "cosine": LAMINA_TRAIN_SCHEDULE_COSINE,
    "linear": LAMINA_TRAIN_SCHEDULE_LINEAR,
    "constant": LAMINA_TRAIN_SCHEDULE_CONSTANT,
}
_FORMATS = {"gguf": LAMINA_ADAPTER_FORMAT_GGUF, "peft": LAMINA_ADAPTER_FORMAT_PEFT}


class lamina_train_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("rank", c_uint32),
        ("alpha", c_float),
        ("dropout", c_float),
        ("rslora", c_bool),
        ("targets", c_char_p),
        ("learning_rate", c_float),
        ("beta1", c_float),
        ("beta2", c_float),
        ("eps", c_float),
        ("weight_decay", c_float),
        ("warmup_steps", c_uint32),
        ("schedule", c_int32),
        ("max_grad_norm", c_float),
        ("batch_size", c_uint32),
        ("grad_accum", c_uint32),
        ("steps", c_uint32),
        ("checkpointing", c_bool),
        ("seed", c_uint64),
        ("eval_every", c_uint32),
        ("max_len", c_uint32),
        ("pack", c_bool),
        ("val_fraction", c_float),
        ("data_seed", c_uint64),
        ("truncate", c_bool),
        ("n_threads", c_uint32),
        ("full", c_bool),
        ("activation_memory_mib", c_uint32),
        ("checkpoint_every", c_uint32),
    ]


class lamina_train_progress(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("step", c_uint64),
        ("total_steps", c_uint64),
        ("loss", c_double),
        ("learning_rate", c_double),
        ("grad_norm", c_double),
        ("tokens_per_second", c_double),
        ("eta_seconds", c_double),
        ("epoch", c_uint64),
        ("val_loss", c_double),
    ]


lamina_train_progress_callback = CFUNCTYPE(c_bool, POINTER(lamina_train_progress), c_void_p)
lamina_trainer_p = c_void_p
_out_handle = POINTER(c_void_p)

PROTOTYPES = {
    "lamina_train_params_init": (lamina_status, [POINTER(lamina_train_params), c_size_t]),
    "lamina_trainer_create": (lamina_status, [c_char_p, c_char_p, POINTER(lamina_train_params), _out_handle]),
    "lamina_trainer_resume": (
        lamina_status,
        [c_char_p, c_char_p, POINTER(lamina_train_params), c_char_p, _out_handle],
    ),
    "lamina_trainer_run": (lamina_status, [lamina_trainer_p, lamina_train_progress_callback, c_void_p, c_char_p]),
    "lamina_trainer_cancel": (lamina_status, [lamina_trainer_p]),
    "lamina_trainer_step": (lamina_status, [lamina_trainer_p, POINTER(c_double)]),
    "lamina_trainer_evaluate": (lamina_status, [lamina_trainer_p, POINTER(c_double)]),
    "lamina_trainer_steps": (lamina_status, [lamina_trainer_p, POINTER(c_uint64), POINTER(c_uint64)]),
    "lamina_trainer_save_adapter": (lamina_status, [lamina_trainer_p, c_char_p, c_int32]),
    "lamina_trainer_save_checkpoint": (lamina_status, [lamina_trainer_p, c_char_p]),
    "lamina_trainer_save_model": (lamina_status, [lamina_trainer_p, c_char_p]),
    "lamina_trainer_free": (None, [lamina_trainer_p]),
}


def _declare() -> None:
    missing = []
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name, None)
        if fn is None:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            "{!r} is not a compatible lamina library: missing {}".format(lib._lamina_path, ", ".join(missing))
        )


_declare()

# -- the Python API --------------------------------------------------------------------------


class TrainProgress(NamedTuple):
    """What a progress callback receives after every optimizer step."""

    step: int  #: steps done (1 after the first)
    total_steps: int
    loss: float  #: mean loss per target token of this step (nats)
    learning_rate: float
    grad_norm: float  #: before clipping
    tokens_per_second: float
    eta_seconds: float
    epoch: int
    val_loss: Optional[float]  #: None when not computed at this step


ProgressCallback = Callable[[TrainProgress], Optional[bool]]

_INT_FIELDS = ("rank", "warmup_steps", "batch_size", "grad_accum", "steps", "eval_every", "max_len", "n_threads", "activation_memory_mib", "checkpoint_every")
_FLOAT_FIELDS = ("alpha", "dropout", "learning_rate", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", "val_fraction")
_BOOL_FIELDS = ("rslora", "checkpointing", "pack", "truncate", "full")
_SEED_FIELDS = ("seed", "data_seed")
PARAM_NAMES = _INT_FIELDS + _FLOAT_FIELDS + _BOOL_FIELDS + _SEED_FIELDS + ("targets", "schedule")


def _params(options: Dict[str, Any]):
    """A lamina_train_params with the library's defaults, then `options`. Returns the struct
    and the bytes objects it points to (kept alive by the caller during the call)."""
    params = init_params(lamina_train_params, lib.lamina_train_params_init)
    keep: List[bytes] = []
    for name, value in options.items():
        if name in _INT_FIELDS:
            setattr(params, name, u32(value, name))
        elif name in _FLOAT_FIELDS:
            setattr(params, name, f32(value, name))
        elif name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise TypeError("{} must be a bool, not {}".format(name, type(value).__name__))
            setattr(params, name, value)
        elif name in _SEED_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 64:
                raise InvalidArgumentError(2, "`{}` must be an int in [0, 2**64), got {!r}".format(name, value))
            setattr(params, name, value)
        elif name == "targets":
            if value is None:
                continue
            if not isinstance(value, (str, bytes)):
                value = ",".join(value)
            c = to_c(value, "targets")
            keep.append(c)
            params.targets = c
        elif name == "schedule":
            if value not in _SCHEDULES:
                raise InvalidArgumentError(
                    2, "unknown schedule {!r} (use {})".format(value, ", ".join(sorted(_SCHEDULES)))
                )
            params.schedule = _SCHEDULES[value]
        else:
            raise TypeError(
                "unknown training option {!r} (known: {})".format(name, ", ".join(sorted(PARAM_NAMES)))
            )
    return params, keep


class Trainer(Managed):
    """A training run on lamina's native engine (``lamina_trainer_create``): of a LoRA
    adapter, or of the whole model with ``full=True``.

    ``Trainer(model_path, data_path, **params)`` loads the model (a GGUF file or a safetensors
    checkpoint directory; None = :func:`lamina.default_model_path`) and the data (JSONL or a
    JSON array of ``{"messages": [...]}``, ``{"prompt", "completion"}``, ``{"text"}`` or
    ``{"instruction", "input"?, "output"}`` records) and starts a fresh adapter. `params` are
    the fields of ``lamina_train_params`` (unset ones keep the library's defaults): rank,
    alpha, dropout, rslora, targets ("q,v" or ["q", "v"]), learning_rate, beta1, beta2, eps,
    weight_decay, warmup_steps, schedule ("cosine", "linear", "constant"), max_grad_norm,
    batch_size, grad_accum, steps, checkpointing, seed, eval_every, max_len, pack,
    val_fraction, data_seed, truncate, n_threads, activation_memory_mib, checkpoint_every,
    full. With ``checkpoint_every=N``, :meth:`run` with a checkpoint directory also writes a
    checkpoint every N steps, so that a killed process resumes from the last one. With
    ``full=True`` every weight of the model is trained (in f32) instead of an adapter, and
    :meth:`save_model` writes the result. A bad value raises
    :class:`~lamina.InvalidArgumentError` naming it; a bad data file :class:`~lamina.DataError`
    with "path:line"; a missing model :class:`~lamina.ModelNotFoundError`.

    One thread at a time uses a trainer; :meth:`cancel` may be called from any thread while
    :meth:`run` is in progress (other calls then raise :class:`~lamina.BusyError`).
    """

    def __init__(self, model_path=None, data_path=None, **params):
        self._init(model_path, data_path, params, None)

    def _init(self, model_path, data_path, params: Dict[str, Any], checkpoint_dir) -> None:
        if data_path is None:
            raise TypeError("data_path is required")
        c_model = path_to_c(model_path if model_path is not None else default_model_path(), "model_path")
        c_data = path_to_c(data_path, "data_path")
        c_params, _keep = _params(params)
        out = ctypes.c_void_p()
        with defer_sigint():
            if checkpoint_dir is None:
                status = lib.lamina_trainer_create(c_model, c_data, ctypes.byref(c_params), ctypes.byref(out))
            else:
                c_dir = path_to_c(checkpoint_dir, "checkpoint_dir")
                status = lib.lamina_trainer_resume(c_model, c_data, ctypes.byref(c_params), c_dir, ctypes.byref(out))
            if status == 0:
                self._set_handle(out.value)
        check(status)

    @classmethod
    def resume(cls, checkpoint_dir, model_path=None, data_path=None, **params) -> "Trainer":
        """Continue the run checkpointed in `checkpoint_dir` (by :meth:`save_checkpoint` or
        ``run(checkpoint_dir=...)``) exactly where it stopped. Give the same model, data and
        data options (max_len, pack, val_fraction, data_seed, truncate) as the original run;
        `steps` raises the planned total (0 or unset keeps the checkpoint's). Other training
        options come from the checkpoint and are ignored.
        """
        params.setdefault("steps", 0)
        trainer = cls.__new__(cls)
        trainer._init(model_path, data_path, params, checkpoint_dir)
        return trainer

    def _delete(self, handle: int) -> None:
        lib.lamina_trainer_free(handle)

    def run(self, progress: Optional[ProgressCallback] = None, checkpoint_dir=None) -> bool:
        """Train until the planned number of steps (``lamina_trainer_run``), or until stopped:
        `progress(TrainProgress)` returning False (None or True go on), :meth:`cancel` from
        another thread, or Ctrl-C on the main thread (then KeyboardInterrupt is raised after
        the step in progress). An exception raised by `progress` stops the run and is
        re-raised here. With `checkpoint_dir`, a checkpoint is written when the run ends,
        stopped or not. Calling run again continues a stopped run.

        Returns True when all the planned steps are done, False when stopped early.
        """
        handle = self._ptr()
        c_dir = None if checkpoint_dir is None else path_to_c(checkpoint_dir, "checkpoint_dir")
        errors: List[BaseException] = []
        interrupt = None  # set below: a held-back Ctrl-C stops the run

        def c_progress(p, _user_data):
            try:
                if interrupt is not None and interrupt.pending:
                    return False
                if progress is None:
                    return True
                c = p.contents
                report = TrainProgress(
                    step=c.step,
                    total_steps=c.total_steps,
                    loss=c.loss,
                    learning_rate=c.learning_rate,
                    grad_norm=c.grad_norm,
                    tokens_per_second=c.tokens_per_second,
                    eta_seconds=c.eta_seconds,
                    epoch=c.epoch,
                    val_loss=None if math.isnan(c.val_loss) else c.val_loss,
                )
                result = progress(report)
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                errors.append(e)
                return False

        # Always installed, so that Ctrl-C can stop a long run (see defer_sigint).
        callback = lamina_train_progress_callback(c_progress)
        with defer_sigint() as interrupt:
            status = lib.lamina_trainer_run(handle, callback, None, c_dir)
        if errors:
            raise errors[0]
        check(status)
        step, total = self.steps()
        return step >= total

    def cancel(self) -> None:
        """Stop a :meth:`run` in progress after its current step. Thread-safe."""
        check(lib.lamina_trainer_cancel(self._ptr()))

    def step(self) -> float:
        """One optimizer step outside of :meth:`run`; returns its mean loss per target token."""
        handle = self._ptr()
        loss = ctypes.c_double()
        with defer_sigint():
            status = lib.lamina_trainer_step(handle, ctypes.byref(loss))
        check(status)
        return loss.value

    def evaluate(self) -> Optional[float]:
        """The validation loss with the current adapter, or None without a validation set
        (``val_fraction=0``)."""
        handle = self._ptr()
        loss = ctypes.c_double()
        with defer_sigint():
            status = lib.lamina_trainer_evaluate(handle, ctypes.byref(loss))
        check(status)
        return None if math.isnan(loss.value) else loss.value

    def steps(self):
        """``(steps done, planned total)``."""
        done, total = c_uint64(), c_uint64()
        check(lib.lamina_trainer_steps(self._ptr(), ctypes.byref(done), ctypes.byref(total)))
        return done.value, total.value

    def save_adapter(self, path, format: str = "gguf") -> None:
        """Save the adapter: "gguf" writes a llama.cpp LoRA file at `path` (load it with
        :meth:`Model.load_adapter`), "peft" a PEFT directory (adapter_config.json and
        adapter_model.safetensors)."""
        if format not in _FORMATS:
            raise InvalidArgumentError(2, "unknown adapter format {!r} (use gguf or peft)".format(format))
        check(lib.lamina_trainer_save_adapter(self._ptr(), path_to_c(path), _FORMATS[format]))

    def save_model(self, path) -> None:
        """Save the model of a ``full=True`` trainer as a GGUF file (F32 weights, the base
        model's metadata), loadable with :class:`Model`."""
        check(lib.lamina_trainer_save_model(self._ptr(), path_to_c(path)))

    def save_checkpoint(self, checkpoint_dir) -> None:
        """Write a checkpoint (adapter, optimizer state, data position) for :meth:`resume`."""
        check(lib.lamina_trainer_save_checkpoint(self._ptr(), path_to_c(checkpoint_dir, "checkpoint_dir")))

    def __repr__(self) -> str:
        if self.closed:
            return "<lamina.Trainer (closed)>"
        try:
            step, total = self.steps()
        except Exception:
            return "<lamina.Trainer (busy)>"
        return "<lamina.Trainer step {}/{}>".format(step, total)


__all__ = ["Trainer", "TrainProgress", "PARAM_NAMES"]

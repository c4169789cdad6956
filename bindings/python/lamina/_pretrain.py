"""Training from scratch, the steps before pretraining: corpus preparation
(``lamina_corpus_build``), tokenizer training (``lamina_tokenizer_train``) and a new model's
shape and random initialisation (``lamina_model_spec_preset``, ``lamina_init_model``).

    import lamina

    lamina.build_corpus(["books/"], "corpus")                      # train/validation/test.jsonl
    lamina.train_tokenizer("corpus/train.jsonl", "tokenizer", vocab_size=4096)
    spec = lamina.ModelSpec.preset("5m", vocab_size=4096)
    lamina.init_model(spec, "tokenizer", "model-hf", gguf="model.gguf", seed=1)
    with lamina.Model("model.gguf") as model: ...                 # random weights, ready to train

Each call returns its report, the JSON object the C function gives, as a dict. A call stopped by
its progress callback (returning False) or by Ctrl-C returns ``{"cancelled": True}`` and, for
Ctrl-C, then raises KeyboardInterrupt; a finished one has ``"cancelled": False``.

Pretraining itself (``lamina_pretrainer_*``) initialises the model and trains it in one run:

    report = lamina.pretrain("corpus", "run", spec=spec, tokenizer_dir="tokenizer", steps=1000,
                             progress=lambda p: print(p.step, p.loss))
    with lamina.Model(report["summary"]["gguf"]) as model: ...    # the trained model

:class:`Pretrainer` is the same run as an object, whose :meth:`Pretrainer.cancel` may be called
from another thread.
"""

import ctypes
import json
import os
import struct
from dataclasses import dataclass
import math
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Union

from ._error import InvalidArgumentError
from ._lib import (
    lamina_corpus_params,
    lamina_corpus_progress_callback,
    lamina_init_params,
    lamina_model_spec,
    lamina_pretrain_params,
    lamina_pretrain_progress_callback,
    lamina_progress_callback,
    lamina_tokenizer_train_params,
    lib,
)
from ._managed import Managed
from ._util import check, defer_sigint, f32, init_params, opt_to_c, path_to_c, take_string, to_c, u32

StrOrBytes = Union[str, bytes]
PathLike = Union[str, bytes, "os.PathLike[str]"]

#: ``progress(stage, done, total)`` of :func:`build_corpus`: `done` of `total` files (stage
#: "read") or documents (every other stage). False cancels; None or True go on.
CorpusProgress = Callable[[str, int, int], Optional[bool]]
#: ``progress(done, total)`` of :func:`init_model`: tensors written. False cancels.
InitProgress = Callable[[int, int], Optional[bool]]

_U64 = 2 ** 64


def _bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError("{} must be a bool, not {}".format(name, type(value).__name__))
    return value


def _count(value, name: str) -> int:
    """A non-negative int that fits in size_t / uint64_t."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError("{} must be an int, not {}".format(name, type(value).__name__))
    value = value.__index__()
    if not 0 <= value < min(_U64, 2 ** (8 * ctypes.sizeof(ctypes.c_size_t))):
        raise InvalidArgumentError(2, "`{}` must be an int in [0, 2**64), got {}".format(name, value))
    return value


def _u64(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _U64:
        raise InvalidArgumentError(2, "`{}` must be an int in [0, 2**64), got {!r}".format(name, value))
    return value


def _from_f32(value: float) -> float:
    """The shortest decimal that a C float reads as `value` (1e-05, not 9.999999747378752e-06)."""
    for digits in range(1, 10):
        candidate = float("{:.{}g}".format(value, digits))
        if struct.unpack("f", struct.pack("f", candidate))[0] == value:
            return candidate
    return value


def _path_array(inputs, name: str):
    """One path or a sequence of them as a ``const char *const *`` and its length. The array
    holds the bytes objects it points to, so keep it alive during the call."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = [inputs]
    items = [path_to_c(p, "{}[{}]".format(name, i)) for i, p in enumerate(inputs)]
    if not items:
        return None, 0  # C reports the empty list
    return (ctypes.c_char_p * len(items))(*items), len(items)


def _report(out: ctypes.c_void_p) -> Dict[str, Any]:
    return json.loads(take_string(out))


class _Progress:
    """A C progress callback over an optional Python callable: stops the call when the callable
    returns False, raises (the exception is kept for :meth:`reraise`) or Ctrl-C arrives."""

    def __init__(self, callback: Optional[Callable[..., Optional[bool]]], c_type, convert) -> None:
        self.callback = callback
        self.interrupt = None  # set to defer_sigint's state during the call
        self.errors: List[BaseException] = []

        def c_progress(*args):
            try:
                if self.interrupt is not None and self.interrupt.pending:
                    return False
                if self.callback is None:
                    return True
                result = self.callback(*convert(*args[:-1]))
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                self.errors.append(e)
                return False

        # Always installed, so that Ctrl-C can stop a long call (see defer_sigint).
        self.c_callback = c_type(c_progress)

    def reraise(self) -> None:
        if self.errors:
            raise self.errors[0]


def build_corpus(
    inputs: Union[PathLike, Iterable[PathLike]],
    out_dir: PathLike,
    *,
    strip_markup: bool = False,
    normalization: str = "nfc",
    lowercase: bool = False,
    strip_control: bool = True,
    normalize_whitespace: bool = True,
    dedup_documents: bool = True,
    near_dedup: bool = True,
    near_dedup_threshold: float = 0.8,
    dedup_lines: bool = True,
    min_line_chars: int = 40,
    min_chars: int = 0,
    max_chars: int = 0,
    min_words: int = 0,
    train_fraction: float = 0.9,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 0,
    progress: Optional[CorpusProgress] = None,
) -> Dict[str, Any]:
    """Prepare a text corpus for training from scratch (``lamina_corpus_build``) and return its
    report.

    `inputs` is one path or a list of them: ``.jsonl`` files (one document per ``{"text": ...}``
    record), ``.md`` files (one document each), other files such as ``.txt`` (documents
    separated by blank lines) and directories of those (recursively, in path order). In this
    order the documents are: stripped of HTML/XML markup (`strip_markup`), Unicode-normalised
    (`normalization`: "nfc", "nfkc" or "none"), lowercased (`lowercase`), stripped of control
    characters (`strip_control`) and of extra whitespace (`normalize_whitespace`); exact
    duplicates (`dedup_documents`) and near duplicates (`near_dedup`, from an estimated Jaccard
    similarity of `near_dedup_threshold`) are removed, then lines of `min_line_chars` characters
    or more seen before (`dedup_lines`); documents shorter than `min_chars` characters or
    `min_words` words, or longer than `max_chars` characters, are dropped (0 = no limit).
    Then a shuffle seeded by `seed` splits them into train, validation and test sets of the
    given fractions (summing to 1), written to `out_dir` (created) as train.jsonl,
    validation.jsonl and test.jsonl, with report.json.

    The report: ``{"inputs", "files", "input": {"documents", "bytes", "words"}, "steps": [{"step",
    "enabled", "documents_in", "documents_changed", "documents_removed", "bytes_in",
    "bytes_out"}, ...], "output", "splits": [{"name", "documents", "bytes", "words"}, ...],
    "options", "cancelled": False}``. `progress(stage, done, total)` is called as the work goes
    on (:data:`CorpusProgress`); returning False cancels, writes nothing and returns
    ``{"cancelled": True}``. An exception it raises cancels and is re-raised here.

    Raises :class:`~lamina.InvalidArgumentError` for an option out of range, no inputs, a step
    that removed every document or too few documents for the sets; :class:`~lamina.DataError`
    for a missing input, text that is not UTF-8 or a bad JSONL record ("path:line").
    """
    c_inputs, n = _path_array(inputs, "inputs")
    c_dir = path_to_c(out_dir, "out_dir")
    p = init_params(lamina_corpus_params, lib.lamina_corpus_params_init)
    for name, value in (
        ("strip_markup", strip_markup),
        ("lowercase", lowercase),
        ("strip_control", strip_control),
        ("normalize_whitespace", normalize_whitespace),
        ("dedup_documents", dedup_documents),
        ("near_dedup", near_dedup),
        ("dedup_lines", dedup_lines),
    ):
        setattr(p, name, _bool(value, name))
    counts = (("min_line_chars", min_line_chars), ("min_chars", min_chars), ("max_chars", max_chars), ("min_words", min_words))
    for name, value in counts:
        setattr(p, name, _count(value, name))
    for name, value in (
        ("near_dedup_threshold", near_dedup_threshold),
        ("train_fraction", train_fraction),
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        setattr(p, name, f32(value, name))
    c_normalization = to_c(normalization, "normalization")
    p.normalization = c_normalization
    p.seed = _u64(seed, "seed")

    def convert(stage: bytes, done: int, total: int):
        return stage.decode("ascii"), done, total

    state = _Progress(progress, lamina_corpus_progress_callback, convert)
    out = ctypes.c_void_p()
    with defer_sigint() as state.interrupt:
        status = lib.lamina_corpus_build(c_inputs, n, c_dir, ctypes.byref(p), state.c_callback, None, ctypes.byref(out))
    state.reraise()
    check(status)
    return _report(out)


def train_tokenizer(
    inputs: Union[PathLike, Iterable[PathLike]],
    out_dir: PathLike,
    *,
    vocab_size: int = 8192,
    min_frequency: int = 2,
    bos_token: StrOrBytes = "<s>",
    eos_token: StrOrBytes = "</s>",
    pad_token: Optional[StrOrBytes] = "<pad>",
    special_tokens: Sequence[StrOrBytes] = (),
    chat_template: Optional[StrOrBytes] = None,
    add_bos_token: bool = False,
) -> Dict[str, Any]:
    """Train a byte-level BPE tokenizer (``lamina_tokenizer_train``) on `inputs` (read as
    :func:`build_corpus` reads them; its train.jsonl is the usual input) and write
    tokenizer.json and tokenizer_config.json into `out_dir` (created); returns the report
    ``{"inputs", "documents", "bytes", "vocab_size", "n_merges", "special_tokens", "seconds",
    "files", "cancelled": False}``.

    The vocabulary holds `vocab_size` tokens: the special tokens (`bos_token`, `eos_token`,
    `pad_token` (None = no padding token), then `special_tokens`, such as chat markers), the 256
    byte tokens and one token per merge of a pair seen at least `min_frequency` times. The
    pre-tokenizer is the one llama.cpp calls ``smollm``, so a GGUF made by :func:`init_model`
    tokenizes as the ``tokenizers`` library does. `chat_template` (Jinja) goes into
    tokenizer_config.json; `add_bos_token` puts BOS before every text. The call cannot be
    interrupted.

    Raises :class:`~lamina.InvalidArgumentError` for a vocabulary too small for the byte and
    special tokens or too large for the corpus (the message says how many it supports), a bad
    special token or template, an empty corpus; :class:`~lamina.DataError` for a missing or
    malformed input.
    """
    c_inputs, n = _path_array(inputs, "inputs")
    c_dir = path_to_c(out_dir, "out_dir")
    p = init_params(lamina_tokenizer_train_params, lib.lamina_tokenizer_train_params_init)
    p.vocab_size = u32(vocab_size, "vocab_size")
    p.min_frequency = _u64(min_frequency, "min_frequency")
    keep = [to_c(bos_token, "bos_token"), to_c(eos_token, "eos_token"), opt_to_c(pad_token, "pad_token")]
    keep.append(opt_to_c(chat_template, "chat_template"))
    p.bos_token, p.eos_token, p.pad_token, p.chat_template = keep
    if isinstance(special_tokens, (str, bytes)):
        raise TypeError("special_tokens must be a list of strings, not a single string")
    extra = [to_c(t, "special_tokens[{}]".format(i)) for i, t in enumerate(special_tokens)]
    c_extra = (ctypes.c_char_p * len(extra))(*extra) if extra else None
    p.special_tokens = ctypes.cast(c_extra, ctypes.POINTER(ctypes.c_char_p)) if extra else None
    p.n_special_tokens = len(extra)
    p.add_bos_token = _bool(add_bos_token, "add_bos_token")
    out = ctypes.c_void_p()
    with defer_sigint():
        status = lib.lamina_tokenizer_train(c_inputs, n, c_dir, ctypes.byref(p), ctypes.byref(out))
    check(status)
    return _report(out)


@dataclass
class ModelSpec:
    """The shape of a LLaMA decoder to train from scratch (``lamina_model_spec``): SwiGLU MLP,
    RMSNorm, RoPE, grouped-query attention. Start from :meth:`preset` and change fields, or give
    every size. Checked by :func:`init_model`.
    """

    #: Transformer blocks.
    n_layers: int
    #: The residual stream's width (``hidden_size``).
    width: int
    #: Attention heads; they divide the width into heads of an even number of dimensions.
    n_heads: int
    #: Key/value heads (grouped-query attention); they divide n_heads.
    n_kv_heads: int
    #: The MLP's inner width (``intermediate_size``).
    ffn_width: int
    #: Positions the model is trained for (``max_position_embeddings``).
    context_length: int
    #: Rows of the embedding: the tokenizer's vocabulary size, or more.
    vocab_size: int
    #: RoPE's base frequency (``rope_theta``).
    rope_base: float = 10000.0
    rms_norm_eps: float = 1e-5
    #: The LM head is the token embedding matrix.
    tied_embeddings: bool = True

    @classmethod
    def preset(cls, name: str, vocab_size: int) -> "ModelSpec":
        """The preset `name` ("1m", "5m" or "20m": about 1, 5 and 20 million parameters at
        4096 tokens) with a vocabulary of `vocab_size` tokens (``lamina_model_spec_preset``).
        Raises :class:`~lamina.InvalidArgumentError` for an unknown name or a vocab_size of 0."""
        c = lamina_model_spec()
        c.struct_size = ctypes.sizeof(lamina_model_spec)
        check(lib.lamina_model_spec_preset(to_c(name, "name"), u32(vocab_size, "vocab_size"), ctypes.byref(c)))
        return cls(
            n_layers=c.n_layers,
            width=c.width,
            n_heads=c.n_heads,
            n_kv_heads=c.n_kv_heads,
            ffn_width=c.ffn_width,
            context_length=c.context_length,
            vocab_size=c.vocab_size,
            rope_base=_from_f32(c.rope_base),
            rms_norm_eps=_from_f32(c.rms_norm_eps),
            tied_embeddings=c.tied_embeddings,
        )

    @property
    def head_dim(self) -> int:
        """Dimensions per attention head (width / n_heads)."""
        return self.width // self.n_heads if self.n_heads else 0

    def _to_c(self) -> lamina_model_spec:
        c = lamina_model_spec()
        c.struct_size = ctypes.sizeof(lamina_model_spec)
        for name in ("n_layers", "width", "n_heads", "n_kv_heads", "ffn_width", "context_length", "vocab_size"):
            setattr(c, name, u32(getattr(self, name), name))
        c.rope_base = f32(self.rope_base, "rope_base")
        c.rms_norm_eps = f32(self.rms_norm_eps, "rms_norm_eps")
        c.tied_embeddings = _bool(self.tied_embeddings, "tied_embeddings")
        return c


def init_model(
    spec: ModelSpec,
    tokenizer_dir: PathLike,
    hf_dir: PathLike,
    gguf: Optional[PathLike] = None,
    *,
    seed: int = 0,
    std: float = 0.02,
    embeddings_from: Optional[PathLike] = None,
    progress: Optional[InitProgress] = None,
) -> Dict[str, Any]:
    """Initialise a model of shape `spec` with the tokenizer in `tokenizer_dir` (as
    :func:`train_tokenizer` writes it) and write it as a Hugging Face directory `hf_dir`
    (created: model.safetensors in f32, config.json, the tokenizer files) and, with `gguf`, as a
    GGUF file that :class:`Model` and :class:`Trainer` load (``lamina_init_model``).

    The weights are drawn from `seed` (the same seed gives the same model): embeddings and
    projections normal(0, `std`), the projections into the residual stream scaled by
    1/sqrt(2 x layers), norms 1. With `embeddings_from` (a GGUF model with the same vocabulary
    and width) the token embeddings are copied from it instead. `progress(done, total)` is
    called after each tensor written (twice per tensor with a GGUF); returning False cancels and
    returns ``{"cancelled": True}``.

    Returns ``{"spec": {...}, "n_params", "hf_files", "gguf", "embeddings_from", "cancelled":
    False}``. Raises :class:`~lamina.InvalidArgumentError` for a spec field out of range (named
    in the message), a vocab_size smaller than the tokenizer's or a bad std;
    :class:`~lamina.LaminaIOError` for a missing tokenizer.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError("spec must be a lamina.ModelSpec, not {}".format(type(spec).__name__))
    c_spec = spec._to_c()
    c_tokenizer = path_to_c(tokenizer_dir, "tokenizer_dir")
    c_hf = path_to_c(hf_dir, "hf_dir")
    c_gguf = None if gguf is None else path_to_c(gguf, "gguf")
    p = init_params(lamina_init_params, lib.lamina_init_params_init)
    p.seed = _u64(seed, "seed")
    p.std = f32(std, "std")
    c_from = None if embeddings_from is None else path_to_c(embeddings_from, "embeddings_from")
    p.embeddings_from = c_from
    state = _Progress(progress, lamina_progress_callback, lambda done, total: (done, total))
    out = ctypes.c_void_p()
    with defer_sigint() as state.interrupt:
        status = lib.lamina_init_model(
            ctypes.byref(c_spec), c_tokenizer, c_hf, c_gguf, ctypes.byref(p), state.c_callback, None, ctypes.byref(out)
        )
    state.reraise()
    check(status)
    return _report(out)


class PretrainProgress(NamedTuple):
    """What a :class:`Pretrainer` progress callback receives after every optimizer step
    (``lamina_pretrain_progress``)."""

    step: int  #: steps done (1 after the first)
    total_steps: int  #: the step the schedule ends at; 0 until a time budget's plan is made
    tokens_seen: int  #: training tokens so far (every position of the sequences)
    loss: float  #: mean next-token loss of this step (nats)
    learning_rate: float
    grad_norm: float  #: before clipping
    tokens_per_second: float
    elapsed_seconds: float
    eta_seconds: float
    val_loss: Optional[float]  #: None when no validation was computed at this step
    val_perplexity: Optional[float]  #: exp(val_loss), None likewise


#: ``progress(PretrainProgress)`` of :meth:`Pretrainer.run`: False stops the run after this
#: step; None or True go on.
PretrainProgressCallback = Callable[[PretrainProgress], Optional[bool]]

_SCHEDULES = {"cosine": 0, "linear": 1, "constant": 2}  # lamina_train_schedule
_PRETRAIN_INTS = (
    "seq_len", "batch_size", "grad_accum", "warmup_steps", "eval_every", "eval_sequences", "checkpoint_every",
    "activation_memory_mib", "n_threads",
)
_PRETRAIN_FLOATS = (
    "init_std", "learning_rate", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", "dropout", "attention_dropout",
)
_PRETRAIN_BOOLS = ("decay_norms_and_embeddings", "resume", "checkpointing")


def _optional_path(value: Optional[PathLike], name: str) -> Optional[bytes]:
    return None if value is None else path_to_c(value, name)


def _progress_of(c) -> PretrainProgress:
    val = None if math.isnan(c.val_loss) else c.val_loss
    return PretrainProgress(
        step=c.step,
        total_steps=c.total_steps,
        tokens_seen=c.tokens_seen,
        loss=c.loss,
        learning_rate=c.learning_rate,
        grad_norm=c.grad_norm,
        tokens_per_second=c.tokens_per_second,
        elapsed_seconds=c.elapsed_seconds,
        eta_seconds=c.eta_seconds,
        val_loss=val,
        val_perplexity=None if val is None else c.val_perplexity,
    )


class Pretrainer(Managed):
    """A pretraining run (``lamina_pretrainer_create``): a new model of `spec` with the tokenizer
    in `tokenizer_dir` (as :func:`train_tokenizer` writes it), or the GGUF model `init_gguf`
    (continued pretraining, with its own tokenizer), trained on the corpus directory
    `corpus_dir` (as :func:`build_corpus` writes it) and written to `output_dir`: init.gguf
    (a new model's initial weights), model.gguf (or `gguf`), log.json and loss.svg, and a
    Hugging Face directory `hf_dir` when given.

    The budget is `steps` optimizer steps, `tokens` training tokens or `seconds` of training
    and validation (at least one; the run stops at the first reached). The other options are
    the fields of ``lamina_pretrain_params``; None keeps the library's default (see
    :meth:`defaults`): `seq_len` (tokens per sequence), `batch_size`, `grad_accum`,
    `learning_rate`, `beta1`, `beta2`, `eps`, `weight_decay`, `decay_norms_and_embeddings`,
    `warmup_steps`, `schedule` ("cosine", "linear" or "constant"), `max_grad_norm`, `dropout`,
    `attention_dropout`, `eval_every`, `eval_sequences`, `checkpoint_dir`, `checkpoint_every`,
    `resume`, `seed`, `activation_memory_mib`, `checkpointing`, `n_threads`, `precision`
    ("auto", "f32", "bf16") and `init_std` (a new model's initial standard deviation).

    Everything that can be checked before the run is checked here: a bad option raises
    :class:`~lamina.InvalidArgumentError` naming it (no budget, heads that do not divide the
    width, a sequence longer than the context, a model too large for the memory); a missing
    corpus :class:`~lamina.DataError`; a missing tokenizer :class:`~lamina.LaminaIOError`; a
    missing `init_gguf` :class:`~lamina.ModelNotFoundError`.

    A pretrainer runs once (:meth:`run`). One thread at a time uses it; :meth:`cancel` may be
    called from any thread while :meth:`run` is in progress (other calls then raise
    :class:`~lamina.BusyError`).
    """

    def __init__(
        self,
        corpus_dir: PathLike,
        output_dir: PathLike,
        *,
        spec: Optional[ModelSpec] = None,
        tokenizer_dir: Optional[PathLike] = None,
        init_gguf: Optional[PathLike] = None,
        gguf: Optional[PathLike] = None,
        hf_dir: Optional[PathLike] = None,
        steps: Optional[int] = None,
        tokens: Optional[int] = None,
        seconds: Optional[float] = None,
        schedule: Optional[str] = None,
        checkpoint_dir: Optional[PathLike] = None,
        seed: Optional[int] = None,
        precision: Optional[str] = None,
        **options: Union[int, float, bool, None],
    ) -> None:
        if spec is not None and not isinstance(spec, ModelSpec):
            raise TypeError("spec must be a lamina.ModelSpec, not {}".format(type(spec).__name__))
        p = init_params(lamina_pretrain_params, lib.lamina_pretrain_params_init)
        # The bytes objects and the spec the struct points to, alive until the call returns.
        keep: List[Any] = []

        def put_path(field: str, value: Optional[PathLike]) -> None:
            c = _optional_path(value, field)
            keep.append(c)
            setattr(p, field, c)

        for field, value in (
            ("corpus_dir", corpus_dir),
            ("output_dir", output_dir),
            ("tokenizer_dir", tokenizer_dir),
            ("init_gguf", init_gguf),
            ("gguf_path", gguf),
            ("hf_dir", hf_dir),
            ("checkpoint_dir", checkpoint_dir),
        ):
            put_path(field, value)
        if spec is not None:
            c_spec = spec._to_c()
            keep.append(c_spec)
            p.spec = ctypes.pointer(c_spec)
        p.budget_steps = 0 if steps is None else _u64(steps, "steps")
        p.budget_tokens = 0 if tokens is None else _u64(tokens, "tokens")
        p.budget_seconds = 0.0 if seconds is None else f32(seconds, "seconds")
        if schedule is not None:
            if schedule not in _SCHEDULES:
                raise InvalidArgumentError(2, "unknown schedule {!r} (use {})".format(schedule, ", ".join(sorted(_SCHEDULES))))
            p.schedule = _SCHEDULES[schedule]
        if seed is not None:
            p.seed = _u64(seed, "seed")
        c_precision = opt_to_c(precision, "precision")
        p.precision = c_precision
        _set_options(p, options)
        out = ctypes.c_void_p()
        status = lib.lamina_pretrainer_create(ctypes.byref(p), ctypes.byref(out))
        if status == 0:
            self._set_handle(out.value)
        check(status)

    @staticmethod
    def defaults() -> Dict[str, Any]:
        """The library's default of every numeric option (``lamina_pretrain_params_init``)."""
        p = init_params(lamina_pretrain_params, lib.lamina_pretrain_params_init)
        names = _PRETRAIN_INTS + _PRETRAIN_FLOATS + _PRETRAIN_BOOLS + ("seed",)
        out = {name: getattr(p, name) for name in names}
        for name in _PRETRAIN_FLOATS:
            out[name] = _from_f32(out[name])
        out["schedule"] = {v: k for k, v in _SCHEDULES.items()}[p.schedule]
        return out

    def _delete(self, handle: int) -> None:
        lib.lamina_pretrainer_free(handle)

    def run(self, progress: Optional[PretrainProgressCallback] = None) -> Dict[str, Any]:
        """Run the pretraining (``lamina_pretrainer_run``) to the end of its budget and return
        :meth:`report`. `progress(PretrainProgress)` is called after every step; returning False
        stops the run after it, as do :meth:`cancel` from another thread and Ctrl-C on the main
        thread (which then raises KeyboardInterrupt once the run has stopped). A stopped run is
        not an error: its report's ``summary["cancelled"]`` is True and no trained model is
        written. An exception raised by `progress` stops the run and is re-raised here.

        Raises :class:`~lamina.InvalidArgumentError` when the pretrainer already ran or the
        training diverged (the message names the step and the last good checkpoint);
        :class:`~lamina.DataError` for a corpus with too few tokens for one sequence.
        """
        handle = self._ptr()
        errors: List[BaseException] = []
        interrupt = None  # set below: a held-back Ctrl-C stops the run

        def c_progress(c, _user_data):
            try:
                if interrupt is not None and interrupt.pending:
                    return False
                if progress is None:
                    return True
                result = progress(_progress_of(c.contents))
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                errors.append(e)
                return False

        # Always installed, so that Ctrl-C can stop a long run (see defer_sigint).
        callback = lamina_pretrain_progress_callback(c_progress)
        with defer_sigint() as interrupt:
            status = lib.lamina_pretrainer_run(handle, callback, None)
        if errors:
            raise errors[0]
        check(status)
        return self.report()

    def cancel(self) -> None:
        """Stop a :meth:`run` in progress after its current step (before the run: after its
        first step). Thread-safe; returns at once."""
        check(lib.lamina_pretrainer_cancel(self._ptr()))

    def report(self) -> Dict[str, Any]:
        """What the run did (``lamina_pretrainer_report_json``): ``{"summary": {"end",
        "cancelled", "steps", "planned_steps", "tokens_seen", "final_loss",
        "val_perplexity_before", "val_perplexity_after", "test_perplexity", "test_accuracy",
        "seconds", "gguf", "hf"}, ...}`` followed by log.json's fields ("options", "model",
        "parameters", "data", "steps", "evals", "test", "files", ...). Raises
        :class:`~lamina.InvalidArgumentError` before a run, or after one that failed."""
        out = ctypes.c_void_p()
        check(lib.lamina_pretrainer_report_json(self._ptr(), ctypes.byref(out)))
        return _report(out)

    def __repr__(self) -> str:
        return "<lamina.Pretrainer{}>".format(" (closed)" if self.closed else "")


def _set_options(p: lamina_pretrain_params, options: Dict[str, Union[int, float, bool, None]]) -> None:
    """The numeric and boolean options of :class:`Pretrainer` into `p` (None keeps the default)."""
    for name, value in options.items():
        if value is None:
            continue
        if name in _PRETRAIN_INTS:
            setattr(p, name, u32(value, name))
        elif name in _PRETRAIN_FLOATS:
            setattr(p, name, f32(value, name))
        elif name in _PRETRAIN_BOOLS:
            setattr(p, name, _bool(value, name))
        else:
            known = _PRETRAIN_INTS + _PRETRAIN_FLOATS + _PRETRAIN_BOOLS
            raise TypeError("unknown pretraining option {!r} (known: {})".format(name, ", ".join(sorted(known))))


def pretrain(
    corpus_dir: PathLike,
    output_dir: PathLike,
    *,
    progress: Optional[PretrainProgressCallback] = None,
    **options: Any,
) -> Dict[str, Any]:
    """Pretrain a model in one call: ``Pretrainer(corpus_dir, output_dir, **options).run(progress)``,
    the pretrainer freed afterwards. Returns the report (see :meth:`Pretrainer.report`)."""
    with Pretrainer(corpus_dir, output_dir, **options) as trainer:
        return trainer.run(progress)


__all__ = [
    "CorpusProgress",
    "InitProgress",
    "ModelSpec",
    "PretrainProgress",
    "PretrainProgressCallback",
    "Pretrainer",
    "build_corpus",
    "init_model",
    "pretrain",
    "train_tokenizer",
]

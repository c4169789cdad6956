"""Loading liblamina_ffi and declaring the C ABI of ``include/lamina.h`` with ctypes.

Everything here mirrors the header one to one: struct layouts, enum values and every
function's argument and result types. Handles are opaque ``void *`` (numbers the library hands
out and never reuses, not addresses: nothing here dereferences or compares them beyond
passing them back); params structs are allocated here and filled by the library's
``lamina_*_params_init(&params, sizeof params)``; strings returned through
``char **`` are received as ``void *`` so that they can be handed back to
``lamina_string_free`` after copying.
"""

import ctypes
import os
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_size_t,
    c_uint32,
    c_uint8,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, Optional

from ._error import LibraryNotFoundError

# --------------------------------------------------------------------------------------------
# Enums (C int-sized). Values are stable per the header.

# The status codes: generated from the header (see _status.py).
from ._status import *  # noqa: E402,F401,F403

LAMINA_LOG_LEVEL_DEBUG = 1
LAMINA_LOG_LEVEL_INFO = 2
LAMINA_LOG_LEVEL_WARN = 3
LAMINA_LOG_LEVEL_ERROR = 4

LAMINA_STOP_REASON_END_OF_GENERATION = 0
LAMINA_STOP_REASON_MAX_TOKENS = 1
LAMINA_STOP_REASON_STOP_STRING = 2
LAMINA_STOP_REASON_CONTEXT_FULL = 3
LAMINA_STOP_REASON_CALLBACK_STOPPED = 4
LAMINA_STOP_REASON_CANCELLED = 5

STOP_REASON_NAMES = {
    LAMINA_STOP_REASON_END_OF_GENERATION: "end_of_generation",
    LAMINA_STOP_REASON_MAX_TOKENS: "max_tokens",
    LAMINA_STOP_REASON_STOP_STRING: "stop_string",
    LAMINA_STOP_REASON_CONTEXT_FULL: "context_full",
    LAMINA_STOP_REASON_CALLBACK_STOPPED: "callback_stopped",
    LAMINA_STOP_REASON_CANCELLED: "cancelled",
}

lamina_status = c_int
lamina_log_level = c_int
lamina_stop_reason = c_int

# --------------------------------------------------------------------------------------------
# Structs, field for field as in the header.


class lamina_model_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_gpu_layers", c_uint32),
        ("use_mmap", c_bool),
        ("use_mlock", c_bool),
    ]


class lamina_session_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_ctx", c_uint32),
        ("n_batch", c_uint32),
        ("n_threads", c_uint32),
        ("n_threads_batch", c_uint32),
        ("flash_attention", c_int32),
        ("n_sequences", c_uint32),
    ]


class lamina_sampling_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_int32),
        ("seed", c_uint32),
        ("max_tokens", c_uint32),
        ("stop", POINTER(c_char_p)),  # const char *const *
        ("n_stop", c_size_t),
        ("grammar", c_char_p),
        ("json_schema", c_char_p),
    ]


class lamina_generation_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("stop_reason", lamina_stop_reason),
        ("prompt_tokens", c_uint32),
        ("reused_tokens", c_uint32),
        ("generated_tokens", c_uint32),
        ("prompt_ms", c_double),
        ("time_to_first_token_ms", c_double),
        ("generation_ms", c_double),
    ]


class lamina_bleu_score(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("score", c_double),
        ("precisions", c_double * 4),
        ("brevity_penalty", c_double),
        ("sys_len", c_uint64),
        ("ref_len", c_uint64),
        ("counts", c_uint64 * 4),
        ("totals", c_uint64 * 4),
    ]


class lamina_eval_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("limit", c_uint32),
        ("perplexity_ctx", c_uint32),
        ("source_lang", c_char_p),
        ("target_lang", c_char_p),
    ]


# Callbacks. The piece is declared as void * so that exactly `len` bytes are read.
lamina_log_callback = CFUNCTYPE(None, lamina_log_level, c_char_p, c_void_p)
lamina_token_callback = CFUNCTYPE(c_bool, c_void_p, c_size_t, c_void_p)
lamina_batch_callback = CFUNCTYPE(c_bool, c_size_t, c_void_p, c_size_t, c_void_p)
lamina_progress_callback = CFUNCTYPE(c_bool, c_size_t, c_size_t, c_void_p)

# Opaque handle types (numbers, not addresses).
lamina_model_p = c_void_p
lamina_session_p = c_void_p
lamina_adapter_p = c_void_p
_out_str = POINTER(c_void_p)  # char ** (received as void * to be freed later)
_out_handle = POINTER(c_void_p)

# name: (restype, argtypes)
PROTOTYPES = {
    "lamina_version": (c_char_p, []),
    "lamina_last_error_message": (c_char_p, []),
    "lamina_status_name": (c_char_p, [c_int32]),  # any value is safe
    "lamina_string_free": (None, [c_void_p]),
    "lamina_default_model_path": (lamina_status, [_out_str]),
    "lamina_set_log_callback": (None, [lamina_log_callback, c_void_p, c_int32]),
    "lamina_backends_load": (lamina_status, [c_char_p, _out_str]),
    "lamina_backends_json": (lamina_status, [_out_str]),
    "lamina_model_params_init": (lamina_status, [POINTER(lamina_model_params), c_size_t]),
    "lamina_model_load": (
        lamina_status,
        [c_char_p, POINTER(lamina_model_params), _out_handle],
    ),
    "lamina_model_free": (None, [lamina_model_p]),
    "lamina_model_info_json": (lamina_status, [lamina_model_p, _out_str]),
    "lamina_model_meta": (lamina_status, [lamina_model_p, c_char_p, _out_str]),
    "lamina_model_load_adapter": (lamina_status, [lamina_model_p, c_char_p, _out_handle]),
    "lamina_adapter_free": (None, [lamina_adapter_p]),
    "lamina_adapter_info": (lamina_status, [lamina_adapter_p, POINTER(c_uint32), POINTER(c_float)]),
    "lamina_session_set_adapters": (
        lamina_status,
        [lamina_session_p, POINTER(lamina_adapter_p), POINTER(c_float), c_size_t],
    ),
    "lamina_session_n_adapters": (lamina_status, [lamina_session_p, POINTER(c_size_t)]),
    "lamina_session_params_init": (lamina_status, [POINTER(lamina_session_params), c_size_t]),
    "lamina_sampling_params_init": (lamina_status, [POINTER(lamina_sampling_params), c_size_t]),
    "lamina_session_new": (
        lamina_status,
        [lamina_model_p, POINTER(lamina_session_params), _out_handle],
    ),
    "lamina_session_free": (None, [lamina_session_p]),
    "lamina_session_cancel": (lamina_status, [lamina_session_p]),
    "lamina_session_reset": (lamina_status, [lamina_session_p]),
    "lamina_session_set_system_prompt": (lamina_status, [lamina_session_p, c_char_p]),
    "lamina_session_generate_batch": (
        lamina_status,
        [
            lamina_session_p,
            POINTER(c_char_p),
            c_size_t,
            POINTER(POINTER(lamina_sampling_params)),
            lamina_batch_callback,
            c_void_p,
            POINTER(c_void_p),
            POINTER(POINTER(lamina_generation_info)),
        ],
    ),
    "lamina_session_generate": (
        lamina_status,
        [
            lamina_session_p,
            c_char_p,
            POINTER(lamina_sampling_params),
            lamina_token_callback,
            c_void_p,
            _out_str,
            POINTER(lamina_generation_info),
        ],
    ),
    "lamina_session_chat": (
        lamina_status,
        [
            lamina_session_p,
            c_char_p,
            POINTER(lamina_sampling_params),
            lamina_token_callback,
            c_void_p,
            _out_str,
            POINTER(lamina_generation_info),
        ],
    ),
    "lamina_session_translate": (
        lamina_status,
        [lamina_session_p, c_char_p, c_char_p, c_char_p, _out_str],
    ),
    "lamina_session_answer": (lamina_status, [lamina_session_p, c_char_p, c_char_p, _out_str]),
    "lamina_session_n_ctx": (lamina_status, [lamina_session_p, POINTER(c_uint32)]),
    # evaluation
    "lamina_bleu": (
        lamina_status,
        [POINTER(c_char_p), c_size_t, POINTER(c_char_p), c_size_t, POINTER(lamina_bleu_score)],
    ),
    "lamina_chrf": (
        lamina_status,
        [POINTER(c_char_p), c_size_t, POINTER(c_char_p), c_size_t, POINTER(c_double)],
    ),
    "lamina_squad_exact_match": (lamina_status, [c_char_p, POINTER(c_char_p), c_size_t, POINTER(c_double)]),
    "lamina_squad_f1": (lamina_status, [c_char_p, POINTER(c_char_p), c_size_t, POINTER(c_double)]),
    "lamina_eval_params_init": (lamina_status, [POINTER(lamina_eval_params), c_size_t]),
    "lamina_evaluate": (
        lamina_status,
        [
            lamina_session_p,
            c_char_p,
            c_char_p,
            POINTER(lamina_eval_params),
            lamina_progress_callback,
            c_void_p,
            _out_str,
        ],
    ),
}

# --------------------------------------------------------------------------------------------
# Embeddings (the "Embeddings" section of the header).

LAMINA_POOLING_MEAN = 0
LAMINA_POOLING_LAST = 1


class lamina_embedder_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("pooling", c_int32),
        ("normalize", c_bool),
        ("n_batch", c_uint32),
        ("max_texts", c_uint32),
        ("n_threads", c_uint32),
    ]


lamina_embedder_p = c_void_p

PROTOTYPES.update(
    {
        "lamina_embedder_params_init": (lamina_status, [POINTER(lamina_embedder_params), c_size_t]),
        "lamina_embedder_new": (lamina_status, [lamina_model_p, POINTER(lamina_embedder_params), _out_handle]),
        "lamina_embedder_free": (None, [lamina_embedder_p]),
        "lamina_embedder_dimensions": (lamina_status, [lamina_embedder_p, POINTER(c_size_t)]),
        "lamina_embedder_embed": (
            lamina_status,
            [lamina_embedder_p, POINTER(c_char_p), c_size_t, POINTER(c_float), c_size_t],
        ),
    }
)

# --------------------------------------------------------------------------------------------
# Saved sessions (the "Saved sessions" section of the header). Buffers are uint8_t *.

PROTOTYPES.update(
    {
        "lamina_session_save_state": (
            lamina_status,
            [lamina_session_p, POINTER(POINTER(c_uint8)), POINTER(c_size_t)],
        ),
        "lamina_session_restore_state": (lamina_status, [lamina_session_p, POINTER(c_uint8), c_size_t]),
        "lamina_session_save_state_file": (lamina_status, [lamina_session_p, c_char_p]),
        "lamina_session_restore_state_file": (lamina_status, [lamina_session_p, c_char_p]),
        "lamina_bytes_free": (None, [POINTER(c_uint8), c_size_t]),
    }
)

# --------------------------------------------------------------------------------------------
# Training from scratch (the "Training from scratch" section of the header).


class lamina_corpus_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("strip_markup", c_bool),
        ("normalization", c_char_p),
        ("lowercase", c_bool),
        ("strip_control", c_bool),
        ("normalize_whitespace", c_bool),
        ("dedup_documents", c_bool),
        ("near_dedup", c_bool),
        ("near_dedup_threshold", c_double),
        ("dedup_lines", c_bool),
        ("min_line_chars", c_size_t),
        ("min_chars", c_size_t),
        ("max_chars", c_size_t),
        ("min_words", c_size_t),
        ("train_fraction", c_double),
        ("validation_fraction", c_double),
        ("test_fraction", c_double),
        ("seed", c_uint64),
    ]


class lamina_tokenizer_train_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("vocab_size", c_uint32),
        ("min_frequency", c_uint64),
        ("bos_token", c_char_p),
        ("eos_token", c_char_p),
        ("pad_token", c_char_p),
        ("special_tokens", POINTER(c_char_p)),  # const char *const *
        ("n_special_tokens", c_size_t),
        ("chat_template", c_char_p),
        ("add_bos_token", c_bool),
    ]


class lamina_model_spec(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_layers", c_uint32),
        ("width", c_uint32),
        ("n_heads", c_uint32),
        ("n_kv_heads", c_uint32),
        ("ffn_width", c_uint32),
        ("context_length", c_uint32),
        ("rope_base", c_float),
        ("rms_norm_eps", c_float),
        ("tied_embeddings", c_bool),
        ("vocab_size", c_uint32),
    ]


class lamina_init_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("seed", c_uint64),
        ("std", c_float),
        ("embeddings_from", c_char_p),
    ]


# The stage name arrives as bytes (c_char_p), valid during the callback only.
lamina_corpus_progress_callback = CFUNCTYPE(c_bool, c_char_p, c_size_t, c_size_t, c_void_p)

PROTOTYPES.update(
    {
        "lamina_corpus_params_init": (lamina_status, [POINTER(lamina_corpus_params), c_size_t]),
        "lamina_corpus_build": (
            lamina_status,
            [
                POINTER(c_char_p),
                c_size_t,
                c_char_p,
                POINTER(lamina_corpus_params),
                lamina_corpus_progress_callback,
                c_void_p,
                _out_str,
            ],
        ),
        "lamina_tokenizer_train_params_init": (lamina_status, [POINTER(lamina_tokenizer_train_params), c_size_t]),
        "lamina_tokenizer_train": (
            lamina_status,
            [POINTER(c_char_p), c_size_t, c_char_p, POINTER(lamina_tokenizer_train_params), _out_str],
        ),
        "lamina_model_spec_preset": (lamina_status, [c_char_p, c_uint32, POINTER(lamina_model_spec)]),
        "lamina_init_params_init": (lamina_status, [POINTER(lamina_init_params), c_size_t]),
        "lamina_init_model": (
            lamina_status,
            [
                POINTER(lamina_model_spec),
                c_char_p,
                c_char_p,
                c_char_p,
                POINTER(lamina_init_params),
                lamina_progress_callback,
                c_void_p,
                _out_str,
            ],
        ),
    }
)

# --------------------------------------------------------------------------------------------
# Discovery.


class lamina_pretrain_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("corpus_dir", c_char_p),
        ("output_dir", c_char_p),
        ("spec", POINTER(lamina_model_spec)),  # const lamina_model_spec *
        ("tokenizer_dir", c_char_p),
        ("init_std", c_float),
        ("init_gguf", c_char_p),
        ("gguf_path", c_char_p),
        ("hf_dir", c_char_p),
        ("seq_len", c_uint32),
        ("batch_size", c_uint32),
        ("grad_accum", c_uint32),
        ("learning_rate", c_float),
        ("beta1", c_float),
        ("beta2", c_float),
        ("eps", c_float),
        ("weight_decay", c_float),
        ("decay_norms_and_embeddings", c_bool),
        ("warmup_steps", c_uint32),
        ("schedule", c_int32),
        ("max_grad_norm", c_float),
        ("dropout", c_float),
        ("attention_dropout", c_float),
        ("budget_steps", c_uint64),
        ("budget_tokens", c_uint64),
        ("budget_seconds", c_double),
        ("eval_every", c_uint32),
        ("eval_sequences", c_uint32),
        ("checkpoint_dir", c_char_p),
        ("checkpoint_every", c_uint32),
        ("resume", c_bool),
        ("seed", c_uint64),
        ("activation_memory_mib", c_uint32),
        ("checkpointing", c_bool),
        ("n_threads", c_uint32),
        ("precision", c_char_p),
    ]


class lamina_pretrain_progress(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("step", c_uint64),
        ("total_steps", c_uint64),
        ("tokens_seen", c_uint64),
        ("loss", c_double),
        ("learning_rate", c_double),
        ("grad_norm", c_double),
        ("tokens_per_second", c_double),
        ("elapsed_seconds", c_double),
        ("eta_seconds", c_double),
        ("val_loss", c_double),
        ("val_perplexity", c_double),
    ]


lamina_pretrain_progress_callback = CFUNCTYPE(c_bool, POINTER(lamina_pretrain_progress), c_void_p)
lamina_pretrainer_p = c_void_p

PROTOTYPES.update(
    {
        "lamina_pretrain_params_init": (lamina_status, [POINTER(lamina_pretrain_params), c_size_t]),
        "lamina_pretrainer_create": (lamina_status, [POINTER(lamina_pretrain_params), _out_handle]),
        "lamina_pretrainer_run": (lamina_status, [lamina_pretrainer_p, lamina_pretrain_progress_callback, c_void_p]),
        "lamina_pretrainer_cancel": (lamina_status, [lamina_pretrainer_p]),
        "lamina_pretrainer_report_json": (lamina_status, [lamina_pretrainer_p, _out_str]),
        "lamina_pretrainer_free": (None, [lamina_pretrainer_p]),
    }
)


def _library_names() -> List[str]:
    if sys.platform == "win32":
        return ["lamina_ffi.dll"]
    if sys.platform == "darwin":
        return ["liblamina_ffi.dylib"]
    return ["liblamina_ffi.so"]


def _candidates_in(target_dir: Path, profiles=("release", "debug")) -> List[Path]:
    return [target_dir / profile / name for profile in profiles for name in _library_names()]


def _bundled_dir() -> Path:
    """Where an installed package carries its own copy of the library and of llama.cpp's
    (``pip install`` from a checkout puts them there; see setup.py). Absent in a checkout."""
    return Path(__file__).resolve().parent / "_native"


def find_library() -> str:
    """The path of the lamina shared library, or raise :class:`LibraryNotFoundError`.

    Order: the copy bundled in the installed package (``lamina/_native/``); ``$LAMINA_LIBRARY``;
    ``target/release`` then ``target/debug`` of the package directory or its nearest ancestor
    that has one; ``$CARGO_TARGET_DIR/{release,debug}``. The bundled copy comes first so that
    an installed package always runs the library it was built and tested with.
    """
    bundled = _bundled_dir()
    for name in _library_names():
        if (bundled / name).is_file():
            return str(bundled / name)

    tried = []
    explicit = os.environ.get("LAMINA_LIBRARY")
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise LibraryNotFoundError(
            "LAMINA_LIBRARY is set to {!r}, but no such file exists. Point it at "
            "liblamina_ffi.so / liblamina_ffi.dylib / lamina_ffi.dll, or unset it to search "
            "the Cargo target directory.".format(explicit)
        )

    here = Path(__file__).resolve().parent
    for directory in (here,) + tuple(here.parents):
        for candidate in _candidates_in(directory / "target"):
            tried.append(str(candidate))
            if candidate.is_file():
                return str(candidate)

    cargo_target = os.environ.get("CARGO_TARGET_DIR")
    if cargo_target:
        for candidate in _candidates_in(Path(cargo_target)):
            tried.append(str(candidate))
            if candidate.is_file():
                return str(candidate)

    raise LibraryNotFoundError(
        "could not find the lamina shared library ({}). Install the package from a lamina "
        "checkout with `pip install ./bindings/python`, which bundles the library; or build it "
        "with `cargo build --release -p lamina-ffi` in the lamina repository (it lands in "
        "target/release/), or set the environment variable LAMINA_LIBRARY to its full path. "
        "Searched: {} (no bundled copy), $LAMINA_LIBRARY (unset), target/{{release,debug}} "
        "above {}{}.".format(
            " / ".join(_library_names()),
            bundled,
            here,
            ", $CARGO_TARGET_DIR/{release,debug}" if cargo_target else ", $CARGO_TARGET_DIR (unset)",
        )
    )


def load(path: Optional[str] = None) -> ctypes.CDLL:
    """Load the library and declare every function of the header on it."""
    path = path or find_library()
    try:
        dll = ctypes.CDLL(path)
    except OSError as e:
        raise LibraryNotFoundError("could not load the lamina library {!r}: {}".format(path, e)) from e
    missing = []
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(dll, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise LibraryNotFoundError(
            "{!r} is not a compatible lamina library: missing {}".format(path, ", ".join(missing))
        )
    dll._lamina_path = path
    return dll


lib = load()
path = lib._lamina_path

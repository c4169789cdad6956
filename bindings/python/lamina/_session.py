"""Session: a context (KV cache) and chat history over a Model."""

import ctypes
import dataclasses
import json
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, Iterable, List, Mapping, Optional, Union

from ._lib import (
    STOP_REASON_NAMES,
    lamina_batch_callback,
    lamina_eval_params,
    lamina_generation_info,
    lamina_progress_callback,
    lamina_sampling_params,
    lamina_session_params,
    lamina_token_callback,
    lib,
)
from ._managed import Managed
from ._model import Model
from ._util import check, defer_sigint, f32, i32, init_params, opt_to_c, path_to_c, take_string, to_c, u32

StrOrBytes = Union[str, bytes]
TokenCallback = Callable[[str], Optional[bool]]
ProgressCallback = Callable[[int, int], Optional[bool]]

_PIECE, _DONE, _ERROR = "piece", "done", "error"


@dataclass(frozen=True)
class Generation:
    """The result of :meth:`Session.generate` / :meth:`Session.chat`.

    ``stop_reason`` is one of "end_of_generation", "max_tokens", "stop_string",
    "context_full", "callback_stopped", "cancelled".
    """

    text: str
    stop_reason: str
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    prompt_ms: float
    time_to_first_token_ms: float
    generation_ms: float

    def __str__(self) -> str:
        return self.text


def _sampling(
    *,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    repeat_last_n: int = 64,
    seed: int = 0,
    stop: Union[None, StrOrBytes, Iterable[StrOrBytes]] = None,
    grammar: Optional[StrOrBytes] = None,
    json_schema: Union[None, StrOrBytes, Mapping[str, Any]] = None,
):
    """Build a lamina_sampling_params; returns (params, objects to keep alive for the call)."""
    p = init_params(lamina_sampling_params, lib.lamina_sampling_params_init)
    p.max_tokens = u32(max_tokens, "max_tokens")
    p.temperature = f32(temperature, "temperature")
    p.top_k = i32(top_k, "top_k")
    p.top_p = f32(top_p, "top_p")
    p.min_p = f32(min_p, "min_p")
    p.repeat_penalty = f32(repeat_penalty, "repeat_penalty")
    p.repeat_last_n = i32(repeat_last_n, "repeat_last_n")
    p.seed = u32(seed, "seed")
    keep: List[Any] = []
    if grammar is not None:
        p.grammar = to_c(grammar, "grammar")
        keep.append(p.grammar)
    if json_schema is not None:
        if isinstance(json_schema, Mapping):
            json_schema = json.dumps(json_schema)
        p.json_schema = to_c(json_schema, "json_schema")
        keep.append(p.json_schema)
    if stop is not None:
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        items: List[bytes] = [to_c(s, "stop") for s in stop]
        if items:
            array = (ctypes.c_char_p * len(items))(*items)
            p.stop = ctypes.cast(array, ctypes.POINTER(ctypes.c_char_p))
            p.n_stop = len(items)
            keep.append((array, items))
    return p, keep


def _generation(text: str, info: lamina_generation_info) -> Generation:
    return Generation(
        text=text,
        stop_reason=STOP_REASON_NAMES.get(info.stop_reason, "unknown({})".format(info.stop_reason)),
        prompt_tokens=info.prompt_tokens,
        reused_tokens=info.reused_tokens,
        generated_tokens=info.generated_tokens,
        prompt_ms=info.prompt_ms,
        time_to_first_token_ms=info.time_to_first_token_ms,
        generation_ms=info.generation_ms,
    )


class _StreamState:
    """Shared between a stream's consumer (the generator) and its worker thread."""

    __slots__ = ("stop", "result", "error")

    def __init__(self) -> None:
        # The consumer is gone (or the session is closing): the worker's token callback
        # stops the generation at its next piece.
        self.stop = False
        self.result: Optional[Generation] = None
        self.error: Optional[BaseException] = None


class Session(Managed):
    """One context (KV cache) and chat history over a :class:`Model`.

    Use a session from one thread at a time (a concurrent call raises LaminaError with
    LAMINA_STATUS_ERROR_BUSY); :meth:`cancel` may be called from any thread. Several sessions
    over one model may generate concurrently.

    Args:
        model: the model to run.
        n_ctx: context window in tokens; 0 = min(4096, the model's training context).
        n_batch: most tokens per decode call (long prompts are fed in chunks of this size).
        n_threads: threads for generation; 0 = all cores.
        n_threads_batch: threads for prompt processing; 0 = same as n_threads.
        flash_attention: None = where every device supports it (llama.cpp's default),
            True = on, False = off.
        n_sequences: most prompts :meth:`generate_batch` decodes together (1..256); each
            gets its own n_ctx tokens of cache.
    """

    def __init__(
        self,
        model: Model,
        *,
        n_ctx: int = 0,
        n_batch: int = 512,
        n_threads: int = 0,
        n_threads_batch: int = 0,
        flash_attention: Optional[bool] = None,
        n_sequences: int = 1,
    ):
        if not isinstance(model, Model):
            raise TypeError("model must be a lamina.Model, not {}".format(type(model).__name__))
        params = init_params(lamina_session_params, lib.lamina_session_params_init)
        params.n_ctx = u32(n_ctx, "n_ctx")
        params.n_batch = u32(n_batch, "n_batch")
        params.n_threads = u32(n_threads, "n_threads")
        params.n_threads_batch = u32(n_threads_batch, "n_threads_batch")
        if flash_attention is not None and not isinstance(flash_attention, bool):
            raise TypeError("flash_attention must be None, True or False")
        params.flash_attention = -1 if flash_attention is None else int(flash_attention)
        params.n_sequences = u32(n_sequences, "n_sequences")
        # The C library keeps the model alive while the session exists; the reference here
        # keeps the Python object (and with it the loaded library) around as well.
        self._model = model
        self._streams = set()  # _StreamState of streams that have not finished
        self._streams_lock = threading.Lock()
        #: The Generation of the last finished generate/chat/stream on this session.
        self.last_generation: Optional[Generation] = None
        out = ctypes.c_void_p()
        with defer_sigint():
            status = lib.lamina_session_new(model._ptr(), ctypes.byref(params), ctypes.byref(out))
            if status == 0:
                self._set_handle(out.value)  # owned (and freed) even if Ctrl-C is raised now
        check(status)

    # -- lifetime -------------------------------------------------------------------------

    def _delete(self, handle: int) -> None:
        lib.lamina_session_free(handle)

    def _before_close(self) -> None:
        # Runs under the close lock with the handle still live: stop running streams. The
        # library destroys the session only when their call returns.
        with self._streams_lock:
            streams = list(self._streams)
        for st in streams:
            st.stop = True
        if streams:
            lib.lamina_session_cancel(self._handle)

    @property
    def model(self) -> Model:
        return self._model

    @property
    def n_ctx(self) -> int:
        """The context window in tokens (the requested ``n_ctx``, or the default), the limit
        that prompt plus generated text must fit in."""
        out = ctypes.c_uint32()
        check(lib.lamina_session_n_ctx(self._ptr(), ctypes.byref(out)))
        return out.value

    def __repr__(self) -> str:
        return "<lamina.Session ({})>".format("closed" if self.closed else "open")

    # -- control ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the generation running on this session (from any thread): it returns with
        stop_reason "cancelled", within milliseconds on the CPU even in the middle of a long
        prompt (last_generation.prompt_ms then counts the time spent). When nothing runs
        this does nothing, so a cancel never affects a later generation. A no-op on a closed
        session."""
        check(self._send_cancel())

    def _send_cancel(self) -> int:
        """lamina_session_cancel, under the close lock so that a closed session is never
        passed; a closed session gives LAMINA_STATUS_OK (0)."""
        lock = self._close_lock
        if lock is None:
            return 0
        with lock:
            handle = self._handle
            if handle is None:
                return 0
            return lib.lamina_session_cancel(handle)

    def set_adapters(self, adapters) -> None:
        """Apply LoRA adapters: a sequence of :class:`Adapter` or ``(Adapter, scale)`` pairs
        (scale 1 when omitted; 0 ignores an adapter); an empty sequence returns to the base
        model. When the set changes the KV cache is cleared; the chat history is kept.
        Raises InvalidArgumentError for an adapter of another model, the same adapter twice
        or a non-finite scale; the session then keeps its previous adapters."""
        from ._adapter import Adapter

        pairs = []
        for item in adapters:
            if isinstance(item, Adapter):
                adapter, scale = item, 1.0
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                adapter, scale = item
            else:
                raise TypeError("expected an Adapter or an (Adapter, scale) pair, not {!r}".format(item))
            if not isinstance(adapter, Adapter):
                raise TypeError("expected a lamina.Adapter, not {}".format(type(adapter).__name__))
            pairs.append((adapter, float(scale)))
        n = len(pairs)
        handles = (ctypes.c_void_p * max(n, 1))(*[a._ptr() for a, _ in pairs])
        scales = (ctypes.c_float * max(n, 1))(*[s for _, s in pairs])
        check(lib.lamina_session_set_adapters(self._ptr(), handles, scales, n))
        self._adapters = list(pairs)

    @property
    def adapters(self):
        """The ``(Adapter, scale)`` pairs last given to :meth:`set_adapters`."""
        return list(getattr(self, "_adapters", []))

    def reset(self) -> None:
        """Clear the chat history and the KV cache."""
        check(lib.lamina_session_reset(self._ptr()))

    def set_system_prompt(self, text: Optional[StrOrBytes]) -> None:
        """Set the chat's system prompt, or remove it with None. The history is kept."""
        check(lib.lamina_session_set_system_prompt(self._ptr(), opt_to_c(text, "system_prompt")))

    # -- saved state ------------------------------------------------------------------------

    def save_state(self) -> bytes:
        """This session's state: the KV cache of its conversation, the chat history and the
        adapters in use. :meth:`restore_state` puts it into a session over the same model,
        which then continues without processing the conversation again (under greedy
        decoding, exactly as this one would)."""
        data = ctypes.POINTER(ctypes.c_uint8)()
        length = ctypes.c_size_t()
        check(lib.lamina_session_save_state(self._ptr(), ctypes.byref(data), ctypes.byref(length)))
        try:
            return ctypes.string_at(data, length.value)
        finally:
            lib.lamina_bytes_free(data, length.value)

    def restore_state(self, state: bytes) -> None:
        """Replace the conversation with a saved state (see :meth:`save_state`); its adapters
        are loaded from their files when this session does not already have them (the
        :attr:`adapters` property lists only what :meth:`set_adapters` was given). A corrupted
        state, or one of another model, raises InvalidArgumentError saying which, and leaves
        the session empty."""
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state) if state else None
        check(lib.lamina_session_restore_state(self._ptr(), buf, len(state)))

    def save_state_file(self, path) -> None:
        """:meth:`save_state` into a file, written atomically."""
        check(lib.lamina_session_save_state_file(self._ptr(), path_to_c(path)))

    def restore_state_file(self, path) -> None:
        """:meth:`restore_state` from a file written by :meth:`save_state_file`."""
        check(lib.lamina_session_restore_state_file(self._ptr(), path_to_c(path)))

    # -- generation -------------------------------------------------------------------------

    def _call(self, fn, text: bytes, sampling, on_piece: Optional[TokenCallback]) -> Generation:
        """Run lamina_session_generate/chat. Exceptions from `on_piece` are re-raised here."""
        handle = self._ptr()
        params, _keep_alive = sampling
        errors: List[BaseException] = []
        interrupt = None  # set below: a held-back Ctrl-C stops the generation

        def c_callback(piece, length, _user_data):
            try:
                if interrupt is not None and interrupt.pending:
                    return False
                if on_piece is None:
                    return True
                result = on_piece(ctypes.string_at(piece, length).decode("utf-8", "replace"))
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                errors.append(e)
                return False

        # A callback is always installed, so that a Ctrl-C on the main thread stops a long
        # generation (see defer_sigint) even without on_token.
        callback = lamina_token_callback(c_callback)
        out = ctypes.c_void_p()
        info = lamina_generation_info()
        info.struct_size = ctypes.sizeof(lamina_generation_info)
        generation = None
        with defer_sigint() as interrupt:
            status = fn(handle, text, ctypes.byref(params), callback, None, ctypes.byref(out), ctypes.byref(info))
            if status == 0:
                generation = _generation(take_string(out), info)
                self.last_generation = generation
        if errors:  # the callback failed: that is the cause of whatever happened next
            raise errors[0]
        check(status)
        return generation

    def generate_batch(
        self,
        prompts: Iterable[StrOrBytes],
        sampling: Union[None, Dict[str, Any], Iterable[Optional[Dict[str, Any]]]] = None,
        *,
        on_token: Optional[Callable[[int, str], Optional[bool]]] = None,
    ) -> List[Generation]:
        """Continue several prompts at once, each in its own sequence, all advancing in one
        llama.cpp batch per step; returns their Generations in order. With greedy sampling
        each text equals :meth:`generate`'s for that prompt alone.

        `sampling` is None (defaults), one dict of sampling keywords (as for :meth:`generate`)
        for every prompt, or a list with one dict (or None) per prompt. `on_token(index,
        piece)` streams; returning False stops that prompt only (stop_reason
        "callback_stopped"); an exception it raises stops the batch and is re-raised here.
        The session needs ``n_sequences >= len(prompts)``; the KV cache is cleared before
        and after (a chat history is kept). :meth:`cancel` stops every sequence.
        """
        texts = [to_c(p, "prompts[{}]".format(i)) for i, p in enumerate(prompts)]
        n = len(texts)
        if isinstance(sampling, dict) or sampling is None:
            per_prompt = [sampling or {}] * n
        else:
            per_prompt = [s or {} for s in sampling]
            if len(per_prompt) != n:
                raise ValueError("sampling has {} entries for {} prompts".format(len(per_prompt), n))
        built = [_sampling(**kw) for kw in per_prompt]
        handle = self._ptr()
        c_prompts = (ctypes.c_char_p * max(n, 1))(*texts)
        c_sampling = (ctypes.POINTER(lamina_sampling_params) * max(n, 1))(*[ctypes.pointer(p) for p, _ in built])
        infos = [lamina_generation_info() for _ in range(n)]
        for info in infos:
            info.struct_size = ctypes.sizeof(lamina_generation_info)
        c_infos = (ctypes.POINTER(lamina_generation_info) * max(n, 1))(*[ctypes.pointer(i) for i in infos])
        c_texts = (ctypes.c_void_p * max(n, 1))()
        errors: List[BaseException] = []
        interrupt = None

        def c_callback(index, piece, length, _user_data):
            try:
                if interrupt is not None and interrupt.pending:
                    return False
                if on_token is None:
                    return True
                result = on_token(index, ctypes.string_at(piece, length).decode("utf-8", "replace"))
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                errors.append(e)
                self._send_cancel()
                return False

        callback = lamina_batch_callback(c_callback)
        generations: List[Generation] = []
        with defer_sigint() as interrupt:
            status = lib.lamina_session_generate_batch(handle, c_prompts, n, c_sampling, callback, None, c_texts, c_infos)
            if status == 0:
                generations = [
                    _generation(take_string(ctypes.c_void_p(c_texts[i])), info) for i, info in enumerate(infos)
                ]
        if errors:
            raise errors[0]
        check(status)
        return generations

    def _run(self, fn, text: StrOrBytes, name: str, sampling, on_token: Optional[TokenCallback]) -> Generation:
        """generate/chat: convert the text and run `fn` to the end (`sampling`: _sampling's)."""
        return self._call(fn, to_c(text, name), sampling, on_token)

    # The sampling keywords of generate, chat, stream and chat_stream are spelled out in each
    # signature (the same names, types and defaults as _sampling's, which a test checks) so
    # that type checkers and IDEs see them.

    def generate(
        self,
        prompt: StrOrBytes,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[None, StrOrBytes, Iterable[StrOrBytes]] = None,
        grammar: Optional[StrOrBytes] = None,
        json_schema: Union[None, StrOrBytes, Mapping[str, Any]] = None,
        on_token: Optional[TokenCallback] = None,
    ) -> Generation:
        """Continue `prompt` (raw text, no chat template).

        Sampling keywords (of generate, chat, stream and chat_stream): ``max_tokens=256,
        temperature=0.0`` (greedy), ``top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0,
        repeat_last_n=64, seed=0, stop=None`` (a string or strings; the generation ends before
        the first of them, which is not part of the text), ``grammar=None`` (a GBNF grammar,
        start rule ``root``) or ``json_schema=None`` (a JSON schema, as a dict or its JSON
        text): structured output, the text follows the grammar or is one JSON value the
        schema accepts.

        `on_token(piece)` is called with each piece of text as it is generated; returning
        False stops (stop_reason "callback_stopped"); an exception it raises stops the
        generation and is re-raised here.
        """
        sampling = _sampling(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            repeat_last_n=repeat_last_n,
            seed=seed,
            stop=stop,
            grammar=grammar,
            json_schema=json_schema,
        )
        return self._run(lib.lamina_session_generate, prompt, "prompt", sampling, on_token)

    def chat(
        self,
        message: StrOrBytes,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[None, StrOrBytes, Iterable[StrOrBytes]] = None,
        grammar: Optional[StrOrBytes] = None,
        json_schema: Union[None, StrOrBytes, Mapping[str, Any]] = None,
        on_token: Optional[TokenCallback] = None,
    ) -> Generation:
        """One chat turn: add `message` to the history, generate the reply (reusing the KV
        cache for the conversation so far) and add it to the history. A cancelled turn
        leaves the history unchanged. Keywords as for :meth:`generate`."""
        sampling = _sampling(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            repeat_last_n=repeat_last_n,
            seed=seed,
            stop=stop,
            grammar=grammar,
            json_schema=json_schema,
        )
        return self._run(lib.lamina_session_chat, message, "message", sampling, on_token)

    def stream(
        self,
        prompt: StrOrBytes,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[None, StrOrBytes, Iterable[StrOrBytes]] = None,
        grammar: Optional[StrOrBytes] = None,
        json_schema: Union[None, StrOrBytes, Mapping[str, Any]] = None,
    ) -> Generator[str, None, Generation]:
        """Like :meth:`generate`, as a generator of text pieces.

        Generation runs in a background thread. Leaving the loop early (``break``, closing
        the generator, or dropping it) stops the generation (stop_reason "cancelled") and
        waits for it to end, so the session is free again afterwards. Errors are raised in
        the consumer. The generator's return value (and ``session.last_generation``) is the
        Generation.
        """
        sampling = _sampling(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            repeat_last_n=repeat_last_n,
            seed=seed,
            stop=stop,
            grammar=grammar,
            json_schema=json_schema,
        )
        return self._stream(lib.lamina_session_generate, prompt, "prompt", sampling)

    def chat_stream(
        self,
        message: StrOrBytes,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        repeat_last_n: int = 64,
        seed: int = 0,
        stop: Union[None, StrOrBytes, Iterable[StrOrBytes]] = None,
        grammar: Optional[StrOrBytes] = None,
        json_schema: Union[None, StrOrBytes, Mapping[str, Any]] = None,
    ) -> Generator[str, None, Generation]:
        """Like :meth:`chat`, as a generator of text pieces (see :meth:`stream`)."""
        sampling = _sampling(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            repeat_last_n=repeat_last_n,
            seed=seed,
            stop=stop,
            grammar=grammar,
            json_schema=json_schema,
        )
        return self._stream(lib.lamina_session_chat, message, "message", sampling)

    def _stream(self, fn, text: StrOrBytes, name: str, sampling) -> Generator[str, None, Generation]:
        """stream/chat_stream: convert the text and check the session now, not at the first
        next() (`sampling`: _sampling's)."""
        c_text = to_c(text, name)
        self._ptr()
        return self._stream_gen(fn, c_text, sampling)

    def _stream_gen(self, fn, text: bytes, sampling) -> Generator[str, None, Generation]:
        pieces: "queue.SimpleQueue" = queue.SimpleQueue()
        st = _StreamState()

        def on_piece(piece: str) -> bool:
            if st.stop:
                # The stream was closed. This also stops a generation that the cancel missed
                # because the worker had not entered the C call yet.
                return False
            pieces.put((_PIECE, piece))
            return True

        def worker() -> None:
            try:
                result = self._call(fn, text, sampling, on_piece)
                if st.stop and result.stop_reason == "callback_stopped":
                    # on_piece stopped it for the closed stream: that is a cancel.
                    result = dataclasses.replace(result, stop_reason="cancelled")
                    self.last_generation = result
                st.result = result
                pieces.put((_DONE, result))
            except BaseException as e:
                st.error = e
                pieces.put((_ERROR, e))

        thread = threading.Thread(target=worker, name="lamina-stream", daemon=True)
        with self._streams_lock:
            self._streams.add(st)
        finished = False
        try:
            thread.start()
            while True:
                kind, value = pieces.get()
                if kind is _PIECE:
                    yield value
                    continue
                finished = True
                thread.join()  # it is exiting: leave no thread behind
                if kind is _DONE:
                    return value
                raise value
        finally:
            if not finished:
                self._stop_stream(st, thread)
            with self._streams_lock:
                self._streams.discard(st)

    def _stop_stream(self, st: _StreamState, thread: threading.Thread) -> None:
        """The consumer left early: stop the generation and wait for the worker."""
        # First the flag, then the cancel: a worker inside the C call stops within one decode
        # step, and one that has not got there yet stops at its first piece.
        st.stop = True
        self._send_cancel()
        if thread.ident is None:  # never started
            return
        if thread is not threading.current_thread():
            thread.join()

    # -- tasks ------------------------------------------------------------------------------

    def _task(self, fn, handle: int, args) -> str:
        """Run lamina_session_translate/lamina_session_answer and return its text."""
        out = ctypes.c_void_p()
        with defer_sigint():
            status = fn(handle, *args, ctypes.byref(out))
            result = take_string(out)
        check(status)
        return result

    def translate(self, text: StrOrBytes, from_lang: StrOrBytes, to_lang: StrOrBytes) -> str:
        """Translate `text` between languages (ISO 639-1 codes such as "en", "de", "fr", or
        English names). Greedy; the chat history is not changed."""
        handle = self._ptr()
        args = (to_c(text, "text"), to_c(from_lang, "from_lang"), to_c(to_lang, "to_lang"))
        return self._task(lib.lamina_session_translate, handle, args)

    def answer(self, question: StrOrBytes, context: Optional[StrOrBytes] = None) -> str:
        """A short answer to `question`, taken from `context` when given. Greedy; the chat
        history is not changed."""
        handle = self._ptr()
        args = (to_c(question, "question"), opt_to_c(context, "context"))
        return self._task(lib.lamina_session_answer, handle, args)

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(
        self,
        task: str,
        data_path,
        *,
        limit: int = 0,
        perplexity_ctx: int = 0,
        source_lang: Optional[StrOrBytes] = None,
        target_lang: Optional[StrOrBytes] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Dict[str, Any]:
        """Evaluate the model on a data set (``lamina_evaluate``) and return the report.

        `task` is "perplexity" (plain UTF-8 text; metrics "ppl", "ppl_stderr", "mean_nll"),
        "qa" (JSONL ``{"question", "answers": [...], "context"?}``; "exact_match", "f1"),
        "translate" (JSONL ``{"source", "reference" | "references": [...], "source_lang"?,
        "target_lang"?}``; "bleu", "chrf", ...) or "choice" (JSONL ``{"question", "choices":
        [...], "label": int}``; "accuracy", "accuracy_norm"). Scores are percentages, except
        perplexity's.

        `limit` evaluates only the first N examples (0 = all); `perplexity_ctx` is the
        perplexity chunk size in tokens (0 = 512); `source_lang`/`target_lang` apply to
        translation records that do not name their languages.

        `on_progress(done, total)` is called before the first example, after each one and at
        the end; returning False stops the evaluation: the report then has ``"cancelled":
        True`` and covers the examples done. An exception it raises stops the evaluation and
        is re-raised here. Ctrl-C on the main thread stops it too (and then raises
        KeyboardInterrupt).

        Returns the parsed JSON report: ``{"task", "metrics": {name: value}, "evaluated",
        "total", "cancelled", "seconds", "predictions": [...]}``. A malformed or missing data
        file raises :class:`~lamina.DataError` (LAMINA_STATUS_ERROR_DATA) naming the file and
        line; an unknown task raises :class:`~lamina.InvalidArgumentError`.
        """
        handle = self._ptr()
        c_task = to_c(task, "task")
        c_path = path_to_c(data_path, "data_path")
        params = init_params(lamina_eval_params, lib.lamina_eval_params_init)
        params.limit = u32(limit, "limit")
        params.perplexity_ctx = u32(perplexity_ctx, "perplexity_ctx")
        params.source_lang = opt_to_c(source_lang, "source_lang")
        params.target_lang = opt_to_c(target_lang, "target_lang")
        errors: List[BaseException] = []
        interrupt = None  # set below: a held-back Ctrl-C stops the evaluation

        def c_progress(done, total, _user_data):
            try:
                if interrupt is not None and interrupt.pending:
                    return False
                if on_progress is None:
                    return True
                result = on_progress(done, total)
                return result is None or bool(result)
            except BaseException as e:  # must not cross the C boundary
                errors.append(e)
                return False

        # Always installed, so that Ctrl-C can stop a long evaluation (see defer_sigint).
        callback = lamina_progress_callback(c_progress)
        out = ctypes.c_void_p()
        with defer_sigint() as interrupt:
            status = lib.lamina_evaluate(handle, c_task, c_path, ctypes.byref(params), callback, None, ctypes.byref(out))
            report = take_string(out) if status == 0 else None
        if errors:
            raise errors[0]
        check(status)
        return json.loads(report)

"""Tests of the Python binding against the real library and the default model.

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import ctypes
import gc
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
REPO = PYTHON_DIR.parent.parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(PYTHON_DIR))

import lamina  # noqa: E402
from lamina import LaminaError  # noqa: E402

# What a child interpreter puts first on sys.path to import the same package as this one.
PACKAGE_PARENT = str(Path(lamina.__file__).resolve().parent.parent)

PROMPT = "The capital of France is"
# One thread per session: robust when the machine's two cores are busy with other work
# (llama.cpp's spinning worker threads degrade badly when oversubscribed).
SESSION_KW = dict(n_ctx=512, n_threads=1)


def stream_threads():
    return [t for t in threading.enumerate() if t.name == "lamina-stream" and t.is_alive()]


# `model`: the shared fixture of conftest.py.


@pytest.fixture
def session(model):
    with model.session(**SESSION_KW) as s:
        yield s
    assert not stream_threads(), "a stream worker thread outlived its test"


def assert_status(excinfo, name):
    err = excinfo.value
    assert isinstance(err, LaminaError)
    assert err.status_name == "LAMINA_STATUS_" + name, repr(err)
    assert err.status == getattr(lamina, "STATUS_" + name)
    assert isinstance(err.message, str) and err.message, "no error message"


def assert_still_works(session):
    g = session.generate(PROMPT, max_tokens=3)
    assert g.stop_reason == "max_tokens"
    assert "Paris" in g.text


# -- library and model ----------------------------------------------------------------------


def test_version_matches_header():
    header = (REPO / "include" / "lamina.h").read_text()
    m = re.search(r'#define\s+LAMINA_VERSION_STRING\s+"([^"]+)"', header)
    assert m, "LAMINA_VERSION_STRING not found in include/lamina.h"
    assert lamina.version() == m.group(1)
    assert lamina.__version__ == m.group(1)


def test_library_discovery():
    path = Path(lamina.library_path)
    assert path.is_file()
    assert path.name in ("liblamina_ffi.so", "liblamina_ffi.dylib", "lamina_ffi.dll")
    env = dict(os.environ, LAMINA_LIBRARY=str(REPO / "no" / "such" / "liblamina_ffi.so"))
    bundled = Path(lamina.__file__).resolve().parent / "_native"
    if path.parent == bundled:
        # An installed package runs the copy it carries, whatever LAMINA_LIBRARY says, and
        # llama.cpp's libraries and backend come from beside it, not from elsewhere.
        code = "import sys; sys.path.insert(0, {!r}); import lamina; print(lamina.library_path)".format(PACKAGE_PARENT)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == str(path), out.stdout + out.stderr
        if Path("/proc/self/maps").is_file():
            lamina.backends()  # loads the CPU backend
            mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "/" in line}
            native = [Path(m) for m in mapped if re.match(r"lib(lamina|llama|ggml)", Path(m).name)]
            assert any(p.name.startswith("libggml-cpu-") for p in native), native
            assert all(p.parent == bundled for p in native), native
        return
    # An explicit LAMINA_LIBRARY wins over the target directories, and a wrong one is a clear
    # ImportError.
    code = (
        "import sys; sys.path.insert(0, {!r})\n"
        "try:\n    import lamina\n"
        "except ImportError as e:\n    print(type(e).__name__, e.status_name, e)\n".format(PACKAGE_PARENT)
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "LibraryNotFoundError LAMINA_LIBRARY_NOT_FOUND" in out.stdout, out.stdout + out.stderr
    assert "LAMINA_LIBRARY" in out.stdout
    env["LAMINA_LIBRARY"] = lamina.library_path
    code = "import sys; sys.path.insert(0, {!r}); import lamina; print(lamina.version())".format(PACKAGE_PARENT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == lamina.version(), out.stderr


def test_every_header_function_is_declared():
    from lamina._lib import PROTOTYPES
    from lamina._train import PROTOTYPES as TRAINER_PROTOTYPES  # declared beside the Trainer

    header = (REPO / "include" / "lamina.h").read_text()
    declared = set(re.findall(r"^[a-z_ ]+[ *](lamina_[a-z0-9_]+)\(", header, flags=re.M))
    assert len(declared) >= 28
    assert not set(PROTOTYPES) & set(TRAINER_PROTOTYPES)
    assert declared == set(PROTOTYPES) | set(TRAINER_PROTOTYPES)


def binding_structs():
    """The binding's ctypes structs by their C name."""
    from lamina._lib import (
        lamina_bleu_score,
        lamina_eval_params,
        lamina_generation_info,
        lamina_model_params,
        lamina_sampling_params,
        lamina_session_params,
    )

    structs = (
        lamina_model_params,
        lamina_session_params,
        lamina_sampling_params,
        lamina_generation_info,
        lamina_bleu_score,
        lamina_eval_params,
    )
    return {struct.__name__: struct for struct in structs}


def test_struct_fields_match_header():
    header = (REPO / "include" / "lamina.h").read_text()
    for name, struct in binding_structs().items():
        m = re.search(r"typedef struct \{([^{}]*)\} " + name + ";", header)
        assert m, name + " not found in include/lamina.h"
        body = re.sub(r"//[^\n]*", "", m.group(1))
        fields = re.findall(r"(\w+)\s*(?:\[(\d+)\])?\s*;", body)
        assert [f for f, _ in fields] == [f for f, _ in struct._fields_], name
        # Array fields have the header's length.
        for (field, length), (_, ctype) in zip(fields, struct._fields_):
            assert (int(length) if length else None) == getattr(ctype, "_length_", None), name + "." + field


@pytest.mark.skipif(not shutil.which(os.environ.get("CC", "cc")), reason="no C compiler")
def test_struct_layouts_match_header(tmp_path):
    # The C compiler's sizeof/offsetof of the header's structs against ctypes' layout.
    lines = ['#include <stddef.h>', '#include <stdio.h>', '#include "lamina.h"', "int main(void) {"]
    expected = []
    for name, struct in binding_structs().items():
        lines.append('printf("%zu\\n", sizeof({}));'.format(name))
        expected.append(ctypes.sizeof(struct))
        for field, _ in struct._fields_:
            lines.append('printf("%zu\\n", offsetof({}, {}));'.format(name, field))
            expected.append(getattr(struct, field).offset)
    lines += ["return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c99", "-I", str(REPO / "include"), str(src), "-o", str(exe)], check=True, timeout=120)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=60).stdout
    assert [int(x) for x in out.split()] == expected


def test_params_init():
    from lamina._lib import lamina_model_params, lamina_sampling_params, lamina_session_params, lib
    from lamina._util import init_params

    model = init_params(lamina_model_params, lib.lamina_model_params_init)
    assert model.struct_size == ctypes.sizeof(lamina_model_params)
    assert (model.n_gpu_layers, model.use_mmap, model.use_mlock) == (0, True, False)
    session = init_params(lamina_session_params, lib.lamina_session_params_init)
    assert session.struct_size == ctypes.sizeof(lamina_session_params)
    assert (session.n_ctx, session.n_batch, session.n_threads, session.n_threads_batch) == (0, 512, 0, 0)
    assert session.flash_attention == -1
    sampling = init_params(lamina_sampling_params, lib.lamina_sampling_params_init)
    assert sampling.struct_size == ctypes.sizeof(lamina_sampling_params)
    assert (sampling.max_tokens, sampling.top_k, sampling.repeat_last_n, sampling.seed) == (256, 40, 64, 0)
    assert sampling.temperature == 0.0 and sampling.repeat_penalty == 1.0
    assert abs(sampling.top_p - 0.95) < 1e-6 and abs(sampling.min_p - 0.05) < 1e-6
    assert sampling.n_stop == 0 and not sampling.stop
    # A struct_size too small for the struct_size field itself, and NULL, are refused.
    p = lamina_sampling_params()
    assert lib.lamina_sampling_params_init(ctypes.byref(p), 4) == lamina.STATUS_ERROR_INVALID_ARGUMENT
    assert p.struct_size == 0  # out-parameters are untouched on failure
    assert lib.lamina_model_params_init(None, ctypes.sizeof(lamina_model_params)) == lamina.STATUS_ERROR_NULL_ARGUMENT


def test_sampling_keywords_are_in_every_signature():
    # generate, chat, stream and chat_stream spell out _sampling's keywords (for type checkers
    # and IDEs): the same names, order, annotations and defaults, keyword-only.
    import inspect

    from lamina._session import _sampling

    expected = list(inspect.signature(_sampling).parameters.values())
    assert [p.name for p in expected][:2] == ["max_tokens", "temperature"] and len(expected) == 11
    for name, extra in (("generate", ["on_token"]), ("chat", ["on_token"]), ("stream", []), ("chat_stream", [])):
        params = list(inspect.signature(getattr(lamina.Session, name)).parameters.values())
        assert [p.kind for p in params[:2]] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 2, name
        assert params[2 : 2 + len(expected)] == expected, name
        assert [p.name for p in params[2 + len(expected) :]] == extra, name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), name


def test_status_names():
    assert lamina.status_name(0) == "LAMINA_STATUS_OK"
    assert lamina.status_name(14) == "LAMINA_STATUS_ERROR_BUSY"
    assert lamina.status_name(100) == "LAMINA_STATUS_ERROR_PANIC"
    # The library takes any int32 and names the ones it does not define.
    assert lamina.status_name(42) == "LAMINA_STATUS_UNKNOWN"
    assert lamina.status_name(-7) == "LAMINA_STATUS_UNKNOWN"
    assert lamina.status_name(2 ** 40) == "LAMINA_STATUS_UNKNOWN"  # not truncated to 0 (OK)
    assert LaminaError(42, "from a newer library").status_name == "LAMINA_STATUS_UNKNOWN"


def test_every_status_has_its_name_constant_and_class():
    # _status.py is generated from the header; each status must reach Python whole: the
    # library's own name, a STATUS_ constant, and (for errors) its own exception class.
    from lamina import _error, _status

    assert len(_status.NAMES) >= 19
    for code, name in _status.NAMES.items():
        assert lamina.status_name(code) == name
        assert getattr(lamina, "STATUS_" + name[len("LAMINA_STATUS_"):]) == code
        if code != lamina.STATUS_OK:
            cls = type(_error.error_for(code, "m"))
            assert cls is not LaminaError and cls.__name__ in lamina.__all__, name


def test_default_model_path_and_info(model):
    assert lamina.default_model_path().endswith(".gguf")
    info = model.info
    assert info["architecture"] == "llama"
    assert info["n_params"] > 100_000_000
    assert info["n_vocab"] > 0 and info["n_layer"] > 0 and info["n_ctx_train"] > 0
    assert info["has_chat_template"] is True
    assert model.meta("general.architecture") == "llama"
    with pytest.raises(LaminaError) as e:
        model.meta("no.such.key")
    assert_status(e, "ERROR_INVALID_ARGUMENT")


def test_log_callback():
    lines = []
    lamina.set_log_callback(lambda level, msg: lines.append((level, msg)), min_level="debug")
    try:
        with lamina.Model():
            pass
    finally:
        lamina.set_log_callback(None)
    assert lines, "no log lines while loading a model"
    assert {level for level, _ in lines} <= {"debug", "info", "warn", "error"}
    assert all(isinstance(msg, str) and not msg.endswith("\n") for _, msg in lines)
    n = len(lines)
    with lamina.Model():
        pass
    assert len(lines) == n, "log lines after the callback was removed"
    with pytest.raises(LaminaError):
        lamina.set_log_callback(print, min_level="chatty")


# -- generation -----------------------------------------------------------------------------


def test_greedy_generation_is_deterministic(session):
    first = session.generate(PROMPT, max_tokens=8)
    assert "Paris" in first.text
    assert first.stop_reason == "max_tokens"
    assert first.generated_tokens == 8
    assert first.prompt_tokens > 0
    assert first.prompt_ms >= 0 and first.generation_ms >= 0 and first.time_to_first_token_ms >= 0
    second = session.generate(PROMPT, max_tokens=8)
    assert second.text == first.text
    # The second call found the prompt in the KV cache.
    assert second.reused_tokens > 0
    assert session.last_generation == second


def test_stream_matches_generate(model):
    with model.session(**SESSION_KW) as s:
        expected = s.generate(PROMPT, max_tokens=16).text
    with model.session(**SESSION_KW) as s:
        gen = s.stream(PROMPT, max_tokens=16)
        pieces = list(gen)
        assert s.last_generation.text == expected
        assert s.last_generation.stop_reason == "max_tokens"
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces) == expected
    assert not stream_threads()


def test_stream_return_value(session):
    def consume():
        result = yield from session.stream(PROMPT, max_tokens=4)
        return result

    gen = consume()
    pieces = []
    try:
        while True:
            pieces.append(next(gen))
    except StopIteration as stop:
        result = stop.value
    assert isinstance(result, lamina.Generation)
    assert result.text == "".join(pieces)


def test_stream_early_break_cancels(session):
    gen = session.stream(PROMPT, max_tokens=32)
    received = []
    for piece in gen:
        received.append(piece)
        if len(received) == 2:
            break
    gen.close()  # a for-loop break leaves the generator open; closing it cancels and joins
    assert not stream_threads()
    last = session.last_generation
    assert last.stop_reason == "cancelled"
    assert last.generated_tokens < 32
    assert last.text.startswith("".join(received))
    assert_still_works(session)
    # The usual idiom: the generator is dropped (and so closed) right at the break.
    for piece in session.stream(PROMPT, max_tokens=32):
        break
    assert not stream_threads()
    assert session.last_generation.stop_reason == "cancelled"
    assert_still_works(session)


def test_stream_dropped_generator_cancels(session):
    gen = session.stream(PROMPT, max_tokens=32)
    assert next(gen)
    del gen
    gc.collect()
    assert not stream_threads()
    assert_still_works(session)


def test_stream_closed_after_worker_finished(session):
    # The consumer leaves after the generation has already ended: no cancel may leak into
    # the session's next generation.
    gen = session.stream(PROMPT, max_tokens=3)
    assert next(gen)
    deadline = time.monotonic() + 30
    while stream_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    gen.close()
    assert session.last_generation.stop_reason == "max_tokens"
    g = session.generate(PROMPT, max_tokens=3)
    assert g.stop_reason == "max_tokens" and "Paris" in g.text


def test_stream_closed_before_the_c_call_stops(session):
    # The consumer leaves while the worker has not entered the C call yet, so the cancel
    # finds nothing running: the token callback stops the generation at its first piece.
    real_call = session._call

    def late_call(fn, text, sampling, on_piece):
        on_piece("x")  # lets the consumer receive a piece and leave
        deadline = time.monotonic() + 30
        while not all(st.stop for st in list(session._streams)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_call(fn, text, sampling, on_piece)

    session._call = late_call
    try:
        gen = session.stream(PROMPT, max_tokens=64)
        assert next(gen) == "x"
        gen.close()
    finally:
        del session._call
    assert not stream_threads()
    last = session.last_generation
    assert last.stop_reason == "cancelled"
    assert last.generated_tokens == 1
    assert_still_works(session)


def test_stream_errors_reach_the_consumer(session):
    gen = session.stream("", max_tokens=4)
    with pytest.raises(LaminaError) as e:
        next(gen)
    assert_status(e, "ERROR_EMPTY_PROMPT")
    with pytest.raises(LaminaError) as e:
        list(session.stream(PROMPT, max_tokens=4, temperature=-1.0))
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    with pytest.raises(TypeError):
        session.stream(PROMPT, max_tokenz=4)
    assert_still_works(session)


def test_busy_while_streaming(session):
    gen = session.stream(PROMPT, max_tokens=32)
    assert next(gen)  # the worker is now inside lamina_session_generate
    with pytest.raises(LaminaError) as e:
        session.generate(PROMPT, max_tokens=2)
    assert_status(e, "ERROR_BUSY")
    gen.close()
    assert_still_works(session)


def test_on_token_false_stops(session):
    pieces = []

    def on_token(piece):
        pieces.append(piece)
        return len(pieces) < 3

    g = session.generate(PROMPT, max_tokens=32, on_token=on_token)
    assert g.stop_reason == "callback_stopped"
    assert len(pieces) == 3
    assert g.text == "".join(pieces)


def test_on_token_none_continues(session):
    pieces = []
    g = session.generate(PROMPT, max_tokens=6, on_token=pieces.append)  # returns None
    assert g.stop_reason == "max_tokens"
    assert "".join(pieces) == g.text


def test_on_token_exception_propagates(session):
    calls = []

    def on_token(piece):
        calls.append(piece)
        if len(calls) == 2:
            raise ValueError("boom")
        return True

    with pytest.raises(ValueError, match="boom"):
        session.generate(PROMPT, max_tokens=32, on_token=on_token)
    assert len(calls) == 2  # generation stopped at the exception
    with pytest.raises(KeyError):
        session.chat("Hello!", max_tokens=8, on_token=lambda p: {}["missing"])
    assert_still_works(session)


def test_stop_strings(session):
    full = session.generate(PROMPT, max_tokens=12).text
    assert "." in full
    g = session.generate(PROMPT, max_tokens=12, stop=["."])
    assert g.stop_reason == "stop_string"
    assert g.text == full[: full.index(".")]
    assert "." not in g.text
    g = session.generate(PROMPT, max_tokens=12, stop=".")  # a single string is fine too
    assert g.stop_reason == "stop_string"
    g = session.generate(PROMPT, max_tokens=12, stop=[b"\n", "xyz"])
    assert g.stop_reason == "stop_string"
    assert "\n" not in g.text
    pieces = list(session.stream(PROMPT, max_tokens=12, stop=["."]))
    assert "".join(pieces) == full[: full.index(".")]
    with pytest.raises(LaminaError) as e:
        session.generate(PROMPT, max_tokens=4, stop=[""])
    assert_status(e, "ERROR_INVALID_ARGUMENT")


def test_sampling_with_seed_is_reproducible(session):
    kw = dict(max_tokens=8, temperature=0.8, top_k=40, top_p=0.9, seed=1234)
    a = session.generate(PROMPT, **kw).text
    b = session.generate(PROMPT, **kw).text
    assert a == b and a


# -- chat and tasks -------------------------------------------------------------------------


def test_chat_two_turns_reuses_cache(session):
    first = session.chat("What is the capital of France?", max_tokens=24)
    assert first.text.strip()
    assert first.reused_tokens == 0
    assert "<|im" not in first.text
    second = session.chat("And of Germany?", max_tokens=24)
    assert second.text.strip()
    assert second.reused_tokens > 0
    assert second.prompt_tokens > first.prompt_tokens
    # reset() forgets history and cache.
    session.reset()
    third = session.chat("What is the capital of France?", max_tokens=24)
    assert third.reused_tokens == 0
    assert third.text == first.text


def test_chat_stream_matches_chat(model):
    with model.session(**SESSION_KW) as s:
        expected = s.chat("Name a color.", max_tokens=16).text
    with model.session(**SESSION_KW) as s:
        pieces = list(s.chat_stream("Name a color.", max_tokens=16))
        assert "".join(pieces) == expected
        # The streamed turn is in the history: the next turn reuses it.
        assert s.chat("Another one?", max_tokens=8).reused_tokens > 0


def test_system_prompt(session):
    session.set_system_prompt("You are a helpful assistant who answers in one word.")
    g = session.chat("What is the capital of France?", max_tokens=16)
    assert g.text.strip()
    session.set_system_prompt(None)
    assert session.chat("Thanks!", max_tokens=8).text.strip()
    with pytest.raises(TypeError):
        session.set_system_prompt(42)


def test_translate(session):
    out = session.translate("Good morning, my friend.", "en", "fr")
    assert isinstance(out, str) and out.strip()
    assert "<|im" not in out
    assert session.translate("hello", "en", "English") == "hello"  # same language


def test_answer_with_context(session):
    out = session.answer("What color is the car?", "The car is red and very fast.")
    assert isinstance(out, str)
    assert "red" in out.lower()
    assert "<|im" not in out
    assert session.answer("What is the capital of France?").strip()


# -- lifetime -------------------------------------------------------------------------------


def test_context_manager_and_close(model):
    with model.session(**SESSION_KW) as s:
        assert not s.closed
        assert "Paris" in s.generate(PROMPT, max_tokens=3).text
    assert s.closed
    s.close()
    s.close()
    for call in (
        lambda: s.generate(PROMPT, max_tokens=2),
        lambda: s.chat("hi", max_tokens=2),
        lambda: s.stream(PROMPT, max_tokens=2),
        lambda: s.chat_stream("hi", max_tokens=2),
        lambda: s.translate("hi", "en", "de"),
        lambda: s.answer("why?"),
        lambda: s.n_ctx,
        s.reset,
        lambda: s.set_system_prompt("x"),
    ):
        with pytest.raises(LaminaError) as e:
            call()
        assert_status(e, "ERROR_INVALID_HANDLE")
        assert isinstance(e.value, lamina.InvalidHandleError)
    s.cancel()  # cancelling a closed session is a no-op


def test_model_close_and_session_outlives_model():
    m = lamina.Model()
    s = m.session(**SESSION_KW)
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(LaminaError) as e:
        m.info
    assert_status(e, "ERROR_INVALID_HANDLE")
    with pytest.raises(LaminaError):
        m.session()
    # The library keeps the model alive while the session exists.
    assert_still_works(s)
    s.close()
    with lamina.Model() as m2:
        assert m2.info["architecture"] == "llama"
    assert m2.closed


def test_close_session_while_streaming(model):
    s = model.session(**SESSION_KW)
    gen = s.stream(PROMPT, max_tokens=32)
    assert next(gen)
    s.close()  # cancels the running generation; the library frees the session after it
    rest = list(gen)
    assert s.last_generation.stop_reason == "cancelled"
    assert s.last_generation.generated_tokens < 32
    assert isinstance(rest, list)
    assert not stream_threads()


def test_cancel_from_another_thread(model):
    with model.session(n_ctx=2048, n_threads=1) as s:
        # Cancel once the generation is surely running (a cancel while idle does nothing).
        running = threading.Event()

        def cancel_when_running():
            if running.wait(60):
                time.sleep(0.2)
                s.cancel()

        canceller = threading.Thread(target=cancel_when_running)
        canceller.start()
        start = time.monotonic()
        try:
            g = s.generate("Count from 1 to 1000: 1, 2, 3, 4,", max_tokens=2000, on_token=lambda piece: running.set())
        finally:
            running.set()
            canceller.join()
        elapsed = time.monotonic() - start
        assert g.stop_reason == "cancelled"
        assert g.generated_tokens < 2000
        assert elapsed < 60
        assert_still_works(s)


def test_cancel_inside_a_long_prompt_chunk_returns_within_milliseconds(model):
    # The whole prompt is one decode call; llama.cpp's abort callback stops it mid-graph.
    with model.session(n_ctx=2048, n_batch=2048, n_threads=1) as s:
        sent_at = []

        def cancel_later():
            time.sleep(0.3)
            sent_at.append(time.monotonic())
            s.cancel()

        canceller = threading.Thread(target=cancel_later)
        canceller.start()
        try:
            g = s.generate("word " * 1500, max_tokens=4)
        finally:
            canceller.join()
        latency_ms = (time.monotonic() - sent_at[0]) * 1e3
        print("cancel inside a {}-token chunk: returned after {:.1f} ms, prompt_ms {:.1f}".format(
            g.prompt_tokens, latency_ms, g.prompt_ms))
        assert g.stop_reason == "cancelled"
        assert g.generated_tokens == 0
        # 50 ms is the contract; head room for a loaded machine, far below a chunk's seconds.
        assert latency_ms < 250, latency_ms
        assert g.prompt_ms >= 250, g.prompt_ms
        assert_still_works(s)


def test_cancel_when_idle_does_not_affect_next_generation(session):
    # A cancel stops only the generation running at the moment of the call.
    session.cancel()
    g = session.generate(PROMPT, max_tokens=8)
    assert g.stop_reason == "max_tokens"
    assert "Paris" in g.text
    # Also after a generation that ended on its own.
    session.cancel()
    assert_still_works(session)


def test_handles_are_not_reused(model):
    from lamina._lib import lib

    s1 = model.session(**SESSION_KW)
    stale = s1._handle
    s1.close()
    with model.session(**SESSION_KW) as s2:
        assert s2._handle != stale
        # The freed handle stays invalid and does not reach the new session.
        assert lib.lamina_session_cancel(stale) == lamina.STATUS_ERROR_INVALID_HANDLE
        assert_still_works(s2)


def test_concurrent_sessions(model):
    results = {}

    def run(i):
        with model.session(**SESSION_KW) as s:
            results[i] = s.generate(PROMPT, max_tokens=6).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == results[1] and "Paris" in results[0]


# -- errors ---------------------------------------------------------------------------------


def test_error_missing_model(tmp_path):
    with pytest.raises(LaminaError) as e:
        lamina.Model(tmp_path / "missing.gguf")
    assert_status(e, "ERROR_MODEL_NOT_FOUND")
    assert isinstance(e.value, lamina.ModelNotFoundError)
    assert "missing.gguf" in e.value.message
    assert "LAMINA_STATUS_ERROR_MODEL_NOT_FOUND" in str(e.value)


def test_error_not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("this is not a model, just some text\n" * 10)
    with pytest.raises(LaminaError) as e:
        lamina.Model(str(path))
    assert_status(e, "ERROR_NOT_GGUF")


def test_error_truncated_gguf(tmp_path, model):
    path = tmp_path / "truncated.gguf"
    with open(model.path, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read(1 << 20))
    with pytest.raises(LaminaError) as e:
        lamina.Model(path)
    assert_status(e, "ERROR_MODEL_LOAD")
    # The loaded model is unaffected.
    with model.session(**SESSION_KW) as s:
        assert_still_works(s)


def test_error_bad_model_params():
    with pytest.raises(LaminaError) as e:
        lamina.Model(n_gpu_layers=-1)
    assert_status(e, "ERROR_INVALID_ARGUMENT")


def test_error_empty_prompt(session):
    for call in (
        lambda: session.generate("", max_tokens=4),
        lambda: session.chat("   ", max_tokens=4),
        lambda: session.translate("", "en", "de"),
        lambda: session.answer(""),
    ):
        with pytest.raises(LaminaError) as e:
            call()
        assert_status(e, "ERROR_EMPTY_PROMPT")
        assert_still_works(session)


def test_session_n_ctx(model):
    with lamina.Session(model, n_ctx=64, n_threads=1) as s:
        assert s.n_ctx == 64
    with model.session(n_threads=1) as s:  # the default: min(4096, the training context)
        assert s.n_ctx == min(4096, model.info["n_ctx_train"])


def test_error_prompt_too_long(model):
    # The library enforces the requested n_ctx (not llama.cpp's padded context, which would
    # hold 256 tokens here): a prompt of about 100 tokens does not fit in 64.
    with lamina.Session(model, n_ctx=64, n_threads=1) as s:
        assert s.n_ctx == 64
        with pytest.raises(LaminaError) as e:
            s.generate("The quick brown fox jumps over the lazy dog. " * 10, max_tokens=4)
        assert_status(e, "ERROR_PROMPT_TOO_LONG")
        assert isinstance(e.value, lamina.PromptTooLongError)
        assert_still_works(s)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(temperature=float("nan")),
        dict(temperature=-0.5),
        dict(temperature=math.inf),
        dict(top_p=0.0),
        dict(min_p=1.5),
        dict(top_k=-1),
        dict(repeat_penalty=0.0),
        dict(max_tokens=0),
        dict(max_tokens=-1),
        dict(seed=2 ** 40),
    ],
)
def test_error_invalid_sampling(session, kwargs):
    kwargs.setdefault("max_tokens", 4)
    with pytest.raises(LaminaError) as e:
        session.generate(PROMPT, **kwargs)
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    assert_still_works(session)


def test_error_invalid_utf8(session):
    with pytest.raises(LaminaError) as e:
        session.generate(b"The capital of \xff\xfe France is", max_tokens=4)
    assert_status(e, "ERROR_INVALID_UTF8")
    assert_still_works(session)
    # A str with a lone surrogate reaches C as the invalid bytes it stands for.
    with pytest.raises(LaminaError) as e:
        session.chat("hello \udc80", max_tokens=4)
    assert_status(e, "ERROR_INVALID_UTF8")
    with pytest.raises(LaminaError) as e:
        session.generate(PROMPT, max_tokens=4, stop=[b"\xc3"])
    assert_status(e, "ERROR_INVALID_UTF8")
    # bytes that are valid UTF-8 are passed through
    assert "Paris" in session.generate(PROMPT.encode(), max_tokens=3).text
    assert_still_works(session)


def test_error_nul_in_string(session):
    with pytest.raises(LaminaError) as e:
        session.generate("abc\0def", max_tokens=2)
    assert_status(e, "ERROR_INVALID_ARGUMENT")


def test_error_unknown_language(session):
    with pytest.raises(LaminaError) as e:
        session.translate("Good morning", "en", "klingonese")
    assert_status(e, "ERROR_UNKNOWN_LANGUAGE")
    assert isinstance(e.value, lamina.UnknownLanguageError)
    assert_still_works(session)


def test_error_bad_session_params(model):
    with pytest.raises(LaminaError) as e:
        model.session(n_batch=0)
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    with pytest.raises(LaminaError) as e:
        model.session(n_ctx=-5)
    assert_status(e, "ERROR_INVALID_ARGUMENT")
    with pytest.raises(TypeError):
        lamina.Session("not a model")


def test_ctrl_c_stops_generation():
    # Ctrl-C during a long generation on the main thread stops it and raises
    # KeyboardInterrupt after the call (not swallowed inside a ctypes callback).
    code = r"""
import os, signal, sys, threading, time
sys.path.insert(0, {python_dir!r})
import lamina
s = lamina.Model().session(n_ctx=2048, n_threads=1)
for kw in ({{}}, {{"on_token": lambda piece: None}}):
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    start = time.monotonic()
    try:
        s.generate("Count from 1 to 1000: 1, 2, 3, 4,", max_tokens=2000, **kw)
        print("not interrupted")
    except KeyboardInterrupt:
        print("interrupted", s.last_generation.stop_reason, s.last_generation.generated_tokens < 2000,
              time.monotonic() - start < 20)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
print("after", "Paris" in s.generate("The capital of France is", max_tokens=3).text)
""".format(python_dir=PACKAGE_PARENT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == [
        "interrupted callback_stopped True True",
        "interrupted callback_stopped True True",
        "after True",
    ], out.stdout + out.stderr
    assert "Exception ignored" not in out.stderr


# -- several prompts at once --------------------------------------------------------------

BATCH_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little",
    "The three primary colors are",
    "Water boils at",
]


def test_generate_batch_equals_one_at_a_time(model):
    with model.session(n_ctx=512, n_threads=2) as single:
        expected = [single.generate(p, max_tokens=16) for p in BATCH_PROMPTS]
    with model.session(n_ctx=512, n_threads=2, n_sequences=4) as s:
        streamed = [""] * len(BATCH_PROMPTS)

        def on_token(index, piece):
            streamed[index] += piece

        got = s.generate_batch(BATCH_PROMPTS, {"max_tokens": 16}, on_token=on_token)
        assert [g.text for g in got] == [g.text for g in expected]
        assert [g.stop_reason for g in got] == [g.stop_reason for g in expected]
        assert streamed == [g.text for g in got]
        # Per-prompt sampling: a short one and a stop string.
        got = s.generate_batch(BATCH_PROMPTS[:2], [{"max_tokens": 2}, {"max_tokens": 64, "stop": "."}])
        assert got[0].generated_tokens == 2 and got[0].stop_reason == "max_tokens"
        assert got[1].stop_reason == "stop_string" and "." not in got[1].text
        # A callback returning False stops its own prompt only.
        got = s.generate_batch(BATCH_PROMPTS[:2], {"max_tokens": 16}, on_token=lambda i, p: i != 0)
        assert got[0].stop_reason == "callback_stopped" and got[1].stop_reason == "max_tokens"
        assert_still_works(s)


def test_generate_batch_bad_input(model):
    with model.session(n_ctx=256, n_threads=1, n_sequences=2) as s:
        with pytest.raises(lamina.LaminaError) as e:
            s.generate_batch(BATCH_PROMPTS[:3])
        assert e.value.status == lamina.STATUS_ERROR_INVALID_ARGUMENT and "at most 2" in str(e.value)
        with pytest.raises(lamina.LaminaError) as e:
            s.generate_batch([])
        assert e.value.status == lamina.STATUS_ERROR_INVALID_ARGUMENT
        with pytest.raises(ValueError):
            s.generate_batch(BATCH_PROMPTS[:2], [{}])
        with pytest.raises(lamina.LaminaError) as e:
            s.generate_batch(["a", "b"], [{}, {"temperature": -1.0}])
        assert "request 1" in str(e.value)
        with pytest.raises(ZeroDivisionError):
            s.generate_batch(BATCH_PROMPTS[:2], on_token=lambda i, p: 1 / 0)
        assert_still_works(s)
    with pytest.raises(lamina.LaminaError) as e:
        model.session(n_sequences=0)
    assert "n_sequences" in str(e.value)

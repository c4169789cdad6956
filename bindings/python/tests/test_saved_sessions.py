"""Saved sessions from Python: a chat saved to bytes or a file and restored into a new session
continues exactly as the saved one does; a corrupted state is a clear error.

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(HERE.parent))

import lamina  # noqa: E402

KW = dict(n_ctx=1024, n_threads=2)

# `model`: the shared fixture of conftest.py.


def test_a_restored_chat_continues_exactly(model, tmp_path):
    with model.session(**KW) as a:
        a.chat("My name is Ada and I live in Lisbon.", max_tokens=12)
        state = a.save_state()
        a.save_state_file(tmp_path / "chat.lamina-session")
        history_len = len(state)
        expected = a.chat("Where do I live?", max_tokens=12)
    assert history_len > 1000
    for restore in ("bytes", "file"):
        with model.session(**KW) as b:
            if restore == "bytes":
                b.restore_state(state)
            else:
                b.restore_state_file(tmp_path / "chat.lamina-session")
            got = b.chat("Where do I live?", max_tokens=12)
            assert got.text == expected.text, restore
            assert got.reused_tokens == expected.reused_tokens > 0, restore


def test_bad_states(model, tmp_path):
    with model.session(**KW) as s:
        s.generate("The capital of France is", max_tokens=4)
        state = bytearray(s.save_state())
        state[len(state) // 2] ^= 1
        with pytest.raises(lamina.InvalidArgumentError, match="checksum"):
            s.restore_state(bytes(state))
        with pytest.raises(lamina.InvalidArgumentError, match="not a lamina session state"):
            s.restore_state(b"")
        with pytest.raises(lamina.LaminaIOError):
            s.restore_state_file(tmp_path / "missing")
        assert s.generate("The capital of France is", max_tokens=4).text

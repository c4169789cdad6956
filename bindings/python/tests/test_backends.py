"""Tests of the backend API of the Python binding (lamina.backends, lamina.load_backends,
BackendError) and of GPU offloading on a machine without a GPU, against the default build
(backends loaded at run time: the CPU variant for this processor, from beside the library).

Run from the repository root:  python3 -m pytest -q bindings/python/tests
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
# LAMINA_TEST_INSTALLED=1: test the installed package instead of this checkout's (conftest.py).
if os.environ.get("LAMINA_TEST_INSTALLED") != "1":
    sys.path.insert(0, str(PYTHON_DIR))

import lamina  # noqa: E402
from lamina import LaminaError  # noqa: E402


def test_status_backend():
    assert lamina.STATUS_ERROR_BACKEND == 17
    assert lamina.status_name(17) == "LAMINA_STATUS_ERROR_BACKEND"
    from lamina._error import _NAMES, error_for

    assert _NAMES[17] == "LAMINA_STATUS_ERROR_BACKEND"
    err = error_for(17, "no CPU backend is loaded")
    assert isinstance(err, lamina.BackendError) and isinstance(err, LaminaError)
    assert err.status_name == "LAMINA_STATUS_ERROR_BACKEND"


def test_backends_report():
    report = lamina.backends()
    assert report["dynamic"] is True  # the default build loads its backends at run time
    for key in ("searched", "loaded", "skipped", "devices"):
        assert isinstance(report[key], list), key
    assert report["loaded"], "no backend listed as loaded"
    for backend in report["loaded"]:
        assert isinstance(backend["name"], str) and backend["name"]
    cpu = [b for b in report["loaded"] if b["name"] == "CPU"]
    assert len(cpu) == 1, report["loaded"]
    # The CPU variant comes from beside liblamina_ffi (the build's shipping layout).
    assert Path(cpu[0]["path"]).name.startswith("libggml-cpu-"), cpu
    assert any(Path(cpu[0]["path"]).parent == Path(p) for p in report["searched"]), report
    kinds = [d["kind"] for d in report["devices"]]
    assert "cpu" in kinds, report["devices"]
    for d in report["devices"]:
        assert d["kind"] in ("cpu", "gpu", "igpu", "accelerator", "other")
        assert isinstance(d["name"], str) and isinstance(d["backend"], str)
        assert isinstance(d["memory_total"], int) and isinstance(d["memory_free"], int)


def test_load_backends_paths(tmp_path):
    before = lamina.backends()["loaded"]
    # A directory without backends is searched and adds nothing; no error.
    report = lamina.load_backends(tmp_path)
    assert str(tmp_path) in report["searched"], report
    assert report["loaded"] == before
    # A path that does not exist is an invalid argument naming it.
    with pytest.raises(lamina.InvalidArgumentError) as excinfo:
        lamina.load_backends(tmp_path / "no-such-dir")
    assert "does not exist" in excinfo.value.message and "no-such-dir" in excinfo.value.message
    # A file that is not a library: a backend error with the loader's reason.
    junk = tmp_path / "libggml-junk.so"
    junk.write_bytes(b"not a shared library")
    with pytest.raises(lamina.BackendError) as excinfo:
        lamina.load_backends(junk)
    assert excinfo.value.status == lamina.STATUS_ERROR_BACKEND
    assert str(junk) in excinfo.value.message
    # The process keeps its backends.
    assert lamina.backends()["loaded"] == before


def test_load_backends_bad_arguments():
    with pytest.raises(TypeError):
        lamina.load_backends(None)
    with pytest.raises(lamina.InvalidArgumentError, match="NUL"):
        lamina.load_backends("a\0b")


def test_gpu_layers_on_a_cpu_only_machine():
    if any(d["kind"] in ("gpu", "igpu") for d in lamina.backends()["devices"]):
        pytest.skip("this machine has a GPU backend")
    path = lamina.default_model_path()
    if not os.path.isfile(path):
        pytest.fail(
            "the default model is missing at {} - run scripts/fetch-model.sh (or set "
            "LAMINA_MODEL) before running these tests".format(path)
        )
    with lamina.Model(path, n_gpu_layers=99) as model:
        info = model.info
        assert info["gpu_layers"] == 0, info
        with model.session(n_ctx=256, n_threads=1) as session:
            g = session.generate("The capital of France is", max_tokens=4)
            assert g.generated_tokens > 0
            assert "Paris" in g.text, g.text



def test_flash_attention_setting_is_checked_and_every_setting_generates():
    path = lamina.default_model_path()
    if not os.path.isfile(path):
        pytest.fail("the default model is missing at {} - run scripts/fetch-model.sh".format(path))
    with lamina.Model(path) as model:
        for flash in (None, True, False):
            with lamina.Session(model, n_ctx=256, n_threads=1, flash_attention=flash) as session:
                g = session.generate("The capital of France is", max_tokens=4)
                assert "Paris" in g.text, (flash, g.text)
        with pytest.raises(TypeError):
            lamina.Session(model, flash_attention=1)

#!/usr/bin/env bash
# The Python package as a user gets it (Linux): `pip install ./bindings/python` into a fresh virtual
# environment, then used from a directory outside the checkout with none of lamina's
# environment variables set, so that only what the package carries can be found.
#
#   cargo build --release -p lamina-ffi && scripts/python-package-test.sh
#
# Checks:
# - the install bundles the native library: lamina/_native/ holds liblamina_ffi, llama.cpp's
#   libraries under their sonames and the CPU backends; py.typed ships; the wheel is tagged
#   py3-none-<platform>;
# - `import lamina` is the venv's package, it loads the bundled library, lamina.Model() loads
#   the default model and generates, and every lamina/llama/ggml library mapped into the
#   process is the bundled copy (`ldd` resolves llama.cpp's beside it, too);
# - the test suite against the installed package (LAMINA_TEST_INSTALLED=1: the tests then do
#   not put the checkout's bindings/python on sys.path; conftest.py refuses to run if the
#   checkout's package is imported anyway): every test file, so that this is the one run of
#   the Python suite that scripts/test.sh makes.
#
# It builds nothing: a missing release build is an error that says what to run
# (LAMINA_CARGO_BUILD=0), not a 10-minute cargo build hidden inside pip. Needs the default
# model (scripts/fetch-model.sh), a package index or wheelhouse for pip's isolated build
# environment (setuptools), and pytest, jsonschema (the structured-output tests' validator),
# openai (the client the server tests talk to `lamina serve` with) and sacrebleu (the
# reference of the BLEU/chrF test):
# installed into the venv by pip, or, where pip cannot get them, from the system's
# site-packages (the venv is then made with --system-site-packages). About two minutes on two
# cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n== %s   [%d s]\n' "$*" "$SECONDS"; }
fail() { echo "python-package-test: FAIL: $*" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
VENV="$TMP/venv"
PY="$VENV/bin/python"
# What the package must work without: the checkout's package, an explicit library, the
# Cargo target directory.
CLEAN=(env -u LAMINA_LIBRARY -u CARGO_TARGET_DIR -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1)

step "fresh virtual environment, with pytest, jsonschema, openai and sacrebleu"
# The test tools come from the system's site-packages when it has them all (scripts/setup.sh
# installs them): lamina itself is never there, so the venv still holds only the lamina that
# pip installs below, and the suite skips downloading and installing four packages with
# their dependencies again. Otherwise pip installs them into the venv.
if (cd "$TMP" && "${CLEAN[@]}" python3 -c "import pytest, jsonschema, openai, sacrebleu") >/dev/null 2>&1 \
    && ! (cd "$TMP" && "${CLEAN[@]}" python3 -c "import lamina") >/dev/null 2>&1; then
    echo "pytest, jsonschema, openai and sacrebleu: the system's (venv with --system-site-packages)"
    python3 -m venv --system-site-packages "$VENV"
else
    python3 -m venv "$VENV"
    "$PY" -m pip install -q pytest jsonschema openai sacrebleu >"$TMP/pip-pytest.log" 2>&1 \
        || fail "pip could not install pytest, jsonschema, openai and sacrebleu (no package index?): $(tail -n 3 "$TMP/pip-pytest.log")"
fi

step "pip install ./bindings/python"
LAMINA_CARGO_BUILD="${LAMINA_CARGO_BUILD:-0}" "$PY" -m pip install -q ./bindings/python \
    || fail "pip install ./bindings/python"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
PKG="$SITE/lamina"
NATIVE="$PKG/_native"
for f in liblamina_ffi.so libllama.so.0 libggml.so.0 libggml-base.so.0; do
    [[ -f "$NATIVE/$f" ]] || fail "not bundled: $f"
done
[[ -f "$PKG/py.typed" ]] || fail "py.typed is not installed"
ls "$NATIVE"/libggml-cpu-*.so >/dev/null 2>&1 || fail "no CPU backend in $NATIVE"
TAG="$(grep '^Tag:' "$SITE"/lamina-*.dist-info/WHEEL)"
[[ "$TAG" == "Tag: py3-none-linux_"* ]] || fail "the wheel is not tagged py3-none-<platform>: $TAG"
echo "installed: $(ls "$NATIVE" | wc -l) libraries in $NATIVE ($(du -sh "$NATIVE" | cut -f1))"

if command -v ldd >/dev/null; then
    LDD="$(ldd "$NATIVE/liblamina_ffi.so")"
    ! grep -q "not found" <<<"$LDD" || fail "unresolved libraries: $LDD"
    while read -r name _ path _; do
        [[ "$path" == "$NATIVE/$name" ]] || fail "$name resolves to $path, not to the bundled copy"
    done < <(grep -E '^\s*lib(llama|ggml)' <<<"$LDD")
fi

step "import lamina from outside the checkout, default model"
(cd "$TMP" && "${CLEAN[@]}" "$PY" - "$VENV" "$NATIVE" <<'PY'
import os, sys
venv, native = (os.path.realpath(p) for p in sys.argv[1:3])
import lamina
assert os.path.realpath(lamina.__file__).startswith(venv + os.sep), lamina.__file__
assert os.path.dirname(os.path.realpath(lamina.library_path)) == native, lamina.library_path
model = lamina.Model()
print(model.path)
with model.session(n_ctx=256, n_threads=1) as session:
    text = session.generate("The capital of France is", max_tokens=4).text
assert "Paris" in text, text
mapped = {line.split()[-1] for line in open("/proc/self/maps") if "/" in line}
native_libs = [p for p in mapped if os.path.basename(p).startswith(("liblamina", "libllama", "libggml"))]
assert any("libggml-cpu-" in p for p in native_libs), native_libs
foreign = [p for p in native_libs if os.path.dirname(os.path.realpath(p)) != native]
assert not foreign, foreign
print("lamina {} from {}: {!r}".format(lamina.version(), lamina.library_path, text))
PY
) || fail "the installed package does not work on its own"

step "the test suite against the installed package"
(cd "$TMP" && "${CLEAN[@]}" LAMINA_TEST_INSTALLED=1 "$PY" -m pytest -q -p no:cacheprovider "$ROOT"/bindings/python/tests) \
    || fail "tests against the installed package"

step "python package test passed"

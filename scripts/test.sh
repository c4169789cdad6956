#!/usr/bin/env bash
# The full test suite: what CI runs on a fresh clone.
# A format check, set-up, one release build (tests share the profile so llama.cpp is compiled
# exactly once), Rust tests, the fuzz regression corpus, the header check, the C examples and
# ABI tests, the C++ interface's tests and the pkg-config and CMake examples, the Python tests
# (against the package as pip installs it into a fresh venv; one of them also runs
# transformers, from scripts/torch-venv.sh), and the shipping layout of that same build
# (scripts/test-dynamic.sh: the bundle, CPU variants, missing and broken backends).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s   [%d s]\n' "$*" "$SECONDS"; }

step "format check: rustfmt.toml's style, everywhere"
# Seconds, and before the build, so a formatting slip fails fast. rustfmt comes with the
# default Rust toolchain; a toolchain without it says so rather than failing the suite.
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
    (cd fuzz && cargo fmt -- --check)
else
    echo "skipped: this Rust toolchain has no rustfmt (rustup component add rustfmt)"
fi

step "setup"
scripts/setup.sh
# The PyTorch side of one Python test (transformers' perplexity of a pretrained model's Hugging
# Face export equals lamina's): torch and transformers in the cached venv of
# scripts/torch-venv.sh, installed in the background while cargo builds (the first time about
# 4 GB from the package registry; later runs reuse it). LAMINA_TEST_TORCH=0 skips it, and the
# test then says it was skipped.
TORCH_DIR="$(mktemp -d)"
trap 'rm -rf "$TORCH_DIR"' EXIT
if [[ "${LAMINA_TEST_TORCH:-1}" != 0 ]]; then
    scripts/torch-venv.sh >"$TORCH_DIR/python" 2>"$TORCH_DIR/log" &
    TORCH_PID=$!
fi

step "build (release)"
# Tests too, in the same cargo run: the test builds of the crates then compile beside the
# binaries on both cores, instead of in a second, mostly serial, cargo run.
cargo build --release --workspace --lib --bins --examples --tests

step "Rust tests"
# One test at a time: each test runs llama.cpp with all cores, and llama.cpp's worker
# threads spin while waiting, so parallel tests would only fight for the CPU.
cargo test --release --workspace -- --test-threads=1

step "fuzz regressions: every seed and once-failing input through its fuzz check"
# Stable Rust, no libFuzzer: the checks of fuzz/src/checks on fuzz/corpus and fuzz/regressions,
# in the dev profile: with overflow checks, as the fuzzing builds have them.
cargo test --no-default-features --manifest-path fuzz/Cargo.toml -q

step "header check: include/lamina.h and the Python status module must match the code"
LAMINA_UPDATE_HEADER=1 cargo test --release --workspace --test header -q >/dev/null
git diff --exit-code -- include/ bindings/python/lamina/_status.py

step "C examples and ABI tests"
# The soak (8 threads of every operation on one model, as built and under ASan, side by side)
# runs 30 s here: each of its operations still runs dozens of times against its sequential
# reference, and the suite stays within its time budget. `scripts/c-tests.sh` alone runs it
# 60 s; SOAK_SECONDS overrides both.
SOAK_SECONDS="${SOAK_SECONDS:-30}" scripts/c-tests.sh

step "C++ interface (include/lamina.hpp, as built and under ASan), pkg-config and CMake against the bundle"
bash scripts/cpp-tests.sh

step "Rust and Python examples"
target/release/examples/generate "The capital of France is"
EXAMPLE_OUT="$(mktemp -d)"
target/release/examples/pretrain "$EXAMPLE_OUT" 8 README.md ARCHITECTURE.md CHANGELOG.md docs tests/data/prose.txt
rm -rf "$EXAMPLE_OUT"
python3 examples/python/generate.py "The capital of France is"

step "Python package: pip install into a fresh venv, then the Python tests against it from outside the checkout"
if [[ -n "${TORCH_PID:-}" ]]; then
    wait "$TORCH_PID" || { cat "$TORCH_DIR/log" >&2; echo "scripts/torch-venv.sh failed (LAMINA_TEST_TORCH=0 skips the transformers check)" >&2; exit 1; }
    LAMINA_TORCH_PYTHON="$(cat "$TORCH_DIR/python")"
    export LAMINA_TORCH_PYTHON
    echo "torch and transformers for the export check: $LAMINA_TORCH_PYTHON"
fi
bash scripts/python-package-test.sh

step "shipping layout: the relocatable bundle, CPU variants, missing and broken backends"
bash scripts/test-dynamic.sh

step "all tests passed"

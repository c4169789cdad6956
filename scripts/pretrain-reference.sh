#!/usr/bin/env bash
# Check `lamina pretrain` against a PyTorch reference: a tiny LLaMA model trained from the same
# initial weights on the same batches with the same hyper-parameters in both, for a few
# hundred steps, and the per-step losses compared. A developer tool, not a test: it takes a
# few minutes on 2 cores.
#
#   scripts/pretrain-reference.sh                   # 300 steps, 2 threads; fails beyond 1% in the first 100
#   scripts/pretrain-reference.sh --untied --grad-accum 2
#   scripts/pretrain-reference.sh --help            # every option
#
# This wrapper prepares what the check needs and hands over to pretrain_reference.py:
# - the release binary (built by `cargo build --release`; never built here);
# - a virtual environment with torch, transformers and safetensors, created once in the cache
#   and reused (scripts/torch-venv.sh). Nothing is fetched from a model hub: the PyTorch
#   side loads the initial model lamina wrote.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

for arg in "$@"; do
    if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
        exec python3 "$ROOT/scripts/pretrain_reference.py" --help
    fi
done

LAMINA_BIN="${LAMINA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lamina}"
if [ ! -x "$LAMINA_BIN" ]; then
    echo "pretrain-reference: $LAMINA_BIN not found; build it first with \`cargo build --release\`" >&2
    echo "  (or point LAMINA_BIN at a lamina binary)" >&2
    exit 1
fi
if ! "$LAMINA_BIN" pretrain --help 2>/dev/null | grep -- --dump-batches >/dev/null; then
    echo "pretrain-reference: $LAMINA_BIN has no \`pretrain --dump-batches\`: rebuild it with \`cargo build --release\`" >&2
    exit 1
fi
export LAMINA_BIN

PY="$("$ROOT/scripts/torch-venv.sh")"

# Offline: the PyTorch side loads lamina's initial model and never reaches for a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$PY" "$ROOT/scripts/pretrain_reference.py" "$@"

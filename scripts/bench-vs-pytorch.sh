#!/usr/bin/env bash
# Benchmark lamina's native engine against PyTorch (+ transformers + peft) on the same CPU work:
# a forward pass with logits for every position, a LoRA training step and a full fine-tuning
# step, each in its own process so that its peak memory is its own. A developer tool, not a
# test: it takes minutes and its numbers depend on the machine and on what else runs on it.
#
#   scripts/bench-vs-pytorch.sh                 # default model, 2 threads
#   scripts/bench-vs-pytorch.sh --quick         # tiny settings: checks that everything runs
#   scripts/bench-vs-pytorch.sh --rounds 3      # each cell the best of 3 interleaved rounds (noisy machines)
#   scripts/bench-vs-pytorch.sh --json          # the results as JSON on stdout
#   scripts/bench-vs-pytorch.sh --help          # every option
#
# This wrapper prepares what the benchmark needs and hands over to bench_vs_pytorch.py:
# - the release binary (built by `cargo build --release`; never built here, so that a run
#   measures the binary you already have);
# - the default model, through scripts/fetch-model.sh (unless --model is given);
# - a virtual environment with torch, transformers, peft and safetensors, created once in the
#   cache and reused (scripts/torch-venv.sh). Nothing is fetched from a model hub: the
#   PyTorch side loads lamina's own conversion of the GGUF model.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

for arg in "$@"; do
    if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
        exec python3 "$ROOT/scripts/bench_vs_pytorch.py" --help
    fi
done

LAMINA_BIN="${LAMINA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/lamina}"
if [ ! -x "$LAMINA_BIN" ]; then
    echo "bench-vs-pytorch: $LAMINA_BIN not found; build it first with \`cargo build --release\`" >&2
    echo "  (or point LAMINA_BIN at a lamina binary)" >&2
    exit 1
fi
export LAMINA_BIN

# The default model, unless the caller names one.
has_model=0
for arg in "$@"; do
    case "$arg" in
        --model|--model=*) has_model=1 ;;
    esac
done
model_args=()
if [ "$has_model" = 0 ]; then
    if [ -n "${LAMINA_MODEL:-}" ]; then
        model="$LAMINA_MODEL"
    elif ! model="$("$ROOT/scripts/fetch-model.sh")"; then
        echo "bench-vs-pytorch: could not fetch the default model (scripts/fetch-model.sh failed)" >&2
        exit 1
    fi
    model_args=(--model "$model")
fi

PY="$("$ROOT/scripts/torch-venv.sh")"

# Offline: the PyTorch side must load the local conversion and never reach for a model hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec "$PY" "$ROOT/scripts/bench_vs_pytorch.py" "${model_args[@]}" "$@"

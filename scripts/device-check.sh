#!/usr/bin/env bash
# Check lamina's run-time GPU backend on a machine with an NVIDIA GPU, the CUDA toolkit and
# cmake: build libggml-cuda.so from the vendored llama.cpp there, then run a bundle made here
# (scripts/package.sh) against it. Two phases, so the backend compiles while the rest of the
# inputs are still being copied to the machine:
#
#   scripts/device-check.sh prepare WORK    # unpack the bundle, start the CUDA build (detached)
#   scripts/device-check.sh run WORK OUT    # wait for it, then every check; log in OUT/
#
# WORK holds: llama-src.tgz (scripts/build-cuda-backend.sh --pack), bundle.tar (the directory
# from scripts/package.sh, optionally xz-compressed as bundle.tar.xz), model.gguf or its pieces
# model.gguf.part-* (joined in name order), text.txt (for the CPU/GPU comparison), and
# optionally compat/ (libraries to fall back on if the machine lacks them, e.g. libgomp).
# ARCH (default 90a) is the CUDA architecture to build for.
#
# Checks, in order: the bundle falls back to the CPU when no GPU backend is present and when
# the GPU library is broken; `lamina info` lists the CUDA device when the backend is given by
# LAMINA_BACKEND_PATH; greedy text on CPU and GPU; `lamina bench --gpu-layers 99` at pp512 and
# pp2048 (+ tg128) against a bare llama-cpp-2 loop on the same GPU; `lamina compare-devices`
# (teacher-forced top-1 agreement and mean KL, CPU vs GPU, each against the native f32
# engine, with FlashAttention on and off); the Python binding on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PHASE="${1:?usage: device-check.sh prepare WORK | run WORK OUT}"
WORK="$(mkdir -p "${2:?WORK directory}" && cd "$2" && pwd)"
B="$WORK/bundle"
CUDA="$WORK/cuda"

if [[ "$PHASE" == prepare ]]; then
    rm -rf "$B" "$CUDA" "$WORK/build.rc"
    mkdir -p "$B"
    if [[ -f "$WORK/bundle.tar.xz" ]]; then
        # Python's lzma stands in where xz is not installed.
        tar -xJf "$WORK/bundle.tar.xz" -C "$B" 2>/dev/null ||
            python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$WORK/bundle.tar.xz" "$B"
    else
        tar -xf "$WORK/bundle.tar" -C "$B"
    fi
    # A private copy of the build script: the checkout may be refreshed while it runs.
    cp "$ROOT/scripts/build-cuda-backend.sh" "$WORK/"
    # setsid: the build outlives this command; its status lands in build.rc.
    setsid nohup bash -c "bash '$WORK/build-cuda-backend.sh' --tgz '$WORK/llama-src.tgz' --out '$CUDA' --arch '${ARCH:-90a}'; echo \$? > '$WORK/build.rc'" \
        >"$WORK/build.log" 2>&1 </dev/null &
    echo "device-check: bundle unpacked in $B; CUDA backend building (log $WORK/build.log)"
    exit 0
fi

OUT="${3:?OUT directory}"
mkdir -p "$OUT"
LOG="$OUT/device-check.log"
exec > >(tee "$LOG") 2>&1
step() { printf '\n==> %s\n' "$*"; }
run() { # run a check, report its failure and carry on
    local rc
    timeout 300 "$@"
    rc=$?
    [[ $rc -ne 0 ]] && echo "device-check: FAILED (exit $rc): $*"
    return 0
}

if ls "$WORK"/model.gguf.part-* >/dev/null 2>&1; then
    cat "$WORK"/model.gguf.part-* > "$WORK/model.gguf" && rm -f "$WORK"/model.gguf.part-*
fi
MODEL="$WORK/model.gguf"
step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nvcc --version | tail -n 2
lscpu | grep -m1 'Model name'
sha256sum "$MODEL"
# The CUDA runtime libraries (libcudart, libcublas) the backend links to, where the toolkit
# keeps them, in case the system loader is not configured for them.
for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -d "$dir" ]] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$dir"
done
if [[ -d "$WORK/compat" ]] && ldd "$B/lamina" | grep -q 'not found'; then
    echo "using $WORK/compat for: $(ldd "$B/lamina" | grep 'not found' | tr -s ' ')"
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$WORK/compat"
fi

step "wait for the CUDA backend build"
for _ in $(seq 1 540); do [[ -f "$WORK/build.rc" ]] && break; sleep 1; done
cat "$WORK/build.log"
if [[ "$(cat "$WORK/build.rc" 2>/dev/null)" != 0 ]]; then
    echo "device-check: the CUDA backend did not build; only the CPU checks run"
fi

step "no GPU backend in the bundle: CPU fallback"
run "$B/lamina" info -m "$MODEL" -g 99
run "$B/lamina" generate -m "$MODEL" -g 99 -p "The capital of France is" --max-tokens 8

step "a broken libggml-cuda.so: skipped with its reason, CPU fallback"
mkdir -p "$WORK/broken" && head -c 4096 /dev/urandom > "$WORK/broken/libggml-cuda.so"
LAMINA_BACKEND_PATH="$WORK/broken" run "$B/lamina" info -m "$MODEL" -g 99

step "CUDA backend from LAMINA_BACKEND_PATH"
LAMINA_BACKEND_PATH="$CUDA" run "$B/lamina" info -m "$MODEL" -g 99

# From here on the backend ships inside the bundle, as an app would ship it.
cp "$CUDA/libggml-cuda.so" "$B/" 2>/dev/null

step "greedy text, CPU then GPU (free-running text may part ways after a near-tie)"
run "$B/lamina" generate -m "$MODEL" -p "The history of the printing press" --max-tokens 64
run "$B/lamina" generate -m "$MODEL" -g 99 -p "The history of the printing press" --max-tokens 64

step "bench: pp512 + tg128 on the GPU, lamina vs bare llama-cpp-2"
run "$B/lamina" bench -m "$MODEL" -g 99 --prompt-tokens 512 --gen-tokens 128 --reps "${REPS:-5}"
step "bench: pp2048 + tg128 on the GPU"
run "$B/lamina" bench -m "$MODEL" -g 99 --prompt-tokens 2048 --gen-tokens 128 --reps "${REPS:-5}"

step "compare-devices: teacher-forced logits, CPU vs GPU, each also against the native f32 engine"
run "$B/lamina" compare-devices -m "$MODEL" -g 99 -f "$WORK/text.txt" --chunk 512 --chunks 16 --native-reference
step "compare-devices with FlashAttention off on both sides"
run "$B/lamina" compare-devices -m "$MODEL" -g 99 -f "$WORK/text.txt" --chunk 512 --chunks 16 --native-reference --flash-attn off

step "Python binding on the GPU"
LAMINA_LIBRARY="$B/liblamina_ffi.so" PYTHONPATH="$ROOT/bindings/python" run python3 - "$MODEL" <<'PY'
import sys, lamina
info = lamina.backends()
print("loaded:", [(b["name"], b["path"]) for b in info["loaded"]])
print("devices:", [(d["name"], d["kind"], d["description"]) for d in info["devices"]])
model = lamina.Model(sys.argv[1], n_gpu_layers=99)
print("gpu_layers:", model.info["gpu_layers"])
PY

step "done"
sleep 1

#!/usr/bin/env bash
# Build llama.cpp's CUDA backend as a loadable library (libggml-cuda.so) for a lamina build
# with dynamic backends (`--features dynamic-backends`, see README "Shipping with optional GPU
# backends"). The library must come from exactly the llama.cpp that lamina was built with:
# by default this script takes the sources that the llama-cpp-sys-2 crate pinned in
# Cargo.lock vendors (from cargo's registry cache).
#
#   scripts/build-cuda-backend.sh [--arch ARCHS] [--src DIR | --tgz FILE] [--out DIR] [--jobs N] [--no-fa]
#   scripts/build-cuda-backend.sh --pack FILE      # only write the vendored sources as a .tgz
#
#   --arch   CMAKE_CUDA_ARCHITECTURES, e.g. 90a (H100/H200), 89 (L4, RTX 40xx), 86 (A10,
#            RTX 30xx), 80 (A100), or a list "80;86;89;90a". Default: 90a.
#   --src    a llama.cpp source tree (the vendored copy, unpacked) instead of cargo's cache
#   --tgz    the same as a .tgz written by --pack (for a build machine without cargo)
#   --out    where to put libggml-cuda.so (default: target/backends/cuda)
#   --jobs   parallel compile jobs (default: all cores)
#   --no-fa  skip the FlashAttention kernels (builds in about half the time; llama.cpp then
#            runs attention without them, slower on long prompts)
#
# Needs cmake and the CUDA toolkit (nvcc, cuBLAS) on the build machine; the machine that
# runs lamina needs the NVIDIA driver and the CUDA runtime libraries (libcudart, libcublas)
# of the same major version. Ship the resulting libggml-cuda.so beside liblamina_ffi.so /
# the lamina executable, or point LAMINA_BACKEND_PATH at it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

ARCH=90a
SRC=""
TGZ=""
OUT="$ROOT/target/backends/cuda"
JOBS="$(nproc 2>/dev/null || echo 4)"
FA=ON
PACK=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --arch) ARCH="$2"; shift 2 ;;
        --src) SRC="$2"; shift 2 ;;
        --tgz) TGZ="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --no-fa) FA=OFF; shift ;;
        --pack) PACK="$2"; shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "build-cuda-backend: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The llama.cpp tree vendored by the llama-cpp-sys-2 version in Cargo.lock.
vendored_source() {
    local version dir
    version="$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/[" ]/, ""); sub(/version=/, ""); print; exit }' Cargo.lock)"
    if [[ -z "$version" ]]; then
        echo "build-cuda-backend: llama-cpp-sys-2 is not in Cargo.lock" >&2
        return 1
    fi
    # Make sure cargo has the crate's sources, then find them in the registry cache.
    cargo fetch --locked >/dev/null 2>&1 || true
    dir="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$version"/llama.cpp 2>/dev/null | head -n 1)"
    if [[ -z "$dir" || ! -f "$dir/CMakeLists.txt" ]]; then
        echo "build-cuda-backend: the sources of llama-cpp-sys-2 $version are not in cargo's cache; run \`cargo fetch\`" >&2
        return 1
    fi
    echo "$dir"
}

if [[ -n "$PACK" ]]; then
    SRC="$(vendored_source)"
    # What a CMake build of the libraries needs; tests, tools, models and docs stay behind.
    tar -czf "$PACK" -C "$SRC" CMakeLists.txt LICENSE cmake ggml include src vendor common
    echo "build-cuda-backend: wrote $PACK ($(du -h "$PACK" | cut -f1)) from $SRC"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [[ -n "$TGZ" ]]; then
    mkdir -p "$WORK/src"
    tar -xzf "$TGZ" -C "$WORK/src"
    SRC="$WORK/src"
elif [[ -z "$SRC" ]]; then
    SRC="$(vendored_source)"
fi
if ! command -v nvcc >/dev/null && [[ -x /usr/local/cuda/bin/nvcc ]]; then
    export PATH="$PATH:/usr/local/cuda/bin"
fi
for tool in cmake nvcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-cuda-backend: $tool is not on PATH (the CUDA backend needs cmake and the CUDA toolkit)" >&2
        exit 1
    fi
done

echo "build-cuda-backend: llama.cpp from $SRC, CUDA architectures $ARCH, FlashAttention kernels $FA, $JOBS jobs"
# The same shape of build as llama-cpp-sys-2's `dynamic-backends` feature (shared libraries,
# GGML_BACKEND_DL), with only the CUDA backend enabled and nothing but the libraries built.
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF \
    -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DGGML_CUDA_FA="$FA" -DGGML_CUDA_NCCL=OFF \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_MTMD=OFF \
    -DLLAMA_OPENSSL=OFF >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log" >&2; exit 1; }
start=$SECONDS
cmake --build "$WORK/build" --target ggml-cuda -j "$JOBS" >"$WORK/build.log" 2>&1 || { tail -n 60 "$WORK/build.log" >&2; exit 1; }
lib="$(find "$WORK/build" -name 'libggml-cuda.so' -type f | head -n 1)"
if [[ -z "$lib" ]]; then
    echo "build-cuda-backend: the build finished but produced no libggml-cuda.so" >&2
    exit 1
fi
mkdir -p "$OUT"
cp "$lib" "$OUT/libggml-cuda.so"
echo "build-cuda-backend: $OUT/libggml-cuda.so ($(du -h "$OUT/libggml-cuda.so" | cut -f1)) built in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Build llama.cpp's own `llama-bench`, outside lamina, from exactly the llama.cpp sources that
# lamina's llama-cpp-sys-2 (the version in Cargo.lock) vendors, in two configurations:
#
#   release   llama.cpp's release configuration: GGML_BACKEND_DL=ON GGML_CPU_ALL_VARIANTS=ON
#             BUILD_SHARED_LIBS=ON (the best CPU variant is chosen at run time)
#   native    GGML_NATIVE=ON: one CPU backend compiled for this machine (-march=native)
#
# so that `lamina bench --llama-bench DIR/release/bin/llama-bench --llama-bench
# DIR/native/bin/llama-bench` compares lamina with the best a user could build from the same
# llama.cpp. The crate carries every library source (ggml, llama, common) but not the tool's
# driver: tools/llama-bench/ comes from the llama-cpp-python sdist (a pinned version, fetched
# with pip into the cache); only that driver differs in version, not a line of the kernels.
#
#   scripts/build-llama-bench.sh [--out DIR] [--config release|native|both] [--jobs N]
#
# Default DIR: $LAMINA_CACHE/llama-bench (~/.cache/lamina/llama-bench). A configuration already
# built is kept (delete its directory to rebuild). Not part of CI: each configuration is a
# full llama.cpp build (about 5-15 minutes on 2 cores). Needs cmake and a C++ compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

SDIST_VERSION="0.3.36" # llama-cpp-python; its vendor/llama.cpp/tools/llama-bench/
CACHE="${LAMINA_CACHE:-$HOME/.cache/lamina}"
OUT="$CACHE/llama-bench"
CONFIGS=(release native)
JOBS="$(nproc)"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --config)
            case "$2" in
                release|native) CONFIGS=("$2") ;;
                both) CONFIGS=(release native) ;;
                *) echo "build-llama-bench: --config is release, native or both" >&2; exit 2 ;;
            esac
            shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "build-llama-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

# The llama.cpp that lamina links: llama-cpp-sys-2's crate source, at the version Cargo.lock pins.
SYS_VERSION="$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
[[ -n "$SYS_VERSION" ]] || { echo "build-llama-bench: llama-cpp-sys-2 is not in Cargo.lock" >&2; exit 1; }
find_crate() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$SYS_VERSION"/llama.cpp 2>/dev/null | head -n 1; }
LLAMA_SRC="$(find_crate)"
if [[ -z "$LLAMA_SRC" ]]; then
    cargo fetch --locked >/dev/null
    LLAMA_SRC="$(find_crate)"
fi
[[ -d "$LLAMA_SRC" ]] || { echo "build-llama-bench: llama-cpp-sys-2 $SYS_VERSION sources not found" >&2; exit 1; }

# The tool's driver from the llama-cpp-python sdist (downloaded once, without building it).
TOOL_DIR="$CACHE/llama-bench/tool-$SDIST_VERSION"
if [[ ! -f "$TOOL_DIR/llama-bench.cpp" ]]; then
    DL="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d "$DL" "llama-cpp-python==$SDIST_VERSION"
    mkdir -p "$TOOL_DIR"
    tar -xzf "$DL/llama_cpp_python-$SDIST_VERSION.tar.gz" -C "$DL" --wildcards "*/vendor/llama.cpp/tools/llama-bench/*"
    cp "$DL/llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/tools/llama-bench/"* "$TOOL_DIR/"
    rm -rf "$DL"
fi

# A source tree: the crate's llama.cpp with only llama-bench under tools/.
SRC="$OUT/src-$SYS_VERSION"
if [[ ! -f "$SRC/tools/llama-bench/llama-bench.cpp" ]]; then
    rm -rf "$SRC"
    mkdir -p "$OUT"
    cp -r "$LLAMA_SRC" "$SRC"
    rm -rf "$SRC/tools/llama-bench"
    cp -r "$TOOL_DIR" "$SRC/tools/llama-bench"
    printf 'find_package(Threads REQUIRED)\nllama_add_compile_flags()\nadd_subdirectory(llama-bench)\n' > "$SRC/tools/CMakeLists.txt"
fi

# The one change to llama.cpp's own build: cmake/gcc-amx-tile-config.h, force-included as in
# lamina's build, gives GCC correct AMX tile-configuration intrinsics. Without it a GCC-built
# llama-bench dies with SIGILL in ggml's AMX kernels on Sapphire Rapids (both configurations);
# with clang, or on processors without AMX, the header changes nothing.
AMX_FIX="-include $ROOT/cmake/gcc-amx-tile-config.h"
COMMON=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=ON
    "-DCMAKE_C_FLAGS=$AMX_FIX" "-DCMAKE_CXX_FLAGS=$AMX_FIX")
for config in "${CONFIGS[@]}"; do
    BUILD="$OUT/$config"
    if [[ -x "$BUILD/bin/llama-bench" ]]; then
        echo "build-llama-bench: $config already built: $BUILD/bin/llama-bench"
        continue
    fi
    case "$config" in
        release) FLAGS=(-DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF) ;;
        native) FLAGS=(-DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF) ;;
    esac
    echo "build-llama-bench: $config (llama.cpp of llama-cpp-sys-2 $SYS_VERSION, llama-bench of llama-cpp-python $SDIST_VERSION)"
    cmake -S "$SRC" -B "$BUILD" "${COMMON[@]}" "${FLAGS[@]}" >"$OUT/$config-configure.log"
    cmake --build "$BUILD" -j "$JOBS" >"$OUT/$config-build.log" 2>&1 || {
        tail -n 30 "$OUT/$config-build.log" >&2
        exit 1
    }
    echo "build-llama-bench: $BUILD/bin/llama-bench"
done
echo "compare with: target/release/lamina bench -t 2$(for c in "${CONFIGS[@]}"; do printf ' --llama-bench %s' "$OUT/$c/bin/llama-bench"; done)"

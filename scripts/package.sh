#!/usr/bin/env bash
# Build lamina (release) and assemble a relocatable bundle: one directory that an application
# ships as is.
#
#   scripts/package.sh [--out DIR] [--no-build] [--keep-debug] [--with FILE]...
#
#   DIR/lamina              the command-line tool
#   DIR/liblamina_ffi.so    the C ABI (include/lamina.h is copied to DIR/include/, with the
#                           C++17 interface include/lamina.hpp)
#   DIR/libllama.so.0, libggml.so.0, libggml-base.so.0     llama.cpp, found through rpath $ORIGIN
#   DIR/libggml-cpu-*.so    the CPU backend, one library per x86 level; the best for the host
#                           processor is chosen at run time
#   DIR/<FILE>              extra backends given with --with (e.g. a libggml-cuda.so made by
#                           scripts/build-cuda-backend.sh)
#   DIR/lib/pkgconfig/lamina.pc   for pkg-config (PKG_CONFIG_PATH=DIR/lib/pkgconfig)
#   DIR/lib/cmake/lamina/   for CMake's find_package(lamina) (CMAKE_PREFIX_PATH=DIR), target
#                           lamina::lamina; both describe paths relative to themselves
#
# The executable and the library carry an rpath of $ORIGIN, so the directory can move; lamina
# looks for backends beside itself (see README "Shipping with optional GPU backends").
# Default DIR: target/dist/lamina-VERSION-linux-ARCH. Debug info is stripped unless
# --keep-debug. The bundle is made from the ordinary release build in target/release, which
# already has this layout (runtime/build.rs puts llama.cpp's libraries beside the binaries);
# --no-build packages that build as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

VERSION="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"
OUT="$ROOT/target/dist/lamina-$VERSION-linux-$(uname -m)"
BUILD=1
STRIP=1
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep-debug) STRIP=0; shift ;;
        --with) EXTRA+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "package: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

REL="${CARGO_TARGET_DIR:-$ROOT/target}/release"
if [[ "$BUILD" -eq 1 ]]; then
    cargo build --release -p lamina-cli -p lamina-ffi
fi
if [[ ! -x "$REL/lamina" || ! -f "$REL/liblamina_ffi.so" || ! -e "$REL/libllama.so.0" ]] || ! ls "$REL"/libggml-cpu-*.so >/dev/null 2>&1; then
    echo "package: no release build with run-time backends in $REL (run without --no-build)" >&2
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT/include"
copy() { # copy SRC DEST, dereferencing links, stripping debug info unless --keep-debug
    if [[ "$STRIP" -eq 1 ]]; then
        strip --strip-debug -o "$2" "$1"
    else
        cp -L "$1" "$2"
    fi
}
copy "$REL/lamina" "$OUT/lamina"
copy "$REL/liblamina_ffi.so" "$OUT/liblamina_ffi.so"
# The llama.cpp libraries under the names the binaries ask for (their sonames).
for lib in libllama.so.0 libggml.so.0 libggml-base.so.0; do
    copy "$REL/$lib" "$OUT/$lib"
done
for lib in "$REL"/libggml-*.so; do
    [[ "$(basename "$lib")" == libggml-base.so ]] && continue
    copy "$lib" "$OUT/$(basename "$lib")"
done
for extra in "${EXTRA[@]}"; do
    copy "$extra" "$OUT/$(basename "$extra")"
done
cp include/lamina.h include/lamina.hpp "$OUT/include/"
# Build-system descriptions (packaging/): their paths are relative to their own location, so
# they keep working when the bundle moves; the libraries stay flat in the bundle's root.
mkdir -p "$OUT/lib/pkgconfig" "$OUT/lib/cmake/lamina"
sed "s/@VERSION@/$VERSION/g" packaging/lamina.pc.in >"$OUT/lib/pkgconfig/lamina.pc"
cp packaging/lamina-config.cmake "$OUT/lib/cmake/lamina/"
sed -e "s/@VERSION@/$VERSION/g" -e "s/@SIZEOF_VOID_P@/$(( $(getconf LONG_BIT) / 8 ))/g" \
    packaging/lamina-config-version.cmake.in >"$OUT/lib/cmake/lamina/lamina-config-version.cmake"
echo "package: $OUT ($(du -sh "$OUT" | cut -f1))"

#!/usr/bin/env bash
# Test the C++ interface (include/lamina.hpp) and lamina's use as an installed library, against
# the release build of lamina-ffi.
#
#   cargo build --release        # first (this script does not build the Rust code)
#   scripts/fetch-model.sh       # the default model the tests and examples use
#   bash scripts/cpp-tests.sh
#
# 1. Compiles tests/cpp/test_lamina_hpp.cc with -std=c++17 -Wall -Wextra -Werror -pedantic and
#    runs it, then again built with AddressSanitizer, UndefinedBehaviorSanitizer and
#    LeakSanitizer (liblamina_ffi and llama.cpp are not instrumented, but their allocations go
#    through the sanitizer's allocator, so a string or buffer the header fails to free is
#    reported).
# 2. Assembles a bundle with `scripts/package.sh --no-build` in a temporary directory and, with
#    nothing but that bundle, builds examples/pkgconfig (PKG_CONFIG_PATH) and examples/cmake
#    (CMAKE_PREFIX_PATH, find_package(lamina)), runs the three programs they make and checks
#    that each prints a greedy continuation, the same bytes from all three, linked to the
#    bundle's library. Also checks the CMake package's version rule and that the bundle's
#    pkg-config and CMake files follow it when it moves.
# Exits nonzero on any failure. Test binaries go to target/cpp-tests/.
# Environment: CC (default cc), CXX (default c++), LAMINA_MODEL (model path override),
# CPP_TESTS_THREADS=N: threads of the example programs (default 1: fast on a busy machine;
# greedy output does not depend on it).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIBDIR="$ROOT/target/release"
CC="${CC:-cc}"
CXX="${CXX:-c++}"
THREADS="${CPP_TESTS_THREADS:-1}"
BUILD="$ROOT/target/cpp-tests"
PROMPT="The capital of France is"
VERSION="$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)"

step() { printf '\n== %s   [%d s]\n' "$*" "$SECONDS"; }
fail() {
    echo "cpp-tests: FAIL: $*" >&2
    exit 1
}
# Prints a command, then runs it.
run() {
    echo "+ $*"
    "$@"
}

missing=0
if [[ ! -e "$LIBDIR/liblamina_ffi.so" ]]; then
    echo "cpp-tests: $LIBDIR/liblamina_ffi.so is missing; run \`cargo build --release\` first" >&2
    missing=1
fi
for tool in "$CC" "$CXX" cmake make pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            pkg-config) echo "cpp-tests: pkg-config is not installed (Debian: apt-get install pkgconf); it is needed to check lamina.pc" >&2 ;;
            cmake) echo "cpp-tests: cmake is not installed (scripts/setup.sh installs it)" >&2 ;;
            *) echo "cpp-tests: $tool is not installed" >&2 ;;
        esac
        missing=1
    fi
done
if [[ "$missing" -ne 0 ]]; then
    exit 1
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$BUILD"

CXXFLAGS=(-std=c++17 -Wall -Wextra -Werror -pedantic -pthread -I "$ROOT/include")
LDFLAGS=(-L "$LIBDIR" -llamina_ffi "-Wl,-rpath,$LIBDIR")
SAN_FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined)

# ----------------------------------------------------------------------------------------------
# 1. The C++ interface

step "compile tests/cpp/test_lamina_hpp.cc, as built and under ASan/UBSan (in parallel)"
echo "$CXX ${CXXFLAGS[*]} -O1 tests/cpp/test_lamina_hpp.cc -> target/cpp-tests/test_lamina_hpp"
"$CXX" "${CXXFLAGS[@]}" -O1 tests/cpp/test_lamina_hpp.cc -o "$BUILD/test_lamina_hpp" "${LDFLAGS[@]}" &
plain=$!
echo "$CXX ${CXXFLAGS[*]} ${SAN_FLAGS[*]} tests/cpp/test_lamina_hpp.cc -> target/cpp-tests/test_lamina_hpp_asan"
"$CXX" "${CXXFLAGS[@]}" "${SAN_FLAGS[@]}" tests/cpp/test_lamina_hpp.cc -o "$BUILD/test_lamina_hpp_asan" "${LDFLAGS[@]}" &
asan=$!
plain_rc=0 asan_rc=0
wait "$plain" || plain_rc=$?
wait "$asan" || asan_rc=$?
if (( plain_rc != 0 || asan_rc != 0 )); then
    fail "compiling the C++ test (as built: exit $plain_rc, with sanitizers: exit $asan_rc)"
fi

step "test_lamina_hpp"
"$BUILD/test_lamina_hpp" tests/data || fail "test_lamina_hpp"

step "test_lamina_hpp under ASan/UBSan/LSan"
ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$BUILD/test_lamina_hpp_asan" tests/data || fail "test_lamina_hpp under the sanitizers"

# ----------------------------------------------------------------------------------------------
# 2. Installed like other libraries: a bundle, pkg-config, CMake

step "bundle"
B="$TMP/bundle"
run bash scripts/package.sh --no-build --out "$B"
for f in liblamina_ffi.so include/lamina.h include/lamina.hpp lib/pkgconfig/lamina.pc \
    lib/cmake/lamina/lamina-config.cmake lib/cmake/lamina/lamina-config-version.cmake; do
    [[ -f "$B/$f" ]] || fail "the bundle has no $f"
done
echo "bundle has include/lamina.hpp, lib/pkgconfig/lamina.pc, lib/cmake/lamina/"

# The examples' output: a non-empty greedy continuation. Prints it.
check_output() { # NAME FILE
    if [[ -z "$(tr -d '[:space:]' <"$2")" ]]; then
        fail "$1 printed no text"
    fi
    printf '%s: %s\n' "$1" "$(head -n 1 "$2")"
}
# The program must ask for liblamina_ffi.so by name (the library has no SONAME: linked by its
# path, a program would record that absolute path) and load it from the bundle, not from
# target/release.
check_linked_to_bundle() { # PROGRAM
    local needed lib
    needed="$(readelf -d "$1" | awk '/NEEDED/ && /liblamina_ffi/ { print $NF }')"
    if [[ "$needed" != "[liblamina_ffi.so]" ]]; then
        fail "$(basename "$1") records its dependency on lamina as $needed, not [liblamina_ffi.so]"
    fi
    lib="$(ldd "$1" | awk '/liblamina_ffi\.so/ { print $3 }')"
    if [[ "$lib" != "$B"/* ]]; then
        fail "$(basename "$1") loads liblamina_ffi.so from '$lib', not from the bundle $B"
    fi
    echo "$(basename "$1") needs $needed, loads $lib"
}

step "pkg-config (examples/pkgconfig)"
export PKG_CONFIG_PATH="$B/lib/pkgconfig"
modversion="$(pkg-config --modversion lamina)"
[[ "$modversion" == "$VERSION" ]] || fail "pkg-config --modversion lamina is '$modversion', Cargo.toml says $VERSION"
echo "pkg-config --modversion lamina: $modversion"
echo "pkg-config --cflags --libs lamina: $(pkg-config --cflags --libs lamina)"
run make --no-print-directory -C examples/pkgconfig BUILD="$TMP/pkgconfig" CC="$CC"
check_linked_to_bundle "$TMP/pkgconfig/generate"
"$TMP/pkgconfig/generate" --threads "$THREADS" --max-tokens 12 "$PROMPT" >"$TMP/pkgconfig.out" \
    || fail "the pkg-config example exited with an error"
check_output "pkgconfig/generate" "$TMP/pkgconfig.out"
unset PKG_CONFIG_PATH

step "CMake (examples/cmake)"
echo "+ cmake -S examples/cmake -B $TMP/cmake -DCMAKE_PREFIX_PATH=$B -DCMAKE_BUILD_TYPE=Release"
cmake -S examples/cmake -B "$TMP/cmake" -DCMAKE_PREFIX_PATH="$B" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" >"$TMP/cmake-configure.log" 2>&1 \
    || { cat "$TMP/cmake-configure.log" >&2; fail "configuring the CMake example"; }
grep -F -- "-- lamina $VERSION from $B/lib/cmake/lamina" "$TMP/cmake-configure.log" \
    || { cat "$TMP/cmake-configure.log" >&2; fail "find_package(lamina) did not find version $VERSION in the bundle"; }
echo "+ cmake --build $TMP/cmake -j 2"
cmake --build "$TMP/cmake" -j 2 >"$TMP/cmake-build.log" 2>&1 \
    || { cat "$TMP/cmake-build.log" >&2; fail "building the CMake example"; }
for prog in generate_cpp generate_c; do
    check_linked_to_bundle "$TMP/cmake/$prog"
    "$TMP/cmake/$prog" --threads "$THREADS" --max-tokens 12 "$PROMPT" >"$TMP/$prog.out" \
        || fail "the CMake example $prog exited with an error"
    check_output "cmake/$prog" "$TMP/$prog.out"
done
# Greedy output is deterministic: the C++ interface, the C ABI by CMake and by pkg-config agree.
cmp -s "$TMP/generate_c.out" "$TMP/pkgconfig.out" || fail "cmake/generate_c and pkgconfig/generate printed different text"
cmp -s "$TMP/generate_cpp.out" "$TMP/generate_c.out" || fail "cmake/generate_cpp (lamina.hpp) and generate_c (lamina.h) printed different text"
echo "the three programs printed the same $(wc -c <"$TMP/generate_c.out") bytes"
# The C++ example reports lamina's errors as lamina::Error.
rc=0
"$TMP/cmake/generate_cpp" --model "$TMP/no-such-model.gguf" >/dev/null 2>"$TMP/err.txt" || rc=$?
if [[ "$rc" -ne 1 ]] || ! grep -q "^generate_cpp: LAMINA_STATUS_ERROR_MODEL_NOT_FOUND: .*no-such-model.gguf" "$TMP/err.txt"; then
    cat "$TMP/err.txt" >&2
    fail "generate_cpp with a missing model: exit $rc"
fi
echo "missing model -> exit 1: $(cat "$TMP/err.txt")"

step "CMake package version rule, and the bundle moved"
# A project with no languages: configuring it only runs find_package (about a second).
mkdir -p "$TMP/probe"
cat >"$TMP/probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(lamina_probe LANGUAGES NONE)
find_package(lamina ${WANT} REQUIRED)
get_target_property(location lamina::lamina IMPORTED_LOCATION)
get_target_property(includes lamina::lamina INTERFACE_INCLUDE_DIRECTORIES)
message(STATUS "lamina::lamina ${location} ${includes}")
EOF
probe() { # PREFIX WANT: configure the probe project, output in $TMP/probe.log
    rm -rf "$TMP/probe/build"
    cmake -S "$TMP/probe" -B "$TMP/probe/build" -DCMAKE_PREFIX_PATH="$1" -DWANT="$2" >"$TMP/probe.log" 2>&1
}
major_minor="${VERSION%.*}"
probe "$B" "$major_minor" || { cat "$TMP/probe.log" >&2; fail "find_package(lamina $major_minor) refused version $VERSION"; }
echo "find_package(lamina $major_minor): accepted"
if probe "$B" 99.0; then
    fail "find_package(lamina 99.0) accepted version $VERSION"
fi
grep -q "$VERSION" "$TMP/probe.log" || { cat "$TMP/probe.log" >&2; fail "the refusal of 99.0 does not name version $VERSION"; }
echo "find_package(lamina 99.0): refused"
mv "$B" "$TMP/moved"
M="$TMP/moved"
probe "$M" "" || { cat "$TMP/probe.log" >&2; fail "find_package(lamina) in the moved bundle"; }
grep -qF "lamina::lamina $M/liblamina_ffi.so $M/include" "$TMP/probe.log" \
    || { cat "$TMP/probe.log" >&2; fail "the moved bundle's lamina::lamina does not point into it"; }
echo "moved bundle: lamina::lamina -> $M/liblamina_ffi.so"
for var in includedir libdir; do
    dir="$(PKG_CONFIG_PATH="$M/lib/pkgconfig" pkg-config --variable="$var" lamina)"
    want="$M"
    [[ "$var" == includedir ]] && want="$M/include"
    [[ "$(cd "$dir" && pwd)" == "$want" ]] || fail "the moved bundle's lamina.pc gives $var=$dir"
    echo "moved bundle: lamina.pc $var=$dir"
done

printf '\ncpp-tests: all passed\n'

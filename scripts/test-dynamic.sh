#!/usr/bin/env bash
# Tests of the shipping layout of the release build (backends loaded at run time, the
# default): the relocatable bundle scripts/package.sh makes from target/release, its CPU
# backend loaded as a library, the choice of CPU variant, and what happens when backend
# libraries are missing or broken (a clear error or a CPU fallback, never a crash). No GPU is
# needed: a GPU backend whose driver is missing is imitated by a library that links to a
# library that is not there.
#
#   cargo build --release --workspace && scripts/test-dynamic.sh
#
# Called by scripts/test.sh after its build (it builds nothing itself, so CI compiles llama.cpp
# once). Needs the default model (scripts/fetch-model.sh) and a C compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CC="${CC:-cc}"

step() { printf '\n== %s\n' "$*"; }
fail() { echo "test-dynamic: FAIL: $*" >&2; exit 1; }

D="$ROOT/target/dist/dynamic-test"
bash scripts/package.sh --no-build --out "$D"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Run a command that must exit 0; keep its combined output in $OUTPUT.
ok() {
    local rc=0
    OUTPUT="$("$@" 2>&1)" || rc=$?
    [[ $rc -eq 0 ]] || { echo "$OUTPUT" >&2; fail "exit $rc: $*"; }
}
# Run a command that must fail cleanly: exit 1 (not a signal), message matching $1.
fails_with() {
    local pattern="$1" rc=0
    shift
    OUTPUT="$("$@" 2>&1)" || rc=$?
    [[ $rc -eq 1 ]] || { echo "$OUTPUT" >&2; fail "expected exit 1, got $rc: $*"; }
    grep -q -- "$pattern" <<<"$OUTPUT" || { echo "$OUTPUT" >&2; fail "expected \"$pattern\" from: $*"; }
}
contains() { grep -q -- "$1" <<<"$OUTPUT" || { echo "$OUTPUT" >&2; fail "expected \"$1\""; }; }
# A copy of the bundle in $TMP/$1 (the original stays untouched).
bundle_copy() { rm -rf "$TMP/$1"; cp -r "$D" "$TMP/$1"; echo "$TMP/$1"; }
PROMPT=(-p "The capital of France is" --max-tokens 8 -t 2)

step "the bundle loads its CPU backend from beside the executable"
ok "$D/lamina" info
contains "backends      loaded at run time"
contains "CPU         $D/libggml-cpu-"
ok "$D/lamina" generate "${PROMPT[@]}"
contains "Paris"
# The same from outside the bundle's directory, through a symlink-free path and another cwd.
(cd "$TMP" && ok "$D/lamina" generate "${PROMPT[@]}" && contains "Paris")

step "no CPU backend anywhere: a clear error, no crash"
B="$(bundle_copy no-cpu)"
rm "$B"/libggml-cpu-*.so
fails_with "no CPU backend is loaded" "$B/lamina" generate "${PROMPT[@]}"
contains "libggml-cpu"
ok "$B/lamina" --help

step "a processor that no CPU variant in the bundle supports: a clear error, no crash"
if grep -qw amx_int8 /proc/cpuinfo; then
    echo "(skipped: this processor has AMX-INT8, so every x86 variant runs here)"
else
    B="$(bundle_copy amx-only)"
    find "$B" -name 'libggml-cpu-*.so' ! -name 'libggml-cpu-sapphirerapids.so' -delete
    fails_with "no CPU backend is loaded" "$B/lamina" generate "${PROMPT[@]}"
    ok "$B/lamina" --help
fi

step "CPU variants whose instructions may not be used are skipped with the reason"
ok env LAMINA_CPU_DISABLE=avx512,amx "$D/lamina" info
if grep -qw avx512f /proc/cpuinfo; then
    contains "skipped     $D/libggml-cpu-skylakex.so: avx512 is disabled by LAMINA_CPU_DISABLE"
fi
contains "CPU         $D/libggml-cpu-"
if grep -qE "CPU +$D/libggml-cpu-(skylakex|cannonlake|cascadelake|icelake|cooperlake|zen4|sapphirerapids)\.so" <<<"$OUTPUT"; then
    echo "$OUTPUT" >&2
    fail "an AVX-512 variant was loaded although avx512 is disabled"
fi
ok env LAMINA_CPU_DISABLE=avx512,amx "$D/lamina" generate "${PROMPT[@]}"
contains "Paris"
ok env LAMINA_CPU_DISABLE=avx "$D/lamina" info
contains "CPU         $D/libggml-cpu-sse42.so"
ok env LAMINA_CPU_DISABLE=avx "$D/lamina" generate "${PROMPT[@]}"
contains "Paris"

step "AMX: the sapphirerapids variant's tile kernels run prompts and agree with AVX-512"
# Prompts of more than one token go through ggml's AMX tile kernels. Built by a compiler that
# drops the tile shapes (cmake/gcc-amx-tile-config.h), this crashed with SIGILL at the first
# tile load; miscompiled otherwise, the perplexity would be far off the other variant's.
if grep -qw amx_int8 /proc/cpuinfo && ok "$D/lamina" info && grep -q "CPU         $D/libggml-cpu-sapphirerapids.so" <<<"$OUTPUT"; then
    head -c 12000 README.md > "$TMP/amx-text.txt"
    ppl() { sed -n 's/^llama *PPL = \([0-9.]*\).*/\1/p' <<<"$OUTPUT"; }
    ok "$D/lamina" perplexity --file "$TMP/amx-text.txt" --ctx 512 -t 2
    amx="$(ppl)"
    ok env LAMINA_CPU_DISABLE=amx "$D/lamina" perplexity --file "$TMP/amx-text.txt" --ctx 512 -t 2
    avx512="$(ppl)"
    echo "perplexity: AMX $amx, without AMX $avx512"
    python3 -c "import sys; a, b = float('$amx'), float('$avx512'); sys.exit(abs(a - b) / b > 0.005)" \
        || fail "the AMX variant's perplexity $amx is more than 0.5% from $avx512 without AMX"
else
    echo "(skipped: no usable AMX here, so the sapphirerapids variant is not the one loaded)"
fi

step "... and LAMINA_BACKEND_PATH or --backend-path supplies one"
ok env LAMINA_BACKEND_PATH="$D" "$B/lamina" generate "${PROMPT[@]}"
contains "Paris"
ok "$B/lamina" generate --backend-path "$D" "${PROMPT[@]}"
contains "Paris"

step "a broken GPU library and a truncated CPU variant are skipped with their reasons"
B="$(bundle_copy broken)"
head -c 4096 /dev/urandom > "$B/libggml-cuda.so"
first_cpu="$(ls "$D"/libggml-cpu-*.so | head -n 1)"
head -c 20000 "$first_cpu" > "$B/libggml-cpu-aaa.so"
ok "$B/lamina" info
contains "skipped     $B/libggml-cuda.so: invalid ELF header"
contains "skipped     $B/libggml-cpu-aaa.so"
contains "CPU         $B/libggml-cpu-"
ok "$B/lamina" generate -g 99 "${PROMPT[@]}"
contains "Paris"

step "a GPU backend whose driver is missing: skipped, the model runs on the CPU"
B="$(bundle_copy no-driver)"
printf 'int fake_driver_init(void) { return 0; }\n' > "$TMP/driver.c"
printf 'int fake_driver_init(void);\nint ggml_backend_score(void) { return fake_driver_init() + 1; }\n' > "$TMP/backend.c"
"$CC" -shared -fPIC -o "$TMP/libfakedriver.so" "$TMP/driver.c"
"$CC" -shared -fPIC -o "$B/libggml-fakegpu.so" "$TMP/backend.c" -L "$TMP" -lfakedriver
rm "$TMP/libfakedriver.so"
ok "$B/lamina" info -g 99
contains "skipped     $B/libggml-fakegpu.so: libfakedriver.so: cannot open shared object file"
contains "gpu layers    0 of 31 (no GPU device is loaded: running on the CPU)"

step "backend paths the host names: errors name the path and the reason"
fails_with "does not exist" "$D/lamina" info --backend-path "$TMP/nowhere"
fails_with "could not load $TMP/broken/libggml-cuda.so: invalid ELF header" "$D/lamina" info --backend-path "$TMP/broken/libggml-cuda.so"

step "C ABI against the bundle (dynamic branch of test_backends)"
"$CC" -std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -I "$ROOT/include" \
    -o "$TMP/test_backends" tests/c/test_backends.c -L "$D" -llamina_ffi "-Wl,-rpath,$D"
ok "$TMP/test_backends"
echo "$OUTPUT" | tail -n 1
contains " 0 failed"

step "Python against the bundle"
ok env LAMINA_LIBRARY="$D/liblamina_ffi.so" PYTHONPATH="$ROOT/bindings/python" python3 -c '
import lamina
report = lamina.backends()
assert report["dynamic"] is True, report
assert any(b["name"] == "CPU" and "libggml-cpu-" in b["path"] for b in report["loaded"]), report
try:
    lamina.load_backends("/nonexistent/backends")
    raise SystemExit("no error for a missing backend path")
except lamina.LaminaError as e:
    assert "does not exist" in str(e), e
print("python: dynamic backends ok")
'
contains "python: dynamic backends ok"

step "dynamic backends: all passed"

#!/usr/bin/env bash
# Build and run the C examples and the C-level tests against the release build of lamina-ffi.
#
#   cargo build --release        # first (this script does not build the Rust code)
#   scripts/fetch-model.sh       # the default model the tests and examples use
#   bash scripts/c-tests.sh
#
# Compiles examples/c/*.c into examples/c/build/ and tests/c/* into tests/c/build/ with
# strict warnings (C99 and C++11), then runs: the ABI test program, the C++ header test, the
# evaluation test program (metrics and lamina_evaluate on small made-up data), the LoRA adapter
# test program (adapters it writes itself, applied to the default model), the LoRA training
# test program (a tiny budget on tests/data/made_up_facts.jsonl), the backend test program
# (lamina_backends_json and lamina_backends_load, checked for whichever kind of build this is,
# then the default model loaded with n_gpu_layers = 99), the generate example (whose stdout
# must be byte-identical to the `lamina generate` CLI's), the chat example with two turns, the
# tasks example, the finetune example (3 steps, then the saved adapter answers a question), the pretrain
# example (8 steps of a model trained from scratch on the repository's Markdown, then a sample),
# and the soak test (tests/c/soak.c: 8 threads of generate, chat, cancel, adapter switches,
# session churn and evaluation on one model, as built and under AddressSanitizer). Exits
# nonzero on any failure.
# Environment: CC (default cc), CXX (default c++), LAMINA_MODEL (model path override),
# C_TESTS_THREADS=N: run the examples and the CLI with N threads (default: all cores, exactly
# the commands above). On a busy machine, C_TESTS_THREADS=1 is much faster: llama.cpp's
# spinning worker threads crawl when the cores are oversubscribed. The thread count does not
# change greedy output. (test_abi, test_eval and test_backends always use one thread per
# session.)
# C_TESTS_SANITIZE=1: also build test_abi and test_eval with AddressSanitizer,
# UndefinedBehaviorSanitizer and LeakSanitizer and run them.
# SOAK_SECONDS=S: how long the soak test runs, as built and under AddressSanitizer and
# LeakSanitizer at the same time (default 60; 0 skips both). The 10-minute run is
# `tests/c/build/soak --seconds 600`.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LIBDIR="$ROOT/target/release"
CLI="$LIBDIR/lamina"
CC="${CC:-cc}"
CXX="${CXX:-c++}"
EX_THREADS=()
CLI_THREADS=()
if [[ -n "${C_TESTS_THREADS:-}" ]]; then
    EX_THREADS=(--threads "$C_TESTS_THREADS")
    CLI_THREADS=(-t "$C_TESTS_THREADS")
fi

missing=0
for f in "$LIBDIR/liblamina_ffi.so" "$CLI"; do
    if [[ ! -e "$f" ]]; then
        echo "c-tests: $f is missing; run \`cargo build --release\` first" >&2
        missing=1
    fi
done
if [[ "$missing" -ne 0 ]]; then
    exit 1
fi

CFLAGS=(-std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -I "$ROOT/include")
CXXFLAGS=(-std=c++11 -Wall -Wextra -Werror -pedantic -I "$ROOT/include")
LDFLAGS=(-L "$LIBDIR" -llamina_ffi "-Wl,-rpath,$LIBDIR")

EX_BUILD="$ROOT/examples/c/build"
TEST_BUILD="$ROOT/tests/c/build"
mkdir -p "$EX_BUILD" "$TEST_BUILD"

step() { printf '\n== %s   [%d s]\n' "$*" "$SECONDS"; }

step "compile"
# All at once (two cores, a dozen small programs): each compiler's output is printed as it
# comes, and any failure fails the step after all have finished.
compile_pids=()
compile() {
    echo "$*"
    "$@" &
    compile_pids+=($!)
}
for src in examples/c/*.c; do
    compile "$CC" "${CFLAGS[@]}" "$src" -o "$EX_BUILD/$(basename "$src" .c)" "${LDFLAGS[@]}" -lm
done
for name in test_abi test_eval test_adapters test_train test_backends soak; do
    compile "$CC" "${CFLAGS[@]}" -pthread "tests/c/$name.c" -o "$TEST_BUILD/$name" "${LDFLAGS[@]}" -lm
done
compile "$CXX" "${CXXFLAGS[@]}" tests/c/header_cpp.cc tests/c/header_cpp2.cc -o "$TEST_BUILD/header_cpp" "${LDFLAGS[@]}"
SOAK_SECONDS="${SOAK_SECONDS:-60}"
SOAK_SAN=(-g -O1 -fno-omit-frame-pointer -fsanitize=address)
if [[ "$SOAK_SECONDS" != 0 ]]; then
    compile "$CC" "${CFLAGS[@]}" "${SOAK_SAN[@]}" -pthread tests/c/soak.c -o "$TEST_BUILD/soak_asan" "${LDFLAGS[@]}"
fi
compile_failed=0
for pid in "${compile_pids[@]}"; do
    wait "$pid" || compile_failed=1
done
if [[ "$compile_failed" -ne 0 ]]; then
    echo "c-tests: a program failed to compile (see above)" >&2
    exit 1
fi

step "test_abi"
"$TEST_BUILD/test_abi"

step "test_eval"
"$TEST_BUILD/test_eval"

step "test_adapters"
"$TEST_BUILD/test_adapters"

step "test_train"
"$TEST_BUILD/test_train"

step "test_backends"
"$TEST_BUILD/test_backends"

if [[ -n "${C_TESTS_SANITIZE:-}" ]]; then
    step "test_abi under ASan/UBSan/LSan"
    SAN_FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined)
    echo "$CC ${CFLAGS[*]} ${SAN_FLAGS[*]} -pthread tests/c/test_abi.c -> tests/c/build/test_abi_asan"
    "$CC" "${CFLAGS[@]}" "${SAN_FLAGS[@]}" -pthread tests/c/test_abi.c -o "$TEST_BUILD/test_abi_asan" "${LDFLAGS[@]}"
    ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$TEST_BUILD/test_abi_asan"
    step "test_eval under ASan/UBSan/LSan"
    echo "$CC ${CFLAGS[*]} ${SAN_FLAGS[*]} tests/c/test_eval.c -> tests/c/build/test_eval_asan"
    "$CC" "${CFLAGS[@]}" "${SAN_FLAGS[@]}" -pthread tests/c/test_eval.c -o "$TEST_BUILD/test_eval_asan" "${LDFLAGS[@]}" -lm
    ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$TEST_BUILD/test_eval_asan"
fi

if [[ "$SOAK_SECONDS" != 0 ]]; then
    # The plain and the ASan build run side by side: each checks its own outputs against its
    # own sequential references and its own memory, so sharing the CPU only slows both, and
    # the suite spends the soak's minute once instead of twice.
    step "soak: 8 threads for ${SOAK_SECONDS} s (generate, chat, cancel, adapters, sessions, evaluate), as built and under AddressSanitizer and LeakSanitizer, side by side"
    "$TEST_BUILD/soak" --seconds "$SOAK_SECONDS" --threads 8 >"$TEST_BUILD/soak.log" 2>&1 &
    plain=$!
    # The memory check is off under ASan: its allocator holds freed blocks in quarantine.
    ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0" "$TEST_BUILD/soak_asan" --seconds "$SOAK_SECONDS" --threads 8 --rss-check off >"$TEST_BUILD/soak_asan.log" 2>&1 &
    asan=$!
    plain_rc=0 asan_rc=0
    wait "$plain" || plain_rc=$?
    wait "$asan" || asan_rc=$?
    echo "--- soak (as built), exit status $plain_rc"
    cat "$TEST_BUILD/soak.log"
    echo "--- soak under AddressSanitizer, exit status $asan_rc"
    cat "$TEST_BUILD/soak_asan.log"
    if (( plain_rc != 0 || asan_rc != 0 )); then
        echo "c-tests: the soak test failed (as built: $plain_rc, under ASan: $asan_rc)" >&2
        exit 1
    fi
fi

step "header_cpp"
"$TEST_BUILD/header_cpp"

step "generate (compared byte for byte with the lamina CLI)"
PROMPT="The capital of France is"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$EX_BUILD/generate" ${EX_THREADS[@]+"${EX_THREADS[@]}"} "$PROMPT" >"$TMP/c.out"
"$CLI" generate ${CLI_THREADS[@]+"${CLI_THREADS[@]}"} --prompt "$PROMPT" --temperature 0 >"$TMP/cli.out"
if ! cmp -s "$TMP/c.out" "$TMP/cli.out"; then
    echo "c-tests: FAIL: examples/c/generate and \`lamina generate\` printed different bytes:" >&2
    cmp "$TMP/c.out" "$TMP/cli.out" >&2 || true
    diff -u --label "lamina generate (CLI)" --label "examples/c/generate" "$TMP/cli.out" "$TMP/c.out" >&2 || true
    exit 1
fi
if ! grep -q "Paris" "$TMP/c.out"; then
    echo "c-tests: FAIL: the greedy continuation of \"$PROMPT\" does not mention Paris:" >&2
    cat "$TMP/c.out" >&2
    exit 1
fi
echo "identical output ($(wc -c <"$TMP/c.out") bytes), mentions Paris:"
head -n 1 "$TMP/c.out"

# The error path: a missing model gives "generate: <status>: <message>" and exit status 1.
rc=0
"$EX_BUILD/generate" --model "$TMP/no-such-model.gguf" "$PROMPT" >"$TMP/err.out" 2>"$TMP/err.txt" || rc=$?
if [[ "$rc" -ne 1 ]] || ! grep -q "^generate: LAMINA_STATUS_ERROR_MODEL_NOT_FOUND: .*no-such-model.gguf" "$TMP/err.txt" \
    || [[ -s "$TMP/err.out" ]]; then
    echo "c-tests: FAIL: generate with a missing model: exit $rc, stderr:" >&2
    cat "$TMP/err.txt" >&2
    exit 1
fi
echo "missing model -> exit 1: $(cat "$TMP/err.txt")"

step "chat (two turns)"
"$EX_BUILD/chat" ${EX_THREADS[@]+"${EX_THREADS[@]}"} --max-tokens 48 --system "You are a helpful assistant." \
    "What is the capital of France?" "And what is the capital of Germany?" >"$TMP/chat.out" 2>"$TMP/chat.err" \
    || { cat "$TMP/chat.out" "$TMP/chat.err" >&2; echo "c-tests: FAIL: chat exited with an error" >&2; exit 1; }
cat "$TMP/chat.out"
cat "$TMP/chat.err" >&2
if ! grep -q "^\[turn 2: .* reused from the cache" "$TMP/chat.err"; then
    echo "c-tests: FAIL: chat did not report the cache reuse of the second turn" >&2
    exit 1
fi
if ! grep -q "Paris" "$TMP/chat.out" || ! grep -q "Berlin" "$TMP/chat.out"; then
    echo "c-tests: FAIL: the chat replies do not mention Paris and Berlin" >&2
    exit 1
fi
# Messages from stdin, one per line (the empty line is skipped), without a system prompt.
printf 'Hello!\n\nHow are you?\n' | "$EX_BUILD/chat" ${EX_THREADS[@]+"${EX_THREADS[@]}"} --max-tokens 8 \
    >"$TMP/chat-stdin.out" 2>"$TMP/chat-stdin.err" \
    || { cat "$TMP/chat-stdin.out" "$TMP/chat-stdin.err" >&2; echo "c-tests: FAIL: chat (stdin) exited with an error" >&2; exit 1; }
if [[ ! -s "$TMP/chat-stdin.out" ]] || ! grep -q "^\[turn 2: " "$TMP/chat-stdin.err" \
    || grep -q "^\[turn 3: " "$TMP/chat-stdin.err"; then
    echo "c-tests: FAIL: chat from stdin did not answer two messages" >&2
    cat "$TMP/chat-stdin.out" "$TMP/chat-stdin.err" >&2
    exit 1
fi
echo "(stdin mode: two replies)"

step "tasks"
"$EX_BUILD/tasks" ${EX_THREADS[@]+"${EX_THREADS[@]}"} | tee "$TMP/tasks.out"
if ! grep -q "^translate en->de" "$TMP/tasks.out" || ! grep -q "^  A: ..*" "$TMP/tasks.out"; then
    echo "c-tests: FAIL: tasks did not print a translation and an answer" >&2
    exit 1
fi

step "finetune (a tiny budget: the mechanics, not the learning)"
"$EX_BUILD/finetune" ${EX_THREADS[@]+"${EX_THREADS[@]}"} --steps 3 --rank 4 "$TMP/facts.gguf" | tee "$TMP/finetune.out"
if [[ ! -s "$TMP/facts.gguf" ]] || ! grep -q "^step   3/3 " "$TMP/finetune.out" \
    || ! grep -q "^validation loss after: " "$TMP/finetune.out" || ! grep -q "^A: ..*" "$TMP/finetune.out"; then
    echo "c-tests: FAIL: finetune did not train 3 steps, save the adapter and answer with it" >&2
    exit 1
fi

step "pretrain (a tiny budget: the mechanics, not the learning)"
# tests/data/prose.txt alone has too few documents for a train/validation/test split; the
# repository's own Markdown adds enough.
"$EX_BUILD/pretrain" ${EX_THREADS[@]+"${EX_THREADS[@]}"} --steps 8 "$TMP/pretrain" README.md ARCHITECTURE.md CHANGELOG.md docs tests/data/prose.txt | tee "$TMP/pretrain.out"
if [[ ! -s "$TMP/pretrain/run/model.gguf" ]] || ! grep -q "^step    8/8 " "$TMP/pretrain.out" \
    || ! grep -q '"end":"finished"' "$TMP/pretrain.out" || ! grep -q "^sample: The" "$TMP/pretrain.out"; then
    echo "c-tests: FAIL: pretrain did not train 8 steps, write the model and sample from it" >&2
    exit 1
fi

printf '\nc-tests: all passed\n'

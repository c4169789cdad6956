#!/usr/bin/env bash
# Fuzz lamina's parsers with libFuzzer (cargo-fuzz, nightly), each target for a time budget,
# then print each target's executions and coverage.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 600 s, every target)
#   FUZZ_PARALLEL=2 scripts/fuzz.sh ...                  (targets run two at a time)
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600 ...          (each stops after 10 M executions,
#                                                         or the time budget, what comes first)
#
# Sanitizers: `gguf` and `safetensors` reach lamina's SIMD dequantizers (unsafe code), so they
# run under AddressSanitizer; the other targets run only safe Rust, where bounds checks and
# overflow checks already catch what ASan would, so they run uninstrumented and 2-3x faster.
#
# New inputs go to fuzz/target/corpus/<target>; the checked-in seeds (fuzz/corpus/<target>)
# are only read. A failing input is kept by libFuzzer in fuzz/artifacts/<target>/ and the
# script reports it and fails: shrink it, fix the parser, and check it in under
# fuzz/regressions/<target>/, where `cargo test` in fuzz/ (run by CI) replays it (see
# fuzz/README.md). Logs: fuzz/target/logs/<target>.log.
# Needs: rustup's nightly toolchain and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

budget=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(gguf safetensors hf_config gguf_adapter peft_adapter train_records eval_records chat_template)
fi
parallel=${FUZZ_PARALLEL:-1}

dict_of() {
    case $1 in
        gguf|gguf_adapter) echo gguf.dict ;;
        chat_template) echo jinja.dict ;;
        *) echo json.dict ;;
    esac
}
sanitizer_of() {
    case $1 in
        gguf|safetensors) echo address ;;
        *) echo none ;;
    esac
}

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2; exit 1; }
mkdir -p target/logs
# One build per sanitizer, each in its own directory so that neither rebuilds the other.
for s in address none; do
    for t in "${targets[@]}"; do
        if [ "$(sanitizer_of "$t")" = "$s" ]; then
            cargo +nightly fuzz build -s "$s" --target-dir "target/fuzz-$s"
            break
        fi
    done
done

run_target() {
    local t=$1 s
    s=$(sanitizer_of "$t")
    mkdir -p "target/corpus/$t"
    # -timeout: one input running for 10 s is a hang; -rss_limit_mb: 2 GiB is out of proportion
    # for any input of at most -max_len bytes.
    if cargo +nightly fuzz run -s "$s" --target-dir "target/fuzz-$s" "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$budget" -runs="${FUZZ_RUNS:--1}" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -dict="$(dict_of "$t")" -print_final_stats=1 > "target/logs/$t.log" 2>&1; then
        echo "$t: done (sanitizer $s)"
    else
        echo "$t FAILED: see fuzz/target/logs/$t.log and fuzz/artifacts/$t/" >&2
        grep -E 'panicked|ERROR|SUMMARY' -A3 "target/logs/$t.log" | head -n 20 >&2
        return 1
    fi
}

failed=0
running=0
for t in "${targets[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done

echo
printf '%-15s %12s %8s %6s %6s %7s %s\n' target execs exec/s cov ft corpus sanitizer
for t in "${targets[@]}"; do
    log="target/logs/$t.log"
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    printf '%-15s %12s %8s %6s %6s %7s %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(sanitizer_of "$t")"
done
exit "$failed"

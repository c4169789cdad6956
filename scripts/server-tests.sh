#!/usr/bin/env bash
# Test `lamina serve` through OpenAI's Python client (bindings/python/tests/test_server.py).
#
#   scripts/fetch-model.sh          # the default model the server loads
#   bash scripts/server-tests.sh    # extra arguments go to pytest (-k NAME, -x, ...)
#
# Builds target/release/lamina, installs the `openai` package (and pytest) with pip when the
# interpreter lacks them, and runs the tests: servers on free ports of 127.0.0.1, two threads,
# a 1024-token context, each stopped with SIGTERM at the end. About 10 s on two idle cores.
# Exits nonzero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p lamina-cli
for module in openai pytest; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
        echo "server-tests: installing $module" >&2
        python3 -m pip install --quiet "$module"
    fi
done
exec python3 -m pytest -q -p no:cacheprovider bindings/python/tests/test_server.py "$@"

#!/usr/bin/env bash
# Recomputes every signing vector with the official SDKs (pinned in
# requirements.txt) and fails if any differs from expected.json, which the Rust
# signer tests read. The venv is cached between runs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/vectors-venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

actual="$(mktemp)"
trap 'rm -f "$actual"' EXIT
"$venv/bin/python" "$here/compute_vectors.py" > "$actual"
if diff -u "$here/expected.json" "$actual"; then
    echo "signing vectors: the official SDKs agree with tests/vectors/expected.json"
else
    echo "signing vectors: the official SDKs disagree with tests/vectors/expected.json" >&2
    exit 1
fi

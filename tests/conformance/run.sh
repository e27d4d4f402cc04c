#!/usr/bin/env bash
# Conformance: the providers' official Python SDKs (pinned in requirements.txt)
# authorize, describe and revoke rules through secgroup-fakecloud, unchanged
# except for their endpoint, and see tampered signatures refused.
#
# The venv is cached under ${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator.
# FAKECLOUD_BIN picks the binary; otherwise a release build is used if it is
# newer than the sources, else a debug build is made. Exits non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/conformance-venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "conformance: installing the official SDKs into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

bin="${FAKECLOUD_BIN:-}"
if [[ -z "$bin" ]]; then
    target="$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
        "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    newest_source="$(find "$repo/src" "$repo/crates" "$repo/Cargo.toml" "$repo/Cargo.lock" -type f -printf '%T@\n' | sort -n | tail -1)"
    release="$target/release/secgroup-fakecloud"
    if [[ -x "$release" ]] && (( $(stat -c %Y "$release") >= ${newest_source%.*} )); then
        bin="$release"
    else
        (cd "$repo" && cargo build --quiet --bin secgroup-fakecloud)
        bin="$target/debug/secgroup-fakecloud"
    fi
fi

ak="conformance-ak"
sk="conformance-secret"
log="$(mktemp)"
exec 3< <(exec "$bin" --listen 127.0.0.1:0 --access-key "$ak:$sk" --seed 7 2>"$log")
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT

# The server prints its address once it is listening.
if ! read -r -t 30 -u 3 line || [[ "$line" != "listening on "* ]]; then
    echo "conformance: secgroup-fakecloud did not start" >&2
    cat "$log" >&2
    exit 1
fi
base="${line#listening on }"
echo "conformance: $("$bin" --version) at $base ($bin)"
"$venv/bin/python" -c 'import importlib.metadata as m
for p in ("alibabacloud-ecs20140526", "alibabacloud-tea-openapi", "aliyun-python-sdk-core", "aliyun-python-sdk-ecs", "bce-python-sdk"):
    print(f"conformance: {p} {m.version(p)}")'
"$venv/bin/python" "$here/conformance.py" "$base" "$ak" "$sk"

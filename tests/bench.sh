#!/usr/bin/env bash
# Benchmarks the operator against a fresh test control plane; arguments go to
# the harness (tests/bench/main.rs, `--help`). BENCHMARKS.md explains the rows.
# BENCH_PROFILE=debug uses the debug build (the smoke run of `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCLUSTER_DIR="${TESTCLUSTER_DIR:-/tmp/secgroup-bench-cluster}"
profile=()
[[ "${BENCH_PROFILE:-release}" == release ]] && profile=(--release)
cargo build "${profile[@]}" --bins
cargo test "${profile[@]}" --test bench --no-run
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
env=$(tests/cluster/testcluster.sh up)
eval "$env"
trap 'tests/cluster/testcluster.sh down' EXIT
cargo test "${profile[@]}" --test bench -- "$@"

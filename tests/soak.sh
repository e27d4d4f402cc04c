#!/usr/bin/env bash
# Runs the soak (tests/soak/main.rs) against a fresh test control plane.
# SOAK_* variables pass through (see tests/soak/main.rs); `make soak` runs the
# full size, `make test` a shortened run.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCLUSTER_DIR="${TESTCLUSTER_DIR:-/tmp/secgroup-soak-cluster}"
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
env=$(tests/cluster/testcluster.sh up)
eval "$env"
trap 'tests/cluster/testcluster.sh down' EXIT
cargo build --bins
cargo test --test soak

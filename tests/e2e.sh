#!/usr/bin/env bash
# Runs the end-to-end suite against a fresh test control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCLUSTER_DIR="${TESTCLUSTER_DIR:-/tmp/secgroup-e2e-cluster}"
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
eval "$(tests/cluster/testcluster.sh up)"
trap 'tests/cluster/testcluster.sh down' EXIT
cargo build --bins
# The images of the debug build, for the chart suite's image tests (oci.rs, image.rs).
image/build.sh --profile debug
SECGROUP_E2E=1 cargo test --test e2e --test cluster_smoke -- --test-threads=4
# One at a time: the chart tests install and upgrade the cluster-wide CRDs;
# --nocapture shows the figures the image test prints.
SECGROUP_E2E=1 cargo test --test chart -- --test-threads=1 --nocapture

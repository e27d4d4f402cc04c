#!/usr/bin/env bash
# Runs the end-to-end suite against a fresh test control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCLUSTER_DIR="${TESTCLUSTER_DIR:-/tmp/secgroup-e2e-cluster}"
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
eval "$(tests/cluster/testcluster.sh up)"
# The logs of this run's operators and fake clouds, kept only when it fails.
if [[ -z "${SECGROUP_E2E_LOGS:-}" ]]; then
	SECGROUP_E2E_LOGS=$(mktemp -d "${TMPDIR:-/tmp}/secgroup-e2e-XXXXXX")
	export SECGROUP_E2E_LOGS
	own_logs=1
fi
finish() {
	local status=$?
	tests/cluster/testcluster.sh down
	if [[ -n "${own_logs:-}" ]]; then
		if ((status == 0)); then
			rm -rf "$SECGROUP_E2E_LOGS"
		else
			echo "end-to-end logs kept in $SECGROUP_E2E_LOGS" >&2
		fi
	fi
}
trap finish EXIT
cargo build --bins
# The images of the debug build, for the chart suite's image tests (oci.rs, image.rs).
image/build.sh --profile debug
SECGROUP_E2E=1 cargo test --test e2e --test cluster_smoke -- --test-threads=4
# One at a time: the chart tests install and upgrade the cluster-wide CRDs;
# --nocapture shows the figures the image test prints.
SECGROUP_E2E=1 cargo test --test chart -- --test-threads=1 --nocapture

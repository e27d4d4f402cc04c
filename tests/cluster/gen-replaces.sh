#!/usr/bin/env bash
# Pins every k8s.io staging module to the tag matching a Kubernetes release.
# k8s.io/kubernetes requires them at v0.0.0 with ./staging replaces that Go
# ignores in dependencies, so this module must pin each one itself.
# usage: gen-replaces.sh 1.37.2   (inside tests/cluster; needs the Go module proxy)
set -euo pipefail
V=${1:?kubernetes version, e.g. 1.37.2}
STAGING_V="v0.${V#1.}"
MOD=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$V" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
mods=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$MOD")
[[ -n "$mods" ]] || { echo "no staging replaces found in $MOD" >&2; exit 1; }
args=()
for m in $mods; do args+=("-replace=$m=$m@$STAGING_V"); done
go mod edit "${args[@]}" -require="k8s.io/kubernetes@v$V"
echo "pinned $(wc -w <<<"$mods") staging modules to $STAGING_V" >&2

#!/usr/bin/env bash
# helm lint --strict of every chart, with its default values and each ci/*-values.yaml.
set -euo pipefail
cd "$(dirname "$0")"
helm=$(command -v helm || true)
[[ -n "$helm" ]] || helm="$(../tests/cluster/tools.sh)/helm"
for chart in */; do
	chart=${chart%/}
	"$helm" lint --strict "$chart"
	for values in "$chart"/ci/*-values.yaml; do
		[[ -e "$values" ]] || continue
		"$helm" lint --strict "$chart" --values "$values"
	done
done

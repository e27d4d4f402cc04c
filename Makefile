# secgroup-operator: `make demo` runs the operator against a local control
# plane and the fake cloud; `make test` runs every test. Both install what
# they need (Go modules, kubectl/helm wheels, Python SDKs, crates) on first use.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build image test unit-test lint check-imports crds check-crds manifests check-chart argocd-health vectors conformance e2e soak soak-short bench bench-smoke cluster-up cluster-down demo fmt

all: build

build:
	$(CARGO) build --bins

## OCI images of the operator and the fake cloud in target/image/, built from
## the Dockerfile's stages by image/build.sh (umoci, no container engine);
## PROFILE=debug packs the debug build instead of a release build.
PROFILE ?= release
image:
	image/build.sh --profile $(PROFILE)

## Regenerate crds/ from the Rust types, and the files derived from them.
crds:
	$(CARGO) run -q --bin secgroup-operator -- crds --out-dir crds
	deploy/generate.sh

## Fail when crds/ differs from what the types generate.
check-crds:
	$(CARGO) run -q --bin secgroup-operator -- crds --out-dir crds
	git diff --exit-code -- crds/

## Regenerate what is rendered from the chart, crds/ and the Argo CD health
## check: deploy/secgroup-operator.yaml, the chart's CRD copies, the argocd-cm patch.
manifests:
	deploy/generate.sh

## helm lint (default and ci/ values), and fail when a rendered file is stale.
check-chart:
	charts/lint.sh
	deploy/generate.sh --check

## The Argo CD health check against its fixtures, in Argo CD's Lua interpreter.
argocd-health:
	cd tests/argocd && GOTOOLCHAIN=local go test -count=1 -v ./...

fmt:
	$(CARGO) fmt --all

## --all-targets leaves out the `test = false` suites even when they are
## named, so those are linted by a second clippy run.
lint: check-imports
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --test e2e --test cluster_smoke --test chart --test soak --test bench -- -D warnings

## Fail on modules that import each other in a circle, or on provider
## specifics named outside provider/ (tests/imports/check.py), after testing
## that check against planted circles and crossings.
check-imports:
	python3 -m unittest discover -s tests/imports -p '*_test.py'
	tests/imports/check.py

## Unit and in-process integration tests (no cluster needed).
unit-test:
	$(CARGO) test --all-targets

## Signer test vectors recomputed by the providers' official SDKs.
vectors:
	tests/vectors/check.sh

## The official SDKs against the fake cloud.
conformance:
	tests/conformance/run.sh

## End-to-end tests against a real kube-apiserver and the fake cloud.
e2e:
	tests/e2e.sh

## Crashes, provider faults, an API server restart, credential rotation and
## out-of-band changes with 1,000 rules; prints its figures (tests/soak/main.rs).
soak:
	tests/soak.sh

## The soak shortened for `make test`: 100 rules, fewer kills.
soak-short:
	SOAK_RULES=100 SOAK_KILLS=8 SOAK_CREDENTIAL_SECS=20 SOAK_STEP_TIMEOUT_SECS=180 tests/soak.sh

## Figures at scale, several minutes (BENCHMARKS.md); harness flags via ARGS="--rules 2000".
bench:
	tests/bench.sh $(ARGS)

## Every benchmark phase at tiny sizes, so the harness keeps working.
bench-smoke:
	BENCH_PROFILE=debug tests/bench.sh --smoke

## Everything CI runs.
test: lint check-crds check-chart argocd-health unit-test vectors conformance e2e soak-short bench-smoke

cluster-up:
	tests/cluster/testcluster.sh up

cluster-down:
	tests/cluster/testcluster.sh down

## Local control plane + fake cloud + operator, with example rules; Ctrl-C cleans up.
demo:
	deploy/demo.sh

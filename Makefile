# secgroup-operator: `make demo` runs the operator against a local control
# plane and the fake cloud; `make test` runs every test. Both install what
# they need (Go modules, kubectl/helm wheels, Python SDKs, crates) on first use.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build test unit-test lint crds check-crds vectors conformance e2e bench bench-smoke cluster-up cluster-down demo fmt

all: build

build:
	$(CARGO) build --bins

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q --bin secgroup-operator -- crds --out-dir crds

## Fail when crds/ differs from what the types generate.
check-crds:
	$(CARGO) run -q --bin secgroup-operator -- crds --out-dir crds
	git diff --exit-code -- crds/

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --test e2e --test cluster_smoke --test bench -- -D warnings

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

## Figures at scale, several minutes (BENCHMARKS.md); harness flags via ARGS="--rules 2000".
bench:
	tests/bench.sh $(ARGS)

## Every benchmark phase at tiny sizes, so the harness keeps working.
bench-smoke:
	BENCH_PROFILE=debug tests/bench.sh --smoke

## Everything CI runs.
test: lint check-crds unit-test vectors conformance e2e bench-smoke

cluster-up:
	tests/cluster/testcluster.sh up

cluster-down:
	tests/cluster/testcluster.sh down

## Local control plane + fake cloud + operator, with example rules; Ctrl-C cleans up.
demo:
	deploy/demo.sh

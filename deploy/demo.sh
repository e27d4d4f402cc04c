#!/usr/bin/env bash
# `make demo`: a local control plane, the fake cloud standing in for the three
# providers, the operator, and the example rules. Shows rules authorized, one
# declared Absent and revoked, one deleted and revoked with its ClientToken,
# then keeps running until Ctrl-C and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
export TESTCLUSTER_DIR="${TESTCLUSTER_DIR:-/tmp/secgroup-demo-cluster}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

say "Building the operator and the fake cloud"
cargo build --bins
bin="${CARGO_TARGET_DIR:-target}/debug"
say "Starting a local control plane (first run builds it from the Kubernetes Go modules)"
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
eval "$(tests/cluster/testcluster.sh up)"

say "Starting the fake cloud"
logs="$TESTCLUSTER_DIR/demo-logs"; mkdir -p "$logs"
# One AccessKey per provider, as deploy/examples/credentials-*.yaml declare.
providers=(alibaba apsarastack baidu)
keys=()
for p in "${providers[@]}"; do keys+=(--access-key "demo-$p-key:demo-$p-secret"); done
coproc FAKE { exec "$bin/secgroup-fakecloud" --listen 127.0.0.1:0 "${keys[@]}" 2>"$logs/fakecloud.log"; }
pids+=("$FAKE_PID")
read -r banner <&"${FAKE[0]}"
cloud=${banner#listening on }
echo "fake cloud at $cloud"
# Every group the examples name, including the peer group of db-from-app.
for g in alibaba/cn-hangzhou/sg-bp67acfmxazb4p apsara/cn-qingdao-env17-d01/sg-db0000000001 \
	apsara/cn-qingdao-env17-d01/sg-app000000001 baidu/bj/g-nky7qeom; do
	IFS=/ read -r provider region id <<<"$g"
	curl -fsS -X POST "$cloud/_fake/groups" -H 'content-type: application/json' \
		-d "{\"provider\":\"$provider\",\"region\":\"$region\",\"id\":\"$id\"}" >/dev/null
done

say "Installing the CRDs, one credentials Secret and one ProviderConfig per provider"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace secgroup-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f deploy/examples/namespaces.yaml >/dev/null
for p in "${providers[@]}"; do
	# The examples hold placeholders; the demo's keys are the fake cloud's.
	kubectl create secret generic "$p-credentials" -n secgroup-system --dry-run=client -o yaml \
		--from-literal=accessKeyId="demo-$p-key" --from-literal=accessKeySecret="demo-$p-secret" | kubectl apply -f - >/dev/null
	kubectl apply -f "deploy/examples/providerconfig-$p.yaml" >/dev/null
done
# The examples name the real endpoints; the demo points them at the fake cloud.
for pc in alibaba-prod apsara-dc1 baidu-bj; do
	kubectl patch providerconfig "$pc" --type merge -p "{\"spec\":{\"endpoint\":\"$cloud\",\"allowInsecureHttp\":true}}" >/dev/null
done
kubectl get providerconfigs

say "Starting the operator"
"$bin/secgroup-operator" run --secret-namespace secgroup-system --metrics-addr 127.0.0.1:0 \
	--resync-interval 30 >"$logs/operator.log" 2>&1 &
pids+=("$!")

say "Applying the example rules"
kubectl apply -f deploy/examples/rules-alibaba.yaml -f deploy/examples/rules-apsarastack.yaml -f deploy/examples/rules-baidu.yaml
kubectl wait --for=condition=Ready sgr --all -A --timeout=120s >/dev/null
kubectl get sgr -A

say "Rules at the fake cloud"
curl -fsS "$cloud/_fake/rules" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    x = r["rule"]
    print("%-8s %-20s %-24s %s" % (r["provider"], r["group"], r["ruleId"], json.dumps(x, separators=(",", ":"))[:90]))'

say "Marking web/web-https Absent: revoked, object kept"
kubectl patch sgr web-https -n web --type merge -p '{"spec":{"ensure":"Absent"}}'
kubectl wait --for=condition=Ready sgr/web-https -n web --timeout=60s >/dev/null
kubectl get sgr web-https -n web -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}{"  token "}{.status.lastOperation.clientToken}{"\n"}'

say "Deleting api/dns-out: revoked, then the finalizer is removed"
kubectl delete sgr dns-out -n api --wait=true
curl -fsS "$cloud/_fake/calls" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c["action"].startswith(("Revoke", "revoke", "Delete", "delete")):
        print("%-8s %-28s group=%s token=%s" % (c["provider"], c["action"], c["group"], c["clientToken"]))'

say "Still running: try kubectl yourself (KUBECONFIG=$KUBECONFIG). Ctrl-C stops and cleans up."
wait "${pids[-1]}"

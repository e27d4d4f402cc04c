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
say "Starting a local control plane (first run builds it from the Kubernetes Go modules)"
tests/cluster/testcluster.sh down >/dev/null 2>&1 || true
eval "$(tests/cluster/testcluster.sh up)"

say "Starting the fake cloud"
logs="$TESTCLUSTER_DIR/demo-logs"; mkdir -p "$logs"
coproc FAKE { exec target/debug/secgroup-fakecloud --listen 127.0.0.1:0 --access-key demo-key:demo-secret 2>"$logs/fakecloud.log"; }
pids+=("$FAKE_PID")
read -r banner <&"${FAKE[0]}"
cloud=${banner#listening on }
echo "fake cloud at $cloud"
# sg-app000000001 is the peer group an Apsara example admits traffic from.
for g in alibaba/cn-hangzhou/sg-bp67acfmxazb4p apsara/cn-qingdao-env17-d01/sg-db0000000001 \
	apsara/cn-qingdao-env17-d01/sg-app000000001 baidu/bj/g-nky7qeom; do
	IFS=/ read -r provider region id <<<"$g"
	curl -fsS -X POST "$cloud/_fake/groups" -H 'content-type: application/json' \
		-d "{\"provider\":\"$provider\",\"region\":\"$region\",\"id\":\"$id\"}" >/dev/null
done

say "Installing the CRDs, the credentials Secret and one ProviderConfig per provider"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
for ns in secgroup-system web data api; do kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null; done
kubectl label namespace web secgroup.dev/alibaba-prod=allowed --overwrite >/dev/null
kubectl create secret generic cloud-credentials -n secgroup-system \
	--from-literal=accessKeyId=demo-key --from-literal=accessKeySecret=demo-secret \
	--dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f deploy/examples/providerconfig-alibaba.yaml -f deploy/examples/providerconfig-apsarastack.yaml \
	-f deploy/examples/providerconfig-baidu.yaml >/dev/null
# The examples name the real endpoints; the demo points them at the fake cloud.
for pc in alibaba-prod apsara-dc1 baidu-bj; do
	kubectl patch providerconfig "$pc" --type merge -p "{\"spec\":{\"endpoint\":\"$cloud\"}}" >/dev/null
done
kubectl get providerconfigs

say "Starting the operator"
target/debug/secgroup-operator run --secret-namespace secgroup-system --metrics-addr 127.0.0.1:0 \
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
kubectl wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=Revoked sgr/web-https -n web --timeout=60s >/dev/null
kubectl get sgr web-https -n web -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}{"  token "}{.status.lastOperation.clientToken}{"\n"}'

say "Deleting api/dns-out: revoked, then the finalizer is removed"
kubectl delete sgr dns-out -n api --wait=true
curl -fsS "$cloud/_fake/calls" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c["action"].startswith(("Revoke", "Delete")):
        print("%-8s %-28s group=%s token=%s" % (c["provider"], c["action"], c["group"], c.get("clientToken")))'

say "Still running: try kubectl yourself (KUBECONFIG=$KUBECONFIG). Ctrl-C stops and cleans up."
wait "${pids[-1]}"

#!/usr/bin/env bash
# tests/cluster/selftest.sh - checks that a running test cluster behaves like
# a real one for what the operator needs. Run after `testcluster.sh up`:
#
#   env=$(tests/cluster/testcluster.sh up) && eval "$env"
#   tests/cluster/selftest.sh
#
# Checks: server version, namespaces, a CRD with a CEL validation rule,
# Secrets, Leases, ServiceAccount tokens and RBAC (forbidden, then allowed),
# `kubectl auth can-i`, ownerReference garbage collection and namespace
# deletion (both need kube-controller-manager), helm install/uninstall, and
# kstatus of a custom object (Current / InProgress / Failed).
# Prints "N passed, N failed" at the end; exits non-zero on any failure.
set -euo pipefail

: "${KUBECONFIG:?start a cluster first: env=\$(tests/cluster/testcluster.sh up) \&\& eval \"\$env\"}"
command -v kubectl >/dev/null || { echo "kubectl not on PATH" >&2; exit 1; }

NS="selftest-$$-$RANDOM"
GROUP=selftest.secgroup.dev
CRD="widgets.$GROUP"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/testcluster-selftest.XXXXXX")
PASSED=0
FAILED=0
WAIT=60s # upper bound for each condition wait

cleanup() {
	kubectl delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kubectl delete crd "$CRD" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

ok() {
	PASSED=$((PASSED + 1))
	echo "ok   $*"
}
fail() {
	FAILED=$((FAILED + 1))
	echo "FAIL $*"
}
indent() { while IFS= read -r line; do echo "     $line"; done <<<"$1"; }
# check NAME CMD...: CMD must succeed
check() {
	local name=$1
	shift
	local out
	if out=$("$@" 2>&1); then ok "$name"; else
		fail "$name"
		indent "$out"
	fi
}
# refused NAME PATTERN CMD...: CMD must fail, and its output must contain PATTERN
refused() {
	local name=$1 pattern=$2
	shift 2
	local out
	if out=$("$@" 2>&1); then
		fail "$name (was accepted)"
	elif [[ "$out" == *"$pattern"* ]]; then
		ok "$name: $(grep -m1 -F -- "$pattern" <<<"$out" | cut -c1-160)"
	else
		fail "$name (refused, but without \"$pattern\")"
		indent "$out"
	fi
}
# until_ok SECONDS CMD...: poll CMD until it succeeds (for eventually consistent state)
until_ok() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || return 1
		sleep 0.2
	done
}
kstatus_of() { # kind name -> kstatus JSON
	kubectl get -n "$NS" "$1" "$2" -o json | testcluster kstatus
}
kstatus_is() { # kind name status
	local s
	s=$(kstatus_of "$1" "$2")
	echo "     kstatus: $s"
	[[ "$s" == *"\"status\":\"$3\""* ]]
}

# ---------------------------------------------------------------- version
server_version() {
	kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'
}
v=$(server_version)
if [[ "$v" =~ ^v1\.[0-9]+\.[0-9]+$ ]]; then ok "server version $v"; else fail "server version '$v' is not a release"; fi
check "/readyz" kubectl get --raw /readyz

# ---------------------------------------------------------------- namespace
check "create namespace $NS" kubectl create namespace "$NS"
if [[ "${TESTCLUSTER_KCM:-1}" == 1 ]]; then
	check "default ServiceAccount appears (serviceaccount controller)" \
		kubectl wait -n "$NS" --for=create serviceaccount/default --timeout="$WAIT"
fi

# ---------------------------------------------------------------- CRD + CEL
cat >"$WORK/crd.yaml" <<YAML
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: $CRD
spec:
  group: $GROUP
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [from, to]
            properties:
              from: {type: integer, minimum: 1, maximum: 65535}
              to: {type: integer, minimum: 1, maximum: 65535}
            x-kubernetes-validations:
            - rule: self.from <= self.to
              message: spec.from must be less than or equal to spec.to
              fieldPath: .from
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
YAML
check "create CRD with a CEL rule" kubectl apply -f "$WORK/crd.yaml"
check "CRD established" kubectl wait --for=condition=Established "crd/$CRD" --timeout="$WAIT"
widget() { # name from to
	printf 'apiVersion: %s/v1alpha1\nkind: Widget\nmetadata: {name: %s, namespace: %s}\nspec: {from: %s, to: %s}\n' \
		"$GROUP" "$1" "$NS" "$2" "$3"
}
check "valid Widget accepted" kubectl apply -f <(widget good 80 443)
refused "invalid Widget refused by CEL" "spec.from must be less than or equal to spec.to" \
	kubectl apply -f <(widget bad 443 80)
refused "invalid Widget refused by OpenAPI schema" "should be less than or equal to 65535" \
	kubectl apply -f <(widget huge 1 70000)

# ---------------------------------------------------------------- core objects
check "create Secret" kubectl create secret generic creds -n "$NS" \
	--from-literal=accessKeyId=AKID --from-literal=accessKeySecret=s3cr3t
cat >"$WORK/lease.yaml" <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: $NS}
spec: {holderIdentity: selftest, leaseDurationSeconds: 15}
YAML
check "create Lease" kubectl apply -f "$WORK/lease.yaml"
check "read Lease holder" bash -c "[[ \$(kubectl get lease leader -n '$NS' -o jsonpath='{.spec.holderIdentity}') == selftest ]]"

# ---------------------------------------------------------------- ServiceAccount + RBAC
check "create ServiceAccount" kubectl create serviceaccount robot -n "$NS"
TOKEN=""
if TOKEN=$(kubectl create token robot -n "$NS" --duration=10m) && [[ -n "$TOKEN" ]]; then
	ok "kubectl create token (TokenRequest)"
else
	fail "kubectl create token"
fi
as_robot() { kubectl --token="$TOKEN" "$@"; }
check "token authenticates as the ServiceAccount" \
	bash -c "kubectl --token='$TOKEN' auth whoami -o jsonpath='{.status.userInfo.username}' | grep -qx 'system:serviceaccount:$NS:robot'"
refused "RBAC forbids the ServiceAccount to read Secrets" "Forbidden" as_robot get secret creds -n "$NS"
check "auth can-i (as SA, before grant) says no" \
	bash -c "[[ \$(kubectl auth can-i get secrets -n '$NS' --as=system:serviceaccount:$NS:robot || true) == no ]]"
check "grant: Role + RoleBinding" bash -c "
	kubectl create role secret-reader -n '$NS' --verb=get --resource=secrets &&
	kubectl create rolebinding robot-reads -n '$NS' --role=secret-reader --serviceaccount='$NS:robot'"
check "auth can-i (as SA, after grant) says yes" \
	until_ok 30 bash -c "[[ \$(kubectl auth can-i get secrets -n '$NS' --as=system:serviceaccount:$NS:robot) == yes ]]"
check "auth can-i with the SA's own token: get yes" \
	bash -c "[[ \$(kubectl --token='$TOKEN' auth can-i get secrets -n '$NS') == yes ]]"
check "auth can-i with the SA's own token: list no" \
	bash -c "[[ \$(kubectl --token='$TOKEN' auth can-i list secrets -n '$NS' || true) == no ]]"
check "granted request succeeds with the token" as_robot get secret creds -n "$NS"
refused "ungranted verb still forbidden" "Forbidden" as_robot delete secret creds -n "$NS"

# ---------------------------------------------------------------- kstatus
kubectl apply -f <(widget ready 80 80) >/dev/null
gen=$(kubectl get widget ready -n "$NS" -o jsonpath='{.metadata.generation}')
status_patch() { # status reason
	kubectl patch widget ready -n "$NS" --subresource=status --type=merge -p "$1" >/dev/null
}
cond() { # type status reason
	printf '{"type":"%s","status":"%s","reason":"%s","message":"%s","lastTransitionTime":"2026-01-01T00:00:00Z","observedGeneration":%s}' \
		"$1" "$2" "$3" "$3" "$gen"
}
status_patch "{\"status\":{\"observedGeneration\":$gen,\"conditions\":[$(cond Ready True Authorized),$(cond Reconciling False Done),$(cond Stalled False Done)]}}"
check "kstatus: Ready=True is Current" kstatus_is widget ready Current
status_patch "{\"status\":{\"observedGeneration\":$gen,\"conditions\":[$(cond Ready False Retrying),$(cond Reconciling True Retrying),$(cond Stalled False Retrying)]}}"
check "kstatus: Reconciling=True is InProgress" kstatus_is widget ready InProgress
status_patch "{\"status\":{\"observedGeneration\":$gen,\"conditions\":[$(cond Ready False InvalidParameter),$(cond Reconciling False InvalidParameter),$(cond Stalled True InvalidParameter)]}}"
check "kstatus: Stalled=True is Failed" kstatus_is widget ready Failed
status_patch "{\"status\":{\"observedGeneration\":$((gen - 1)),\"conditions\":[$(cond Ready True Authorized)]}}"
check "kstatus: old observedGeneration is InProgress" kstatus_is widget ready InProgress

# ---------------------------------------------------------------- helm
if command -v helm >/dev/null; then
	mkdir -p "$WORK/chart/templates"
	cat >"$WORK/chart/Chart.yaml" <<-YAML
		apiVersion: v2
		name: selftest
		version: 0.1.0
		kubeVersion: ">=1.33.0-0"
	YAML
	cat >"$WORK/chart/templates/cm.yaml" <<-'YAML'
		apiVersion: v1
		kind: ConfigMap
		metadata: {name: '{{ .Release.Name }}-cm'}
		data: {greeting: hello}
	YAML
	check "helm version" helm version --short
	check "helm install (kubeVersion constraint met)" helm install demo "$WORK/chart" -n "$NS"
	check "helm release object exists" kubectl get configmap demo-cm -n "$NS"
	check "helm uninstall" helm uninstall demo -n "$NS"
else
	fail "helm not on PATH"
fi

# ---------------------------------------------------------------- controller-manager
if [[ "${TESTCLUSTER_KCM:-1}" == 1 ]]; then
	# owned OWNER DEPENDENT [EXTRA]: a ConfigMap DEPENDENT owned by a new ConfigMap OWNER.
	owned() {
		kubectl create configmap "$1" -n "$NS" >/dev/null
		local uid
		uid=$(kubectl get configmap "$1" -n "$NS" -o jsonpath='{.metadata.uid}')
		kubectl apply -f - >/dev/null <<-YAML
			apiVersion: v1
			kind: ConfigMap
			metadata:
			  name: $2
			  namespace: $NS
			  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: $1, uid: $uid${3:+, $3}}]
		YAML
	}
	owned owner dependent
	kubectl delete configmap owner -n "$NS" >/dev/null
	check "garbage collector deletes the dependent" \
		kubectl wait --for=delete configmap/dependent -n "$NS" --timeout="$WAIT"
	# foreground: the owner waits (finalizer foregroundDeletion) until its dependents are gone
	owned owner2 dependent2 "blockOwnerDeletion: true"
	check "foreground deletion finishes (owner and dependent gone)" bash -c "
		kubectl delete configmap owner2 -n '$NS' --cascade=foreground --timeout=$WAIT &&
		kubectl wait --for=delete configmap/dependent2 -n '$NS' --timeout=$WAIT"
	check "namespace deletion completes" kubectl delete namespace "$NS" --timeout="$WAIT"
	refused "namespace is gone" "NotFound" kubectl get namespace "$NS"
fi
check "delete CRD" kubectl delete crd "$CRD" --timeout="$WAIT"

echo "selftest: $PASSED passed, $FAILED failed"
((FAILED == 0))

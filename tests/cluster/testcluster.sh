#!/usr/bin/env bash
# tests/cluster/testcluster.sh - a throwaway Kubernetes control plane on
# loopback for the end-to-end tests: etcd, a real kube-apiserver and (by
# default) a kube-controller-manager running a few controllers, all from one
# multi-call binary built from the Kubernetes Go modules in this directory.
#
#   testcluster.sh build    build (or reuse from the cache) the binary; print its path
#   testcluster.sh tools    install (or reuse) kubectl and helm; print their directory
#   testcluster.sh up       build, make PKI, start the components, wait until ready,
#                           write a kubeconfig; print `export ...` lines on stdout
#   testcluster.sh env      print the `export ...` lines of a running cluster again
#   testcluster.sh status   show the processes and /readyz of a running cluster
#   testcluster.sh down     stop the processes `up` started (by pid), remove the state
#   testcluster.sh restart-apiserver [seconds]
#                           stop kube-apiserver, wait, start it on the same port and etcd
#
# Typical use (assign first: `eval "$(... up)"` would hide a failed `up`):
#   env=$(tests/cluster/testcluster.sh up) && eval "$env"
#   trap 'tests/cluster/testcluster.sh down' EXIT
#
# Env:
#   TESTCLUSTER_DIR    state directory (pids, logs, PKI, etcd data, kubeconfig);
#                      default /tmp/testcluster. Use different ones for parallel clusters.
#   TESTCLUSTER_CACHE  cache for the built binary and the tools; default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/testcluster
#   TESTCLUSTER_KCM    1 (default): also run kube-controller-manager with the namespace,
#                      garbage-collector, serviceaccount and clusterrole-aggregation
#                      controllers; 0: apiserver only
#   TESTCLUSTER_BIN    use this prebuilt multi-call binary instead of building
#   TESTCLUSTER_TIMEOUT  seconds to wait for each component to become ready (default 180)
#   TESTCLUSTER_KEEP   1: `down` keeps the state directory (logs) after stopping
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${TESTCLUSTER_DIR:-/tmp/testcluster}"
CACHE="${TESTCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secgroup-operator/testcluster}"
export TESTCLUSTER_CACHE="$CACHE" # tools.sh uses the same cache
PKI="$STATE/pki"
KCM="${TESTCLUSTER_KCM:-1}"
TIMEOUT="${TESTCLUSTER_TIMEOUT:-180}"
COMPONENTS=(kcm apiserver etcd) # stop order; start order is the reverse

log() { echo "testcluster: $*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}
need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c not found on PATH (Debian: apt-get install -y $c)"
	done
}

# ------------------------------------------------------------------ build

# The Kubernetes version this module builds, read from go.mod (no Go needed).
kube_version() {
	awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v[0-9]/ {print $2; exit}' "$HERE/go.mod"
}

build() {
	if [[ -n "${TESTCLUSTER_BIN:-}" ]]; then
		[[ -x "$TESTCLUSTER_BIN" ]] || die "TESTCLUSTER_BIN=$TESTCLUSTER_BIN is not executable"
		echo "$TESTCLUSTER_BIN"
		return
	fi
	need go sha256sum flock
	export GOTOOLCHAIN=local # never download another toolchain
	local key bin
	# the cache key: everything that decides what the binary is
	key=$( (cat "$HERE/go.mod" "$HERE/go.sum" "$HERE/main.go" && go version) | sha256sum | cut -c1-16)
	bin="$CACHE/bin/testcluster-$key"
	if [[ -x "$bin" ]]; then
		echo "$bin"
		return
	fi
	mkdir -p "$CACHE/bin"
	# one build at a time per cache, even with several clusters coming up
	exec 9>"$CACHE/bin/.build.lock"
	flock 9
	if [[ ! -x "$bin" ]]; then
		local kver major minor ld p
		kver=$(kube_version)
		[[ "$kver" =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "cannot read the k8s.io/kubernetes version from go.mod"
		major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
		# version stamps, as upstream's hack/lib/version.sh sets them, so that
		# /version and `kubectl version` report the real release
		ld="-s -w"
		for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ld+=" -X $p.gitVersion=$kver -X $p.gitMajor=$major -X $p.gitMinor=$minor"
			ld+=" -X $p.gitCommit= -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
		done
		log "building $bin (Kubernetes $kver); a cold build takes about 15 minutes on 2 cores"
		local t0=$SECONDS
		(cd "$HERE" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" \
			go build -trimpath -ldflags "$ld" -o "$bin.tmp.$$" .)
		mv -f "$bin.tmp.$$" "$bin"
		log "built in $((SECONDS - t0))s"
		# keep only the newest few binaries
		find "$CACHE/bin" -maxdepth 1 -name 'testcluster-*' -type f ! -name '*.tmp.*' -printf '%T@ %p\n' |
			sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -f
	fi
	exec 9>&-
	echo "$bin"
}

tools() {
	"$HERE/tools.sh"
}

# ------------------------------------------------------------------ PKI

certs() {
	need openssl
	mkdir -p "$PKI"
	[[ -s "$PKI/tokens.csv" ]] && return 0
	(
		cd "$PKI"
		umask 077
		openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=testcluster-ca" \
			-keyout ca.key -out ca.crt \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
		openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
			-keyout apiserver.key -out apiserver.csr 2>/dev/null
		printf '%s\n' \
			"basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" \
			"extendedKeyUsage=serverAuth" \
			"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
			>apiserver.ext
		openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-days 3650 -extfile apiserver.ext -out apiserver.crt 2>/dev/null
		# ServiceAccount token signing key pair (TokenRequest needs both)
		openssl genrsa -out sa.key 2048 2>/dev/null
		openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
		# static bearer tokens, CSV: token,user,uid,"group,..."
		printf '%s,admin,admin,"system:masters"\n%s,kube-controller-manager,kcm,"system:masters"\n' \
			"$(openssl rand -hex 24)" "$(openssl rand -hex 24)" >tokens.csv.tmp
		mv tokens.csv.tmp tokens.csv
		rm -f apiserver.csr ca.srl
	)
}

token_of() { awk -F, -v u="$1" '$2 == u {print $1}' "$PKI/tokens.csv"; }

write_kubeconfig() { # file server user
	local ca
	ca=$(base64 -w0 <"$PKI/ca.crt")
	(
		umask 077
		cat >"$1" <<-YAML
			apiVersion: v1
			kind: Config
			clusters:
			- name: testcluster
			  cluster:
			    server: $2
			    certificate-authority-data: $ca
			users:
			- name: $3
			  user:
			    token: $(token_of "$3")
			contexts:
			- name: testcluster
			  context:
			    cluster: testcluster
			    user: $3
			    namespace: default
			current-context: testcluster
		YAML
	)
}

# ------------------------------------------------------------------ processes

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_bg() { # name cmd...
	local name=$1
	shift
	"$@" </dev/null >>"$STATE/$name.log" 2>&1 &
	echo "$!" >"$STATE/$name.pid"
}

# pid of a component if it is running and is still the process `up` started
# (the pid file also records the executable, so a reused pid is never signalled)
pid_of() {
	local f="$STATE/$1.pid" pid exe
	[[ -s "$f" ]] || return 1
	pid=$(cat "$f")
	[[ -s "$STATE/$1.exe" ]] || return 1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)} # the cached binary may have been pruned meanwhile
	[[ "$exe" == "$(cat "$STATE/$1.exe")" ]] || return 1
	echo "$pid"
}

alive() { pid_of "$1" >/dev/null; }

wait_for() { # name cmd...: poll cmd until it succeeds, the process dies, or TIMEOUT
	local name=$1
	shift
	local deadline=$((SECONDS + TIMEOUT))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name"; then
			tail -n 40 "$STATE/$name.log" >&2 || true
			die "$name exited (log: $STATE/$name.log)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$STATE/$name.log" >&2 || true
			die "$name not ready after ${TIMEOUT}s (log: $STATE/$name.log)"
		fi
		sleep 0.2
	done
}

api_get() { # path: GET as admin, body on stdout, fails on HTTP errors
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" \
		-H "Authorization: Bearer $(token_of admin)" "$(cat "$STATE/server")$1"
}

aggregated() { # the admin ClusterRole has got its rules from the aggregation controller
	local body
	body=$(api_get /apis/rbac.authorization.k8s.io/v1/clusterroles/admin) || return 1
	[[ "$body" =~ \"rules\":[[:space:]]*\[[[:space:]]*\{ ]]
}

print_env() {
	cat "$STATE/env"
}

# kube-apiserver on `port` against the etcd `up` started; its pid and
# executable are recorded like every other component's
start_apiserver() { # bin port
	local bin=$1 port=$2
	readlink -f "$bin" >"$STATE/apiserver.exe"
	start_bg apiserver "$bin" kube-apiserver \
		--etcd-servers="$(cat "$STATE/etcd.url")" \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--token-auth-file="$PKI/tokens.csv" \
		--authorization-mode=RBAC \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 \
		--disable-admission-plugins=ServiceAccount \
		--endpoint-reconciler-type=none \
		--allow-privileged=true \
		--profiling=false
	wait_for apiserver api_get /readyz
}

up() {
	need curl openssl python3 base64 awk
	[[ -e "$STATE/etcd.pid" ]] && die "$STATE is in use; run '$0 down' first (or set TESTCLUSTER_DIR)"
	local t0=$SECONDS bin tooldir
	bin=$(build)
	mkdir -p "$STATE"
	# on any failure from here on: stop what already started, keep the logs
	trap 'rc=$?; if ((rc != 0)); then log "up failed; logs kept in $STATE"; TESTCLUSTER_KEEP=1 down; fi' EXIT

	mkdir -p "$STATE/bin"
	ln -sfn "$bin" "$STATE/bin/testcluster"
	ln -sfn "$bin" "$STATE/bin/kstatus"
	if tooldir=$(tools); then
		ln -sfn "$tooldir/kubectl" "$STATE/bin/kubectl"
		ln -sfn "$tooldir/helm" "$STATE/bin/helm"
	else
		log "WARNING: no official kubectl/helm; using the multi-call binary's kubectl, no helm"
		ln -sfn "$bin" "$STATE/bin/kubectl"
	fi
	certs

	local etcd_port etcd_peer api_port kcm_port exe
	etcd_port=$(free_port)
	etcd_peer=$(free_port)
	api_port=$(free_port)
	kcm_port=$(free_port)
	exe=$(readlink -f "$bin")
	echo "https://127.0.0.1:$api_port" >"$STATE/server"

	echo "$exe" >"$STATE/etcd.exe"
	start_bg etcd "$bin" etcd \
		--name=testcluster --data-dir="$STATE/etcd" \
		--listen-client-urls="http://127.0.0.1:$etcd_port" \
		--advertise-client-urls="http://127.0.0.1:$etcd_port" \
		--listen-peer-urls="http://127.0.0.1:$etcd_peer" \
		--initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
		--initial-cluster="testcluster=http://127.0.0.1:$etcd_peer" \
		--unsafe-no-fsync --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
		--log-level=warn
	wait_for etcd curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

	echo "http://127.0.0.1:$etcd_port" >"$STATE/etcd.url"
	start_apiserver "$bin" "$api_port"

	write_kubeconfig "$STATE/admin.kubeconfig" "https://127.0.0.1:$api_port" admin

	if [[ "$KCM" == 1 ]]; then
		write_kubeconfig "$STATE/kcm.kubeconfig" "https://127.0.0.1:$api_port" kube-controller-manager
		echo "$exe" >"$STATE/kcm.exe"
		start_bg kcm "$bin" kube-controller-manager \
			--kubeconfig="$STATE/kcm.kubeconfig" \
			--authentication-kubeconfig="$STATE/kcm.kubeconfig" \
			--authorization-kubeconfig="$STATE/kcm.kubeconfig" \
			--authentication-skip-lookup=true \
			--leader-elect=false \
			--use-service-account-credentials=false \
			--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,clusterrole-aggregation-controller \
			--bind-address=127.0.0.1 --secure-port="$kcm_port" --cert-dir="$STATE/kcm-certs" \
			--profiling=false
		wait_for kcm curl -fsSk --max-time 2 "https://127.0.0.1:$kcm_port/healthz"
		# the controllers are really working once they have done their first job
		wait_for kcm api_get /api/v1/namespaces/default/serviceaccounts/default
		wait_for kcm aggregated
	fi

	cat >"$STATE/env" <<-ENV
		export KUBECONFIG=$STATE/admin.kubeconfig
		export PATH=$STATE/bin:\$PATH
		export TESTCLUSTER_DIR=$STATE
		export TESTCLUSTER_SERVER=https://127.0.0.1:$api_port
		export TESTCLUSTER_KCM=$KCM
		export SECGROUP_E2E=1
	ENV
	log "up in $((SECONDS - t0))s: https://127.0.0.1:$api_port, kube-controller-manager=$KCM, logs in $STATE/*.log"
	trap - EXIT
	print_env
}

stop() { # component...: SIGTERM them all, wait, SIGKILL what is left after STOP_GRACE (20) s
	local p pid names=() pids=() i grace=${STOP_GRACE:-20}
	for p in "$@"; do
		if pid=$(pid_of "$p"); then
			kill -TERM "$pid" 2>/dev/null || true
			names+=("$p")
			pids+=("$pid")
		fi
	done
	local deadline=$((SECONDS + grace))
	for i in "${!pids[@]}"; do
		pid=${pids[i]}
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			log "${names[i]} (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

status() {
	local p pid rc=0
	for p in etcd apiserver kcm; do
		if pid=$(pid_of "$p"); then
			printf '%-10s running  pid %-7s rss %s kB\n' "$p" "$pid" \
				"$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")"
		elif [[ -e "$STATE/$p.pid" ]]; then
			printf '%-10s DEAD     (log: %s)\n' "$p" "$STATE/$p.log"
			rc=1
		fi
	done
	if [[ -s "$STATE/server" ]]; then
		if api_get /readyz >/dev/null 2>&1; then
			echo "readyz     ok       $(cat "$STATE/server")"
		else
			echo "readyz     FAILING  $(cat "$STATE/server")"
			rc=1
		fi
	else
		echo "no cluster in $STATE"
		rc=1
	fi
	return "$rc"
}

# Stops kube-apiserver, keeps it down for `seconds` (default 0), and starts it
# again on the same port against the same etcd: clients keep their kubeconfig
# and must reconnect on their own.
restart_apiserver() { # [seconds]
	local down=${1:-0} port bin
	[[ -s "$STATE/etcd.url" && -s "$STATE/server" ]] || die "no cluster in $STATE"
	alive etcd || die "etcd is not running (log: $STATE/etcd.log)"
	port=$(sed 's/.*://' "$STATE/server")
	bin=$(cat "$STATE/apiserver.exe")
	local t0=$SECONDS
	# with the controller-manager still connected it lingers after it stopped
	# listening; a short grace keeps the outage close to `seconds`
	STOP_GRACE=3 stop apiserver
	sleep "$down"
	start_apiserver "$bin" "$port"
	log "kube-apiserver restarted on port $port after $((SECONDS - t0))s"
}

down() {
	# The state is thrown away, so the controller-manager and the apiserver
	# stop together; etcd goes last, because an apiserver whose etcd is gone
	# retries its shutdown writes instead of exiting.
	stop kcm apiserver
	stop etcd
	local p
	for p in "${COMPONENTS[@]}"; do rm -f "$STATE/$p.pid"; done
	if [[ "${TESTCLUSTER_KEEP:-0}" != 1 && -d "$STATE" ]]; then
		# only ever delete a directory this script made
		if [[ -e "$STATE/pki/tokens.csv" || -e "$STATE/server" || -d "$STATE/bin" ]]; then
			rm -rf "$STATE"
		fi
	fi
}

case "${1:-}" in
build) build ;;
tools) tools ;;
certs) certs ;;
up) up ;;
env)
	[[ -s "$STATE/env" ]] || die "no cluster in $STATE"
	print_env
	;;
status) status ;;
down) down ;;
restart-apiserver) restart_apiserver "${2:-0}" ;;
*)
	echo "usage: $0 {build|tools|up|env|status|down|restart-apiserver [seconds]}" >&2
	exit 2
	;;
esac

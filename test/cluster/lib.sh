# Shared settings and helpers of the cluster harness; sourced, not run.
# shellcheck shell=bash

# Pinned versions. Kubernetes and containerd can be overridden
# (`make e2e K8S_VERSION=v1.34.4 CONTAINERD_VERSION=v1.7.35`, see
# `make e2e-matrix`); the defaults are what CI runs.
K8S_DEFAULT_VERSION=v1.37.2
CONTAINERD_DEFAULT_VERSION=v2.4.2
K8S_VERSION=${K8S_VERSION:-$K8S_DEFAULT_VERSION}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-$CONTAINERD_DEFAULT_VERSION}
# The container runtime kubelet talks to. Only containerd here; a harness
# with another runtime accepts it in RUNTIME (make e2e-matrix passes it).
RUNTIME=${RUNTIME:-containerd}
if [[ $RUNTIME != containerd ]]; then
	printf 'RUNTIME=%s: this harness runs containerd only\n' "$RUNTIME" >&2
	exit 2
fi
ETCD_VERSION=v3.6.16
CNI_PLUGINS_VERSION=v1.9.1
DEBS="runc containernetworking-plugins busybox-static openssl iproute2 iptables"

HARNESS=${HARNESS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
REPO=$(cd "$HARNESS/../.." && pwd)
CACHE=$HARNESS/.cache
CACHE_BIN=$CACHE/bin
# The pinned versions' binaries are in $CACHE_BIN, any other version's in a
# folder of its own, so switching versions back and forth rebuilds nothing.
K8S_BIN=$CACHE_BIN CONTAINERD_BIN=$CACHE_BIN
[[ $K8S_VERSION == "$K8S_DEFAULT_VERSION" ]] || K8S_BIN=$CACHE/k8s-$K8S_VERSION/bin
[[ $CONTAINERD_VERSION == "$CONTAINERD_DEFAULT_VERSION" ]] || CONTAINERD_BIN=$CACHE/containerd-$CONTAINERD_VERSION/bin
# Everything a running cluster owns lives under one folder.
CLUSTER_DIR=${CLUSTER_DIR:-$CACHE/cluster}
CNI_BIN_DIR=/usr/lib/cni
# containerd starts the shim it finds first in PATH: its own version's.
export PATH="$CONTAINERD_BIN:$K8S_BIN:$CACHE_BIN:$PATH"

log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
	local what=$1 timeout=$2 start=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - start >= timeout)); then
			log "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep 0.2
	done
}

kubectl_() { "$K8S_BIN/kubectl" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "$@"; }

# Images the harness builds and imports (imagePullPolicy: Never everywhere).
PAUSE_IMAGE=docker.io/library/e2e-pause:1
TEST_IMAGE=docker.io/library/e2e-busybox:1
NRI_SOCK=$CLUSTER_DIR/nri/nri.sock
# The simulated SR-IOV node's fixture host root (the driver's HOST_ROOT).
HOST_ROOT=$CLUSTER_DIR/hostroot
# Kubelet's root is the one thing outside $CLUSTER_DIR: the DRA plugin's
# socket, <root>/plugins/sriov.dra.dev/dra-<pod UID>.sock, must fit the 107
# bytes of a unix socket path, which a root under a deep checkout does not.
KUBELET_TOP=/var/lib/sriov-dra-e2e
KUBELET_ROOT=$KUBELET_TOP/kubelet
SIM_VFS=${SIM_VFS:-4}

# ctr against the harness containerd, without its cgroup v1 deprecation line.
ctr_() {
	"$CONTAINERD_BIN/ctr" --address "$CLUSTER_DIR/containerd/containerd.sock" -n k8s.io "$@" 2> >(grep -v 'DEPRECATION: The support for cgroup v1' >&2)
}

# render_chart OUT: the Helm chart rendered for its default values into OUT.
# helmrender/main.go is built in a copy of test/helm's module (the one that
# pins Helm for the chart check), so the product module never needs Helm.
render_chart() {
	local out=$1 mod=$CACHE/helmrender bin=$CACHE_BIN/helmrender src=$HARNESS/helmrender/main.go
	if [[ ! -x $bin || $src -nt $bin || $REPO/test/helm/go.mod -nt $bin || $REPO/test/helm/go.sum -nt $bin ]]; then
		rm -rf "$mod"
		mkdir -p "$mod" "$CACHE_BIN"
		sed 's#^module .*#module sriov-dra-e2e/helmrender#' "$REPO/test/helm/go.mod" >"$mod/go.mod"
		cp "$REPO/test/helm/go.sum" "$mod/go.sum"
		sed '/^\/\/go:build ignore$/,/^$/d' "$src" >"$mod/main.go"
		(cd "$mod" && go build -o "$bin" .) || return 1
	fi
	"$bin" -chart "$REPO/deployments/helm/sriov-dra" -namespace sriov-dra -kube-version "$K8S_VERSION" >"$out"
}

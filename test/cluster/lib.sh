# Shared settings and helpers of the cluster harness; sourced, not run.
# shellcheck shell=bash

# Pinned versions. Kubernetes and containerd can be overridden
# (`make e2e K8S_VERSION=v1.34.4 CONTAINERD_VERSION=v1.7.35`, see
# `make e2e-matrix`); the defaults are what CI runs.
K8S_DEFAULT_VERSION=v1.37.2
CONTAINERD_DEFAULT_VERSION=v2.4.2
K8S_VERSION=${K8S_VERSION:-$K8S_DEFAULT_VERSION}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-$CONTAINERD_DEFAULT_VERSION}
ETCD_VERSION=v3.6.16
CNI_PLUGINS_VERSION=v1.9.1
CRIO_VERSION=v1.34.0
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

# The container runtime kubelet talks to: containerd (default) or crio
# (`make e2e RUNTIME=crio`). RUNTIME_VERSION is the pinned version the
# cluster runs, for whoever records what a run was made with.
RUNTIME=${RUNTIME:-containerd}
case $RUNTIME in
containerd) RUNTIME_VERSION=$CONTAINERD_VERSION ;;
crio)
	RUNTIME_VERSION=$CRIO_VERSION
	# conmon: CRI-O's container monitor. skopeo: puts the harness's OCI
	# image tars into CRI-O's image store (containers/storage) without a
	# registry.
	DEBS+=" conmon skopeo"
	;;
*)
	printf 'RUNTIME=%s: unknown container runtime (containerd or crio)\n' "$RUNTIME" >&2
	exit 2
	;;
esac
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
CTRD_SOCK=$CLUSTER_DIR/containerd/containerd.sock
CRIO_DIR=$CLUSTER_DIR/crio
CRIO_SOCK=$CRIO_DIR/crio.sock
# CRI-O's image store (containers/storage, vfs driver).
CRIO_STORE="vfs@$CRIO_DIR/storage+$CRIO_DIR/storage-run"
# Where the runtime keeps the pod network namespaces (the driver mounts it).
if [[ $RUNTIME == crio ]]; then
	RUNTIME_SOCK=$CRIO_SOCK
	NETNS_DIR=$CRIO_DIR/ns/netns
else
	RUNTIME_SOCK=$CTRD_SOCK
	NETNS_DIR=$CLUSTER_DIR/containerd/state/io.containerd.grpc.v1.cri/netns
fi
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

# image_import TAR: an OCI layout tar (test/ocitar) into the runtime's image
# store. CRI-O reads containers/storage, which skopeo writes directly.
image_import() {
	if [[ $RUNTIME == crio ]]; then
		skopeo --policy "$CRIO_DIR/policy.json" copy -q "oci-archive:$1" \
			"containers-storage:[$CRIO_STORE]$(image_name "$1")" >/dev/null
	else
		ctr_ images import "$1" >/dev/null
	fi
}

# image_present REF: the runtime's image store has REF.
image_present() {
	if [[ $RUNTIME == crio ]]; then
		skopeo --policy "$CRIO_DIR/policy.json" inspect --raw "containers-storage:[$CRIO_STORE]$1" >/dev/null 2>&1
	else
		ctr_ images ls -q | grep -qx "$1"
	fi
}

# image_name TAR: the name test/ocitar wrote into the tar's index.
image_name() {
	tar -xOf "$1" index.json | sed -n 's/.*"io.containerd.image.name":"\([^"]*\)".*/\1/p'
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

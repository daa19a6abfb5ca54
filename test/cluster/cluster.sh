#!/usr/bin/env bash
# A one-node Kubernetes cluster from the binaries build.sh made, everything
# under one folder ($CLUSTER_DIR: PKI, configs, state, logs, PIDs), every
# component on 127.0.0.1, node name `localhost`.
#
#   bash test/cluster/cluster.sh up      # idempotent: a healthy cluster is left as it is
#   bash test/cluster/cluster.sh down    # idempotent: tears down whatever is left
#   bash test/cluster/cluster.sh status
#   bash test/cluster/cluster.sh smoke   # a plain pod runs, answers exec, is deleted
#   bash test/cluster/cluster.sh env     # prints the KUBECONFIG line
#
# Teardown undoes everything up did: pods deleted (so the driver gets its
# devices back), components stopped by PID, leftover sandboxes and shims
# killed, mounts under the folder unmounted, links deleted, kubelet's cgroups
# removed, and the host sysctls kubelet changed restored.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
CTRD_ROOT=$CLUSTER_DIR/containerd/root
CTRD_STATE=$CLUSTER_DIR/containerd/state
CNI_CONF_DIR=$CLUSTER_DIR/cni/net.d
CDI_DIRS=("$CLUSTER_DIR/cdi" /etc/cdi)
POD_BRIDGE=sdra-cni0
POD_SUBNET=10.244.0.0/24
API=https://127.0.0.1:6443
# Sysctls kubelet (and the pod bridge) change on the host; saved at up, restored at down.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward)
COMPONENTS=(etcd kube-apiserver "$RUNTIME" kube-controller-manager kube-scheduler kubelet)

# FEATURE_GATES (e.g. "DRADeviceTaints=true,DRAExtendedResource=true") are
# passed to the Kubernetes components that offer them: a component refuses a
# gate its version does not know, so each gate is checked against the
# component's --help (alpha and beta gates; a GA gate is on anyway) and left
# out, with a log line, where it is not offered. The e2e tests that need a
# missing feature skip and say so.
FEATURE_GATES=${FEATURE_GATES:-}

# gates_for BINARY: the --feature-gates value of FEATURE_GATES that BINARY offers.
gates_for() {
	local bin=$1 help g out=()
	[[ -n $FEATURE_GATES ]] || return 0
	help=$("$bin" --help 2>&1 || true)
	for g in ${FEATURE_GATES//,/ }; do
		if grep -qE "^[[:space:]]+(kube:)?${g%%=*}=true\|false" <<<"$help"; then
			out+=("$g")
		else
			log "$(basename "$bin") $K8S_VERSION does not offer feature gate ${g%%=*} (unknown, or GA and on): not set"
		fi
	done
	(IFS=,; echo "${out[*]}")
}

# gate_flag BINARY: the --feature-gates flag for BINARY, or nothing.
gate_flag() {
	local g
	g=$(gates_for "$1")
	[[ -z $g ]] || echo "--feature-gates=$g"
}

pid_alive() {
	local f=$PIDS/$1.pid
	[[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start NAME BINARY ARGS...: runs a component in its own session, logging to logs/NAME.log.
start() {
	local name=$1 bin=$2
	shift 2
	if pid_alive "$name"; then
		return 0
	fi
	setsid "$bin" "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
}

# stop NAME: SIGTERM by PID, SIGKILL after 10 s.
stop() {
	local f=$PIDS/$1.pid pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$1 (pid $pid) ignored SIGTERM; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$f"
}

# ---------------------------------------------------------------- PKI

gen_cert() { # NAME CN ORG(or -) [SAN]
	local name=$1 cn=$2 org=$3 san=${4:-}
	local subj="/CN=$cn"
	[[ $org != - ]] && subj="/O=$org$subj"
	openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	local ext=$PKI/$name.ext
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [[ -n $san ]]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$san"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$ext"
}

make_pki() {
	[[ -f $PKI/done ]] && return 0
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
		-days 30 -subj "/CN=sriov-dra-e2e-ca" 2>/dev/null
	gen_cert apiserver kube-apiserver - \
		"IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	gen_cert admin admin system:masters
	gen_cert kubelet system:node:localhost system:nodes
	gen_cert scheduler system:kube-scheduler -
	gen_cert controller-manager system:kube-controller-manager -
	gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	touch "$PKI/done"
}

kubeconfig() { # NAME CERT
	cat >"$CLUSTER_DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $API
    certificate-authority: $PKI/ca.crt
users:
- name: $1
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $1}
current-context: e2e
EOF
}

# ---------------------------------------------------------------- configs

# containerd_config_v2: the same containerd settings as write_configs' in
# the version 2 format of containerd 1.7 (one CRI plugin; NRI and CDI
# disabled unless enabled here).
containerd_config_v2() {
	cat <<EOF
version = 2
root = "$CTRD_ROOT"
state = "$CTRD_STATE"

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = "$CTRD_SOCK.debug"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  sandbox_image = "$PAUSE_IMAGE"
  enable_cdi = true
  cdi_spec_dirs = ["${CDI_DIRS[0]}", "${CDI_DIRS[1]}"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false

[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "$NRI_SOCK"
  plugin_path = "$CLUSTER_DIR/nri/plugins"
  plugin_config_path = "$CLUSTER_DIR/nri/conf.d"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
EOF
}

write_configs() {
	kubeconfig admin admin
	kubeconfig kubelet kubelet
	kubeconfig scheduler scheduler
	kubeconfig controller-manager controller-manager

	mkdir -p "$CNI_CONF_DIR" "$CLUSTER_DIR/cni/ipam" "${CDI_DIRS[0]}" "$CLUSTER_DIR/containerd"
	cat >"$CNI_CONF_DIR/10-pods.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CLUSTER_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF

	# containerd 1.x reads the version 2 format only (and keeps NRI and CDI
	# off unless its config turns them on).
	if [[ $CONTAINERD_VERSION == v1.* ]]; then
		containerd_config_v2 >"$CLUSTER_DIR/containerd/config.toml"
	else
		cat >"$CLUSTER_DIR/containerd/config.toml" <<EOF
version = 3
root = "$CTRD_ROOT"
state = "$CTRD_STATE"

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = "$CTRD_SOCK.debug"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  cdi_spec_dirs = ["${CDI_DIRS[0]}", "${CDI_DIRS[1]}"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    # containerd 2.0 reads bin_dir, 2.1 and newer bin_dirs.
    $([[ $CONTAINERD_VERSION == v2.0.* ]] && echo "bin_dir = \"$CNI_BIN_DIR\"" || echo "bin_dirs = [\"$CNI_BIN_DIR\"]")
    conf_dir = "$CNI_CONF_DIR"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false

[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = "$NRI_SOCK"
  plugin_path = "$CLUSTER_DIR/nri/plugins"
  plugin_config_path = "$CLUSTER_DIR/nri/conf.d"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
EOF
	fi

	if [[ $RUNTIME == crio ]]; then
		write_crio_config
	fi

	echo "nameserver 127.0.0.1" >"$CLUSTER_DIR/resolv.conf"
	cat >"$CLUSTER_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$RUNTIME_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
oomScoreAdj: 0
resolvConf: $CLUSTER_DIR/resolv.conf
clusterDomain: cluster.local
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
fileCheckFrequency: 5s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
EOF
}

# CRI-O's config: the same choices as containerd's above (NRI on its own
# socket, the CDI folders, the pod CNI network, the harness pause image,
# runc with cgroupfs like kubelet), and every path CRI-O would otherwise
# keep on the host (/var/lib/crio, /var/run/crio, /var/log/crio, its image
# store) under $CRIO_DIR. The conmon attach sockets go under $KUBELET_TOP:
# their paths (folder + 64-character container ID) must fit a unix socket's
# 107 bytes.
write_crio_config() {
	mkdir -p "$CRIO_DIR" "$KUBELET_TOP/crio-attach"
	# Image signatures: none to check, every image is local.
	echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$CRIO_DIR/policy.json"
	# runc through test/cluster/runcwrap, which drops from the bundle what
	# this machine does not grant (CAP_SYS_RESOURCE: a privileged
	# container's capabilities, oom_score_adj below the runtime's own), as
	# containerd does by itself. CRI-O calls the runtime directly too, not
	# only through conmon: the runc path goes in this script.
	(cd "$REPO" && go build -o "$CACHE_BIN/runcwrap" ./test/cluster/runcwrap)
	cat >"$CRIO_DIR/runc" <<EOF
#!/bin/sh
RUNCWRAP_RUNC=$(command -v runc) exec "$CACHE_BIN/runcwrap" "\$@"
EOF
	chmod 755 "$CRIO_DIR/runc"
	cat >"$CRIO_DIR/crio.conf" <<EOF
[crio]
root = "$CRIO_DIR/storage"
runroot = "$CRIO_DIR/storage-run"
storage_driver = "vfs"
log_dir = "$CRIO_DIR/pods"
version_file = "$CRIO_DIR/version"
version_file_persist = "$CRIO_DIR/version-persist"
clean_shutdown_file = "$CRIO_DIR/clean.shutdown"

[crio.api]
listen = "$CRIO_SOCK"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
selinux = false
namespaces_dir = "$CRIO_DIR/ns"
pinns_path = "$CACHE_BIN/pinns"
container_exits_dir = "$CRIO_DIR/exits"
container_attach_socket_dir = "$KUBELET_TOP/crio-attach"
hooks_dir = []
irqbalance_config_file = ""
cdi_spec_dirs = ["${CDI_DIRS[0]}", "${CDI_DIRS[1]}"]

[crio.runtime.runtimes.runc]
runtime_path = "$CRIO_DIR/runc"
runtime_type = "oci"
runtime_root = "$CRIO_DIR/runc-state"
monitor_path = "$(command -v conmon)"
monitor_cgroup = "pod"

[crio.image]
pause_image = "$PAUSE_IMAGE"
pause_command = "/pause"
pinned_images = ["$PAUSE_IMAGE"]
signature_policy = "$CRIO_DIR/policy.json"

[crio.network]
network_dir = "$CNI_CONF_DIR"
plugin_dirs = ["$CNI_BIN_DIR"]

[crio.nri]
enable_nri = true
nri_listen = "$NRI_SOCK"
nri_plugin_dir = "$CLUSTER_DIR/nri/plugins"
nri_plugin_config_dir = "$CLUSTER_DIR/nri/conf.d"
nri_plugin_registration_timeout = "5s"
nri_plugin_request_timeout = "2s"
EOF
}

# ---------------------------------------------------------------- images

# Builds the pause and test-pod images with test/ocitar (once) and imports them.
import_base_images() {
	local ocitar=$CACHE_BIN/ocitar img=$CACHE/images
	mkdir -p "$img"
	if [[ ! -x $ocitar || $REPO/test/ocitar -nt $ocitar ]]; then
		(cd "$REPO" && CGO_ENABLED=0 go build -o "$ocitar" ./test/ocitar)
	fi
	if [[ ! -f $img/pause.tar || $HARNESS/pause/main.go -nt $img/pause.tar ]]; then
		(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$img/pause" ./test/cluster/pause)
		"$ocitar" -name "$PAUSE_IMAGE" -file "$img/pause=/pause" -entrypoint /pause -out "$img/pause.tar"
	fi
	if [[ ! -f $img/busybox.tar ]]; then
		local args=(-name "$TEST_IMAGE" -file /bin/busybox=/bin/busybox -dir /tmp=1777 -dir /proc -dir /sys
			-dir /dev -dir /etc -env PATH=/bin:/sbin:/usr/bin:/usr/sbin -entrypoint /bin/sh)
		local applet
		for applet in sh ls cat sleep ip ping echo grep ps hostname ifconfig wc sed awk true false id env; do
			args+=(-link "/bin/$applet=busybox")
		done
		"$ocitar" "${args[@]}" -out "$img/busybox.tar"
	fi
	import_image "$img/pause.tar"
	import_image "$img/busybox.tar"
}

import_image() {
	image_import "$1"
}

# ---------------------------------------------------------------- up

save_sysctls() {
	[[ -f $CLUSTER_DIR/sysctl.saved ]] && return 0
	local k
	for k in "${SYSCTLS[@]}"; do
		echo "$k=$(sysctl -n "$k")"
	done >"$CLUSTER_DIR/sysctl.saved"
}

api_ready() { kubectl_ get --raw /readyz >/dev/null 2>&1; }
node_ready() {
	[[ $(kubectl_ get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

healthy() {
	local c
	for c in "${COMPONENTS[@]}"; do
		pid_alive "$c" || return 1
	done
	api_ready && node_ready
}

up() {
	local t0=$SECONDS
	if healthy 2>/dev/null; then
		log "cluster already up in $CLUSTER_DIR"
		return 0
	fi
	if [[ -d $PIDS ]]; then
		log "a partial cluster is there; tearing it down first"
		down
	fi
	# BUILT=1: the caller ran build.sh already (make demo shows it as a step).
	[[ -n ${BUILT:-} ]] || bash "$HARNESS/build.sh" >&2
	mkdir -p "$CLUSTER_DIR" "$LOGS" "$PIDS" "$CLUSTER_DIR/nri/plugins" "$CLUSTER_DIR/nri/conf.d" "$NETNS_DIR"
	echo "$RUNTIME" >"$CLUSTER_DIR/runtime"
	save_sysctls
	if [[ $RUNTIME == crio ]]; then
		mount_hugetlb_cgroup
	fi
	make_pki
	write_configs

	# The pod netns folder is a shared mount so the driver's container, which
	# mounts it with HostToContainer propagation, sees namespaces created later.
	if ! mountpoint -q "$NETNS_DIR"; then
		mount --bind "$NETNS_DIR" "$NETNS_DIR"
		mount --make-shared "$NETNS_DIR"
	fi

	log "starting etcd"
	start etcd "$CACHE_BIN/etcd" --name e2e --data-dir "$CLUSTER_DIR/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
		--unsafe-no-fsync --log-level warn

	if [[ $RUNTIME == crio ]]; then
		log "starting crio $CRIO_VERSION (NRI socket $NRI_SOCK)"
		# --config-dir "": only this harness's config, no drop-ins from the host.
		start crio "$CACHE_BIN/crio" --config "$CRIO_DIR/crio.conf" --config-dir "" --log-level info
	else
		log "starting containerd (NRI socket $NRI_SOCK)"
		start containerd "$CONTAINERD_BIN/containerd" --config "$CLUSTER_DIR/containerd/config.toml"
	fi

	log "starting kube-apiserver"
	# shellcheck disable=SC2046 # gate_flag prints one word or none
	start kube-apiserver "$K8S_BIN/kube-apiserver" $(gate_flag "$K8S_BIN/kube-apiserver") \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types=Hostname,InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.96.0.0/24 \
		--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
		--allow-privileged=true --endpoint-reconciler-type=none --v=1

	wait_for "kube-apiserver /readyz" 90 api_ready || die "kube-apiserver not ready; see $LOGS/kube-apiserver.log"
	log "kube-apiserver ready after $((SECONDS - t0)) s"

	# shellcheck disable=SC2046
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" $(gate_flag "$K8S_BIN/kube-controller-manager") \
		--kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" --v=1
	# shellcheck disable=SC2046
	start kube-scheduler "$K8S_BIN/kube-scheduler" $(gate_flag "$K8S_BIN/kube-scheduler") \
		--kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --v=1

	if [[ $RUNTIME == crio ]]; then
		wait_for "crio socket" 60 test -S "$CRIO_SOCK" ||
			die "crio not up; see $LOGS/crio.log"
	else
		wait_for "containerd socket" 30 ctr_ version ||
			die "containerd not up; see $LOGS/containerd.log"
	fi
	import_base_images

	log "simulated SR-IOV node: veth pairs + fixture sysfs in $HOST_ROOT"
	(cd "$REPO" && go build -o "$CACHE_BIN/simnode" ./test/cluster/simnode)
	"$CACHE_BIN/simnode" -root "$HOST_ROOT" -vfs "$SIM_VFS" up >"$CLUSTER_DIR/simnode.txt"
	# A netdev whose pod netns dies comes back to the host, as the kernel
	# returns a physical VF (a bare veth would die with the netns).
	start simnode-watch "$CACHE_BIN/simnode" -vfs "$SIM_VFS" watch
	# A bind of the folder onto itself makes it a shared mount point, without
	# depending on how / is mounted here, should a mount below it ever need
	# HostToContainer propagation (the runtime allows it only from a shared
	# or slave mount).
	if ! mountpoint -q "$HOST_ROOT"; then
		mount --bind "$HOST_ROOT" "$HOST_ROOT"
		mount --make-shared "$HOST_ROOT"
	fi

	log "starting kubelet"
	# shellcheck disable=SC2046
	start kubelet "$K8S_BIN/kubelet" $(gate_flag "$K8S_BIN/kubelet") --config="$CLUSTER_DIR/kubelet.yaml" \
		--kubeconfig="$CLUSTER_DIR/kubelet.kubeconfig" --root-dir="$KUBELET_ROOT" \
		--cert-dir="$KUBELET_ROOT/pki" --hostname-override=localhost --v=2
	wait_for "node localhost Ready" 90 node_ready || die "node not Ready; see $LOGS/kubelet.log"
	log "node Ready after $((SECONDS - t0)) s"
	wait_for "default service account" 60 kubectl_ get serviceaccount default -n default ||
		die "no default service account; see $LOGS/kube-controller-manager.log"
	log "cluster up in $((SECONDS - t0)) s: export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig"
}

# ---------------------------------------------------------------- down

# delete_pods: graceful deletion first, so kubelet runs StopPodSandbox and
# Unprepare and the driver returns its devices; the driver's own pods last.
delete_pods() {
	pid_alive kube-apiserver && pid_alive kubelet && api_ready || return 0
	log "deleting pods"
	kubectl_ delete pods --all-namespaces --field-selector metadata.namespace!=sriov-dra \
		--wait=true --timeout=60s >/dev/null 2>&1 || log "some pods did not go away in 60 s"
	kubectl_ delete daemonsets,pods --all -n sriov-dra --wait=true --timeout=30s >/dev/null 2>&1 || true
}

# Kills leftover containers and sandboxes through containerd, then their shims.
remove_sandboxes() {
	local ctr=(ctr_) id
	if pid_alive containerd; then
		for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
			"${ctr[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
		done
		sleep 0.5
		for id in $("${ctr[@]}" tasks ls -q 2>/dev/null); do
			"${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
		done
		for id in $("${ctr[@]}" containers ls -q 2>/dev/null); do
			"${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
		done
	fi
}

# Shims this harness's containerd started: their executable is our binary.
kill_shims() {
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		if [[ $exe == "$CONTAINERD_BIN/containerd-shim-runc-v2" ]]; then
			log "killing leftover shim ${p#/proc/}"
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
}

# conmons this harness's CRI-O started: their exit folder is ours. The
# containers they watch are killed with kubelet's cgroups below.
kill_conmons() {
	local p
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/exe" 2>/dev/null) == */conmon ]] || continue
		if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$CRIO_DIR/"; then
			log "killing leftover conmon ${p#/proc/}"
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
}

# CRI-O sets hugepage limits whenever the kernel lists the hugetlb
# controller (/proc/cgroups), and runc then fails every container if its
# cgroup v1 hierarchy is not mounted, as on this machine. Mount it for the
# cluster's lifetime (down unmounts it).
mount_hugetlb_cgroup() {
	local d=/sys/fs/cgroup/hugetlb
	[[ -d /sys/fs/cgroup/cpu && ! -f /sys/fs/cgroup/cgroup.controllers ]] || return 0 # cgroup v1 only
	awk '$1 == "hugetlb" && $4 == 1 {f=1} END {exit !f}' /proc/cgroups || return 0
	mountpoint -q "$d" && return 0
	grep -qw hugetlb /proc/self/mountinfo && return 0 # mounted elsewhere
	mkdir -p "$d"
	mount -t cgroup -o hugetlb cgroup "$d"
	echo "$d" >"$CLUSTER_DIR/hugetlb.mounted"
	log "mounted the hugetlb cgroup controller at $d (CRI-O sets hugepage limits)"
}

unmount_hugetlb_cgroup() {
	local f=$CLUSTER_DIR/hugetlb.mounted d
	[[ -f $f ]] || return 0
	d=$(cat "$f")
	umount "$d" 2>/dev/null && rmdir "$d" 2>/dev/null || log "cannot unmount $d"
	rm -f "$f"
}

# Kills what is left in kubelet's cgroups and removes them, deepest first.
remove_cgroups() {
	local base d
	for base in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
		[[ -d $base ]] || continue
		while read -r d; do
			if [[ -f $d/cgroup.procs ]]; then
				while read -r pid; do
					kill -KILL "$pid" 2>/dev/null || true
				done <"$d/cgroup.procs"
			fi
		done < <(find "$base" -type d)
	done
	sleep 0.3
	for base in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/unified/kubepods; do
		[[ -d $base ]] || continue
		find "$base" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[[ -d $base ]] && log "could not remove cgroup $base"
	done
	return 0
}

unmount_all() {
	local m
	# Deepest first; the list comes from the kernel, so only mounts that exist.
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
	done < <(awk -v d="$CLUSTER_DIR" -v k="$KUBELET_TOP" \
		'index($5, d"/") == 1 || $5 == d || index($5, k"/") == 1 || $5 == k {print $5}' /proc/self/mountinfo | sort -r)
}

delete_links() {
	ip link del "$POD_BRIDGE" 2>/dev/null || true
	# The simulated SR-IOV node's veth pairs (wherever their netdev is now).
	if [[ -x $CACHE_BIN/simnode ]]; then
		"$CACHE_BIN/simnode" -root "$HOST_ROOT" down || log "simnode down failed"
	fi
}

restore_sysctls() {
	local f=$CLUSTER_DIR/sysctl.saved line
	[[ -f $f ]] || return 0
	while read -r line; do
		sysctl -q -w "$line" >/dev/null 2>&1 || log "cannot restore sysctl $line"
	done <"$f"
	rm -f "$f"
}

down() {
	local t0=$SECONDS
	[[ -d $CLUSTER_DIR ]] || {
		log "no cluster in $CLUSTER_DIR"
		return 0
	}
	delete_pods
	stop kubelet
	# The runtime the cluster was started with (up records it), whatever
	# RUNTIME says now: `make demo-down` needs no RUNTIME=.
	local rt
	rt=$(cat "$CLUSTER_DIR/runtime" 2>/dev/null) || rt=$RUNTIME
	if [[ $rt == crio ]]; then
		stop crio
		kill_conmons
	else
		remove_sandboxes
		stop containerd
		kill_shims
	fi
	local c
	for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop "$c"
	done
	remove_cgroups
	unmount_hugetlb_cgroup
	unmount_all
	stop simnode-watch
	delete_links
	restore_sysctls
	# Keep the last logs for a look after the fact; everything else goes.
	if [[ -d $LOGS ]]; then
		rm -rf "$CACHE/last-logs"
		mv "$LOGS" "$CACHE/last-logs"
	fi
	rm -rf "$CLUSTER_DIR" "$KUBELET_TOP"
	log "cluster down in $((SECONDS - t0)) s (logs kept in $CACHE/last-logs)"
}

# smoke: a plain pod (no claim) from the imported test image runs, answers
# kubectl exec, and goes away.
smoke() {
	local t0=$SECONDS
	kubectl_ apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: smoke, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  dnsPolicy: None
  dnsConfig: {nameservers: [127.0.0.1]}
  containers:
  - name: app
    image: $TEST_IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"]
EOF
	kubectl_ wait --for=condition=Ready pod/smoke --timeout=90s >/dev/null || {
		kubectl_ describe pod smoke | tail -20
		die "smoke pod not Ready"
	}
	local out
	out=$(kubectl_ exec smoke -- sh -c 'echo hello from $(hostname); ip -o -4 addr show eth0')
	echo "$out"
	kubectl_ delete pod smoke --wait=true --timeout=60s >/dev/null
	log "plain pod ran, answered exec and was deleted in $((SECONDS - t0)) s"
}

status() {
	local c
	for c in "${COMPONENTS[@]}"; do
		if pid_alive "$c"; then echo "$c: running (pid $(cat "$PIDS/$c.pid"))"; else echo "$c: stopped"; fi
	done
	if api_ready; then kubectl_ get nodes -o wide; fi
}

# Sourcing (for debugging) defines the functions only.
[[ ${BASH_SOURCE[0]} != "$0" ]] && return 0

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
smoke) smoke ;;
env) echo "export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig" ;;
*)
	echo "usage: $0 up|down|status|smoke|env" >&2
	exit 2
	;;
esac

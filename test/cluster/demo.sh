#!/usr/bin/env bash
# make demo: build what is missing, bring up the one-node cluster with the
# driver on a simulated SR-IOV node, run two example pods from
# deployments/examples/, and show what they got: the published devices and
# who holds them, each claim's allocation and status, `ip addr` in each pod,
# and where the simulated netdevs are now. The cluster stays up;
# `make demo-down` removes it. Progress goes to stderr, the results to stdout.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DEMO_NS=demo
EXAMPLES=(ethernet-vf pf-passthrough)
t0=$SECONDS

if [[ -t 1 ]]; then
	section() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
else
	section() { printf '\n== %s ==\n' "$*"; }
fi
step() { log "[$1/4] $2"; }

step 1 "binaries (pinned Kubernetes, $RUNTIME $RUNTIME_VERSION, etcd; built from source on the first run)"
bash "$HERE/build.sh"
step 2 "one-node cluster on 127.0.0.1, node localhost, with a simulated SR-IOV node"
BUILT=1 bash "$HERE/cluster.sh" up
step 3 "the driver from deployments/base"
bash "$HERE/driver.sh" deploy >/dev/null

step 4 "example pods: ${EXAMPLES[*]}"
# The examples as they are, through a kustomize overlay that only swaps in
# the locally imported image and keeps DNS on this machine.
overlay=$CLUSTER_DIR/demo
rm -rf "$overlay"
mkdir -p "$overlay"
for ex in "${EXAMPLES[@]}"; do
	cp "$REPO/deployments/examples/$ex.yaml" "$overlay/"
done
{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	echo "namespace: $DEMO_NS"
	echo "resources:"
	for ex in "${EXAMPLES[@]}"; do echo "- $ex.yaml"; done
	cat <<EOF
images:
- name: busybox
  newName: ${TEST_IMAGE%:*}
  newTag: "${TEST_IMAGE##*:}"
patches:
- target: {kind: Pod}
  patch: |-
    - {op: add, path: /spec/dnsPolicy, value: None}
    - {op: add, path: /spec/dnsConfig, value: {nameservers: [127.0.0.1]}}
    - {op: add, path: /spec/terminationGracePeriodSeconds, value: 2}
    - {op: add, path: /spec/containers/0/imagePullPolicy, value: Never}
EOF
} >"$overlay/kustomization.yaml"
# A re-run starts from fresh pods (a pod's spec cannot be changed in place).
if kubectl_ get namespace "$DEMO_NS" >/dev/null 2>&1; then
	kubectl_ delete namespace "$DEMO_NS" --wait=true --timeout=90s >/dev/null
fi
kubectl_ create namespace "$DEMO_NS" >/dev/null
kubectl_ apply -k "$overlay" >/dev/null
if ! kubectl_ -n "$DEMO_NS" wait --for=condition=Ready pod --all --timeout=180s >/dev/null; then
	kubectl_ -n "$DEMO_NS" get pods,resourceclaims -o wide
	kubectl_ -n "$DEMO_NS" get events --sort-by=.lastTimestamp | tail -20
	bash "$HERE/driver.sh" logs | tail -40
	die "example pods not Ready"
fi
log "example pods Ready; demo up in $((SECONDS - t0)) s"

section "Pods (namespace $DEMO_NS, from deployments/examples/)"
kubectl_ -n "$DEMO_NS" get pods -o custom-columns='POD:.metadata.name,STATUS:.status.phase,NODE:.spec.nodeName,POD IP (eth0):.status.podIP,CLAIM:.status.resourceClaimStatuses[*].resourceClaimName'

section "Devices of sriov.dra.dev in the cluster (sriov-dra devices)"
echo "Each VF, and the PF without VFs, is a DRA device in the node's ResourceSlice;"
echo "the scheduler allocated one to each example's claim."
echo
"$REPO/bin/sriov-dra" devices --kubeconfig "$CLUSTER_DIR/admin.kubeconfig"

section "Claims: allocation (scheduler) and status (written by the driver)"
# shellcheck disable=SC2016 # a Go template, not shell
kubectl_ -n "$DEMO_NS" get resourceclaims -o go-template='{{range .items -}}
{{.metadata.namespace}}/{{.metadata.name}}{{range .status.reservedFor}}  (pod {{.name}}){{end}}
{{- range .status.allocation.devices.results}}
  allocated  request {{.request}} -> {{.device}}  (driver {{.driver}}, pool {{.pool}})
{{- end}}
{{- range .status.devices}}
  status     {{.device}}:{{range .conditions}} {{.type}}={{.status}} ({{.reason}}){{end}}
{{- with .networkData}}
             networkData: interface {{.interfaceName}}, IPs {{range $i, $ip := .ips}}{{if $i}}, {{end}}{{$ip}}{{end}}, MAC {{.hardwareAddress}}
{{- end}}
{{- else}}
  status     (no device status yet)
{{- end}}
{{end}}'

for pod in "${EXAMPLES[@]}"; do
	section "ip addr inside pod $DEMO_NS/$pod"
	kubectl_ -n "$DEMO_NS" exec "$pod" -- ip addr
done

section "The simulated SR-IOV node: where each netdev is now"
echo "veth links stand in for the NICs; the driver reads a fixture sysfs in"
echo "$HOST_ROOT. A netdev handed to a pod leaves the host's namespace."
echo
# device -> "pod interface" of every allocated device.
declare -A holder=()
# shellcheck disable=SC2016 # a Go template, not shell
while read -r dev ns pod ifname; do
	[[ -n $dev ]] && holder[$dev]="in pod $ns/$pod as $ifname"
done < <(kubectl_ get resourceclaims -A -o go-template='{{range .items}}{{$ns := .metadata.namespace}}{{$pod := "-"}}{{range .status.reservedFor}}{{$pod = .name}}{{end}}{{range .status.devices}}{{.device}} {{$ns}} {{$pod}} {{with .networkData}}{{.interfaceName}}{{else}}-{{end}}
{{end}}{{end}}')
{
	printf 'NETDEV\tKIND\tDEVICE\tWHERE\n'
	# simnode.txt: DEVICE KIND PCI PF VF NETDEV LINK NUMA DRIVER
	while read -r dev kind _ _ vf netdev _; do
		[[ $dev == DEVICE ]] && continue
		where="on the host"
		if [[ -n ${holder[$dev]:-} ]]; then
			where=${holder[$dev]}
			ip link show dev "$netdev" >/dev/null 2>&1 && where="$where, but still on the host"
		elif ! ip link show dev "$netdev" >/dev/null 2>&1; then
			where="not on the host"
		elif [[ $kind == pf && $vf == -1 ]] && grep -q "^\S\+\s\+vf\s\+\S\+\s\+$netdev\s" "$CLUSTER_DIR/simnode.txt"; then
			where="on the host (PF with VFs: offered as its VFs, not whole)"
		fi
		printf '%s\t%s\t%s\t%s\n' "$netdev" "$kind" "$dev" "$where"
	done <"$CLUSTER_DIR/simnode.txt"
} | column -t -s $'\t'

echo
log "demo ready in $((SECONDS - t0)) s"
cat <<EOF

The cluster keeps running. To use it:
    export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig PATH=$CACHE_BIN:\$PATH
    kubectl get pods -A; kubectl get resourceslices; kubectl -n $DEMO_NS get resourceclaims -o yaml
    $REPO/bin/sriov-dra devices
    make demo-down    # stop and remove everything
EOF

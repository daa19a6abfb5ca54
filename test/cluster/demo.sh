#!/usr/bin/env bash
# make demo: build what is missing, bring up the one-node cluster with the
# driver on a simulated SR-IOV node, run two example pods from
# deployments/examples/, and show what they got. The cluster stays up;
# `make demo-down` removes it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

DEMO_NS=demo
EXAMPLES=(ethernet-vf pf-passthrough)
t0=$SECONDS

section() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

log "sriov-dra demo: the first run builds Kubernetes, containerd and etcd from source (about 15 min on 2 cores); later runs take seconds"
bash "$HERE/build.sh"
bash "$HERE/cluster.sh" up
bash "$HERE/driver.sh" deploy

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
  newTag: ${TEST_IMAGE##*:}
patches:
- target: {kind: Pod}
  patch: |-
    - {op: add, path: /spec/dnsPolicy, value: None}
    - {op: add, path: /spec/dnsConfig, value: {nameservers: [127.0.0.1]}}
    - {op: add, path: /spec/terminationGracePeriodSeconds, value: 2}
    - {op: add, path: /spec/containers/0/imagePullPolicy, value: Never}
EOF
} >"$overlay/kustomization.yaml"
kubectl_ create namespace "$DEMO_NS" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null
kubectl_ apply -k "$overlay" >/dev/null
log "example pods created: ${EXAMPLES[*]}; waiting for them"
if ! kubectl_ -n "$DEMO_NS" wait --for=condition=Ready pod --all --timeout=180s >/dev/null; then
	kubectl_ -n "$DEMO_NS" get pods,resourceclaims -o wide
	kubectl_ -n "$DEMO_NS" get events --sort-by=.lastTimestamp | tail -20
	bash "$HERE/driver.sh" logs | tail -40
	die "example pods not Ready"
fi

section "Devices published by sriov.dra.dev on node localhost (ResourceSlice)"
attr() { printf '{{with index .attributes "sriov.dra.dev/%s"}}{{range $k, $v := .}}{{$v}}{{end}}{{else}}-{{end}}' "$1"; }
{
	printf 'DEVICE\tKIND\tPCI\tPF\tVF\tNETDEV\tLINK\tNUMA\tPCIE-ROOT\n'
	kubectl_ get resourceslices --field-selector spec.driver=sriov.dra.dev -o go-template="{{range .items}}{{range .spec.devices}}{{.name}}	$(attr kind)	$(attr pciAddress)	$(attr pfName)	$(attr vfIndex)	$(attr ifName)	$(attr linkType)	$(attr numaNode)	{{with index .attributes \"resource.kubernetes.io/pcieRoot\"}}{{.string}}{{end}}
{{end}}{{end}}"
} | column -t -s $'\t'

section "Claims: allocation and status"
kubectl_ -n "$DEMO_NS" get resourceclaims -o go-template='{{range .items}}claim {{.metadata.name}}
  for pod:    {{range .status.reservedFor}}{{.name}} {{end}}
  allocated:  {{range .status.allocation.devices.results}}request {{.request}} -> {{.device}} (pool {{.pool}}, driver {{.driver}}) {{end}}
  {{range .status.devices}}status:     device {{.device}}: interface {{.networkData.interfaceName}}, ips {{range .networkData.ips}}{{.}} {{end}}, mac {{.networkData.hardwareAddress}}{{range .conditions}}, {{.type}}={{.status}}{{end}}
  {{else}}status:     (no device status yet)
{{end}}{{end}}'

for pod in "${EXAMPLES[@]}"; do
	section "ip addr inside pod $pod"
	kubectl_ -n "$DEMO_NS" exec "$pod" -- ip addr
done

section "Host side"
echo "simulated VF/PF netdevs still on the host (the others are inside the pods):"
ip -br link | awk '$1 ~ /^sd(vf|pf)[0-9]+@/ {sub(/@.*/, "", $1); print "  " $1}'

echo
log "demo ready in $((SECONDS - t0)) s. The cluster keeps running:"
echo "    export KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig PATH=$CACHE_BIN:\$PATH"
echo "    kubectl get pods -A; kubectl get resourceslices,resourceclaims -A"
echo "    make demo-down    # tear it all down"

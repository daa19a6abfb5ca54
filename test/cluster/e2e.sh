#!/usr/bin/env bash
# make e2e: cluster up (built and started if needed), driver deployed from
# deployments/, the Go e2e tests (build tag e2e), cluster down. The Helm
# chart is rendered (test/cluster/helmrender) for the manifests dry-run test.
#   KEEP=1 bash test/cluster/e2e.sh      # leave the cluster running afterwards
#   E2E_RUN=TestPFPassthrough ...        # a subset of the tests
#   K8S_VERSION=v1.34.4 CONTAINERD_VERSION=v2.0.14 ...   # another combination
# A run of the whole suite writes its result record into test/cluster/results
# and regenerates the "Tested with" tables (test/cluster/testedwith).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

t0=$SECONDS
if [[ -z ${KEEP:-} ]]; then
	trap 'bash "$HERE/cluster.sh" down' EXIT
fi
# The Helm chart for TestManifestsDryRun, rendered while the cluster starts.
chart=$CACHE/helm-default.yaml
rm -f "$chart"
(render_chart "$chart" || { rm -f "$chart"; log "rendering the Helm chart failed"; }) &
render_pid=$!
bash "$HERE/cluster.sh" up
bash "$HERE/driver.sh" deploy
wait "$render_pid" || true
helm_manifest=
[[ -s $chart ]] && helm_manifest=$chart
log "cluster ($RUNTIME $RUNTIME_VERSION, Kubernetes $K8S_VERSION) and driver ready in $((SECONDS - t0)) s; running the e2e tests"

# record_result RC LOG: the run's result record (test/cluster/results) and
# the regenerated "Tested with" tables, for a run of the whole suite (or
# with E2E_RECORD=1); the runtime and Kubernetes versions are the node's.
record_result() {
	local rc=$1 out=$2 info
	if [[ -n ${E2E_RUN:-} && -z ${E2E_RECORD:-} ]]; then
		log "a subset of the tests ran (E2E_RUN): no result record"
		return 0
	fi
	info=$(kubectl_ get node localhost -o jsonpath='{.status.nodeInfo.containerRuntimeVersion} {.status.nodeInfo.kubeletVersion}') || {
		log "cannot read the node's runtime and kubelet versions: no result record"
		return 0
	}
	local runtime=${info%% *} kubelet=${info#* }
	(cd "$REPO" && go run ./test/cluster/testedwith record -log "$out" -rc "$rc" \
		-runtime "${runtime%%://*}" -runtime-version "${runtime#*://}" -k8s-version "$kubelet" \
		-duration $((SECONDS - t0))) || log "writing the result record failed"
}

rc=0
test_out=$CACHE/e2e-test.log
(
	cd "$REPO"
	E2E_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig E2E_KUBECTL=$K8S_BIN/kubectl \
		E2E_TEST_IMAGE=$TEST_IMAGE E2E_CDI_DIR=$CLUSTER_DIR/cdi \
		E2E_BINARY=$REPO/bin/sriov-dra E2E_HELM_MANIFEST=$helm_manifest \
		go test -tags e2e -count=1 -v -timeout 30m ${E2E_RUN:+-run "$E2E_RUN"} ./test/cluster/e2e/ 2>&1 | tee "$test_out"
) || rc=$?
record_result "$rc" "$test_out"
# The driver's whole log goes with the cluster's (cluster.sh down keeps
# its logs dir as last-logs), with a count of the scans that missed devices and
# needed a confirming scan (docs/design.md, the two-scans rule).
driver_log=$CLUSTER_DIR/logs/driver.log
kubectl_ -n sriov-dra logs -l app.kubernetes.io/name=sriov-dra --all-containers --prefix --tail=-1 >"$driver_log" 2>&1 || true
log "driver log: $(grep -c 'Devices missing from a scan' "$driver_log" || true) scan(s) missed devices and were confirmed by a second one"
if ((rc != 0)); then
	log "e2e FAILED; driver logs:"
	bash "$HERE/driver.sh" logs 2>&1 | tail -80 >&2 || true
fi
log "e2e finished in $((SECONDS - t0)) s (rc=$rc)"
exit $rc

#!/usr/bin/env bash
# make e2e: cluster up (built and started if needed), driver deployed from
# deployments/, the Go e2e tests (build tag e2e), cluster down. The Helm
# chart is rendered (test/cluster/helmrender) for the manifests dry-run test.
#   KEEP=1 bash test/cluster/e2e.sh      # leave the cluster running afterwards
#   E2E_RUN=TestPFPassthrough ...        # a subset of the tests
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

rc=0
(
	cd "$REPO"
	E2E_KUBECONFIG=$CLUSTER_DIR/admin.kubeconfig E2E_KUBECTL=$CACHE_BIN/kubectl \
		E2E_TEST_IMAGE=$TEST_IMAGE E2E_CDI_DIR=$CLUSTER_DIR/cdi \
		E2E_BINARY=$REPO/bin/sriov-dra E2E_HELM_MANIFEST=$helm_manifest \
		go test -tags e2e -count=1 -v -timeout 30m ${E2E_RUN:+-run "$E2E_RUN"} ./test/cluster/e2e/
) || rc=$?
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

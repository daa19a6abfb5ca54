#!/usr/bin/env bash
# make chaos: churn of pods with VF claims on the harness cluster, the
# driver deployed from deployments/, while the driver is killed and rolled,
# the runtime and kubelet restart, the API server goes away for 20 s and
# the checkpoint's file system fills up (test/cluster/chaos/main.go). At
# the end every VF must be back as it was and nothing may be left: one
# summary line, non-zero exit on a leak or a pod that saw a wrong device.
#
#   CHAOS_MINUTES=3 CHAOS_PODS=24 CHAOS_SEED=1234 make chaos
#   CHAOS_RECORD=1 ...   # write the figures for docs/reliability.md
#                        # (test/reliability/testdata/chaos.json)
#   KEEP=1 ...           # leave the cluster running afterwards
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

MINUTES=${CHAOS_MINUTES:-3}
PODS=${CHAOS_PODS:-24}
SEED=${CHAOS_SEED:-$(((RANDOM << 15 | RANDOM) % 1000000 + 1))}
STATE_DIR=$CLUSTER_DIR/driver-state
# The checkpoint's file system: small, so the run can fill it.
STATE_SIZE=${CHAOS_STATE_SIZE:-16m}

t0=$SECONDS
if [[ -z ${KEEP:-} ]]; then
	trap 'bash "$HERE/cluster.sh" down' EXIT
fi
bash "$HERE/cluster.sh" up
# The driver's state dir on its own tmpfs, before the driver starts.
if ! mountpoint -q "$STATE_DIR"; then
	mkdir -p "$STATE_DIR"
	if [[ -n $(ls -A "$STATE_DIR") ]]; then
		die "$STATE_DIR is not empty (a driver ran here): make demo-down first"
	fi
	mount -t tmpfs -o "size=$STATE_SIZE,mode=0755" sriov-dra-chaos-state "$STATE_DIR"
fi
bash "$HERE/driver.sh" deploy
(cd "$REPO" && go build -o "$CACHE_BIN/chaos" ./test/cluster/chaos)

cmd="CHAOS_MINUTES=$MINUTES CHAOS_PODS=$PODS CHAOS_SEED=$SEED make chaos"
results=$CLUSTER_DIR/chaos.json
log "churn of $PODS pods for $MINUTES min with faults; seed $SEED (reproduce: $cmd)"
rc=0
"$CACHE_BIN/chaos" -cluster-dir "$CLUSTER_DIR" -kubeconfig "$CLUSTER_DIR/admin.kubeconfig" \
	-host-root "$HOST_ROOT" -state-dir "$STATE_DIR" -cdi-dir "$CLUSTER_DIR/cdi" \
	-marker-dir "$CLUSTER_DIR/attached" -image "$TEST_IMAGE" -runtime "${RUNTIME:-containerd}" \
	-pods "$PODS" -duration "${MINUTES}m" -seed "$SEED" -command "$cmd" -commit "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" -results "$results" || rc=$?
if [[ -n ${CHAOS_RECORD:-} && -s $results ]]; then
	mkdir -p "$REPO/test/reliability/testdata"
	cp "$results" "$REPO/test/reliability/testdata/chaos.json"
	log "figures written to test/reliability/testdata/chaos.json; regenerate docs/reliability.md (make reliability with SRIOV_DRA_UPDATE_DOCS=1)"
fi
if ((rc != 0)); then
	log "chaos FAILED; driver logs:"
	bash "$HERE/driver.sh" logs 2>&1 | tail -60 >&2 || true
fi
log "chaos finished in $((SECONDS - t0)) s (rc=$rc)"
exit $rc

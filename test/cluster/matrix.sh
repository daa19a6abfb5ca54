#!/usr/bin/env bash
# make e2e-matrix: the whole e2e suite on each documented runtime and
# Kubernetes combination, one after another. Each run writes its result
# record (test/cluster/results) and regenerates the "Tested with" tables of
# README.md and docs/install.md; commit them.
#
#   bash test/cluster/matrix.sh                       # every combination
#   MATRIX='containerd:v2.0.14:v1.37.2' bash test/cluster/matrix.sh
#   CLUSTER_LOCK=/path/to/lock bash test/cluster/matrix.sh
#
# A combination's binaries are built before its run and outside the lock
# (build.sh keeps each version's binaries, so a second matrix run builds
# nothing). With CLUSTER_LOCK set, each run takes that flock(1) lock for its
# cluster only, so others sharing the machine wait for one run, not for the
# whole matrix. A runtime the harness does not know (RUNTIME in lib.sh) is
# left out with a line saying so.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# RUNTIME:RUNTIME_VERSION:KUBERNETES_VERSION; "-" is the harness's pinned
# version of that runtime. The oldest containerd with NRI (1.7) and the
# first 2.x (2.0) next to the pinned one, the oldest Kubernetes the docs
# name (1.34) next to the pinned one, and CRI-O.
DEFAULT_MATRIX="containerd:v1.7.35:$K8S_DEFAULT_VERSION containerd:v2.0.14:$K8S_DEFAULT_VERSION
containerd:$CONTAINERD_DEFAULT_VERSION:$K8S_DEFAULT_VERSION containerd:$CONTAINERD_DEFAULT_VERSION:v1.34.4
crio:-:$K8S_DEFAULT_VERSION"
MATRIX=${MATRIX:-$DEFAULT_MATRIX}

# record_start_failure RC START RUNTIME VERSION K8S: a run that failed
# before the tests (the cluster or the driver did not come up) wrote no
# record; write a failed one, with the harness's last error as its note.
record_start_failure() {
	local rc=$1 start=$2 runtime=$3 rtv=$4 k8s=$5 rec why
	((rc != 0)) && [[ $rtv != - ]] || return 0
	[[ $runtime == crio ]] && runtime=cri-o
	rec=$REPO/test/cluster/results/$runtime-${rtv}_k8s-$k8s.json
	[[ -f $rec && $(stat -c %Y "$rec") -ge $start ]] && return 0
	why=$(grep -o 'ERROR: .*' "$CACHE/matrix-run.log" | tail -1)
	(cd "$REPO" && go run ./test/cluster/testedwith record -log /dev/null -rc "$rc" -runtime "$runtime" \
		-runtime-version "$rtv" -k8s-version "$k8s" -note "did not start: ${why#ERROR: } (test/cluster/.cache/last-logs)")
}

summary=()
failed=0
for combo in $MATRIX; do
	IFS=: read -r runtime rtv k8s <<<"$combo"
	vars=(RUNTIME="$runtime" K8S_VERSION="$k8s")
	if [[ $runtime == containerd ]]; then
		[[ $rtv == - ]] && rtv=$CONTAINERD_DEFAULT_VERSION
		vars+=(CONTAINERD_VERSION="$rtv")
	elif [[ $rtv != - ]]; then
		vars+=("$(tr '[:lower:]-' '[:upper:]_' <<<"$runtime")_VERSION=$rtv")
	fi
	name="$runtime $rtv on Kubernetes $k8s"
	if ! (env "${vars[@]}" bash -c 'source "$1"' _ "$HERE/lib.sh") >/dev/null 2>&1; then
		log "matrix: $name: this harness has no RUNTIME=$runtime; left out"
		summary+=("$name: left out (no RUNTIME=$runtime in this harness)")
		continue
	fi
	t0=$SECONDS
	log "matrix: $name: building"
	if ! env "${vars[@]}" bash "$HERE/build.sh" >&2; then
		summary+=("$name: build FAILED")
		failed=1
		continue
	fi
	tb=$((SECONDS - t0))
	log "matrix: $name: e2e"
	lock=()
	[[ -n ${CLUSTER_LOCK:-} ]] && lock=(flock "$CLUSTER_LOCK")
	rc=0
	start=$(date +%s)
	"${lock[@]}" env "${vars[@]}" BUILT=1 bash "$HERE/e2e.sh" 2>&1 | tee "$CACHE/matrix-run.log" || rc=$?
	record_start_failure "$rc" "$start" "$runtime" "$rtv" "$k8s"
	summary+=("$name: $([[ $rc == 0 ]] && echo passed || echo "FAILED (rc $rc)") (build ${tb} s, e2e $((SECONDS - t0 - tb)) s)")
	((rc == 0)) || failed=1
done
log "matrix done:"
printf '  %s\n' "${summary[@]}" >&2
exit $failed

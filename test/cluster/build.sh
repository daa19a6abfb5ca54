#!/usr/bin/env bash
# Builds (or reuses) every binary the one-node test cluster runs, from pinned
# versions, into test/cluster/.cache/bin. A binary is rebuilt only when it is
# missing or was built for another version (its .version stamp).
#
#   bash test/cluster/build.sh            # everything
#   bash test/cluster/build.sh k8s etcd   # only some groups
#
# Groups: k8s (kube-apiserver, kube-scheduler, kube-controller-manager,
# kubelet, kubectl), containerd (containerd, ctr, containerd-shim-runc-v2),
# etcd, debs (runc, CNI plugins and busybox-static from Debian packages),
# crio (crio and pinns; only with RUNTIME=crio, which adds it by default).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

mkdir -p "$CACHE_BIN"

# stamp_ok NAME VERSION: the cached binary exists and was built for VERSION.
stamp_ok() {
	[[ -x "$CACHE_BIN/$1" && -f "$CACHE_BIN/$1.version" && "$(cat "$CACHE_BIN/$1.version")" == "$2" ]]
}

# go_group MODULE_DIR VERSION LDFLAGS TAGS NAME=PKG...: builds the packages of a
# build-only module in one go build (shared compilation), then stamps them.
go_group() {
	local dir=$1 version=$2 ldflags=$3 tags=$4
	shift 4
	local missing=() pkgs=() pair name pkg
	for pair in "$@"; do
		name=${pair%%=*} pkg=${pair#*=}
		if ! stamp_ok "$name" "$version"; then
			missing+=("$name")
			pkgs+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		reused+=("$dir $version")
		return 0
	fi
	log "build ${missing[*]} ($version) ..."
	local out start
	out=$(mktemp -d "$CACHE/build.XXXXXX")
	start=$SECONDS
	(
		cd "$HERE/build/$dir"
		local mod=()
		# First resolution of the pinned module graph fills go.sum (then committed).
		[[ -s go.sum ]] || mod=(-mod=mod)
		CGO_ENABLED=${CGO:-1} go build "${mod[@]}" -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out/" "${pkgs[@]}" &
		local pid=$! n=0
		# Progress while the compiler works (a cold Kubernetes build is minutes).
		while kill -0 "$pid" 2>/dev/null; do
			sleep 1
			if ((++n % 30 == 0)); then
				log "  ... still building ${missing[*]} (${n} s)"
			fi
		done
		wait "$pid"
	)
	for name in "${missing[@]}"; do
		# go build names each binary after the last element of its package path.
		local built
		built=$(find_built "$out" "$name" "$@")
		mv -f "$built" "$CACHE_BIN/$name"
		echo "$version" >"$CACHE_BIN/$name.version"
	done
	rm -rf "$out"
	log "built ${missing[*]} in $((SECONDS - start)) s"
}

find_built() {
	local out=$1 name=$2 pair
	shift 2
	for pair in "$@"; do
		if [[ ${pair%%=*} == "$name" ]]; then
			local pkg=${pair#*=} base
			base=$(basename "$pkg")
			# A major-version suffix (".../server/v3") is skipped, as go build does.
			[[ $base =~ ^v[0-9]+$ ]] && base=$(basename "$(dirname "$pkg")")
			echo "$out/$base"
			return
		fi
	done
}

build_k8s() {
	local v=$K8S_VERSION minor
	minor=${v#v1.}
	minor=${minor%%.*}
	local ver=k8s.io/component-base/version
	local ld="-s -w -X $ver.gitVersion=$v -X $ver.gitMajor=1 -X $ver.gitMinor=$minor -X $ver.gitTreeState=clean"
	ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	go_group k8s "$v" "$ld" "" \
		kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
		kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
		kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
		kubelet=k8s.io/kubernetes/cmd/kubelet \
		kubectl=k8s.io/kubernetes/cmd/kubectl
}

build_containerd() {
	local v=$CONTAINERD_VERSION
	local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$v"
	go_group containerd "$v" "$ld" "no_btrfs no_devmapper no_zfs" \
		containerd=github.com/containerd/containerd/v2/cmd/containerd \
		ctr=github.com/containerd/containerd/v2/cmd/ctr \
		containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
}

# Static IPAM/CNI plugins for the driver (mounted as its /opt/cni/bin).
build_cni() {
	local v=$CNI_PLUGINS_VERSION p
	mkdir -p "$CACHE_BIN/cni"
	local pairs=()
	for p in host-local static; do
		pairs+=("cni/$p=github.com/containernetworking/plugins/plugins/ipam/$p")
	done
	CGO=0 go_group cni "$v" "-s -w" "" "${pairs[@]}"
}

build_etcd() {
	local v=$ETCD_VERSION
	CGO=0 go_group etcd "$v" "-s -w" "" etcd=go.etcd.io/etcd/server/v3
}

# CRI-O from its own module (not through a build-only module like the
# others: CRI-O's go.mod is what its release was tested with, so the build
# runs in its module directory with that go.mod and go.sum). pinns, the
# small C helper CRI-O pins pod namespaces with, comes from the same source.
# CGO_ENABLED=0 and these tags keep the build free of C libraries:
#   containers_image_openpgp     signature checks in Go (no gpgme/libgpgme-dev)
#   exclude_graphdriver_btrfs    no btrfs storage driver (needs btrfs headers)
#   btrfs_noversion              ... nor the btrfs version query (same headers)
#   exclude_graphdriver_devicemapper  no devicemapper driver (needs libdevmapper)
# The cluster uses the vfs storage driver, which needs none of them.
build_crio() {
	local v=$CRIO_VERSION
	if stamp_ok crio "$v" && stamp_ok pinns "$v"; then
		reused+=("crio $v")
		return 0
	fi
	log "build crio, pinns ($v) ..."
	local start=$SECONDS dir
	dir=$(cd / && go mod download -json "github.com/cri-o/cri-o@$v" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[[ -d $dir ]] || die "go mod download github.com/cri-o/cri-o@$v gave no module directory"
	local out
	out=$(mktemp -d "$CACHE/build.XXXXXX")
	(
		cd "$dir"
		CGO_ENABLED=0 go build -trimpath \
			-tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper btrfs_noversion" \
			-ldflags "-s -w" -o "$out/crio" ./cmd/crio &
		local pid=$! n=0
		while kill -0 "$pid" 2>/dev/null; do
			sleep 1
			if ((++n % 30 == 0)); then
				log "  ... still building crio (${n} s)"
			fi
		done
		wait "$pid"
		# The flags of pinns' own Makefile.
		cc -std=c99 -Os -Wall -Wextra -static -o "$out/pinns" pinns/src/*.c
		strip -s "$out/pinns"
	)
	local name
	for name in crio pinns; do
		mv -f "$out/$name" "$CACHE_BIN/$name"
		echo "$v" >"$CACHE_BIN/$name.version"
	done
	rm -rf "$out"
	log "built crio, pinns in $((SECONDS - start)) s"
}

# Debian packages: runc (built with seccomp), the CNI plugins for the pod
# network, busybox-static for the test-pod image, openssl for the PKI.
build_debs() {
	local need=() p
	for p in $DEBS; do
		dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
	done
	if ((${#need[@]} == 0)); then
		reused+=("debs")
		return 0
	fi
	log "apt-get install ${need[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; then
		apt-get update >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
	fi
}

groups=("$@")
if ((${#groups[@]} == 0)); then
	groups=(debs etcd cni containerd k8s)
	[[ $RUNTIME == crio ]] && groups+=(crio)
fi
if [[ " ${groups[*]} " == *" k8s "* ]] && ! stamp_ok kubelet "$K8S_VERSION"; then
	log "cold build: about 15 min on 2 cores (Kubernetes ~10 min, containerd ~2.5 min, etcd ~1 min); warm: seconds"
fi
total=$SECONDS
reused=()
for g in "${groups[@]}"; do
	"build_$g"
done
if ((${#reused[@]} == ${#groups[@]})); then
	log "binaries ready in $CACHE_BIN (all cached: $(IFS=,; echo "${reused[*]}" | sed 's/,/, /g'))"
else
	log "binaries ready in $CACHE_BIN ($((SECONDS - total)) s)"
fi

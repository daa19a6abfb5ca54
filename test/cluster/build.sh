#!/usr/bin/env bash
# Builds (or reuses) every binary the one-node test cluster runs, from pinned
# versions, into test/cluster/.cache/bin. A binary is rebuilt only when it is
# missing or was built for another version (its .version stamp).
#
#   bash test/cluster/build.sh            # everything
#   bash test/cluster/build.sh k8s etcd   # only some groups
#   K8S_VERSION=v1.34.4 CONTAINERD_VERSION=v1.7.35 bash test/cluster/build.sh
#
# The pinned (default) Kubernetes and containerd build from the committed
# modules in build/k8s and build/containerd into .cache/bin. Any other version
# builds from a module generated under .cache/mod/<group>-<version> into its
# own .cache/<group>-<version>/bin (lib.sh's K8S_BIN, CONTAINERD_BIN), so
# switching between versions never rebuilds what was built before.
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

# stamp_ok NAME VERSION [BIN_DIR]: the cached binary exists and was built for VERSION.
stamp_ok() {
	local bin=${3:-$CACHE_BIN}
	[[ -x "$bin/$1" && -f "$bin/$1.version" && "$(cat "$bin/$1.version")" == "$2" ]]
}

# go_group MODULE_DIR VERSION LDFLAGS TAGS NAME=PKG...: builds the packages of a
# build-only module in one go build (shared compilation), then stamps them.
# MODULE_DIR is a folder under build/ or an absolute path; the binaries go to
# $OUT_BIN (default $CACHE_BIN).
go_group() {
	local dir=$1 version=$2 ldflags=$3 tags=$4 bin=${OUT_BIN:-$CACHE_BIN}
	shift 4
	[[ $dir == /* ]] || dir=$HERE/build/$dir
	mkdir -p "$bin"
	local missing=() pkgs=() pair name pkg
	for pair in "$@"; do
		name=${pair%%=*} pkg=${pair#*=}
		if ! stamp_ok "$name" "$version" "$bin"; then
			missing+=("$name")
			pkgs+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		reused+=("$(basename "$dir") $version")
		return 0
	fi
	log "build ${missing[*]} ($version) ..."
	local out start
	out=$(mktemp -d "$CACHE/build.XXXXXX")
	start=$SECONDS
	(
		cd "$dir"
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
		mv -f "$built" "$bin/$name"
		echo "$version" >"$bin/$name.version"
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

# module_dir GROUP VERSION DEFAULT_VERSION: the build module of GROUP at
# VERSION: the committed one for the pinned version, else a generated one
# under .cache/mod (go.sum is resolved on its first build).
module_dir() {
	local group=$1 v=$2 def=$3
	if [[ $v == "$def" ]]; then
		echo "$HERE/build/$group"
	else
		echo "$CACHE/mod/$group-$v"
	fi
}

# gomod_of MODULE@VERSION: the path of that module's go.mod in the module cache.
gomod_of() {
	go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# k8s_module DIR VERSION: writes a build module for k8s.io/kubernetes at
# VERSION: its staging repositories (replaced by ./staging in its own go.mod)
# pinned to the matching v0.minor.patch tags, its go directive kept.
k8s_module() {
	local dir=$1 v=$2 kmod staging
	[[ -f $dir/go.mod ]] && return 0
	kmod=$(gomod_of "k8s.io/kubernetes@$v") || die "k8s.io/kubernetes@$v is not served by the module proxy"
	staging=v0.${v#v1.}
	mkdir -p "$dir"
	{
		echo "module sriov-dra-e2e/build/k8s"
		echo
		grep -m1 '^go ' "$kmod"
		echo
		echo "require k8s.io/kubernetes $v"
		echo
		echo "replace ("
		sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$kmod"
		echo ")"
	} >"$dir/go.mod.tmp"
	mv "$dir/go.mod.tmp" "$dir/go.mod"
}

# containerd_module DIR MODULE VERSION: a build module requiring MODULE@VERSION
# with that module's go directive.
containerd_module() {
	local dir=$1 mod=$2 v=$3 cmod
	[[ -f $dir/go.mod ]] && return 0
	cmod=$(gomod_of "$mod@$v") || die "$mod@$v is not served by the module proxy"
	mkdir -p "$dir"
	printf 'module sriov-dra-e2e/build/containerd\n\n%s\n\nrequire %s %s\n' "$(grep -m1 '^go ' "$cmod")" "$mod" "$v" >"$dir/go.mod"
}

build_k8s() {
	local v=$K8S_VERSION minor dir
	dir=$(module_dir k8s "$v" "$K8S_DEFAULT_VERSION")
	[[ $v == "$K8S_DEFAULT_VERSION" ]] || k8s_module "$dir" "$v"
	minor=${v#v1.}
	minor=${minor%%.*}
	local ver=k8s.io/component-base/version
	local ld="-s -w -X $ver.gitVersion=$v -X $ver.gitMajor=1 -X $ver.gitMinor=$minor -X $ver.gitTreeState=clean"
	ld+=" -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	OUT_BIN=$K8S_BIN go_group "$dir" "$v" "$ld" "" \
		kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
		kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
		kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
		kubelet=k8s.io/kubernetes/cmd/kubelet \
		kubectl=k8s.io/kubernetes/cmd/kubectl
}

build_containerd() {
	local v=$CONTAINERD_VERSION dir mod=github.com/containerd/containerd/v2
	# containerd 1.x is the module without the /v2 suffix.
	[[ $v == v1.* ]] && mod=github.com/containerd/containerd
	dir=$(module_dir containerd "$v" "$CONTAINERD_DEFAULT_VERSION")
	[[ $v == "$CONTAINERD_DEFAULT_VERSION" ]] || containerd_module "$dir" "$mod" "$v"
	local ld="-s -w -X $mod/version.Version=$v"
	OUT_BIN=$CONTAINERD_BIN go_group "$dir" "$v" "$ld" "no_btrfs no_devmapper no_zfs" \
		containerd=$mod/cmd/containerd \
		ctr=$mod/cmd/ctr \
		containerd-shim-runc-v2=$mod/cmd/containerd-shim-runc-v2
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
if [[ " ${groups[*]} " == *" k8s "* ]] && ! stamp_ok kubelet "$K8S_VERSION" "$K8S_BIN"; then
	log "cold build: about 15 min on 2 cores (Kubernetes ~10 min, containerd ~2.5 min, etcd ~1 min); warm: seconds"
fi
total=$SECONDS
reused=()
for g in "${groups[@]}"; do
	"build_$g"
done
where=$(printf '%s\n' "$CACHE_BIN" "$K8S_BIN" "$CONTAINERD_BIN" | sort -u | paste -sd' ')
if ((${#reused[@]} == ${#groups[@]})); then
	log "binaries ready in $where (all cached: $(IFS=,; echo "${reused[*]}" | sed 's/,/, /g'))"
else
	log "binaries ready in $where ($((SECONDS - total)) s)"
fi

#!/usr/bin/env bash
# make vmtest: real SR-IOV kernel tests under QEMU.
#
# Boots a Debian 6.12 kernel in QEMU (TCG, no KVM needed) with two emulated
# Intel 82576 NICs (`-device igb`, real SR-IOV PFs driven by the kernel's igb
# and igbvf drivers) and an emulated Intel IOMMU, enables VFs on both PFs,
# and runs the Go tests in test/vm/vmtests (build tag `vmtest`) inside the
# VM against those real VFs. The serial console is streamed to the terminal;
# the script exits with the tests' status, and fails clearly on a kernel
# panic, a missing result marker or a timeout.
#
# First run on a fresh Debian machine: installs QEMU 10, kmod, cpio,
# xz-utils and busybox-static, downloads the kernel package once and keeps
# it in test/vm/.cache/ (git-ignored). Later runs reuse the cache and need
# no network.
#
# Environment:
#   VMTEST_RUN=regexp     only run matching tests (go test -run)
#   VMTEST_TIMEOUT=sec    watchdog for the VM (default 1500: the crash matrix on a
#                         real VF alone restarts the daemon ~26 times under TCG)
#   VMTEST_CACHE=dir      cache folder (default test/vm/.cache)
#   VMTEST_REFRESH=1      look for a newer kernel package even if one is cached
#   VMTEST_IOMMU=0        boot without the emulated IOMMU (asks for vfio's no-IOMMU
#                         mode, which Debian's 6.12 kernel lacks: the vfio test skips)
set -euo pipefail

cd "$(dirname "$0")/../.."
repo=$PWD
cache=${VMTEST_CACHE:-$repo/test/vm/.cache}
timeout_s=${VMTEST_TIMEOUT:-1500}
run_re=${VMTEST_RUN:-}
iommu=${VMTEST_IOMMU:-1}
export PATH=/usr/local/go/bin:$PATH
export DEBIAN_FRONTEND=noninteractive

t_start=$(date +%s)
log() { printf 'vmtest: %s\n' "$*" >&2; }
die() {
	printf 'vmtest: FAIL: %s\n' "$*" >&2
	exit 1
}
elapsed() { echo $(($(date +%s) - t_start)); }

mkdir -p "$cache"

# ---- 1. host packages -------------------------------------------------------

apt_updated=0
apt_get() { apt-get -o DPkg::Lock::Timeout=300 -q "$@"; }

# The backports suite is derived from the machine's own Debian sources entry
# (its first stanza), so no archive host is named in this repository.
backports_src=/etc/apt/sources.list.d/sriov-dra-vmtest-backports.sources
ensure_backports() {
	if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		local base=/etc/apt/sources.list.d/debian.sources
		[ -r "$base" ] || die "no $base to derive the bookworm-backports source from"
		awk '
			/^[[:space:]]*$/ { if (seen) exit; next }
			/^#/ { next }
			/^Suites:/ { print "Suites: bookworm-backports"; seen = 1; next }
			{ print; seen = 1 }
		' "$base" >"$backports_src.tmp"
		grep -q '^URIs:' "$backports_src.tmp" || die "first stanza of $base has no URIs"
		mv "$backports_src.tmp" "$backports_src"
		log "wrote $backports_src from the first stanza of $base"
		apt_updated=0
	fi
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		apt_get update -qq >/dev/null
		apt_updated=1
	fi
}

has_igb_qemu() {
	command -v qemu-system-x86_64 >/dev/null &&
		qemu-system-x86_64 -device help 2>/dev/null | grep -q '"igb"'
}

need=()
for p in kmod cpio xz-utils busybox-static containernetworking-plugins; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	ensure_backports
	log "installing ${need[*]}"
	apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! has_igb_qemu; then
	ensure_backports
	log "installing qemu-system-x86 from bookworm-backports (needs -device igb)"
	apt_get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
	has_igb_qemu || die "qemu-system-x86_64 has no igb device even after installing from bookworm-backports"
fi
# ldd fails on a static binary; busybox-static installs /bin/busybox.
busybox=/bin/busybox
[ -x "$busybox" ] && ! ldd "$busybox" >/dev/null 2>&1 ||
	die "$busybox is missing or not a static binary (package busybox-static)"

# ---- 2. kernel package (cached) ---------------------------------------------

# The newest linux-image-6.12.*-amd64 in bookworm-backports; the unsigned
# flavour carries the same vmlinuz and modules without the signing wrapper.
kernel_pkg() {
	apt-cache search --names-only '^linux-image-6\.12\.[0-9]+.*-amd64-unsigned$' |
		awk '{print $1}' | grep -E '^linux-image-6\.12\.[0-9]+\+[^-]+-amd64-unsigned$' |
		sort -V | tail -n1
}

kdir_link=$cache/kernel
if [ ! -e "$kdir_link/vmlinuz" ] || [ "${VMTEST_REFRESH:-0}" = 1 ]; then
	ensure_backports
	pkg=$(kernel_pkg)
	[ -n "$pkg" ] || die "no linux-image-6.12.*-amd64-unsigned package in bookworm-backports"
	kdir=$cache/$pkg
	if [ ! -e "$kdir/vmlinuz" ]; then
		mkdir -p "$cache/debs"
		if ! ls "$cache/debs/${pkg}_"*.deb >/dev/null 2>&1; then
			log "downloading $pkg"
			(cd "$cache/debs" && apt_get -o APT::Sandbox::User=root download "$pkg" >/dev/null)
		fi
		rm -rf "$kdir.tmp"
		mkdir -p "$kdir.tmp/x"
		dpkg-deb -x "$cache/debs/${pkg}_"*.deb "$kdir.tmp/x"
		kver=$(ls "$kdir.tmp/x/lib/modules" | head -n1)
		[ -n "$kver" ] || die "no /lib/modules in $pkg"
		mv "$kdir.tmp/x/boot/vmlinuz-$kver" "$kdir.tmp/vmlinuz"
		mkdir -p "$kdir.tmp/lib/modules"
		mv "$kdir.tmp/x/lib/modules/$kver" "$kdir.tmp/lib/modules/$kver"
		rm -rf "$kdir.tmp/x"
		depmod -b "$kdir.tmp" "$kver"
		echo "$kver" >"$kdir.tmp/kver"
		mv "$kdir.tmp" "$kdir"
	fi
	ln -sfn "$(basename "$kdir")" "$kdir_link"
fi
kdir=$(readlink -f "$kdir_link")
kver=$(cat "$kdir/kver")
log "kernel $kver ($(elapsed)s)"

# ---- 3. initramfs -----------------------------------------------------------

# Modules in load order; dependencies from modules.dep are added before each.
wanted_modules=(
	dca i2c-algo-bit igb igbvf
	vfio vfio_iommu_type1 vfio-pci
	crc32_generic ib_core ib_uverbs udp_tunnel ip6_udp_tunnel rdma_rxe
	xfrm_user nfnetlink # netlink.NewHandle opens XFRM and NETFILTER sockets too
	dummy               # the decoy a tenant puts under the VF's pod name (identity_test.go)
)

moddir=$kdir/lib/modules/$kver
declare -A modpath=() loaded=()
while IFS= read -r line; do
	p=${line%%:*}
	n=${p##*/}
	n=${n%%.ko*}
	modpath[${n//-/_}]=$p
done <"$moddir/modules.dep"

order=()
add_module() {
	local name=${1//-/_} p dep i
	[ -n "${loaded[$name]:-}" ] && return 0
	loaded[$name]=1
	if [ -z "${modpath[$name]:-}" ]; then
		grep -q "/${1}.ko\|/${name}.ko" "$moddir/modules.builtin" 2>/dev/null && return 0
		die "module $1 is neither in modules.dep nor built in ($kver)"
	fi
	p=${modpath[$name]}
	# modules.dep lists a module's dependencies; load them first, last one first.
	local deps
	read -r -a deps <<<"$(grep -m1 "^$p:" "$moddir/modules.dep" | cut -d: -f2)"
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
		dep=$(basename "${deps[$i]}")
		add_module "${dep%%.ko*}"
	done
	order+=("$p")
}
for m in "${wanted_modules[@]}"; do add_module "$m"; done

build=$cache/build
rm -rf "$build"
mkdir -p "$build"/{bin,sbin,proc,sys,dev,run,tmp,etc,var/run/netns,lib/modules}
cp "$busybox" "$build/bin/busybox"
: >"$build/etc/modules.order"
for p in "${order[@]}"; do
	dst=$build/lib/modules/$(basename "${p%.xz}")
	dst=${dst%.zst}
	case $p in
	*.xz) xz -dc "$moddir/$p" >"$dst" ;;
	*.zst) zstd -qdc "$moddir/$p" >"$dst" ;;
	*) cp "$moddir/$p" "$dst" ;;
	esac
	echo "/lib/modules/$(basename "$dst")" >>"$build/etc/modules.order"
done

log "building in-VM tests (CGO_ENABLED=0 go test -c -tags vmtest,faultinject)"
CGO_ENABLED=0 go test -c -trimpath -tags vmtest,faultinject -o "$build/bin/vmtests.test" ./test/vm/vmtests ||
	die "building the in-VM tests failed"
install -m 0755 test/vm/init.sh "$build/init"
# CNI IPAM plugins for the node lifecycle test (Debian's
# containernetworking-plugins), with the shared libraries they load.
for p in host-local static; do
	src=/usr/lib/cni/$p
	[ -x "$src" ] || src=/opt/cni/bin/$p
	[ -x "$src" ] || die "CNI plugin $p not found (package containernetworking-plugins)"
	install -D -m 0755 "$src" "$build/opt/cni/bin/$p"
	for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
		[ -e "$build$lib" ] || install -D -m 0755 "$lib" "$build$lib"
	done
done
{
	echo "VMTEST_RUN='${run_re//\'/}'"
	echo "VMTEST_IOMMU=$iommu"
	# The in-VM test timeout: a minute less than the watchdog, so a hung
	# test ends with Go's goroutine dump rather than a killed VM.
	echo "VMTEST_GO_TIMEOUT=$((timeout_s > 120 ? timeout_s - 60 : timeout_s / 2))s"
} >"$build/etc/vmtest.env"

(cd "$build" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 >"$cache/initrd.gz")
log "initramfs $(du -h "$cache/initrd.gz" | cut -f1) ($(elapsed)s)"

# ---- 4. boot ----------------------------------------------------------------

# no_timer_check: under TCG on a loaded host the kernel's early IO-APIC timer
# check can fail and panic ("timer doesn't work through Interrupt-remapped
# IO-APIC"); the emulated timer works, the check is just impatient. The
# IOMMU's interrupt remapping is off for the same reason: vfio needs only
# DMA remapping.
append="console=ttyS0 panic=-1 oops=panic loglevel=4 quiet no_timer_check"
machine=(-machine q35 -cpu max)
if [ "$iommu" = 1 ]; then
	machine+=(-device intel-iommu,intremap=off)
	append+=" intel_iommu=on iommu=pt"
else
	append+=" vfio.enable_unsafe_noiommu_mode=1"
fi

serial_log=$cache/serial.log
# The igb model places VF i at devfn(PF) + 0x80 + 2*i: PFs at slots 4 and 8
# keep their VFs (slots 0x14-0x15 and 0x18-0x19) apart.
log "booting QEMU (2 igb PFs, -smp 2, TCG, watchdog ${timeout_s}s); serial console follows"
set +e
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
	"${machine[@]}" -accel tcg -m 1536 -smp 2 \
	-nographic -no-reboot -nodefaults -serial stdio \
	-kernel "$kdir/vmlinuz" -initrd "$cache/initrd.gz" -append "$append" \
	-netdev user,id=n0,restrict=on -device igb,netdev=n0,addr=04.0 \
	-netdev user,id=n1,restrict=on -device igb,netdev=n1,addr=08.0 \
	</dev/null 2>&1 | sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g; s/\r$//' | tee "$serial_log"
rc=("${PIPESTATUS[@]}")
set -e
qemu_rc=${rc[0]}

result=$(grep -a -o 'VMTEST-RESULT: [A-Z]* rc=[0-9]*' "$serial_log" | tail -n1 || true)
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
	die "VM timed out after ${timeout_s}s (VMTEST_TIMEOUT); last result marker: ${result:-none}; log: $serial_log"
fi
if grep -aq 'Kernel panic' "$serial_log"; then
	die "kernel panic in the VM (see above); log: $serial_log"
fi
if [ -z "$result" ]; then
	die "the VM stopped (qemu exit $qemu_rc) without a result marker; log: $serial_log"
fi
test_rc=${result##*rc=}
log "${result#VMTEST-RESULT: } in $(elapsed)s"
exit "$test_rc"

#!/bin/busybox sh
# /init of the vmtest initramfs (see run.sh): mount the pseudo file systems,
# load the NIC, vfio and RDMA modules, enable VFs on every igb PF, run the
# in-VM Go tests and power off. The last line run.sh looks for is
# "VMTEST-RESULT: PASS|FAIL rc=N".

/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

finish() {
	echo "VMTEST-RESULT: $1 rc=$2"
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 60
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
rm -rf /var/run && ln -s /run /var/run
mkdir -p /run/netns
ip link set lo up

. /etc/vmtest.env

# insmod does not read the kernel command line the way modprobe does: pass
# each module its <module>.<param>=<value> arguments from there (e.g.
# vfio.enable_unsafe_noiommu_mode=1 when run.sh boots without an IOMMU).
cmdline=$(cat /proc/cmdline)
for m in $(cat /etc/modules.order); do
	name=$(basename "$m" .ko | tr - _)
	params=""
	for arg in $cmdline; do
		case "$arg" in "$name".*=*) params="$params ${arg#"$name".}" ;; esac
	done
	# shellcheck disable=SC2086 # one word per parameter
	insmod "$m" $params || finish FAIL 90
done

# PFs: the netdevs bound to igb. VFs: enable on each PF.
numvfs=6
pfs=""
for i in $(seq 1 100); do
	pfs=""
	for d in /sys/class/net/*; do
		[ "$(basename "$(readlink "$d/device/driver" 2>/dev/null)")" = igb ] && pfs="$pfs $(basename "$d")"
	done
	[ "$(echo $pfs | wc -w)" -ge 2 ] && break
	sleep 0.1
done
[ "$(echo $pfs | wc -w)" -ge 2 ] || {
	echo "vmtest init: expected 2 igb PFs, found:$pfs"
	finish FAIL 91
}
for pf in $pfs; do
	echo "$numvfs" >"/sys/class/net/$pf/device/sriov_numvfs" || {
		echo "vmtest init: enabling $numvfs VFs on $pf failed"
		finish FAIL 92
	}
done
# Wait until every VF has its igbvf netdev.
for i in $(seq 1 300); do
	missing=0
	for pf in $pfs; do
		for v in /sys/class/net/$pf/device/virtfn*; do
			ls "$v/net" >/dev/null 2>&1 || missing=1
		done
	done
	[ "$missing" = 0 ] && break
	sleep 0.1
done
[ "$missing" = 0 ] || {
	echo "vmtest init: VF netdevs did not appear"
	finish FAIL 93
}
echo "vmtest init: PFs$pfs with $numvfs VFs each; $(nproc) CPUs; kernel $(uname -r)"
if [ "$VMTEST_IOMMU" = 0 ]; then
	echo "vmtest init: no IOMMU; vfio enable_unsafe_noiommu_mode=$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode 2>&1)"
fi

export SRIOV_DRA_VMTEST=1
/bin/vmtests.test -test.v -test.timeout "${VMTEST_GO_TIMEOUT:-7m}" -test.run "${VMTEST_RUN:-.}"
rc=$?
if [ "$rc" = 0 ]; then finish PASS 0; else finish FAIL "$rc"; fi

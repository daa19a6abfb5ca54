package netattach

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"unsafe"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// loadXDPPass loads the smallest XDP program (return XDP_PASS) and returns
// its fd, or skips when the kernel does not let this process load one.
func loadXDPPass(t *testing.T) int {
	t.Helper()
	insns := make([]byte, 16)
	// r0 = 2 (XDP_PASS); exit
	copy(insns[0:8], []byte{0xb7, 0, 0, 0})
	binary.LittleEndian.PutUint32(insns[4:8], 2)
	copy(insns[8:16], []byte{0x95, 0, 0, 0, 0, 0, 0, 0})
	license := []byte("GPL\x00")
	var attr [128]byte
	binary.LittleEndian.PutUint32(attr[0:4], unix.BPF_PROG_TYPE_XDP)
	binary.LittleEndian.PutUint32(attr[4:8], 2)
	binary.LittleEndian.PutUint64(attr[8:16], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.LittleEndian.PutUint64(attr[16:24], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		t.Skipf("cannot load an XDP program here: %v", errno)
	}
	t.Cleanup(func() { _ = unix.Close(int(fd)) })
	return int(fd)
}

// attachXDPIn attaches the program fd to link name in the netns at
// nsPath, as a process in the pod with NET_ADMIN would (nlink.InNetns).
func attachXDPIn(t *testing.T, nsPath, name string, fd int) {
	t.Helper()
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	err = nlink.InNetns(target, func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, fd, nl.XDP_FLAGS_SKB_MODE)
	})
	if err != nil {
		t.Fatalf("attach XDP to %s in %s: %v", name, nsPath, err)
	}
}

// TestDetachTakesOffXDP: an XDP program a pod attached to its netdev stays
// on it across namespaces; Detach takes it off, so the device comes back
// to the host, and goes to the next pod, without it.
func TestDetachTakesOffXDP(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	pfx, host, nsPath, pod := newPodBed(t)
	hl := newVeth(t, host, pfx+"vf", pfx+"vfp", "02:aa:00:00:00:41", 1500)
	if err := host.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	before := stateOf(mustLink(t, host, pfx+"vf"))
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1400}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	attachXDPIn(t, nsPath, "net1", loadXDPPass(t))
	if x := mustLink(t, pod, "net1").Attrs().Xdp; x == nil || !x.Attached {
		t.Fatalf("XDP program not attached in the pod: %+v", x)
	}

	if err := Detach(ctx, host, nsPath, spec.PodIfName, orig); err != nil {
		t.Fatal(err)
	}
	back := mustLink(t, host, spec.HostIfName)
	if x := back.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("the device came back to the host with the pod's XDP program %d (mode %d)", x.ProgId, x.AttachMode)
	}
	if got := stateOf(back); got != before {
		t.Errorf("after detach: %+v, want %+v", got, before)
	}
}

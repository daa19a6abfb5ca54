//go:build vmtest

package vmtests

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// rawVF is everything a test may change about a VF, read straight from the
// kernel: the PF's IFLA_VF_INFO for it (counters zeroed), its driver and
// its netdev's name, MAC, MTU and up flag. Two equal rawVFs mean the VF is
// exactly as it was.
type rawVF struct {
	Admin  netlink.VfInfo
	Driver string
	IfName string
	MAC    string
	MTU    int
	Up     bool
}

func newCtx(t *testing.T) context.Context {
	_, ctx := ktesting.NewTestContext(t)
	return ctx
}

func hostHandle(t *testing.T) *nlink.Real { return nlinktest.HostHandle(t) }

func readRaw(t *testing.T, h nlink.Handle, pf bedPF, idx int) rawVF {
	t.Helper()
	l, err := h.LinkByName(pf.IfName)
	if err != nil {
		t.Fatalf("PF %s: %v", pf.IfName, err)
	}
	var r rawVF
	found := false
	for _, v := range l.Attrs().Vfs {
		if v.ID == idx {
			v.RxPackets, v.TxPackets, v.RxBytes, v.TxBytes = 0, 0, 0, 0
			v.Multicast, v.Broadcast, v.RxDropped, v.TxDropped = 0, 0, 0, 0
			r.Admin = v
			found = true
		}
	}
	if !found {
		t.Fatalf("PF %s reports no VF %d", pf.IfName, idx)
	}
	pci := pf.VFs[idx].PCI
	r.Driver = readLink(t, filepath.Join("/sys/bus/pci/devices", pci, "driver"))
	r.IfName = pciNetdev(t, pci)
	if r.IfName != "" {
		nl, err := h.LinkByName(r.IfName)
		if err != nil {
			t.Fatalf("VF %d netdev %s: %v", idx, r.IfName, err)
		}
		r.MAC = nl.Attrs().HardwareAddr.String()
		r.MTU = nl.Attrs().MTU
		r.Up = nl.Attrs().Flags&net.FlagUp != 0
	}
	return r
}

// waitRaw polls until the VF's state equals want (drivers re-probe and the
// kernel returns netdevs asynchronously) and fails with the difference.
func waitRaw(t *testing.T, h nlink.Handle, pf bedPF, idx int, want rawVF, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := readRaw(t, h, pf, idx)
		if rawEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("VF %d of %s is not as before:\n got  %+v\n want %+v", idx, pf.IfName, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rawEqual(a, b rawVF) bool {
	am, bm := a.Admin.Mac.String(), b.Admin.Mac.String()
	a.Admin.Mac, b.Admin.Mac = nil, nil
	return am == bm && reflect.DeepEqual(a, b)
}

// setVFUp sets the VF netdev up and puts its flag back at cleanup.
func setVFUp(t *testing.T, h nlink.Handle, ifName string) {
	t.Helper()
	l, err := h.LinkByName(ifName)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		return
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("set %s up: %v", ifName, err)
	}
	t.Cleanup(func() {
		if l, err := h.LinkByName(ifName); err == nil {
			_ = h.LinkSetDown(l)
		}
	})
}

// scanDevice scans the host and returns the device with this PCI address.
func scanDevice(t *testing.T, ctx context.Context, h nlink.Handle, pci string) inventory.Device {
	t.Helper()
	inv, err := inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	d, ok := inv.Find(inventory.DeviceName(pci))
	if !ok {
		t.Fatalf("scan has no device %s (excluded: %+v)", pci, inv.Excluded)
	}
	return *d
}

// newNetns creates a named network namespace (a pod-like one, loopback up)
// without moving this goroutine's thread for longer than the call, and
// deletes it at cleanup. It returns its path.
func newNetns(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join("/run/netns", name)
	func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			t.Fatalf("get current netns: %v", err)
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// Leave the thread locked: it is in the wrong netns and
			// must die with this goroutine.
			t.Fatalf("return to the host netns: %v", serr)
		}
		runtime.UnlockOSThread()
		if err != nil {
			t.Fatalf("create netns %s: %v", name, err)
		}
		ns.Close()
	}()
	t.Cleanup(func() { deleteNetns(t, name) })
	ph, err := nlink.NewAt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	lo, err := ph.LinkByName("lo")
	if err == nil {
		err = ph.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in %s: %v", name, err)
	}
	return path
}

// deleteNetns removes a named netns made by newNetns, if it is still there.
func deleteNetns(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
		return
	}
	if err := netns.DeleteNamed(name); err != nil {
		t.Errorf("delete netns %s: %v", name, err)
	}
}

// waitNetdev waits for the VF to have a netdev (after a driver rebind) and
// returns its MAC.
func waitNetdev(t *testing.T, h nlink.Handle, pf bedPF, idx int) string {
	t.Helper()
	deadline := time.Now().Add(waitShort)
	for {
		if r := readRaw(t, h, pf, idx); r.IfName != "" {
			return r.MAC
		}
		if time.Now().After(deadline) {
			t.Fatalf("VF %d of %s has no netdev after %v", idx, pf.IfName, waitShort)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

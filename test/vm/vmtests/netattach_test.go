//go:build vmtest

package vmtests

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func podSpec(hostIf string) netattach.Spec {
	return netattach.Spec{
		HostIfName: hostIf,
		PodIfName:  "net1",
		MTU:        1400,
		MAC:        "02:5a:00:00:04:01",
		Addresses:  []string{"10.77.0.5/24"},
		Routes:     []netattach.Route{{Dst: "10.78.0.0/16", GW: "10.77.0.1"}},
	}
}

// checkInPod checks the VF netdev in the pod netns is configured as spec says.
func checkInPod(t *testing.T, nsPath string, spec netattach.Spec) {
	t.Helper()
	ph, err := nlink.NewAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	l, err := ph.LinkByName(spec.PodIfName)
	if err != nil {
		t.Fatalf("%s not in the pod netns: %v", spec.PodIfName, err)
	}
	a := l.Attrs()
	if a.MTU != spec.MTU || a.HardwareAddr.String() != spec.MAC || a.Flags&net.FlagUp == 0 {
		t.Errorf("in pod: mtu %d mac %s up %v, want mtu %d mac %s up", a.MTU, a.HardwareAddr, a.Flags&net.FlagUp != 0, spec.MTU, spec.MAC)
	}
	addrs, err := ph.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != spec.Addresses[0] {
		t.Errorf("in pod: addresses %v, want %v", addrs, spec.Addresses)
	}
	routes, err := ph.RouteList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == spec.Routes[0].Dst && r.Gw.String() == spec.Routes[0].GW {
			found = true
		}
	}
	if !found {
		t.Errorf("in pod: routes %v, want %s via %s", routes, spec.Routes[0].Dst, spec.Routes[0].GW)
	}
}

// TestAttachDetach moves a real igbvf netdev into a pod-like netns with a
// new name, MTU, MAC, address and route, and back; the VF must be exactly
// as before on the host.
func TestAttachDetach(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 3)
	before := readRaw(t, h, pf, vf.Index)
	nsPath := newNetns(t, "vmt-attach")
	spec := podSpec(vf.IfName)

	read, err := netattach.ReadOriginal(ctx, h, vf.IfName, vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	if read.Identity.PCIAddress != vf.PCI {
		t.Errorf("identity of %s read from netlink = %s, want PCI %s", vf.IfName, read.Identity, vf.PCI)
	}
	start := time.Now()
	orig, err := netattach.Attach(ctx, h, nsPath, spec, read.Identity)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if orig != read {
		t.Errorf("attach recorded %+v, ReadOriginal %+v", orig, read)
	}
	t.Logf("attach took %v", time.Since(start))
	if orig.IfName != before.IfName || orig.MAC != before.MAC || orig.MTU != before.MTU {
		t.Errorf("attach recorded original %+v, kernel had %+v", orig, before)
	}
	if _, err := h.LinkByName(vf.IfName); err == nil {
		t.Errorf("%s still on the host after attach", vf.IfName)
	}
	checkInPod(t, nsPath, spec)
	in, err := netattach.InNetns(ctx, nsPath, spec.PodIfName, orig.Identity)
	if err != nil || !in {
		t.Errorf("InNetns = %v, %v; want true", in, err)
	}

	start = time.Now()
	if err := netattach.Detach(ctx, h, nsPath, spec.PodIfName, orig); err != nil {
		t.Fatalf("detach: %v", err)
	}
	t.Logf("detach took %v", time.Since(start))
	waitRaw(t, h, pf, vf.Index, before, waitShort)
	// A second detach (a retried teardown) is success and changes nothing.
	if err := netattach.Detach(ctx, h, nsPath, spec.PodIfName, orig); err != nil {
		t.Fatalf("second detach: %v", err)
	}
	waitRaw(t, h, pf, vf.Index, before, waitShort)
}

// TestDetachAfterNetnsDeleted deletes the pod netns while the VF is in it:
// the kernel hands a physical netdev back to the init netns (under its pod
// name), and Detach must find it there and restore it. Detach is retried as
// the NRI teardown would, since the kernel returns it asynchronously.
func TestDetachAfterNetnsDeleted(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 3)
	before := readRaw(t, h, pf, vf.Index)
	nsPath := newNetns(t, "vmt-gone")
	spec := podSpec(vf.IfName)
	orig, err := netattach.Attach(ctx, h, nsPath, spec, netattach.Identity{PCIAddress: vf.PCI})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	checkInPod(t, nsPath, spec)

	deleteNetns(t, "vmt-gone")
	deadline := time.Now().Add(waitLong)
	attempts := 0
	for {
		attempts++
		err = netattach.Detach(ctx, h, nsPath, spec.PodIfName, orig)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		links, _ := h.LinkList()
		names := []string{}
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Fatalf("detach after the netns was deleted, %d attempts: %v (host links %v)", attempts, err, names)
	}
	t.Logf("detach succeeded after %d attempt(s)", attempts)
	waitRaw(t, h, pf, vf.Index, before, waitShort)
}

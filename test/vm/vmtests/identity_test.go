//go:build vmtest

package vmtests

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/netattach"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// linkView is what must not change on a link that is not the device.
type linkView struct {
	Index    int
	Name     string
	MAC      string
	MTU      int
	Up       bool
	Addrs    []string
	PCI      string
	NumVFs   int
	AdminMAC []string
}

func viewLink(t *testing.T, h nlink.Handle, name string) linkView {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	a := l.Attrs()
	v := linkView{Index: a.Index, Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, PCI: a.ParentDev, NumVFs: len(a.Vfs)}
	for _, vf := range a.Vfs {
		v.AdminMAC = append(v.AdminMAC, vf.Mac.String())
	}
	// IPv4 only: IPv6 addresses come and go by themselves once the link
	// is up (link-local, and SLAAC from the emulated network's adverts).
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		v.Addrs = append(v.Addrs, ad.IPNet.String())
	}
	slices.Sort(v.Addrs)
	return v
}

// TestDetachNetnsGoneLeavesOtherPFAlone is issue 14's takeover on real
// hardware: a VF of PF 0 goes into a pod under the name of PF 1's host
// netdev, the pod netns is deleted before detach, and the kernel hands the
// VF back as dev<ifindex> (its pod name is taken). Detach must find and
// restore the VF by its PCI address and leave PF 1 exactly as it was.
func TestDetachNetnsGoneLeavesOtherPFAlone(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 0, 5)
	other := testbed(t)[1]
	// Give the other PF an address and bring it up, so that a takeover
	// would show in every field.
	ol, err := h.LinkByName(other.IfName)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.96.0.1/24")
	if err := h.AddrAdd(ol, addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.AddrDel(ol, addr) })
	wasUp := ol.Attrs().Flags&net.FlagUp != 0
	if err := h.LinkSetUp(ol); err != nil {
		t.Fatal(err)
	}
	if !wasUp {
		t.Cleanup(func() { _ = h.LinkSetDown(ol) })
	}
	otherBefore := viewLink(t, h, other.IfName)
	before := readRaw(t, h, pf, vf.Index)

	orig, err := netattach.ReadOriginal(ctx, h, vf.IfName, vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	nsPath := newNetns(t, "vmt-takeover")
	spec := podSpec(vf.IfName)
	spec.PodIfName = other.IfName
	if _, err := netattach.Attach(ctx, h, nsPath, spec, orig.Identity); err != nil {
		t.Fatalf("attach as %s: %v", other.IfName, err)
	}
	deleteNetns(t, "vmt-takeover")

	// The kernel returns the VF asynchronously; retry as the NRI teardown does.
	deadline := time.Now().Add(waitLong)
	attempts := 0
	for {
		attempts++
		err = netattach.Detach(ctx, h, nsPath, other.IfName, orig)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("detach after the netns was deleted, %d attempts: %v", attempts, err)
	}
	t.Logf("detach succeeded after %d attempt(s)", attempts)
	waitRaw(t, h, pf, vf.Index, before, waitShort)
	if got := viewLink(t, h, other.IfName); fmt.Sprint(got) != fmt.Sprint(otherBefore) {
		t.Errorf("PF %s changed:\n got %+v\nwant %+v", other.IfName, got, otherBefore)
	}

	// A VF that is nowhere (its identity names a PCI function that has
	// no netdev anywhere): an error, and PF 1 still untouched.
	lost := orig
	lost.Identity = netattach.Identity{PCIAddress: "0000:00:1f.7"}
	err = netattach.Detach(ctx, h, nsPath, other.IfName, lost)
	if err == nil || !strings.Contains(err.Error(), "PCI 0000:00:1f.7") || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("detach of a device that is nowhere: err = %v", err)
	}
	if got := viewLink(t, h, other.IfName); fmt.Sprint(got) != fmt.Sprint(otherBefore) {
		t.Errorf("PF %s changed by the failed detach:\n got %+v\nwant %+v", other.IfName, got, otherBefore)
	}
}

// TestDetachReturnsVFNotTenantDummy: a tenant with NET_ADMIN in the pod
// renames the VF and creates a dummy with the VF's pod name and MAC.
// Detach returns the real VF (found by its PCI parent) and leaves the
// dummy in the pod as it is.
func TestDetachReturnsVFNotTenantDummy(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	pf, vf := vfFor(t, 1, 5)
	before := readRaw(t, h, pf, vf.Index)
	orig, err := netattach.ReadOriginal(ctx, h, vf.IfName, vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	nsPath := newNetns(t, "vmt-decoy")
	spec := podSpec(vf.IfName)
	if _, err := netattach.Attach(ctx, h, nsPath, spec, orig.Identity); err != nil {
		t.Fatal(err)
	}
	ph, err := nlink.NewAt(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ph.Close()
	pl, err := ph.LinkByName(spec.PodIfName)
	if err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetDown(pl); err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetName(pl, "hidden0"); err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC(spec.MAC)
	if err := ph.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: spec.PodIfName, HardwareAddr: mac, MTU: spec.MTU}}); err != nil {
		t.Fatalf("the tenant's dummy: %v", err)
	}
	dummy, err := ph.LinkByName(spec.PodIfName)
	if err != nil {
		t.Fatal(err)
	}
	if err := ph.LinkSetUp(dummy); err != nil {
		t.Fatal(err)
	}

	if err := netattach.Detach(ctx, h, nsPath, spec.PodIfName, orig); err != nil {
		t.Fatalf("detach: %v", err)
	}
	waitRaw(t, h, pf, vf.Index, before, waitShort)
	d, err := ph.LinkByName(spec.PodIfName)
	switch {
	case err != nil:
		t.Errorf("the tenant's dummy is gone from the pod: %v", err)
	case d.Type() != "dummy" || d.Attrs().Index != dummy.Attrs().Index || d.Attrs().HardwareAddr.String() != spec.MAC || d.Attrs().Flags&net.FlagUp == 0:
		t.Errorf("the tenant's dummy changed: %s index %d mac %s flags %v", d.Type(), d.Attrs().Index, d.Attrs().HardwareAddr, d.Attrs().Flags)
	}
	if _, err := ph.LinkByName("hidden0"); err == nil {
		t.Error("the VF is still in the pod as hidden0")
	}
}

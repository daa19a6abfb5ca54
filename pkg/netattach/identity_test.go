package netattach

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func TestIdentityMatch(t *testing.T) {
	perm, _ := net.ParseMAC("52:54:00:12:34:56")
	zero := make(net.HardwareAddr, 6)
	vf := netlink.LinkAttrs{Index: 10, Name: "ens3f0v1", ParentDev: "0000:3b:02.1", ParentDevBus: "pci", PermHWAddr: perm, NetNsID: -1}
	usb := netlink.LinkAttrs{Index: 11, Name: "usb0", ParentDev: "1-1:1.0", ParentDevBus: "usb", NetNsID: -1}
	usbPerm := usb
	usbPerm.PermHWAddr = perm
	bare := netlink.LinkAttrs{Index: 12, Name: "x0", PermHWAddr: perm, NetNsID: -1}
	vethOnHost := netlink.LinkAttrs{Index: 13, Name: "sim0", ParentIndex: 14, NetNsID: -1, PermHWAddr: zero}
	vethInPod := netlink.LinkAttrs{Index: 13, Name: "net1", ParentIndex: 14, NetNsID: 3}
	tenantVeth := netlink.LinkAttrs{Index: 20, Name: "net1", ParentIndex: 14, NetNsID: -1} // peer in the pod itself
	dummy := netlink.LinkAttrs{Index: 21, Name: "net1", NetNsID: -1}
	pciID := Identity{PCIAddress: "0000:3b:02.1"}
	peerID := Identity{HostPeerIndex: 14, Kind: "veth"}
	for _, tc := range []struct {
		name  string
		attrs netlink.LinkAttrs
		kind  string
		inPod bool // scope is a pod netns that knows the host as id 3
		id    Identity
		want  bool
	}{
		{"VF by its PCI parent", vf, "device", false, pciID, true},
		{"PCI address in capitals", vf, "device", true, Identity{PCIAddress: "0000:3B:02.1"}, true},
		{"another VF", vf, "device", false, Identity{PCIAddress: "0000:3b:02.2"}, false},
		{"a USB parent is not PCI", usb, "device", false, Identity{PCIAddress: "1-1:1.0"}, false},
		{"a USB NIC by its permanent address", usbPerm, "device", false, Identity{PermAddr: "52:54:00:12:34:56"}, true},
		{"permanent address without a parent", bare, "device", false, Identity{PermAddr: "52:54:00:12:34:56"}, true},
		{"a PCI netdev never matches a permanent-address identity", vf, "device", false, Identity{PermAddr: "52:54:00:12:34:56"}, false},
		{"veth stand-in on the host", vethOnHost, "veth", false, peerID, true},
		{"veth stand-in in the pod, peer on the host", vethInPod, "veth", true, peerID, true},
		{"a tenant's veth whose peer is in the pod", tenantVeth, "veth", true, peerID, false},
		{"same peer index, other kind", vethOnHost, "macvlan", false, peerID, false},
		{"a dummy", dummy, "dummy", true, peerID, false},
		{"the unknown identity matches nothing", vf, "device", false, Identity{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nlinktest.New()
			f.SetNetNsID(3)
			s := hostScope(f)
			if tc.inPod {
				s = podScope(f, "/run/netns/pod", HostNetnsPath)
			}
			got, err := s.is(&netlink.GenericLink{LinkAttrs: tc.attrs, LinkType: tc.kind}, tc.id)
			if err != nil || got != tc.want {
				t.Errorf("is(%+v, %s) = %v, %v; want %v", tc.attrs, tc.id, got, err, tc.want)
			}
		})
	}
}

func TestReadIdentity(t *testing.T) {
	vf := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "ens3f0v1", ParentDev: "0000:3b:02.1", ParentDevBus: "pci", NetNsID: -1}}
	if id, err := ReadIdentity(vf, "0000:3b:02.1"); err != nil || id != (Identity{PCIAddress: "0000:3b:02.1"}) {
		t.Errorf("VF: %+v, %v", id, err)
	}
	if _, err := ReadIdentity(vf, "0000:3b:02.2"); err == nil || !strings.Contains(err.Error(), "belongs to PCI 0000:3b:02.1, not to the device's PCI 0000:3b:02.2") {
		t.Errorf("VF under another device's name: err = %v", err)
	}
	// The simulated node: a veth stands for a VF with a fixture PCI address.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sdvf0", Index: 5, ParentIndex: 6, NetNsID: -1}}
	if id, err := ReadIdentity(veth, "0000:3b:02.0"); err != nil || id != (Identity{HostPeerIndex: 6, Kind: "veth"}) {
		t.Errorf("veth: %+v, %v", id, err)
	}
	dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "d0", Index: 7, NetNsID: -1}}
	if _, err := ReadIdentity(dummy, ""); err == nil || !strings.Contains(err.Error(), "cannot be identified") {
		t.Errorf("dummy: err = %v", err)
	}
}

// TestFindNeverReturnsAnotherLink: the names are only hints; two links
// with one identity are refused.
func TestFindNeverReturnsAnotherLink(t *testing.T) {
	f := nlinktest.New()
	f.AddLink(netlink.LinkAttrs{Name: "net1", NetNsID: -1})
	f.AddLink(netlink.LinkAttrs{Name: "dev9", ParentDev: "0000:3b:02.1", ParentDevBus: "pci", NetNsID: -1})
	id := Identity{PCIAddress: "0000:3b:02.1"}
	l, err := hostScope(f).find(id, "net1")
	if err != nil || l.Attrs().Name != "dev9" {
		t.Fatalf("find = %v, %v; want dev9", l, err)
	}
	if _, err := hostScope(f).find(Identity{PCIAddress: "0000:3b:02.7"}, "net1", "dev9"); !errors.Is(err, errNotHere) {
		t.Errorf("find of a missing device: err = %v", err)
	}
	if _, err := hostScope(f).find(Identity{}, "net1"); err == nil || !strings.Contains(err.Error(), "no identity recorded") {
		t.Errorf("find with no identity: err = %v", err)
	}
	f.AddLink(netlink.LinkAttrs{Name: "dev10", ParentDev: "0000:3b:02.1", ParentDevBus: "pci", NetNsID: -1})
	if _, err := hostScope(f).find(id); err == nil || !strings.Contains(err.Error(), "not touching either") {
		t.Errorf("two links with one identity: err = %v", err)
	}
	if m := f.MutatingCalls(); len(m) != 0 {
		t.Errorf("find changed links: %v", m)
	}
}

func TestNetnsGone(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		gone bool
		why  string
	}{
		{"/proc/self/ns/net", false, ""},
		{"/proc/thread-self/ns/net", false, ""},
		{filepath.Join(dir, "missing"), true, "does not exist"},
		{filepath.Join(plain, "below-a-file"), true, "does not exist"},
		{plain, true, "not nsfs"},
		{dir, true, "file mode"},
		{fifo, true, "file mode"},
		{"/proc/self/ns/uts", true, "another type"},
	} {
		gone, why, err := NetnsGone(tc.path)
		if err != nil || gone != tc.gone || !strings.Contains(why, tc.why) {
			t.Errorf("NetnsGone(%s) = %v, %q, %v; want %v, %q", tc.path, gone, why, err, tc.gone, tc.why)
		}
	}
}

// hostLinkState is everything about a host link that must not change
// when it is not the device: name, MAC, MTU, up, addresses.
type hostLinkState struct {
	linkState
	Index int
	Addrs []string
}

func hostStateOf(t *testing.T, h *nlink.Real, name string) hostLinkState {
	t.Helper()
	l := mustLink(t, h, name)
	addrs, err := h.AddrList(l, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	var as []string
	for _, a := range addrs {
		as = append(as, a.IPNet.String())
	}
	slices.Sort(as)
	return hostLinkState{linkState: stateOf(l), Index: l.Attrs().Index, Addrs: as}
}

// newVictim makes a host link standing for a node NIC: a veth (peer
// name+"p") with a known MAC, MTU, up, an IPv4 and an IPv6 address.
func newVictim(t *testing.T, host *nlink.Real, name string) hostLinkState {
	t.Helper()
	l := newVeth(t, host, name, name+"p", "02:ee:00:00:00:01", 1450)
	for _, a := range []string{"10.99.0.1/24", "fd99::1/64"} {
		addr, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := host.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := host.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return hostStateOf(t, host, name)
}

func deleteNamedNetns(t *testing.T, pod *nlink.Real, nsPath string) {
	t.Helper()
	pod.Close()
	if err := unix.Unmount(nsPath, unix.MNT_DETACH); err != nil {
		t.Fatalf("unmount %s: %v", nsPath, err)
	}
	if err := os.Remove(nsPath); err != nil {
		t.Fatal(err)
	}
}

// returnAsKernel moves the device from the pod netns to the host as the
// kernel does with a physical netdev when the netns dies: under its pod
// name, or dev<ifindex> when that name is taken on the host. (A veth
// would die with the netns instead.)
func returnAsKernel(t *testing.T, host, pod *nlink.Real, podName string) string {
	t.Helper()
	self, err := os.Open(HostNetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	pl := mustLink(t, pod, podName)
	name := podName
	if _, err := host.LinkByName(podName); err == nil {
		name = fmt.Sprintf("dev%d", pl.Attrs().Index)
	}
	if err := pod.LinkSetNsFdAndName(pl, int(self.Fd()), name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { delLink(host, name) })
	return name
}

// TestDetachNetnsGoneLeavesHostNICAlone is the takeover of issue 14: the
// claim's ifName is a host NIC's name, the pod netns dies before detach,
// the kernel returns the VF as dev<ifindex>. Detach must restore the VF
// and not touch the NIC; with the VF nowhere, it must change nothing.
func TestDetachNetnsGoneLeavesHostNICAlone(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:21")
	victim := pfx + "vic"
	victimBefore := newVictim(t, host, victim)
	spec := Spec{HostIfName: pfx + "vf", PodIfName: victim, MTU: 1300, MAC: "02:bb:00:00:00:21", Addresses: []string{"10.98.0.2/24"}}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	returned := returnAsKernel(t, host, pod, victim)
	if returned == victim {
		t.Fatalf("the kernel model returned the VF as %s", returned)
	}
	deleteNamedNetns(t, pod, nsPath)
	for i := 0; i < 2; i++ {
		if err := Detach(ctx, host, nsPath, victim, orig); err != nil {
			t.Fatalf("detach #%d: %v", i+1, err)
		}
		if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
			t.Errorf("VF after detach #%d: %+v, want %+v", i+1, got, before)
		}
		if got := hostStateOf(t, host, victim); !equalHostState(got, victimBefore) {
			t.Errorf("host NIC after detach #%d: %+v, want it untouched: %+v", i+1, got, victimBefore)
		}
	}
	absent(t, host, returned, "on the host")

	// The VF is lost for good (a veth dies with its netns): an error that
	// names the device and where it was looked for; the NIC is untouched.
	nsPath2 := newNetns(t, pfx+"n2")
	orig2, err := Attach(ctx, host, nsPath2, spec, orig.Identity)
	if err != nil {
		t.Fatal(err)
	}
	deleteNamedNetns(t, podHandle(t, nsPath2), nsPath2)
	err = Detach(ctx, host, nsPath2, victim, orig2)
	if !errors.Is(err, ErrDeviceGone) || !strings.Contains(err.Error(), orig.Identity.String()) || !strings.Contains(err.Error(), "gone") || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("detach of a device that is nowhere: err = %v", err)
	}
	if got := hostStateOf(t, host, victim); !equalHostState(got, victimBefore) {
		t.Errorf("host NIC after the failed detach: %+v, want it untouched: %+v", got, victimBefore)
	}
}

func equalHostState(a, b hostLinkState) bool {
	return a.linkState == b.linkState && a.Index == b.Index && slices.Equal(a.Addrs, b.Addrs)
}

// TestDetachTenantRenameAndDummy: a tenant with NET_ADMIN in the pod
// renames the VF and creates a link under its pod name (a dummy in the
// issue; a veth here, as this kernel has no dummy driver). Detach returns
// the real device and leaves the tenant's link in the pod as it is.
func TestDetachTenantRenameAndDummy(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:22")
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1400, MAC: "02:bb:00:00:00:22", Addresses: []string{"10.97.0.2/24"}}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	// The tenant's moves.
	pl := mustLink(t, pod, "net1")
	if err := pod.LinkSetDown(pl); err != nil {
		t.Fatal(err)
	}
	if err := pod.LinkSetName(pl, "hidden0"); err != nil {
		t.Fatal(err)
	}
	// Its stand-in is one end of a veth pair whose other end it gives
	// the ifindex of the VF's host peer, and the VF's host MAC: all that
	// differs is where the peer lives.
	mac, _ := net.ParseMAC(orig.MAC)
	fake := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "net1p", Index: orig.Identity.HostPeerIndex}, PeerName: "net1", PeerHardwareAddr: mac}
	if err := pod.LinkAdd(fake); err != nil {
		t.Fatal(err)
	}
	if got := mustLink(t, pod, "net1").Attrs().ParentIndex; got != orig.Identity.HostPeerIndex {
		t.Logf("the tenant's veth has peer index %d, not %d (index taken in the pod)", got, orig.Identity.HostPeerIndex)
	}
	if err := pod.LinkSetUp(mustLink(t, pod, "net1")); err != nil {
		t.Fatal(err)
	}
	dummyBefore := stateOf(mustLink(t, pod, "net1"))
	dummyIndex := mustLink(t, pod, "net1").Attrs().Index
	if in, err := InNetns(ctx, nsPath, "net1", orig.Identity); err != nil || !in {
		t.Errorf("InNetns of the renamed device = %v, %v; want true", in, err)
	}

	if err := Detach(ctx, host, nsPath, "net1", orig); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("VF after detach: %+v, want %+v", got, before)
	}
	if got := identityOf(mustLink(t, host, pfx+"vf")); got != orig.Identity {
		t.Errorf("the link on the host as %svf is %s, want the VF (%s)", pfx, got, orig.Identity)
	}
	if d := mustLink(t, pod, "net1"); stateOf(d) != dummyBefore || d.Attrs().Index != dummyIndex {
		t.Errorf("the tenant's link: %+v (index %d), want it left as %+v (index %d)", stateOf(d), d.Attrs().Index, dummyBefore, dummyIndex)
	}
	absent(t, pod, "hidden0", "in the pod")
	// A retried detach is success and does not touch the dummy.
	if err := Detach(ctx, host, nsPath, "net1", orig); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(mustLink(t, pod, "net1")); got != dummyBefore {
		t.Errorf("the tenant's dummy after a retried detach: %+v", got)
	}
	if in, err := InNetns(ctx, nsPath, "net1", orig.Identity); err != nil || in {
		t.Errorf("InNetns with only the dummy left = %v, %v; want false", in, err)
	}
}

// TestDetachNotANetnsPath: the netns path is a plain file (the bind mount
// was undone and a file left). That is gone, not an error to retry
// forever: the device is found on the host by its identity.
func TestDetachNotANetnsPath(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:23")
	podName := pfx + "p1"
	orig, err := Attach(ctx, host, nsPath, Spec{HostIfName: pfx + "vf", PodIfName: podName, MTU: 1280, MAC: "02:bb:00:00:00:23"}, idOf(t, host, pfx+"vf"))
	if err != nil {
		t.Fatal(err)
	}
	returnAsKernel(t, host, pod, podName)
	deleteNamedNetns(t, pod, nsPath)
	if err := os.WriteFile(nsPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(nsPath) })
	// The netlink library's setns on it fails with EINVAL.
	if _, err := nlink.NewAt(nsPath); !errors.Is(err, unix.EINVAL) {
		t.Logf("opening a handle in a plain file: %v (EINVAL expected)", err)
	}
	if in, err := InNetns(ctx, nsPath, podName, orig.Identity); err != nil || in {
		t.Errorf("InNetns on a plain file = %v, %v; want false, nil", in, err)
	}
	if err := Detach(ctx, host, nsPath, podName, orig); err != nil {
		t.Fatalf("detach with a plain file as netns: %v", err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("after detach: %+v, want %+v", got, before)
	}
}

//go:build vmtest

package vmtests

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// TestPFHostUse: a real igb PF listed for passthrough is offered whole
// only while SR-IOV is off on it and the host does not use its netdev;
// its VFs, a global address or a route in another routing table make the
// scan refuse it, and it is offered again once they are gone. The PF's
// VFs are restored at the end.
func TestPFHostUse(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	bed := testbed(t)
	pf := bed[len(bed)-1]
	orig := len(pf.VFs)
	t.Cleanup(func() {
		if numVFs(t, pf.PCI) != orig {
			setNumVFsRaw(t, pf.PCI, orig)
		}
	})
	// With its VFs on, whoever held the PF would set their MAC, VLAN and
	// trust through it: refused, and the VFs stay offered.
	inv, err := inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := inv.WholePFVerdicts([]string{pf.IfName})[inventory.DeviceName(pf.PCI)]; !strings.Contains(v, fmt.Sprintf("SR-IOV is on (%d VFs)", orig)) {
		t.Errorf("PF %s with %d VFs listed for passthrough: verdict %q, want it refused for SR-IOV being on", pf.IfName, orig, v)
	}
	setNumVFsRaw(t, pf.PCI, 0)
	l, err := h.LinkByName(pf.IfName)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.LinkSetDown(l) })
	}
	check := func(step, want string) {
		t.Helper()
		inv, err := inventory.Scan(ctx, inventory.Options{Root: "/", Netlink: h, AllowDefaultRoutePF: true})
		if err != nil {
			t.Fatalf("%s: scan: %v", step, err)
		}
		d, ok := inv.Find(inventory.DeviceName(pf.PCI))
		if !ok {
			t.Fatalf("%s: PF %s not scanned", step, pf.PCI)
		}
		offered := false
		for _, x := range inv.Publishable([]string{pf.IfName}) {
			offered = offered || x.PCIAddress == pf.PCI
		}
		if now := inventory.PFHostUse(ctx, h, "/", pf.IfName); now != d.HostUse {
			t.Errorf("%s: PFHostUse = %q, the scan said %q", step, now, d.HostUse)
		}
		t.Logf("%s: HostUse %q, offered whole %v", step, d.HostUse, offered)
		if want == "" {
			if d.HostUse != "" || !offered {
				t.Errorf("%s: HostUse %q, offered %v; want unused and offered", step, d.HostUse, offered)
			}
			return
		}
		if !strings.Contains(d.HostUse, want) || offered {
			t.Errorf("%s: HostUse %q, offered %v; want %q and not offered", step, d.HostUse, offered, want)
		}
	}
	check("nothing configured", "")

	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 5), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.AddrDel(l, addr) })
	check("global address", "global addresses 192.0.2.5/24")
	if err := h.AddrDel(l, addr); err != nil {
		t.Fatal(err)
	}

	route := &netlink.Route{LinkIndex: l.Attrs().Index, Table: 100, Scope: netlink.SCOPE_LINK,
		Dst: &net.IPNet{IP: net.IPv4(198, 51, 100, 0), Mask: net.CIDRMask(24, 32)}}
	if err := h.RouteAdd(route); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.RouteDel(route) })
	check("route in table 100", "routes 198.51.100.0/24 table 100")
	if err := h.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) {
		t.Fatal(err)
	}
	check("all removed", "")
}

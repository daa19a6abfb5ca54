package inventory_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// TestScanHostUseKernel runs the host-use check against a real kernel: a
// veth end stands in for the PF's netdev in a network namespace the test
// creates (the fixture sysfs names it as the PF), and the scan reads that
// namespace's addresses, routes of every table and links through a real
// netlink handle. What the kernel adds to every link that is up (IPv6
// link-local address and routes, the local table) must not count.
func TestScanHostUseKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a network namespace, veth and bridge links); CI runs it as root")
	}
	const pfPCI = "0000:af:00.0"
	cases := []struct {
		name  string
		setup func(t *testing.T, h *nlink.Real, pf netlink.Link)
		want  string // part of HostUse; "" = not in use
	}{
		{name: "up, IPv6 link-local only", setup: func(t *testing.T, h *nlink.Real, pf netlink.Link) {
			if err := h.AddrAdd(pf, &netlink.Addr{IPNet: cidr(t, "fe80::5/64"), Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatal(err)
			}
			// The kernel's own routes are there, so the check has
			// something to leave out.
			rs, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
			if err != nil {
				t.Fatal(err)
			}
			var kernel []string
			for _, r := range rs {
				if r.LinkIndex == pf.Attrs().Index && r.Dst != nil {
					kernel = append(kernel, fmt.Sprintf("%s@%d", r.Dst, r.Table))
				}
			}
			for _, want := range []string{"fe80::/64@254", "ff00::/8@255"} {
				if !slices.Contains(kernel, want) {
					t.Fatalf("kernel routes of the link %v, want %s among them", kernel, want)
				}
			}
		}},
		{name: "global IPv4 address", setup: func(t *testing.T, h *nlink.Real, pf netlink.Link) {
			if err := h.AddrAdd(pf, &netlink.Addr{IPNet: cidr(t, "192.0.2.7/24")}); err != nil {
				t.Fatal(err)
			}
		}, want: "global addresses 192.0.2.7/24; routes 192.0.2.0/24 table main"},
		{name: "global IPv6 address", setup: func(t *testing.T, h *nlink.Real, pf netlink.Link) {
			if err := h.AddrAdd(pf, &netlink.Addr{IPNet: cidr(t, "2001:db8::7/64"), Flags: unix.IFA_F_NODAD}); err != nil {
				t.Fatal(err)
			}
		}, want: "global addresses 2001:db8::7/64"},
		{name: "route in table 100 only", setup: func(t *testing.T, h *nlink.Real, pf netlink.Link) {
			r := &netlink.Route{LinkIndex: pf.Attrs().Index, Dst: prefix(t, "198.51.100.0/24"), Table: 100, Scope: netlink.SCOPE_LINK}
			if err := h.RouteAdd(r); err != nil {
				t.Fatal(err)
			}
		}, want: "the host uses netdev " + "%s: routes 198.51.100.0/24 table 100"},
		{name: "bridge port", setup: func(t *testing.T, h *nlink.Real, pf netlink.Link) {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "hubr0"}}
			if err := h.LinkAdd(br); err != nil {
				t.Fatalf("add bridge: %v", err)
			}
			if err := h.LinkSetMaster(pf, br); err != nil {
				t.Fatal(err)
			}
		}, want: "master hubr0 (member of a bond, bridge, team or VRF)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := kernelRunName(t)
			h := newNetnsHandle(t, name)
			pfName := name + "pf"
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pfName}, PeerName: name + "pp"}); err != nil {
				t.Fatalf("add veth: %v", err)
			}
			pf, err := h.LinkByName(pfName)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{pfName, name + "pp"} {
				l, err := h.LinkByName(n)
				if err != nil {
					t.Fatal(err)
				}
				if err := h.LinkSetUp(l); err != nil {
					t.Fatal(err)
				}
			}
			tc.setup(t, h, pf)

			x710 := sysfstest.SRIOVDisabled()
			x710.IfName = pfName
			fix := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{x710}})
			inv, err := inventory.Scan(ktCtx(t), inventory.Options{Root: fix.Root, Netlink: h})
			if err != nil {
				t.Fatal(err)
			}
			d := mustFind(t, inv, pfPCI)
			if now := inventory.PFHostUse(ktCtx(t), h, fix.Root, pfName); now != d.HostUse {
				t.Errorf("PFHostUse = %q, the scan said %q", now, d.HostUse)
			}
			offered := len(inv.Publishable([]string{pfName})) == 1
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, pfName)
			}
			if want == "" {
				if d.HostUse != "" || !offered {
					t.Errorf("HostUse = %q, offered %v; want unused and offered", d.HostUse, offered)
				}
				return
			}
			if !strings.Contains(d.HostUse, want) || offered {
				t.Errorf("HostUse = %q, offered %v; want one containing %q, not offered", d.HostUse, offered, want)
			}
		})
	}
}

func kernelRunName(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "hu" + hex.EncodeToString(b) // 8 chars: room for a suffix in 15
}

// newNetnsHandle creates a named netns (no goroutine stays in it) and a
// netlink handle whose sockets live there; both go at cleanup, and with
// the netns every link the test made in it.
func newNetnsHandle(t *testing.T, name string) *nlink.Real {
	t.Helper()
	return nlinktest.HandleAt(t, nlinktest.NewNetns(t, name))
}

package inventory_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func prefix(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestScanHostUse: a PF whose netdev the host uses (global addresses,
// routes in any table, a master, upper links) is marked so and never
// offered whole, even when listed; the routes and addresses the kernel
// keeps on every link that is up do not count. Reading errors count as in
// use. The PF's VFs are unaffected.
func TestScanHostUse(t *testing.T) {
	const pfName, pfPCI = "ens5f0", "0000:af:00.0"
	pfIndex := func(t *testing.T, h *sysfstest.Fixture) int {
		l, ok := h.Netlink.Link(pfName)
		if !ok {
			t.Fatalf("no %s in the fake", pfName)
		}
		return l.Attrs().Index
	}
	addAddr := func(scope int, a string) func(t *testing.T, h *sysfstest.Fixture) {
		return func(t *testing.T, h *sysfstest.Fixture) {
			l, _ := h.Netlink.Link(pfName)
			if err := h.Netlink.AddrAdd(l, &netlink.Addr{IPNet: cidr(t, a), Scope: scope}); err != nil {
				t.Fatal(err)
			}
		}
	}
	addRoute := func(table int, dst string) func(t *testing.T, h *sysfstest.Fixture) {
		return func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.AddRoute(netlink.Route{LinkIndex: pfIndex(t, h), Table: table, Dst: prefix(t, dst)})
		}
	}
	cases := []struct {
		name  string
		setup []func(t *testing.T, h *sysfstest.Fixture)
		want  string // part of HostUse; "" = not in use
		// igbUse is part of the other PF's HostUse ("" = none): a read
		// error leaves every PF in doubt.
		igbUse string
	}{
		{name: "unused"},
		{name: "kernel's own routes and link-local addresses", setup: []func(t *testing.T, h *sysfstest.Fixture){
			addAddr(unix.RT_SCOPE_LINK, "fe80::1/64"),
			addRoute(unix.RT_TABLE_MAIN, "fe80::/64"),
			addRoute(unix.RT_TABLE_LOCAL, "ff00::/8"),
			addRoute(unix.RT_TABLE_LOCAL, "fe80::1/128"),
			addAddr(unix.RT_SCOPE_HOST, "127.0.0.2/8"),
		}},
		{name: "global IPv4 address", setup: []func(t *testing.T, h *sysfstest.Fixture){addAddr(unix.RT_SCOPE_UNIVERSE, "192.0.2.7/24")},
			want: "the host uses netdev ens5f0: global addresses 192.0.2.7/24"},
		{name: "global IPv6 address", setup: []func(t *testing.T, h *sysfstest.Fixture){addAddr(unix.RT_SCOPE_UNIVERSE, "2001:db8::7/64")},
			want: "global addresses 2001:db8::7/64"},
		{name: "route in the main table", setup: []func(t *testing.T, h *sysfstest.Fixture){addRoute(unix.RT_TABLE_MAIN, "10.0.0.0/8")},
			want: "routes 10.0.0.0/8 table main"},
		{name: "route in another table (policy routing)", setup: []func(t *testing.T, h *sysfstest.Fixture){addRoute(100, "198.51.100.0/24")},
			want: "routes 198.51.100.0/24 table 100"},
		{name: "default route in a VRF's table", setup: []func(t *testing.T, h *sysfstest.Fixture){addRoute(7, "0.0.0.0/0")},
			want: "routes default table 7"},
		{name: "ECMP next hop in another table", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.AddRoute(netlink.Route{Table: 9, Dst: prefix(t, "203.0.113.0/24"),
				MultiPath: []*netlink.NexthopInfo{{LinkIndex: 999}, {LinkIndex: pfIndex(t, h)}}})
		}}, want: "routes 203.0.113.0/24 table 9"},
		{name: "many routes listed short", setup: []func(t *testing.T, h *sysfstest.Fixture){
			addRoute(1, "10.1.0.0/16"), addRoute(2, "10.2.0.0/16"), addRoute(3, "10.3.0.0/16"), addRoute(4, "10.4.0.0/16"), addRoute(5, "10.5.0.0/16"), addRoute(6, "10.6.0.0/16"),
		}, want: "table 4 and 2 more"},
		{name: "member of a bridge", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			br := h.Netlink.AddLink(netlink.LinkAttrs{Name: "br0"})
			relink(t, h.Netlink, pfName, func(a *netlink.LinkAttrs) { a.MasterIndex = br.Attrs().Index })
			upper(t, h, pfPCI, pfName, "br0") // sysfs lists the master as an upper link too
		}}, want: "the host uses netdev ens5f0: master br0 (member of a bond, bridge, team or VRF)"},
		{name: "VLAN on top", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			upper(t, h, pfPCI, pfName, "ens5f0.100")
		}}, want: "upper links ens5f0.100"},
		{name: "everything at once", setup: []func(t *testing.T, h *sysfstest.Fixture){
			addAddr(unix.RT_SCOPE_UNIVERSE, "192.0.2.7/24"), addRoute(100, "198.51.100.0/24"),
			func(t *testing.T, h *sysfstest.Fixture) { upper(t, h, pfPCI, pfName, "macvlan0") },
		}, want: "global addresses 192.0.2.7/24; routes 198.51.100.0/24 table 100; upper links macvlan0"},
		{name: "addresses unreadable", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.FailMethod("AddrList", "", unix.EPERM)
		}}, want: "cannot tell whether the host uses netdev ens5f0: read the addresses", igbUse: "cannot tell"},
		{name: "address dump interrupted, then whole", setup: []func(t *testing.T, h *sysfstest.Fixture){
			addAddr(unix.RT_SCOPE_UNIVERSE, "192.0.2.7/24"),
			func(t *testing.T, h *sysfstest.Fixture) { h.Netlink.InterruptDumps("AddrList", nlink.DumpTries-1) },
		}, want: "global addresses 192.0.2.7/24"},
		{name: "address dump interrupted on every try", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.InterruptDumps("AddrList", nlink.DumpTries)
		}}, want: "cannot tell whether the host uses netdev ens5f0: read the addresses: address dump: interrupted", igbUse: "cannot tell"},
		{name: "routes unreadable", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.FailMethod("RouteListFiltered", "", unix.EPERM)
		}}, want: "cannot tell whether the host uses netdev ens5f0: read the routes", igbUse: "cannot tell"},
		{name: "PF link not in the host netns", setup: []func(t *testing.T, h *sysfstest.Fixture){func(t *testing.T, h *sysfstest.Fixture) {
			h.Netlink.FailWith(func(c nlinktest.Call) error {
				if c.Method == "LinkByName" && c.Args == pfName {
					return netlink.LinkNotFoundError{}
				}
				return nil
			})
		}}, want: "no such link in the host network namespace"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled(), sysfstest.IGB()}})
			for _, f := range tc.setup {
				f(t, h)
			}
			h.Netlink.ResetCalls()
			// The default-route exclusion (TestScanDefaultRoute) is not
			// what this test is about: keep the PFs listed.
			inv := scan(t, h, func(o *inventory.Options) { o.AllowDefaultRoutePF = true })
			pf := mustFind(t, inv, pfPCI)
			if tc.want == "" {
				if pf.HostUse != "" {
					t.Errorf("HostUse = %q, want none", pf.HostUse)
				}
			} else if !strings.Contains(pf.HostUse, tc.want) {
				t.Errorf("HostUse = %q, want one containing %q", pf.HostUse, tc.want)
			}
			// Listed by name and by address: offered only when unused.
			for _, list := range [][]string{{pfName}, {pfPCI}} {
				offered := false
				for _, d := range inv.Publishable(list) {
					offered = offered || d.PCIAddress == pfPCI
				}
				if offered != (tc.want == "") {
					t.Errorf("listed as %q: offered whole = %v, want %v", list, offered, tc.want == "")
				}
				v := inv.WholePFVerdicts(list)[pf.Name]
				if tc.want != "" && (!inventory.IsPFRefusal(v) || !strings.Contains(v, tc.want)) {
					t.Errorf("verdict %q, want a refusal containing %q", v, tc.want)
				}
			}
			// The IGB PF is unlisted; its VFs are offered whatever its use.
			if igb := mustFind(t, inv, "0000:02:00.0"); (tc.igbUse == "") != (igb.HostUse == "") || !strings.Contains(igb.HostUse, tc.igbUse) {
				t.Errorf("IGB PF HostUse = %q, want %q", igb.HostUse, tc.igbUse)
			}
			if n := len(inv.Publishable([]string{pfName})); n < 7 {
				t.Errorf("%d devices offered, want at least the 7 IGB VFs", n)
			}
		})
	}
}

// upper adds the sysfs upper_<name> link the kernel puts in a netdev's
// folder for a link stacked on it.
func upper(t *testing.T, h *sysfstest.Fixture, pci, netdev, name string) {
	t.Helper()
	p := filepath.Join(h.DevicePath(pci), "net", netdev, "upper_"+name)
	if err := os.Symlink("../../../../virtual/net/"+name, p); err != nil {
		t.Fatal(err)
	}
}

// TestPFHostUseNow: the one-PF check Prepare runs right before it takes a
// PF answers as the scan does, from the state of the moment.
func TestPFHostUseNow(t *testing.T) {
	const pfName, pfPCI = "ens5f0", "0000:af:00.0"
	for _, tc := range []struct {
		name   string
		ifName string
		setup  func(t *testing.T, h *sysfstest.Fixture)
		want   string // part of the answer; "" = unused
	}{
		{name: "no netdev", ifName: ""},
		{name: "unused", ifName: pfName},
		{name: "global address", ifName: pfName, setup: func(t *testing.T, h *sysfstest.Fixture) {
			l, _ := h.Netlink.Link(pfName)
			if err := h.Netlink.AddrAdd(l, &netlink.Addr{IPNet: cidr(t, "192.0.2.7/24")}); err != nil {
				t.Fatal(err)
			}
		}, want: "the host uses netdev ens5f0: global addresses 192.0.2.7/24"},
		{name: "route in table 100", ifName: pfName, setup: func(t *testing.T, h *sysfstest.Fixture) {
			l, _ := h.Netlink.Link(pfName)
			h.Netlink.AddRoute(netlink.Route{LinkIndex: l.Attrs().Index, Table: 100, Dst: prefix(t, "198.51.100.0/24")})
		}, want: "routes 198.51.100.0/24 table 100"},
		{name: "upper link (sysfs through class/net)", ifName: pfName, setup: func(t *testing.T, h *sysfstest.Fixture) {
			upper(t, h, pfPCI, pfName, "ens5f0.7")
		}, want: "upper links ens5f0.7"},
		{name: "link gone", ifName: "ens9f9", want: "no such link in the host network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.SRIOVDisabled()}})
			if tc.setup != nil {
				tc.setup(t, h)
			}
			h.Netlink.ResetCalls()
			got := inventory.PFHostUse(ktCtx(t), h.Netlink, h.Root, tc.ifName)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("PFHostUse(%q) = %q, want %q", tc.ifName, got, tc.want)
			}
			if m := h.Netlink.MutatingCalls(); len(m) > 0 {
				t.Errorf("the check changed something: %v", m)
			}
		})
	}
}

package reliability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// The simulated node: a fixture sysfs tree (internal/sysfstest)
// describing one Ethernet PF with n VFs, whose VF netdevs are real veth
// links in the host netns (peer "<name>p" stays on the host: deleting it
// removes the pair wherever the VF end is), pod network namespaces made
// with ip netns, and a PF whose VF admin state survives restarts
// (pfHandle). Everything lives under one directory so that a second
// process (the crashing daemon) finds the same node.

const (
	driverName = "sriov.dra.dev"
	nodeName   = "rel-node"
	pfPCI      = "0000:5e:00.0"
	cniDir     = "/usr/lib/cni"
)

// node is serialized to the crashing child process.
type node struct {
	Dir      string             `json:"dir"`
	ID       string             `json:"id"`
	VFs      int                `json:"vfs"`
	Topology sysfstest.Topology `json:"topology"`
	// Filter is the admin's device filter (--device-filter).
	Filter inventory.Filter `json:"filter,omitzero"`
	// CNIPath replaces cniDir as the daemon's --cni-path when set.
	CNIPath string `json:"cniPath,omitempty"`
	// LostTimeout is the daemon's --lost-device-timeout (0: default).
	LostTimeout time.Duration `json:"lostTimeout,omitempty"`
}

func (n *node) cniPath() []string {
	if n.CNIPath != "" {
		return []string{n.CNIPath}
	}
	return []string{cniDir}
}

func (n *node) root() string     { return filepath.Join(n.Dir, "root") }
func (n *node) stateDir() string { return filepath.Join(n.Dir, "state") }
func (n *node) cdiDir() string   { return filepath.Join(n.Dir, "cdi") }
func (n *node) markDir() string  { return filepath.Join(n.Dir, "attached") }
func (n *node) ipamDir() string  { return filepath.Join(n.stateDir(), "ipam") }
func (n *node) pfFile() string   { return filepath.Join(n.Dir, "pf.json") }
func (n *node) pfName() string   { return "rl" + n.ID + "pf" }
func (n *node) vfName(i int) string {
	return fmt.Sprintf("rl%sv%d", n.ID, i)
}
func (n *node) netnsName(i int) string { return fmt.Sprintf("rl%sn%d", n.ID, i) }
func (n *node) netnsPath(i int) string { return "/var/run/netns/" + n.netnsName(i) }
func (n *node) vf(i int) sysfstest.VF  { return n.Topology.PFs[0].VFs[i] }
func (n *node) device(i int) string    { return inventory.DeviceName(n.vf(i).PCIAddress) }

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates veth links and network namespaces (CI runs as root)")
	}
	if _, err := os.Stat(filepath.Join(cniDir, "host-local")); err != nil {
		t.Skipf("needs the CNI host-local plugin in %s: %v", cniDir, err)
	}
}

func randID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func topology(id string, vfs int) sysfstest.Topology {
	pf := sysfstest.PF{
		PCIAddress: pfPCI, PCIeRoot: "pci0000:5d", Vendor: "8086", DeviceID: "1593", VFDeviceID: "1889",
		Driver: "ice", NUMANode: 0, IfName: "rl" + id + "pf", SpeedMbps: 25000, TotalVFs: 128,
	}
	for i := 0; i < vfs; i++ {
		pf.VFs = append(pf.VFs, sysfstest.VF{
			Driver: "iavf", IfName: fmt.Sprintf("rl%sv%d", id, i),
			Admin: netlink.VfInfo{Spoofchk: true, LinkState: netlink.VF_LINK_STATE_AUTO},
		})
	}
	return sysfstest.Topology{PFs: []sysfstest.PF{pf}}
}

// newNode builds the node: veth "VFs" with the MACs the fixture gives
// them, the fixture with their real ifindexes, a boot ID, one pod netns
// per VF. Everything is removed when the test ends, failed or not.
func newNode(t testing.TB, vfs int) *node {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp("", "rel")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &node{Dir: dir, ID: randID(), VFs: vfs}
	topo := topology(n.ID, vfs)
	probe, err := sysfstest.Write(filepath.Join(dir, "probe"), topo)
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(probe.Root)
	for i := range topo.PFs[0].VFs {
		vf := &topo.PFs[0].VFs[i]
		filled := probe.Topology.PFs[0].VFs[i]
		vf.PCIAddress, vf.MAC = filled.PCIAddress, filled.MAC
		idx := makeVeth(t, vf.IfName, vf.MAC)
		vf.IfIndex = idx
		ns := n.netnsName(i)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	n.Topology = topo
	if _, err := sysfstest.Write(n.root(), topo); err != nil {
		t.Fatal(err)
	}
	n.setBootID(t, "11111111-2222-3333-4444-555555555555")
	return n
}

func (n *node) setBootID(t testing.TB, id string) {
	t.Helper()
	p := filepath.Join(n.root(), "proc/sys/kernel/random")
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "boot_id"), []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func makeVeth(t testing.TB, name, mac string) int {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	la.MTU = 1500
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatalf("MAC %q of %s: %v", mac, name, err)
	}
	la.HardwareAddr = hw
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name + "p"); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	for _, nm := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(nm)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// fake returns a fresh sysfstest netlink fake for the node's topology
// (the PF with its VFs' initial admin state); pfHandle then applies the
// persisted state.
func (n *node) fakePF() (*sysfstest.Fixture, error) {
	tmp, err := os.MkdirTemp(n.Dir, "fake")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	return sysfstest.Write(tmp, n.Topology)
}

// handleIn is a netlink handle whose sockets live in the netns at path;
// the caller closes it.
func handleIn(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// linkIn returns the link named name in the netns at path ("" = host)
// and its IPv4 addresses, or nil when there is none.
func linkIn(t testing.TB, path, name string) (netlink.Link, []string) {
	t.Helper()
	h := &netlink.Handle{}
	if path != "" {
		ns, err := netns.GetFromPath(path)
		if err != nil {
			return nil, nil
		}
		defer ns.Close()
		hh, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatalf("netlink in %s: %v", path, err)
		}
		defer hh.Close()
		h = hh
	} else {
		hh, err := netlink.NewHandle()
		if err != nil {
			t.Fatal(err)
		}
		defer hh.Close()
		h = hh
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, nil
	}
	addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return l, out
}

// hostView is what the end-state checks compare: the host side of every
// VF as the kernel, the PF and sysfs report it.
type hostView struct {
	Links   []string  `json:"links"` // "name mac mtu addrs"
	VFs     []vfState `json:"vfs"`
	Drivers []string  `json:"drivers"`
}

func (n *node) view(t testing.TB, h *pfHandle) hostView {
	t.Helper()
	var v hostView
	for i := 0; i < n.VFs; i++ {
		name := n.vfName(i)
		l, addrs := linkIn(t, "", name)
		if l == nil {
			v.Links = append(v.Links, name+" missing from the host")
		} else {
			a := l.Attrs()
			v.Links = append(v.Links, fmt.Sprintf("%s %s %d %v", a.Name, a.HardwareAddr, a.MTU, addrs))
		}
		drv, err := os.Readlink(filepath.Join(n.root(), "sys/bus/pci/devices", n.vf(i).PCIAddress, "driver"))
		if err != nil {
			drv = "unbound"
		}
		v.Drivers = append(v.Drivers, filepath.Base(drv))
	}
	v.VFs = h.VFStates()
	return v
}

// leftovers lists what a clean node must not have: IPAM allocations on
// disk, CDI spec files, attach markers.
func (n *node) leftovers(t testing.TB) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(n.ipamDir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && net.ParseIP(d.Name()) != nil {
			b, _ := os.ReadFile(p)
			out = append(out, "IPAM allocation "+d.Name()+" held by "+strings.TrimSpace(string(b)))
		}
		return nil
	})
	ents, _ := os.ReadDir(n.cdiDir())
	for _, e := range ents {
		out = append(out, "CDI spec "+e.Name())
	}
	ents, _ = os.ReadDir(n.markDir())
	for _, e := range ents {
		out = append(out, "attach marker "+e.Name())
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var _ = context.Background

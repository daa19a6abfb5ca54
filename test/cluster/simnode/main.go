// Command simnode turns this machine into a simulated SR-IOV node for the
// cluster harness: real host links stand in for the PF and VF netdevs, and
// a fixture sysfs tree (internal/sysfstest) describes them as PCI
// devices. The driver runs with the fixture as its host root, so it
// publishes these devices, and the links it moves into pod network
// namespaces are real.
//
// Each netdev is one end of a veth pair; the other end (<name>p) stays on
// the host, so deleting it removes the pair wherever the netdev is.
//
//	simnode -root DIR up      # create links + fixture, print the inventory
//	simnode -root DIR down    # delete the links and the fixture
//	simnode -root DIR show    # the inventory the driver will see
//	simnode watch             # until SIGTERM: a netdev whose netns dies
//	                          # comes back to the host, as the kernel does
//	                          # for a physical device (watch.go)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// peerSuffix names the host end of each pair.
const peerSuffix = "p"

// Topology is the simulated node: an Intel E810 Ethernet PF with four VFs
// (NUMA 0), and an X710 PF with SR-IOV capability but no VFs enabled
// (NUMA 1), for passthrough: test/cluster/driver.sh lists it in
// PASSTHROUGH_PFS, as PF passthrough is opt-in.
func Topology(vfs int) sysfstest.Topology {
	e810 := sysfstest.PF{
		PCIAddress: "0000:3b:00.0", PCIeRoot: "pci0000:3a",
		Vendor: "8086", DeviceID: "1593", VFDeviceID: "1889",
		Driver: "ice", NUMANode: 0, IfName: "sdpf0", SpeedMbps: 25000, TotalVFs: 16,
	}
	for i := 0; i < vfs; i++ {
		e810.VFs = append(e810.VFs, sysfstest.VF{
			Driver: "iavf", IfName: fmt.Sprintf("sdvf%d", i),
			Admin: netlink.VfInfo{Spoofchk: true, LinkState: netlink.VF_LINK_STATE_AUTO},
		})
	}
	x710 := sysfstest.PF{
		PCIAddress: "0000:af:00.0", PCIeRoot: "pci0000:ae",
		Vendor: "8086", DeviceID: "1572", VFDeviceID: "154c",
		Driver: "i40e", NUMANode: 1, IfName: "sdpf1", SpeedMbps: 10000, TotalVFs: 64,
	}
	return sysfstest.Topology{PFs: []sysfstest.PF{e810, x710}}
}

// netdevs lists every netdev name of the topology.
func netdevs(topo sysfstest.Topology) []string {
	var names []string
	for _, pf := range topo.PFs {
		if pf.IfName != "" {
			names = append(names, pf.IfName)
		}
		for _, vf := range pf.VFs {
			if vf.IfName != "" {
				names = append(names, vf.IfName)
			}
		}
	}
	return names
}

func main() {
	root := flag.String("root", "", "fixture host root to write (required)")
	vfs := flag.Int("vfs", 4, "number of VFs of the Ethernet PF")
	flag.Parse()
	if (*root == "" && flag.Arg(0) != "watch") || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: simnode -root DIR [-vfs N] up|down|show, simnode [-vfs N] watch")
		os.Exit(2)
	}
	var err error
	switch flag.Arg(0) {
	case "up":
		err = up(*root, *vfs)
	case "down":
		err = down(*root, *vfs)
	case "show":
		err = show(*root)
	case "watch":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err = watch(ctx, *vfs)
		stop()
	default:
		err = fmt.Errorf("unknown command %q", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "simnode:", err)
		os.Exit(1)
	}
}

func up(root string, vfs int) error {
	if vfs < 0 || vfs > 16 {
		return fmt.Errorf("-vfs %d: want 0..16", vfs)
	}
	// A fixture left from an earlier run is replaced, links included.
	if err := down(root, vfs); err != nil {
		return err
	}
	topo := Topology(vfs)
	// The fixture gives each netdev a MAC; the links are made with them,
	// and the fixture is then written with the links' real ifindexes.
	filled, err := sysfstest.Write(filepath.Join(os.TempDir(), "simnode-probe-"+fmt.Sprint(os.Getpid())), topo)
	if err != nil {
		return fmt.Errorf("fill topology: %w", err)
	}
	os.RemoveAll(filled.Root)
	macs := map[string]string{}
	for _, pf := range filled.Topology.PFs {
		macs[pf.IfName] = pf.MAC
		for _, vf := range pf.VFs {
			macs[vf.IfName] = vf.MAC
		}
	}
	created := []string{}
	undo := func() {
		for _, n := range created {
			if l, err := netlink.LinkByName(n + peerSuffix); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	}
	ifindex := map[string]int{}
	for _, name := range netdevs(topo) {
		idx, err := makePair(name, macs[name])
		if err != nil {
			undo()
			return err
		}
		created = append(created, name)
		ifindex[name] = idx
	}
	for i := range topo.PFs {
		pf := &topo.PFs[i]
		pf.IfIndex = ifindex[pf.IfName]
		for j := range pf.VFs {
			pf.VFs[j].IfIndex = ifindex[pf.VFs[j].IfName]
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		undo()
		return err
	}
	if _, err := sysfstest.Write(root, topo); err != nil {
		undo()
		os.RemoveAll(root)
		return fmt.Errorf("write fixture under %s: %w", root, err)
	}
	// The boot ID the driver records in its checkpoint.
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		p := filepath.Join(root, "proc/sys/kernel/random")
		if err := os.MkdirAll(p, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(p, "boot_id"), b, 0o444)
		}
	}
	return show(root)
}

// makePair creates veth <name> with peer <name>p, both up, <name> with mac.
func makePair(name, mac string) (int, error) {
	la := netlink.NewLinkAttrs()
	la.Name = name
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return 0, fmt.Errorf("MAC %q of %s: %w", mac, name, err)
		}
		la.HardwareAddr = hw
	}
	veth := &netlink.Veth{LinkAttrs: la, PeerName: name + peerSuffix}
	if err := netlink.LinkAdd(veth); err != nil {
		return 0, fmt.Errorf("create veth pair %s/%s%s: %w", name, name, peerSuffix, err)
	}
	for _, n := range []string{name, name + peerSuffix} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return 0, fmt.Errorf("find link %s: %w", n, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return 0, fmt.Errorf("set %s up: %w", n, err)
		}
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find link %s: %w", name, err)
	}
	return l.Attrs().Index, nil
}

func down(root string, vfs int) error {
	var errs []error
	for _, name := range netdevs(Topology(max(vfs, 16))) {
		// Deleting the host end removes the pair, wherever the netdev is now.
		l, err := netlink.LinkByName(name + peerSuffix)
		if err != nil {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete link %s: %w", name+peerSuffix, err))
		}
	}
	if err := os.RemoveAll(root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func show(root string) error {
	nl, err := nlink.NewHost()
	if err != nil {
		return err
	}
	defer nl.Close()
	inv, err := inventory.Scan(context.Background(), inventory.Options{Root: root, Netlink: nl})
	if err != nil {
		return fmt.Errorf("scan fixture %s: %w", root, err)
	}
	if os.Getenv("SIMNODE_JSON") != "" {
		return json.NewEncoder(os.Stdout).Encode(inv)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "DEVICE\tKIND\tPCI\tPF\tVF\tNETDEV\tLINK\tNUMA\tDRIVER")
	for _, d := range inv.Devices {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", d.Name, d.Kind, d.PCIAddress, d.PFName, d.VFIndex, d.IfName, d.LinkType, d.NUMANode, d.Driver)
	}
	for _, e := range inv.Excluded {
		fmt.Fprintf(w, "excluded %s: %s\n", e.PCIAddress, e.Reason)
	}
	if inv.Note != "" {
		fmt.Fprintln(w, "note:", inv.Note)
	}
	return w.Flush()
}

package inventory

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// Scanner scans the host with fixed Options. Besides full scans it maps
// device events to the PFs they concern and rescans only those.
type Scanner struct {
	Options Options
}

// Scan runs a full Scan.
func (sc Scanner) Scan(ctx context.Context) (*Inventory, error) { return Scan(ctx, sc.Options) }

// ScanPFs is ScanPFs with the scanner's options.
func (sc Scanner) ScanPFs(ctx context.Context, prev *Inventory, pfs []string) (*Inventory, error) {
	return ScanPFs(ctx, sc.Options, prev, pfs)
}

// AffectedPFs is AffectedPFs under the scanner's root.
func (sc Scanner) AffectedPFs(prev *Inventory, pciAddresses, ifNames []string) []string {
	return AffectedPFs(sc.Options.Root, prev, pciAddresses, ifNames)
}

// AffectedPFs returns the PFs (sorted PCI addresses) that events about the
// given PCI functions and netdevs concern: a PF itself (it has
// sriov_totalvfs), the PF of a VF (its physfn link, or the last scan when
// the VF is gone), the PF of a netdev's PCI function (its device link, or
// the last scan when the netdev left the host's view). Anything else (a
// NIC without SR-IOV, a veth, a pod's interface) concerns no PF and is
// left out: such events cost no scan.
func AffectedPFs(root string, prev *Inventory, pciAddresses, ifNames []string) []string {
	if root == "" {
		root = "/"
	}
	sys := filepath.Join(root, "sys")
	set := map[string]bool{}
	byPCI := map[string]string{}
	byIf := map[string]string{}
	if prev != nil {
		for i := range prev.Devices {
			d := &prev.Devices[i]
			byPCI[d.PCIAddress] = d.PFPCIAddress
			for _, n := range d.IfNames {
				byIf[n] = d.PFPCIAddress
			}
			if d.PFName != "" {
				byIf[d.PFName] = d.PFPCIAddress
			}
		}
		for _, e := range prev.Excluded {
			if _, ok := byPCI[e.PCIAddress]; !ok {
				byPCI[e.PCIAddress] = ""
			}
		}
	}
	pfOf := func(bdf string) string {
		dev := pathRef(filepath.Join(sys, "bus", "pci", "devices", bdf))
		if exists(dev.join("sriov_totalvfs")) == nil {
			return bdf
		}
		if pf, err := readLinkBase(dev.join("physfn")); err == nil && pcidev.IsBDF(pf) {
			return pf
		}
		if pf, ok := byPCI[bdf]; ok {
			if pf == "" {
				return bdf // an excluded PF or VF: a PF rescan lists it again
			}
			return pf
		}
		return ""
	}
	for _, bdf := range pciAddresses {
		if !pcidev.IsBDF(bdf) {
			continue
		}
		if pf := pfOf(bdf); pf != "" {
			set[pf] = true
		}
	}
	for _, n := range ifNames {
		if n == "" || n == "." || n == ".." || filepath.Base(n) != n {
			continue
		}
		if dev, err := filepath.EvalSymlinks(filepath.Join(sys, "class", "net", n, "device")); err == nil && pcidev.IsBDF(filepath.Base(dev)) {
			bdf := filepath.Base(dev)
			if pf := pfOf(bdf); pf != "" {
				set[pf] = true
			}
			continue
		}
		if pf, ok := byIf[n]; ok {
			set[pf] = true
		}
	}
	out := make([]string, 0, len(set))
	for pf := range set {
		out = append(out, pf)
	}
	sort.Strings(out)
	return out
}

// ScanPFs rescans the given PFs (PCI addresses) and their VFs and returns
// prev with their devices and exclusions replaced: what Scan would return
// if nothing else changed since prev. A PF that no longer has
// sriov_totalvfs (removed, or its driver unbound) loses its devices. The
// netdevs of the PFs are read from their own folders (no /sys/class/net
// index), so the cost is that of the PFs asked for. With no prev, or when
// nothing would be left, it runs a full Scan (which explains an empty
// result in Note).
func ScanPFs(ctx context.Context, opts Options, prev *Inventory, pfs []string) (*Inventory, error) {
	if prev == nil {
		return Scan(ctx, opts)
	}
	s, filter, err := newScanner(ctx, opts)
	if err != nil {
		return nil, err
	}
	redo := map[string]bool{}
	for _, pf := range pfs {
		if !pcidev.IsBDF(pf) {
			return nil, fmt.Errorf("rescan PFs: %q is not a PCI address", pf)
		}
		redo[pf] = true
	}
	bus := pathRef(filepath.Join(s.sys, "bus", "pci", "devices"))
	var present []string
	for pf := range redo {
		if exists(bus.join(pf, "sriov_totalvfs")) == nil {
			present = append(present, pf)
		}
	}
	sort.Strings(present)
	if len(present) > 0 {
		s.classIB = s.classIndex("infiniband", "infiniband", s.indexNetdevBound)
		routes, rerr := s.readRoutes()
		s.routes = s.defaultRouteLinks(routes, rerr)
		s.use = s.readHostUse(routes, rerr)
	}
	inv := &Inventory{Devices: []Device{}}
	for _, d := range prev.Devices {
		if !redo[d.PFPCIAddress] {
			inv.Devices = append(inv.Devices, d)
		}
	}
	for _, e := range prev.Excluded {
		if redo[e.PCIAddress] {
			continue
		}
		dev := bus.join(e.PCIAddress)
		if exists(dev) != nil {
			continue // gone: a rescan would not list it
		}
		if pf, err := readLinkBase(dev.join("physfn")); err == nil && redo[pf] {
			continue
		}
		inv.Excluded = append(inv.Excluded, e)
	}
	for _, pf := range present {
		r := s.scanPF(ctx, pf)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("inventory scan: %w", err)
		}
		for _, e := range r.excluded {
			s.log.Info("Excluding device", "pci", e.PCIAddress, "reason", e.Reason)
		}
		inv.Excluded = append(inv.Excluded, r.excluded...)
		for _, d := range r.devices {
			if filter.matches(&d) {
				inv.Devices = append(inv.Devices, d)
			}
		}
	}
	if len(inv.Devices) == 0 {
		return Scan(ctx, opts)
	}
	sort.Slice(inv.Devices, func(i, j int) bool { return inv.Devices[i].Name < inv.Devices[j].Name })
	inv.Devices = slices.CompactFunc(inv.Devices, func(a, b Device) bool { return a.Name == b.Name })
	sort.SliceStable(inv.Excluded, func(i, j int) bool { return inv.Excluded[i].PCIAddress < inv.Excluded[j].PCIAddress })
	inv.RDMANetnsMode = s.rdmaNetnsMode(inv.Devices)
	s.log.V(2).Info("PFs rescanned", "pfs", pfs, "devices", len(inv.Devices), "excluded", len(inv.Excluded))
	return inv, nil
}

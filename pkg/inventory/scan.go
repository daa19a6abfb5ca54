package inventory

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/go-logr/logr"
	"github.com/vishvananda/netlink"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/hw"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
	"github.com/sriov-dra/sriov-dra/pkg/rdma"
)

// Options configure one Scan.
type Options struct {
	// Root is the host's filesystem root: sysfs is read at <Root>/sys
	// (default "/"; "/host" in a container that mounts the host there).
	Root string
	// Netlink answers VF admin state, VF GUIDs, devlink eswitch mode and
	// the default route, in the host network namespace. Required.
	Netlink nlink.Handle
	// Filter keeps only matching devices (empty: all).
	Filter Filter
	// AllowDefaultRoutePF lists the PF that carries the node's default
	// route too. By default that PF is excluded (its VFs are kept): handing
	// it to a pod would cut the node off.
	AllowDefaultRoutePF bool
}

// Reasons a device is left out of the inventory.
const (
	reasonVanished     = "device disappeared during the scan"
	reasonDefaultRoute = "PF carries the node's default route (allow with AllowDefaultRoutePF)"
)

// MaxVFs is the most VFs a PF can have: the SR-IOV capability's TotalVFs
// is a 16-bit field. A larger sriov_totalvfs is garbage.
const MaxVFs = 65535

// NoteNoSRIOV is Inventory.Note when the host has no SR-IOV capable PF.
const NoteNoSRIOV = "no PF with sriov_totalvfs found"

// Scan lists the SR-IOV PFs of the host and their VFs. It never changes
// anything on the host. Devices it cannot read are left out with a logged
// reason (Inventory.Excluded); unreadable optional attributes are left
// empty. It fails only on bad options or an unreadable PCI device list.
func Scan(ctx context.Context, opts Options) (*Inventory, error) {
	s, filter, err := newScanner(ctx, opts)
	if err != nil {
		return nil, err
	}
	busDir := filepath.Join(s.sys, "bus", "pci", "devices")
	bus, done := openDir(busDir)
	all, err := listDir(bus)
	if err != nil {
		done()
		return nil, fmt.Errorf("list PCI devices in %s: %w", busDir, err)
	}
	pfs := s.findPFs(bus, all)
	done()
	inv := &Inventory{Devices: []Device{}}
	if len(pfs) == 0 {
		inv.Note = fmt.Sprintf("%s under %s", NoteNoSRIOV, busDir)
		s.log.Info("No SR-IOV device", "note", inv.Note)
		return inv, nil
	}
	var wg0 sync.WaitGroup
	wg0.Add(1)
	go func() {
		defer wg0.Done()
		s.classIB = s.classIndex("infiniband", "infiniband", s.indexNetdevBound)
	}()
	s.classNet = s.classIndex("net", "net", nil)
	routes, rerr := s.readRoutes()
	s.routes = s.defaultRouteLinks(routes, rerr)
	s.use = s.readHostUse(routes, rerr)
	wg0.Wait()

	results := make([]pfResult, len(pfs))
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(pfs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = s.scanPF(ctx, pfs[i])
			}
		}()
	}
	for i := range pfs {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("inventory scan: %w", err)
	}

	found := 0
	for _, r := range results {
		for _, e := range r.excluded {
			s.log.Info("Excluding device", "pci", e.PCIAddress, "reason", e.Reason)
		}
		inv.Excluded = append(inv.Excluded, r.excluded...)
		found += len(r.devices)
		for _, d := range r.devices {
			if filter.matches(&d) {
				inv.Devices = append(inv.Devices, d)
			}
		}
	}
	sort.Slice(inv.Devices, func(i, j int) bool { return inv.Devices[i].Name < inv.Devices[j].Name })
	inv.RDMANetnsMode = s.rdmaNetnsMode(inv.Devices)
	sort.SliceStable(inv.Excluded, func(i, j int) bool { return inv.Excluded[i].PCIAddress < inv.Excluded[j].PCIAddress })
	switch {
	case found == 0:
		inv.Note = fmt.Sprintf("%d SR-IOV PF(s) found, every device excluded", len(pfs))
	case len(inv.Devices) == 0:
		inv.Note = fmt.Sprintf("%d SR-IOV device(s) found, none matches the filter", found)
	}
	s.log.V(2).Info("Inventory scanned", "pfs", len(pfs), "devices", len(inv.Devices), "filteredOut", found-len(inv.Devices), "excluded", len(inv.Excluded))
	return inv, nil
}

// newScanner checks the options and sets up one scan.
func newScanner(ctx context.Context, opts Options) (*scanner, Filter, error) {
	if opts.Netlink == nil {
		return nil, Filter{}, errors.New("inventory scan: Options.Netlink is nil")
	}
	f, err := opts.Filter.normalized()
	if err != nil {
		return nil, Filter{}, err
	}
	root := opts.Root
	if root == "" {
		root = "/"
	}
	s := &scanner{
		sys:   filepath.Join(root, "sys"),
		nl:    opts.Netlink,
		log:   klog.FromContext(ctx),
		allow: opts.AllowDefaultRoutePF,
	}
	s.pcieRootFS = deviceattribute.WithFSFromRoot(s.sys)
	return s, f, nil
}

// findPFs returns the devices with sriov_totalvfs. VFs always sort after
// their PF, and the kernel places VF i at routing ID PF + sriov_offset +
// i*sriov_stride (drivers/pci/iov.c), so the VFs of a PF found are not
// checked one by one: on a host with a thousand VFs that is a thousand
// stat calls saved.
func (s *scanner) findPFs(bus ref, all []string) []string {
	var pfs []string
	isVF := map[string]bool{}
	for _, bdf := range all {
		if isVF[bdf] {
			continue
		}
		dir := bus.join(bdf)
		if exists(dir.join("sriov_totalvfs")) != nil {
			continue
		}
		pfs = append(pfs, bdf)
		var num, off, stride int
		ok := s.optional(bdf, dir, "sriov_numvfs", func(v string) (err error) { num, err = parseInt(v); return err }) &&
			s.optional(bdf, dir, "sriov_offset", func(v string) (err error) { off, err = parseInt(v); return err }) &&
			s.optional(bdf, dir, "sriov_stride", func(v string) (err error) { stride, err = parseInt(v); return err })
		if !ok || num <= 0 || off <= 0 || stride <= 0 {
			continue
		}
		// A garbled sriov_numvfs (scanPF refuses it) must not make other
		// PFs look like VFs of this one.
		var total int
		if !s.optional(bdf, dir, "sriov_totalvfs", func(v string) (err error) { total, err = parseInt(v); return err }) || num > total || total > MaxVFs {
			continue
		}
		var dom, b, dev, fn int
		if _, err := fmt.Sscanf(bdf, "%04x:%02x:%02x.%1x", &dom, &b, &dev, &fn); err != nil {
			continue
		}
		rid := b<<8 | dev<<3 | fn
		// A routing ID is 16 bits: a garbled sriov_numvfs (scanPF
		// refuses it) costs at most 64k steps here, not billions.
		for i := 0; i < num; i++ {
			r := rid + off + i*stride
			if r > 0xffff {
				break
			}
			isVF[fmt.Sprintf("%04x:%02x:%02x.%x", dom, (r>>8)&0xff, (r>>3)&0x1f, r&7)] = true
		}
	}
	return pfs
}

// classIndex maps PCI address -> the names under /sys/class/<class> whose
// link points into that device's <sub>/ folder (netdevs under net/, RDMA
// devices under infiniband/). One readlink per class entry replaces an
// open/getdents/close of every device's folder. nil when the class folder
// cannot be read: callers then list the device's folder. Entries that are
// no PCI device's child go to other (when not nil), with the class folder
// still open.
func (s *scanner) classIndex(class, sub string, other func(dir ref, name string)) map[string][]string {
	dir, done := openDir(filepath.Join(s.sys, "class", class))
	defer done()
	names, err := listDir(dir)
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Cannot index class folder, reading every device's folder instead", "dir", dir.String(), "err", err)
		}
		return nil
	}
	idx := make(map[string][]string, len(names))
	for _, n := range names {
		t, err := readLink(dir.join(n))
		if err != nil {
			continue // vanished or not a link: not a device's entry
		}
		parent := filepath.Dir(t)
		if filepath.Base(t) != n || filepath.Base(parent) != sub {
			continue
		}
		if bdf := filepath.Base(filepath.Dir(parent)); pcidev.IsBDF(bdf) {
			idx[bdf] = append(idx[bdf], n) // names come sorted from listDir
		} else if other != nil {
			other(dir, n)
		}
	}
	return idx
}

// indexNetdevBound records an RDMA device that is no PCI function's child
// under the netdev it is bound to. Software RDMA devices (rxe, siw) live
// in /sys/devices/virtual/infiniband/ and name their netdev in the rxe
// "parent" attribute or, for any RoCE or iWARP device, as the netdev of
// port 1's GID 0. A device with neither (an IB port, no netdev) is left
// out. Costs one or two reads per such device, none per PCI-bound one.
func (s *scanner) indexNetdevBound(dir ref, name string) {
	nd, err := readValue(dir.join(name, "parent"))
	if err != nil || nd == "" {
		nd, err = readValue(dir.join(name, "ports", "1", "gid_attrs", "ndevs", "0"))
	}
	if err != nil || nd == "" {
		s.log.V(4).Info("RDMA device without a PCI parent or netdev: not mapped to a device", "rdma", name, "err", err)
		return
	}
	if s.ibByNetdev == nil {
		s.ibByNetdev = map[string][]string{}
	}
	s.ibByNetdev[nd] = append(s.ibByNetdev[nd], name)
}

// children returns the entries of a device's net/ or infiniband/ folder,
// from the class index when there is one.
func (s *scanner) children(dir ref, bdf string, idx map[string][]string) ([]string, error) {
	if idx != nil {
		return idx[bdf], nil
	}
	return listDir(dir)
}

type scanner struct {
	classNet map[string][]string
	classIB  map[string][]string
	// ibByNetdev maps a netdev name to the RDMA devices bound to it that
	// have no PCI parent (rxe, siw); written before the PFs are scanned.
	ibByNetdev map[string][]string
	sys        string
	nl         nlink.Handle
	log        logr.Logger
	allow      bool
	routes     routeInfo
	use        hostUse
	pcieRootFS deviceattribute.MachineModifier
}

type pfResult struct {
	devices  []Device
	excluded []Exclusion
}

// excluded is an error that leaves a device out of the inventory.
type excluded struct{ reason string }

func (e *excluded) Error() string { return e.reason }

func exclude(format string, args ...any) error {
	return &excluded{reason: fmt.Sprintf(format, args...)}
}

// busPath is a PCI device's /sys/bus/pci/devices link.
func (s *scanner) busPath(bdf string) string {
	return filepath.Join(s.sys, "bus", "pci", "devices", bdf)
}

// required reads a file the device cannot do without; a failure turns into
// an exclusion that says whether the device vanished or the file is bad.
func (s *scanner) required(dir ref, file string, parse func(string) error) error {
	v, err := readValue(dir.join(file))
	if err == nil {
		if perr := parse(v); perr != nil {
			return exclude("garbled %s: %v", file, perr)
		}
		return nil
	}
	if isNotExist(err) {
		if exists(dir) != nil {
			return exclude(reasonVanished)
		}
		return exclude("missing %s", file)
	}
	return exclude("unreadable %s: %v", file, err)
}

// optional reads an attribute that may be left out. Absent files are
// normal (nothing logged); unreadable or garbled ones are logged.
func (s *scanner) optional(bdf string, dir ref, file string, parse func(string) error) bool {
	v, err := readValue(dir.join(file))
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving attribute out: unreadable", "pci", bdf, "file", file, "err", err)
		}
		return false
	}
	if err := parse(v); err != nil {
		s.log.V(2).Info("Leaving attribute out: garbled", "pci", bdf, "file", file, "err", err)
		return false
	}
	return true
}

// readPCI fills what a PF has: IDs, driver, NUMA, PCIe root, IOMMU group.
func (s *scanner) readPCI(dir ref, bdf string) (Device, error) {
	d := Device{Name: DeviceName(bdf), PCIAddress: bdf, NUMANode: NUMAUnknown, LinkType: LinkTypeUnknown}
	var err error
	if err := s.required(dir, "vendor", func(v string) error { d.Vendor, err = parseHexID(v); return err }); err != nil {
		return d, err
	}
	if err := s.required(dir, "device", func(v string) error { d.DeviceID, err = parseHexID(v); return err }); err != nil {
		return d, err
	}
	s.optional(bdf, dir, "subsystem_vendor", func(v string) error { d.SubsystemVendor, err = parseHexID(v); return err })
	s.optional(bdf, dir, "subsystem_device", func(v string) error { d.SubsystemDevice, err = parseHexID(v); return err })
	s.optional(bdf, dir, "numa_node", func(v string) error { d.NUMANode, err = parseNUMA(v); return err })
	d.Driver = s.optionalLink(bdf, dir, "driver")
	d.IOMMUGroup = s.optionalLink(bdf, dir, "iommu_group")
	d.PCIeRoot = s.pcieRoot(bdf)
	return d, nil
}

// pcieRoot asks deviceattribute for the device's PCIe root complex; it
// resolves /sys/bus/pci/devices/<bdf> under the scan's root.
func (s *scanner) pcieRoot(bdf string) string {
	attr, err := deviceattribute.GetPCIeRootAttributeByPCIBusID(bdf, s.pcieRootFS)
	if err != nil || attr.Value.StringValue == nil {
		s.log.V(2).Info("Leaving attribute out: PCIe root", "pci", bdf, "err", err)
		return ""
	}
	return *attr.Value.StringValue
}

func (s *scanner) optionalLink(bdf string, dir ref, name string) string {
	v, err := readLinkBase(dir.join(name))
	if err != nil && !isNotExist(err) {
		s.log.V(2).Info("Leaving attribute out: unreadable link", "pci", bdf, "link", name, "err", err)
	}
	return v
}

// readNetdevs fills IfName/IfNames/MAC, and for a PF (or a VF whose PF's
// link type is unknown) LinkType, and for a PF MTU and speed, from
// <dev>/net/. With several netdevs (switchdev representors, IPoIB child
// interfaces) the uplink comes first: not a representor, lowest ifindex.
func (s *scanner) readNetdevs(devDir ref, d *Device, pf bool) {
	dir := devDir.join("net")
	names, err := s.children(dir, d.PCIAddress, s.classNet)
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving netdevs out: unreadable", "pci", d.PCIAddress, "err", err)
		}
		return
	}
	if len(names) == 0 {
		return
	}
	nds := make([]pcidev.Netdev, len(names))
	for i, n := range names {
		nds[i] = pcidev.Netdev{Name: n}
		if len(names) > 1 {
			// Which one is the device's netdev: pcidev's rule.
			nd := dir.join(n)
			s.optional(d.PCIAddress, nd, "ifindex", func(v string) error {
				x, err := parseInt(v)
				if err == nil {
					nds[i].Ifindex = x
				}
				return err
			})
			if v, err := readValue(nd.join("phys_port_name")); err == nil {
				nds[i].Representor = pcidev.IsRepresentorPortName(v)
			}
		}
	}
	pcidev.SortPrimary(nds)
	d.IfNames = make([]string, len(nds))
	for i := range nds {
		d.IfNames[i] = nds[i].Name
	}
	d.IfName = d.IfNames[0]
	up := dir.join(d.IfName)
	s.optional(d.PCIAddress, up, "address", func(v string) (err error) { d.MAC, err = parseMAC(v); return err })
	if pf || d.LinkType == LinkTypeUnknown {
		s.optional(d.PCIAddress, up, "type", func(v string) (err error) { d.LinkType, err = parseLinkType(v); return err })
	}
	if pf {
		s.optional(d.PCIAddress, up, "mtu", func(v string) (err error) { d.MTU, err = parseInt(v); return err })
		s.optional(d.PCIAddress, up, "speed", func(v string) error {
			n, err := parseInt(v)
			if err == nil && n > 0 {
				d.SpeedMbps = n
			}
			return err
		})
	}
}

// readRDMA fills RDMADevices from <dev>/infiniband/, followed by the
// RDMA devices without a PCI parent bound to one of the device's netdevs
// (an rxe on a VF), and, for a PF with a device of its own, the node
// GUID, port 1 GUID and the non-zero pkeys of port 1. It returns how many
// of RDMADevices are the PCI function's own (they come first).
func (s *scanner) readRDMA(devDir ref, d *Device, pf bool) int {
	dir := devDir.join("infiniband")
	names, err := s.children(dir, d.PCIAddress, s.classIB)
	if err != nil && !isNotExist(err) {
		s.log.V(2).Info("Leaving RDMA devices out: unreadable", "pci", d.PCIAddress, "err", err)
	}
	own := len(names)
	for _, nd := range d.IfNames {
		if bound := s.ibByNetdev[nd]; len(bound) > 0 {
			names = append(names[:len(names):len(names)], bound...) // never into the index's array
		}
	}
	if len(names) == 0 {
		return 0
	}
	d.RDMADevices = names
	if !pf || own == 0 {
		return own
	}
	ib := dir.join(names[0])
	s.optional(d.PCIAddress, ib, "node_guid", func(v string) error {
		g, err := hw.ParseGUID(v)
		if err == nil && !g.IsZero() {
			d.NodeGUID = g.String()
		}
		return err
	})
	if d.LinkType != LinkTypeInfiniBand {
		return own // RoCE: GIDs are IP based, pkeys meaningless
	}
	s.optional(d.PCIAddress, ib, "ports/1/gids/0", func(v string) error {
		g, err := hw.GUIDFromGID(v)
		if err == nil && !g.IsZero() {
			d.PortGUID = g.String()
		}
		return err
	})
	d.PKeys = s.readPKeys(d.PCIAddress, ib.join("ports", "1", "pkeys"))
	return own
}

// rdmaNetnsMode reads the RDMA netns mode when a device has an RDMA
// device, "" otherwise or when the kernel does not report it (a kernel
// without RDMA netns support shares every RDMA device).
func (s *scanner) rdmaNetnsMode(devs []Device) string {
	if !slices.ContainsFunc(devs, func(d Device) bool { return len(d.RDMADevices) > 0 }) {
		return ""
	}
	mode, err := rdma.NetnsMode(s.nl)
	if err != nil {
		s.log.V(2).Info("RDMA netns mode unknown", "err", err)
		return ""
	}
	return mode
}

// PortPKeys reads the pkey table of port 1 of the PCI function's own
// RDMA device (the first under <root>/sys/bus/pci/devices/<pci>/infiniband),
// non-zero entries in table order, formatted like Device.PKeys. The
// table belongs to the port's GUID: after a VF's GUID changes, this is
// where the partitions the subnet manager gives the new GUID show.
func PortPKeys(ctx context.Context, root, pciAddress string) ([]string, error) {
	if root == "" {
		root = "/"
	}
	s := &scanner{sys: filepath.Join(root, "sys"), log: klog.FromContext(ctx)}
	dir := pathRef(filepath.Join(s.sys, "bus", "pci", "devices", pciAddress, "infiniband"))
	names, err := listDir(dir)
	if err != nil {
		return nil, fmt.Errorf("RDMA device of %s: %w", pciAddress, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("RDMA device of %s: %s is empty", pciAddress, dir)
	}
	pkeys := dir.join(names[0], "ports", "1", "pkeys")
	if err := exists(pkeys); err != nil {
		return nil, fmt.Errorf("pkey table of %s (%s): %w", pciAddress, names[0], err)
	}
	return s.readPKeys(pciAddress, pkeys), nil
}

func (s *scanner) readPKeys(bdf string, dir ref) []string {
	entries, err := listDir(dir)
	if err != nil {
		if !isNotExist(err) {
			s.log.V(2).Info("Leaving pkeys out: unreadable", "pci", bdf, "err", err)
		}
		return nil
	}
	// Keep pkey table order (entries are numbered), not name order.
	idx := make([]int, 0, len(entries))
	for _, e := range entries {
		if n, err := strconv.Atoi(e); err == nil && n >= 0 {
			idx = append(idx, n)
		}
	}
	sort.Ints(idx)
	var out []string
	seen := map[hw.PKey]bool{}
	for _, n := range idx {
		var p hw.PKey
		if s.optional(bdf, dir, strconv.Itoa(n), func(v string) (err error) { p, err = hw.ParsePKey(v); return err }) && p != 0 && !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	return out
}

// pfContext is what the VFs of one PF share.
type pfContext struct {
	pf         *Device
	dir        ref    // the PF's directory
	realDir    string // its path under <sys>/devices
	vfDeviceID string // sriov_vf_device, "" when unreadable
	admin      map[int]netlink.VfInfo
	guids      map[int]nlink.VFGUID
}

// realDir resolves /sys/bus/pci/devices/<bdf> to the device's directory
// under /sys/devices. On failure it returns the bus path, which works as
// well (only slower).
func (s *scanner) realDir(bdf string) string {
	p := s.busPath(bdf)
	t, err := readLink(pathRef(p))
	if err != nil || filepath.IsAbs(t) {
		return p
	}
	return filepath.Join(filepath.Dir(p), t)
}

// scanPF reads one PF and its VFs.
func (s *scanner) scanPF(ctx context.Context, bdf string) (r pfResult) {
	if ctx.Err() != nil {
		return r
	}
	excl := func(addr string, err error) {
		r.excluded = append(r.excluded, Exclusion{PCIAddress: addr, Reason: err.Error()})
	}
	real := s.realDir(bdf)
	parent, done := openDir(filepath.Dir(real))
	defer done()
	dir := parent.join(filepath.Base(real))
	var total int
	if err := s.required(dir, "sriov_totalvfs", func(v string) (err error) { total, err = parseInt(v); return err }); err != nil {
		excl(bdf, err)
		return r
	}
	if total <= 0 {
		excl(bdf, exclude("sriov_totalvfs is %d: SR-IOV is disabled in the device's firmware", total))
		return r
	}
	if total > MaxVFs {
		excl(bdf, exclude("garbled sriov_totalvfs: %d is more than an SR-IOV PF can have (%d); the PF and its VFs are not scanned", total, MaxVFs))
		return r
	}
	pf, err := s.readPCI(dir, bdf)
	if err != nil {
		excl(bdf, fmt.Errorf("%w; its VFs are not scanned", err))
		return r
	}
	pf.Kind, pf.VFIndex, pf.PFPCIAddress, pf.PFDriver, pf.TotalVFs = KindPF, -1, bdf, pf.Driver, total
	num := -1
	s.optional(bdf, dir, "sriov_numvfs", func(v string) error {
		n, err := parseInt(v)
		if err == nil && n >= 0 {
			num = n
		}
		return err
	})
	if num < 0 {
		num = s.countVirtfn(dir, total)
		s.log.Info("sriov_numvfs unreadable, counted virtfn links instead", "pci", bdf, "numVfs", num)
	}
	if num > total {
		excl(bdf, exclude("garbled sriov_numvfs: %d is more than sriov_totalvfs %d; the PF and its VFs are not scanned", num, total))
		return r
	}
	pf.NumVFs = num
	s.readNetdevs(dir, &pf, true)
	pf.PFName = pf.IfName
	s.readRDMA(dir, &pf, true)
	if dl, err := s.nl.DevLinkGetDeviceByName("pci", bdf); err != nil {
		s.log.V(4).Info("No eswitch mode from devlink", "pci", bdf, "err", err)
	} else if dl != nil {
		pf.EswitchMode = dl.Attrs.Eswitch.Mode
	}

	var link netlink.Link
	if pf.IfName != "" {
		link, err = s.nl.LinkByName(pf.IfName)
		if err != nil {
			s.log.V(2).Info("PF link not in the host netns: no VF admin state", "pci", bdf, "pf", pf.IfName, "err", err)
			link = nil
		}
	}
	pf.HostUse = s.pfHostUse(dir.join("net", pf.IfName), &pf, link)
	if reason := s.routes.carries(pf.IfName, link); reason != "" && !s.allow {
		excl(bdf, exclude("%s", reason))
	} else {
		r.devices = append(r.devices, pf)
	}
	if num == 0 {
		return r
	}

	pc := &pfContext{pf: &pf, dir: dir, realDir: real}
	pc.admin, pc.guids = s.adminState(&pf, link)
	s.optional(bdf, dir, "sriov_vf_device", func(v string) (err error) { pc.vfDeviceID, err = parseHexID(v); return err })
	for i := 0; i < num; i++ {
		if ctx.Err() != nil {
			return r
		}
		vf, err := s.scanVF(pc, i)
		if err != nil {
			addr := vf.PCIAddress
			if addr == "" {
				addr = bdf
				err = fmt.Errorf("VF %d: %w", i, err)
			}
			excl(addr, err)
			continue
		}
		r.devices = append(r.devices, vf)
	}
	return r
}

// countVirtfn counts the virtfn<i> links, at most limit of them.
func (s *scanner) countVirtfn(dir ref, limit int) int {
	n := 0
	for n < limit {
		if _, err := readLink(dir.join("virtfn" + strconv.Itoa(n))); err != nil {
			return n
		}
		n++
	}
	return n
}

// adminState asks the PF link for its VFs' admin state and, on
// InfiniBand, their GUIDs.
func (s *scanner) adminState(pf *Device, link netlink.Link) (map[int]netlink.VfInfo, map[int]nlink.VFGUID) {
	if link == nil || pf.NumVFs == 0 {
		return nil, nil
	}
	admin := make(map[int]netlink.VfInfo, len(link.Attrs().Vfs))
	for _, v := range link.Attrs().Vfs {
		admin[v.ID] = v
	}
	if pf.LinkType != LinkTypeInfiniBand {
		return admin, nil
	}
	gs, err := s.nl.VFGUIDs(link)
	if err != nil {
		s.log.V(2).Info("No VF GUIDs from the PF", "pf", pf.IfName, "err", err)
		return admin, nil
	}
	guids := make(map[int]nlink.VFGUID, len(gs))
	for _, g := range gs {
		guids[g.VF] = g
	}
	return admin, guids
}

// scanVF reads VF i of a PF. The kernel gives every VF its PF's vendor
// ID and the PF's sriov_vf_device as device ID (drivers/pci/iov.c), so
// those come from the PF; a VF that is a sibling of its PF (virtfn ->
// "../<bdf>", the normal layout) shares the PF's PCIe root and is read
// relative to the PF's parent folder. Everything else is read from the
// VF's own directory.
func (s *scanner) scanVF(pc *pfContext, i int) (Device, error) {
	pf := pc.pf
	fn := "virtfn" + strconv.Itoa(i)
	target, err := readLink(pc.dir.join(fn))
	if err != nil {
		if isNotExist(err) {
			return Device{}, exclude("%s: %s", fn, reasonVanished)
		}
		return Device{}, exclude("unreadable %s: %v", fn, err)
	}
	vfBDF := filepath.Base(target)
	if !pcidev.IsBDF(vfBDF) {
		return Device{}, exclude("%s points to %q, not a PCI device", fn, target)
	}
	sibling := target == "../"+vfBDF
	var dir ref
	switch {
	case sibling:
		dir = pc.dir.join("..", vfBDF)
	case filepath.IsAbs(target):
		dir = pathRef(s.realDir(vfBDF))
	default:
		dir = pathRef(filepath.Join(pc.realDir, target))
	}
	vf := Device{
		Name: DeviceName(vfBDF), Kind: KindVF, PCIAddress: vfBDF, VFIndex: i,
		PFPCIAddress: pf.PCIAddress, PFName: pf.IfName, PFDriver: pf.Driver,
		Vendor: pf.Vendor, DeviceID: pc.vfDeviceID, NUMANode: NUMAUnknown, LinkType: pf.LinkType,
	}
	if vf.DeviceID == "" {
		if err := s.required(dir, "device", func(v string) (err error) { vf.DeviceID, err = parseHexID(v); return err }); err != nil {
			return vf, err
		}
	}
	// numa_node doubles as the check that the VF is still there.
	if v, err := readValue(dir.join("numa_node")); err != nil {
		if exists(dir) != nil {
			return vf, exclude(reasonVanished)
		}
		s.log.V(2).Info("Leaving attribute out: unreadable", "pci", vfBDF, "file", "numa_node", "err", err)
	} else if vf.NUMANode, err = parseNUMA(v); err != nil {
		s.log.V(2).Info("Leaving attribute out: garbled", "pci", vfBDF, "file", "numa_node", "err", err)
	}
	vf.Driver = s.optionalLink(vfBDF, dir, "driver")
	vf.IOMMUGroup = s.optionalLink(vfBDF, dir, "iommu_group")
	if sibling {
		vf.PCIeRoot = pf.PCIeRoot
	} else {
		vf.PCIeRoot = s.pcieRoot(vfBDF)
	}
	s.readNetdevs(dir, &vf, false)
	ownRDMA := s.readRDMA(dir, &vf, false)
	g, hasGUIDs := pc.guids[i]
	if info, ok := pc.admin[i]; ok {
		var guids *nlink.VFGUID
		if hasGUIDs {
			guids = &g
		}
		a := AdminFromVfInfo(info, guids)
		vf.Admin = &a
	}
	if hasGUIDs {
		// As identity, an unset (all-zero) GUID is no GUID.
		vf.NodeGUID, vf.PortGUID = setGUID(g.NodeGUID), setGUID(g.PortGUID)
	}
	if vf.NodeGUID == "" && vf.LinkType == LinkTypeInfiniBand && ownRDMA > 0 {
		// The PF did not report it; the VF's own RDMA device knows.
		s.optional(vfBDF, dir.join("infiniband", vf.RDMADevices[0]), "node_guid", func(v string) error {
			g, err := hw.ParseGUID(v)
			if err == nil && !g.IsZero() {
				vf.NodeGUID = g.String()
			}
			return err
		})
	}
	return vf, nil
}

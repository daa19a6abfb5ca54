package inventory

// This file runs one scan: it checks the options, finds the PFs, builds
// the shared indexes, scans the PFs in parallel and merges their results.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/dynamic-resource-allocation/deviceattribute"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
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

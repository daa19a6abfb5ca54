package inventory

// This file indexes /sys/class/net and /sys/class/infiniband by PCI
// address, so a scan reads one link per netdev or RDMA device instead of
// every device's folder.

import (
	"path/filepath"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

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

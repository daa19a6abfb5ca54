// Package rdma finds the RDMA device of a PCI function, moves it into a
// pod network namespace and back (exclusive RDMA netns mode), and lists the
// character devices a container needs to use it.
package rdma

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/Mellanox/rdmamap"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// The sysfs and /dev names below are github.com/Mellanox/rdmamap's. Its
// lookup functions cannot serve here: they read fixed directories held in
// package-level variables (one sysfs root per process, changed only by
// assigning a global, where the driver's tests run many fixture roots at
// once), and they answer an unreadable directory with an empty list, where
// the driver must tell "no RDMA device" from "could not read" (the first
// publishes the device without one, the second leaves the attribute out
// and logs). So the walk is this package's, over the filesystem-root seam,
// and the vocabulary is rdmamap's.

// Netns modes of the RDMA subsystem (rdma system set netns ...).
const (
	ModeShared    = "shared"
	ModeExclusive = "exclusive"
)

func pciDir(root, pci string) string { return pcidev.Dir(root, pci) }

func names(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// Devices returns the RDMA devices of a PCI function: its own, from its
// sysfs infiniband/ folder ("mlx5_3"), then the software RDMA devices
// (rxe, siw) bound to one of its netdevs (see NetdevBound); none for a
// function without RDMA. In exclusive mode sysfs shows only the devices
// of the reader's netns, so a device moved into a pod is not listed on the
// host.
func Devices(root, pci string) ([]string, error) {
	n, err := names(filepath.Join(pciDir(root, pci), rdmamap.RdmaClassName))
	if err != nil {
		return nil, fmt.Errorf("list RDMA devices of %s: %w", pci, err)
	}
	soft, err := NetdevBound(root, pci)
	if err != nil {
		return nil, err
	}
	return append(n, soft...), nil
}

// NetdevBound returns the RDMA devices without a PCI parent that are
// bound to one of the PCI function's netdevs (<pci>/net/), sorted. A
// software RDMA device ("rdma link add rxe0 type rxe netdev ens1f0v2")
// lives in /sys/devices/virtual/infiniband/ and names its netdev in its
// "parent" attribute (rxe) or as the netdev of port 1's GID 0 (rxe, siw,
// any RoCE or iWARP device); the PCI function has no infiniband/ entry
// for it. A function whose netdev is in another netns has none here.
func NetdevBound(root, pci string) ([]string, error) {
	nds, err := names(filepath.Join(pciDir(root, pci), "net"))
	if err != nil {
		return nil, fmt.Errorf("list netdevs of %s: %w", pci, err)
	}
	if len(nds) == 0 {
		return nil, nil
	}
	class := filepath.Join(root, "sys/class", rdmamap.RdmaClassName)
	devs, err := names(class)
	if err != nil {
		return nil, fmt.Errorf("list RDMA devices in %s: %w", class, err)
	}
	var out []string
	for _, d := range devs {
		t, err := os.Readlink(filepath.Join(class, d))
		if err != nil || pciChild(t) {
			continue // vanished, or a PCI function's own: listed there
		}
		if nd := boundNetdev(filepath.Join(class, d)); nd != "" && slices.Contains(nds, nd) {
			out = append(out, d)
		}
	}
	return out, nil
}

// pciChild reports whether a class link target is .../<bdf>/<sub>/<name>.
func pciChild(target string) bool {
	return pcidev.IsBDF(filepath.Base(filepath.Dir(filepath.Dir(target))))
}

// boundNetdev returns the netdev an RDMA device (its sysfs folder) is
// bound to: the rxe parent attribute, else the netdev of port 1's GID 0;
// "" when it has neither (an InfiniBand port has no netdev).
func boundNetdev(dir string) string {
	gid0 := filepath.Join(rdmamap.RdmaPortsdir, "1", rdmamap.RdmaGidAttrDir, rdmamap.RdmaGidAttrNdevDir, "0")
	for _, f := range []string{"parent", gid0} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			if nd := strings.TrimSpace(string(b)); nd != "" {
				return nd
			}
		}
	}
	return ""
}

// Device returns the first RDMA device of the PCI function, "" if none.
func Device(root, pci string) (string, error) {
	d, err := Devices(root, pci)
	if err != nil || len(d) == 0 {
		return "", err
	}
	return d[0], nil
}

// NetnsMode reads the RDMA subsystem's netns mode: "shared" (every netns
// sees every RDMA device) or "exclusive" (a device belongs to one netns).
func NetnsMode(h nlink.Handle) (string, error) {
	m, err := h.RdmaSystemGetNetnsMode()
	if err != nil {
		return "", fmt.Errorf("read RDMA netns mode: %w", err)
	}
	return m, nil
}

// Move moves the RDMA device named dev, as seen by handle from (a handle
// in the netns it is in now), into the netns at toNsPath. Moving into the
// pod uses a host handle and the pod's netns path; moving back uses a
// handle opened in the pod netns (nlink.NewAt) and the host's netns path.
// It only makes sense in exclusive mode; in shared mode the kernel refuses.
// A device not found through from but present through to (already moved)
// is success, so Move is idempotent when to is given.
func Move(ctx context.Context, from nlink.Handle, dev, toNsPath string, to nlink.Handle) error {
	if dev == "" {
		return fmt.Errorf("move RDMA device: no device name")
	}
	l, err := from.RdmaLinkByName(dev)
	if err != nil {
		if to != nil {
			if _, terr := to.RdmaLinkByName(dev); terr == nil {
				klog.FromContext(ctx).V(2).Info("RDMA device already in the target netns", "rdma", dev, "netns", toNsPath)
				return nil
			}
		}
		return fmt.Errorf("move RDMA device %s to %s: %w", dev, toNsPath, err)
	}
	f, err := os.Open(toNsPath)
	if err != nil {
		return fmt.Errorf("move RDMA device %s: open netns %s: %w", dev, toNsPath, err)
	}
	defer f.Close()
	if err := from.RdmaLinkSetNsFd(l, uint32(f.Fd())); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("move RDMA device %s to %s: the RDMA subsystem is not in exclusive netns mode (rdma system set netns exclusive): %w", dev, toNsPath, err)
		}
		return fmt.Errorf("move RDMA device %s to %s: %w", dev, toNsPath, err)
	}
	klog.FromContext(ctx).V(2).Info("Moved RDMA device", "rdma", dev, "netns", toNsPath)
	return nil
}

// IsManagementDevice reports whether a character device path from
// CharDevices is a management device: umadN (raw management datagrams to
// the fabric) or issmN (sets the port's IsSM capability bit, claiming the
// subnet manager role). The verbs devices and rdma_cm are not.
func IsManagementDevice(path string) bool {
	base := filepath.Base(path)
	return strings.HasPrefix(base, "umad") || strings.HasPrefix(base, "issm")
}

// CharDevices lists the host paths of the RDMA character devices of a PCI
// function for CDI: /dev/infiniband/uverbsN (infiniband_verbs/), umadN and
// issmN (infiniband_mad/), then those of the software RDMA devices bound
// to its netdevs (NetdevBound; found in /sys/class/infiniband_verbs and
// infiniband_mad by their ibdev attribute, since they are no PCI
// function's children), and /dev/infiniband/rdma_cm when the rdma_cm
// module is loaded (its misc device is registered). The paths are the
// same in the container.
func CharDevices(root, pci string) ([]string, error) {
	var out []string
	dir := pciDir(root, pci)
	verbs, err := names(filepath.Join(dir, "infiniband_verbs"))
	if err != nil {
		return nil, fmt.Errorf("list verbs devices of %s: %w", pci, err)
	}
	out = appendNodes(out, verbs, rdmamap.RdmaUverbsFilxPrefix)
	mad, err := names(filepath.Join(dir, "infiniband_mad"))
	if err != nil {
		return nil, fmt.Errorf("list MAD devices of %s: %w", pci, err)
	}
	out = appendNodes(out, mad, rdmamap.RdmaUmadFilxPrefix, rdmamap.RdmaIssmFilePrefix)
	soft, err := NetdevBound(root, pci)
	if err != nil {
		return nil, err
	}
	if len(soft) > 0 {
		for _, c := range []struct {
			class    string
			prefixes []string
		}{
			{"infiniband_verbs", []string{rdmamap.RdmaUverbsFilxPrefix}},
			{"infiniband_mad", []string{rdmamap.RdmaUmadFilxPrefix, rdmamap.RdmaIssmFilePrefix}},
		} {
			n, err := classNodesOf(root, c.class, soft)
			if err != nil {
				return nil, fmt.Errorf("character devices of %v (on %s): %w", soft, pci, err)
			}
			out = appendNodes(out, n, c.prefixes...)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	for _, p := range []string{"sys/class/misc/rdma_cm", "dev/infiniband/rdma_cm"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			out = append(out, "/dev/infiniband/rdma_cm")
			break
		}
	}
	return out, nil
}

// appendNodes appends /dev/infiniband/<n> for the names with one of the
// prefixes.
func appendNodes(out, ns []string, prefixes ...string) []string {
	for _, n := range ns {
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				out = append(out, "/dev/infiniband/"+n)
				break
			}
		}
	}
	return out
}

// classNodesOf returns the entries of /sys/class/<class> whose ibdev
// attribute names one of devs, sorted.
func classNodesOf(root, class string, devs []string) ([]string, error) {
	dir := filepath.Join(root, "sys/class", class)
	ents, err := names(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e, "ibdev"))
		if err != nil {
			continue // vanished, or not a device's entry (abi_version)
		}
		if slices.Contains(devs, strings.TrimSpace(string(b))) {
			out = append(out, e)
		}
	}
	return out, nil
}

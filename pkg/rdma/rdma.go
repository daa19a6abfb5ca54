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
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Netns modes of the RDMA subsystem (rdma system set netns ...).
const (
	ModeShared    = "shared"
	ModeExclusive = "exclusive"
)

func pciDir(root, pci string) string { return filepath.Join(root, "sys/bus/pci/devices", pci) }

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

// Devices returns the RDMA devices of a PCI function from its sysfs
// infiniband/ folder ("mlx5_3"), none for a function without RDMA. In
// exclusive mode sysfs shows only the devices of the reader's netns, so a
// device moved into a pod is not listed on the host.
func Devices(root, pci string) ([]string, error) {
	n, err := names(filepath.Join(pciDir(root, pci), "infiniband"))
	if err != nil {
		return nil, fmt.Errorf("list RDMA devices of %s: %w", pci, err)
	}
	return n, nil
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

// CharDevices lists the host paths of the RDMA character devices of a PCI
// function for CDI: /dev/infiniband/uverbsN (infiniband_verbs/), umadN and
// issmN (infiniband_mad/), and /dev/infiniband/rdma_cm when the rdma_cm
// module is loaded (its misc device is registered). The paths are the
// same in the container.
func CharDevices(root, pci string) ([]string, error) {
	var out []string
	dir := pciDir(root, pci)
	verbs, err := names(filepath.Join(dir, "infiniband_verbs"))
	if err != nil {
		return nil, fmt.Errorf("list verbs devices of %s: %w", pci, err)
	}
	for _, n := range verbs {
		if strings.HasPrefix(n, "uverbs") {
			out = append(out, "/dev/infiniband/"+n)
		}
	}
	mad, err := names(filepath.Join(dir, "infiniband_mad"))
	if err != nil {
		return nil, fmt.Errorf("list MAD devices of %s: %w", pci, err)
	}
	for _, n := range mad {
		if strings.HasPrefix(n, "umad") || strings.HasPrefix(n, "issm") {
			out = append(out, "/dev/infiniband/"+n)
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

package vfprov

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// PF is an SR-IOV capable PCI function as sysfs shows it.
type PF struct {
	PCIAddress string
	IfName     string // first netdev name, "" when none
	Vendor     string // "8086"
	Device     string // "10c9"
	Driver     string // "" when unbound
	NumVFs     int
	TotalVFs   int
	VFs        []string // VF PCI addresses by index
}

func devicesDir(root string) string { return filepath.Join(root, pcidev.DevicesDir) }

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readInt(path string) (int, error) {
	s, err := readTrim(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

func linkBase(path string) string {
	t, err := os.Readlink(path)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}

// ScanPFs lists the PCI functions under root with sriov_totalvfs, sorted by
// PCI address. A PF whose attributes cannot be read is skipped with its
// error in the joined error (the others are still returned).
func ScanPFs(root string) ([]PF, error) {
	ents, err := os.ReadDir(devicesDir(root))
	if err != nil {
		return nil, fmt.Errorf("list PCI devices: %w", err)
	}
	var pfs []PF
	var errs []error
	for _, e := range ents {
		pf, ok, err := readPF(root, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			pfs = append(pfs, pf)
		}
	}
	sort.Slice(pfs, func(i, j int) bool { return pfs[i].PCIAddress < pfs[j].PCIAddress })
	return pfs, errors.Join(errs...)
}

func readPF(root, pci string) (PF, bool, error) {
	dir := filepath.Join(devicesDir(root), pci)
	total, err := readInt(filepath.Join(dir, "sriov_totalvfs"))
	if errors.Is(err, os.ErrNotExist) {
		return PF{}, false, nil
	}
	if err != nil {
		return PF{}, false, fmt.Errorf("PF %s: read sriov_totalvfs: %w", pci, err)
	}
	pf := PF{PCIAddress: pci, TotalVFs: total, Driver: linkBase(filepath.Join(dir, "driver"))}
	if pf.NumVFs, err = readInt(filepath.Join(dir, "sriov_numvfs")); err != nil {
		return PF{}, false, fmt.Errorf("PF %s: read sriov_numvfs: %w", pci, err)
	}
	for _, a := range []struct {
		name string
		dst  *string
	}{{"vendor", &pf.Vendor}, {"device", &pf.Device}} {
		s, err := readTrim(filepath.Join(dir, a.name))
		if err != nil {
			return PF{}, false, fmt.Errorf("PF %s: read %s: %w", pci, a.name, err)
		}
		*a.dst = norm(s)
	}
	if nets, err := os.ReadDir(filepath.Join(dir, "net")); err == nil && len(nets) > 0 {
		names := make([]string, len(nets))
		for i, n := range nets {
			names[i] = n.Name()
		}
		sort.Strings(names)
		pf.IfName = names[0]
	}
	pf.VFs, err = vfsOf(dir)
	if err != nil {
		return PF{}, false, fmt.Errorf("PF %s: %w", pci, err)
	}
	return pf, true, nil
}

// vfsOf returns the PCI addresses of the virtfnN links of the PF folder,
// by index.
func vfsOf(dir string) ([]string, error) {
	links, err := filepath.Glob(filepath.Join(dir, "virtfn*"))
	if err != nil {
		return nil, err
	}
	type vf struct {
		idx int
		pci string
	}
	var vfs []vf
	for _, l := range links {
		idx, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(l), "virtfn"))
		if err != nil {
			continue
		}
		if pci := linkBase(l); pci != "" {
			vfs = append(vfs, vf{idx, pci})
		}
	}
	sort.Slice(vfs, func(i, j int) bool { return vfs[i].idx < vfs[j].idx })
	out := make([]string, len(vfs))
	for i, v := range vfs {
		out[i] = v.pci
	}
	return out, nil
}

// writeAttr writes value to an existing sysfs attribute (never creates one).
func writeAttr(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	return errors.Join(werr, cerr)
}

// setNumVFs writes n to the PF's sriov_numvfs; the kernel refuses to change
// a non-zero count to another non-zero one, so it goes through 0 first. It
// returns the writes done, in order, for logs and tests.
func setNumVFs(root string, pf PF, n int) ([]int, error) {
	path := filepath.Join(devicesDir(root), pf.PCIAddress, "sriov_numvfs")
	var done []int
	if pf.NumVFs != 0 && n != 0 {
		if err := writeAttr(path, "0"); err != nil {
			return done, fmt.Errorf("PF %s: write 0 to sriov_numvfs (before setting %d): %w", pf.PCIAddress, n, err)
		}
		done = append(done, 0)
	}
	if err := writeAttr(path, strconv.Itoa(n)); err != nil {
		return done, fmt.Errorf("PF %s: write %d to sriov_numvfs: %w", pf.PCIAddress, n, err)
	}
	return append(done, n), nil
}

// Bounds of the wait for a VF to be bound to its configured driver.
const (
	bindWait  = 10 * time.Second
	bindEvery = 20 * time.Millisecond
)

// bindVF leaves the VF on driver: driver_override, unbind from its current
// driver, drivers_probe, then a bounded wait for the driver link.
func bindVF(ctx context.Context, root, vf, driver string) error {
	dir := filepath.Join(devicesDir(root), vf)
	if err := writeAttr(filepath.Join(dir, "driver_override"), driver); err != nil {
		return fmt.Errorf("VF %s: set driver_override to %s: %w", vf, driver, err)
	}
	if cur := linkBase(filepath.Join(dir, "driver")); cur != "" {
		if err := writeAttr(filepath.Join(root, "sys/bus/pci/drivers", cur, "unbind"), vf); err != nil {
			return fmt.Errorf("VF %s: unbind from %s: %w", vf, cur, err)
		}
	}
	if err := writeAttr(filepath.Join(root, "sys/bus/pci/drivers_probe"), vf); err != nil {
		return fmt.Errorf("VF %s: probe for %s: %w", vf, driver, err)
	}
	deadline := time.Now().Add(bindWait)
	for linkBase(filepath.Join(dir, "driver")) != driver {
		if time.Now().After(deadline) {
			return fmt.Errorf("VF %s: not bound to %s after %s (is the driver loaded?)", vf, driver, bindWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(bindEvery):
		}
	}
	return nil
}

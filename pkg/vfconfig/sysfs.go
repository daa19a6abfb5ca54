package vfconfig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// pciDir is the sysfs folder of a PCI function under root.
func pciDir(root, pci string) string { return pcidev.Dir(root, pci) }

func driversDir(root string) string {
	return filepath.Join(root, "sys/bus/pci/drivers")
}

// DriverOf returns the driver a PCI function is bound to, "" when unbound.
func DriverOf(root, pci string) (string, error) {
	target, err := os.Readlink(filepath.Join(pciDir(root, pci), "driver"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read driver of %s: %w", pci, err)
	}
	return filepath.Base(target), nil
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// netdevMACMTU reads address and mtu of a PCI function's netdev.
func netdevMACMTU(root, pci, ifName string) (string, int, error) {
	dir := filepath.Join(pciDir(root, pci), "net", ifName)
	mac, err := readTrim(filepath.Join(dir, "address"))
	if err != nil {
		return "", 0, fmt.Errorf("read MAC of %s (%s): %w", ifName, pci, err)
	}
	s, err := readTrim(filepath.Join(dir, "mtu"))
	if err != nil {
		return "", 0, fmt.Errorf("read MTU of %s (%s): %w", ifName, pci, err)
	}
	mtu, err := strconv.Atoi(s)
	if err != nil {
		return "", 0, fmt.Errorf("parse MTU %q of %s (%s): %w", s, ifName, pci, err)
	}
	return mac, mtu, nil
}

// writeSysfs writes value to an existing sysfs attribute (no create: a
// missing attribute means the kernel or fixture does not offer it).
func writeSysfs(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// Bounded waits after a driver bind; variables of the call, not globals.
const (
	rebindWait = 10 * time.Second
	pollEvery  = 20 * time.Millisecond
)

// waitFor polls cond until it reports true, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// Rebind unbinds the PCI function from driver and binds it again, so a
// change made through the PF (IB GUID) takes effect. When the function had
// a netdev, it waits (bounded) for the net/ folder to show one again and
// returns its name, which may differ from before: a rebind renames.
func Rebind(ctx context.Context, root, pci, driver string, hadNetdev bool) (string, error) {
	if driver == "" {
		return "", nil // unbound: the next bind picks the change up
	}
	dd := filepath.Join(driversDir(root), driver)
	if err := writeSysfs(filepath.Join(dd, "unbind"), pci); err != nil {
		return "", fmt.Errorf("unbind %s from %s: %w", pci, driver, err)
	}
	if err := waitDriver(ctx, root, pci, ""); err != nil {
		return "", err
	}
	if err := writeSysfs(filepath.Join(dd, "bind"), pci); err != nil {
		// Leave it bound to something: let the kernel probe it.
		perr := writeSysfs(filepath.Join(root, "sys/bus/pci/drivers_probe"), pci)
		return "", errors.Join(fmt.Errorf("bind %s to %s again: %w", pci, driver, err), perr)
	}
	// The kernel probes inside the bind write; the wait is for slow
	// bus notifiers and for the test fixture.
	if err := waitDriver(ctx, root, pci, driver); err != nil {
		return "", err
	}
	if !hadNetdev {
		return "", nil
	}
	var name string
	err := waitFor(ctx, rebindWait, "the netdev of "+pci+" after rebinding "+driver, func() (bool, error) {
		n, err := pcidev.PrimaryNetdev(root, pci)
		name = n
		return n != "", err
	})
	return name, err
}

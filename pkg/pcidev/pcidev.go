// Package pcidev is the one place that knows how a PCI function looks in
// sysfs: its directory under a filesystem root, what a PCI address looks
// like, and which of its netdevs is "the device's netdev". The inventory,
// the VF configuration, RDMA and IRQ code all ask here, so they cannot
// disagree about which netdev a function has.
package pcidev

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DevicesDir is where sysfs lists PCI functions, relative to the root.
const DevicesDir = "sys/bus/pci/devices"

// Dir is the sysfs directory of the PCI function bdf under root.
func Dir(root, bdf string) string { return filepath.Join(root, DevicesDir, bdf) }

// Entries lists the folder sub of the PCI function bdf under root (net,
// msi_irqs, ...) in name order: nil, and no error, when the function has
// no such folder. what names the entries in the error ("netdevs").
func Entries(root, bdf, sub, what string) ([]os.DirEntry, error) {
	ents, err := os.ReadDir(filepath.Join(Dir(root, bdf), sub))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", what, bdf, err)
	}
	return ents, nil
}

// IsBDF reports whether s is a full PCI address in the kernel's form:
// domain:bus:device.function, "0000:3b:00.2", lower-case hex, function
// 0-7.
func IsBDF(s string) bool {
	if len(s) != 12 || s[4] != ':' || s[7] != ':' || s[10] != '.' {
		return false
	}
	for i, c := range s {
		switch i {
		case 4, 7, 10:
			continue
		case 11:
			if c < '0' || c > '7' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// Netdev is one network interface of a PCI function.
type Netdev struct {
	Name    string
	Ifindex int // 0 when unknown
	// Representor is a switchdev port representor ("pf0vf3"), listed under
	// the PF but standing for another function.
	Representor bool
}

// IsRepresentorPortName reports whether a netdev's phys_port_name is a
// switchdev representor's ("pf0vf3", "c1pf0vf3", "pf0sf1"), which is not
// the function's own uplink.
func IsRepresentorPortName(s string) bool {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "c"); ok {
		i := digits(rest)
		if i == 0 {
			return false
		}
		s = rest[i:]
	}
	rest, ok := strings.CutPrefix(s, "pf")
	if !ok {
		return false
	}
	i := digits(rest)
	if i == 0 {
		return false
	}
	rest = rest[i:]
	if r, ok := strings.CutPrefix(rest, "vf"); ok {
		rest = r
	} else if r, ok := strings.CutPrefix(rest, "sf"); ok {
		rest = r
	} else {
		return false
	}
	return rest != "" && digits(rest) == len(rest)
}

// digits is the length of the leading run of ASCII digits in s.
func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// SortPrimary orders a function's netdevs so the first is the device's
// netdev: the function's own before representors, then the lowest
// ifindex (the first the driver registered; an unknown one goes last),
// then the name.
func SortPrimary(nds []Netdev) {
	idx := func(n Netdev) int {
		if n.Ifindex <= 0 {
			return int(^uint32(0) >> 1)
		}
		return n.Ifindex
	}
	sort.SliceStable(nds, func(i, j int) bool {
		a, b := nds[i], nds[j]
		if a.Representor != b.Representor {
			return !a.Representor
		}
		if idx(a) != idx(b) {
			return idx(a) < idx(b)
		}
		return a.Name < b.Name
	})
}

// Netdevs lists the netdevs of the PCI function from its net/ folder
// under root, ordered by SortPrimary; none when it has none (unbound,
// vfio-pci, or moved into another network namespace: sysfs shows the
// netdevs of the reader's netns). A netdev that vanishes while it is read
// is left out.
func Netdevs(root, bdf string) ([]Netdev, error) {
	ents, err := Entries(root, bdf, "net", "netdevs")
	if err != nil || ents == nil {
		return nil, err
	}
	dir := filepath.Join(Dir(root, bdf), "net")
	nds := make([]Netdev, 0, len(ents))
	for _, e := range ents {
		nd := Netdev{Name: e.Name()}
		if len(ents) > 1 {
			// Only a choice needs the ordering attributes.
			if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "ifindex")); err == nil {
				nd.Ifindex, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			if b, err := os.ReadFile(filepath.Join(dir, e.Name(), "phys_port_name")); err == nil {
				nd.Representor = IsRepresentorPortName(string(b))
			}
		}
		nds = append(nds, nd)
	}
	SortPrimary(nds)
	return nds, nil
}

// PrimaryNetdev is the name of the device's netdev (the first of
// Netdevs), "" when it has none.
func PrimaryNetdev(root, bdf string) (string, error) {
	nds, err := Netdevs(root, bdf)
	if err != nil || len(nds) == 0 {
		return "", err
	}
	return nds[0].Name, nil
}

package inventory

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// Validate checks the filter; the error names the bad field and entry.
func (f Filter) Validate() error {
	_, err := f.normalized()
	return err
}

// normalized returns the filter with PCI addresses, vendors and link types
// in canonical form, or an error naming the bad entry.
func (f Filter) normalized() (Filter, error) {
	var n Filter
	for i, v := range f.PFNames {
		if strings.TrimSpace(v) == "" {
			return n, fmt.Errorf("filter.pfNames[%d]: empty name", i)
		}
		n.PFNames = append(n.PFNames, strings.TrimSpace(v))
	}
	for i, v := range f.PCIAddresses {
		a := strings.ToLower(strings.TrimSpace(v))
		if !pcidev.IsBDF(a) {
			return n, fmt.Errorf("filter.pciAddresses[%d]: %q is not a PCI address (dddd:bb:dd.f)", i, v)
		}
		n.PCIAddresses = append(n.PCIAddresses, a)
	}
	for i, v := range f.Vendors {
		id, err := parseHexID(strings.ToLower(v))
		if err != nil {
			return n, fmt.Errorf("filter.vendors[%d]: %q is not a PCI vendor ID (e.g. 15b3 or 0x8086)", i, v)
		}
		n.Vendors = append(n.Vendors, id)
	}
	for i, v := range f.Drivers {
		if strings.TrimSpace(v) == "" {
			return n, fmt.Errorf("filter.drivers[%d]: empty driver name", i)
		}
		n.Drivers = append(n.Drivers, strings.TrimSpace(v))
	}
	for i, v := range f.LinkTypes {
		lt := LinkType(strings.ToLower(strings.TrimSpace(v)))
		if lt != LinkTypeEthernet && lt != LinkTypeInfiniBand {
			return n, fmt.Errorf("filter.linkTypes[%d]: %q is not %q or %q", i, v, LinkTypeEthernet, LinkTypeInfiniBand)
		}
		n.LinkTypes = append(n.LinkTypes, string(lt))
	}
	return n, nil
}

// matches reports whether a device passes a normalized filter. Each
// non-empty list must match:
//   - pfNames: the device's PF netdev name (a PF's own name);
//   - pciAddresses: the device's own address or its PF's (a PF address
//     selects the PF and all its VFs);
//   - vendors: the device's vendor ID;
//   - drivers: the PF's driver or the device's own driver ("vfio-pci"
//     selects just the VFs bound to it);
//   - linkTypes: the device's link type.
func (f Filter) matches(d *Device) bool {
	if len(f.PFNames) > 0 && !slices.Contains(f.PFNames, d.PFName) {
		return false
	}
	if len(f.PCIAddresses) > 0 && !slices.Contains(f.PCIAddresses, d.PCIAddress) && !slices.Contains(f.PCIAddresses, d.PFPCIAddress) {
		return false
	}
	if len(f.Vendors) > 0 && !slices.Contains(f.Vendors, d.Vendor) {
		return false
	}
	if len(f.Drivers) > 0 && !slices.Contains(f.Drivers, d.PFDriver) && (d.Driver == "" || !slices.Contains(f.Drivers, d.Driver)) {
		return false
	}
	if len(f.LinkTypes) > 0 && !slices.Contains(f.LinkTypes, string(d.LinkType)) {
		return false
	}
	return true
}

// Matches reports whether the device passes the filter (see Scan). An
// invalid filter matches nothing.
func (f Filter) Matches(d Device) bool {
	n, err := f.normalized()
	return err == nil && n.matches(&d)
}

// LoadFilter reads a filter from a YAML or JSON file with the Filter
// fields (pfNames, pciAddresses, vendors, drivers, linkTypes). Unknown
// fields and invalid entries are errors.
func LoadFilter(path string) (Filter, error) {
	var f Filter
	b, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("read filter file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return Filter{}, fmt.Errorf("parse filter file %s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return Filter{}, fmt.Errorf("filter file %s: %w", path, err)
	}
	return f, nil
}

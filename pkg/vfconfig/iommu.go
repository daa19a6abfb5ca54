package vfconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// noIOMMUParam is vfio's switch for its unsafe no-IOMMU mode.
const noIOMMUParam = "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"

// maxGroupPeersShown bounds the IOMMU group members an error lists.
const maxGroupPeersShown = 8

// CheckVFIOIsolation reports whether the PCI function may be handed to a
// container through vfio-pci. It reads sysfs under root and changes
// nothing. vfio isolates a device only through an IOMMU, and only per
// IOMMU group: a container that opens /dev/vfio/<group> can drive every
// function in the group, so a group shared with any other PCI function
// (a VF without ACS isolation from its siblings, a bridge) would be shared
// between claims. The check refuses
//   - vfio's unsafe no-IOMMU mode (its module parameter set, or the
//     function's group named vfio-noiommu): there is no isolation at all;
//   - a function without an IOMMU group (the IOMMU is off);
//   - a group that holds any PCI function other than this one.
//
// The error says which of these it is, with the group and its members.
func CheckVFIOIsolation(root, pci string) error {
	mode, err := readTrim(filepath.Join(root, noIOMMUParam))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vfio-pci for %s: read %s: %w", pci, noIOMMUParam, err)
	}
	if mode == "Y" || mode == "y" || mode == "1" {
		return fmt.Errorf("vfio-pci for %s: vfio runs in unsafe no-IOMMU mode (%s is %s): devices would not be isolated from the host, which is not supported", pci, noIOMMUParam, mode)
	}
	link := filepath.Join(pciDir(root, pci), "iommu_group")
	target, err := os.Readlink(link)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(pciDir(root, pci)); serr != nil {
			return fmt.Errorf("vfio-pci for %s: %w", pci, serr)
		}
		return fmt.Errorf("vfio-pci for %s: the device has no IOMMU group (the IOMMU is off in the firmware or on the kernel command line, e.g. intel_iommu=on); vfio without an IOMMU (no-IOMMU mode) is not supported", pci)
	}
	if err != nil {
		return fmt.Errorf("vfio-pci for %s: read its IOMMU group: %w", pci, err)
	}
	group := filepath.Base(target)
	if strings.HasPrefix(group, "noiommu") {
		return fmt.Errorf("vfio-pci for %s: IOMMU group %s is a vfio no-IOMMU group: no isolation, not supported", pci, group)
	}
	name, err := readTrim(filepath.Join(root, "sys/kernel/iommu_groups", group, "name"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("vfio-pci for %s: read the name of IOMMU group %s: %w", pci, group, err)
	}
	if name == "vfio-noiommu" {
		return fmt.Errorf("vfio-pci for %s: IOMMU group %s is a vfio no-IOMMU group (name vfio-noiommu): no isolation, not supported", pci, group)
	}
	ents, err := os.ReadDir(filepath.Join(link, "devices"))
	if err != nil {
		return fmt.Errorf("vfio-pci for %s: list the members of IOMMU group %s: %w", pci, group, err)
	}
	var peers []string
	self := false
	for _, e := range ents {
		if e.Name() == pci {
			self = true
			continue
		}
		peers = append(peers, e.Name())
	}
	if len(peers) > 0 {
		shown := peers
		more := ""
		if len(shown) > maxGroupPeersShown {
			shown, more = shown[:maxGroupPeersShown], fmt.Sprintf(" and %d more", len(peers)-maxGroupPeersShown)
		}
		return fmt.Errorf("vfio-pci for %s: IOMMU group %s also holds %s%s: a container given /dev/vfio/%s could drive all of them (no ACS isolation between them), so vfio-pci is refused for a device that does not have its IOMMU group to itself",
			pci, group, strings.Join(shown, ", "), more, group)
	}
	if !self {
		return fmt.Errorf("vfio-pci for %s: IOMMU group %s does not list the device among its members", pci, group)
	}
	return nil
}

package sysfstest

// The builder's state and the values it fills in for what a topology
// leaves out: PCI addresses, ifindexes, IOMMU groups, IRQs, MACs, GUIDs.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
)

type builder struct {
	root    string
	fake    *nlinktest.Fake
	ifindex int
	group   int
	irq     int
	uverbs  int
}

func vfAddrs(pf PF) []string {
	out := make([]string, len(pf.VFs))
	for i, vf := range pf.VFs {
		out[i] = vf.PCIAddress
	}
	return out
}

type bdf struct{ domain, bus, dev, fn int }

func parseBDF(s string) (bdf, error) {
	var a bdf
	if _, err := fmt.Sscanf(s, "%04x:%02x:%02x.%1x", &a.domain, &a.bus, &a.dev, &a.fn); err != nil || a.String() != s {
		return a, fmt.Errorf("PCI address %q is not dddd:bb:dd.f (lower-case hex)", s)
	}
	return a, nil
}

func (a bdf) String() string { return fmt.Sprintf("%04x:%02x:%02x.%x", a.domain, a.bus, a.dev, a.fn) }

// plus returns the address n functions after a (devfn carries into the bus).
func (a bdf) plus(n int) bdf {
	devfn := a.dev<<3 | a.fn + n
	return bdf{domain: a.domain, bus: a.bus + devfn/256, dev: (devfn % 256) >> 3, fn: devfn & 7}
}

func (b *builder) nextIfIndex(want int) int {
	if want != 0 {
		if want >= b.ifindex {
			b.ifindex = want + 1
		}
		return want
	}
	b.ifindex++
	return b.ifindex - 1
}

func (b *builder) nextGroup(want int) int {
	if want != 0 {
		return want
	}
	b.group++
	return b.group - 1
}

func (b *builder) defaults(pf PF) (PF, error) {
	a, err := parseBDF(pf.PCIAddress)
	if err != nil {
		return pf, err
	}
	if pf.PCIeRoot == "" {
		pf.PCIeRoot = fmt.Sprintf("pci%04x:00", a.domain)
	}
	if pf.Vendor == "" || pf.DeviceID == "" {
		return pf, fmt.Errorf("PF %s: Vendor and DeviceID are required", pf.PCIAddress)
	}
	if pf.SubsystemVendor == "" {
		pf.SubsystemVendor = pf.Vendor
	}
	if pf.SubsystemDevice == "" {
		pf.SubsystemDevice = pf.DeviceID
	}
	if pf.VFDeviceID == "" {
		pf.VFDeviceID = pf.DeviceID
	}
	if pf.LinkType == 0 {
		pf.LinkType = ARPHRDEther
	}
	if pf.MTU == 0 {
		pf.MTU = 1500
		if pf.LinkType == ARPHRDInfiniBand {
			pf.MTU = 2044
		}
	}
	if pf.SpeedMbps == 0 {
		pf.SpeedMbps = 25000
	}
	if pf.TotalVFs == 0 {
		pf.TotalVFs = max(len(pf.VFs), 1)
	}
	if pf.TotalVFs < len(pf.VFs) {
		return pf, fmt.Errorf("PF %s: %d VFs but TotalVFs %d", pf.PCIAddress, len(pf.VFs), pf.TotalVFs)
	}
	if pf.PortGUID == "" {
		pf.PortGUID = pf.NodeGUID
	}
	pf.IOMMUGroup = b.nextGroup(pf.IOMMUGroup)
	if pf.IfName != "" {
		pf.IfIndex = b.nextIfIndex(pf.IfIndex)
		if pf.MAC == "" {
			pf.MAC = derivedMAC(a, pf.LinkType, pf.PortGUID)
		}
	}
	pf.VFs = append([]VF(nil), pf.VFs...)
	for i := range pf.VFs {
		vf := &pf.VFs[i]
		if vf.PCIAddress == "" {
			vf.PCIAddress = a.plus(1 + i).String()
		}
		va, err := parseBDF(vf.PCIAddress)
		if err != nil {
			return pf, fmt.Errorf("VF %d of %s: %w", i, pf.PCIAddress, err)
		}
		vf.IOMMUGroup = b.nextGroup(vf.IOMMUGroup)
		if vf.IRQs == nil {
			vf.IRQs = []int{b.irq, b.irq + 1}
			b.irq += 2
		}
		vf.Admin.ID = i
		if vf.IfName != "" {
			vf.IfIndex = b.nextIfIndex(vf.IfIndex)
			if vf.MAC == "" {
				if len(vf.Admin.Mac) == 6 && pf.LinkType == ARPHRDEther && !isZero(vf.Admin.Mac) {
					vf.MAC = vf.Admin.Mac.String()
				} else {
					vf.MAC = derivedMAC(va, pf.LinkType, vf.PortGUID)
				}
			}
		}
	}
	return pf, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// derivedMAC is a stable locally administered MAC (Ethernet) or a 20-byte
// IPoIB hardware address ending in the port GUID (InfiniBand).
func derivedMAC(a bdf, linkType int, portGUID string) string {
	if linkType == ARPHRDInfiniBand {
		g := portGUID
		if g == "" {
			g = fmt.Sprintf("00:00:00:%02x:%02x:%02x:%02x:%02x", a.domain&0xff, a.bus, a.dev, a.fn, 0)
		}
		return "00:00:10:87:fe:80:00:00:00:00:00:00:" + g
	}
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", a.domain&0xff, a.bus, a.dev, a.fn, 0x5a)
}

func (b *builder) common() error {
	if err := b.file("sys/bus/pci/drivers_probe", ""); err != nil {
		return err
	}
	return b.mkdir("sys/bus/pci/devices", "sys/class/net", "dev", "proc/irq")
}

func (b *builder) mkdir(rels ...string) error {
	for _, r := range rels {
		if err := os.MkdirAll(filepath.Join(b.root, r), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) file(rel, content string) error {
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

// link makes rel a symlink to target (a path relative to the root), written
// relative to rel's directory, as sysfs does.
func (b *builder) link(rel, target string) error {
	p := filepath.Join(b.root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	t, err := filepath.Rel(filepath.Dir(rel), target)
	if err != nil {
		return err
	}
	if err := os.Symlink(t, p); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// devicesRel is a device's directory relative to <root>/sys.
func devicesRel(pf PF, addr string) string {
	port := strings.TrimPrefix(pf.PCIeRoot, "pci") + ":00.0"
	return filepath.Join("devices", pf.PCIeRoot, port, addr)
}

func hex4(s string) string { return "0x" + strings.TrimPrefix(strings.ToLower(s), "0x") }

// sysGUID renders a canonical GUID the way sysfs prints node_guid.
func sysGUID(g string) string {
	h := strings.ReplaceAll(g, ":", "")
	if len(h) != 16 {
		h = strings.Repeat("0", 16)
	}
	return h[0:4] + ":" + h[4:8] + ":" + h[8:12] + ":" + h[12:16]
}

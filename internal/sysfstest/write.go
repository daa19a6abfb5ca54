package sysfstest

// Writing the tree: PCI functions, netdevs, RDMA devices (hardware and
// software), uverbs nodes, and a PF with its VFs, as the kernel lays them
// out under sys/.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

type pciDev struct {
	addr, vendor, device, subVendor, subDevice, driver string
	numa, group                                        int
	irqs                                               []int
}

func (b *builder) writePCI(pf PF, d pciDev) (string, error) {
	dir := filepath.Join("sys", devicesRel(pf, d.addr))
	files := map[string]string{
		"vendor":           hex4(d.vendor) + "\n",
		"device":           hex4(d.device) + "\n",
		"subsystem_vendor": hex4(d.subVendor) + "\n",
		"subsystem_device": hex4(d.subDevice) + "\n",
		"class":            "0x020000\n",
		"numa_node":        strconv.Itoa(d.numa) + "\n",
		"driver_override":  "(null)\n",
		"enable":           "1\n",
	}
	for name, c := range files {
		if err := b.file(filepath.Join(dir, name), c); err != nil {
			return "", err
		}
	}
	if err := b.link(filepath.Join("sys/bus/pci/devices", d.addr), dir); err != nil {
		return "", err
	}
	if d.driver != "" {
		drv := filepath.Join("sys/bus/pci/drivers", d.driver)
		for _, f := range []string{"bind", "unbind", "new_id", "remove_id"} {
			if err := b.file(filepath.Join(drv, f), ""); err != nil {
				return "", err
			}
		}
		if err := b.link(filepath.Join(dir, "driver"), drv); err != nil {
			return "", err
		}
		if err := b.link(filepath.Join(drv, d.addr), dir); err != nil {
			return "", err
		}
	}
	g := filepath.Join("sys/kernel/iommu_groups", strconv.Itoa(d.group))
	if err := b.link(filepath.Join(dir, "iommu_group"), g); err != nil {
		return "", err
	}
	if err := b.link(filepath.Join(g, "devices", d.addr), dir); err != nil {
		return "", err
	}
	if d.driver == "vfio-pci" {
		if err := b.file(filepath.Join("dev/vfio", strconv.Itoa(d.group)), ""); err != nil {
			return "", err
		}
		if err := b.file("dev/vfio/vfio", ""); err != nil {
			return "", err
		}
	}
	for _, irq := range d.irqs {
		if err := b.file(filepath.Join(dir, "msi_irqs", strconv.Itoa(irq)), "msix\n"); err != nil {
			return "", err
		}
		if err := b.file(filepath.Join("proc/irq", strconv.Itoa(irq), "smp_affinity_list"), "0-3\n"); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func (b *builder) writeNetdev(dir, name string, linkType, ifindex, mtu, speed int, mac string) error {
	nd := filepath.Join(dir, "net", name)
	files := map[string]string{
		"type":      strconv.Itoa(linkType) + "\n",
		"mtu":       strconv.Itoa(mtu) + "\n",
		"address":   mac + "\n",
		"speed":     strconv.Itoa(speed) + "\n",
		"ifindex":   strconv.Itoa(ifindex) + "\n",
		"operstate": "up\n",
	}
	for f, c := range files {
		if err := b.file(filepath.Join(nd, f), c); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(nd, "device"), dir); err != nil {
		return err
	}
	return b.link(filepath.Join("sys/class/net", name), nd)
}

func (b *builder) writeRDMA(dir, name string, linkType int, nodeGUID, portGUID string, pkeys []string) error {
	ib := filepath.Join(dir, "infiniband", name)
	layer := "Ethernet"
	if linkType == ARPHRDInfiniBand {
		layer = "InfiniBand"
	}
	files := map[string]string{
		"node_guid":          sysGUID(nodeGUID) + "\n",
		"node_type":          "1: CA\n",
		"ports/1/gids/0":     "fe80:0000:0000:0000:" + sysGUID(portGUID) + "\n",
		"ports/1/link_layer": layer + "\n",
		"ports/1/state":      "4: ACTIVE\n",
		"ports/1/lid":        "0x1\n",
		"ports/1/phys_state": "5: LinkUp\n",
	}
	n := 0 // a VF without pkeys given gets no pkey table
	if len(pkeys) > 0 {
		n = max(16, len(pkeys))
	}
	for i := 0; i < n; i++ {
		v := "0x0000"
		if i < len(pkeys) {
			v = pkeys[i]
		}
		files["ports/1/pkeys/"+strconv.Itoa(i)] = v + "\n"
	}
	for f, c := range files {
		if err := b.file(filepath.Join(ib, f), c); err != nil {
			return err
		}
	}
	if err := b.link(filepath.Join(ib, "device"), dir); err != nil {
		return err
	}
	if err := b.link(filepath.Join("sys/class/infiniband", name), ib); err != nil {
		return err
	}
	uv := "uverbs" + strconv.Itoa(b.uverbs)
	if err := b.writeVerbs(filepath.Join(dir, "infiniband_verbs", uv), uv, name); err != nil {
		return err
	}
	return b.file("dev/infiniband/rdma_cm", "")
}

// writeSoftRDMA writes a netdev-bound RDMA device. Its GIDs and GUIDs are
// derived from the netdev's MAC (EUI-64) when the netdev is in the tree,
// as rxe and siw do.
func (b *builder) writeSoftRDMA(sr SoftRDMA) (SoftRDMA, error) {
	if sr.Type == "" {
		sr.Type = SoftRDMARXE
	}
	switch {
	case sr.Name == "" || strings.ContainsAny(sr.Name, "/ "):
		return sr, fmt.Errorf("soft RDMA device: Name %q is not an RDMA device name", sr.Name)
	case sr.Netdev == "" || strings.ContainsAny(sr.Netdev, "/ "):
		return sr, fmt.Errorf("soft RDMA device %s: Netdev %q is not a netdev name", sr.Name, sr.Netdev)
	case sr.Type != SoftRDMARXE && sr.Type != SoftRDMASIW:
		return sr, fmt.Errorf("soft RDMA device %s: Type %q is neither %q nor %q", sr.Name, sr.Type, SoftRDMARXE, SoftRDMASIW)
	}
	ib := filepath.Join("sys/devices/virtual/infiniband", sr.Name)
	if _, err := os.Lstat(filepath.Join(b.root, "sys/class/infiniband", sr.Name)); err == nil {
		return sr, fmt.Errorf("RDMA device %s exists already", sr.Name)
	}
	guid := "0000:0000:0000:0000"
	if mac, err := os.ReadFile(filepath.Join(b.root, "sys/class/net", sr.Netdev, "address")); err == nil {
		if hw, err := net.ParseMAC(strings.TrimSpace(string(mac))); err == nil && len(hw) == 6 {
			guid = fmt.Sprintf("%02x%02x:%02xff:fe%02x:%02x%02x", hw[0]^2, hw[1], hw[2], hw[3], hw[4], hw[5])
		}
	}
	nodeType := "1: CA"
	if sr.Type == SoftRDMASIW {
		nodeType = "4: RNIC"
	}
	files := map[string]string{
		"node_guid":                 guid + "\n",
		"node_type":                 nodeType + "\n",
		"ports/1/gids/0":            "fe80:0000:0000:0000:" + guid + "\n",
		"ports/1/gid_attrs/ndevs/0": sr.Netdev + "\n",
		"ports/1/link_layer":        "Ethernet\n",
		"ports/1/state":             "4: ACTIVE\n",
		"ports/1/phys_state":        "5: LinkUp\n",
		"ports/1/lid":               "0x0\n",
	}
	if sr.Type == SoftRDMARXE {
		files["parent"] = sr.Netdev + "\n"
		files["ports/1/gid_attrs/types/0"] = "IB/RoCE v1\n" // the default GID, RoCE v1 first
	}
	for f, c := range files {
		if err := b.file(filepath.Join(ib, f), c); err != nil {
			return sr, err
		}
	}
	if err := b.link(filepath.Join("sys/class/infiniband", sr.Name), ib); err != nil {
		return sr, err
	}
	uv := "uverbs" + strconv.Itoa(b.uverbs)
	vd := filepath.Join("sys/devices/virtual/infiniband_verbs", uv)
	if err := b.writeVerbs(vd, uv, sr.Name); err != nil {
		return sr, err
	}
	b.fake.AddRdmaLink(sr.Name, uint32(b.uverbs))
	return sr, b.file("dev/infiniband/rdma_cm", "")
}

// writeVerbs writes the verbs character device uv of the RDMA device name
// at vd, its class link and its /dev node, and takes the next number.
func (b *builder) writeVerbs(vd, uv, name string) error {
	if err := b.file(filepath.Join(vd, "ibdev"), name+"\n"); err != nil {
		return err
	}
	if err := b.file(filepath.Join(vd, "dev"), "231:"+strconv.Itoa(192+b.uverbs)+"\n"); err != nil {
		return err
	}
	if err := b.link(filepath.Join("sys/class/infiniband_verbs", uv), vd); err != nil {
		return err
	}
	if err := b.file(filepath.Join("dev/infiniband", uv), ""); err != nil {
		return err
	}
	b.uverbs++
	return nil
}

func (b *builder) writePF(pf PF) error {
	dir, err := b.writePCI(pf, pciDev{
		addr: pf.PCIAddress, vendor: pf.Vendor, device: pf.DeviceID,
		subVendor: pf.SubsystemVendor, subDevice: pf.SubsystemDevice,
		driver: pf.Driver, numa: pf.NUMANode, group: pf.IOMMUGroup,
	})
	if err != nil {
		return err
	}
	sriov := map[string]string{
		"sriov_totalvfs":          strconv.Itoa(pf.TotalVFs) + "\n",
		"sriov_numvfs":            strconv.Itoa(len(pf.VFs)) + "\n",
		"sriov_offset":            "1\n",
		"sriov_stride":            "1\n",
		"sriov_vf_device":         pf.VFDeviceID + "\n",
		"sriov_drivers_autoprobe": "1\n",
	}
	for f, c := range sriov {
		if err := b.file(filepath.Join(dir, f), c); err != nil {
			return err
		}
	}
	if pf.IfName != "" {
		if err := b.writeNetdev(dir, pf.IfName, pf.LinkType, pf.IfIndex, pf.MTU, pf.SpeedMbps, pf.MAC); err != nil {
			return err
		}
	}
	if pf.RDMADevice != "" {
		if err := b.writeRDMA(dir, pf.RDMADevice, pf.LinkType, pf.NodeGUID, pf.PortGUID, pf.PKeys); err != nil {
			return err
		}
		b.fake.AddRdmaLink(pf.RDMADevice, uint32(b.uverbs))
	}
	if pf.EswitchMode != "" {
		b.fake.SetEswitchMode(pf.PCIAddress, pf.EswitchMode)
	}

	var vfInfos []netlink.VfInfo
	var guids []nlink.VFGUID
	for i, vf := range pf.VFs {
		vdir, err := b.writePCI(pf, pciDev{
			addr: vf.PCIAddress, vendor: pf.Vendor, device: pf.VFDeviceID,
			subVendor: pf.SubsystemVendor, subDevice: pf.VFDeviceID,
			driver: vf.Driver, numa: pf.NUMANode, group: vf.IOMMUGroup, irqs: vf.IRQs,
		})
		if err != nil {
			return fmt.Errorf("VF %d: %w", i, err)
		}
		if err := b.link(filepath.Join(dir, "virtfn"+strconv.Itoa(i)), vdir); err != nil {
			return err
		}
		if err := b.link(filepath.Join(vdir, "physfn"), dir); err != nil {
			return err
		}
		if vf.IfName != "" {
			if err := b.writeNetdev(vdir, vf.IfName, pf.LinkType, vf.IfIndex, pf.MTU, pf.SpeedMbps, vf.MAC); err != nil {
				return fmt.Errorf("VF %d: %w", i, err)
			}
			attrs := netlink.LinkAttrs{Name: vf.IfName, Index: vf.IfIndex, MTU: pf.MTU, EncapType: encap(pf.LinkType)}
			if hw, err := net.ParseMAC(vf.MAC); err == nil {
				attrs.HardwareAddr = hw
			}
			b.fake.AddLink(attrs)
		}
		if vf.RDMADevice != "" {
			pg := vf.PortGUID
			if pg == "" {
				pg = vf.NodeGUID
			}
			if err := b.writeRDMA(vdir, vf.RDMADevice, pf.LinkType, vf.NodeGUID, pg, nil); err != nil {
				return fmt.Errorf("VF %d: %w", i, err)
			}
			b.fake.AddRdmaLink(vf.RDMADevice, uint32(b.uverbs))
		}
		info := vf.Admin
		if info.Mac == nil {
			info.Mac = make(net.HardwareAddr, 6)
		}
		vfInfos = append(vfInfos, info)
		if vf.NodeGUID != "" || vf.PortGUID != "" {
			g := nlink.VFGUID{VF: i}
			g.NodeGUID, _ = net.ParseMAC(vf.NodeGUID)
			g.PortGUID, _ = net.ParseMAC(vf.PortGUID)
			guids = append(guids, g)
		}
	}
	if pf.IfName != "" {
		attrs := netlink.LinkAttrs{
			Name: pf.IfName, Index: pf.IfIndex, MTU: pf.MTU, EncapType: encap(pf.LinkType),
			Flags: net.FlagUp, OperState: netlink.OperUp, Vfs: vfInfos,
		}
		if hw, err := net.ParseMAC(pf.MAC); err == nil {
			attrs.HardwareAddr = hw
		}
		b.fake.AddLink(attrs)
		if len(guids) > 0 {
			b.fake.SetVFGUIDs(pf.IfName, guids)
		}
		if pf.DefaultRoute {
			b.fake.AddRoute(netlink.Route{
				LinkIndex: pf.IfIndex, Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN,
				Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
				Gw:  net.IPv4(192, 0, 2, 1),
			})
		}
	}
	return nil
}

func encap(linkType int) string {
	if linkType == ARPHRDInfiniBand {
		return "infiniband"
	}
	return "ether"
}

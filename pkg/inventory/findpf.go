package inventory

// This file finds the PFs on the PCI bus and reads each one: its
// attributes, its netdev and RDMA device, and then the VFs it has.

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
)

// findPFs returns the devices with sriov_totalvfs. VFs always sort after
// their PF, and the kernel places VF i at routing ID PF + sriov_offset +
// i*sriov_stride (drivers/pci/iov.c), so the VFs of a PF found are not
// checked one by one: on a host with a thousand VFs that is a thousand
// stat calls saved.
func (s *scanner) findPFs(bus ref, all []string) []string {
	var pfs []string
	isVF := map[string]bool{}
	for _, bdf := range all {
		if isVF[bdf] {
			continue
		}
		dir := bus.join(bdf)
		if exists(dir.join("sriov_totalvfs")) != nil {
			continue
		}
		pfs = append(pfs, bdf)
		var num, off, stride int
		ok := s.optional(bdf, dir, "sriov_numvfs", func(v string) (err error) { num, err = parseInt(v); return err }) &&
			s.optional(bdf, dir, "sriov_offset", func(v string) (err error) { off, err = parseInt(v); return err }) &&
			s.optional(bdf, dir, "sriov_stride", func(v string) (err error) { stride, err = parseInt(v); return err })
		if !ok || num <= 0 || off <= 0 || stride <= 0 {
			continue
		}
		// A garbled sriov_numvfs (scanPF refuses it) must not make other
		// PFs look like VFs of this one.
		var total int
		if !s.optional(bdf, dir, "sriov_totalvfs", func(v string) (err error) { total, err = parseInt(v); return err }) || num > total || total > MaxVFs {
			continue
		}
		var dom, b, dev, fn int
		if _, err := fmt.Sscanf(bdf, "%04x:%02x:%02x.%1x", &dom, &b, &dev, &fn); err != nil {
			continue
		}
		rid := b<<8 | dev<<3 | fn
		// A routing ID is 16 bits: a garbled sriov_numvfs (scanPF
		// refuses it) costs at most 64k steps here, not billions.
		for i := 0; i < num; i++ {
			r := rid + off + i*stride
			if r > 0xffff {
				break
			}
			isVF[fmt.Sprintf("%04x:%02x:%02x.%x", dom, (r>>8)&0xff, (r>>3)&0x1f, r&7)] = true
		}
	}
	return pfs
}

// busPath is a PCI device's /sys/bus/pci/devices link.
func (s *scanner) busPath(bdf string) string {
	return filepath.Join(s.sys, "bus", "pci", "devices", bdf)
}

// realDir resolves /sys/bus/pci/devices/<bdf> to the device's directory
// under /sys/devices. On failure it returns the bus path, which works as
// well (only slower).
func (s *scanner) realDir(bdf string) string {
	p := s.busPath(bdf)
	t, err := readLink(pathRef(p))
	if err != nil || filepath.IsAbs(t) {
		return p
	}
	return filepath.Join(filepath.Dir(p), t)
}

// scanPF reads one PF and its VFs.
func (s *scanner) scanPF(ctx context.Context, bdf string) (r pfResult) {
	if ctx.Err() != nil {
		return r
	}
	excl := func(addr string, err error) {
		r.excluded = append(r.excluded, Exclusion{PCIAddress: addr, Reason: err.Error()})
	}
	real := s.realDir(bdf)
	parent, done := openDir(filepath.Dir(real))
	defer done()
	dir := parent.join(filepath.Base(real))
	var total int
	if err := s.required(dir, "sriov_totalvfs", func(v string) (err error) { total, err = parseInt(v); return err }); err != nil {
		excl(bdf, err)
		return r
	}
	if total <= 0 {
		excl(bdf, exclude("sriov_totalvfs is %d: SR-IOV is disabled in the device's firmware", total))
		return r
	}
	if total > MaxVFs {
		excl(bdf, exclude("garbled sriov_totalvfs: %d is more than an SR-IOV PF can have (%d); the PF and its VFs are not scanned", total, MaxVFs))
		return r
	}
	pf, err := s.readPCI(dir, bdf)
	if err != nil {
		excl(bdf, fmt.Errorf("%w; its VFs are not scanned", err))
		return r
	}
	pf.Kind, pf.VFIndex, pf.PFPCIAddress, pf.PFDriver, pf.TotalVFs = KindPF, -1, bdf, pf.Driver, total
	num := -1
	s.optional(bdf, dir, "sriov_numvfs", func(v string) error {
		n, err := parseInt(v)
		if err == nil && n >= 0 {
			num = n
		}
		return err
	})
	if num < 0 {
		num = s.countVirtfn(dir, total)
		s.log.Info("sriov_numvfs unreadable, counted virtfn links instead", "pci", bdf, "numVfs", num)
	}
	if num > total {
		excl(bdf, exclude("garbled sriov_numvfs: %d is more than sriov_totalvfs %d; the PF and its VFs are not scanned", num, total))
		return r
	}
	pf.NumVFs = num
	s.readNetdevs(dir, &pf, true)
	pf.PFName = pf.IfName
	s.readRDMA(dir, &pf, true)
	if dl, err := s.nl.DevLinkGetDeviceByName("pci", bdf); err != nil {
		s.log.V(4).Info("No eswitch mode from devlink", "pci", bdf, "err", err)
	} else if dl != nil {
		pf.EswitchMode = dl.Attrs.Eswitch.Mode
	}

	var link netlink.Link
	if pf.IfName != "" {
		link, err = s.nl.LinkByName(pf.IfName)
		if err != nil {
			s.log.V(2).Info("PF link not in the host netns: no VF admin state", "pci", bdf, "pf", pf.IfName, "err", err)
			link = nil
		}
	}
	pf.HostUse = s.pfHostUse(dir.join("net", pf.IfName), &pf, link)
	if reason := s.routes.carries(pf.IfName, link); reason != "" && !s.allow {
		excl(bdf, exclude("%s", reason))
	} else {
		r.devices = append(r.devices, pf)
	}
	if num == 0 {
		return r
	}

	pc := &pfContext{pf: &pf, dir: dir, realDir: real}
	pc.admin, pc.guids = s.adminState(&pf, link)
	s.optional(bdf, dir, "sriov_vf_device", func(v string) (err error) { pc.vfDeviceID, err = parseHexID(v); return err })
	for i := 0; i < num; i++ {
		if ctx.Err() != nil {
			return r
		}
		vf, err := s.scanVF(pc, i)
		if err != nil {
			addr := vf.PCIAddress
			if addr == "" {
				addr = bdf
				err = fmt.Errorf("VF %d: %w", i, err)
			}
			excl(addr, err)
			continue
		}
		r.devices = append(r.devices, vf)
	}
	return r
}

// countVirtfn counts the virtfn<i> links, at most limit of them.
func (s *scanner) countVirtfn(dir ref, limit int) int {
	n := 0
	for n < limit {
		if _, err := readLink(dir.join("virtfn" + strconv.Itoa(n))); err != nil {
			return n
		}
		n++
	}
	return n
}

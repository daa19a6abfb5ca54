package nlinktest

// RDMA links, devlink, netns ids and the combined move-and-rename.

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// RdmaLinkByName is a dump of every RDMA device in the library (there is
// no lookup by name), so it can be interrupted; it retries like Real's.
func (f *Fake) RdmaLinkByName(name string) (*netlink.RdmaLink, error) {
	return nlink.RetryDump("RDMA device", func() (*netlink.RdmaLink, error) { return f.rdmaLinkByNameOnce(name) })
}

func (f *Fake) rdmaLinkByNameOnce(name string) (*netlink.RdmaLink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RdmaLinkByName", nil, name); err != nil {
		return nil, err
	}
	if f.interrupted("RdmaLinkByName") {
		return nil, netlink.ErrDumpInterrupted
	}
	r, ok := f.rdma[name]
	if !ok {
		return nil, fmt.Errorf("rdma device %s: %w", name, unix.ENODEV)
	}
	c := *r
	return &c, nil
}

// RdmaLinkSetNsFd removes the RDMA device from the fake (it left this namespace).
func (f *Fake) RdmaLinkSetNsFd(l *netlink.RdmaLink, fd uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RdmaLinkSetNsFd", nil, l.Attrs.Name, fd); err != nil {
		return err
	}
	if _, ok := f.rdma[l.Attrs.Name]; !ok {
		return fmt.Errorf("rdma device %s: %w", l.Attrs.Name, unix.ENODEV)
	}
	delete(f.rdma, l.Attrs.Name)
	return nil
}

func (f *Fake) RdmaSystemGetNetnsMode() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RdmaSystemGetNetnsMode", nil); err != nil {
		return "", err
	}
	return f.rdmaMode, nil
}

func (f *Fake) DevLinkGetDeviceByName(bus, device string) (*netlink.DevlinkDevice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("DevLinkGetDeviceByName", nil, bus, device); err != nil {
		return nil, err
	}
	mode, ok := f.eswitch[bus+"/"+device]
	if !ok {
		return nil, unix.ENODEV
	}
	return &netlink.DevlinkDevice{BusName: bus, DeviceName: device, Attrs: netlink.DevlinkDevAttrs{Eswitch: netlink.DevlinkDevEswitchAttr{Mode: mode}}}, nil
}

// SetNetNsID makes GetNetNsIdByFd report id for any netns: the id this
// fake's netns gives the other one (the host, in tests of a pod side).
func (f *Fake) SetNetNsID(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nsid = id
}

// GetNetNsIdByFd reports the id set with SetNetNsID, else -1 (none
// assigned), as the kernel does.
func (f *Fake) GetNetNsIdByFd(fd int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("GetNetNsIdByFd", nil, fd); err != nil {
		return 0, err
	}
	return f.nsid, nil
}

// Close does nothing.
func (f *Fake) Close() {}

var _ nlink.NsRenamer = (*Fake)(nil)

// LinkSetNsFdAndName removes the link from the fake, like LinkSetNsFd (it
// left this namespace; the name it takes there is only recorded).
func (f *Fake) LinkSetNsFdAndName(l netlink.Link, fd int, name string) error {
	return f.mutate("LinkSetNsFdAndName", l, []any{fd, name}, func(d *netlink.Device) error {
		delete(f.links, d.Name)
		return nil
	})
}

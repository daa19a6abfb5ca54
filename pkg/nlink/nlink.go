// Package nlink is the netlink seam of sriov-dra: every netlink call the
// driver makes goes through the Handle interface, so unit tests can use the
// recording fake in nlinktest and host-kernel tests a real handle opened in a
// network namespace of their own.
package nlink

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Handle is the subset of *netlink.Handle the driver uses, plus VFGUIDs,
// which vishvananda/netlink does not parse from IFLA_VF_INFO.
type Handle interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	LinkList() ([]netlink.Link, error)

	LinkSetUp(link netlink.Link) error
	LinkSetDown(link netlink.Link) error
	LinkSetMTU(link netlink.Link, mtu int) error
	LinkSetName(link netlink.Link, name string) error
	LinkSetHardwareAddr(link netlink.Link, hwaddr net.HardwareAddr) error
	LinkSetNsFd(link netlink.Link, fd int) error
	// The link flags and the alias a process with CAP_NET_ADMIN in the
	// link's netns can change; they stay with a netdev that changes
	// netns, so a detach restores them (pkg/netattach).
	SetPromiscOn(link netlink.Link) error
	SetPromiscOff(link netlink.Link) error
	LinkSetAllmulticastOn(link netlink.Link) error
	LinkSetAllmulticastOff(link netlink.Link) error
	LinkSetARPOn(link netlink.Link) error
	LinkSetARPOff(link netlink.Link) error
	// LinkSetAlias with "" clears the alias.
	LinkSetAlias(link netlink.Link, alias string) error
	// The transmit queue length and the device group, which the same
	// process can change too.
	LinkSetTxQLen(link netlink.Link, qlen int) error
	LinkSetGroup(link netlink.Link, group int) error

	LinkSetVfHardwareAddr(link netlink.Link, vf int, hwaddr net.HardwareAddr) error
	LinkSetVfVlanQosProto(link netlink.Link, vf, vlan, qos, proto int) error
	LinkSetVfSpoofchk(link netlink.Link, vf int, check bool) error
	LinkSetVfTrust(link netlink.Link, vf int, state bool) error
	LinkSetVfState(link netlink.Link, vf int, state uint32) error
	LinkSetVfRate(link netlink.Link, vf, minRate, maxRate int) error
	LinkSetVfGUID(link netlink.Link, vf int, guid net.HardwareAddr, guidType int) error

	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteList(link netlink.Link, family int) ([]netlink.Route, error)
	// RouteListFiltered with RT_FILTER_TABLE and Table RT_TABLE_UNSPEC
	// lists the routes of every table (RouteList lists only main).
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)

	RdmaLinkByName(name string) (*netlink.RdmaLink, error)
	RdmaLinkSetNsFd(link *netlink.RdmaLink, fd uint32) error
	RdmaSystemGetNetnsMode() (string, error)

	DevLinkGetDeviceByName(bus string, device string) (*netlink.DevlinkDevice, error)

	// GetNetNsIdByFd is the id this handle's netns gives the netns open
	// at fd (-1: none assigned); a link whose peer or lower device is in
	// that netns reports it as its NetNsID.
	GetNetNsIdByFd(fd int) (int, error)

	// VFGUIDs reports the IB node/port GUIDs of the PF's VFs (none for
	// Ethernet PFs or drivers that do not report them).
	VFGUIDs(pf netlink.Link) ([]VFGUID, error)

	Close()
}

// Real wraps a *netlink.Handle. It is safe for concurrent use: every call
// is a self-contained request on the handle's sockets in its namespace.
type Real struct {
	*netlink.Handle
	// nsPath is the netns the handle was opened in by NewAt ("" for the
	// process's own netns); LinkSetNsFdAndName opens its socket there.
	nsPath string
}

var _ Handle = (*Real)(nil)

// Close releases the handle's sockets.
func (r *Real) Close() { r.Handle.Close() }

// NewHost opens a handle in the calling process's network namespace.
func NewHost() (*Real, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink handle in the host netns: %w", err)
	}
	return &Real{Handle: h}, nil
}

// NewAt opens a handle whose sockets live in the network namespace at
// nsPath (for example /var/run/netns/x or /proc/<pid>/ns/net). No goroutine
// switches namespace: the sockets are created inside it once.
func NewAt(nsPath string) (*Real, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle in netns %s: %w", nsPath, err)
	}
	return &Real{Handle: h, nsPath: nsPath}, nil
}

package nlink

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// XDPDetacher is implemented by handles that can take an XDP program off
// a link. An XDP program attached through netlink stays on a netdev when
// the netdev changes network namespace, so one a pod attached would come
// back to the host with the device and go to the next pod. Real
// implements it.
type XDPDetacher interface {
	LinkDetachXDP(link netlink.Link) error
}

var _ XDPDetacher = (*Real)(nil)

// LinkDetachXDP takes every XDP program off the link: one RTM_SETLINK
// with IFLA_XDP fd -1 for the attachment point link.Attrs().Xdp reports
// (generic, native or offloaded; each of them when it reports several or
// none), sent on a socket in this handle's netns.
// vishvananda/netlink has this only as a package function, whose socket
// is in the calling thread's netns. A mode the device does not support
// holds nothing and is skipped.
func (r *Real) LinkDetachXDP(link netlink.Link) error {
	base := link.Attrs()
	if base.Index == 0 {
		return fmt.Errorf("detach XDP from %s: link has no index", base.Name)
	}
	type xdpMode struct {
		name  string
		flags uint32
	}
	generic, native, offloaded := xdpMode{"generic", nl.XDP_FLAGS_SKB_MODE}, xdpMode{"native", nl.XDP_FLAGS_DRV_MODE}, xdpMode{"offloaded", xdpFlagsHWMode}
	modes := []xdpMode{generic, native, offloaded} // several, or not known
	if x := base.Xdp; x != nil {
		switch x.AttachMode {
		case nl.XDP_ATTACHED_SKB:
			modes = []xdpMode{generic}
		case nl.XDP_ATTACHED_DRV:
			modes = []xdpMode{native}
		case nl.XDP_ATTACHED_HW:
			modes = []xdpMode{offloaded}
		}
	}
	var errs []error
	for _, mode := range modes {
		req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
		msg.Index = int32(base.Index)
		req.AddData(msg)
		xdp := nl.NewRtAttr(unix.IFLA_XDP|unix.NLA_F_NESTED, nil)
		xdp.AddRtAttr(nl.IFLA_XDP_FD, nl.Uint32Attr(^uint32(0))) // fd -1: none
		xdp.AddRtAttr(nl.IFLA_XDP_FLAGS, nl.Uint32Attr(mode.flags))
		req.AddData(xdp)
		if err := r.execute(req); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			errs = append(errs, fmt.Errorf("detach the %s XDP program from %s (index %d): %w", mode.name, base.Name, base.Index, err))
		}
	}
	return errors.Join(errs...)
}

// execute sends req on a socket in the handle's netns.
func (r *Real) execute(req *nl.NetlinkRequest) error {
	if r.nsPath != "" {
		ns, err := netns.GetFromPath(r.nsPath)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", r.nsPath, err)
		}
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
		ns.Close()
		if err != nil {
			return fmt.Errorf("netlink socket in %s: %w", r.nsPath, err)
		}
		defer s.Close()
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// xdpFlagsHWMode is XDP_FLAGS_HW_MODE, which vishvananda/netlink's nl
// package does not name.
const xdpFlagsHWMode = 1 << 3

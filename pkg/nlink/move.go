package nlink

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NsRenamer is implemented by handles that can move a link into another
// network namespace and give it a new name there in one request, so the
// link never shows up in the target under its old name (and a clash with
// that old name there does not matter). Real and nlinktest.Fake implement
// it; callers fall back to LinkSetNsFd + LinkSetName for other handles.
type NsRenamer interface {
	LinkSetNsFdAndName(link netlink.Link, fd int, name string) error
}

var _ NsRenamer = (*Real)(nil)

// LinkSetNsFdAndName sends one RTM_NEWLINK for the link's index carrying
// IFLA_NET_NS_FD and IFLA_IFNAME. The kernel moves the link, using name
// as the pattern if its current name is taken in the target, then renames
// it to name in the target. vishvananda/netlink has no call for this, so
// the request is built with its nl package and sent on a socket in this
// handle's netns. If the rename fails after the move (name taken in the
// target) the link is in the target under its old or the pattern name and
// the error says so through EEXIST.
func (r *Real) LinkSetNsFdAndName(link netlink.Link, fd int, name string) error {
	base := link.Attrs()
	if base.Index == 0 {
		return fmt.Errorf("move %s to netns fd %d as %s: link has no index", base.Name, fd, name)
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(base.Index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(fd))))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if r.nsPath != "" {
		ns, err := netns.GetFromPath(r.nsPath)
		if err != nil {
			return fmt.Errorf("move %s: open netns %s: %w", base.Name, r.nsPath, err)
		}
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
		ns.Close()
		if err != nil {
			return fmt.Errorf("move %s: netlink socket in %s: %w", base.Name, r.nsPath, err)
		}
		defer s.Close()
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		return fmt.Errorf("move %s (index %d) to netns fd %d as %s: %w", base.Name, base.Index, fd, name, err)
	}
	return nil
}

package nlink

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// VFGUID is the InfiniBand node and port GUID the PF reports for one VF
// (IFLA_VF_IB_NODE_GUID / IFLA_VF_IB_PORT_GUID). The kernel reports them
// only for PF drivers that implement ndo_get_vf_guid (mlx5).
type VFGUID struct {
	VF       int
	NodeGUID net.HardwareAddr
	PortGUID net.HardwareAddr
}

// VFGUIDs asks the kernel for the IB GUIDs of every VF of the PF link.
// It returns an empty slice when the PF driver reports none. The request
// goes through a fresh socket in the calling thread's network namespace,
// which is where PFs live for the driver (the host netns).
func (r *Real) VFGUIDs(pf netlink.Link) ([]VFGUID, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(pf.Attrs().Index)
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(nl.RTEXT_FILTER_VF)))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, fmt.Errorf("get VF GUIDs of %s: %w", pf.Attrs().Name, err)
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	return ParseVFGUIDs(msgs[0])
}

// ParseVFGUIDs extracts VF GUIDs from one RTM_NEWLINK message.
func ParseVFGUIDs(m []byte) ([]VFGUID, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return nil, fmt.Errorf("short RTM_NEWLINK message: %d bytes", len(m))
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return nil, fmt.Errorf("parse link attributes: %w", err)
	}
	var out []VFGUID
	for _, a := range attrs {
		if a.Attr.Type != unix.IFLA_VFINFO_LIST {
			continue
		}
		vfs, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return nil, fmt.Errorf("parse IFLA_VFINFO_LIST: %w", err)
		}
		for _, vf := range vfs {
			g, ok, err := parseOneVFGUID(vf)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, g)
			}
		}
	}
	return out, nil
}

func parseOneVFGUID(vf syscall.NetlinkRouteAttr) (VFGUID, bool, error) {
	fields, err := nl.ParseRouteAttr(vf.Value)
	if err != nil {
		return VFGUID{}, false, fmt.Errorf("parse IFLA_VF_INFO: %w", err)
	}
	g := VFGUID{VF: -1}
	for _, f := range fields {
		switch f.Attr.Type {
		case nl.IFLA_VF_IB_NODE_GUID, nl.IFLA_VF_IB_PORT_GUID:
			// struct ifla_vf_guid { __u32 vf; __u64 guid; } (host order)
			if len(f.Value) < 12 {
				return VFGUID{}, false, fmt.Errorf("short ifla_vf_guid: %d bytes", len(f.Value))
			}
			g.VF = int(native.Uint32(f.Value[0:4]))
			guid := make(net.HardwareAddr, 8)
			binary.BigEndian.PutUint64(guid, native.Uint64(f.Value[4:12]))
			if f.Attr.Type == nl.IFLA_VF_IB_NODE_GUID {
				g.NodeGUID = guid
			} else {
				g.PortGUID = guid
			}
		}
	}
	return g, g.VF >= 0, nil
}

var native = binary.NativeEndian

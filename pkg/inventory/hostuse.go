package inventory

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// hostUse is how the host uses its links, read once per scan: global
// addresses and routes of every table, by ifindex. A PF offered whole
// leaves the host with its netdev, and what the host had configured on it
// is lost (the kernel drops addresses and routes when a link changes
// namespace), so the driver offers only PFs the host does not use.
type hostUse struct {
	err    error            // addresses or routes unreadable: every PF counts as in use
	addrs  map[int][]string // ifindex -> global-scope addresses
	routes map[int][]string // ifindex -> routes through it (any table)
}

func (s *scanner) readHostUse(routes []netlink.Route, routeErr error) hostUse {
	hu := hostUse{addrs: map[int][]string{}, routes: map[int][]string{}}
	if routeErr != nil {
		hu.err = fmt.Errorf("read the routes: %w", routeErr)
		return hu
	}
	addrs, err := s.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		hu.err = fmt.Errorf("read the addresses: %w", err)
		s.log.Error(err, "Cannot read the host's addresses; no PF is offered whole")
		return hu
	}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE && a.IPNet != nil && a.LinkIndex > 0 {
			hu.addrs[a.LinkIndex] = append(hu.addrs[a.LinkIndex], a.IPNet.String())
		}
	}
	for _, r := range routes {
		if kernelOwnRoute(r) {
			continue
		}
		d := describeRoute(r)
		if r.LinkIndex > 0 {
			hu.routes[r.LinkIndex] = append(hu.routes[r.LinkIndex], d)
		}
		for _, nh := range r.MultiPath {
			if nh != nil && nh.LinkIndex > 0 && nh.LinkIndex != r.LinkIndex {
				hu.routes[nh.LinkIndex] = append(hu.routes[nh.LinkIndex], d)
			}
		}
	}
	return hu
}

// kernelOwnRoute reports the routes the kernel keeps on every link that
// is up, which say nothing about the host using it: the local table
// (local and broadcast routes of the link's addresses, which are checked
// on their own), IPv6 link-local fe80::/64 and multicast ff00::/8.
func kernelOwnRoute(r netlink.Route) bool {
	if r.Table == unix.RT_TABLE_LOCAL {
		return true
	}
	if r.Dst == nil || r.Dst.IP.To4() != nil {
		return false
	}
	ones, bits := r.Dst.Mask.Size()
	if bits != 8*net.IPv6len {
		return false
	}
	return (r.Dst.IP.IsLinkLocalUnicast() && ones == 64) || (r.Dst.IP.IsMulticast() && ones == 8)
}

func describeRoute(r netlink.Route) string {
	dst := "default"
	if !isDefaultRoute(r) {
		dst = r.Dst.String()
	}
	table := fmt.Sprint(r.Table)
	if isMainTable(r.Table) {
		table = "main"
	}
	return dst + " table " + table
}

// pfHostUse says why the host uses the PF's netdev, or "" when it does
// not (or the PF has no netdev here). nd is the netdev's sysfs folder,
// whose upper_<name> links name the links stacked on it (VLANs,
// macvlans, a bond or bridge it is a port of). When the host's addresses
// or routes cannot be read, or the netdev is not in the host netns, the
// answer is that it cannot tell: the PF is then not offered.
func (s *scanner) pfHostUse(nd ref, pf *Device, link netlink.Link) string {
	if pf.IfName == "" {
		return ""
	}
	if s.use.err != nil {
		return fmt.Sprintf("cannot tell whether the host uses netdev %s: %v", pf.IfName, s.use.err)
	}
	if link == nil {
		return fmt.Sprintf("cannot tell whether the host uses netdev %s: no such link in the host network namespace", pf.IfName)
	}
	var why []string
	idx := link.Attrs().Index
	if a := s.use.addrs[idx]; len(a) > 0 {
		why = append(why, "global addresses "+shortList(a))
	}
	if r := s.use.routes[idx]; len(r) > 0 {
		why = append(why, "routes "+shortList(r))
	}
	master := ""
	if m := link.Attrs().MasterIndex; m > 0 {
		master = fmt.Sprintf("ifindex %d", m)
		if ml, err := s.nl.LinkByIndex(m); err == nil {
			master = ml.Attrs().Name
		}
		why = append(why, "master "+master+" (member of a bond, bridge, team or VRF)")
	}
	var uppers []string
	names, err := listDir(nd)
	if err != nil && !isNotExist(err) {
		return fmt.Sprintf("cannot tell whether the host uses netdev %s: %v", pf.IfName, err)
	}
	for _, n := range names {
		if u, ok := strings.CutPrefix(n, "upper_"); ok && u != master {
			uppers = append(uppers, u)
		}
	}
	if len(uppers) > 0 {
		why = append(why, "upper links "+shortList(uppers))
	}
	if len(why) == 0 {
		return ""
	}
	return fmt.Sprintf("the host uses netdev %s: %s", pf.IfName, strings.Join(why, "; "))
}

// shortList joins at most four items, saying how many more there are.
func shortList(items []string) string {
	const show = 4
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:show], ", "), len(items)-show)
}

// PFHostUse checks the PF netdev ifName now, as a scan does for
// Device.HostUse: "" when the host does not use it. Prepare asks again
// right before it takes a PF, since the last scan may be a second old.
// root is the host filesystem root (sysfs below it), h a handle in the
// host netns. It reads only.
func PFHostUse(ctx context.Context, h nlink.Handle, root, ifName string) string {
	if ifName == "" {
		return ""
	}
	if root == "" {
		root = "/"
	}
	s := &scanner{sys: filepath.Join(root, "sys"), nl: h, log: klog.FromContext(ctx)}
	routes, err := s.readRoutes()
	s.use = s.readHostUse(routes, err)
	link, err := h.LinkByName(ifName)
	if err != nil {
		link = nil
	}
	return s.pfHostUse(pathRef(filepath.Join(s.sys, "class", "net", ifName)), &Device{IfName: ifName}, link)
}

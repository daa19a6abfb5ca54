package inventory

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeInfo is what the scan knows about the links carrying the node's
// default route.
type routeInfo struct {
	err     error           // the routes could not be read
	names   map[string]bool // default-route links and the links under them (VLAN parents)
	indexes map[int]bool    // their ifindexes, to catch a PF enslaved to a default-route bond/bridge
}

// readRoutes lists the routes of every routing table, once per scan. An
// interrupted dump is retried by the handle (nlink.RetryDump): only a dump
// interrupted on every try, or another netlink error, gets here as an error.
func (s *scanner) readRoutes() ([]netlink.Route, error) {
	return s.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
}

// defaultRouteLinks finds the links of the main table's default routes.
func (s *scanner) defaultRouteLinks(routes []netlink.Route, err error) routeInfo {
	ri := routeInfo{names: map[string]bool{}, indexes: map[int]bool{}}
	if err != nil {
		ri.err = err
		s.log.Error(err, "Cannot read the routing table; PFs are excluded unless AllowDefaultRoutePF is set")
		return ri
	}
	var idx []int
	for _, r := range routes {
		if !isMainTable(r.Table) || !isDefaultRoute(r) {
			continue
		}
		if r.LinkIndex > 0 {
			idx = append(idx, r.LinkIndex)
		}
		for _, nh := range r.MultiPath {
			if nh != nil && nh.LinkIndex > 0 {
				idx = append(idx, nh.LinkIndex)
			}
		}
	}
	// Follow VLAN/macvlan parents a few levels down to the PF.
	for depth := 0; depth < 4 && len(idx) > 0; depth++ {
		var next []int
		for _, i := range idx {
			if ri.indexes[i] {
				continue
			}
			ri.indexes[i] = true
			l, err := s.nl.LinkByIndex(i)
			if err != nil {
				s.log.V(2).Info("Default-route link not found", "ifindex", i, "err", err)
				continue
			}
			ri.names[l.Attrs().Name] = true
			if p := l.Attrs().ParentIndex; p > 0 && p != i {
				next = append(next, p)
			}
		}
		idx = next
	}
	if len(ri.names) > 0 {
		s.log.V(2).Info("Default route links", "links", ri.names)
	}
	return ri
}

func isMainTable(t int) bool { return t == unix.RT_TABLE_UNSPEC || t == unix.RT_TABLE_MAIN }

func isDefaultRoute(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0 && (r.Dst.IP == nil || r.Dst.IP.Equal(net.IPv4zero) || r.Dst.IP.Equal(net.IPv6zero))
}

// carries returns why the PF must be excluded as a default-route carrier,
// or "".
func (ri routeInfo) carries(ifName string, link netlink.Link) string {
	if ifName == "" {
		return "" // no netdev, no route
	}
	if ri.err != nil {
		return fmt.Sprintf("cannot tell whether the PF carries the node's default route: %v", ri.err)
	}
	if ri.names[ifName] {
		return reasonDefaultRoute
	}
	if link != nil && link.Attrs().MasterIndex > 0 && ri.indexes[link.Attrs().MasterIndex] {
		return reasonDefaultRoute + " through its master link"
	}
	return ""
}

package nlinktest

// Addresses and routes: what the attach configures in a pod netns.

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func (f *Fake) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("AddrAdd", l, a.IPNet); err != nil {
		return err
	}
	d, err := f.target(l)
	if err != nil {
		return err
	}
	c := *a
	if c.LinkIndex == 0 {
		c.LinkIndex = d.Index // as the kernel reports it
	}
	f.addrs[l.Attrs().Name] = append(f.addrs[l.Attrs().Name], c)
	return nil
}

func (f *Fake) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	return nlink.RetryDump("address", func() ([]netlink.Addr, error) { return f.addrListOnce(l, family) })
}

func (f *Fake) addrListOnce(l netlink.Link, family int) ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("AddrList", l, family); err != nil {
		return nil, err
	}
	var out []netlink.Addr
	if l == nil {
		for _, a := range f.addrs {
			out = append(out, a...)
		}
	} else {
		out = append(out, f.addrs[l.Attrs().Name]...)
	}
	if f.interrupted("AddrList") {
		return partial(out)
	}
	return out, nil
}

func (f *Fake) RouteAdd(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RouteAdd", nil, r.Dst, r.Gw); err != nil {
		return err
	}
	f.routes = append(f.routes, *r)
	return nil
}

func (f *Fake) RouteReplace(r *netlink.Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RouteReplace", nil, r.Dst, r.Gw); err != nil {
		return err
	}
	f.routes = append(f.routes, *r)
	return nil
}

func (f *Fake) RouteList(l netlink.Link, family int) ([]netlink.Route, error) {
	return nlink.RetryDump("route", func() ([]netlink.Route, error) { return f.routeListOnce(l, family) })
}

func (f *Fake) routeListOnce(l netlink.Link, family int) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RouteList", l, family); err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range f.routes {
		if (l == nil || r.LinkIndex == l.Attrs().Index) && isMainTable(r.Table) {
			out = append(out, r)
		}
	}
	if f.interrupted("RouteList") {
		return partial(out)
	}
	return out, nil
}

// RouteListFiltered supports what the driver asks: the routes of one
// table, or of every table (RT_FILTER_TABLE with RT_TABLE_UNSPEC), and
// RT_FILTER_OIF. Without RT_FILTER_TABLE only the main table is listed,
// as the library does.
func (f *Fake) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return nlink.RetryDump("route", func() ([]netlink.Route, error) { return f.routeListFilteredOnce(family, filter, mask) })
}

func (f *Fake) routeListFilteredOnce(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("RouteListFiltered", nil, family, mask); err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range f.routes {
		switch {
		case filter == nil || mask&netlink.RT_FILTER_TABLE == 0:
			if !isMainTable(r.Table) {
				continue
			}
		case filter.Table != unix.RT_TABLE_UNSPEC && r.Table != filter.Table && (!isMainTable(r.Table) || !isMainTable(filter.Table)):
			continue
		}
		if filter != nil && mask&netlink.RT_FILTER_OIF != 0 && r.LinkIndex != filter.LinkIndex {
			continue
		}
		out = append(out, r)
	}
	if f.interrupted("RouteListFiltered") {
		return partial(out)
	}
	return out, nil
}

func isMainTable(t int) bool { return t == 0 || t == unix.RT_TABLE_MAIN }

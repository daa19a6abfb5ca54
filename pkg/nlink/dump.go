package nlink

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DumpTries is how many times a netlink dump is sent before an
// interrupted result is given up on.
const DumpTries = 5

// RetryDump runs dump until the kernel answers it without NLM_F_DUMP_INTR,
// at most DumpTries times. A dump is interrupted when the table it lists
// changes while the answer is being sent (a link, address or route added or
// removed anywhere in the netns); vishvananda/netlink then returns what it
// got together with netlink.ErrDumpInterrupted, and that partial result may
// miss entries or hold stale ones, so it is never used: the dump is sent
// again. Any other error ends the loop at once. When every try is
// interrupted the error names what was dumped, says how many tries were
// made and still matches netlink.ErrDumpInterrupted with errors.Is.
//
// Every dump the driver makes goes through here (Real's dump methods, and
// the fake's, which can be told to interrupt); code outside this package
// calls the Handle methods, never the library's dump functions (enforced by
// forbidigo, .golangci.yaml).
func RetryDump[T any](what string, dump func() (T, error)) (T, error) {
	var zero T
	for try := 1; ; try++ {
		out, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return zero, err
			}
			return out, nil
		}
		if try == DumpTries {
			return zero, fmt.Errorf("%s dump: interrupted by concurrent changes %d times in a row: %w", what, DumpTries, err)
		}
	}
}

// LinkList lists the links of the handle's netns, retrying an interrupted
// dump.
func (r *Real) LinkList() ([]netlink.Link, error) {
	return RetryDump("link", r.Handle.LinkList)
}

// LinkByName looks a link up by name. The kernel answers by name without a
// dump; on kernels without IFLA_IFNAME lookups the library falls back to a
// link dump, which is retried when interrupted.
func (r *Real) LinkByName(name string) (netlink.Link, error) {
	return RetryDump("link (looking up "+name+")", func() (netlink.Link, error) { return r.Handle.LinkByName(name) })
}

// AddrList lists the addresses of link (every link when nil), retrying an
// interrupted dump.
func (r *Real) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	return RetryDump("address", func() ([]netlink.Addr, error) { return r.Handle.AddrList(link, family) })
}

// RouteList lists the main table's routes via link (every link when nil),
// retrying an interrupted dump.
func (r *Real) RouteList(link netlink.Link, family int) ([]netlink.Route, error) {
	return RetryDump("route", func() ([]netlink.Route, error) { return r.Handle.RouteList(link, family) })
}

// RouteListFiltered lists the routes matching filter, retrying an
// interrupted dump.
func (r *Real) RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	return RetryDump("route", func() ([]netlink.Route, error) { return r.Handle.RouteListFiltered(family, filter, filterMask) })
}

// RdmaLinkList lists the RDMA devices of the handle's netns, retrying an
// interrupted dump.
func (r *Real) RdmaLinkList() ([]*netlink.RdmaLink, error) {
	return RetryDump("RDMA device", r.Handle.RdmaLinkList)
}

// RdmaLinkByName finds an RDMA device by name. The library has no lookup by
// name: it dumps every RDMA device and returns the dump's error, so one
// interrupted dump would fail the lookup; the dump is retried instead.
func (r *Real) RdmaLinkByName(name string) (*netlink.RdmaLink, error) {
	links, err := r.RdmaLinkList()
	if err != nil {
		return nil, fmt.Errorf("find RDMA device %s: %w", name, err)
	}
	for _, l := range links {
		if l.Attrs.Name == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("RDMA device %s not found: %w", name, unix.ENODEV)
}

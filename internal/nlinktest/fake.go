// Package nlinktest provides Fake, an in-memory nlink.Handle for unit
// tests. It keeps links with their VF admin state, records every call in
// order, and can be told to fail any call, so tests can prove rollbacks.
package nlinktest

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Call is one recorded call: the method name, the link it targeted (or ""),
// and its arguments rendered with %v.
type Call struct {
	Method string
	Link   string
	Args   string
}

func (c Call) String() string {
	if c.Args == "" {
		return fmt.Sprintf("%s(%s)", c.Method, c.Link)
	}
	return fmt.Sprintf("%s(%s, %s)", c.Method, c.Link, c.Args)
}

// FailFunc decides whether a call fails. Returning a non-nil error makes
// the call fail with it and leaves the fake's state unchanged.
type FailFunc func(c Call) error

// Fake is a concurrency-safe in-memory netlink. The zero value is not
// usable; call New.
type Fake struct {
	mu       sync.Mutex
	links    map[string]*netlink.Device
	guids    map[string][]nlink.VFGUID // PF name -> VF GUIDs
	addrs    map[string][]netlink.Addr
	routes   []netlink.Route
	rdma     map[string]*netlink.RdmaLink
	rdmaMode string
	eswitch  map[string]string // "pci/<bdf>" -> mode
	calls    []Call
	fail     FailFunc
	nextIdx  int
	nsid     int // what GetNetNsIdByFd reports, for any fd
	// interrupts counts, per dump method, how many more dumps answer
	// with a partial result and netlink.ErrDumpInterrupted.
	interrupts map[string]int
}

var _ nlink.Handle = (*Fake)(nil)

// New returns an empty fake with RDMA netns mode "shared".
func New() *Fake {
	return &Fake{
		links:      map[string]*netlink.Device{},
		guids:      map[string][]nlink.VFGUID{},
		addrs:      map[string][]netlink.Addr{},
		rdma:       map[string]*netlink.RdmaLink{},
		rdmaMode:   "shared",
		eswitch:    map[string]string{},
		nextIdx:    2,
		nsid:       -1,
		interrupts: map[string]int{},
	}
}

// InterruptDumps makes the next n dumps of method (LinkList, AddrList,
// RouteList, RouteListFiltered, RdmaLinkByName) answer the way the library
// does when the kernel sets NLM_F_DUMP_INTR: half the entries and
// netlink.ErrDumpInterrupted. The fake's dump methods retry through
// nlink.RetryDump like Real's, so fewer than nlink.DumpTries interrupts
// are invisible to callers except in Calls (one call per try), and
// nlink.DumpTries or more make the dump fail.
func (f *Fake) InterruptDumps(method string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interrupts[method] = n
}

// interrupted consumes one injected interrupt of method. Caller holds mu.
func (f *Fake) interrupted(method string) bool {
	if f.interrupts[method] <= 0 {
		return false
	}
	f.interrupts[method]--
	return true
}

// partial is what an interrupted dump of out returns.
func partial[T any](out []T) ([]T, error) {
	return out[:len(out)/2], netlink.ErrDumpInterrupted
}

// AddLink adds a link. Index is assigned when zero. VF admin state goes in
// attrs.Vfs (ID must be the VF index). The link type defaults to "device".
func (f *Fake) AddLink(attrs netlink.LinkAttrs) netlink.Link {
	f.mu.Lock()
	defer f.mu.Unlock()
	if attrs.Index == 0 {
		attrs.Index = f.nextIdx
		f.nextIdx++
	} else if attrs.Index >= f.nextIdx {
		f.nextIdx = attrs.Index + 1
	}
	d := &netlink.Device{LinkAttrs: attrs}
	f.links[attrs.Name] = d
	return cloneLink(d)
}

// SetVFGUIDs sets what VFGUIDs reports for a PF.
func (f *Fake) SetVFGUIDs(pf string, g []nlink.VFGUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.guids[pf] = g
}

// SetRdmaNetnsMode sets the mode RdmaSystemGetNetnsMode reports.
func (f *Fake) SetRdmaNetnsMode(mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rdmaMode = mode
}

// AddRdmaLink adds an RDMA device.
func (f *Fake) AddRdmaLink(name string, index uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rdma[name] = &netlink.RdmaLink{Attrs: netlink.RdmaLinkAttrs{Index: index, Name: name}}
}

// SetEswitchMode makes DevLinkGetDeviceByName("pci", bdf) report mode.
func (f *Fake) SetEswitchMode(bdf, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eswitch["pci/"+bdf] = mode
}

// AddRoute adds a route to what RouteList (when in the main table:
// Table 0 or RT_TABLE_MAIN) and RouteListFiltered report.
func (f *Fake) AddRoute(r netlink.Route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = append(f.routes, r)
}

// FailWith installs fn to decide failures (nil clears it).
func (f *Fake) FailWith(fn FailFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

// FailMethod makes every call of method on link (any link when "") fail with err.
func (f *Fake) FailMethod(method, link string, err error) {
	f.FailWith(func(c Call) error {
		if c.Method == method && (link == "" || c.Link == link) {
			return err
		}
		return nil
	})
}

// Calls returns a copy of the calls recorded so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// MutatingCalls returns the recorded calls that change state (Set*, Add*, Del*).
func (f *Fake) MutatingCalls() []Call {
	var out []Call
	for _, c := range f.Calls() {
		if isMutating(c.Method) {
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// VF returns the current admin state of VF vf on PF pf.
func (f *Fake) VF(pf string, vf int) (netlink.VfInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.links[pf]
	if !ok {
		return netlink.VfInfo{}, false
	}
	for _, v := range d.Vfs {
		if v.ID == vf {
			return v, true
		}
	}
	return netlink.VfInfo{}, false
}

// Link returns a copy of the named link's current state.
func (f *Fake) Link(name string) (netlink.Link, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.links[name]
	if !ok {
		return nil, false
	}
	return cloneLink(d), true
}

func isMutating(m string) bool {
	for _, p := range []string{"LinkSet", "AddrAdd", "RouteAdd", "RouteReplace", "RdmaLinkSet"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

func cloneLink(d *netlink.Device) netlink.Link {
	c := *d
	c.Vfs = append([]netlink.VfInfo(nil), d.Vfs...)
	if d.HardwareAddr != nil {
		c.HardwareAddr = append(net.HardwareAddr(nil), d.HardwareAddr...)
	}
	return &c
}

// record logs the call and returns the injected failure, if any. Caller holds mu.
func (f *Fake) record(method string, link netlink.Link, args ...any) error {
	c := Call{Method: method}
	if link != nil {
		c.Link = link.Attrs().Name
	}
	if len(args) > 0 {
		parts := make([]string, len(args))
		for i, a := range args {
			parts[i] = fmt.Sprint(a)
		}
		c.Args = strings.Join(parts, ", ")
	}
	f.calls = append(f.calls, c)
	if f.fail != nil {
		return f.fail(c)
	}
	return nil
}

func notFound(what string) error {
	return fmt.Errorf("%s: %w", what, netlink.LinkNotFoundError{})
}

func (f *Fake) byName(name string) (*netlink.Device, error) {
	d, ok := f.links[name]
	if !ok {
		return nil, notFound("link " + name)
	}
	return d, nil
}

func (f *Fake) target(l netlink.Link) (*netlink.Device, error) {
	if l == nil {
		return nil, unix.EINVAL
	}
	return f.byName(l.Attrs().Name)
}

func (f *Fake) vf(l netlink.Link, vf int) (*netlink.VfInfo, error) {
	d, err := f.target(l)
	if err != nil {
		return nil, err
	}
	for i := range d.Vfs {
		if d.Vfs[i].ID == vf {
			return &d.Vfs[i], nil
		}
	}
	return nil, fmt.Errorf("VF %d of %s: %w", vf, d.Name, unix.EINVAL)
}

func (f *Fake) LinkByName(name string) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkByName", nil, name); err != nil {
		return nil, err
	}
	d, err := f.byName(name)
	if err != nil {
		return nil, err
	}
	return cloneLink(d), nil
}

func (f *Fake) LinkByIndex(index int) (netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkByIndex", nil, index); err != nil {
		return nil, err
	}
	for _, d := range f.links {
		if d.Index == index {
			return cloneLink(d), nil
		}
	}
	return nil, notFound(fmt.Sprintf("link index %d", index))
}

func (f *Fake) LinkList() ([]netlink.Link, error) {
	return nlink.RetryDump("link", f.linkListOnce)
}

func (f *Fake) linkListOnce() ([]netlink.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkList", nil); err != nil {
		return nil, err
	}
	out := make([]netlink.Link, 0, len(f.links))
	for _, d := range f.links {
		out = append(out, cloneLink(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Index < out[j].Attrs().Index })
	if f.interrupted("LinkList") {
		return partial(out)
	}
	return out, nil
}

func (f *Fake) LinkSetUp(l netlink.Link) error {
	return f.mutate("LinkSetUp", l, nil, func(d *netlink.Device) error {
		d.Flags |= net.FlagUp
		d.OperState = netlink.OperUp
		return nil
	})
}

func (f *Fake) LinkSetDown(l netlink.Link) error {
	return f.mutate("LinkSetDown", l, nil, func(d *netlink.Device) error {
		d.Flags &^= net.FlagUp
		d.OperState = netlink.OperDown
		return nil
	})
}

func (f *Fake) LinkSetMTU(l netlink.Link, mtu int) error {
	return f.mutate("LinkSetMTU", l, []any{mtu}, func(d *netlink.Device) error {
		d.MTU = mtu
		return nil
	})
}

func (f *Fake) LinkSetName(l netlink.Link, name string) error {
	return f.mutate("LinkSetName", l, []any{name}, func(d *netlink.Device) error {
		if _, taken := f.links[name]; taken && name != d.Name {
			return unix.EEXIST
		}
		delete(f.links, d.Name)
		d.Name = name
		f.links[name] = d
		return nil
	})
}

func (f *Fake) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	return f.mutate("LinkSetHardwareAddr", l, []any{hw}, func(d *netlink.Device) error {
		d.HardwareAddr = append(net.HardwareAddr(nil), hw...)
		return nil
	})
}

// LinkSetNsFd removes the link from the fake (it left this namespace).
func (f *Fake) LinkSetNsFd(l netlink.Link, fd int) error {
	return f.mutate("LinkSetNsFd", l, []any{fd}, func(d *netlink.Device) error {
		delete(f.links, d.Name)
		return nil
	})
}

func (f *Fake) mutate(method string, l netlink.Link, args []any, fn func(d *netlink.Device) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(method, l, args...); err != nil {
		return err
	}
	d, err := f.target(l)
	if err != nil {
		return err
	}
	return fn(d)
}

func (f *Fake) mutateVF(method string, l netlink.Link, vf int, args []any, fn func(v *netlink.VfInfo)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(method, l, append([]any{vf}, args...)...); err != nil {
		return err
	}
	v, err := f.vf(l, vf)
	if err != nil {
		return err
	}
	fn(v)
	return nil
}

func (f *Fake) LinkSetVfHardwareAddr(l netlink.Link, vf int, hw net.HardwareAddr) error {
	return f.mutateVF("LinkSetVfHardwareAddr", l, vf, []any{hw}, func(v *netlink.VfInfo) {
		v.Mac = append(net.HardwareAddr(nil), hw...)
	})
}

func (f *Fake) LinkSetVfVlanQosProto(l netlink.Link, vf, vlan, qos, proto int) error {
	return f.mutateVF("LinkSetVfVlanQosProto", l, vf, []any{vlan, qos, proto}, func(v *netlink.VfInfo) {
		v.Vlan, v.Qos, v.VlanProto = vlan, qos, proto
	})
}

func (f *Fake) LinkSetVfSpoofchk(l netlink.Link, vf int, check bool) error {
	return f.mutateVF("LinkSetVfSpoofchk", l, vf, []any{check}, func(v *netlink.VfInfo) {
		v.Spoofchk = check
	})
}

func (f *Fake) LinkSetVfTrust(l netlink.Link, vf int, state bool) error {
	return f.mutateVF("LinkSetVfTrust", l, vf, []any{state}, func(v *netlink.VfInfo) {
		v.Trust = 0
		if state {
			v.Trust = 1
		}
	})
}

func (f *Fake) LinkSetVfState(l netlink.Link, vf int, state uint32) error {
	return f.mutateVF("LinkSetVfState", l, vf, []any{state}, func(v *netlink.VfInfo) {
		v.LinkState = state
	})
}

func (f *Fake) LinkSetVfRate(l netlink.Link, vf, minRate, maxRate int) error {
	return f.mutateVF("LinkSetVfRate", l, vf, []any{minRate, maxRate}, func(v *netlink.VfInfo) {
		v.MinTxRate, v.MaxTxRate = uint32(minRate), uint32(maxRate)
	})
}

// LinkSetVfGUID sets a VF's node (nl.IFLA_VF_IB_NODE_GUID) or port GUID.
func (f *Fake) LinkSetVfGUID(l netlink.Link, vf int, guid net.HardwareAddr, guidType int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("LinkSetVfGUID", l, vf, guid, guidType); err != nil {
		return err
	}
	if _, err := f.vf(l, vf); err != nil {
		return err
	}
	pf := l.Attrs().Name
	g := append(net.HardwareAddr(nil), guid...)
	for i := range f.guids[pf] {
		if f.guids[pf][i].VF == vf {
			setGUID(&f.guids[pf][i], g, guidType)
			return nil
		}
	}
	e := nlink.VFGUID{VF: vf}
	setGUID(&e, g, guidType)
	f.guids[pf] = append(f.guids[pf], e)
	return nil
}

func setGUID(e *nlink.VFGUID, g net.HardwareAddr, guidType int) {
	if guidType == nlIBNodeGUID {
		e.NodeGUID = g
	} else {
		e.PortGUID = g
	}
}

// nlIBNodeGUID mirrors nl.IFLA_VF_IB_NODE_GUID without importing nl here.
const nlIBNodeGUID = 10

func (f *Fake) VFGUIDs(pf netlink.Link) ([]nlink.VFGUID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record("VFGUIDs", pf); err != nil {
		return nil, err
	}
	if _, err := f.target(pf); err != nil {
		return nil, err
	}
	out := make([]nlink.VFGUID, len(f.guids[pf.Attrs().Name]))
	copy(out, f.guids[pf.Attrs().Name])
	return out, nil
}

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

// Package nlinktest provides Fake, an in-memory nlink.Handle for unit
// tests. It keeps links with their VF admin state, records every call in
// order, and can be told to fail any call, so tests can prove rollbacks.
package nlinktest

import (
	"fmt"
	"net"
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
	for _, p := range []string{"LinkSet", "SetPromisc", "AddrAdd", "RouteAdd", "RouteReplace", "RdmaLinkSet"} {
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

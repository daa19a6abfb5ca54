package netattach

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Host-kernel test helpers. Links are created in this process's netns
// (the "host" for Attach/Detach) with a random per-run prefix; pod netns
// are named netns with the same prefix. Everything is removed in Cleanup.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates network namespaces and veth/macvlan links); CI runs it as root")
	}
}

func runPrefix(t testing.TB) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b) // 7 chars: room for a suffix in 15
}

// newNetns creates a named netns without leaving any goroutine in it.
func newNetns(t testing.TB, name string) string { return nlinktest.NewNetns(t, name) }

func hostHandle(t testing.TB) *nlink.Real { return nlinktest.HostHandle(t) }

func podHandle(t testing.TB, path string) *nlink.Real { return nlinktest.HandleAt(t, path) }

// newVeth creates veth name<->peer on the host with the given MAC/MTU.
func newVeth(t testing.TB, h *nlink.Real, name, peer string, mac string, mtu int) netlink.Link {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: hw}, PeerName: peer}
	if err := h.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	t.Cleanup(func() { delLink(h, name); delLink(h, peer) })
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// newMacvlan creates a macvlan name on a fresh veth parent.
func newMacvlan(t testing.TB, h *nlink.Real, name, parent string, mac string, mtu int) netlink.Link {
	t.Helper()
	p := newVeth(t, h, parent, parent+"p", "02:00:00:aa:00:01", 1500)
	hw, _ := net.ParseMAC(mac)
	m := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: hw, ParentIndex: p.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := h.LinkAdd(m); err != nil {
		t.Fatalf("add macvlan %s: %v", name, err)
	}
	t.Cleanup(func() { delLink(h, name) })
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func delLink(h *nlink.Real, name string) {
	if l, err := h.LinkByName(name); err == nil {
		_ = h.LinkDel(l)
	}
}

// linkState is what a round trip must restore.
type linkState struct {
	Name string
	MAC  string
	MTU  int
	Up   bool
}

func stateOf(l netlink.Link) linkState {
	a := l.Attrs()
	return linkState{Name: a.Name, MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
}

func mustLink(t testing.TB, h nlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func absent(t testing.TB, h nlink.Handle, name, where string) {
	t.Helper()
	if _, err := h.LinkByName(name); err == nil {
		t.Errorf("link %s is still %s", name, where)
	} else if !isNotFound(err) {
		t.Errorf("look up %s %s: %v", name, where, err)
	}
}

// failing wraps a handle and fails the n-th configuring call (0-based)
// once, to prove Attach undoes the move.
type failing struct {
	nlink.Handle
	mu    sync.Mutex
	n     int
	seen  int
	calls []string
}

var errInjected = errors.New("injected failure")

func (f *failing) hit(m string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
	f.seen++
	if f.seen-1 == f.n {
		return fmt.Errorf("%s: %w", m, errInjected)
	}
	return nil
}

func (f *failing) LinkSetMTU(l netlink.Link, mtu int) error {
	if err := f.hit("LinkSetMTU"); err != nil {
		return err
	}
	return f.Handle.LinkSetMTU(l, mtu)
}

func (f *failing) LinkSetHardwareAddr(l netlink.Link, hw net.HardwareAddr) error {
	if err := f.hit("LinkSetHardwareAddr"); err != nil {
		return err
	}
	return f.Handle.LinkSetHardwareAddr(l, hw)
}

func (f *failing) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	if err := f.hit("AddrAdd"); err != nil {
		return err
	}
	return f.Handle.AddrAdd(l, a)
}

func (f *failing) LinkSetUp(l netlink.Link) error {
	if err := f.hit("LinkSetUp"); err != nil {
		return err
	}
	return f.Handle.LinkSetUp(l)
}

func (f *failing) RouteReplace(r *netlink.Route) error {
	if err := f.hit("RouteReplace"); err != nil {
		return err
	}
	return f.Handle.RouteReplace(r)
}

func (f *failing) LinkSetDown(l netlink.Link) error {
	if err := f.hit("LinkSetDown"); err != nil {
		return err
	}
	return f.Handle.LinkSetDown(l)
}

func (f *failing) LinkSetName(l netlink.Link, name string) error {
	if err := f.hit("LinkSetName"); err != nil {
		return err
	}
	return f.Handle.LinkSetName(l, name)
}

func (f *failing) LinkSetNsFd(l netlink.Link, fd int) error {
	if err := f.hit("LinkSetNsFd"); err != nil {
		return err
	}
	return f.Handle.LinkSetNsFd(l, fd)
}

func (f *failing) LinkSetNsFdAndName(l netlink.Link, fd int, name string) error {
	if err := f.hit("LinkSetNsFdAndName"); err != nil {
		return err
	}
	return f.Handle.(nlink.NsRenamer).LinkSetNsFdAndName(l, fd, name)
}

type netlinkVeth struct{ name, peer string }

func (v netlinkVeth) veth() *netlink.Veth {
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v.name}, PeerName: v.peer}
}

// newPodBed is this test's link name prefix, a handle in the host netns,
// and a fresh pod netns pfx+"ns" (its path) with a handle in it.
func newPodBed(t testing.TB) (pfx string, host *nlink.Real, nsPath string, pod *nlink.Real) {
	t.Helper()
	pfx = runPrefix(t)
	host = hostHandle(t)
	nsPath = newNetns(t, pfx+"ns")
	return pfx, host, nsPath, podHandle(t, nsPath)
}

// newVFBed is the common start of a host-kernel attach test (root only): a
// fresh pod netns with a handle in it, and a veth pfx+"vf" (peer pfx+peer,
// MAC mac, MTU 1500) standing in for a VF netdev on the host, with that
// link's state before anything moved.
func newVFBed(t *testing.T, peer, mac string) (ctx context.Context, pfx string, host *nlink.Real, nsPath string, pod *nlink.Real, before linkState) {
	t.Helper()
	requireRoot(t)
	ctx = context.Background()
	pfx, host, nsPath, pod = newPodBed(t)
	newVeth(t, host, pfx+"vf", pfx+peer, mac, 1500)
	before = stateOf(mustLink(t, host, pfx+"vf"))
	return ctx, pfx, host, nsPath, pod, before
}

// idOf is the identity of host link name, as Attach must be given it.
func idOf(t testing.TB, h nlink.Handle, name string) Identity {
	t.Helper()
	id := identityOf(mustLink(t, h, name))
	if !id.Known() {
		t.Fatalf("host link %s has no identity", name)
	}
	return id
}

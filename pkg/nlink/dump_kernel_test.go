package nlink_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// newTestNetns creates a named netns of the test's own (no goroutine is
// left in it) and removes it in Cleanup.
func newTestNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (creates a network namespace and veth links); CI runs it as root")
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return nlinktest.NewNetns(t, "nlinkdump-"+hex.EncodeToString(b))
}

// TestRealDumpsKernel: Real's dump methods answer from the kernel in the
// handle's own netns, and under link churn that interrupts link dumps a
// list Real returns is never a partial one: every link that stayed put is
// in it (or the dump failed after DumpTries interrupts, saying so).
func TestRealDumpsKernel(t *testing.T) {
	path := newTestNetns(t)
	h := nlinktest.HandleAt(t, path)

	const stable = 200 // enough links for a multi-part link dump
	for i := 0; i < stable; i += 2 {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("st%d", i)}, PeerName: fmt.Sprintf("st%d", i+1)}
		if err := h.LinkAdd(v); err != nil {
			t.Fatalf("add veth st%d: %v", i, err)
		}
	}
	d0, err := h.LinkByName("st0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(d0); err != nil {
		t.Fatal(err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 9), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrAdd(d0, addr); err != nil {
		t.Fatal(err)
	}

	links, err := h.LinkList()
	if err != nil || len(links) != stable+1 { // + lo
		t.Fatalf("LinkList: %d links, %v; want %d", len(links), err, stable+1)
	}
	addrs, err := h.AddrList(d0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(addr.IP) {
		t.Fatalf("AddrList: %v, %v; want %s", addrs, err, addr.IPNet)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil || len(routes) == 0 {
		t.Fatalf("RouteListFiltered: %v, %v; want the connected and local routes of %s", routes, err, addr.IPNet)
	}
	// ENODEV from an RDMA dump without the device; EPROTONOSUPPORT from
	// a kernel without RDMA netlink (no ib_core loaded).
	if _, err := h.RdmaLinkByName("no-such-rdma"); !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EPROTONOSUPPORT) {
		t.Errorf("RdmaLinkByName of a missing device: %v, want ENODEV or EPROTONOSUPPORT", err)
	}

	// Churn: add and delete a link over and over while dumping, on a
	// handle of its own (a handle's requests share its socket's lock).
	churn, err := nlink.NewAt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer churn.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "churn0"}, PeerName: "churn1"}
			if err := churn.LinkAdd(l); err == nil {
				_ = churn.LinkDel(l)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	var rawIntr, ok, gaveUp int
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := h.Handle.LinkList(); errors.Is(err, netlink.ErrDumpInterrupted) {
			rawIntr++
		}
		links, err := h.LinkList()
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			gaveUp++
			if links != nil {
				t.Fatalf("LinkList gave up with %d links, want none", len(links))
			}
			continue
		}
		if err != nil {
			t.Fatalf("LinkList under churn: %v", err)
		}
		ok++
		seen := map[string]bool{}
		for _, l := range links {
			seen[l.Attrs().Name] = true
		}
		for i := 0; i < stable; i++ {
			if !seen[fmt.Sprintf("st%d", i)] {
				t.Fatalf("LinkList returned %d links without st%d: a partial dump", len(links), i)
			}
		}
	}
	t.Logf("under churn: %d raw link dumps interrupted; Real: %d whole lists, %d gave up after %d tries", rawIntr, ok, gaveUp, nlink.DumpTries)
	if ok == 0 {
		t.Errorf("no whole link list in 2s of churn (%d gave up)", gaveUp)
	}
}

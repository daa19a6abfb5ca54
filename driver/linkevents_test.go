package driver

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestSubscribeLinkEvents creates a link in a fresh netns and expects an
// event. Needs root (netns).
func TestSubscribeLinkEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // switches this locked thread into it
	if err != nil {
		t.Skipf("cannot create a netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("restore netns: %v", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The subscription socket is opened on this thread, in the new netns.
	ch, err := SubscribeLinkEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ev0"}, PeerName: "ev1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no event for a new link")
	}
	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after cancel")
		}
	}
}

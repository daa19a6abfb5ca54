package hwevents

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
)

// inNewNetns runs f on a locked thread in a fresh network namespace and
// returns a handle in it; the thread goes back to its netns afterwards.
func inNewNetns(t *testing.T, f func()) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace; CI runs it as root")
	}
	ns := nlinktest.InNewNetns(t, f)
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestUeventSocketKernel reads real uevents: a veth created in a
// fresh netns sends a net "add" uevent to that netns's listeners (the
// parser, which drops devices without a PCI parent, is swapped for one
// that keeps everything), and the reader ends when ctx does.
func TestUeventSocketKernel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan Event, 16)
	done := make(chan struct{})
	h := inNewNetns(t, func() {
		fd, err := openUevents()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(done)
			readUevents(ctx, fd, out, func(msg []byte) (Event, bool) {
				kv := strings.Split(string(msg), "\x00")
				ev := Event{Origin: OriginUevent}
				for _, f := range kv {
					if k, v, ok := strings.Cut(f, "="); ok {
						switch k {
						case "ACTION":
							ev.Action = v
						case "SUBSYSTEM":
							ev.Subsystem = v
						case "INTERFACE":
							ev.IfName = v
						}
					}
				}
				return ev, true
			})
		}()
	})
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uev0"}, PeerName: "uev1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-out:
			found = ev.Action == "add" && ev.Subsystem == "net" && ev.IfName == "uev0"
		case <-deadline:
			t.Fatal("no net add uevent for the veth uev0")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("uevent reader still running after ctx ended")
	}
}

// TestKernelSubscribeLinksKernel: Kernel{Links: true} reports a link
// created in its netns by name, and closes its channel when ctx ends.
func TestKernelSubscribeLinksKernel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ch <-chan Event
	h := inNewNetns(t, func() {
		var err error
		if ch, err = (Kernel{Links: true}).Subscribe(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lnk0"}, PeerName: "lnk1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for found := false; !found; {
		select {
		case ev := <-ch:
			found = ev.Origin == OriginLink && ev.Action == "newlink" && ev.IfName == "lnk0"
		case <-deadline:
			t.Fatal("no link event for the veth lnk0")
		}
	}
	cancel()
	deadline = time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("event channel not closed after ctx ended")
		}
	}
}

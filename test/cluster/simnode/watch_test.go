package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
)

// newNetns makes a new network namespace without leaving the caller's;
// the caller closes the handle (which ends the namespace).
func newNetns(t *testing.T) netns.NsHandle { return nlinktest.InNewNetns(t, nil) }

// TestWatchReturnsNetdevLikeTheKernel: a simulated netdev in a netns that
// dies comes back to the "host" (a netns of the test) as the kernel
// returns a physical netdev: down, with the ifindex, MAC and MTU it had in
// the pod, named as in the pod, or dev<ifindex> when the host has that
// name; and its host peer keeps its ifindex (the driver's identity of it).
func TestWatchReturnsNetdevLikeTheKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	host := newNetns(t)
	defer host.Close()
	hh, err := netlink.NewHandleAt(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	hostMAC, _ := net.ParseMAC("02:00:00:00:aa:01")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sdvf0", HardwareAddr: hostMAC}, PeerName: "sdvf0p"}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	vf, err := hh.LinkByName("sdvf0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := hh.LinkByName("sdvf0p")
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	vfIndex, peerIndex := vf.Attrs().Index, peer.Attrs().Index

	w, err := newWatcher(host, []string{"sdvf0"}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready, stopped := make(chan struct{}), make(chan error, 1)
	go func() { stopped <- w.run(ctx, ready) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("watcher: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-stopped:
		t.Fatalf("watcher did not start: %v", err)
	}

	for _, tc := range []struct {
		name      string
		hostTaken bool // a host link already has the pod's name
		mac       string
		mtu       int
	}{
		{name: "pod name free on the host", mac: "02:00:00:00:bb:01", mtu: 1400},
		{name: "pod name taken on the host", hostTaken: true, mac: "02:00:00:00:bb:02", mtu: 1300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := newNetns(t)
			ph, err := netlink.NewHandleAt(pod)
			if err != nil {
				pod.Close()
				t.Fatal(err)
			}
			cur, err := hh.LinkByIndex(vfIndex)
			if err != nil {
				t.Fatalf("netdev ifindex %d not on the host: %v", vfIndex, err)
			}
			if err := hh.LinkSetNsFd(cur, int(pod)); err != nil {
				t.Fatal(err)
			}
			l, err := ph.LinkByIndex(vfIndex)
			if err != nil {
				t.Fatal(err)
			}
			mac, _ := net.ParseMAC(tc.mac)
			for _, step := range []error{ph.LinkSetName(l, "net1"), ph.LinkSetHardwareAddr(l, mac), ph.LinkSetMTU(l, tc.mtu), ph.LinkSetUp(l)} {
				if step != nil {
					t.Fatal(step)
				}
			}
			want := "net1"
			if tc.hostTaken {
				// (No dummy links without modules: a veth pair holds the name.)
				if err := hh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "net1"}, PeerName: "blocker"}); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if d, err := hh.LinkByName("blocker"); err == nil {
						_ = hh.LinkDel(d)
					}
				}()
				want = "dev" + itoa(vfIndex)
			}
			// Let the watcher see the pod's changes, then the pod netns dies
			// (the handle's socket holds it too).
			time.Sleep(500 * time.Millisecond)
			ph.Close()
			pod.Close()

			// The watcher creates the pair, then sets the host peer up:
			// wait for both, or a loaded machine sees the peer between.
			var back netlink.Link
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if back, err = hh.LinkByIndex(vfIndex); err == nil && back.Type() == "veth" {
					if p, err := hh.LinkByName("sdvf0p"); err == nil && p.Attrs().Flags&net.FlagUp != 0 {
						break
					}
				}
				back = nil
				time.Sleep(100 * time.Millisecond)
			}
			if back == nil {
				t.Fatalf("netdev ifindex %d did not come back to the host", vfIndex)
			}
			a := back.Attrs()
			if a.Name != want || a.HardwareAddr.String() != tc.mac || a.MTU != tc.mtu || a.Flags&net.FlagUp != 0 {
				t.Errorf("came back as %s MAC %s MTU %d flags %v; want %s MAC %s MTU %d, down", a.Name, a.HardwareAddr, a.MTU, a.Flags, want, tc.mac, tc.mtu)
			}
			p, err := hh.LinkByName("sdvf0p")
			if err != nil {
				t.Fatalf("host peer not re-created: %v", err)
			}
			if p.Attrs().Index != peerIndex || a.ParentIndex != peerIndex || p.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("host peer ifindex %d (netdev tied to %d, up %v); want %d, up", p.Attrs().Index, a.ParentIndex, p.Attrs().Flags&net.FlagUp != 0, peerIndex)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

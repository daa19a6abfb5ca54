package netattach

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func TestSpecValidation(t *testing.T) {
	good := Spec{HostIfName: "ens1f0v1", PodIfName: "net1", MTU: 9000, MAC: "02:00:00:00:00:01",
		Addresses: []string{"10.1.0.5/24", "fd00::5/64"},
		Routes:    []Route{{Dst: "0.0.0.0/0", GW: "10.1.0.1"}, {Dst: "fd01::/64"}, {Dst: "10.2.0.0/16"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range []struct {
		mut   func(*Spec)
		field string
	}{
		{func(s *Spec) { s.HostIfName = "" }, "hostIfName"},
		{func(s *Spec) { s.PodIfName = "a-name-that-is-too-long" }, "podIfName"},
		{func(s *Spec) { s.PodIfName = "net/1" }, "podIfName"},
		{func(s *Spec) { s.PodIfName = ".." }, "podIfName"},
		{func(s *Spec) { s.MTU = 10 }, "mtu"},
		{func(s *Spec) { s.MAC = "xx" }, "mac"},
		{func(s *Spec) { s.MAC = "01:00:5e:00:00:01" }, "mac"},
		{func(s *Spec) { s.Addresses = []string{"10.1.0.5"} }, "addresses"},
		{func(s *Spec) { s.Routes = []Route{{Dst: "10.0.0.0"}} }, "routes"},
		{func(s *Spec) { s.Routes = []Route{{Dst: "10.0.0.0/8", GW: "nope"}} }, "routes"},
		{func(s *Spec) { s.Routes = []Route{{Dst: "10.0.0.0/8", GW: "fd00::1"}} }, "different IP families"},
	} {
		s := good
		tc.mut(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("spec %+v: err = %v, want one naming %q", s, err, tc.field)
			continue
		}
		// Attach refuses it before touching anything.
		f := nlinktest.New()
		opened := false
		a := attacher{openPod: func(string) (nlink.Handle, error) { opened = true; return f, nil }, hostNsPath: HostNetnsPath}
		if _, err := a.attach(context.Background(), f, "/nonexistent", s, Identity{PCIAddress: "0000:3b:02.0"}); err == nil {
			t.Errorf("attach with bad spec %+v succeeded", s)
		}
		if opened || len(f.Calls()) != 0 {
			t.Errorf("attach with bad spec made calls: %v", f.Calls())
		}
	}
}

func TestAnnouncementPackets(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	g := garp(mac, net.ParseIP("10.1.0.5"))
	if len(g) != 28 || g[7] != 1 || !net.IP(g[14:18]).Equal(net.ParseIP("10.1.0.5")) || !net.IP(g[24:28]).Equal(net.ParseIP("10.1.0.5")) {
		t.Errorf("bad gratuitous ARP %x", g)
	}
	na := unsolicitedNA(mac, net.ParseIP("fd00::5"))
	icmp := na[40:]
	if icmp[0] != 136 || icmp[4]&0x20 == 0 || !net.IP(icmp[8:24]).Equal(net.ParseIP("fd00::5")) || net.HardwareAddr(icmp[26:32]).String() != mac.String() {
		t.Errorf("bad NA %x", na)
	}
	// A correct checksum sums to zero with the pseudo-header.
	if c := icmpv6Checksum(na[8:24], na[24:40], icmp); c != 0 {
		t.Errorf("NA checksum does not verify: %#x", c)
	}
}

type kind string

const (
	kindVeth    kind = "veth"
	kindMacvlan kind = "macvlan"
)

func newStandIn(t *testing.T, h *nlink.Real, k kind, name, mac string, mtu int) netlink.Link {
	if k == kindMacvlan {
		return newMacvlan(t, h, name, name+"l", mac, mtu)
	}
	return newVeth(t, h, name, name+"p", mac, mtu)
}

func fullSpec(host string) Spec {
	return Spec{HostIfName: host, PodIfName: "net1", MTU: 1400, MAC: "02:11:22:33:44:55",
		Addresses: []string{"10.77.0.5/24", "fd77::5/64"},
		Routes:    []Route{{Dst: "10.78.0.0/16", GW: "10.77.0.1"}, {Dst: "0.0.0.0/0", GW: "10.77.0.1"}, {Dst: "fd78::/64"}}}
}

func checkInPod(t *testing.T, pod *nlink.Real, spec Spec) {
	t.Helper()
	l := mustLink(t, pod, spec.PodIfName)
	if got := stateOf(l); got != (linkState{Name: spec.PodIfName, MAC: spec.MAC, MTU: spec.MTU, Up: true}) {
		t.Errorf("in pod: %+v", got)
	}
	addrs, err := pod.AddrList(l, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range addrs {
		have[a.IPNet.String()] = true
	}
	for _, a := range spec.Addresses {
		if !have[a] {
			t.Errorf("address %s missing in pod (have %v)", a, have)
		}
	}
	routes, err := pod.RouteList(l, unix.AF_UNSPEC)
	if err != nil {
		t.Fatal(err)
	}
	rs := map[string]bool{}
	for _, r := range routes {
		d := "default"
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 {
				d = r.Dst.String()
			}
		}
		rs[d+" via "+r.Gw.String()] = true
	}
	for _, want := range []string{"10.78.0.0/16 via 10.77.0.1", "default via 10.77.0.1", "fd78::/64 via <nil>"} {
		if !rs[want] {
			t.Errorf("route %q missing in pod (have %v)", want, rs)
		}
	}
}

func TestAttachDetachRoundTrip(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	for _, k := range []kind{kindVeth, kindMacvlan} {
		t.Run(string(k), func(t *testing.T) {
			pfx, host, nsPath, pod := newPodBed(t)
			hl := newStandIn(t, host, k, pfx+"vf", "02:aa:00:00:00:01", 1500)
			if err := host.LinkSetUp(hl); err != nil {
				t.Fatal(err)
			}
			before := stateOf(mustLink(t, host, pfx+"vf"))
			spec := fullSpec(pfx + "vf")

			read, err := ReadOriginal(ctx, host, spec.HostIfName, "")
			if err != nil {
				t.Fatal(err)
			}
			orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
			if err != nil {
				t.Fatal(err)
			}
			if orig != read || orig.IfName != before.Name || orig.MAC != before.MAC || orig.MTU != before.MTU || !orig.Up {
				t.Errorf("Original = %+v, ReadOriginal = %+v, host before = %+v", orig, read, before)
			}
			absent(t, host, spec.HostIfName, "on the host")
			checkInPod(t, pod, spec)
			if in, err := InNetns(ctx, nsPath, spec.PodIfName, orig.Identity); err != nil || !in {
				t.Errorf("InNetns = %v, %v", in, err)
			}

			// A retried attach configures in place.
			again, err := Attach(ctx, host, nsPath, spec, orig.Identity)
			if err != nil || again != (Original{}) {
				t.Errorf("second Attach = %+v, %v", again, err)
			}
			checkInPod(t, pod, spec)

			for i := 0; i < 2; i++ {
				if err := Detach(ctx, host, nsPath, spec.PodIfName, orig); err != nil {
					t.Fatalf("detach #%d: %v", i+1, err)
				}
				if got := stateOf(mustLink(t, host, spec.HostIfName)); got != before {
					t.Errorf("after detach #%d: %+v, want %+v", i+1, got, before)
				}
				absent(t, pod, spec.PodIfName, "in the pod")
			}
		})
	}
}

func TestAttachNameClashInPod(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:02")

	// The pod already has net1: refused, nothing moves.
	if err := pod.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "net1"}, PeerName: "net1p"}); err != nil {
		t.Fatal(err)
	}
	_, err := Attach(ctx, host, nsPath, Spec{HostIfName: pfx + "vf", PodIfName: "net1"}, idOf(t, host, pfx+"vf"))
	if err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("attach onto a taken pod name: err = %v", err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("host link changed: %+v, want %+v", got, before)
	}

	// The pod has a link with the host's name: the one-request move
	// renames on the way in.
	if err := pod.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pfx + "vf"}, PeerName: pfx + "x"}); err != nil {
		t.Fatal(err)
	}
	orig, err := Attach(ctx, host, nsPath, Spec{HostIfName: pfx + "vf", PodIfName: "net2", Addresses: []string{"10.79.0.2/24"}}, idOf(t, host, pfx+"vf"))
	if err != nil {
		t.Fatalf("attach with the host name taken in the pod: %v", err)
	}
	if got := stateOf(mustLink(t, pod, "net2")); got.MAC != before.MAC {
		t.Errorf("net2 in pod: %+v", got)
	}
	if got := stateOf(mustLink(t, pod, pfx+"vf")); got.MAC == before.MAC {
		t.Errorf("the pod's own %svf was disturbed", pfx)
	}
	// Detach back: its host name is taken in the pod, so it goes through
	// a parking name.
	if err := Detach(ctx, host, nsPath, "net2", orig); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("after detach: %+v, want %+v", got, before)
	}
}

func TestDetachHostNameTaken(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:03")
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1300, MAC: "02:bb:00:00:00:03"}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile something else took the host name.
	newVeth(t, host, pfx+"vf", pfx+"q", "02:cc:00:00:00:03", 1500)
	err = Detach(ctx, host, nsPath, "net1", orig)
	park := parkName(orig)
	if err == nil || !strings.Contains(err.Error(), park) {
		t.Fatalf("detach with the host name taken: err = %v, want one naming %s", err, park)
	}
	t.Cleanup(func() { delLink(host, park) })
	absent(t, pod, "net1", "in the pod")
	if got := stateOf(mustLink(t, host, park)); got.MAC != before.MAC || got.MTU != before.MTU {
		t.Errorf("parked link: %+v, want MAC/MTU of %+v", got, before)
	}
	// The intruder leaves; a retried detach finishes the job.
	delLink(host, pfx+"vf")
	if err := Detach(ctx, host, nsPath, "net1", orig); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("after retried detach: %+v, want %+v", got, before)
	}
	absent(t, host, park, "on the host")
}

// TestDetachNetnsGone simulates what the kernel does to a physical netdev
// when its netns is destroyed: it comes back to the init netns under its
// pod name. Virtual links (veth, macvlan) are destroyed with the netns
// instead, so the test moves the link back itself, keeping its pod name,
// then deletes the netns and detaches.
func TestDetachNetnsGone(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	for _, k := range []kind{kindVeth, kindMacvlan} {
		t.Run(string(k), func(t *testing.T) {
			pfx, host, nsPath, pod := newPodBed(t)
			newStandIn(t, host, k, pfx+"vf", "02:aa:00:00:00:04", 1500)
			before := stateOf(mustLink(t, host, pfx+"vf"))
			podName := pfx + "p1" // unique on the host too
			orig, err := Attach(ctx, host, nsPath, Spec{HostIfName: pfx + "vf", PodIfName: podName, MTU: 1280, MAC: "02:bb:00:00:00:04"}, idOf(t, host, pfx+"vf"))
			if err != nil {
				t.Fatal(err)
			}
			self, err := os.Open(HostNetnsPath)
			if err != nil {
				t.Fatal(err)
			}
			defer self.Close()
			if err := pod.LinkSetNsFd(mustLink(t, pod, podName), int(self.Fd())); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { delLink(host, podName) })
			pod.Close()
			if err := os.Remove(nsPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				_ = unix.Unmount(nsPath, unix.MNT_DETACH)
				_ = os.Remove(nsPath)
			}
			if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
				if err := unix.Unmount(nsPath, unix.MNT_DETACH); err != nil {
					t.Fatalf("unmount %s: %v", nsPath, err)
				}
				_ = os.Remove(nsPath)
			}
			if in, err := InNetns(ctx, nsPath, podName, orig.Identity); err != nil || in {
				t.Errorf("InNetns on a gone netns = %v, %v", in, err)
			}
			for i := 0; i < 2; i++ {
				if err := Detach(ctx, host, nsPath, podName, orig); err != nil {
					t.Fatalf("detach #%d: %v", i+1, err)
				}
				if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
					t.Errorf("after detach #%d: %+v, want %+v", i+1, got, before)
				}
			}
		})
	}
}

func TestAttachUndoesMoveOnFailure(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "vfp", "02:aa:00:00:00:05")
	spec := fullSpec(pfx + "vf")
	// MTU, MAC, 2 addresses, up, 3 routes: 8 configuring calls.
	for n := 0; n < 8; n++ {
		var w *failing
		a := attacher{hostNsPath: HostNetnsPath, openPod: func(p string) (nlink.Handle, error) {
			h, err := openAt(p)
			if err != nil {
				return nil, err
			}
			w = &failing{Handle: h, n: n}
			return w, nil
		}}
		_, err := a.attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
		if !errors.Is(err, errInjected) {
			t.Fatalf("failing call %d: err = %v", n, err)
		}
		if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
			t.Errorf("failing call %d (%s): host link %+v, want %+v", n, w.calls[n], got, before)
		}
		absent(t, pod, spec.PodIfName, "in the pod")
	}
}

func TestAnnounceOnAttach(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	pfx := runPrefix(t)
	host := hostHandle(t)
	nsPath := newNetns(t, pfx+"ns")
	newVeth(t, host, pfx+"vf", pfx+"pe", "02:aa:00:00:00:06", 1500)
	peer := mustLink(t, host, pfx+"pe")
	if err := host.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: peer.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MAC: "02:bb:00:00:00:06", Addresses: []string{"10.80.0.6/24", "fd80::6/64"}}
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Detach(ctx, host, nsPath, "net1", orig) })
	sawARP, sawNA := false, false
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && (!sawARP || !sawNA); {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		ll := from.(*unix.SockaddrLinklayer)
		p := buf[:n]
		switch htons(ll.Protocol) {
		case unix.ETH_P_ARP:
			if n >= 28 && net.IP(p[14:18]).Equal(net.ParseIP("10.80.0.6")) && net.HardwareAddr(p[8:14]).String() == spec.MAC {
				sawARP = true
			}
		case unix.ETH_P_IPV6:
			if n >= 72 && p[6] == unix.IPPROTO_ICMPV6 && p[40] == 136 && net.IP(p[48:64]).Equal(net.ParseIP("fd80::6")) {
				sawNA = true
			}
		}
	}
	if !sawARP || !sawNA {
		t.Errorf("announcements seen on the peer: gratuitous ARP %v, unsolicited NA %v", sawARP, sawNA)
	}
}

func TestConcurrentAttach32(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	const n = 32
	pfx := runPrefix(t)
	host := hostHandle(t)
	paths := make([]string, n)
	befores := make([]linkState, n)
	specs := make([]Spec, n)
	ids := make([]Identity, n)
	for i := 0; i < n; i++ {
		paths[i] = newNetns(t, fmt.Sprintf("%sn%d", pfx, i))
		name := fmt.Sprintf("%sv%d", pfx, i)
		newVeth(t, host, name, fmt.Sprintf("%sp%d", pfx, i), fmt.Sprintf("02:aa:00:00:01:%02x", i), 1500)
		befores[i] = stateOf(mustLink(t, host, name))
		ids[i] = idOf(t, host, name)
		specs[i] = Spec{HostIfName: name, PodIfName: "net1", MTU: 1400, MAC: fmt.Sprintf("02:bb:00:00:01:%02x", i),
			Addresses: []string{fmt.Sprintf("10.81.%d.2/24", i)}, Routes: []Route{{Dst: "0.0.0.0/0", GW: fmt.Sprintf("10.81.%d.1", i)}}}
	}
	origs := make([]Original, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			origs[i], errs[i] = Attach(ctx, host, paths[i], specs[i], ids[i])
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("attach %d: %v", i, errs[i])
		}
		pod := podHandle(t, paths[i])
		if got := stateOf(mustLink(t, pod, "net1")); got != (linkState{Name: "net1", MAC: specs[i].MAC, MTU: 1400, Up: true}) {
			t.Errorf("pod %d: %+v", i, got)
		}
		absent(t, host, specs[i].HostIfName, "on the host")
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = Detach(ctx, host, paths[i], "net1", origs[i])
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Errorf("detach %d: %v", i, errs[i])
			continue
		}
		if got := stateOf(mustLink(t, host, specs[i].HostIfName)); got != befores[i] {
			t.Errorf("host %d after detach: %+v, want %+v", i, got, befores[i])
		}
	}
}

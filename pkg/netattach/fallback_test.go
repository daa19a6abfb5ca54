package netattach

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// plain hides the one-request move (nlink.NsRenamer) of a handle, so the
// two-step paths run: move then rename in, park then move out.
type plain struct{ nlink.Handle }

func TestAttachDetachWithoutOneRequestMove(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	pfx, host, nsPath, pod := newPodBed(t)
	a := attacher{hostNsPath: HostNetnsPath, openPod: func(p string) (nlink.Handle, error) {
		h, err := openAt(p)
		if err != nil {
			return nil, err
		}
		return plain{h}, nil
	}}
	for _, clash := range []bool{false, true} {
		t.Run(fmt.Sprintf("host name taken in pod=%v", clash), func(t *testing.T) {
			name := fmt.Sprintf("%sv%v", pfx, clash)[:10]
			newVeth(t, host, name, name+"p", "02:aa:00:00:00:0a", 1500)
			if clash {
				if err := pod.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "q"}); err != nil {
					t.Fatal(err)
				}
			}
			before := stateOf(mustLink(t, host, name))
			spec := Spec{HostIfName: name, PodIfName: "net1", MTU: 1450, MAC: "02:bb:00:00:00:0a", Addresses: []string{"10.84.0.2/24"}}
			orig, err := a.attach(ctx, plain{host}, nsPath, spec, idOf(t, host, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := stateOf(mustLink(t, pod, "net1")); got != (linkState{Name: "net1", MAC: spec.MAC, MTU: 1450, Up: true}) {
				t.Errorf("in pod: %+v", got)
			}
			absent(t, host, name, "on the host")
			if err := a.detach(ctx, plain{host}, nsPath, "net1", orig); err != nil {
				t.Fatal(err)
			}
			if got := stateOf(mustLink(t, host, name)); got != before {
				t.Errorf("after detach: %+v, want %+v", got, before)
			}
			absent(t, pod, "net1", "in the pod")
		})
	}
}

// TestDetachFindsDevIfindex covers a netdev the kernel returned from a
// dying netns as dev<ifindex> because its pod name was taken on the host
// (simulated like TestDetachNetnsGone).
func TestDetachFindsDevIfindex(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "pe", "02:aa:00:00:00:0b")
	orig, err := Attach(ctx, host, nsPath, Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1300, MAC: "02:bb:00:00:00:0b"}, idOf(t, host, pfx+"vf"))
	if err != nil {
		t.Fatal(err)
	}
	if orig.IfIndex == 0 {
		t.Fatal("Original has no ifindex")
	}
	self, err := os.Open(HostNetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	devName := fmt.Sprintf("dev%d", orig.IfIndex)
	if err := pod.LinkSetNsFdAndName(mustLink(t, pod, "net1"), int(self.Fd()), devName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { delLink(host, devName) })
	if err := Detach(ctx, host, nsPath, "net1", orig); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
		t.Errorf("after detach: %+v, want %+v", got, before)
	}
	// A link that is nowhere is a clear error.
	missing := Original{IfName: pfx + "zz", MAC: "02:00:00:00:00:99", MTU: 1500, Identity: Identity{PCIAddress: "0000:ff:1f.7"}}
	err = Detach(ctx, host, nsPath, "net7", missing)
	if !errors.Is(err, ErrDeviceGone) || !strings.Contains(err.Error(), "PCI 0000:ff:1f.7") || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("detach of a missing link: err = %v", err)
	}
}

// TestDetachFailureAtEveryCallThenRetry fails each pod-side change of a
// detach in turn; a retried detach then always restores the host link.
func TestDetachFailureAtEveryCallThenRetry(t *testing.T) {
	ctx, pfx, host, nsPath, pod, before := newVFBed(t, "pe", "02:aa:00:00:00:0c")
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1300, MAC: "02:bb:00:00:00:0c", Addresses: []string{"10.85.0.2/24"}}
	withFail := func(n int, w **failing) attacher {
		return attacher{hostNsPath: HostNetnsPath, openPod: func(p string) (nlink.Handle, error) {
			h, err := openAt(p)
			if err != nil {
				return nil, err
			}
			*w = &failing{Handle: h, n: n}
			return *w, nil
		}}
	}
	// Count the pod-side changes of a clean detach.
	orig, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err != nil {
		t.Fatal(err)
	}
	var w *failing
	if err := withFail(1<<30, &w).detach(ctx, host, nsPath, "net1", orig); err != nil {
		t.Fatal(err)
	}
	calls := append([]string(nil), w.calls...)
	if len(calls) < 3 {
		t.Fatalf("a detach made only %v", calls)
	}
	for n := range calls {
		if _, err := Attach(ctx, host, nsPath, spec, orig.Identity); err != nil {
			t.Fatalf("re-attach before failing call %d: %v", n, err)
		}
		// A failed step either fails the detach or has a fallback (a
		// refused one-request move goes through the parking name); a
		// detach that reports success must have restored everything.
		if err := withFail(n, &w).detach(ctx, host, nsPath, "net1", orig); err == nil {
			if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
				t.Errorf("failing call %d (%s): detach succeeded but left %+v, want %+v", n, calls[n], got, before)
			}
		}
		if err := Detach(ctx, host, nsPath, "net1", orig); err != nil {
			t.Fatalf("retry after failing call %d (%s): %v", n, calls[n], err)
		}
		if got := stateOf(mustLink(t, host, pfx+"vf")); got != before {
			t.Errorf("after failing call %d (%s) and a retry: %+v, want %+v", n, calls[n], got, before)
		}
		absent(t, pod, "net1", "in the pod")
	}
}

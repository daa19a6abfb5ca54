package netattach

import (
	"context"
	"strings"
	"testing"
)

// TestAttachMTUAboveDeviceMax: a claim's mtu that the device does not
// take (a VF bounded by its PF, here a macvlan bounded by its 1500-byte
// parent) fails the attach with the MTU named, and the device is back on
// the host as it was: name, MAC, MTU, up.
func TestAttachMTUAboveDeviceMax(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	pfx, host, nsPath, pod := newPodBed(t)
	hl := newMacvlan(t, host, pfx+"vf", pfx+"vfl", "02:aa:00:00:00:31", 1500)
	if err := host.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	before := stateOf(mustLink(t, host, pfx+"vf"))
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 9000, Addresses: []string{"10.79.0.5/24"}}

	_, err := Attach(ctx, host, nsPath, spec, idOf(t, host, spec.HostIfName))
	if err == nil || !strings.Contains(err.Error(), "set MTU 9000") {
		t.Fatalf("Attach with MTU 9000 above the device's 1500 = %v, want an error naming set MTU 9000", err)
	}
	if got := stateOf(mustLink(t, host, spec.HostIfName)); got != before {
		t.Errorf("host link after the refused attach: %+v, want %+v", got, before)
	}
	absent(t, pod, spec.PodIfName, "in the pod")
}

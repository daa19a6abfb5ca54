//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const taintKey = driverName + "/unhealthy"

// vfTaints returns the health taint value of each published VF of the
// simulated PF ("" for none), by device name.
func vfTaints(t *testing.T, e *env) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, d := range publishedDevices(t, e.cs) {
		if strAttr(d, "kind") != "vf" || strAttr(d, "pfName") != simPF {
			continue
		}
		out[name] = ""
		for _, taint := range d.Taints {
			if taint.Key == taintKey && taint.Effect == resourceapi.DeviceTaintEffectNoSchedule {
				out[name] = taint.Value
			}
		}
	}
	return out
}

func setPFLink(name string, up bool) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find PF link %s: %w", name, err)
	}
	if up {
		err = netlink.LinkSetUp(l)
	} else {
		err = netlink.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set PF link %s up=%v: %w", name, up, err)
	}
	return nil
}

// allVFTaints waits until every VF of the simulated PF has taint value want.
func allVFTaints(t *testing.T, e *env, want string, timeout time.Duration) {
	t.Helper()
	var got map[string]string
	waitFor(t, timeout, fmt.Sprintf("VFs of %s with taint %q", simPF, want), func() (bool, error) {
		got = vfTaints(t, e)
		if len(got) != simVFs {
			return false, nil
		}
		for _, v := range got {
			if v != want {
				return false, nil
			}
		}
		return true, nil
	})
}

// Health reaches the scheduler: with the simulated PF's link down, its VFs
// are published with a NoSchedule taint; a new claim for a VF is not
// allocated one (the node has no other VF, so it stays pending), while a
// claim that tolerates the taint is; with the link up again the taint goes
// and the pending claim gets a VF. The link is restored (and the taints
// awaited gone) even when the test fails, so later tests see a healthy PF.
func TestHealthTaint(t *testing.T) {
	e := setup(t)
	requireFeature(t, e, "DRADeviceTaints", "health taints on ResourceSlice devices")
	ctx := context.Background()
	allVFTaints(t, e, "", 30*time.Second)

	t.Cleanup(func() {
		if err := setPFLink(simPF, true); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		allVFTaints(t, e, "", 60*time.Second)
	})
	if err := setPFLink(simPF, false); err != nil {
		t.Fatal(err)
	}
	allVFTaints(t, e, "pf-link-down", 30*time.Second)

	// A claim that does not tolerate the taint: no VF for it.
	e.template(t, "vf", vfClass, "", nil)
	e.pod(t, "waits", "vf")
	e.waitUnschedulable(t, "waits")

	// A claim that tolerates it gets one of the tainted VFs.
	tolerant := &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "tolerant", Namespace: e.namespace},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "dev", Exactly: &resourceapi.ExactDeviceRequest{
				DeviceClassName: vfClass,
				Tolerations: []resourceapi.DeviceToleration{{
					Key: taintKey, Operator: resourceapi.DeviceTolerationOpExists, Effect: resourceapi.DeviceTaintEffectNoSchedule,
				}},
			}}},
		}}},
	}
	if _, err := e.cs.ResourceV1().ResourceClaimTemplates(e.namespace).Create(ctx, tolerant, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ResourceClaimTemplate tolerant: %v", err)
	}
	e.pod(t, "tolerant", "tolerant")
	waitFor(t, 60*time.Second, "claim of the tolerating pod allocated", func() (bool, error) {
		c := e.claimOf(t, "tolerant")
		return c.Status.Allocation != nil, nil
	})
	dev, _ := allocatedIfName(t, e.cs, e.claimOf(t, "tolerant"))
	if v, ok := vfTaints(t, e)[dev]; !ok || v != "pf-link-down" {
		t.Errorf("tolerating claim got %s (taint %q), want a tainted VF of %s", dev, v, simPF)
	}
	e.deletePod(t, "tolerant")
	if c := e.claimOf(t, "waits"); c.Status.Allocation != nil {
		t.Fatalf("claim %s was allocated %v while every VF is tainted", c.Name, c.Status.Allocation.Devices.Results)
	}

	// Link up: the taints go and the waiting pod gets a VF.
	if err := setPFLink(simPF, true); err != nil {
		t.Fatal(err)
	}
	allVFTaints(t, e, "", 30*time.Second)
	e.waitRunning(t, "waits", 120*time.Second)
	if dev, _ := allocatedIfName(t, e.cs, e.claimOf(t, "waits")); dev == "" {
		t.Error("waiting pod runs without a VF")
	}
}

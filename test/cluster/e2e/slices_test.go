//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodeSlices lists the node's ResourceSlices of the driver.
func (e *env) nodeSlices(t *testing.T) []resourceapi.ResourceSlice {
	t.Helper()
	l, err := e.cs.ResourceV1().ResourceSlices().List(context.Background(), metav1.ListOptions{
		FieldSelector: "spec.driver=" + driverName + ",spec.nodeName=" + nodeName,
	})
	if err != nil {
		t.Fatalf("list ResourceSlices: %v", err)
	}
	return l.Items
}

// sliceVersions maps each slice's name to its UID and resourceVersion.
func sliceVersions(ss []resourceapi.ResourceSlice) map[string]string {
	out := map[string]string{}
	for _, s := range ss {
		out[s.Name] = fmt.Sprintf("%s/%s", s.UID, s.ResourceVersion)
	}
	return out
}

// The ResourceSlice publisher against the real API server: a restarted
// driver adopts its slices without a write; a slice someone else deletes
// or changes is restored within seconds, at a higher pool generation.
func TestResourceSliceKept(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	before := e.nodeSlices(t)
	if len(before) != 1 {
		t.Fatalf("%d ResourceSlices of node %s, want 1", len(before), nodeName)
	}
	want := len(before[0].Spec.Devices)

	// Restart: the slice is adopted as it is.
	e.restartDriver(t, true)
	time.Sleep(5 * time.Second) // the new driver has published by now
	after := e.nodeSlices(t)
	if a, b := sliceVersions(before), sliceVersions(after); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("a driver restart on an unchanged node rewrote the slices: %v -> %v", a, b)
	}

	// Someone else deletes the slice: it is back.
	gen := after[0].Spec.Pool.Generation
	if err := e.cs.ResourceV1().ResourceSlices().Delete(ctx, after[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the slice: %v", err)
	}
	start := time.Now()
	var back []resourceapi.ResourceSlice
	waitFor(t, 15*time.Second, "the deleted ResourceSlice restored", func() (bool, error) {
		back = e.nodeSlices(t)
		return len(back) == 1 && len(back[0].Spec.Devices) == want, nil
	})
	t.Logf("deleted slice restored after %v", time.Since(start).Round(10*time.Millisecond))
	if back[0].Spec.Pool.Generation <= gen || back[0].Spec.Pool.ResourceSliceCount != 1 {
		t.Errorf("restored slice has pool %+v, want a generation above %d and 1 slice", back[0].Spec.Pool, gen)
	}
	if o := back[0].OwnerReferences; len(o) != 1 || o[0].Kind != "Node" || o[0].Name != nodeName {
		t.Errorf("restored slice owned by %+v, want node %s", o, nodeName)
	}

	// Someone else drops a device from it: the device is back.
	s := back[0].DeepCopy()
	s.Spec.Devices = s.Spec.Devices[1:]
	if _, err := e.cs.ResourceV1().ResourceSlices().Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update the slice: %v", err)
	}
	start = time.Now()
	waitFor(t, 15*time.Second, "the changed ResourceSlice restored", func() (bool, error) {
		ss := e.nodeSlices(t)
		return len(ss) == 1 && len(ss[0].Spec.Devices) == want, nil
	})
	t.Logf("changed slice restored after %v", time.Since(start).Round(10*time.Millisecond))

	// And then it stays as it is: no write while nothing changes.
	settled := sliceVersions(e.nodeSlices(t))
	time.Sleep(3 * time.Second)
	if now := sliceVersions(e.nodeSlices(t)); fmt.Sprint(now) != fmt.Sprint(settled) {
		t.Errorf("slices rewritten with nothing changed: %v -> %v", settled, now)
	}
}

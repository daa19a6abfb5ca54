//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// 12. A rolling update of the driver DaemonSet (as `kubectl apply` of a new
// image does) finishes on the node while a pod holds a VF: the update
// strategy of deployments/base lets the new pod be scheduled, the running
// pod keeps its device, and the new driver releases it when the pod goes.
func TestDriverRollingUpdate(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	e.template(t, "vf", vfClass, vfSelector, config("VfConfig", map[string]any{
		"ifName": "net1", "ipam": hostLocal("192.168.90.0/24", "", ""),
	}))
	e.pod(t, "holder", "vf")
	e.waitRunning(t, "holder", 90*time.Second)
	_, hostIf := allocatedIfName(t, e.cs, e.claimOf(t, "holder"))

	_, oldPod := e.driverServiceAccount(t)
	ds, err := e.cs.AppsV1().DaemonSets(driverNamespace).Get(ctx, "sriov-dra", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A surge update: count the driver pods running at the same time,
	// from a watch (every change is seen; polling missed the overlap of a
	// fast rollout, about a second).
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=sriov-dra"}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := e.cs.CoreV1().Pods(driverNamespace).Watch(watchCtx, sel)
	if err != nil {
		t.Fatalf("watch the driver pods: %v", err)
	}
	overlapc := make(chan int, 1)
	go func() {
		running, most := map[types.UID]bool{}, 0
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			running[p.UID] = ev.Type != "DELETED" && p.Status.Phase == corev1.PodRunning
			n := 0
			for _, r := range running {
				if r {
					n++
				}
			}
			most = max(most, n)
		}
		overlapc <- most
	}()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"e2e.sriov.dra.dev/rollout":%q}}}}}`, e.namespace)
	if _, err := e.cs.AppsV1().DaemonSets(driverNamespace).Patch(ctx, "sriov-dra", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch the DaemonSet template: %v", err)
	}
	start := time.Now()
	waitFor(t, 120*time.Second, "the driver DaemonSet rolled out", func() (bool, error) {
		d, err := e.cs.AppsV1().DaemonSets(driverNamespace).Get(ctx, "sriov-dra", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s := d.Status
		return s.ObservedGeneration > ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
			s.NumberAvailable == s.DesiredNumberScheduled && s.NumberUnavailable == 0, nil
	})
	e.waitDriverReady(t)
	t.Logf("rolled out in %v", time.Since(start).Round(100*time.Millisecond))
	_, newPod := e.driverServiceAccount(t)
	if newPod.UID == oldPod.UID {
		t.Fatalf("the driver pod %s was not replaced", oldPod.Name)
	}
	stopWatch()
	w.Stop()
	overlap := <-overlapc
	if overlap < 2 {
		t.Errorf("at most %d driver pod(s) ran at once during the update, want the new one next to the old one (maxSurge 1)", overlap)
	}
	// The new daemon took the checkpoint over.
	if e.cdiDir != "" {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(e.cdiDir), "driver-state", "checkpoint.json"))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`\"owner\":\"%s\"`, newPod.UID); !strings.Contains(string(b), want) && !strings.Contains(string(b), strings.ReplaceAll(want, `\"`, `"`)) {
			t.Errorf("checkpoint owner is not the new driver pod %s: %s", newPod.UID, b)
		}
	}

	if got := podIPv4(e.exec(t, "holder", "ip", "-o", "-4", "addr", "show"), "net1"); len(got) != 1 {
		t.Errorf("after the update the pod has net1 %v", got)
	}
	e.deletePod(t, "holder")
	waitFor(t, 60*time.Second, hostIf+" back on the host", func() (bool, error) {
		_, err := netlink.LinkByName(hostIf)
		return err == nil, nil
	})
}

package reliability

import (
	"fmt"
	"sync"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"
)

// TestConcurrentPods prepares and attaches 64 pods at once (each its own
// claim, VF and netns), checks every pod's interface and that no device,
// MAC or address is shared, then tears all down at once; the host must be
// as before. Run with -race.
func TestConcurrentPods(t *testing.T) {
	const pods = 64
	n := newNode(t, pods)
	before := n.initialView(t)
	ctx := logCtx(t)
	var claims []*resourceapi.ResourceClaim
	for i := 0; i < pods; i++ {
		claims = append(claims, n.claim(i, ""))
	}
	dm, err := startDaemon(t, n, newAPI(claims...))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, pods)
	ids := make([][]string, pods)
	for i := 0; i < pods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg, id, err := dm.prepare(ctx, claims[i])
			if err == nil && msg != "" {
				err = fmt.Errorf("%s", msg)
			}
			if err == nil {
				err = dm.plugin.RunPodSandbox(ctx, n.sandbox(i))
			}
			errs[i], ids[i] = err, id
		}()
	}
	wg.Wait()
	took := time.Since(start)
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			t.Errorf("pod %d: %v", i, err)
		}
	}
	// No device, CDI ID, MAC or address shared.
	seen := map[string]int{}
	for i := 0; i < pods; i++ {
		dm.checkInPod(t, i)
		for _, d := range dm.d.State().ForPod(n.podUID(i)) {
			keys := append([]string{"device " + d.Device, "mac " + d.Spec.MAC}, d.Spec.Addresses...)
			for _, k := range keys {
				if j, dup := seen[k]; dup {
					t.Errorf("%s shared by pods %d and %d", k, j, i)
				}
				seen[k] = i
			}
		}
		for _, id := range ids[i] {
			if j, dup := seen["cdi "+id]; dup {
				t.Errorf("CDI ID %s shared by pods %d and %d", id, j, i)
			}
			seen["cdi "+id] = i
		}
	}
	for i := 0; i < pods; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := n.sandbox(i)
			err := dm.plugin.StopPodSandbox(ctx, pod)
			if err == nil && !dm.waitDetached(pod.Uid, 20*time.Second) {
				err = fmt.Errorf("not detached")
			}
			if err == nil {
				err = dm.plugin.RemovePodSandbox(ctx, pod)
			}
			if err == nil {
				err = unprepareOK(ctx, dm, claims[i])
			}
			if err != nil {
				t.Errorf("teardown pod %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range n.cleanErrors(t, dm, before) {
		t.Error(err)
	}
	result := fmt.Sprintf("no error, no device/MAC/address/CDI ID shared, every interface as configured, host as before (prepare+attach of all %d in %s)", pods, took.Round(100*time.Millisecond))
	if t.Failed() {
		result = fmt.Sprintf("FAIL: %d of %d pods failed; see the test log", failed, pods)
	}
	// The time varies from run to run: it goes to the log, not the table.
	t.Log(result)
	if !t.Failed() {
		result = "no error, no device/MAC/address/CDI ID shared, every interface as configured, host as before"
	}
	results.add("concurrency", "64", fmt.Sprintf("%d pods prepared (kubelet gRPC) and attached (RunPodSandbox) at once, then torn down at once, -race", pods), result)
	results.complete("concurrency")
}

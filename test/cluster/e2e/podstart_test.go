//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// podStartPods is how many pods of each kind TestPodStartLatency starts.
const podStartPods = 20

// TestPodStartLatency measures what a VF adds to a pod's start: the time
// from the pod's creation (the API call) to Running and Ready, seen by a
// watch, for 20 pods with a VF (a claim from a template, the netdev moved
// into the pod at RunPodSandbox, no IPAM) and 20 pods without one. The
// simulated node has simVFs VFs, so pods are created in rounds of simVFs
// at once, a round without VFs and a round with them in turn (the same
// load for both), and each round's pods are deleted (their VFs back on
// the host) before the next. It logs p50 and p99 of each kind and their
// difference; there is no threshold (docs/performance.md has the figures).
func TestPodStartLatency(t *testing.T) {
	e := setup(t)
	e.template(t, "vf", vfClass, vfSelector, nil)
	var plain, withVF []time.Duration
	for r := 0; r < podStartPods/simVFs; r++ {
		plain = append(plain, e.startRound(t, fmt.Sprintf("plain%d", r), "")...)
		withVF = append(withVF, e.startRound(t, fmt.Sprintf("vf%d", r), "vf")...)
	}
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		// Nearest rank.
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
	t.Logf("pod start (creation to Ready), %d pods per kind, rounds of %d created at once: without a VF p50 %s p99 %s; with a VF p50 %s p99 %s; added by the VF p50 %s p99 %s",
		len(plain), simVFs, ms(p(plain, 0.5)), ms(p(plain, 0.99)), ms(p(withVF, 0.5)), ms(p(withVF, 0.99)),
		ms(p(withVF, 0.5)-p(plain, 0.5)), ms(p(withVF, 0.99)-p(plain, 0.99)))
}

// startRound creates simVFs pods named <prefix>-<i> at once (with the
// template's claim when template is not ""), returns each one's time from
// its creation call to Ready, and deletes them, waiting until the
// simulated netdevs are all back on the host.
func (e *env) startRound(t *testing.T, prefix, template string) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	w, err := e.cs.CoreV1().Pods(e.namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch pods: %v", err)
	}
	defer w.Stop()
	names := make([]string, simVFs)
	created := make(map[string]time.Time, simVFs)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
		wg.Go(func() {
			start := time.Now()
			e.pod(t, names[i], template)
			mu.Lock()
			created[names[i]] = start
			mu.Unlock()
		})
	}
	ready := map[string]time.Time{}
	for len(ready) < len(names) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("pod watch ended with %d of %d pods of %s ready", len(ready), len(names), prefix)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted || !slices.Contains(names, p.Name) {
				continue
			}
			if p.Status.Phase == corev1.PodFailed {
				t.Fatalf("pod %s failed: %s", p.Name, p.Status.Message)
			}
			if _, seen := ready[p.Name]; !seen && podReady(p) {
				ready[p.Name] = time.Now()
			}
		case <-ctx.Done():
			t.Fatalf("%d of %d pods of %s ready after 3 min", len(ready), len(names), prefix)
		}
	}
	wg.Wait()
	out := make([]time.Duration, 0, len(names))
	for _, n := range names {
		out = append(out, ready[n].Sub(created[n]))
	}
	for _, n := range names {
		if err := e.cs.CoreV1().Pods(e.namespace).Delete(context.Background(), n, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete pod %s: %v", n, err)
		}
	}
	for _, n := range names {
		e.waitGone(t, n)
	}
	waitFor(t, 60*time.Second, "all simulated netdevs back on the host", func() (bool, error) {
		return len(missingHostLinks()) == 0, nil
	})
	return out
}

// waitGone waits until pod name is deleted.
func (e *env) waitGone(t *testing.T, name string) {
	t.Helper()
	waitFor(t, 90*time.Second, "pod "+name+" gone", func() (bool, error) {
		_, err := e.cs.CoreV1().Pods(e.namespace).Get(context.Background(), name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

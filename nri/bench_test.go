package nri

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
)

// The benchmarks time RunPodSandbox as the runtime sees it: the request
// through the real NRI protocol (adaptation -> ttrpc -> plugin), the
// records written and fsynced to a state file on every step (as the
// driver's checkpoint does), and the real attach (veth "VF" moved into a
// real netns, renamed, MTU, MAC, address, route, up). IPAM is done before,
// as at Prepare. The teardown between iterations is outside the timer.

func percentileMs(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.ReportMetric(percentileMs(lat, 0.50), "p50-ms")
	b.ReportMetric(percentileMs(lat, 0.99), "p99-ms")
}

func benchWorld(b *testing.B) *world {
	w := newWorld(b)
	w.devs.file = filepath.Join(b.TempDir(), "state.json")
	return w
}

func BenchmarkRunPodSandbox(b *testing.B) {
	w := benchWorld(b)
	ctx := context.Background()
	pod := w.pod("b", 1)
	runPlugin(b, w.plugin())

	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := w.rt.runPod(ctx, pod); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err := w.rt.stopPod(ctx, pod); err != nil {
			b.Fatal(err)
		}
		if d := w.devs.ForPod(pod.Uid)[0]; d.NetnsPath != "" {
			b.Fatalf("not detached: %+v", d)
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
}

func BenchmarkRunPodSandboxConcurrent64(b *testing.B) {
	const pods = 64
	w := benchWorld(b)
	ctx := context.Background()
	sandboxes := make([]*api.PodSandbox, pods)
	for i := range sandboxes {
		sandboxes[i] = w.pod(fmt.Sprintf("%02d", i), 1)
	}
	runPlugin(b, w.plugin())

	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		errs := make([]error, pods)
		for i, pod := range sandboxes {
			wg.Go(func() {
				start := time.Now()
				errs[i] = w.rt.runPod(ctx, pod)
				d := time.Since(start)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			})
		}
		wg.Wait()
		b.StopTimer()
		for i, err := range errs {
			if err != nil {
				b.Fatalf("pod %d: %v", i, err)
			}
		}
		for _, pod := range sandboxes {
			if err := w.rt.stopPod(ctx, pod); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
}

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
// driver's checkpoint does), and the attach. IPAM is done before, as at
// Prepare. The teardown between iterations is outside the timer.
//
// Sub-benchmarks:
//   - host=veth: the real attach (veth "VF" moved into a real netns,
//     renamed, MTU, MAC, address, route, up); needs root.
//   - host=fake: the in-memory host, to show what the plugin, the
//     protocol and the durable records cost without the kernel.
//   - host=fake,records=memory: neither kernel nor disk: the plugin and
//     the NRI protocol alone.
//
// Metrics: p50-ms/p99-ms are end to end, as the runtime waits for the
// request; hook-p50-ms/hook-p99-ms are the time inside the plugin's hook.
// The adaptation relays requests to plugins one at a time (one lock), so
// with 64 pods at once the end-to-end figure includes the wait for the
// requests before it.

func percentileMs(d []time.Duration, q float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / float64(time.Millisecond)
}

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func report(b *testing.B, e2e, hook *latencies) {
	b.ReportMetric(percentileMs(e2e.d, 0.50), "p50-ms")
	b.ReportMetric(percentileMs(e2e.d, 0.99), "p99-ms")
	b.ReportMetric(percentileMs(hook.d, 0.50), "hook-p50-ms")
	b.ReportMetric(percentileMs(hook.d, 0.99), "hook-p99-ms")
}

type benchCase struct {
	name     string
	realHost bool
	durable  bool // records fsynced to a file
}

var benchCases = []benchCase{
	{"host=veth", true, true},
	{"host=fake", false, true},
	{"host=fake,records=memory", false, false},
}

// benchSetup returns a world with n pods of one device each, and a running
// plugin whose RunPodSandbox latencies go to hook.
func benchSetup(b *testing.B, bc benchCase, n int, hook *latencies) (*world, []*api.PodSandbox) {
	realHost := bc.realHost
	var w *world
	if realHost {
		w = newWorld(b)
	} else {
		rec := (*recorder)(nil)
		w = &world{t: b, id: randHex(2), rt: newTestRuntime(b), devs: newMemDevices(rec)}
		w.host = newFakeHost(rec)
	}
	if bc.durable {
		w.devs.file = filepath.Join(b.TempDir(), "state.json")
	}
	pods := make([]*api.PodSandbox, n)
	for i := range pods {
		name := fmt.Sprintf("%02d", i)
		if realHost {
			pods[i] = w.pod(name, 1)
			continue
		}
		uid := "uid-" + name
		d := ethDevice("1")
		d.ClaimUID += "-" + name
		d.Spec.HostIfName += "-" + name
		w.devs.add(uid, d)
		w.host.(*fakeHost).addLink(d.Spec.HostIfName, "02:00:00:00:00:01", 1500)
		pods[i] = testSandbox(uid, "sb-"+name, "/run/netns/"+name)
	}
	p, err := New(Config{
		SocketPath: w.rt.socket,
		ObserveHook: func(h string, took time.Duration, err error) {
			if h == "RunPodSandbox" {
				hook.add(took)
			}
		},
	}, w.devs, w.host)
	if err != nil {
		b.Fatal(err)
	}
	runPlugin(b, p)
	return w, pods
}

func BenchmarkRunPodSandbox(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			var e2e, hook latencies
			w, pods := benchSetup(b, bc, 1, &hook)
			pod := pods[0]
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if err := w.rt.runPod(ctx, pod); err != nil {
					b.Fatal(err)
				}
				e2e.add(time.Since(start))
				b.StopTimer()
				if err := w.rt.stopPod(ctx, pod); err != nil {
					b.Fatal(err)
				}
				if d := w.devs.ForPod(pod.Uid)[0]; d.NetnsPath != "" {
					b.Fatalf("not detached: %+v", d)
				}
				b.StartTimer()
			}
			report(b, &e2e, &hook)
		})
	}
}

func BenchmarkRunPodSandboxConcurrent64(b *testing.B) {
	const n = 64
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			var e2e, hook latencies
			w, pods := benchSetup(b, bc, n, &hook)
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, pod := range pods {
					wg.Go(func() {
						start := time.Now()
						errs[i] = w.rt.runPod(ctx, pod)
						e2e.add(time.Since(start))
					})
				}
				wg.Wait()
				b.StopTimer()
				for i, err := range errs {
					if err != nil {
						b.Fatalf("pod %d: %v", i, err)
					}
				}
				for _, pod := range pods {
					if err := w.rt.stopPod(ctx, pod); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
			report(b, &e2e, &hook)
		})
	}
}

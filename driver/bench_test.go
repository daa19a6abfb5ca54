package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	resourceapi "k8s.io/api/resource/v1"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/cdi"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// noNodesKernel is the recording fake host without RDMA device nodes, so the
// real CDI writer (which checks nodes exist) can be used.
type noNodesKernel struct{ fakeKernel }

func (h *noNodesKernel) CDIInfo(context.Context, *inventory.Device, bool) ([]string, string, error) {
	return nil, "", nil
}

// BenchmarkPrepare measures Prepare throughput of one-device claims with
// VF settings, the checkpoint on disk (fsync'd: "started" and "completed"
// per claim) and real CDI spec files (fsync'd), with kubelet preparing 16
// pods at once (one NodePrepareResources call per pod, as kubelet does for
// pods starting together). Unprepare between rounds of 128 claims is not
// timed. BenchmarkPrepareSequential is the same one call at a time.
func BenchmarkPrepare(b *testing.B) { benchPrepare(b, 16) }

// BenchmarkPrepareSequential prepares one claim at a time.
func BenchmarkPrepareSequential(b *testing.B) { benchPrepare(b, 1) }

func benchPrepare(b *testing.B, parallel int) {
	e := newEnv(b, sysfstest.Scale(2, 64))
	dir := b.TempDir()
	e.store, e.bootID = fileStoreAt(b, filepath.Join(dir, "state"), "boot-1")
	cfg := e.config()
	cfg.Kernel = &noNodesKernel{fakeKernel{j: e.j, root: e.fix.Root}}
	cfg.CDI = cdi.New(filepath.Join(dir, "cdi"), "/")
	d, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	var devs []string
	for _, dev := range d.inventory().Publishable(nil) {
		if dev.Kind == inventory.KindVF {
			devs = append(devs, dev.Name)
		}
	}
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	var timed time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		round := min(len(devs), b.N-done)
		claims := make([]*resourceapi.ResourceClaim, round)
		for k := range claims {
			claims[k] = newClaim(fmt.Sprintf("uid-%d", done+k), fmt.Sprint(done+k), []resourceapi.DeviceRequestAllocationResult{result("net", devs[k])},
				opaque(`{"apiVersion":"sriov.dra.dev/v1alpha1","kind":"VfConfig","vlan":100,"spoofChk":false}`))
		}
		b.StartTimer()
		t0 := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := 0; w < parallel; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := int(next.Add(1)) - 1
					if k >= round {
						return
					}
					c := claims[k]
					s := time.Now()
					res, err := d.PrepareResourceClaims(ctx, []*resourceapi.ResourceClaim{c})
					lat[done+k] = time.Since(s)
					if err != nil || res[c.UID].Err != nil {
						b.Errorf("prepare: %v %v", err, res[c.UID].Err)
						return
					}
				}
			}()
		}
		wg.Wait()
		timed += time.Since(t0)
		b.StopTimer()
		if b.Failed() {
			b.FailNow()
		}
		unprepare(b, d, claims...)
		e.j.take()
		done += round
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/timed.Seconds(), "claims/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	// Peak resident memory of the process (test binary, fixture and all
	// prepared claims held: an upper bound for the daemon).
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MB")
	}
}

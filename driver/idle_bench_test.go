package driver

import (
	"context"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
)

// processCPU is the CPU time (user + system, every thread) the process
// has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleDaemon runs the driver's publish loop (Run: the device
// event loop, the safety-net full rescan, the checkpoint's drop-request
// poll, the stale-release retries) over 8 PFs x 128 VFs (1,032 fixture
// devices, each with a netdev and an RDMA device) with a device event
// source that stays quiet, for 60 s of wall time
// (IDLE_BENCH_SECONDS overrides), and nothing else running in the
// process. It reports core-pct: the process's CPU time (getrusage) over
// the wall time, in percent of one core (target < 0.5), at the daemon's
// GC goal (50) unless GOGC is set; cpu-ms: that CPU time; full-scans:
// safety-net rescans in the window (one at the default 1-minute interval:
// the window ends after it); api-writes: ResourceSlice publications in
// the window (want 0: nothing changed).
func BenchmarkIdleDaemon(b *testing.B) {
	window := time.Minute
	if v := os.Getenv("IDLE_BENCH_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil || s <= 0 {
			b.Fatalf("IDLE_BENCH_SECONDS=%q: want a positive number of seconds", v)
		}
		window = time.Duration(s) * time.Second
	}
	if os.Getenv("GOGC") == "" {
		// The daemon's GC goal (cmd/sriov-dra: gcPercent).
		defer debug.SetGCPercent(debug.SetGCPercent(50))
	}
	e := newEnv(b, sysfstest.Scale(8, 128))
	src := &fakeEvents{ch: make(chan hwevents.Event)}
	cfg := e.config()
	cfg.DeviceEvents = src
	cfg.PollInterval = window // the default, 1 min, unless overridden
	d, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	if n := len(d.inventory().Devices); n != 8*129 {
		b.Fatalf("fixture has %d devices, want %d", n, 8*129)
	}
	pub := &countingPublisher{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx, pub) })
	defer func() { cancel(); wg.Wait() }()
	select {
	case <-pub.ch:
	case <-time.After(30 * time.Second):
		b.Fatal("no first publication")
	}
	full0, _ := e.scan.counts()
	pubs0 := pub.count()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	// The window runs until the first safety-net rescan is over (its
	// ticker started with Run; a finished scan closes the channel), so
	// the figure includes its whole cost.
	scanned := d.inventoryChanged()
	deadline := start.Add(window + 30*time.Second)
	for done := false; !done; {
		select {
		case <-scanned:
			scanned = nil
			done = time.Since(start) >= window
		case <-time.After(100 * time.Millisecond):
			done = scanned == nil && time.Since(start) >= window
		}
		if time.Now().After(deadline) {
			b.Fatalf("no full rescan within %v", window+30*time.Second)
		}
	}
	wall, cpu := time.Since(start), processCPU(b)-cpu0
	b.StopTimer()
	full, partial := e.scan.counts()
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "core-pct")
	b.ReportMetric(float64(cpu.Milliseconds()), "cpu-ms")
	b.ReportMetric(float64(full-full0), "full-scans")
	b.ReportMetric(float64(partial), "pf-scans")
	b.ReportMetric(float64(pub.count()-pubs0), "api-writes")
	b.ReportMetric(wall.Seconds(), "wall-s")
	if pub.count() != pubs0 {
		b.Errorf("%d ResourceSlice publications with nothing changed, want 0", pub.count()-pubs0)
	}
}

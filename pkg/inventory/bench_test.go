package inventory_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
)

// BenchmarkInventory scans 8 PFs x 128 VFs (every PF and VF with a netdev
// and an RDMA device) from a fixture. Target: under 50 ms per scan (ns/op).
func BenchmarkInventory(b *testing.B) {
	h := sysfstest.New(b, sysfstest.Scale(8, 128))
	opts := inventory.Options{Root: h.Root, Netlink: h.Netlink}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		inv, err := inventory.Scan(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(inv.Devices) != 8*129 {
			b.Fatalf("scanned %d devices, want %d", len(inv.Devices), 8*129)
		}
	}
	// CPU time (user+system, all threads) per scan: on a shared, loaded
	// machine it says more than wall time.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	// The process's peak resident memory (the whole test binary with the
	// fixture: an upper bound for what a scan needs).
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MB")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

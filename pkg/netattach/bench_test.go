package netattach

import (
	"context"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// TestMoveAndRenameInOneRequest checks the kernel takes IFLA_NET_NS_FD and
// IFLA_IFNAME in one RTM_NEWLINK, from a host handle and from a handle in
// the target netns, even when the old name is taken on the other side.
func TestMoveAndRenameInOneRequest(t *testing.T) {
	requireRoot(t)
	pfx, host, nsPath, pod := newPodBed(t)
	l := newVeth(t, host, pfx+"a", pfx+"b", "02:aa:00:00:00:07", 1500)
	// The pod has a link with the host name already.
	if err := pod.LinkAdd(netlinkVeth{pfx + "a", pfx + "c"}.veth()); err != nil {
		t.Fatal(err)
	}
	nsf, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()
	if err := host.LinkSetNsFdAndName(l, int(nsf.Fd()), "net9"); err != nil {
		t.Fatalf("move+rename in: %v", err)
	}
	absent(t, host, pfx+"a", "on the host")
	pl := mustLink(t, pod, "net9")
	if pl.Attrs().HardwareAddr.String() != "02:aa:00:00:00:07" {
		t.Errorf("net9 is not the moved link: %s", pl.Attrs().HardwareAddr)
	}
	self, err := os.Open(HostNetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if err := pod.LinkSetNsFdAndName(pl, int(self.Fd()), pfx+"z"); err != nil {
		t.Fatalf("move+rename out from a handle in the pod netns: %v", err)
	}
	if got := mustLink(t, host, pfx+"z"); got.Attrs().HardwareAddr.String() != "02:aa:00:00:00:07" {
		t.Errorf("%sz on the host is not the moved link", pfx)
	}
	delLink(host, pfx+"z")
}

// BenchmarkAttach measures Attach of a veth into a network namespace:
// one-request move+rename, MTU, MAC, one address, up, one route, and the
// gratuitous ARP. Detach runs outside the timer. It reports p50-ms and
// p99-ms of the per-attach latency, and the mean of each step
// (step-<name>-mean-ms).
func BenchmarkAttach(b *testing.B) {
	requireRoot(b)
	ctx := context.Background()
	pfx := runPrefix(b)
	host := hostHandle(b)
	nsPath := newNetns(b, pfx+"ns")
	newVeth(b, host, pfx+"vf", pfx+"pe", "02:aa:00:00:00:08", 1500)
	spec := Spec{HostIfName: pfx + "vf", PodIfName: "net1", MTU: 1400, MAC: "02:bb:00:00:00:08",
		Addresses: []string{"10.82.0.2/24"}, Routes: []Route{{Dst: "10.83.0.0/16", GW: "10.82.0.1"}}}
	var hostNS nlink.Handle = host
	id := idOf(b, hostNS, spec.HostIfName)
	lat := make([]time.Duration, 0, b.N)
	steps := map[string]time.Duration{}
	ctx = WithStepObserver(ctx, func(step string, took time.Duration) { steps[step] += took })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		orig, err := Attach(ctx, hostNS, nsPath, spec, id)
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := Detach(ctx, hostNS, nsPath, spec.PodIfName, orig); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	for step, d := range steps {
		b.ReportMetric(float64(d)/float64(b.N)/float64(time.Millisecond), "step-"+step+"-mean-ms")
	}
}

// BenchmarkMoveOnly is the floor under BenchmarkAttach: the kernel's
// netns move+rename alone (one RTM_NEWLINK), moving back outside the timer.
func BenchmarkMoveOnly(b *testing.B) {
	requireRoot(b)
	pfx := runPrefix(b)
	host := hostHandle(b)
	nsPath := newNetns(b, pfx+"ns")
	pod := podHandle(b, nsPath)
	newVeth(b, host, pfx+"vf", pfx+"pe", "02:aa:00:00:00:09", 1500)
	nsf, err := os.Open(nsPath)
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	self, err := os.Open(HostNetnsPath)
	if err != nil {
		b.Fatal(err)
	}
	defer self.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		l := mustLink(b, host, pfx+"vf")
		b.StartTimer()
		start := time.Now()
		err := host.LinkSetNsFdAndName(l, int(nsf.Fd()), "net1")
		lat = append(lat, time.Since(start))
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := pod.LinkSetNsFdAndName(mustLink(b, pod, "net1"), int(self.Fd()), pfx+"vf"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(lat[int(0.99*float64(len(lat)-1))])/float64(time.Millisecond), "p99-ms")
}

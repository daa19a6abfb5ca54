package daemon

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/nri/pkg/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/netattach"
)

// podDevices is the driver state the NRI plugin reads: one netdev per pod.
type podDevices struct {
	mu   sync.Mutex
	devs map[string]nri.PodDevice // pod UID -> its device
}

func (p *podDevices) ForPod(uid string) []nri.PodDevice {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.devs[uid]; ok {
		return []nri.PodDevice{d}
	}
	return nil
}

func (p *podDevices) Pods() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var uids []string
	for uid := range p.devs {
		uids = append(uids, uid)
	}
	return uids
}

func (p *podDevices) update(claim string, f func(*nri.PodDevice)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for uid, d := range p.devs {
		if d.ClaimUID == claim {
			f(&d)
			p.devs[uid] = d
			return nil
		}
	}
	return errors.New("no such claim")
}

func (p *podDevices) Attaching(claim, _, netns string, orig netattach.Original) error {
	return p.update(claim, func(d *nri.PodDevice) { d.NetnsPath, d.Original = netns, &orig })
}

func (p *podDevices) Attached(claim, _ string, rdma bool) error {
	return p.update(claim, func(d *nri.PodDevice) { d.Attached, d.RDMAMoved = true, rdma })
}

func (p *podDevices) Detached(claim, _ string) error {
	return p.update(claim, func(d *nri.PodDevice) { d.NetnsPath, d.Attached, d.RDMAMoved = "", false, false })
}

// The NRI plugin (real host operations over netlink) reports each hook's
// latency and failure through the hook metrics the daemon registers: a
// pod with a vfio-pci device only (nothing to move) passes RunPodSandbox,
// a pod whose netdev is not on the host fails it. (daemon's tests check
// that the daemon serves these series on /metrics.)
func TestNRIHookMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	hooks := driver.NewNRIHookMetrics(reg)
	devs := &podDevices{devs: map[string]nri.PodDevice{
		"pod-ok": {ClaimUID: "c1", Device: "d1", PCIAddress: "0000:7f:00.1", VFIO: true},
		"pod-fail": {ClaimUID: "c2", Device: "d2", PCIAddress: "0000:7f:00.2",
			Spec: netattach.Spec{HostIfName: "sdrnosuch0", PodIfName: "net1"}},
	}}
	host, err := nri.NewHostOps(nri.HostConfig{Root: "/", Netlink: nlinktest.HostHandle(t)})
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := nri.New(nri.Config{SocketPath: "/nonexistent/nri.sock", ObserveHook: hooks.Observe}, devs, host)
	if err != nil {
		t.Fatal(err)
	}
	sandbox := func(uid string) *api.PodSandbox {
		return &api.PodSandbox{Id: "sb-" + uid, Uid: uid, Name: uid, Namespace: "ns", Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/var/run/netns/" + uid}},
		}}
	}
	ctx := context.Background()
	if err := plugin.RunPodSandbox(ctx, sandbox("pod-ok")); err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	if err := plugin.RunPodSandbox(ctx, sandbox("pod-fail")); err == nil {
		t.Fatal("RunPodSandbox of a netdev that is not on the host succeeded")
	}
	// A pod without devices is none of the plugin's business.
	if err := plugin.RunPodSandbox(ctx, sandbox("pod-plain")); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		have[line] = true
	}
	for _, want := range []string{
		`sriov_dra_nri_hook_duration_seconds_count{hook="RunPodSandbox"} 2`,
		`sriov_dra_nri_hook_failures_total{hook="RunPodSandbox"} 1`,
		// Every hook's series is there before its first call.
		`sriov_dra_nri_hook_duration_seconds_count{hook="StopPodSandbox"} 0`,
		`sriov_dra_nri_hook_failures_total{hook="CreateContainer"} 0`,
		// The bucket at the hooks' budget.
		`sriov_dra_nri_hook_duration_seconds_bucket{hook="RunPodSandbox",le="2"} 2`,
	} {
		if !have[want] {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// registered keeps the collectors registered through it.
type registered struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *registered) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
	r.Registerer.MustRegister(cs...)
}

// docs/install.md lists every metric of the driver, including those with
// no series yet.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/install.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := &registered{Registerer: prometheus.NewRegistry()}
	driver.NewMetrics(reg)
	driver.NewNRIHookMetrics(reg)
	descs := make(chan *prometheus.Desc, 100)
	for _, c := range reg.collectors {
		c.Describe(descs)
	}
	close(descs)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		n++
		if !strings.Contains(string(doc), "`"+m[1]+"`") {
			t.Errorf("docs/install.md does not list metric %s", m[1])
		}
	}
	if n < 8 {
		t.Fatalf("found %d metrics, the driver has at least 8", n)
	}
}

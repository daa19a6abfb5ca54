package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"k8s.io/klog/v2/ktesting"
)

// cniPath is where the tests look for the real plugins: SRIOV_DRA_CNI_PATH
// (colon separated) or the usual install dirs.
func cniPath() []string {
	if p := os.Getenv("SRIOV_DRA_CNI_PATH"); p != "" {
		return filepath.SplitList(p)
	}
	return []string{"/opt/cni/bin", "/usr/lib/cni"}
}

// needPlugins skips the test when a real plugin binary is missing.
func needPlugins(t *testing.T, names ...string) []string {
	t.Helper()
	paths := cniPath()
	for _, n := range names {
		found := false
		for _, d := range paths {
			if fi, err := os.Stat(filepath.Join(d, n)); err == nil && fi.Mode().IsRegular() {
				found = true
				break
			}
		}
		if !found {
			t.Skipf("CNI plugin %q not found in %v: install containernetworking-plugins or set SRIOV_DRA_CNI_PATH", n, paths)
		}
	}
	return paths
}

func hostLocal(t *testing.T, rangeStart, rangeEnd string) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"type": "host-local",
		"ranges": [][]map[string]string{{{
			"subnet": "10.99.0.0/24", "rangeStart": rangeStart, "rangeEnd": rangeEnd, "gateway": "10.99.0.1",
		}}},
		"routes": []map[string]string{{"dst": "10.98.0.0/16"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func req(claim, dev string, ipam json.RawMessage) Request {
	return Request{
		ClaimUID: claim, Device: dev, IfName: "net1",
		PodName: "pod-a", PodNamespace: "ns-a", PodUID: "uid-pod-a",
		IPAM: ipam,
	}
}

// allocated lists the addresses host-local holds in dataDir for the
// default network.
func allocated(t *testing.T, dataDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(filepath.Join(dataDir, DefaultNetwork))
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if net.ParseIP(e.Name()) == nil {
			continue // lock, last_reserved_ip.*
		}
		b, err := os.ReadFile(filepath.Join(dataDir, DefaultNetwork, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return out
}

func TestHostLocalAllocateReleaseReallocate(t *testing.T) {
	paths := needPlugins(t, "host-local")
	_, ctx := ktesting.NewTestContext(t)
	dataDir := t.TempDir()
	a := New(Config{CNIPath: paths, DataDir: dataDir})
	r := req("c1", "dev-a", hostLocal(t, "10.99.0.10", "10.99.0.20"))

	res, err := a.Allocate(ctx, r)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if len(res.IPs) != 1 || res.IPs[0].Address != "10.99.0.10/24" || res.IPs[0].Gateway != "10.99.0.1" {
		t.Fatalf("IPs = %+v, want 10.99.0.10/24 via 10.99.0.1", res.IPs)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst != "10.98.0.0/16" {
		t.Errorf("Routes = %+v, want 10.98.0.0/16", res.Routes)
	}
	if res.ContainerID != "c1-dev-a" || res.Plugin != "host-local" || res.Network != DefaultNetwork || res.IfName != "net1" {
		t.Errorf("result identity = %q %q %q %q", res.ContainerID, res.Plugin, res.Network, res.IfName)
	}
	if got := allocated(t, dataDir); got["10.99.0.10"] != "c1-dev-a" {
		t.Fatalf("host-local store = %v, want 10.99.0.10 held by c1-dev-a", got)
	}

	// The result survives a JSON round trip (checkpoint) and releases from it.
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(ctx, &back); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got := allocated(t, dataDir); len(got) != 0 {
		t.Fatalf("after Release host-local still holds %v", got)
	}
	// Idempotent: again, and for a container the plugin never saw.
	if err := a.Release(ctx, &back); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	unknown := back
	unknown.ContainerID = "never-allocated"
	if err := a.Release(ctx, &unknown); err != nil {
		t.Fatalf("Release of unknown container: %v", err)
	}
	if err := a.Release(ctx, nil); err != nil {
		t.Fatalf("Release(nil): %v", err)
	}

	res2, err := a.Allocate(ctx, r)
	if err != nil {
		t.Fatalf("re-Allocate: %v", err)
	}
	if len(res2.IPs) != 1 {
		t.Fatalf("re-Allocate IPs = %+v", res2.IPs)
	}
	if _, ok := allocated(t, dataDir)[strings.Split(res2.IPs[0].Address, "/")[0]]; !ok {
		t.Fatalf("re-allocated %s not in store", res2.IPs[0].Address)
	}
	if err := a.Release(ctx, res2); err != nil {
		t.Fatal(err)
	}
}

// TestHostLocalDataDirCaseVariant: host-local reads its config with Go's
// case-insensitive JSON matching, so a tenant's "datadir" (or "DATADIR")
// would beat the driver's forced dataDir and put the allocation store
// where the tenant says. The real plugin must write to the forced store.
func TestHostLocalDataDirCaseVariant(t *testing.T) {
	paths := needPlugins(t, "host-local")
	_, ctx := ktesting.NewTestContext(t)
	forced, elsewhere := t.TempDir(), t.TempDir()
	a := New(Config{CNIPath: paths, DataDir: forced})
	for i, key := range []string{"datadir", "DATADIR", "dataDir", "DataDir"} {
		var conf map[string]any
		if err := json.Unmarshal(hostLocal(t, "10.99.0.10", "10.99.0.20"), &conf); err != nil {
			t.Fatal(err)
		}
		conf[key] = elsewhere
		raw, _ := json.Marshal(conf)
		dev := fmt.Sprintf("d%d", i)
		res, err := a.Allocate(ctx, req("claim-dd", dev, raw))
		if err != nil {
			t.Fatalf("%s: Allocate: %v", key, err)
		}
		ip := strings.Split(res.IPs[0].Address, "/")[0]
		if got := allocated(t, forced)[ip]; got != "claim-dd-"+dev {
			t.Errorf("%s: %s is not in the forced store (holder %q)", key, ip, got)
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Errorf("%s: host-local wrote to the tenant's directory: %v", key, ents)
		}
		if err := a.Release(ctx, res); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHostLocalExhausted(t *testing.T) {
	paths := needPlugins(t, "host-local")
	_, ctx := ktesting.NewTestContext(t)
	dataDir := t.TempDir()
	a := New(Config{CNIPath: paths, DataDir: dataDir})
	conf := hostLocal(t, "10.99.0.10", "10.99.0.11")
	for _, dev := range []string{"d1", "d2"} {
		if _, err := a.Allocate(ctx, req("claim-x", dev, conf)); err != nil {
			t.Fatalf("Allocate %s: %v", dev, err)
		}
	}
	_, err := a.Allocate(ctx, req("claim-x", "d3", conf))
	if err == nil {
		t.Fatal("third Allocate in a two-address range succeeded")
	}
	for _, want := range []string{`"host-local"`, "claim-x", "d3", "CNI error code", "sriov-dra log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// The plugin's own words stay out of the error (it reaches Events
	// that the claim's owner reads) and in PluginError.Output.
	var pe *PluginError
	if !errors.As(err, &pe) || !strings.Contains(pe.Output, "no IP addresses available") || strings.Contains(err.Error(), "no IP addresses available") {
		t.Errorf("error %q: the plugin's message must be in PluginError.Output only (%+v)", err, pe)
	}
	got := allocated(t, dataDir)
	if len(got) != 2 {
		t.Fatalf("store = %v, want exactly the two first allocations", got)
	}
	for ip, id := range got {
		if id == "claim-x-d3" {
			t.Errorf("failed allocation left %s held by %s", ip, id)
		}
	}
}

func TestStaticFixedAddress(t *testing.T) {
	paths := needPlugins(t, "static")
	_, ctx := ktesting.NewTestContext(t)
	a := New(Config{CNIPath: paths, DataDir: t.TempDir()})
	conf := json.RawMessage(`{"type":"static","addresses":[{"address":"192.168.77.5/24","gateway":"192.168.77.1"},{"address":"fd00:77::5/64"}],
		"routes":[{"dst":"0.0.0.0/0","gw":"192.168.77.1"}],"dns":{"nameservers":["192.168.77.53"],"domain":"example.test","search":["example.test"]}}`)
	res, err := a.Allocate(ctx, req("c-static", "dev", conf))
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	want := []IPConfig{{Address: "192.168.77.5/24", Gateway: "192.168.77.1"}, {Address: "fd00:77::5/64"}}
	if fmt.Sprint(res.IPs) != fmt.Sprint(want) {
		t.Errorf("IPs = %v, want %v", res.IPs, want)
	}
	if got := res.Addresses(); fmt.Sprint(got) != "[192.168.77.5/24 fd00:77::5/64]" {
		t.Errorf("Addresses() = %v", got)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst != "0.0.0.0/0" || res.Routes[0].GW != "192.168.77.1" {
		t.Errorf("Routes = %+v", res.Routes)
	}
	if fmt.Sprint(res.DNS.Nameservers) != "[192.168.77.53]" || res.DNS.Domain != "example.test" {
		t.Errorf("DNS = %+v", res.DNS)
	}
	var raw map[string]any
	if err := json.Unmarshal(res.Raw, &raw); err != nil || raw["cniVersion"] != CNIVersion {
		t.Errorf("Raw = %s (%v), want a CNI %s result", res.Raw, err, CNIVersion)
	}
	if err := a.Release(ctx, res); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

func TestMissingPlugin(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	empty := t.TempDir()
	a := New(Config{CNIPath: []string{empty}})
	_, err := a.Allocate(ctx, req("claim-m", "dev", json.RawMessage(`{"type":"host-local"}`)))
	if err == nil {
		t.Fatal("Allocate with no plugin binary succeeded")
	}
	for _, want := range []string{`"host-local"`, "claim-m", "not found", empty} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := a.Release(ctx, &Result{Plugin: "host-local", ContainerID: "x", IfName: "net1", NetConf: []byte(`{}`)}); err == nil ||
		!strings.Contains(err.Error(), "not found") {
		t.Errorf("Release with no plugin binary: %v, want a not-found error", err)
	}
}

func TestBadRequests(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	// A plugin that would record any run: none of these may run it.
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	writePlugin(t, dir, "rec", "touch "+marker+"\necho '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.0.0.2/24\"}]}'\n")
	a := New(Config{CNIPath: []string{dir}})
	good := json.RawMessage(`{"type":"rec"}`)
	tests := []struct {
		name  string
		mod   func(*Request)
		field string
	}{
		{"no ipam", func(r *Request) { r.IPAM = nil }, "ipam"},
		{"ipam not object", func(r *Request) { r.IPAM = json.RawMessage(`[1]`) }, "ipam"},
		{"ipam null", func(r *Request) { r.IPAM = json.RawMessage(`null`) }, "ipam"},
		{"no type", func(r *Request) { r.IPAM = json.RawMessage(`{"ranges":[]}`) }, "ipam.type"},
		{"type not string", func(r *Request) { r.IPAM = json.RawMessage(`{"type":5}`) }, "ipam.type"},
		{"type empty", func(r *Request) { r.IPAM = json.RawMessage(`{"type":""}`) }, "ipam.type"},
		{"type absolute path", func(r *Request) { r.IPAM = json.RawMessage(`{"type":"/bin/rec"}`) }, "ipam.type"},
		{"type relative path", func(r *Request) { r.IPAM = json.RawMessage(`{"type":"../rec"}`) }, "ipam.type"},
		{"type dotdot", func(r *Request) { r.IPAM = json.RawMessage(`{"type":".."}`) }, "ipam.type"},
		{"type backslash", func(r *Request) { r.IPAM = json.RawMessage(`{"type":"a\\b"}`) }, "ipam.type"},
		{"type space", func(r *Request) { r.IPAM = json.RawMessage(`{"type":"rec x"}`) }, "ipam.type"},
		{"no ifName", func(r *Request) { r.IfName = "" }, "ifName"},
		{"long ifName", func(r *Request) { r.IfName = "abcdefghijklmnop" }, "ifName"},
		{"ifName slash", func(r *Request) { r.IfName = "a/b" }, "ifName"},
		{"bad claim UID", func(r *Request) { r.ClaimUID = "a b" }, "claim UID"},
		{"bad device", func(r *Request) { r.Device = "-x" }, "device name"},
		{"bad network", func(r *Request) { r.Network = "a/b" }, "network name"},
		{"pod name with ;", func(r *Request) { r.PodName = "a;IP=1.2.3.4" }, "pod name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := req("claim-b", "dev", good)
			tc.mod(&r)
			_, err := a.Allocate(ctx, r)
			if err == nil {
				t.Fatal("Allocate succeeded")
			}
			if !strings.Contains(err.Error(), tc.field) || !strings.Contains(err.Error(), r.ClaimUID) {
				t.Errorf("error %q does not name %q and the claim", err, tc.field)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the plugin ran for a refused request")
			}
		})
	}
	if _, err := a.Allocate(ctx, req("claim-b", "dev", good)); err != nil {
		t.Fatalf("control request: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("control request did not run the plugin: %v", err)
	}
}

func writePlugin(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestEnvAndUndo runs a recording plugin: it checks the environment and
// network config a plugin gets, and that an unusable ADD result is undone
// with DEL.
func TestEnvAndUndo(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	writePlugin(t, dir, "rec", fmt.Sprintf(`cat > %[1]s.$CNI_COMMAND.stdin
echo "$CNI_COMMAND|$CNI_CONTAINERID|$CNI_NETNS|$CNI_IFNAME|$CNI_ARGS|$CNI_PATH" >> %[1]s
if [ "$CNI_COMMAND" = ADD ]; then
  case "$CNI_CONTAINERID" in
    *bad*) echo '{"cniVersion":"1.0.0","ips":[]}' ;;
    *fail*) echo '{"code":11,"msg":"range broken"}'; exit 1 ;;
    *) echo '{"cniVersion":"1.0.0","ips":[{"address":"10.5.0.7/16","gateway":"10.5.0.1"}]}' ;;
  esac
fi
`, log))
	a := New(Config{CNIPath: []string{dir, "/nonexistent"}, DataDir: "/ignored-for-non-host-local"})
	r := req("claim-e", "dev-1", json.RawMessage(`{"type":"rec","custom":{"k":"v"}}`))
	r.Network = "net-x"
	res, err := a.Allocate(ctx, r)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if fmt.Sprint(res.IPs) != "[{10.5.0.7/16 10.5.0.1}]" {
		t.Errorf("IPs = %v", res.IPs)
	}
	lines := readLines(t, log)
	want := "ADD|claim-e-dev-1|" + IPAMOnlyNetNS + "|net1|IgnoreUnknown=1;K8S_POD_NAMESPACE=ns-a;K8S_POD_NAME=pod-a;K8S_POD_UID=uid-pod-a|" + dir + ":/nonexistent"
	if len(lines) != 1 || lines[0] != want {
		t.Fatalf("plugin saw %q, want %q", lines, want)
	}
	var stdin map[string]any
	b, _ := os.ReadFile(log + ".ADD.stdin")
	if err := json.Unmarshal(b, &stdin); err != nil {
		t.Fatalf("ADD stdin %q: %v", b, err)
	}
	if stdin["cniVersion"] != CNIVersion || stdin["name"] != "net-x" || stdin["type"] != "rec" {
		t.Errorf("ADD stdin = %v", stdin)
	}
	ipamObj, _ := stdin["ipam"].(map[string]any)
	if ipamObj["type"] != "rec" || fmt.Sprint(ipamObj["custom"]) != "map[k:v]" || ipamObj["dataDir"] != nil {
		t.Errorf("ADD stdin ipam = %v (dataDir must only be set for host-local)", ipamObj)
	}

	if err := a.Release(ctx, res); err != nil {
		t.Fatalf("Release: %v", err)
	}
	b, _ = os.ReadFile(log + ".DEL.stdin")
	if err := json.Unmarshal(b, &stdin); err != nil || stdin["prevResult"] == nil {
		t.Errorf("DEL stdin %s: prevResult missing (%v)", b, err)
	}

	for _, dev := range []string{"bad", "fail"} {
		os.Remove(log)
		_, err := a.Allocate(ctx, req("claim-e", dev, json.RawMessage(`{"type":"rec"}`)))
		if err == nil {
			t.Fatalf("Allocate of %s succeeded", dev)
		}
		if !strings.Contains(err.Error(), `"rec"`) || !strings.Contains(err.Error(), "claim-e") {
			t.Errorf("error %q does not name plugin and claim", err)
		}
		lines := readLines(t, log)
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "ADD|claim-e-"+dev+"|") || !strings.HasPrefix(lines[1], "DEL|claim-e-"+dev+"|") {
			t.Errorf("%s: plugin calls %q, want ADD then DEL", dev, lines)
		}
	}
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestDataDirOverride(t *testing.T) {
	paths := needPlugins(t, "host-local")
	_, ctx := ktesting.NewTestContext(t)
	dataDir := t.TempDir()
	elsewhere := t.TempDir()
	a := New(Config{CNIPath: paths, DataDir: dataDir})
	conf := json.RawMessage(`{"type":"host-local","dataDir":"` + elsewhere + `","ranges":[[{"subnet":"10.97.0.0/30"}]]}`)
	res, err := a.Allocate(ctx, req("c-dd", "d", conf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Release(ctx, res) })
	if len(allocated(t, dataDir)) != 1 {
		t.Errorf("allocation not under the configured data dir")
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("the claim's own dataDir was used: %v", ents)
	}
}

func TestConcurrentAllocations(t *testing.T) {
	paths := needPlugins(t, "host-local")
	_, ctx := ktesting.NewTestContext(t)
	dataDir := t.TempDir()
	a := New(Config{CNIPath: paths, DataDir: dataDir})
	conf := hostLocal(t, "10.99.0.2", "10.99.0.254")
	const n = 16
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = a.Allocate(ctx, req(fmt.Sprintf("claim-%d", i), "dev", conf))
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		addr := results[i].IPs[0].Address
		if j, dup := seen[addr]; dup {
			t.Fatalf("allocations %d and %d both got %s", j, i, addr)
		}
		seen[addr] = i
	}
	if got := allocated(t, dataDir); len(got) != n {
		t.Fatalf("store holds %d addresses, want %d", len(got), n)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.Release(ctx, results[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("release %d: %v", i, err)
		}
	}
	if got := allocated(t, dataDir); len(got) != 0 {
		t.Fatalf("after releasing all, store holds %v", got)
	}
}

func TestCanceledContextStillUndoes(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	writePlugin(t, dir, "rec", `echo "$CNI_COMMAND" >> `+log+"\n")
	a := New(Config{CNIPath: []string{dir}})
	res := &Result{Plugin: "rec", ContainerID: "c-d", IfName: "net1", NetConf: []byte(`{"cniVersion":"1.0.0","name":"n","type":"rec"}`)}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.release(cctx, res, nil); err != nil {
		t.Fatalf("release with canceled context: %v", err)
	}
	if got := readLines(t, log); fmt.Sprint(got) != "[DEL]" {
		t.Fatalf("plugin calls %v, want [DEL]", got)
	}
}

// BenchmarkAllocate measures one Allocate (a host-local ADD exec) and
// reports its latency percentiles; every allocation is released after the
// timed part.
func BenchmarkAllocate(b *testing.B) {
	paths := cniPath()
	if _, err := invokeFind(paths); err != nil {
		b.Skipf("host-local not found in %v: %v", paths, err)
	}
	ctx := context.Background() // no per-call test logging in the timed loop
	a := New(Config{CNIPath: paths, DataDir: b.TempDir()})
	conf := json.RawMessage(`{"type":"host-local","ranges":[[{"subnet":"10.96.0.0/16"}]]}`)
	var lat []time.Duration
	var results []*Result
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		res, err := a.Allocate(ctx, req(fmt.Sprintf("bench-%d", i), "dev", conf))
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		results = append(results, res)
	}
	b.StopTimer()
	for _, r := range results {
		if err := a.Release(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func invokeFind(paths []string) (string, error) { return invoke.FindInPath("host-local", paths) }

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	drapb "k8s.io/kubelet/pkg/apis/dra/v1"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/pkg/checkpoint"
	"github.com/sriov-dra/sriov-dra/pkg/inventory"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

// Footprint load: 8 PFs x 128 VFs published, 256 claims prepared.
const (
	fpPFs, fpVFs, fpClaims = 8, 128, 256
	// fpMemoryLimit is the DaemonSet's memory limit (deployments/base):
	// the daemon gets it as MEMORY_LIMIT and keeps its heap under 80%.
	fpMemoryLimit = "256Mi"
)

// footprintTopology is 8 Ethernet PFs (ice) with 128 VFs each (iavf), no
// RDMA: VF netdevs ens<i>v<j>, PFs ens<i>.
func footprintTopology() sysfstest.Topology {
	var t sysfstest.Topology
	for i := 0; i < fpPFs; i++ {
		bus := 0x10 + 0x10*i
		pf := sysfstest.PF{
			PCIAddress: fmt.Sprintf("0000:%02x:00.0", bus), PCIeRoot: fmt.Sprintf("pci0000:%02x", bus-1),
			Vendor: "8086", DeviceID: "159b", VFDeviceID: "1889", Driver: "ice", NUMANode: i % 2,
			IfName: fmt.Sprintf("ens%d", i), SpeedMbps: 100000, TotalVFs: fpVFs,
		}
		for j := 0; j < fpVFs; j++ {
			pf.VFs = append(pf.VFs, sysfstest.VF{
				Driver: "iavf", IfName: fmt.Sprintf("ens%dv%d", i, j),
				Admin: netlink.VfInfo{Spoofchk: true, LinkState: netlink.VF_LINK_STATE_AUTO},
			})
		}
		t.PFs = append(t.PFs, pf)
	}
	return t
}

// buildDaemon builds ./cmd/sriov-dra into dir.
func buildDaemon(b *testing.B, dir string) string {
	b.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Fatalf("the go command: %v", err)
	}
	bin := filepath.Join(dir, "sriov-dra")
	// As the Makefile builds it (stripped, gRPC without x/net/trace).
	cmd := exec.Command(goBin, "build", "-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// listenIn opens a TCP listener on the loopback of netns ns (where the
// daemon runs), through nlink.InNetns.
func listenIn(b *testing.B, ns netns.NsHandle) net.Listener {
	b.Helper()
	var ln net.Listener
	err := nlink.InNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		b.Fatalf("listen in the daemon's netns: %v", err)
	}
	return ln
}

// procStatus reads fields of /proc/<pid>/status in KiB.
func procStatus(pid int, fields ...string) (map[string]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := map[string]bool{}
	for _, n := range fields {
		want[n] = true
	}
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[k] {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		out[k] = n
	}
	return out, sc.Err()
}

// BenchmarkDaemonFootprint runs the real daemon binary (built from this
// package) in a network namespace of its own against a fixture host of
// 8 PFs x 128 VFs (1,032 devices; the 8 PFs and the 256 VFs it prepares
// are veth links in that netns, as on the simulated cluster node), an
// in-memory API server and a fake kubelet that registers the plugin and
// prepares 256 one-VF claims. With everything published and prepared
// (and 2 s to settle; SRIOV_DRA_FOOTPRINT_SETTLE sets another wait, e.g.
// 75s for the steady state after the API client's one-minute caches of
// its own writes expire) it reports rss-MiB (VmRSS of the daemon's process,
// target < 40), its anonymous (heap, stacks) and file-backed (the
// binary's pages) parts, and peak-rss-MiB (VmHWM), with MEMORY_LIMIT as
// the DaemonSet sets it (256Mi: a Go soft limit of 80%) and the daemon's
// own GC goal (GOGC and GODEBUG from the test's environment reach it).
func BenchmarkDaemonFootprint(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates a network namespace with veth links")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		b.Skip("needs ip(8) to run the daemon in a network namespace")
	}
	base, err := os.MkdirTemp("", "fp")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	bin := buildDaemon(b, base)

	// Links first (the fixture records their ifindexes and MACs).
	rnd := make([]byte, 4)
	if _, err := rand.Read(rnd); err != nil {
		b.Fatal(err)
	}
	nsName := "sriovdra-fp-" + hex.EncodeToString(rnd)
	nsPath := nlinktest.NewNetns(b, nsName)
	nsh, err := netns.GetFromPath(nsPath)
	if err != nil {
		b.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		b.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		b.Fatal(err)
	}
	topo := footprintTopology()
	probe, err := sysfstest.Write(filepath.Join(base, "probe"), topo)
	if err != nil {
		b.Fatal(err)
	}
	prepared := fpClaims / fpPFs // VFs per PF that get a claim
	mk := func(name, mac string) int {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			b.Fatalf("MAC %q of %s: %v", mac, name, err)
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.HardwareAddr = name, hw
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
			b.Fatalf("veth %s: %v", name, err)
		}
		for _, n := range []string{name + "p", name} {
			l, err := h.LinkByName(n)
			if err != nil {
				b.Fatal(err)
			}
			if err := h.LinkSetUp(l); err != nil {
				b.Fatal(err)
			}
		}
		l, err := h.LinkByName(name)
		if err != nil {
			b.Fatal(err)
		}
		return l.Attrs().Index
	}
	for i := range topo.PFs {
		pf := &topo.PFs[i]
		pf.IfIndex = mk(pf.IfName, probe.Topology.PFs[i].MAC)
		for j := 0; j < prepared; j++ {
			pf.VFs[j].IfIndex = mk(pf.VFs[j].IfName, probe.Topology.PFs[i].VFs[j].MAC)
		}
	}
	root := filepath.Join(base, "host")
	fix, err := sysfstest.Write(root, topo)
	if err != nil {
		b.Fatal(err)
	}
	bootFile := filepath.Join(root, checkpoint.BootIDPath)
	if err := os.MkdirAll(filepath.Dir(bootFile), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(bootFile, []byte("fp-boot\n"), 0o644); err != nil {
		b.Fatal(err)
	}

	// The API server with the node and the claims.
	const node, drv = "n1", "sriov.dra.dev"
	api := apitest.NewOn(b, listenIn(b, nsh))
	api.Add(&corev1.Node{TypeMeta: metav1.TypeMeta{Kind: "Node", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: node}})
	type claimRef struct{ name, uid string }
	var claims []claimRef
	for i := range topo.PFs {
		for j := 0; j < prepared; j++ {
			c := claimRef{name: fmt.Sprintf("c-%d-%d", i, j), uid: fmt.Sprintf("7f000000-0000-4000-8000-%06d%06d", i, j)}
			claims = append(claims, c)
			api.Add(&resourceapi.ResourceClaim{
				TypeMeta:   metav1.TypeMeta{Kind: "ResourceClaim", APIVersion: "resource.k8s.io/v1"},
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: c.name, UID: types.UID(c.uid)},
				Status: resourceapi.ResourceClaimStatus{
					Allocation: &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
						Results: []resourceapi.DeviceRequestAllocationResult{{Driver: drv, Pool: node, Request: "nic",
							Device: inventory.DeviceName(fix.Topology.PFs[i].VFs[j].PCIAddress)}},
					}},
					ReservedFor: []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: "pod-" + c.name, UID: types.UID("8f" + c.uid[2:])}},
				},
			})
		}
	}
	kc := filepath.Join(base, "kubeconfig")
	if err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, api.URL)), 0o600); err != nil {
		b.Fatal(err)
	}

	reg, plug := filepath.Join(base, "reg"), filepath.Join(base, "plug")
	for _, d := range []string{reg, plug} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nsName, bin, "driver",
		"--node-name="+node, "--driver-name="+drv, "--host-root="+root, "--state-dir="+filepath.Join(base, "state"),
		"--cdi-dir="+filepath.Join(base, "cdi"), "--attach-marker-dir="+filepath.Join(base, "attached"),
		"--kubelet-plugins-dir="+plug, "--kubelet-registry-dir="+reg, "--metrics-addr=",
		"--nri-socket="+filepath.Join(base, "nri.sock"), "--cni-path=/nonexistent", "--kubeconfig="+kc,
		"--registration-timeout=1m", "--memory-limit="+fpMemoryLimit)
	cmd.Env = append(os.Environ(), "GOMEMLIMIT=")
	logFile, err := os.Create(filepath.Join(base, "daemon.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	if keep := os.Getenv("FOOTPRINT_LOG"); keep != "" {
		// The daemon's log, kept for a look after the run.
		defer func() {
			if b, err := os.ReadFile(logFile.Name()); err == nil {
				_ = os.WriteFile(keep, b, 0o644)
			}
		}()
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(format string, args ...any) {
		b.Helper()
		log, _ := os.ReadFile(logFile.Name())
		if len(log) > 8000 {
			log = log[len(log)-8000:]
		}
		b.Fatalf("%s\ndaemon log (tail):\n%s", fmt.Sprintf(format, args...), log)
	}
	defer func() {
		cancel()
		select {
		case err := <-exited:
			if err != nil {
				b.Logf("daemon exit: %v", err)
			}
		case <-time.After(20 * time.Second):
			b.Error("daemon did not stop after SIGTERM")
		}
	}()

	// kubelet: registration, then the DRA socket.
	dial := func(p string) *grpc.ClientConn {
		conn, err := grpc.NewClient("unix://"+p, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			fail("dial %s: %v", p, err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	regSock := filepath.Join(reg, drv+"-reg.sock")
	waitUntil := func(what string, limit time.Duration, cond func() bool) {
		deadline := time.Now().Add(limit)
		for !cond() {
			select {
			case err := <-exited:
				fail("daemon exited while waiting for %s: %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				fail("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("the registration socket", time.Minute, func() bool { _, err := os.Stat(regSock); return err == nil })
	rc := registerapi.NewRegistrationClient(dial(regSock))
	info, err := rc.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		fail("GetInfo: %v", err)
	}
	if _, err := rc.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		fail("NotifyRegistrationStatus: %v", err)
	}
	kube := drapb.NewDRAPluginClient(dial(info.Endpoint))

	published := func() int {
		n := 0
		for _, s := range api.List("resource.k8s.io", "resourceslices", "") {
			spec, _ := s["spec"].(map[string]any)
			devs, _ := spec["devices"].([]any)
			n += len(devs)
		}
		return n
	}
	waitUntil("1,032 published devices", 2*time.Minute, func() bool { return published() == fpPFs*(fpVFs+1)-fpPFs })

	// kubelet prepares pods 16 at a time, one claim per call.
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	work := make(chan claimRef)
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for c := range work {
				resp, err := kube.NodePrepareResources(ctx, &drapb.NodePrepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "default", Name: c.name, Uid: c.uid}}})
				msg := ""
				switch {
				case err != nil:
					msg = err.Error()
				case resp.Claims[c.uid] == nil:
					msg = "no answer"
				case resp.Claims[c.uid].Error != "":
					msg = resp.Claims[c.uid].Error
				}
				if msg != "" {
					mu.Lock()
					errs = append(errs, c.name+": "+msg)
					mu.Unlock()
				}
			}
		})
	}
	for _, c := range claims {
		work <- c
	}
	close(work)
	wg.Wait()
	prepTime := time.Since(start)
	b.StopTimer()
	if len(errs) > 0 {
		fail("%d of %d claims not prepared, first: %s", len(errs), len(claims), errs[0])
	}
	settle := 2 * time.Second
	if v := os.Getenv("SRIOV_DRA_FOOTPRINT_SETTLE"); v != "" {
		if settle, err = time.ParseDuration(v); err != nil {
			fail("SRIOV_DRA_FOOTPRINT_SETTLE=%q: %v", v, err)
		}
	}
	time.Sleep(settle)
	st, err := procStatus(cmd.Process.Pid, "VmRSS", "VmHWM", "RssAnon", "RssFile")
	if err != nil {
		fail("read the daemon's memory: %v", err)
	}
	b.ReportMetric(float64(st["VmRSS"])/1024, "rss-MiB")
	b.ReportMetric(float64(st["VmHWM"])/1024, "peak-rss-MiB")
	// Anonymous memory (heap, stacks) and file pages (the binary's text
	// and data) of the RSS.
	b.ReportMetric(float64(st["RssAnon"])/1024, "anon-MiB")
	b.ReportMetric(float64(st["RssFile"])/1024, "file-MiB")
	b.ReportMetric(float64(published()), "devices")
	b.ReportMetric(float64(len(claims)), "claims")
	b.ReportMetric(prepTime.Seconds()*1000/float64(len(claims)), "prepare-ms/claim")

	// Unprepare everything (the daemon restores the links; the netns
	// goes with the test anyway).
	for _, c := range claims {
		resp, err := kube.NodeUnprepareResources(ctx, &drapb.NodeUnprepareResourcesRequest{Claims: []*drapb.Claim{{Namespace: "default", Name: c.name, Uid: c.uid}}})
		if err != nil || resp.Claims[c.uid] == nil || resp.Claims[c.uid].Error != "" {
			b.Errorf("unprepare %s: %v %v", c.name, err, resp)
			break
		}
	}
}

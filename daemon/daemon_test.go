package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/driver"
	"github.com/sriov-dra/sriov-dra/internal/apitest"
	"github.com/sriov-dra/sriov-dra/internal/kubelettest"
	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
	"github.com/sriov-dra/sriov-dra/nri"
	"github.com/sriov-dra/sriov-dra/pkg/hwevents"
	"github.com/sriov-dra/sriov-dra/pkg/kubeapi"
)

// testConfig is a daemon over a fixture host (an igb PF with VFs, fake
// netlink) and a fake API server, with every directory in a short
// temporary folder (unix socket paths are limited to 107 bytes).
func testConfig(t *testing.T) Config {
	t.Helper()
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}, BootID: "b1"})
	base, err := os.MkdirTemp("", "dm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	reg := filepath.Join(base, "reg")
	if err := os.MkdirAll(reg, 0o700); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "node-uid"}}
	srv := apitest.New(t)
	srv.Add(node)
	api, err := kubeapi.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		NodeName: "n1", DriverName: "sriov.dra.dev", HostRoot: h.Root,
		StateDir: filepath.Join(base, "state"), CDIDir: filepath.Join(base, "cdi"),
		AttachMarkerDir:   filepath.Join(base, "attached"),
		KubeletPluginsDir: filepath.Join(base, "plug"), KubeletRegistryDir: reg,
		CNIPath:      []string{"/nonexistent"},
		NRI:          nri.Config{SocketPath: filepath.Join(base, "nri.sock"), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		HealthSocket: filepath.Join(base, "health.sock"),
		PollInterval: time.Hour,
		API:          api,
		Netlink:      h.Netlink,
		DeviceEvents: hwevents.Quiet{},
	}
}

// start runs the daemon until the test ends; it fails the test when Run
// returns an error.
func start(t *testing.T, ctx context.Context, cfg Config) (*Daemon, func() error) {
	t.Helper()
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-d.Ready():
	case err := <-done:
		stopped, runErr = true, err
		t.Fatalf("Run ended before it served: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("daemon not ready after 30 s")
	}
	return d, stop
}

// get is an HTTP GET of path on the unix socket sock.
func get(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://daemon" + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// The daemon New builds serves the kubelet registration, is healthy once
// kubelet registered it, serves the Go, driver and NRI hook metrics, and
// on a graceful stop removes its sockets and returns nil.
func TestDaemonServesAndStops(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	cfg := testConfig(t)
	d, stop := start(t, ctx, cfg)

	if code, body := get(t, cfg.HealthSocket, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before kubelet registered: %d %q, want 503", code, body)
	}
	info, _ := kubelettest.Register(ctx, t, d.Sockets().Registrar)
	if info.Name != cfg.DriverName || info.Endpoint != d.Sockets().Plugin {
		t.Errorf("GetInfo = %s at %s, want %s at %s", info.Name, info.Endpoint, cfg.DriverName, d.Sockets().Plugin)
	}
	if code, body := get(t, cfg.HealthSocket, "/healthz"); code != http.StatusOK || !strings.HasPrefix(body, "ok\n") {
		t.Errorf("/healthz after registration: %d %q", code, body)
	}
	_, metrics := get(t, cfg.HealthSocket, "/metrics")
	for _, want := range []string{
		"go_goroutines ",
		`sriov_dra_nri_hook_duration_seconds_count{hook="RunPodSandbox"} 0`,
		"sriov_dra_stale_releases_pending 0",
		"sriov_dra_events_dropped_total 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if d.Driver() == nil || d.NRI() == nil || d.Driver().State() == nil {
		t.Fatal("daemon without its driver or NRI plugin")
	}

	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	for _, s := range []string{d.Sockets().Registrar, d.Sockets().Plugin} {
		if _, err := os.Stat(s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left after a graceful stop (%v)", s, err)
		}
	}
}

// The daemon owns the checkpoint: a second daemon over the same state
// takes it over, and the first, finding its write refused, says so.
func TestDaemonCheckpointTakenOver(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	cfg := testConfig(t)
	first, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("second daemon over the same state: %v", err)
	}
	defer second.Close()
	err = first.store.Save(&driver.Checkpoint{BootID: "b1"})
	var sup *driver.SupersededError
	if !errors.As(err, &sup) {
		t.Fatalf("first daemon's save after the take-over = %v, want a *SupersededError", err)
	}
	select {
	case <-first.superseded:
	default:
		t.Error("the first daemon was not told it was superseded (it would keep serving NRI)")
	}
}

// Bad configuration is refused before anything is touched, naming what
// is wrong.
func TestNewRefuses(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	for name, tc := range map[string]struct {
		mod  func(*Config)
		want string
	}{
		"no node":          {func(c *Config) { c.NodeName = "" }, "NodeName"},
		"no API":           {func(c *Config) { c.API = nil }, "API is required"},
		"missing registry": {func(c *Config) { c.KubeletRegistryDir = filepath.Join(c.KubeletRegistryDir, "nope") }, "does not exist"},
		"bad NRI index":    {func(c *Config) { c.NRI.PluginIndex = "x" }, "NRI plugin index"},
		"corrupt checkpoint": {func(c *Config) {
			if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.StateDir, driver.CheckpointFile), []byte("not json"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "checkpoint"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.mod(&cfg)
			d, err := New(ctx, cfg)
			if err == nil {
				d.Close()
				t.Fatalf("New succeeded, want an error with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

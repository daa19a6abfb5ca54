package daemon

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/sriov-dra/sriov-dra/driver"
)

// A daemon whose checkpoint another pod's daemon took over keeps running
// while that daemon's DRA socket answers, and ends with an error naming
// it once the socket is gone (the new owner was deleted first), so that
// kubelet restarts it and it takes the checkpoint back.
func TestWatchSuperseder(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	cfg := testConfig(t)
	cfg.PodUID = "aaaa-old"
	d, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	// Pod bbbb's daemon takes the checkpoint over and serves.
	other, _, err := driver.NewOwnedFileStore(cfg.StateDir, cfg.HostRoot, "bbbb-new", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Load(); err != nil {
		t.Fatal(err)
	}
	sock := driver.PluginSockets(cfg.KubeletRegistryDir, cfg.KubeletPluginsDir, cfg.DriverName, "bbbb-new").Plugin
	if err := os.MkdirAll(cfg.KubeletPluginsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	alive, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := d.watchSuperseder(alive, 20*time.Millisecond); err != nil {
		t.Fatalf("the owner serves, yet: %v", err)
	}

	// It is deleted; this daemon must not refuse writes for good.
	ln.Close()
	_ = os.Remove(sock)
	done := make(chan error, 1)
	go func() { done <- d.watchSuperseder(ctx, 20*time.Millisecond) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "bbbb-new") || !strings.Contains(err.Error(), "is gone") {
			t.Fatalf("got %v, want an error naming the gone owner", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon kept running after the checkpoint's owner was gone")
	}
}

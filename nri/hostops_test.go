package nri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
)

// newTestHostOps returns the real host operations on this machine.
func newTestHostOps(t testing.TB) HostOps {
	t.Helper()
	ops, err := NewHostOps(HostConfig{Root: "/", Netlink: nlinktest.HostHandle(t)})
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

func TestHostOpsPinIRQs(t *testing.T) {
	root := t.TempDir()
	pci := "0000:3b:02.1"
	mk := func(path, content string) {
		t.Helper()
		p := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, irq := range []string{"40", "41"} {
		mk("sys/bus/pci/devices/"+pci+"/msi_irqs/"+irq, "msix\n")
		mk("proc/irq/"+irq+"/smp_affinity_list", "0-7\n")
	}
	ops, err := NewHostOps(HostConfig{Root: root, Netlink: nlinktest.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.PinIRQs(context.Background(), pci, "2-3,6"); err != nil {
		t.Fatal(err)
	}
	for _, irq := range []string{"40", "41"} {
		b, err := os.ReadFile(filepath.Join(root, "proc/irq", irq, "smp_affinity_list"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != "2-3,6" {
			t.Errorf("IRQ %s affinity %q, want 2-3,6", irq, got)
		}
	}
	if err := ops.PinIRQs(context.Background(), pci, "x"); err == nil || !strings.Contains(err.Error(), pci) {
		t.Errorf("bad CPU list: error %v, want one naming %s", err, pci)
	}
}

func TestNewHostOpsNeedsSeams(t *testing.T) {
	if _, err := NewHostOps(HostConfig{Netlink: nlinktest.New()}); err == nil {
		t.Error("no root: no error")
	}
	if _, err := NewHostOps(HostConfig{Root: "/"}); err == nil {
		t.Error("no handle: no error")
	}
}

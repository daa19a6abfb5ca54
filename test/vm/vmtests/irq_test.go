//go:build vmtest

package vmtests

import (
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/sriov-dra/sriov-dra/pkg/irq"
)

// TestIRQAffinity pins a real VF's MSI-X IRQs to CPU 1 (the VM has two) and
// restores them.
func TestIRQAffinity(t *testing.T) {
	ctx := newCtx(t)
	h := hostHandle(t)
	_, vf := vfFor(t, 1, 2)
	setVFUp(t, h, vf.IfName) // igbvf requests its vectors when opened

	irqs, err := irq.List("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	if len(irqs) == 0 {
		t.Fatalf("VF %s has no MSI IRQs", vf.PCI)
	}
	before, err := irq.Affinities("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range irqs {
		if got := sysfsString(t, fmt.Sprintf("/proc/irq/%d/smp_affinity_list", n)); got != before[n] {
			t.Fatalf("irq.Affinities says IRQ %d is %q, /proc says %q", n, before[n], got)
		}
	}
	t.Logf("IRQs %v, affinity before %v", irqs, before)

	orig, err := irq.Set(ctx, "/", vf.PCI, "1")
	var managed *irq.ManagedError
	if errors.As(err, &managed) {
		t.Fatalf("igbvf IRQs are not kernel-managed, yet: %v", err)
	}
	if err != nil {
		t.Fatalf("pin to CPU 1: %v", err)
	}
	t.Cleanup(func() { _ = irq.Restore(ctx, "/", orig) })
	for _, n := range irqs {
		if got := sysfsString(t, fmt.Sprintf("/proc/irq/%d/smp_affinity_list", n)); got != "1" {
			t.Errorf("IRQ %d affinity %q after pinning, want 1", n, got)
		}
	}
	if err := irq.Restore(ctx, "/", orig); err != nil {
		t.Fatalf("restore: %v", err)
	}
	after, err := irq.Affinities("/", vf.PCI)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(after, before) {
		t.Errorf("affinity after restore %v, want %v", after, before)
	}
}

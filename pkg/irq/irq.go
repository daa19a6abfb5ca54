// Package irq reads a PCI function's MSI/MSI-X interrupts and pins them to a
// CPU list through /proc/irq/N/smp_affinity_list, keeping the originals so
// they can be restored.
package irq

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
	"k8s.io/utils/cpuset"

	"github.com/sriov-dra/sriov-dra/pkg/pcidev"
)

// List returns the MSI/MSI-X IRQ numbers of the PCI function, sorted, from
// <root>/sys/bus/pci/devices/<pci>/msi_irqs/. A function without MSI IRQs
// (no msi_irqs folder, e.g. unbound or legacy INTx) has none.
func List(root, pci string) ([]int, error) {
	ents, err := pcidev.Entries(root, pci, "msi_irqs", "MSI IRQs")
	if err != nil || ents == nil {
		return nil, err
	}
	out := make([]int, 0, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return out, nil
}

func affinityPath(root string, irq int) string {
	return filepath.Join(root, "proc/irq", strconv.Itoa(irq), "smp_affinity_list")
}

// Affinities reads smp_affinity_list of each IRQ of the PCI function.
// Vectors the driver has allocated but not requested yet have no
// /proc/irq/N and are left out: igbvf, ixgbevf and iavf enable MSI-X at
// probe but request their IRQs only when the netdev is opened, so a VF that
// is down lists msi_irqs without any affinity to read (seen in make vmtest).
func Affinities(root, pci string) (map[int]string, error) {
	irqs, err := List(root, pci)
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(irqs))
	for _, n := range irqs {
		b, err := os.ReadFile(affinityPath(root, n))
		if errors.Is(err, os.ErrNotExist) {
			if _, derr := os.Stat(filepath.Dir(affinityPath(root, n))); errors.Is(derr, os.ErrNotExist) {
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read affinity of IRQ %d of %s: %w", n, pci, err)
		}
		out[n] = strings.TrimSpace(string(b))
	}
	return out, nil
}

// MaxCPUs bounds CPU numbers when the machine's own count is not known:
// the largest NR_CPUS a Linux kernel can be built with.
const MaxCPUs = 8192

// possibleCPUsFile lists the CPUs the kernel can ever bring online.
const possibleCPUsFile = "sys/devices/system/cpu/possible"

// PossibleCPUs returns how many CPU numbers the machine has: one more
// than the highest CPU in <root>/sys/devices/system/cpu/possible. When
// that file cannot be read or parsed it returns MaxCPUs with the error.
func PossibleCPUs(root string) (int, error) {
	p := filepath.Join(root, possibleCPUsFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return MaxCPUs, fmt.Errorf("count the machine's CPUs: %w", err)
	}
	cpus, err := ParseCPUList(string(b), MaxCPUs)
	if err != nil {
		return MaxCPUs, fmt.Errorf("count the machine's CPUs from %s: %w", p, err)
	}
	l := cpus.List()
	return l[len(l)-1] + 1, nil
}

// ParseCPUList checks a CPU list ("0-3,8,10-11") and returns its CPUs.
// Every CPU must be below limit (the machine's CPU count; 0 or less means
// MaxCPUs). The ranges are checked and merged before any is expanded, so
// the work is bounded by the length of s plus limit whatever the list
// says: "0-4294967295" is an error at once, not four billion steps, and
// 100,000 copies of "0-8191" cost one pass over 8,192 CPUs. That is why
// the list is not handed to cpuset.Parse, which expands every range as
// written; the set it returns is a k8s.io/utils/cpuset.CPUSet.
func ParseCPUList(s string, limit int) (cpuset.CPUSet, error) {
	if limit <= 0 || limit > MaxCPUs {
		limit = MaxCPUs
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return cpuset.New(), fmt.Errorf("cpu list is empty")
	}
	type span struct{ lo, hi int }
	var spans []span
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return cpuset.New(), fmt.Errorf("cpu list %q: bad CPU %q", clip(s), clip(lo))
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return cpuset.New(), fmt.Errorf("cpu list %q: bad range %q", clip(s), clip(part))
			}
		}
		if b >= limit {
			return cpuset.New(), fmt.Errorf("cpu list %q: CPU %d is beyond the machine's CPUs 0-%d", clip(s), b, limit-1)
		}
		spans = append(spans, span{a, b})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	var cpus []int
	next := 0 // the lowest CPU not yet in cpus
	for _, sp := range spans {
		for c := max(sp.lo, next); c <= sp.hi; c++ {
			cpus = append(cpus, c)
		}
		next = max(next, sp.hi+1)
	}
	return cpuset.New(cpus...), nil
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// ManagedError lists IRQs whose affinity the kernel refused to change with
// EIO: kernel-managed IRQs (the driver spread them over CPUs itself) or an
// architecture without user-settable affinity. The other IRQs were set.
type ManagedError struct {
	PCI  string
	IRQs []int
}

func (e *ManagedError) Error() string {
	return fmt.Sprintf("IRQs %v of %s are kernel-managed (EIO): their affinity cannot be changed; the other IRQs were pinned", e.IRQs, e.PCI)
}

// Set pins every MSI IRQ of the PCI function to cpus and returns the
// affinity each changed IRQ had before (to give to Restore). IRQs the kernel
// refuses with EIO are left alone and reported in a *ManagedError next to
// the originals of the ones that were set. Any other failure restores the
// IRQs already changed and returns no originals.
func Set(ctx context.Context, root, pci, cpus string) (map[int]string, error) {
	return set(ctx, root, pci, cpus, write)
}

type writeFunc func(root string, irq int, cpus string) error

func set(ctx context.Context, root, pci, cpus string, write writeFunc) (map[int]string, error) {
	limit, err := PossibleCPUs(root)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("CPU count unknown, bounding CPU numbers by MaxCPUs", "maxCPUs", MaxCPUs, "err", err)
	}
	if _, err := ParseCPUList(cpus, limit); err != nil {
		return nil, fmt.Errorf("set IRQ affinity of %s: %w", pci, err)
	}
	before, err := Affinities(root, pci)
	if err != nil {
		return nil, err
	}
	irqs := make([]int, 0, len(before))
	for n := range before {
		irqs = append(irqs, n)
	}
	sort.Ints(irqs)
	changed := map[int]string{}
	var managed []int
	for _, n := range irqs {
		if before[n] == cpus {
			continue
		}
		err := write(root, n, cpus)
		if errors.Is(err, unix.EIO) {
			managed = append(managed, n)
			continue
		}
		if err != nil {
			rerr := restore(ctx, root, changed, write)
			return nil, errors.Join(fmt.Errorf("set affinity of IRQ %d of %s to %s: %w", n, pci, cpus, err), rerr)
		}
		changed[n] = before[n]
	}
	klog.FromContext(ctx).V(4).Info("Pinned IRQs", "pci", pci, "cpus", cpus, "changed", len(changed), "managed", managed)
	if len(managed) > 0 {
		return changed, &ManagedError{PCI: pci, IRQs: managed}
	}
	return changed, nil
}

// Restore writes back the affinities Set returned. IRQs that no longer
// exist (the device was unbound, its vectors freed) are skipped. It is
// idempotent.
func Restore(ctx context.Context, root string, orig map[int]string) error {
	return restore(ctx, root, orig, write)
}

func restore(ctx context.Context, root string, orig map[int]string, write writeFunc) error {
	var errs []error
	for n, cpus := range orig {
		err := write(root, n, cpus)
		if errors.Is(err, os.ErrNotExist) {
			klog.FromContext(ctx).V(4).Info("IRQ gone, nothing to restore", "irq", n)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore affinity of IRQ %d to %s: %w", n, cpus, err))
		}
	}
	return errors.Join(errs...)
}

func write(root string, n int, cpus string) error {
	f, err := os.OpenFile(affinityPath(root, n), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(cpus + "\n")
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

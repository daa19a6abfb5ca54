package vfconfig

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A tiny sysfs fixture for this package's tests: PCI functions with driver
// links, net/ folders, MSI IRQs and IOMMU groups, and the driver bind files.

type fxDev struct {
	pci    string
	driver string
	ifName string
	mac    string
	mtu    int
	irqs   map[int]string
	group  string
}

type fixture struct {
	t    *testing.T
	root string
}

func newFixture(t *testing.T, drivers []string, devs ...fxDev) *fixture {
	t.Helper()
	f := &fixture{t: t, root: t.TempDir()}
	f.write("sys/bus/pci/drivers_probe", "")
	for _, d := range drivers {
		f.write(filepath.Join("sys/bus/pci/drivers", d, "bind"), "")
		f.write(filepath.Join("sys/bus/pci/drivers", d, "unbind"), "")
	}
	for _, d := range devs {
		dir := filepath.Join("sys/bus/pci/devices", d.pci)
		f.write(filepath.Join(dir, "driver_override"), "(null)\n")
		if d.driver != "" {
			f.setDriver(d.pci, d.driver)
		}
		if d.ifName != "" {
			f.addNetdev(d.pci, d.ifName, d.mac, d.mtu)
		}
		for n, a := range d.irqs {
			f.write(filepath.Join(dir, "msi_irqs", strconv.Itoa(n)), "msix\n")
			f.write(filepath.Join("proc/irq", strconv.Itoa(n), "smp_affinity_list"), a+"\n")
		}
		if d.group != "" {
			f.mkdir(filepath.Join("sys/kernel/iommu_groups", d.group, "devices"))
			f.symlink(filepath.Join("../../../kernel/iommu_groups", d.group), filepath.Join(dir, "iommu_group"))
		}
	}
	return f
}

func (f *fixture) path(rel string) string { return filepath.Join(f.root, rel) }

func (f *fixture) mkdir(rel string) {
	f.t.Helper()
	if err := os.MkdirAll(f.path(rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) write(rel, content string) {
	f.t.Helper()
	f.mkdir(filepath.Dir(rel))
	if err := os.WriteFile(f.path(rel), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.path(rel))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func (f *fixture) symlink(target, rel string) {
	f.t.Helper()
	_ = os.Remove(f.path(rel))
	if err := os.Symlink(target, f.path(rel)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) setDriver(pci, driver string) {
	f.symlink("../../../bus/pci/drivers/"+driver, filepath.Join("sys/bus/pci/devices", pci, "driver"))
}

func (f *fixture) addNetdev(pci, name, mac string, mtu int) {
	dir := filepath.Join("sys/bus/pci/devices", pci, "net", name)
	f.write(filepath.Join(dir, "address"), mac+"\n")
	f.write(filepath.Join(dir, "mtu"), strconv.Itoa(mtu)+"\n")
}

// kernel simulates the PCI core on the fixture: it consumes writes to the
// drivers' unbind/bind files and drivers_probe (honouring driver_override)
// and moves the driver link. onBind runs after a bind, under the lock.
type kernel struct {
	f      *fixture
	mu     sync.Mutex
	onBind func(pci, driver string)
	binds  []string // "pci>driver", in order
}

func (f *fixture) startKernel(drivers []string) *kernel {
	k := &kernel{f: f}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			k.step(drivers)
			time.Sleep(time.Millisecond)
		}
	}()
	f.t.Cleanup(func() { cancel(); <-done })
	return k
}

func (k *kernel) take(rel string) string {
	p := k.f.path(rel)
	b, err := os.ReadFile(p)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	_ = os.WriteFile(p, nil, 0o644)
	return strings.TrimSpace(string(b))
}

func (k *kernel) bind(pci, driver string) {
	k.binds = append(k.binds, pci+">"+driver)
	if k.onBind != nil {
		k.onBind(pci, driver)
	}
	_ = os.Remove(k.f.path(filepath.Join("sys/bus/pci/devices", pci, "driver")))
	_ = os.Symlink("../../../bus/pci/drivers/"+driver, k.f.path(filepath.Join("sys/bus/pci/devices", pci, "driver")))
}

func (k *kernel) step(drivers []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range drivers {
		if pci := k.take(filepath.Join("sys/bus/pci/drivers", d, "unbind")); pci != "" {
			_ = os.Remove(k.f.path(filepath.Join("sys/bus/pci/devices", pci, "driver")))
		}
		if pci := k.take(filepath.Join("sys/bus/pci/drivers", d, "bind")); pci != "" {
			k.bind(pci, d)
		}
	}
	if pci := k.take("sys/bus/pci/drivers_probe"); pci != "" {
		b, _ := os.ReadFile(k.f.path(filepath.Join("sys/bus/pci/devices", pci, "driver_override")))
		ov := strings.TrimSpace(string(b))
		if ov != "" && ov != "(null)" {
			if _, err := os.Stat(k.f.path(filepath.Join("sys/bus/pci/drivers", ov))); err == nil {
				k.bind(pci, ov)
			}
		}
	}
}

func (k *kernel) bindLog() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.binds...)
}

func removeAll(p string) error { return os.RemoveAll(p) }

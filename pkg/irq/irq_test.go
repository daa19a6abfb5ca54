package irq

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const pci = "0000:3b:00.2"

// fixture builds msi_irqs/ for pci and /proc/irq/N/smp_affinity_list.
func fixture(t *testing.T, aff map[int]string) string {
	t.Helper()
	root := t.TempDir()
	msi := filepath.Join(root, "sys/bus/pci/devices", pci, "msi_irqs")
	if err := os.MkdirAll(msi, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, a := range aff {
		if err := os.WriteFile(filepath.Join(msi, strconv.Itoa(n)), []byte("msix\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(root, "proc/irq", strconv.Itoa(n))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "smp_affinity_list"), []byte(a+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readAff(t *testing.T, root string) map[int]string {
	t.Helper()
	got, err := Affinities(root, pci)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		err  bool
	}{
		{in: "0", want: []int{0}},
		{in: "0-3,8", want: []int{0, 1, 2, 3, 8}},
		{in: "2,4-5", want: []int{2, 4, 5}},
		{in: "", err: true},
		{in: "3-1", err: true},
		{in: "a", err: true},
		{in: "-1", err: true},
		{in: "1,,2", err: true},
	} {
		got, err := ParseCPUList(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseCPUList(%q) err = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestListNoMSI(t *testing.T) {
	got, err := List(t.TempDir(), pci)
	if err != nil || len(got) != 0 {
		t.Fatalf("List without msi_irqs = %v, %v; want none, nil", got, err)
	}
}

func TestSetAndRestore(t *testing.T) {
	ctx := context.Background()
	orig := map[int]string{40: "0-7", 41: "2", 42: "4-5"}
	root := fixture(t, orig)
	if irqs, err := List(root, pci); err != nil || !reflect.DeepEqual(irqs, []int{40, 41, 42}) {
		t.Fatalf("List = %v, %v", irqs, err)
	}
	changed, err := Set(ctx, root, pci, "4-5")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]string{40: "0-7", 41: "2"}; !reflect.DeepEqual(changed, want) {
		t.Errorf("Set returned originals %v, want %v (IRQ 42 already on 4-5)", changed, want)
	}
	if got := readAff(t, root); !reflect.DeepEqual(got, map[int]string{40: "4-5", 41: "4-5", 42: "4-5"}) {
		t.Errorf("after Set: %v", got)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := Restore(ctx, root, changed); err != nil {
			t.Fatal(err)
		}
		if got := readAff(t, root); !reflect.DeepEqual(got, orig) {
			t.Errorf("after Restore #%d: %v, want %v", i+1, got, orig)
		}
	}
}

func TestSetBadCPUListChangesNothing(t *testing.T) {
	orig := map[int]string{40: "0-7"}
	root := fixture(t, orig)
	if _, err := Set(context.Background(), root, pci, "7-2"); err == nil || !strings.Contains(err.Error(), "7-2") {
		t.Fatalf("Set with bad list: err = %v", err)
	}
	if got := readAff(t, root); !reflect.DeepEqual(got, orig) {
		t.Errorf("bad input changed affinities: %v", got)
	}
}

func TestSetManagedAndFailures(t *testing.T) {
	orig := map[int]string{40: "0-7", 41: "0-7", 42: "0-7"}
	for _, tc := range []struct {
		name    string
		failIRQ int
		failErr error
		want    map[int]string // affinities after Set
		managed bool
	}{
		{name: "managed IRQ is skipped", failIRQ: 41, failErr: unix.EIO,
			want: map[int]string{40: "3", 41: "0-7", 42: "3"}, managed: true},
		{name: "other failure restores all", failIRQ: 42, failErr: unix.EPERM, want: orig},
		{name: "first IRQ fails", failIRQ: 40, failErr: unix.EINVAL, want: orig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, orig)
			w := func(root string, n int, cpus string) error {
				if n == tc.failIRQ && cpus == "3" {
					return tc.failErr
				}
				return write(root, n, cpus)
			}
			changed, err := set(context.Background(), root, pci, "3", w)
			var me *ManagedError
			if tc.managed {
				if !errors.As(err, &me) || !reflect.DeepEqual(me.IRQs, []int{tc.failIRQ}) {
					t.Fatalf("err = %v, want ManagedError for IRQ %d", err, tc.failIRQ)
				}
				if !strings.Contains(err.Error(), "kernel-managed") {
					t.Errorf("error does not explain: %v", err)
				}
				if len(changed) != 2 {
					t.Errorf("originals = %v, want the two pinned IRQs", changed)
				}
			} else {
				if err == nil || errors.As(err, &me) || !errors.Is(err, tc.failErr) {
					t.Fatalf("err = %v, want wrapped %v", err, tc.failErr)
				}
				if changed != nil {
					t.Errorf("originals = %v on failure, want nil", changed)
				}
			}
			if got := readAff(t, root); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("affinities = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRestoreSkipsVanishedIRQ(t *testing.T) {
	root := fixture(t, map[int]string{40: "1"})
	if err := Restore(context.Background(), root, map[int]string{40: "0-7", 99: "1"}); err != nil {
		t.Fatal(err)
	}
	if got := readAff(t, root); got[40] != "0-7" {
		t.Errorf("IRQ 40 = %q", got[40])
	}
}

// A vector allocated (msi_irqs lists it) but not requested by the driver
// has no /proc/irq/N: a down igbvf VF in make vmtest. It has no affinity to
// read or pin and is left out.
func TestAffinitiesSkipsUnrequestedIRQ(t *testing.T) {
	root := fixture(t, map[int]string{40: "0-3", 41: "0-3"})
	if err := os.RemoveAll(filepath.Join(root, "proc/irq/41")); err != nil {
		t.Fatal(err)
	}
	if got, want := readAff(t, root), map[int]string{40: "0-3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Affinities = %v, want %v", got, want)
	}
	orig, err := Set(context.Background(), root, pci, "1")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]string{40: "0-3"}; !reflect.DeepEqual(orig, want) {
		t.Errorf("Set returned %v, want %v", orig, want)
	}
	// A /proc/irq/N folder without smp_affinity_list is still an error.
	if err := os.MkdirAll(filepath.Join(root, "proc/irq/41"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Affinities(root, pci); err == nil {
		t.Error("Affinities with an unreadable smp_affinity_list: no error")
	}
}

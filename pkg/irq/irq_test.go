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
	"time"

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
		in    string
		limit int
		want  []int
		err   string // part of the error; "" for none
	}{
		{in: "0", want: []int{0}},
		{in: "0-3,8", want: []int{0, 1, 2, 3, 8}},
		{in: "2,4-5", want: []int{2, 4, 5}},
		{in: "5,1-3,2-6,3", want: []int{1, 2, 3, 4, 5, 6}},
		{in: "0-7", limit: 8, want: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{in: "", err: "empty"},
		{in: "3-1", err: "bad range"},
		{in: "a", err: "bad CPU"},
		{in: "-1", err: "bad CPU"},
		{in: "1,,2", err: "bad CPU"},
		{in: "99999999999999999999999", err: "bad CPU"},
		{in: "8", limit: 8, err: "CPU 8 is beyond the machine's CPUs 0-7"},
		{in: "0-4294967295", limit: 8, err: "CPU 4294967295 is beyond the machine's CPUs 0-7"},
		{in: "0-4294967295", err: "CPU 4294967295 is beyond the machine's CPUs 0-8191"},
		{in: "0-8192", limit: 1 << 30, err: "CPU 8192 is beyond the machine's CPUs 0-8191"},
		{in: strings.Repeat("0-8191,", 100000) + "1", want: seq(MaxCPUs)},
	} {
		name := tc.in
		if len(name) > 40 {
			name = name[:40] + "..."
		}
		start := time.Now()
		got, err := ParseCPUList(tc.in, tc.limit)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("ParseCPUList(%q) took %v: not bounded", name, d)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseCPUList(%q, %d) err = %v, want one containing %q", name, tc.limit, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got.List(), tc.want) {
			t.Errorf("ParseCPUList(%q, %d) = %v, %v; want %v", name, tc.limit, got, err, tc.want)
		}
	}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestPossibleCPUs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string // "" = no file
		want    int
		wantErr bool
	}{
		{name: "eight CPUs", content: "0-7\n", want: 8},
		{name: "one CPU", content: "0\n", want: 1},
		{name: "holes", content: "0-3,6\n", want: 7},
		{name: "no file", want: MaxCPUs, wantErr: true},
		{name: "garbled", content: "lots\n", want: MaxCPUs, wantErr: true},
		{name: "hostile", content: "0-4294967295\n", want: MaxCPUs, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.content != "" {
				writePossible(t, root, tc.content)
			}
			got, err := PossibleCPUs(root)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("PossibleCPUs = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func writePossible(t *testing.T, root, content string) {
	t.Helper()
	p := filepath.Join(root, possibleCPUsFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
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
	for _, tc := range []struct {
		name, cpus, possible, err string
	}{
		{name: "reversed range", cpus: "7-2", err: `bad range "7-2"`},
		{name: "beyond the machine", cpus: "0-15", possible: "0-7\n", err: "CPU 15 is beyond the machine's CPUs 0-7"},
		{name: "hostile range", cpus: "0-4294967295", possible: "0-7\n", err: "CPU 4294967295 is beyond"},
		{name: "hostile range, CPU count unknown", cpus: "0-4294967295", err: "CPU 4294967295 is beyond the machine's CPUs 0-8191"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := map[int]string{40: "0-7"}
			root := fixture(t, orig)
			if tc.possible != "" {
				writePossible(t, root, tc.possible)
			}
			_, err := Set(context.Background(), root, pci, tc.cpus)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), pci) {
				t.Fatalf("Set(%q) err = %v, want one naming %s and containing %q", tc.cpus, err, pci, tc.err)
			}
			if got := readAff(t, root); !reflect.DeepEqual(got, orig) {
				t.Errorf("bad input changed affinities: %v", got)
			}
		})
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

package nlink_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sriov-dra/sriov-dra/internal/nlinktest"
	"github.com/sriov-dra/sriov-dra/pkg/nlink"
)

func TestRetryDump(t *testing.T) {
	cases := []struct {
		name      string
		answers   []error // one per try; the dump returns []int{try} with it
		want      []int
		wantTries int
		wantErr   string // "" = no error
		wantIntr  bool   // the error matches netlink.ErrDumpInterrupted
	}{
		{name: "first try whole", answers: []error{nil}, want: []int{1}, wantTries: 1},
		{name: "interrupted once", answers: []error{netlink.ErrDumpInterrupted, nil}, want: []int{2}, wantTries: 2},
		{name: "interrupted until the last try", answers: []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, nil},
			want: []int{5}, wantTries: 5},
		{name: "interrupted on every try", answers: []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, nil},
			wantTries: nlink.DumpTries, wantErr: "route dump: interrupted by concurrent changes 5 times in a row", wantIntr: true},
		{name: "other error ends at once", answers: []error{unix.EPERM, nil}, wantTries: 1, wantErr: "operation not permitted"},
		{name: "other error after an interrupt", answers: []error{netlink.ErrDumpInterrupted, unix.ENOBUFS}, wantTries: 2, wantErr: "no buffer space"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			got, err := nlink.RetryDump("route", func() ([]int, error) {
				tries++
				return []int{tries}, tc.answers[tries-1]
			})
			if tries != tc.wantTries {
				t.Errorf("%d tries, want %d", tries, tc.wantTries)
			}
			if tc.wantErr == "" {
				if err != nil || len(got) != 1 || got[0] != tc.want[0] {
					t.Fatalf("got %v, %v; want %v, no error", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if got != nil {
				t.Errorf("result %v with an error, want none (a partial dump is never used)", got)
			}
			if errors.Is(err, netlink.ErrDumpInterrupted) != tc.wantIntr {
				t.Errorf("errors.Is(err, ErrDumpInterrupted) = %v, want %v", !tc.wantIntr, tc.wantIntr)
			}
		})
	}
}

// The fake interrupts dumps as the library reports them (partial result and
// ErrDumpInterrupted) and retries them through RetryDump like Real.
func TestFakeInterruptedDumps(t *testing.T) {
	for _, interrupts := range []int{0, 1, nlink.DumpTries - 1, nlink.DumpTries} {
		f := nlinktest.New()
		for _, n := range []string{"a", "b", "c", "d"} {
			f.AddLink(netlink.LinkAttrs{Name: n})
		}
		f.AddRdmaLink("mlx5_0", 1)
		f.InterruptDumps("LinkList", interrupts)
		f.InterruptDumps("RdmaLinkByName", interrupts)
		links, lerr := f.LinkList()
		rl, rerr := f.RdmaLinkByName("mlx5_0")
		wantTries := min(interrupts+1, nlink.DumpTries)
		calls := map[string]int{}
		for _, c := range f.Calls() {
			calls[c.Method]++
		}
		if calls["LinkList"] != wantTries || calls["RdmaLinkByName"] != wantTries {
			t.Errorf("%d interrupts: calls %v, want %d of each dump", interrupts, calls, wantTries)
		}
		if interrupts < nlink.DumpTries {
			if lerr != nil || len(links) != 4 {
				t.Errorf("%d interrupts: LinkList = %d links, %v; want all 4", interrupts, len(links), lerr)
			}
			if rerr != nil || rl == nil || rl.Attrs.Name != "mlx5_0" {
				t.Errorf("%d interrupts: RdmaLinkByName = %v, %v; want mlx5_0", interrupts, rl, rerr)
			}
			continue
		}
		if !errors.Is(lerr, netlink.ErrDumpInterrupted) || links != nil {
			t.Errorf("%d interrupts: LinkList = %v, %v; want no links and ErrDumpInterrupted", interrupts, links, lerr)
		}
		if !errors.Is(rerr, netlink.ErrDumpInterrupted) || rl != nil {
			t.Errorf("%d interrupts: RdmaLinkByName = %v, %v; want ErrDumpInterrupted", interrupts, rl, rerr)
		}
	}
}

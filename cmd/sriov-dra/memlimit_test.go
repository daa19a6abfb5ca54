package main

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	for _, tc := range []struct {
		name, limit, gomemlimit string
		want                    int64
		err                     string
	}{
		{name: "bytes from the downward API", limit: "268435456", want: 214748364},
		{name: "a quantity", limit: "100Mi", want: 83886080},
		{name: "none", limit: ""},
		{name: "GOMEMLIMIT wins", limit: "100Mi", gomemlimit: "50MiB"},
		{name: "garbage", limit: "lots", err: `--memory-limit "lots"`},
		{name: "zero", limit: "0", err: "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			debug.SetMemoryLimit(prev)
			got, err := setMemoryLimit(tc.limit)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("setMemoryLimit(%q) = %v, want an error with %q", tc.limit, err, tc.err)
				}
				if cur := debug.SetMemoryLimit(-1); cur != prev {
					t.Errorf("limit changed to %d on bad input", cur)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("setMemoryLimit(%q) = %d, %v; want %d", tc.limit, got, err, tc.want)
			}
			if tc.want != 0 {
				if cur := debug.SetMemoryLimit(-1); cur != tc.want {
					t.Errorf("runtime limit %d, want %d", cur, tc.want)
				}
			}
		})
	}
}

func TestTuneGC(t *testing.T) {
	prevPct := debug.SetGCPercent(100)
	prevRate := runtime.MemProfileRate
	t.Cleanup(func() {
		debug.SetGCPercent(prevPct)
		runtime.MemProfileRate = prevRate
	})
	for _, tc := range []struct {
		name, gogc, godebug string
		wantPct, wantRate   int
	}{
		{name: "defaults", wantPct: gcPercent, wantRate: 0},
		{name: "GOGC wins", gogc: "200", wantPct: 100, wantRate: 0},
		{name: "GOGC=off wins", gogc: "off", wantPct: 100, wantRate: 0},
		{name: "GODEBUG keeps the heap profile", godebug: "madvdontneed=1,memprofilerate=4096", wantPct: gcPercent, wantRate: 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GODEBUG", tc.godebug)
			// The runtime applies GOGC and GODEBUG at start; here the
			// test sets what they would have set.
			debug.SetGCPercent(100)
			runtime.MemProfileRate = 4096
			got := tuneGC()
			want := tc.wantPct
			if tc.gogc != "" {
				want = 0
			}
			if got != want {
				t.Errorf("tuneGC() = %d, want %d", got, want)
			}
			if cur := debug.SetGCPercent(100); cur != tc.wantPct {
				t.Errorf("GC percent %d, want %d", cur, tc.wantPct)
			}
			if runtime.MemProfileRate != tc.wantRate {
				t.Errorf("MemProfileRate %d, want %d", runtime.MemProfileRate, tc.wantRate)
			}
		})
	}
}

package report

import (
	"encoding/json"
	"strings"
	"testing"
)

// The results file is read back by test/reliability from runs recorded by
// older binaries: its keys must not change.
func TestSummaryKeys(t *testing.T) {
	b, err := json.Marshal(Summary{Commit: "abc1234"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{"seed", "command", "commit", "duration", "slots", "vfs", "podsRun", "podsOK", "faults", "leaks",
		"wrongDevice", "statusMissing", "podsFailedOther", "podsQueued", "rssStartKiB", "rssEndKiB", "rssMaxKiB", "finished"}
	if len(m) != len(want) {
		t.Errorf("summary has %d keys, want %d: %v", len(m), len(want), m)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("summary lost key %q", k)
		}
	}
}

func TestLine(t *testing.T) {
	tests := []struct {
		name string
		s    Summary
		want []string
	}{
		{
			name: "every fault kind, also those not injected",
			s:    Summary{Seed: 7, Duration: "3m0s", Faults: map[string]int{FaultDriverKill: 2}},
			want: []string{"seed=7", "duration=3m0s", "driver-kill=2", "disk-full=0", "leaks=0", "wrong-device=0"},
		},
		{
			name: "leaks and memory",
			s:    Summary{Leaks: []string{"a", "b"}, WrongDevice: []string{"c"}, RSSStartKiB: 2048, RSSEndKiB: 3072, RSSMaxKiB: 4096},
			want: []string{"leaks=2", "wrong-device=1", "rss-start=2.0MiB", "rss-end=3.0MiB", "rss-max=4.0MiB"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.s.Line()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Line() = %q, missing %q", got, w)
				}
			}
		})
	}
	if n := len(FaultKinds()); n != 6 {
		t.Errorf("FaultKinds() has %d kinds, want 6", n)
	}
}

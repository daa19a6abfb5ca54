package faults

import (
	"os"
	"os/exec"
	"testing"
)

func TestPointsUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range All() {
		if p == "" || seen[p] {
			t.Errorf("failure point %q is empty or listed twice", p)
		}
		seen[p] = true
	}
}

// TestPointExits runs this test binary again with the env var set: a
// faultinject build must exit 137 at the named point and not at others; a
// normal build must never exit.
func TestPointExits(t *testing.T) {
	if os.Getenv("FAULTS_CHILD") != "" {
		Point(PrepareVFApplied)
		Point(PrepareCompleted)
		os.Exit(0)
	}
	for _, tc := range []struct {
		point string
		want  int
	}{
		{PrepareCompleted, ExitCode},
		{"no-such-point", 0},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPointExits$")
		cmd.Env = append(os.Environ(), "FAULTS_CHILD=1", Env+"="+tc.point)
		out, _ := cmd.CombinedOutput()
		want := tc.want
		if !Enabled {
			want = 0
		}
		if got := cmd.ProcessState.ExitCode(); got != want {
			t.Errorf("%s=%s: exit %d, want %d (faultinject=%v); output %s", Env, tc.point, got, want, Enabled, out)
		}
	}
}

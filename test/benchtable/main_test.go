package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
pkg: github.com/sriov-dra/sriov-dra/pkg/inventory
BenchmarkInventory-2   	      50	  21000000 ns/op	 1200 B/op	  30 allocs/op
pkg: github.com/sriov-dra/sriov-dra/pkg/netattach
BenchmarkAttach-2   	     100	   900000 ns/op	         0.80 p50-ms	         2.10 p99-ms
PASS
`
	rows, cols, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	wantCols := []string{"ns/op", "p50-ms", "p99-ms", "B/op", "allocs/op"}
	if strings.Join(cols, ",") != strings.Join(wantCols, ",") {
		t.Fatalf("cols = %v, want %v", cols, wantCols)
	}
	if got := rows[1].metrics["p99-ms"]; got != "2.10" {
		t.Errorf("p99-ms = %q, want 2.10", got)
	}
	var buf bytes.Buffer
	if err := write(&buf, rows, cols); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"inventory", "BenchmarkInventory-2", "21000000", "netattach", "2.10"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(strings.Split(out, "\n")[1], "-") {
		t.Errorf("missing metric should print '-':\n%s", out)
	}
}

func TestStepsAndTargets(t *testing.T) {
	in := `pkg: github.com/sriov-dra/sriov-dra/nri
BenchmarkRunPodSandbox/host=veth-2   	 100	 21000000 ns/op	 20.1 p99-ms	 0.7 over-move-p99-ms	 0.14 step-announce-mean-ms	 18.0 step-move-mean-ms
BenchmarkRunPodSandboxConcurrent64/host=veth-2   	 5	 2000000000 ns/op	 2400 p99-ms	 2.05 x-floor
BenchmarkRunPodSandbox/host=fake-2   	 100	 60000 ns/op	 0.1 p99-ms
`
	rows, cols, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cols {
		if isStep(c) {
			t.Errorf("step metric %s in the main table's columns %v", c, cols)
		}
	}
	var buf bytes.Buffer
	if err := writeSteps(&buf, rows); err != nil {
		t.Fatal(err)
	}
	steps := buf.String()
	if !strings.Contains(steps, "STEP-ANNOUNCE-MEAN-MS") || !strings.Contains(steps, "18.0") || strings.Contains(steps, "host=fake") || strings.Contains(steps, "Concurrent64") {
		t.Errorf("steps table: want one row (host=veth) with its two steps:\n%s", steps)
	}
	buf.Reset()
	if err := writeTargets(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("targets table: want a header and two rows:\n%s", buf.String())
	}
	if f := strings.Fields(lines[1]); f[len(f)-1] != "yes" || !strings.Contains(lines[1], "over-move-p99-ms") {
		t.Errorf("0.7 ms over the move is within 1 ms: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[len(f)-1] != "no" || !strings.Contains(lines[2], "x-floor") {
		t.Errorf("2.05 x the floor is over 1.2: %q", lines[2])
	}
}

// The idle-CPU and footprint benchmarks' headline metrics come right
// after the latency and throughput ones, before their other metrics.
func TestIdleAndFootprintColumns(t *testing.T) {
	in := `pkg: github.com/sriov-dra/sriov-dra/driver
BenchmarkIdleDaemon-2   	       1	60231131123 ns/op	         0 api-writes	         0.2445 core-pct	       147.0 cpu-ms
pkg: github.com/sriov-dra/sriov-dra/cmd/sriov-dra
BenchmarkDaemonFootprint-2   	       1	50226092686 ns/op	        54.98 anon-MiB	       104.4 rss-MiB
`
	rows, cols, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "ns/op,core-pct,rss-MiB,anon-MiB,api-writes,cpu-ms"
	if got := strings.Join(cols, ","); got != want {
		t.Fatalf("cols = %s, want %s", got, want)
	}
	var buf bytes.Buffer
	if err := write(&buf, rows, cols); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"BenchmarkIdleDaemon-2", "0.2445", "BenchmarkDaemonFootprint-2", "104.4"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, buf.String())
		}
	}
	// Both have a target: the idle daemon meets its one, 104 MiB is over
	// 40.
	buf.Reset()
	if err := writeTargets(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("targets table: want a header and two rows:\n%s", buf.String())
	}
	for i, w := range []struct{ metric, met string }{{"core-pct", "yes"}, {"rss-MiB", "no"}} {
		f := strings.Fields(lines[i+1])
		if !strings.Contains(lines[i+1], w.metric) || f[len(f)-1] != w.met {
			t.Errorf("targets row %d: want %s met %s: %q", i+1, w.metric, w.met, lines[i+1])
		}
	}
}

// A strict target is not met at its bound; an inclusive one is.
func TestTargetBounds(t *testing.T) {
	in := `BenchmarkDaemonFootprint-2   	       1	50226092686 ns/op	        40 rss-MiB
BenchmarkRunPodSandboxConcurrent64/host=veth-2   	 5	 2000000000 ns/op	 1.2 x-floor
`
	rows, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeTargets(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("targets table: want a header and two rows:\n%s", buf.String())
	}
	for i, want := range []string{"no", "yes"} {
		if f := strings.Fields(lines[i+1]); f[len(f)-1] != want {
			t.Errorf("row %q: met %s, want %s", lines[i+1], f[len(f)-1], want)
		}
	}
}

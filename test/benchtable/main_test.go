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
}

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

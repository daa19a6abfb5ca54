// Command benchtable reads `go test -bench` output on stdin and prints one
// table row per benchmark with every metric it reported (ns/op, B/op,
// allocs/op and custom ones such as p50-ms, p99-ms, claims/s).
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

type row struct {
	pkg, name string
	metrics   map[string]string
}

func parse(r io.Reader) ([]row, []string, error) {
	var rows []row
	units := map[string]bool{}
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pkg: ") {
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		rw := row{pkg: pkg, name: f[0], metrics: map[string]string{}}
		// f[1] is the iteration count; then value/unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			rw.metrics[f[i+1]] = f[i]
			units[f[i+1]] = true
		}
		rows = append(rows, rw)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read benchmark output: %w", err)
	}
	order := []string{"ns/op", "p50-ms", "p99-ms", "claims/s", "core-pct", "rss-MiB", "B/op", "allocs/op"}
	var cols []string
	for _, u := range order {
		if units[u] {
			cols = append(cols, u)
			delete(units, u)
		}
	}
	var rest []string
	for u := range units {
		rest = append(rest, u)
	}
	sort.Strings(rest)
	return rows, append(cols, rest...), nil
}

func write(w io.Writer, rows []row, cols []string) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PACKAGE\tBENCHMARK\t%s\n", strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, c := range cols {
			if v, ok := r.metrics[c]; ok {
				vals[i] = v
			} else {
				vals[i] = "-"
			}
		}
		short := r.pkg[strings.LastIndex(r.pkg, "/")+1:]
		fmt.Fprintf(tw, "%s\t%s\t%s\n", short, r.name, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

func main() {
	rows, cols, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results on stdin")
		os.Exit(1)
	}
	if err := write(os.Stdout, rows, cols); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

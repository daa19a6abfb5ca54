// Command benchtable reads `go test -bench` output on stdin and prints one
// table row per benchmark with every metric it reported (ns/op, B/op,
// allocs/op and custom ones such as p50-ms, p99-ms, claims/s). Metrics
// named step-* (the steps of an attach) go to a second table, one row per
// benchmark that has them; the metrics with a target (see targets) are
// listed last with the target and whether it was met.
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
		if !isStep(u) {
			rest = append(rest, u)
		}
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

// isStep tells a step metric (step-<name>-<stat>), tabled apart.
func isStep(unit string) bool { return strings.HasPrefix(unit, "step-") }

// writeSteps prints the step metrics: one row per benchmark that has any,
// one column per step. Nothing when no benchmark reported steps.
func writeSteps(w io.Writer, rows []row) error {
	seen := map[string]bool{}
	var cols []string
	for _, r := range rows {
		for u := range r.metrics {
			if isStep(u) && !seen[u] {
				seen[u] = true
				cols = append(cols, u)
			}
		}
	}
	if len(cols) == 0 {
		return nil
	}
	sort.Strings(cols)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nATTACH STEPS\tBENCHMARK\t%s\n", strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		vals := make([]string, len(cols))
		has := false
		for i, c := range cols {
			vals[i] = "-"
			if v, ok := r.metrics[c]; ok {
				vals[i], has = v, true
			}
		}
		if has {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.pkg[strings.LastIndex(r.pkg, "/")+1:], r.name, strings.Join(vals, "\t"))
		}
	}
	return tw.Flush()
}

// target is an upper bound on a metric (issue #19's goals); a strict one
// is met only below it.
type target struct {
	unit, what string
	max        float64
	strict     bool
}

var targets = []target{
	{"over-move-p99-ms", "RunPodSandbox p99 <= bare move p99 + 1 ms (same run)", 1, false},
	{"x-floor", "64 at once: p99 <= 1.2 x (64 x bare move p50) (same run)", 1.2, false},
	{"core-pct", "idle daemon, 1,032 devices: < 0.5% of a core", 0.5, true},
	{"rss-MiB", "daemon, 1,032 devices + 256 claims: < 40 MiB RSS", 40, true},
}

// writeTargets prints, for every benchmark that reported a metric with a
// target, the value, the target and whether it was met.
func writeTargets(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	header := false
	for _, r := range rows {
		for _, tg := range targets {
			v, ok := r.metrics[tg.unit]
			if !ok {
				continue
			}
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				return fmt.Errorf("benchmark %s: metric %s: %q is not a number", r.name, tg.unit, v)
			}
			if !header {
				fmt.Fprintf(tw, "\nTARGET\tBENCHMARK\tMETRIC\tVALUE\tMAX\tMET\n")
				header = true
			}
			met := "no"
			if f < tg.max || (f == tg.max && !tg.strict) {
				met = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%s\n", tg.what, r.name, tg.unit, v, tg.max, met)
		}
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
	for _, f := range []func(io.Writer) error{
		func(w io.Writer) error { return write(w, rows, cols) },
		func(w io.Writer) error { return writeSteps(w, rows) },
		func(w io.Writer) error { return writeTargets(w, rows) },
	} {
		if err := f(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const goTestOutput = `=== RUN   TestPlainPod
--- PASS: TestPlainPod (2.10s)
=== RUN   TestHealthTaint
    helpers_test.go:80: device taints (feature gate DRADeviceTaints) are off in this cluster (Kubernetes v1.34.4)
--- SKIP: TestHealthTaint (0.02s)
=== RUN   TestHostileTenant
=== RUN   TestHostileTenant/bad
    security_test.go:435: no allocated claim (allowed failed)
    --- SKIP: TestHostileTenant/bad (0.00s)
    --- PASS: TestHostileTenant/good (1.00s)
--- PASS: TestHostileTenant (3.00s)
=== RUN   TestDriverRestart
    e2e_test.go:300: driver pod not back
--- FAIL: TestDriverRestart (60.00s)
FAIL
`

func TestParseGoTest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want Record
	}{
		{
			name: "top-level results only, skip reason is the last logged line",
			in:   goTestOutput,
			want: Record{
				Passed: 2, Failed: 1, Skipped: 1,
				FailedTests: []string{"TestDriverRestart"},
				SkippedTests: []SkippedTest{{Name: "TestHealthTaint",
					Reason: "device taints (feature gate DRADeviceTaints) are off in this cluster (Kubernetes v1.34.4)"}},
			},
		},
		{name: "no tests ran", in: "ok  \tpkg\t0.1s [no tests to run]\n", want: Record{}},
		{
			name: "skip without a message",
			in:   "=== RUN   TestX\n--- SKIP: TestX (0.00s)\n",
			want: Record{Skipped: 1, SkippedTests: []SkippedTest{{Name: "TestX"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseGoTest(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNormalizeVersion(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "v2.4.2", want: "v2.4.2"},
		{in: "1.34.0", want: "v1.34.0"},
		{in: " v1.7.35\n", want: "v1.7.35"},
		{in: "v1.34.0-rc.1", want: "v1.34.0-rc.1"},
		{in: "", err: `runtime-version "": want a version like v1.2.3`},
		{in: "latest", err: `runtime-version "vlatest": want a version like v1.2.3`},
		{in: "v1.2", err: `runtime-version "v1.2": want a version like v1.2.3`},
	} {
		got, err := normalizeVersion("runtime-version", tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("normalizeVersion(%q) error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("normalizeVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		sign int
	}{
		{"v1.7.35", "v2.0.14", -1},
		{"v2.4.10", "v2.4.9", 1},
		{"v1.34.4", "v1.34.4", 0},
		{"v1.37.2", "v1.34.4", 1},
	} {
		got := compareVersions(tc.a, tc.b)
		if (got > 0) != (tc.sign > 0) || (got < 0) != (tc.sign < 0) {
			t.Errorf("compareVersions(%s, %s) = %d, want sign %d", tc.a, tc.b, got, tc.sign)
		}
	}
}

// writeRepo makes a repository top with the two documents and a results folder.
func writeRepo(t *testing.T, doc string) (string, options) {
	t.Helper()
	root := t.TempDir()
	o := options{
		resultsDir: filepath.Join(root, "test/cluster/results"),
		docs:       []string{filepath.Join(root, "README.md"), filepath.Join(root, "docs/install.md")},
	}
	if err := os.MkdirAll(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range o.docs {
		if err := os.WriteFile(d, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root, o
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A run's record goes to the results folder under its combination's name,
// replaces the earlier record of that combination, and the tables of both
// documents are rewritten, sorted newest runtime first; check passes then
// and fails once a table is edited by hand.
func TestRecordRenderCheck(t *testing.T) {
	doc := "# Doc\n\nintro\n\n" + beginMarker + "\nold hand-written table\n" + endMarker + "\n\nafter\n"
	root, o := writeRepo(t, doc)
	logPath := filepath.Join(root, "e2e.log")
	if err := os.WriteFile(logPath, []byte(goTestOutput), 0o644); err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 6, 23, 30, 0, 0, time.UTC)
	runs := [][]string{
		{"-log", logPath, "-rc", "1", "-runtime", "containerd", "-runtime-version", "v2.4.2", "-k8s-version", "v1.37.2"},
		{"-unsupported", "-note", "no NRI", "-runtime", "containerd", "-runtime-version", "1.6.36", "-k8s-version", "v1.37.2"},
		{"-log", logPath, "-runtime", "containerd", "-runtime-version", "v2.0.14", "-k8s-version", "v1.37.2"},
	}
	for _, args := range runs {
		if _, err := record(args, o, day); err != nil {
			t.Fatalf("record %v: %v", args, err)
		}
	}
	// The same combination again, now passing: it replaces the failed one.
	passLog := filepath.Join(root, "pass.log")
	if err := os.WriteFile(passLog, []byte("=== RUN   TestA\n--- PASS: TestA (1.00s)\nPASS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path, err := record([]string{"-log", passLog, "-runtime", "containerd", "-runtime-version", "v2.4.2", "-k8s-version", "v1.37.2", "-duration", "200"}, o, day)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "containerd-v2.4.2_k8s-v1.37.2.json" {
		t.Errorf("record file %s", path)
	}
	if err := render(o, false); err == nil {
		t.Fatal("check passed before render")
	}
	if err := render(o, true); err != nil {
		t.Fatal(err)
	}
	want := "# Doc\n\nintro\n\n" + beginMarker + "\n" +
		"| Runtime | Kubernetes | Result | e2e tests | Date |\n" +
		"| --- | --- | --- | --- | --- |\n" +
		"| containerd v2.4.2 | v1.37.2 | **passed** | 1 passed, 0 failed, 0 skipped | 2026-12-06 |\n" +
		"| containerd v2.0.14 | v1.37.2 | **failed**: TestDriverRestart | 2 passed, 1 failed, 1 skipped | 2026-12-06 |\n" +
		"| containerd v1.6.36 | v1.37.2 | **unsupported**: no NRI | - | 2026-12-06 |\n" +
		"\nSkipped tests:\n\n" +
		"- containerd v2.0.14, Kubernetes v1.37.2: TestHealthTaint skipped: device taints (feature gate DRADeviceTaints) are off in this cluster (Kubernetes v1.34.4)\n" +
		endMarker + "\n\nafter\n"
	for _, d := range o.docs {
		if got := readFile(t, d); got != want {
			t.Errorf("%s:\n%s\nwant:\n%s", d, got, want)
		}
	}
	if err := render(o, false); err != nil {
		t.Errorf("check after render: %v", err)
	}
	// A hand edit makes check fail and names the document.
	edited := strings.Replace(readFile(t, o.docs[1]), "**passed**", "**passed!**", 1)
	if err := os.WriteFile(o.docs[1], []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	err = render(o, false)
	if err == nil || !strings.Contains(err.Error(), "docs/install.md") || strings.Contains(err.Error(), "README.md") {
		t.Errorf("check after a hand edit: %v", err)
	}
}

func TestRecordBadInput(t *testing.T) {
	_, o := writeRepo(t, beginMarker+"\n"+endMarker+"\n")
	day := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-runtime", "containerd", "-runtime-version", "v2.4.2", "-k8s-version", "v1.37.2"}, "-log (the go test -v output) is required"},
		{[]string{"-unsupported", "-runtime", "containerd", "-runtime-version", "v2.4.2", "-k8s-version", "v1.37.2"}, "-note must say why"},
		{[]string{"-unsupported", "-note", "x", "-runtime", "a/b", "-runtime-version", "v2.4.2", "-k8s-version", "v1.37.2"}, `runtime "a/b"`},
		{[]string{"-unsupported", "-note", "x", "-runtime", "containerd", "-runtime-version", "v2.4.2", "-k8s-version", "1.37"}, `k8s-version "v1.37"`},
	} {
		_, err := record(tc.args, o, day)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("record %v: error %v, want one containing %q", tc.args, err, tc.err)
		}
	}
	if entries, _ := os.ReadDir(o.resultsDir); len(entries) != 0 {
		t.Errorf("bad input wrote %d records", len(entries))
	}
}

// A record whose content disagrees with its file name, or whose result is
// unknown, is refused with the file named; a document without markers too.
func TestLoadRecordsAndMarkersRefuseBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, err string
	}{
		{"name mismatch", "containerd-v2.4.2_k8s-v1.37.2.json",
			`{"runtime":"containerd","runtimeVersion":"v2.0.14","kubernetesVersion":"v1.37.2","result":"passed","passed":1,"failed":0,"skipped":0,"date":"2026-12-06"}`,
			"say its file is containerd-v2.0.14_k8s-v1.37.2.json"},
		{"bad result", "containerd-v2.4.2_k8s-v1.37.2.json",
			`{"runtime":"containerd","runtimeVersion":"v2.4.2","kubernetesVersion":"v1.37.2","result":"great","passed":1,"failed":0,"skipped":0,"date":"2026-12-06"}`,
			`result "great"`},
		{"unknown field", "containerd-v2.4.2_k8s-v1.37.2.json", `{"runtime":"containerd","colour":"red"}`, `unknown field "colour"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := loadRecords(dir)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %v, want one naming %s and containing %q", err, tc.file, tc.err)
			}
		})
	}
	if _, err := replaceBetween("no markers here", "t", "README.md"); err == nil || !strings.Contains(err.Error(), "README.md: no") {
		t.Errorf("replaceBetween without markers: %v", err)
	}
}

func TestRunUsage(t *testing.T) {
	if err := run(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("run without a command: %v", err)
	}
	if err := run([]string{"frobnicate"}, io.Discard); err == nil || !strings.Contains(err.Error(), `unknown command "frobnicate"`) {
		t.Errorf("run frobnicate: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

// cliEnv makes the test binary run main() instead of the tests: the
// logging tests run the real command in a process of its own, since the
// logging configuration is applied once per process.
const cliEnv = "SRIOV_DRA_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCLI runs `sriov-dra <args>` as a process, as a user would, and
// returns its stdout, its stderr (the log and main's "error: ..." line)
// and its exit code.
func runCLI(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	// GORACE: a race build otherwise waits 1 s at a clean exit.
	cmd.Env = append(os.Environ(), cliEnv+"=1", "NODE_NAME=", "GORACE=atexit_sleep_ms=0")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run sriov-dra %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// executeRoot runs a command tree made by newRootCmd in this process,
// for tests of a subcommand's own behaviour: without applying the logging
// flags, which can be done only once per process (the tests here run
// the binary for that).
func executeRoot(t *testing.T, ctx context.Context, root *cobra.Command) error {
	t.Helper()
	if root.PersistentPreRunE == nil {
		t.Fatal("the root command no longer applies the logging flags in PersistentPreRunE")
	}
	root.PersistentPreRunE = nil
	return root.ExecuteContext(ctx)
}

func TestLoggingFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		// wantErr is part of the error, "" for none; a flag error would
		// say "unknown flag" or "unknown shorthand flag".
		wantErr  string
		wantCode int
	}{
		{"-v after a subcommand", []string{"version", "-v=4"}, "", 0},
		{"-v before it", []string{"-v", "4", "version"}, "", 0},
		{"--v", []string{"version", "--v=2"}, "", 0},
		{"vmodule", []string{"version", "--vmodule=publish=4,scan*=5"}, "", 0},
		{"json", []string{"version", "--logging-format=json", "-v=4"}, "", 0},
		{"text", []string{"version", "--logging-format=text"}, "", 0},
		{"contextual logging gate", []string{"version", "--feature-gates=ContextualLogging=true"}, "", 0},
		// The daemon gets past its flags to its own first check.
		{"driver -v=4", []string{"driver", "-v=4"}, "--node-name (NODE_NAME) is required", 2},
		{"driver json", []string{"driver", "--logging-format=json", "-v=4"}, "--node-name (NODE_NAME) is required", 2},
		{"unknown format", []string{"version", "--logging-format=xml"}, `Unsupported log format`, 2},
		{"vmodule with json", []string{"version", "--logging-format=json", "--vmodule=scan=4"}, "Only supported for text log format", 2},
		{"bad verbosity", []string{"version", "-v=high"}, `invalid argument "high"`, 1},
		{"alpha option without its gate", []string{"version", "--log-text-split-stream"}, "LoggingAlphaOptions", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, context.Background(), tc.args...)
			if code != tc.wantCode {
				t.Errorf("sriov-dra %s: exit code %d, want %d; stderr:\n%s", strings.Join(tc.args, " "), code, tc.wantCode, errOut)
			}
			if tc.wantErr == "" {
				if strings.TrimSpace(out) != version {
					t.Errorf("output %q, want the version", out)
				}
				return
			}
			if !strings.Contains(errOut, "error: ") || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("sriov-dra %s: stderr %q, want an error with %q", strings.Join(tc.args, " "), errOut, tc.wantErr)
			}
		})
	}
}

// Every subcommand applies the logging flags before it does anything: a
// bad value stops each with the same usage error.
func TestEveryCommandAppliesLoggingFlags(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
		if !c.Runnable() {
			return
		}
		n++
		args := slices.Clone(path)
		if c.Args != nil && c.Args(c, nil) != nil {
			args = append(args, "x") // a command that needs an argument gets one
		}
		args = append(args, "--logging-format=xml")
		_, errOut, code := runCLI(t, context.Background(), args...)
		if code != 2 || !strings.Contains(errOut, `logging flags: format: Invalid value: "xml": Unsupported log format`) {
			t.Errorf("sriov-dra %s: exit code %d, want 2 and the logging flags' error; stderr:\n%s", strings.Join(args, " "), code, errOut)
		}
	}
	walk(newRootCmd(), nil)
	if n < 6 {
		t.Fatalf("walked %d runnable commands, want at least 6", n)
	}
}

// The daemon as the DaemonSet runs it, with the documented -v=4: a V(4)
// line of its own shows up in the log (the NRI plugin retrying a runtime
// that is not there), and without -v it does not; with
// --logging-format=json every log line is a JSON object. The line carries
// the node name runDriver put into the context's logger: contextual
// logging is on.
func TestDriverLogVerbosityAndFormat(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon opens netlink sockets and subscribes to link events")
	}
	const v4Line = "Still cannot connect to the NRI runtime"
	for _, tc := range []struct {
		name   string
		flags  []string
		wantV4 bool
		json   bool
	}{
		{"default", nil, false, false},
		{"-v=4", []string{"-v=4"}, true, false},
		{"json -v=4", []string{"--logging-format=json", "-v=4"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := daemonOptions(t)
			// Long enough for the NRI plugin's second attempt (after
			// 500 ms), then the daemon gives up on kubelet.
			o.registrationTimeout = 2 * time.Second
			args := append([]string{"driver"}, tc.flags...)
			args = append(args, driverArgs(o)...)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, log, code := runCLI(t, ctx, args...)
			if code != 1 || !strings.Contains(log, "kubelet never called") {
				t.Fatalf("sriov-dra %s: exit code %d\nstderr:\n%s", strings.Join(args, " "), code, log)
			}
			if !strings.Contains(log, "Driver running") {
				t.Fatalf("the daemon's log lacks its start line:\n%s", log)
			}
			var v4 []string
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, v4Line) {
					v4 = append(v4, line)
				}
			}
			if got := len(v4) > 0; got != tc.wantV4 {
				t.Fatalf("V(4) line %q in the log: %v, want %v\nlog:\n%s", v4Line, got, tc.wantV4, log)
			}
			if !tc.json {
				for _, line := range v4 {
					if !strings.Contains(line, `node="n1"`) {
						t.Errorf("V(4) line without the context's node=\"n1\": %s", line)
					}
				}
				return
			}
			for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
				if strings.HasPrefix(line, "error: ") {
					continue // main's last word, not a log line
				}
				if !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %q", line)
				}
			}
			for _, line := range v4 {
				var entry struct {
					Msg  string `json:"msg"`
					V    *int   `json:"v"`
					Node string `json:"node"`
				}
				if err := json.Unmarshal([]byte(line), &entry); err != nil {
					t.Fatalf("V(4) line is not JSON: %q", line)
				}
				if entry.Msg != v4Line || entry.V == nil || *entry.V != 4 || entry.Node != "n1" {
					t.Errorf("V(4) entry %s: want msg %q, v 4, node n1", line, v4Line)
				}
			}
		})
	}
}

// driverArgs is o as command line flags.
func driverArgs(o driverOptions) []string {
	return []string{
		"--node-name=" + o.nodeName, "--driver-name=" + o.driverName, "--host-root=" + o.hostRoot,
		"--state-dir=" + o.stateDir, "--cdi-dir=" + o.cdiDir, "--attach-marker-dir=" + o.attachMarkerDir,
		"--kubelet-plugins-dir=" + o.pluginsDir, "--kubelet-registry-dir=" + o.registryDir,
		"--metrics-addr=" + o.metricsAddr, "--nri-socket=" + o.nriSocket, "--nri-plugin-index=" + o.nriPluginIndex,
		"--cni-path=" + o.cniPath, "--kubeconfig=" + o.kubeconfig,
		"--registration-timeout=" + o.registrationTimeout.String(), "--resync-interval=" + o.resyncInterval.String(),
	}
}

// documentedLogFlag finds logging flags with a value in documentation and
// manifests: -v=4, --v=4, --vmodule=..., --logging-format json, ... .
var documentedLogFlag = regexp.MustCompile("(?:^|[\\s\"'`\\[(])(--?v=[^\\s\"'`\\],)]+|--(?:vmodule|logging-format|log-[a-z-]+|feature-gates)[= ][^\\s\"'`\\],)]+)")

// Every logging flag the documentation, the Helm chart and the kustomize
// manifests tell users to give `sriov-dra driver` is accepted by it.
func TestDocumentedLoggingFlagsParse(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string][]string{} // flag -> where
	scan := func(path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repo, path)
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range documentedLogFlag.FindAllStringSubmatch(line, -1) {
				found[m[1]] = append(found[m[1]], fmt.Sprintf("%s:%d", rel, i+1))
			}
		}
	}
	scan(filepath.Join(repo, "README.md"))
	for _, dir := range []string{"docs", "deployments"} {
		err := filepath.WalkDir(filepath.Join(repo, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch filepath.Ext(path) {
			case ".md", ".yaml", ".yml", ".tpl", ".txt":
				scan(path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The troubleshooting guide, the install guide and the chart's values
	// all show -v=4; finding none means the pattern broke.
	if len(found["-v=4"]) < 3 {
		t.Fatalf("found -v=4 only at %v; the docs and the chart show it in at least three places", found["-v=4"])
	}
	flags := make([]string, 0, len(found))
	for f := range found {
		flags = append(flags, f)
	}
	sort.Strings(flags)
	for _, f := range flags {
		args := append([]string{"driver"}, strings.SplitN(f, " ", 2)...)
		_, errOut, code := runCLI(t, context.Background(), args...)
		// Parsed and applied: the daemon stops at its first own check.
		if code != 2 || !strings.Contains(errOut, "--node-name (NODE_NAME) is required") {
			t.Errorf("`sriov-dra driver %s` (from %s): exit code %d, stderr:\n%s", f, strings.Join(found[f], ", "), code, errOut)
		}
	}
	t.Logf("checked %v", flags)
}

// `sriov-dra inventory` keeps the scan's log to itself (its output says
// what was left out and why) unless the verbosity flags ask for it.
func TestInventoryLogWithVerbosity(t *testing.T) {
	pf := sysfstest.IGB()
	pf.IfName = "h5nopf0" // not on this host: the scan says so at V(2)
	for i := range pf.VFs {
		pf.VFs[i].IfName = fmt.Sprintf("h5nopf0v%d", i)
	}
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{pf}})
	const v2Line = "PF link not in the host netns"
	for _, tc := range []struct {
		flags []string
		want  bool
	}{
		{nil, false},
		{[]string{"-v=2"}, true},
		{[]string{"--vmodule=scan=2"}, true},
	} {
		args := append([]string{"inventory", "--host-root", h.Root}, tc.flags...)
		out, log, code := runCLI(t, context.Background(), args...)
		if code != 0 {
			t.Fatalf("sriov-dra %s: exit code %d\n%s", strings.Join(args, " "), code, log)
		}
		if !strings.Contains(out, "0000:02:00.0") {
			t.Errorf("sriov-dra %s: output lacks the PF:\n%s", strings.Join(args, " "), out)
		}
		if got := strings.Contains(log, v2Line); got != tc.want {
			t.Errorf("sriov-dra %s: %q in the log: %v, want %v\nlog:\n%s", strings.Join(args, " "), v2Line, got, tc.want, log)
		}
	}
}

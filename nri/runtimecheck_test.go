package nri

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

func TestCheckRuntime(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		warning, err  string
	}{
		{name: "containerd", version: "v2.4.2"},
		{name: "containerd", version: "1.7.35"},
		{name: "containerd", version: "v2.0.14-3-gabcdef"},
		{name: "cri-o", version: "1.34.0"},
		{name: "containerd", version: "v1.7.20", warning: "containerd v1.7.20 is older than the oldest version this driver was tested with (containerd 1.7.35"},
		{name: "cri-o", version: "1.30.4", warning: "cri-o 1.30.4 is older than the oldest version this driver was tested with (cri-o 1.34.0"},
		{name: "containerd", version: "v1.6.36", err: "container runtime containerd v1.6.36 is not supported: containerd gained NRI in 1.7.0"},
		{name: "cri-o", version: "1.25.0", err: "(need cri-o 1.26.0 or newer)"},
		{name: "containerd", version: "devel", warning: `reports version "devel", which is not a version number`},
		{name: "podman", version: "5.0.0", warning: `container runtime "podman" is not one this driver was tested with`},
	} {
		t.Run(tc.name+"-"+tc.version, func(t *testing.T) {
			warning, err := checkRuntime(tc.name, tc.version)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if (tc.warning == "") != (warning == "") || !strings.Contains(warning, tc.warning) {
				t.Errorf("warning %q, want one containing %q", warning, tc.warning)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the plugin's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runAgainst runs a plugin against a real NRI runtime side that calls
// itself name/version until cond holds on the plugin and its log, or
// fails; the plugin is stopped when it returns.
func runAgainst(t *testing.T, name, version string, cond func(p *Plugin, log string) bool) (*Plugin, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &testRuntime{socket: filepath.Join(dir, "nri.sock"), dir: dir, name: name, version: version,
		pods: map[string]*api.PodSandbox{}, ctrs: map[string]*api.Container{}}
	rt.start(t)
	t.Cleanup(rt.stop)
	rec := &recorder{}
	p, err := New(Config{SocketPath: rt.socket, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		newMemDevices(rec), newFakeHost(rec))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(),
		textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(&logs)))))
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}()
	waitFor(t, "the plugin's log to show the runtime check", func() bool { return cond(p, logs.String()) })
	return p, logs.String()
}

// Over the real NRI protocol: a runtime too old for the driver is refused
// at connect time, the log names the runtime, its version and why, and
// the plugin stays unconnected (retrying, in case the runtime is
// upgraded); a supported runtime is connected and named.
func TestConfigureOverNRI(t *testing.T) {
	p, log := runAgainst(t, "containerd", "v1.6.36", func(_ *Plugin, log string) bool {
		return strings.Count(log, "Refusing the NRI connection") >= 2
	})
	for _, want := range []string{`runtime="containerd"`, `runtimeVersion="v1.6.36"`,
		"container runtime containerd v1.6.36 is not supported: containerd gained NRI in 1.7.0"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if name, _ := p.Runtime(); name != "" {
		t.Errorf("an unsupported runtime was recorded as connected: %q", name)
	}

	// runAgainst returns once the plugin is connected.
	p, log = runAgainst(t, "containerd", "v2.4.2", func(p *Plugin, _ string) bool { return p.Connected() })
	if name, version := p.Runtime(); name != "containerd" || version != "v2.4.2" {
		t.Errorf("Runtime() = %q, %q", name, version)
	}
	if !strings.Contains(log, "NRI runtime identified") || strings.Contains(log, "Refusing") {
		t.Errorf("log:\n%s", log)
	}
}

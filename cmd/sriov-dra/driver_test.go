package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/sriov-dra/sriov-dra/internal/sysfstest"
)

func TestDriverFlagsFromEnv(t *testing.T) {
	cmd := newDriverCmd()
	t.Setenv("NODE_NAME", "n1")
	t.Setenv("PASSTHROUGH_PFS", "ens1f0,0000:af:00.0")
	t.Setenv("POLL_INTERVAL", "3s") // deprecated, still read
	t.Setenv("RESYNC_INTERVAL", "5m")
	t.Setenv("DRIVER_NAME", "from-env")
	t.Setenv("VF_CONFIG", "/etc/sriov-dra/vf-config/config.yaml")
	t.Setenv("DEVICE_METADATA", "false")
	if err := cmd.Flags().Parse([]string{"--driver-name=from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	get := func(n string) string { return cmd.Flags().Lookup(n).Value.String() }
	for flag, want := range map[string]string{
		"node-name": "n1", "passthrough-pfs": "[ens1f0,0000:af:00.0]", "poll-interval": "3s", "resync-interval": "5m0s",
		"driver-name":     "from-flag", // the command line wins
		"host-root":       "/",
		"vf-config":       "/etc/sriov-dra/vf-config/config.yaml",
		"device-metadata": "false",
	} {
		if got := get(flag); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
	// Every flag has its variable, shown in the help.
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := envOf[f.Name]; !ok {
			t.Errorf("flag --%s has no environment variable", f.Name)
		} else if !strings.Contains(f.Usage, "[$") {
			t.Errorf("flag --%s help does not name its variable", f.Name)
		}
	})
	t.Setenv("POLL_INTERVAL", "soon")
	cmd = newDriverCmd()
	if err := applyEnv(cmd.Flags()); err == nil || !strings.Contains(err.Error(), "POLL_INTERVAL") {
		t.Errorf("bad env value: %v", err)
	}
}

// daemonOptions points the daemon at a fixture host and a kubeconfig for
// an API server that is not there.
func daemonOptions(t *testing.T) driverOptions {
	t.Helper()
	h := sysfstest.New(t, sysfstest.Topology{PFs: []sysfstest.PF{sysfstest.IGB()}, BootID: "b1"})
	base, err := os.MkdirTemp("", "drv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	kc := filepath.Join(base, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := filepath.Join(base, "reg")
	if err := os.MkdirAll(reg, 0o700); err != nil {
		t.Fatal(err)
	}
	return driverOptions{
		nodeName: "n1", driverName: "sriov.dra.dev", hostRoot: h.Root, stateDir: filepath.Join(base, "state"),
		cdiDir: filepath.Join(base, "cdi"), attachMarkerDir: filepath.Join(base, "attached"), pluginsDir: filepath.Join(base, "plug"), registryDir: reg,
		metricsAddr: "127.0.0.1:0", nriSocket: filepath.Join(base, "nri.sock"), nriPluginIndex: "50",
		cniPath: "/nonexistent", kubeconfig: kc, registrationTimeout: time.Second, resyncInterval: time.Second,
		// On, as by default: the kubelet plugin helper starts with the
		// metadata versions the driver asks for.
		deviceMetadata: true,
	}
}

func TestDriverSaysWhyKubeletDidNotRegister(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon opens netlink sockets and subscribes to link events")
	}
	o := daemonOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runDriver(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "kubelet never called") || !strings.Contains(err.Error(), o.registryDir) {
		t.Fatalf("runDriver = %v", err)
	}
}

func TestDriverRefusesBadSocketDirs(t *testing.T) {
	o := daemonOptions(t)
	long := o
	long.registryDir = filepath.Join(o.registryDir, strings.Repeat("x", 100))
	if err := os.MkdirAll(long.registryDir, 0o700); err != nil {
		t.Fatal(err)
	}
	missing := o
	missing.registryDir = filepath.Join(o.registryDir, "nope")
	for name, tc := range map[string]struct {
		o    driverOptions
		want string
	}{
		"too long": {long, "longer than the 107"},
		"missing":  {missing, "does not exist"},
	} {
		t.Run(name, func(t *testing.T) {
			err := runDriver(context.Background(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("runDriver = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDriverGracefulShutdown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the daemon opens netlink sockets and subscribes to link events")
	}
	o := daemonOptions(t)
	o.registrationTimeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDriver(ctx, o) }()
	time.Sleep(time.Second)
	cancel() // what SIGTERM does through signal.NotifyContext
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
	// The sockets are gone after a clean stop (rolling updates need that).
	left, _ := filepath.Glob(filepath.Join(o.registryDir, "*.sock"))
	if len(left) != 0 {
		t.Errorf("sockets left: %v", left)
	}
}

package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sriov-dra/sriov-dra/daemon"
)

func TestHealthzOverSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "health.sock")
	// A socket left behind by a crashed earlier run of the container is
	// replaced.
	for range 2 {
		ln, err := daemon.ListenUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := daemon.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	var registered atomic.Bool
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		if !registered.Load() {
			http.Error(w, "not registered with kubelet yet", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n")) //nolint:errcheck
	})}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close() })

	ctx := context.Background()
	if _, err := healthz(ctx, path, time.Second); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("before registration: %v, want the daemon's reason", err)
	}
	registered.Store(true)
	if body, err := healthz(ctx, path, time.Second); err != nil || body != "ok\n" {
		t.Errorf("after registration: %q, %v", body, err)
	}
	if _, err := healthz(ctx, filepath.Join(t.TempDir(), "none.sock"), time.Second); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("no daemon: %v, want an error naming the socket", err)
	}

	// A regular file where the socket should be is not removed.
	plain := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.ListenUnix(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listen over a regular file: %v", err)
	}
}

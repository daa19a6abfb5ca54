package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/types"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sriov-dra/sriov-dra/pkg/kubeletserver"
)

// MaxSocketPath is the longest unix socket path Linux accepts (108 bytes
// of sun_path including the terminating NUL).
const MaxSocketPath = 107

// SocketPaths are the two unix sockets the kubelet plugin serves.
type SocketPaths struct {
	Registrar string // in the kubelet's plugins_registry dir
	Plugin    string // in the driver's kubelet plugin dir
}

// PluginSockets computes the socket paths kubeletserver.Start will use
// for these dirs (podUID "" disables rolling updates).
func PluginSockets(registryDir, pluginDir, driverName string, podUID types.UID) SocketPaths {
	return SocketPaths{
		Registrar: filepath.Join(registryDir, kubeletserver.RegistrarSocketFile(registryDir, driverName, podUID)),
		Plugin:    filepath.Join(pluginDir, kubeletserver.PluginSocketFile(podUID)),
	}
}

// Check says what is wrong with the socket paths before anything listens:
// a path too long for a unix socket, or a directory that does not exist.
func (p SocketPaths) Check() error {
	var errs []error
	for _, s := range []struct{ what, path, flag string }{
		{"kubelet registration socket", p.Registrar, "--kubelet-registry-dir (KUBELET_REGISTRY_DIR)"},
		{"DRA plugin socket", p.Plugin, "--kubelet-plugins-dir (KUBELET_PLUGINS_DIR)"},
	} {
		if n := len(s.path); n > MaxSocketPath {
			errs = append(errs, fmt.Errorf("%s path %s is %d bytes, longer than the %d a unix socket allows: use a shorter %s", s.what, s.path, n, MaxSocketPath, s.flag))
		}
		dir := filepath.Dir(s.path)
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs = append(errs, fmt.Errorf("%s directory %s does not exist: is %s the kubelet's directory, mounted into the container?", s.what, dir, s.flag))
		case err != nil:
			errs = append(errs, fmt.Errorf("%s directory %s: %w", s.what, dir, err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("%s directory %s is not a directory", s.what, dir))
		}
	}
	return errors.Join(errs...)
}

// Registration watches the kubelet's calls on the registration socket
// (through a gRPC interceptor, race-free) so the daemon can say whether
// and why registration did not happen.
type Registration struct {
	mu        sync.Mutex
	getInfo   int
	status    *registerapi.RegistrationStatus
	confirmed chan struct{}
}

// NewRegistration returns a watcher; pass Interceptor() as
// kubeletserver.Config.Interceptor.
func NewRegistration() *Registration {
	return &Registration{confirmed: make(chan struct{})}
}

// Interceptor observes GetInfo and NotifyRegistrationStatus.
func (r *Registration) Interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		switch {
		case strings.HasSuffix(info.FullMethod, "/GetInfo"):
			r.mu.Lock()
			r.getInfo++
			r.mu.Unlock()
		case strings.HasSuffix(info.FullMethod, "/NotifyRegistrationStatus"):
			if st, ok := req.(*registerapi.RegistrationStatus); ok {
				r.mu.Lock()
				first := r.status == nil || !r.status.PluginRegistered
				r.status = st
				if st.PluginRegistered && first {
					close(r.confirmed)
				}
				r.mu.Unlock()
			}
		}
		return handler(ctx, req)
	}
}

// Registered reports whether kubelet confirmed the registration.
func (r *Registration) Registered() bool {
	select {
	case <-r.confirmed:
		return true
	default:
		return false
	}
}

// Wait waits until kubelet confirmed the registration, or says after
// timeout what is wrong.
func (r *Registration) Wait(ctx context.Context, timeout time.Duration, sockets SocketPaths) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.confirmed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := sockets.Check(); err != nil {
		return fmt.Errorf("kubelet did not register the driver within %s: %w", timeout, err)
	}
	if _, err := os.Stat(sockets.Registrar); err != nil {
		return fmt.Errorf("kubelet did not register the driver within %s: registration socket %s: %w", timeout, sockets.Registrar, err)
	}
	switch {
	case r.status != nil && !r.status.PluginRegistered:
		return fmt.Errorf("kubelet refused the registration: %s", r.status.Error)
	case r.getInfo > 0:
		return fmt.Errorf("kubelet asked for the plugin info %d times on %s but never confirmed the registration within %s: check the kubelet log for the DRA plugin endpoint %s", r.getInfo, sockets.Registrar, timeout, sockets.Plugin)
	default:
		return fmt.Errorf("kubelet never called %s within %s: is kubelet running on this node, is %s its plugins_registry directory (the kubelet --root-dir), and is the DynamicResourceAllocation feature enabled?", sockets.Registrar, timeout, filepath.Dir(sockets.Registrar))
	}
}
